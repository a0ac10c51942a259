//! The store's own rules, the same suite on SQLite and on the services' PostgreSQL: tokens
//! kept as hashes only (read from the table), the queue cap counted at enqueue, claims in
//! order with one running per app, stale claims marked interrupted, events in order; the app
//! records of migration 0002 (kind and params, current config, history, audit per project).

#![allow(clippy::unwrap_used)]

mod common;

use deployctl_server::{
    AuditRow, Enqueued, NewDeployment, Operation, Role, SqlStore, Status, Store, tokens,
};
use serde_json::json;
use sqlx::Row;

fn new(id: &str, project: &str, app: &str, at: i64) -> NewDeployment {
    NewDeployment::new(
        id.into(),
        project,
        app,
        json!({ "config": "x" }),
        "tok_test",
        at,
    )
}

async fn suite(store: &SqlStore, raw_tokens: impl AsyncFn() -> Vec<(String, String)>) {
    // Tokens: the secret is shown once and only its SHA-256 is stored.
    let made = tokens::create(
        store,
        "shop",
        Role::Deploy,
        std::time::Duration::from_secs(60),
    )
    .await
    .unwrap();
    let rows = raw_tokens().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, made.record.id);
    assert_eq!(rows[0].1, tokens::hash(&made.secret));
    assert_ne!(rows[0].1, made.secret);
    assert!(
        !rows[0].1.contains(&made.secret[5..]),
        "the secret is stored"
    );
    let found = store
        .token_by_hash(&tokens::hash(&made.secret))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.role, Role::Deploy);
    let audit = store.audit_rows().await.unwrap();
    assert_eq!(
        audit
            .iter()
            .map(|r| (r.action.as_str(), r.token_id.as_deref()))
            .collect::<Vec<_>>(),
        vec![("token.create", Some(made.record.id.as_str()))]
    );
    assert!(store.revoke_token(&made.record.id, 5).await.unwrap());
    assert!(!store.revoke_token("tok_nope", 5).await.unwrap());
    let revoked = store
        .token_by_hash(&tokens::hash(&made.secret))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revoked.revoked_ms, Some(5));

    // The cap counts queued and running deployments of the project at enqueue.
    for (i, app) in ["a", "a", "b"].iter().enumerate() {
        let id = format!("d{i}");
        assert_eq!(
            store
                .enqueue(&new(&id, "shop", app, i as i64), 3)
                .await
                .unwrap(),
            Enqueued::Accepted
        );
    }
    assert_eq!(
        store.enqueue(&new("d3", "shop", "c", 3), 3).await.unwrap(),
        Enqueued::Full
    );
    assert!(
        store.deployment("d3").await.unwrap().is_none(),
        "a refused one is not stored"
    );
    assert_eq!(
        store.enqueue(&new("o0", "other", "a", 4), 3).await.unwrap(),
        Enqueued::Accepted
    );
    assert_eq!(store.active_count("shop").await.unwrap(), 3);

    // Claims: oldest first, never a second running deployment of one app.
    let first = store.claim("s1", 10).await.unwrap().unwrap();
    assert_eq!((first.id.as_str(), first.status), ("d0", Status::Running));
    let second = store.claim("s2", 10).await.unwrap().unwrap();
    assert_eq!(second.id, "d2", "d1 waits for d0 (same app); b's goes");
    let third = store.claim("s2", 10).await.unwrap().unwrap();
    assert_eq!(third.id, "o0");
    assert!(
        store.claim("s1", 10).await.unwrap().is_none(),
        "d1 must wait for d0"
    );
    store
        .finish(
            "d0",
            Status::Succeeded,
            Some(&json!({"ok": true})),
            None,
            20,
        )
        .await
        .unwrap();
    let next = store.claim("s1", 21).await.unwrap().unwrap();
    assert_eq!(next.id, "d1");
    let done = store.deployment("d0").await.unwrap().unwrap();
    assert_eq!(
        (done.status, done.started_ms, done.finished_ms),
        (Status::Succeeded, Some(10), Some(20))
    );

    // A queued one is cancelled at once; a running one is not touched by cancel_queued.
    assert_eq!(
        store.enqueue(&new("d4", "shop", "a", 30), 5).await.unwrap(),
        Enqueued::Accepted
    );
    assert!(store.cancel_queued("d4", 31).await.unwrap());
    assert!(!store.cancel_queued("d1", 31).await.unwrap());
    assert_eq!(
        store.deployment("d4").await.unwrap().unwrap().status,
        Status::Cancelled
    );

    // Claims whose server stopped renewing them are interrupted; renewed ones stay.
    store.heartbeat("s2", 100).await.unwrap();
    let mut stale = store.interrupt_stale(50, 101).await.unwrap();
    stale.sort();
    assert_eq!(
        stale,
        vec!["d1".to_owned()],
        "s1's claim (heartbeat 21) is stale, s2's (100) is not"
    );
    let d1 = store.deployment("d1").await.unwrap().unwrap();
    assert_eq!(d1.status, Status::Interrupted);
    assert!(d1.error.unwrap().contains("deploy again"));

    // Events: in order, after a given number.
    for seq in 1..=5 {
        store
            .add_event("d2", seq, &json!({ "n": seq }))
            .await
            .unwrap();
    }
    let all = store.events("d2", 0).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    let after = store.events("d2", 3).await.unwrap();
    assert_eq!(
        after
            .iter()
            .map(|e| e.body["n"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![4, 5]
    );
    assert!(
        store.add_event("d2", 5, &json!({})).await.is_err(),
        "a number is used once"
    );
}

#[tokio::test]
async fn sqlite_store() {
    let (store, dir) = common::sqlite().await;
    let file = dir.path().join(deployctl_server::SQLITE_FILE);
    suite(&store, async || {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", file.display()))
            .await
            .unwrap();
        let mode: String = sqlx::query("PRAGMA journal_mode")
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0);
        assert_eq!(mode, "wal");
        sqlx::query("SELECT id, hash FROM tokens")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    })
    .await;
    // Opening again runs no migration twice and keeps the data.
    let again = SqlStore::sqlite(dir.path()).await.unwrap();
    assert!(again.deployment("d0").await.unwrap().is_some());
}

#[tokio::test]
async fn postgres_store() {
    let Some((store, url)) = common::postgres().await else {
        return;
    };
    suite(&store, async || {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query("SELECT id, hash FROM tokens")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    })
    .await;
    let again = SqlStore::postgres(&url).await.unwrap();
    assert!(again.deployment("d0").await.unwrap().is_some());
}

/// Two servers claiming from one PostgreSQL at once: every deployment is claimed exactly
/// once and never two of one app together.
#[tokio::test]
async fn postgres_concurrent_claims_are_exclusive() {
    let Some((store, _url)) = common::postgres().await else {
        return;
    };
    for i in 0..20 {
        let app = format!("app{}", i % 5);
        store
            .enqueue(&new(&format!("c{i:02}"), "p", &app, i), 100)
            .await
            .unwrap();
    }
    let mut claimed = Vec::new();
    // Rounds: in each, 8 claimers race; the winners finish before the next round.
    for round in 0..10 {
        let mut tasks = Vec::new();
        for s in 0..8 {
            let st = store.clone();
            tasks.push(tokio::spawn(async move {
                st.claim(&format!("s{s}"), 1000 + round).await.unwrap()
            }));
        }
        let mut won = Vec::new();
        for t in tasks {
            if let Some(d) = t.await.unwrap() {
                won.push(d);
            }
        }
        let mut apps: Vec<_> = won.iter().map(|d| d.app.clone()).collect();
        apps.sort();
        apps.dedup();
        assert_eq!(
            apps.len(),
            won.len(),
            "two running of one app in round {round}: {won:?}"
        );
        for d in &won {
            store
                .finish(&d.id, Status::Succeeded, None, None, 2000)
                .await
                .unwrap();
        }
        claimed.extend(won.into_iter().map(|d| d.id));
    }
    claimed.sort();
    let want: Vec<String> = (0..20).map(|i| format!("c{i:02}")).collect();
    assert_eq!(claimed, want, "each claimed once");
}

/// The app records (migration 0002): a deployment's kind and params, the app's current
/// config, its deployments newest first, queue counts, and audit rows per project and time.
async fn app_suite(store: &SqlStore) {
    assert_eq!(
        store
            .enqueue(&new("a1", "shop", "web", 1), 10)
            .await
            .unwrap(),
        Enqueued::Accepted
    );
    let scale = new("a2", "shop", "web", 2).with_operation(&Operation::Scale { replicas: 3 });
    assert_eq!(store.enqueue(&scale, 10).await.unwrap(), Enqueued::Accepted);
    let a1 = store.deployment("a1").await.unwrap().unwrap();
    assert_eq!((a1.kind.as_str(), &a1.params), ("deploy", &json!({})));
    let a2 = store.deployment("a2").await.unwrap().unwrap();
    assert_eq!(
        (a2.kind.as_str(), &a2.params),
        ("scale", &json!({ "replicas": 3 }))
    );
    assert_eq!(
        Operation::parse(&a2.kind, &a2.params),
        Some(Operation::Scale { replicas: 3 })
    );
    assert_eq!(store.queue_counts().await.unwrap(), (2, 0));
    store.claim("s1", 3).await.unwrap().unwrap();
    assert_eq!(store.queue_counts().await.unwrap(), (1, 1));

    let app = store.app("shop", "web").await.unwrap().unwrap();
    assert_eq!(app.current, None, "no successful deploy yet");
    assert!(store.app("shop", "nope").await.unwrap().is_none());
    let current = json!({ "config": "app: {name: web}", "image": "r/web@sha256:00" });
    store
        .set_current("shop", "web", &current, "a1", 4)
        .await
        .unwrap();
    let app = store.app("shop", "web").await.unwrap().unwrap();
    assert_eq!(app.current.as_ref(), Some(&current));
    assert_eq!(
        (app.current_deployment.as_deref(), app.current_ms),
        (Some("a1"), Some(4))
    );

    let ids = |v: Vec<deployctl_server::DeploymentRecord>| {
        v.into_iter().map(|d| d.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.deployments_of("shop", "web", 10).await.unwrap()),
        ["a2", "a1"]
    );
    assert_eq!(
        ids(store.deployments_of("shop", "web", 1).await.unwrap()),
        ["a2"]
    );

    for (at, project) in [(10, "shop"), (15, "other"), (20, "shop"), (30, "shop")] {
        let mut row = AuditRow::cli("app.scale", Some(project), "tok_x", at);
        row.request_id = format!("req_{at}");
        store.audit(&row).await.unwrap();
    }
    let at = |rows: Vec<AuditRow>| rows.into_iter().map(|r| r.at_ms).collect::<Vec<_>>();
    assert_eq!(at(store.audit_of("shop", 15, 100).await.unwrap()), [20, 30]);
    assert_eq!(at(store.audit_of("shop", 0, 1).await.unwrap()), [10]);
    assert_eq!(at(store.audit_of("other", 0, 100).await.unwrap()), [15]);
}

#[tokio::test]
async fn sqlite_app_records() {
    let (store, _dir) = common::sqlite().await;
    app_suite(&store).await;
}

#[tokio::test]
async fn postgres_app_records() {
    let Some((store, _url)) = common::postgres().await else {
        return;
    };
    app_suite(&store).await;
}

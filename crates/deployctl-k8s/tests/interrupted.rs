//! Interrupted deploys and concurrent deploys of one app, against the stand-in API server:
//! the history records a revision before it is applied, so a re-run after an interruption
//! watches the rollout it left behind; the deploy Lease keeps two deploys from interleaving.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

mod common;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use deployctl_core::{
    Acquire, Cancellation, EventKind, LockOwner, LockPolicy, Pipeline, RunMode, RunRequest, Target,
    Timer, VecSink,
};
use deployctl_kube_standin::{Behavior, StandIn};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;

use common::{client, deploy, image, target};

struct Tokio;

impl Timer for Tokio {
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// Cancels the run once the manifests are applied: the moment a kill during the rollout
/// wait leaves behind.
struct CancelAfterApply(Cancellation);

impl deployctl_core::EventSink for CancelAfterApply {
    fn emit(&self, event: deployctl_core::Event) {
        if let EventKind::Message { text } = &event.kind
            && text.starts_with("applied ")
        {
            self.0.cancel();
        }
    }
}

fn history_of(revisions: &[deployctl_core::Revision]) -> Vec<(String, bool, String)> {
    revisions
        .iter()
        .map(|r| {
            (
                r.version.clone(),
                r.live,
                r.state.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_rerun_after_an_interrupted_rollout_watches_it_fails_and_rolls_back() {
    let standin = StandIn::start().await.unwrap();
    let c = client(&standin).await;
    let t = target(&c, "");
    deploy(&t, &image("web", 1)).await.unwrap();
    standin.set_behavior("web-crash", Behavior::CrashLoopBackOff);

    // Interrupted while the rollout of a crash-looping image is being watched (what a
    // Ctrl-C or a killed CI job leaves): applied, never seen complete.
    let cancel = Cancellation::new();
    let err = t
        .apply(
            &image("web-crash", 2),
            &CancelAfterApply(cancel.clone()),
            &cancel,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, deployctl_core::ErrorKind::Cancelled, "{err:?}");
    let h = history_of(&t.history().await.unwrap());
    assert_eq!(
        h,
        [
            ("1".into(), true, "good".into()),
            ("2".into(), false, "pending".into())
        ]
    );

    // The re-run finds the manifests unchanged — and still fails, as a fresh rollout
    // would, rolling back to revision 1.
    let plan = t.plan(Some(&image("web-crash", 2))).await.unwrap();
    assert!(plan.is_noop(), "{plan:#?}");
    let events = VecSink::new();
    let err = t
        .apply(&image("web-crash", 2), &events, &Cancellation::new())
        .await
        .unwrap_err();
    let text = err.chain().join(" | ");
    assert!(text.contains("CrashLoopBackOff"), "{text}");
    assert!(text.contains("rolled back to revision 1"), "{text}");
    let said: Vec<String> = events
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Message { text } => Some(text),
            _ => None,
        })
        .collect();
    assert!(
        said.iter()
            .any(|s| s.contains("revision 2 was never seen rolled out")),
        "{said:?}"
    );
    let h = history_of(&t.history().await.unwrap());
    assert_eq!(
        h,
        [
            ("1".into(), true, "good".into()),
            ("2".into(), false, "failed".into())
        ]
    );
    let deps: Api<Deployment> = Api::namespaced(c.clone(), "shop");
    let live = deps.get("web").await.unwrap();
    let live_image = live.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap();
    assert!(live_image.contains("/web@"), "{live_image}");

    // A rollback now has a target, and history and status agree with the cluster.
    assert_eq!(t.status().await.unwrap().version.as_deref(), Some("1"));
}

#[tokio::test]
async fn an_unchanged_healthy_redeploy_changes_nothing_and_an_interrupted_good_one_is_recorded() {
    let standin = StandIn::start().await.unwrap();
    let c = client(&standin).await;
    let t = target(&c, "");
    deploy(&t, &image("web", 1)).await.unwrap();
    standin.take_mutations();
    deploy(&t, &image("web", 1)).await.unwrap();
    assert_eq!(standin.take_mutations(), Vec::<String>::new());

    // Killed after applying a good image, before its rollout was seen: the re-run sees it
    // complete and records it, without applying anything again.
    standin.set_behavior("web-slow", Behavior::Slow(Duration::from_secs(2)));
    let cancel = Cancellation::new();
    t.apply(
        &image("web-slow", 2),
        &CancelAfterApply(cancel.clone()),
        &cancel,
    )
    .await
    .unwrap_err();
    standin.take_mutations();
    let out = deploy(&t, &image("web-slow", 2)).await.unwrap();
    assert_eq!(out.version.as_deref(), Some("2"));
    let mutations = standin.take_mutations();
    assert!(
        mutations.iter().all(|m| m.contains("configmaps")),
        "only the history is written: {mutations:?}"
    );
    let h = history_of(&t.history().await.unwrap());
    assert_eq!(
        h,
        [
            ("1".into(), false, "good".into()),
            ("2".into(), true, "good".into())
        ]
    );
}

fn owner(n: u8) -> LockOwner {
    LockOwner::new(format!("run-{n}"), format!("tester (run {n})"))
}

#[tokio::test]
async fn the_deploy_lease_is_taken_once_renewed_released_and_broken() {
    let standin = StandIn::start().await.unwrap();
    let c = client(&standin).await;
    let t = target(&c, "");
    let lock = t.lock().unwrap();
    assert!(lock.describe().contains("web-deployctl-lock"));
    let ttl = Duration::from_secs(30);
    assert_eq!(
        lock.try_acquire(&owner(1), ttl).await.unwrap(),
        Acquire::Taken
    );
    // The same run again: still ours.
    assert_eq!(
        lock.try_acquire(&owner(1), ttl).await.unwrap(),
        Acquire::Taken
    );
    match lock.try_acquire(&owner(2), ttl).await.unwrap() {
        Acquire::Held(h) => {
            assert_eq!(h.id, "run-1");
            assert_eq!(h.who, "tester (run 1)");
            assert!(h.expires_at_ms.is_some());
        }
        other => panic!("{other:?}"),
    }
    lock.renew(&owner(1), ttl).await.unwrap();
    assert!(lock.renew(&owner(2), ttl).await.is_err(), "not the holder");
    // Only the holder releases.
    lock.release(&owner(2)).await.unwrap();
    assert_eq!(lock.holder().await.unwrap().unwrap().id, "run-1");
    lock.release(&owner(1)).await.unwrap();
    assert_eq!(lock.holder().await.unwrap(), None);

    // A holder that died: its lease expires and the next run takes it over.
    assert_eq!(
        lock.try_acquire(&owner(3), Duration::from_secs(1))
            .await
            .unwrap(),
        Acquire::Taken
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        lock.try_acquire(&owner(4), ttl).await.unwrap(),
        Acquire::Taken
    );
    assert!(lock.renew(&owner(3), ttl).await.is_err(), "lost to run 4");

    // Real clients see an ordinary Lease.
    let leases: Api<Lease> = Api::namespaced(c.clone(), "shop");
    let lease = leases.get("web-deployctl-lock").await.unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some("run-4")
    );

    // `deployctl unlock`.
    let said = deployctl_core::break_lock(lock).await.unwrap();
    assert!(said.starts_with("broke the deploy lock"), "{said}");
    assert!(said.contains("tester (run 4)"), "{said}");
    assert_eq!(lock.holder().await.unwrap(), None);
    let said = deployctl_core::break_lock(lock).await.unwrap();
    assert!(said.ends_with("was not held"), "{said}");
}

#[tokio::test]
async fn two_deploys_of_one_app_with_different_images_run_one_after_the_other() {
    let standin = StandIn::start().await.unwrap();
    standin.set_behavior("web", Behavior::Slow(Duration::from_millis(800)));
    let c = client(&standin).await;
    deploy(&target(&c, ""), &image("web", 1)).await.unwrap();

    let run = |n: u8, delay: u64| {
        let c = c.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let t = target(&c, "");
            let events = VecSink::new();
            let policy = LockPolicy::new(owner(n), Duration::from_secs(30));
            let mut request = RunRequest::deploy_image(RunMode::Apply, image("web", n));
            request.verify = false; // nothing answers the health path here
            let report = Pipeline::new(&events)
                .with_target(&t)
                .with_locks(policy, &Tokio)
                .run(request)
                .await;
            let waited = events.events().into_iter().any(|e| {
                matches!(e.kind, EventKind::Message { ref text } if text.starts_with("waiting for the deploy lock"))
            });
            if let Some(e) = report.worst_error() {
                eprintln!("run {n}: {:?}", e.chain());
            }
            (report.is_success(), waited)
        }
    };
    let (first, second) = tokio::join!(run(2, 0), run(3, 150));
    assert_eq!(first, (true, false));
    assert_eq!(second, (true, true), "the second waited for the first");

    // The final state is the second image, fully; the history has both, in order.
    let t = target(&c, "");
    let status = t.status().await.unwrap();
    assert!(
        status
            .image
            .unwrap()
            .ends_with(image("web", 3).digest().as_str())
    );
    let h = history_of(&t.history().await.unwrap());
    assert_eq!(
        h,
        [
            ("1".into(), false, "good".into()),
            ("2".into(), false, "good".into()),
            ("3".into(), true, "good".into())
        ]
    );
    assert_eq!(t.lock().unwrap().holder().await.unwrap(), None, "released");
}

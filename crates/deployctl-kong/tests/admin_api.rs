//! Admin API mode against the Kong stand-in (`deployctl-kong-standin`, in process): first
//! deploy creates, a re-run makes no mutation, a changed spec updates and deletes only what
//! changed, untagged entities are never touched, the consumer key is kept unless rotated,
//! destroy removes only tagged entities, the token is sent, and a Kong that is gone is a
//! failure (not invalid input) naming the call.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use deployctl_config::LoadOptions;
use deployctl_core::{ErrorKind, Secret};
use deployctl_kong::diff::KeyAction;
use deployctl_kong::{AdminApi, HttpClient, KongError};
use deployctl_kong_standin::{KongStandin, Options};
use serde_json::json;

fn client() -> HttpClient {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("tls versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https)
}

const SPEC_V1: &str = "openapi: 3.0.3
servers: [{ url: /v1 }]
security: [{ key: [] }]
paths:
  /health: { get: { security: [], responses: { 200: { description: ok } } } }
  /pets: { get: { responses: { 200: { description: ok } } }, post: { responses: { 201: { description: ok } } } }
  /pets/{id}: { get: { responses: { 200: { description: ok } } } }
components:
  securitySchemes:
    key: { type: apiKey, name: X-API-Key, in: header }
";

/// v2: `POST /pets` gone, `DELETE /pets/{id}` new, the key moves to the query.
const SPEC_V2: &str = "openapi: 3.0.3
servers: [{ url: /v1 }]
security: [{ key: [] }]
paths:
  /health: { get: { security: [], responses: { 200: { description: ok } } } }
  /pets: { get: { responses: { 200: { description: ok } } } }
  /pets/{id}: { get: { responses: { 200: { description: ok } } }, delete: { responses: { 204: { description: ok } } } }
components:
  securitySchemes:
    key: { type: apiKey, name: api_key, in: query }
";

struct App {
    dir: tempfile::TempDir,
}

impl App {
    fn new(spec: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("deploy.yaml"),
            "version: \"1.0\"\napp: { name: pets }\nkubernetes: { enabled: true, namespace: zoo }\nkong:\n  openapi: openapi.yaml\n  admin_url: http://127.0.0.1:1\n  rate_limiting: { minute: 30 }\n  consumer: { username: pets-dev }\n",
        )
        .expect("write config");
        let app = Self { dir };
        app.spec(spec);
        app
    }

    fn spec(&self, spec: &str) {
        std::fs::write(self.dir.path().join("openapi.yaml"), spec).expect("write spec");
    }

    fn desired(&self) -> deployctl_kong::Desired {
        let vars: HashMap<String, String> = HashMap::new();
        let config = deployctl_config::load(
            &self.dir.path().join("deploy.yaml"),
            &LoadOptions::new(&vars),
        )
        .expect("config");
        let kong = config.kong.as_ref().expect("kong");
        let spec = deployctl_kong::load_spec(&kong.openapi).expect("spec");
        deployctl_kong::desired(&config, &spec).expect("desired")
    }
}

/// observe → diff → apply, as the binary runs it.
async fn deploy(
    api: &AdminApi,
    app: &App,
    rotate: bool,
) -> Result<(deployctl_kong::GatewayPlan, deployctl_kong::Applied), KongError> {
    let desired = app.desired();
    let observed = deployctl_kong::observe(api, &desired.app).await?;
    let plan = deployctl_kong::diff(&desired, &observed, rotate);
    let applied = deployctl_kong::apply(api, &desired, &plan).await?;
    Ok((plan, applied))
}

#[tokio::test]
async fn create_rerun_change_and_destroy() {
    let kong = KongStandin::start().await.expect("stand-in");
    let api = AdminApi::new(client(), &kong.url(), None).expect("api");

    // Someone else's entities, untagged, and one tagged by another app.
    for (path, body) in [
        ("/services/other", json!({"host": "other.svc", "port": 80})),
        (
            "/services/other/routes",
            json!({"name": "other-route", "paths": ["/other"]}),
        ),
        (
            "/plugins",
            json!({"name": "cors", "config": {"origins": ["*"]}}),
        ),
        (
            "/consumers",
            json!({"username": "someone", "tags": ["deployctl:billing"]}),
        ),
    ] {
        let method = if path.ends_with("other") {
            "PUT"
        } else {
            "POST"
        };
        let status = raw(&kong.url(), method, path, &body).await;
        assert!((200..300).contains(&status), "{method} {path}: {status}");
    }
    kong.take_mutations();

    let app = App::new(SPEC_V1);
    let (plan, applied) = deploy(&api, &app, false).await.expect("first deploy");
    let (create, update, unchanged, delete) = plan.plan.counts();
    // service, 4 routes, 3 key-auth plugins (health is open), rate-limiting, consumer, key
    assert_eq!(
        (create, update, unchanged, delete),
        (11, 0, 0, 0),
        "{}",
        plan.plan
    );
    assert_eq!(plan.key, KeyAction::Create);
    let key = applied
        .new_key
        .expect("a key is generated on the first deploy");
    assert_eq!(key.expose().len(), 64);
    assert_eq!(kong.take_mutations().len(), 11);
    assert!(!format!("{}", plan.plan).contains(key.expose()));

    // The key works as a key-auth credential of the consumer.
    let creds = api.list("key-auths", "deployctl:pets").await.expect("list");
    assert_eq!(creds.len(), 1);
    assert_eq!(creds[0]["key"].as_str(), Some(key.expose()));

    // An unchanged re-run: nothing to do, no mutation, the key kept.
    let (plan, applied) = deploy(&api, &app, false).await.expect("re-run");
    assert!(plan.is_noop(), "{}", plan.plan);
    assert_eq!(plan.key, KeyAction::Keep);
    assert!(applied.new_key.is_none());
    assert_eq!(applied.mutations, 0);
    assert_eq!(kong.take_mutations(), Vec::<String>::new());

    // A changed spec: the new route and its plugin created, the key-auth plugins updated
    // (key in the query now), POST /pets and its plugin deleted; nothing else.
    app.spec(SPEC_V2);
    let (plan, _) = deploy(&api, &app, false).await.expect("changed spec");
    let (create, update, _, delete) = plan.plan.counts();
    assert_eq!((create, update, delete), (2, 2, 2), "{}", plan.plan);
    let mutations = kong.take_mutations();
    assert_eq!(mutations.len(), 6, "{mutations:?}");
    assert!(
        mutations
            .iter()
            .all(|m| !m.contains("other") && !m.contains("someone")),
        "{mutations:?}"
    );
    let creds = api.list("key-auths", "deployctl:pets").await.expect("list");
    assert_eq!(
        creds[0]["key"].as_str(),
        Some(key.expose()),
        "key not rotated"
    );

    // --rotate-key: one mutation, a new key.
    let (plan, applied) = deploy(&api, &app, true).await.expect("rotate");
    assert_eq!(plan.key, KeyAction::Rotate);
    let new_key = applied.new_key.expect("rotated key");
    assert_ne!(new_key.expose(), key.expose());
    assert_eq!(kong.take_mutations().len(), 1);

    // Destroy: only what is tagged deployctl:pets; a second destroy deletes nothing.
    let plan = deployctl_kong::destroy(&api, "pets", false)
        .await
        .expect("destroy");
    assert_eq!(plan.counts().3, 11, "{plan}");
    assert!(
        deployctl_kong::observe(&api, "pets")
            .await
            .expect("observe")
            .is_empty()
    );
    let plan = deployctl_kong::destroy(&api, "pets", false)
        .await
        .expect("destroy again");
    assert_eq!(plan.counts().3, 0);
    let _ = kong.take_mutations();
    for path in [
        "/services/other",
        "/routes/other-route",
        "/consumers/someone",
    ] {
        assert_eq!(
            raw(&kong.url(), "GET", path, &json!(null)).await,
            200,
            "{path} kept"
        );
    }
    let plugins = api.get("/plugins").await.expect("plugins").expect("list");
    assert_eq!(plugins["data"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_dry_run_plan_makes_no_call_that_changes_anything() {
    let kong = KongStandin::start().await.expect("stand-in");
    let api = AdminApi::new(client(), &kong.url(), None).expect("api");
    let app = App::new(SPEC_V1);
    let desired = app.desired();
    let observed = deployctl_kong::observe(&api, "pets")
        .await
        .expect("observe");
    let plan = deployctl_kong::diff(&desired, &observed, false);
    assert_eq!(plan.upserts.len(), desired.entities.len());
    assert!(kong.take_mutations().is_empty());
    assert!(api.mutations().is_empty());
    let plan = deployctl_kong::destroy(&api, "pets", true)
        .await
        .expect("dry destroy");
    assert_eq!(plan.changes.len(), 0);
}

#[tokio::test]
async fn the_admin_token_is_sent_and_a_wrong_one_is_named() {
    let kong = KongStandin::start_with(Options::with_admin_token("t0ken"))
        .await
        .expect("stand-in");
    let app = App::new(SPEC_V1);
    let good =
        AdminApi::new(client(), &kong.url(), Some(Secret::new("t0ken".to_owned()))).expect("api");
    deploy(&good, &app, false)
        .await
        .expect("deploy with the token");
    let bad =
        AdminApi::new(client(), &kong.url(), Some(Secret::new("wrong".to_owned()))).expect("api");
    let e = deploy(&bad, &app, false).await.expect_err("wrong token");
    assert!(
        matches!(
            e,
            KongError::Admin {
                status: Some(401),
                ..
            }
        ),
        "{e}"
    );
    assert!(e.hint().contains("kong.admin_token"), "{}", e.hint());
    assert!(!e.to_string().contains("wrong") && !format!("{bad:?}").contains("wrong"));
}

#[tokio::test]
async fn a_kong_that_is_gone_is_a_failure_naming_the_call() {
    let kong = KongStandin::start().await.expect("stand-in");
    let url = kong.url();
    kong.shutdown();
    drop(kong);
    let api = AdminApi::new(client(), &url, None).expect("api");
    let e = deploy(&api, &App::new(SPEC_V1), false)
        .await
        .expect_err("no Kong");
    assert_eq!(e.kind(), ErrorKind::Failed);
    assert!(
        e.to_string().starts_with("Kong Admin API GET /services"),
        "{e}"
    );
    assert!(e.hint().contains("deployment is serving"), "{}", e.hint());
}

/// A request made without deployctl's client (to set up other owners' entities).
async fn raw(base: &str, method: &str, path: &str, body: &serde_json::Value) -> u16 {
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            if body.is_null() {
                String::new()
            } else {
                body.to_string()
            },
        )))
        .expect("request");
    client()
        .request(req)
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Every fixture's desired state is accepted by the stand-in (which validates the plugin
/// configs deployctl emits), and applying it twice makes no second mutation: Kong's
/// defaults never read as differences.
#[tokio::test]
async fn every_fixture_applies_and_reapplies_as_a_no_op() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/kong");
    let vars: HashMap<String, String> =
        HashMap::from([("KONG_ADMIN_TOKEN".to_owned(), "t".to_owned())]);
    let mut applied_cases = 0;
    for entry in std::fs::read_dir(&fixtures).expect("fixtures") {
        let dir = entry.expect("entry").path();
        let config = deployctl_config::load(&dir.join("deploy.yaml"), &LoadOptions::new(&vars))
            .expect("config");
        let kong_cfg = config.kong.as_ref().expect("kong");
        let Ok(spec) = deployctl_kong::load_spec(&kong_cfg.openapi) else {
            continue;
        };
        let Ok(desired) = deployctl_kong::desired(&config, &spec) else {
            continue;
        };
        let kong = KongStandin::start().await.expect("stand-in");
        let api = AdminApi::new(client(), &kong.url(), None).expect("api");
        for round in 0..2 {
            let observed = deployctl_kong::observe(&api, &desired.app)
                .await
                .expect("observe");
            let plan = deployctl_kong::diff(&desired, &observed, false);
            if round == 1 {
                assert!(plan.is_noop(), "{}: {}", dir.display(), plan.plan);
            }
            deployctl_kong::apply(&api, &desired, &plan)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        }
        applied_cases += 1;
    }
    assert!(applied_cases >= 3, "{applied_cases}");
}

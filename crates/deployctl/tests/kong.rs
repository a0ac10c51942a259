//! The Kong gateway step through the binary (issue 19 §2): `deploy k8s` rolls out on the
//! Kubernetes stand-in, then configures the Kong stand-in from the app's OpenAPI spec; the
//! consumer key is shown once; an unchanged re-run makes no Kong mutation; `status` lists
//! the routes; `destroy` removes the tagged entities and leaves an untagged one; with Kong
//! gone, the deploy still rolls out, the gateway step fails with the reason and a retry
//! hint, exit 1.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

mod common;
#[path = "common/reliability.rs"]
mod reliability;

use common::{copy_dir, json_lines, stderr, stdout, workspace};
use deployctl_kong_standin::KongStandin;
use reliability::{get_json, k8s_cmd, k8s_yaml, services, unique, write_kubeconfig};

const SPEC: &str = "openapi: 3.1.0
info: { title: hello, version: '1' }
security: [{ key: [] }]
paths:
  /health: { get: { security: [], responses: { '200': { description: ok } } } }
  /pets: { get: { responses: { '200': { description: ok } } } }
  /pets/{id}: { get: { responses: { '200': { description: ok } } } }
components:
  securitySchemes:
    key: { type: apiKey, name: X-API-Key, in: header }
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_configures_kong_after_the_rollout_and_a_kong_failure_keeps_it_serving() {
    let Some(s) = services() else {
        return;
    };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let kube = deployctl_kube_standin::StandIn::start().await.unwrap();
    let kong = KongStandin::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    write_kubeconfig(&kubeconfig, &kube.url());
    let app = tmp.path().join("hello");
    copy_dir(&workspace().join("fixtures/apps/hello"), &app);
    let name = unique("kong");
    let yaml = |admin: &str| {
        format!(
            "{}kong:\n  openapi: openapi.yaml\n  admin_url: {admin}\n  rate_limiting: {{ minute: 100 }}\n  consumer: {{ username: dev }}\n",
            k8s_yaml(&name, &s.registry.addr, &s.registry.user)
        )
    };
    std::fs::write(app.join("deploy.yaml"), yaml(&kong.url())).unwrap();
    std::fs::write(app.join("openapi.yaml"), SPEC).unwrap();
    let run = |args: &'static [&'static str]| {
        let (s, app, kubeconfig) = (s.clone(), app.clone(), kubeconfig.clone());
        tokio::task::spawn_blocking(move || k8s_cmd(&s, &app, &kubeconfig, args).output().unwrap())
    };
    // Someone else's service in Kong: never touched.
    let untagged = deployctl_kong::AdminApi::new(client(), &kong.url(), None).unwrap();
    untagged
        .put(
            "/services/not-ours",
            &serde_json::json!({"host": "x.svc", "port": 80}),
        )
        .await
        .unwrap();
    kong.take_mutations();

    // A dry run shows the gateway's plan and changes nothing in Kong.
    let o = run(&["deploy", "k8s", "--dry-run"]).await.unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("kong: 9 to create"), "{out}");
    assert!(out.contains("+ kong route"), "{out}");
    assert_eq!(kong.take_mutations(), Vec::<String>::new());

    let o = run(&["deploy", "k8s", "--no-verify"]).await.unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("consumer dev key (shown once"), "{out}");
    // The key printed once is the consumer's key-auth credential in Kong.
    let printed = out
        .lines()
        .find_map(|l| {
            l.split_once("replaces it): ")
                .map(|(_, k)| k.trim().to_owned())
        })
        .unwrap();
    let creds = untagged
        .list("key-auths", &format!("deployctl:{name}"))
        .await
        .unwrap();
    assert_eq!(creds.len(), 1);
    assert_eq!(creds[0]["key"].as_str(), Some(printed.as_str()));
    // service, 3 routes, 2 key-auth plugins (/health is open), rate-limiting, consumer, key
    assert_eq!(kong.take_mutations().len(), 9, "{out}");
    // The Kong Service points at the Kubernetes Service the target made, by name and port.
    let services = get_json(&kube.url(), &format!("/api/v1/namespaces/{name}/services")).unwrap();
    let svc = &services["items"][0];
    assert_eq!(
        services["items"].as_array().map(Vec::len),
        Some(1),
        "{services}"
    );
    let kong_service = untagged
        .get(&format!("/services/{name}"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        kong_service["host"].as_str(),
        Some(format!("{}.{name}.svc", svc["metadata"]["name"].as_str().unwrap()).as_str()),
        "{kong_service}"
    );
    assert_eq!(
        kong_service["port"], svc["spec"]["ports"][0]["port"],
        "{kong_service}"
    );

    let o = run(&["--output", "json", "deploy", "k8s", "--no-verify"])
        .await
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let result = json_lines(&o).pop().unwrap();
    assert_eq!(result["gateway"]["mutations"], 0, "{result}");
    assert!(result["gateway"]["consumer_key"].is_null(), "{result}");
    assert_eq!(kong.take_mutations(), Vec::<String>::new());

    // validate reads the spec too.
    let o = run(&["validate"]).await.unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    let o = run(&["status", "k8s"]).await.unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("route GET ~/pets/(?<id>[^/]+)$"), "{out}");

    let o = run(&["destroy", "k8s"]).await.unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let deletes = kong.take_mutations();
    assert_eq!(deletes.len(), 9, "{deletes:?}");
    assert!(
        deletes
            .iter()
            .all(|d| d.starts_with("DELETE") && !d.contains("not-ours"))
    );
    assert!(untagged.get("/services/not-ours").await.unwrap().is_some());

    // Kong gone: the rollout happens, the gateway step fails with a retry hint, exit 1.
    let url = kong.url();
    kong.shutdown();
    drop(kong);
    let o = run(&["deploy", "k8s", "--no-verify"]).await.unwrap();
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(out.contains("deployed"), "{out}");
    assert!(
        err.contains("gateway: failed: Kong Admin API GET /services"),
        "{err}"
    );
    assert!(
        err.contains("the Kubernetes deployment is serving"),
        "{err}"
    );
    assert!(err.contains("run `deployctl deploy` again"), "{err}");
    assert!(url.starts_with("http://127.0.0.1:"));
}

fn client() -> deployctl_kong::HttpClient {
    deployctl_server::client::https_client().unwrap()
}

/// A spec that cannot be mapped is refused before anything is built or deployed: exit 2,
/// the file, the JSON pointer and the hint; the Kubernetes stand-in sees no write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_spec_is_refused_before_anything_changes() {
    let Some(s) = services() else {
        return;
    };
    let kube = deployctl_kube_standin::StandIn::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    write_kubeconfig(&kubeconfig, &kube.url());
    let app = tmp.path().join("hello");
    copy_dir(&workspace().join("fixtures/apps/hello"), &app);
    let name = unique("kong-bad");
    std::fs::write(
        app.join("deploy.yaml"),
        format!(
            "{}kong:\n  openapi: openapi.yaml\n  admin_url: http://127.0.0.1:9\n",
            k8s_yaml(&name, &s.registry.addr, &s.registry.user)
        ),
    )
    .unwrap();
    std::fs::write(
        app.join("openapi.yaml"),
        "openapi: 3.1.0\npaths:\n  /r: { get: { security: [{ o: [] }] } }\ncomponents:\n  securitySchemes:\n    o: { type: openIdConnect, openIdConnectUrl: https://x }\n",
    )
    .unwrap();
    let o = tokio::task::spawn_blocking(move || {
        k8s_cmd(&s, &app, &kubeconfig, &["deploy", "k8s", "--no-verify"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "openapi.yaml at /components/securitySchemes/o: security scheme `o` (openIdConnect)"
        ),
        "{err}"
    );
    assert!(err.contains("kong.auth"), "{err}");
    let writes: Vec<String> = kube
        .take_mutations()
        .into_iter()
        .filter(|m| !m.starts_with("GET"))
        .collect();
    assert_eq!(writes, Vec::<String>::new());
}

const SECURED_SPEC: &str = "openapi: 3.0.3
info: { title: hello, version: '1' }
security: [{ key: [] }]
paths:
  /pets: { get: { responses: { '200': { description: ok } } } }
  /pets/{id}: { get: { responses: { '200': { description: ok } } } }
components:
  securitySchemes:
    key: { type: apiKey, name: X-API-Key, in: header }
";

/// `kong.mode: ingress-controller` (issue 19 §2): `deploy k8s` server-side applies the
/// KongPlugins, the KongConsumer, its credential Secret and the `konghq.com/plugins`
/// annotation with the app's manifests, labelled as the app's; a redeploy changes none of
/// them and keeps the key; `render k8s --out` writes them (keeping the key it wrote
/// before); destroy removes them; the key is in the Secret and in no output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_controller_mode_applies_the_kong_resources_with_the_app() {
    let Some(s) = services() else {
        return;
    };
    let kube = deployctl_kube_standin::StandIn::start().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    write_kubeconfig(&kubeconfig, &kube.url());
    let app = tmp.path().join("hello");
    copy_dir(&workspace().join("fixtures/apps/hello"), &app);
    let name = unique("kic");
    std::fs::write(
        app.join("deploy.yaml"),
        format!(
            "{}kong:\n  openapi: openapi.yaml\n  mode: ingress-controller\n  rate_limiting: {{ minute: 100 }}\n  consumer: {{ username: dev }}\n",
            k8s_yaml(&name, &s.registry.addr, &s.registry.user)
        ),
    )
    .unwrap();
    std::fs::write(app.join("openapi.yaml"), SECURED_SPEC).unwrap();
    let run = |args: Vec<String>| {
        let (s, app, kubeconfig) = (s.clone(), app.clone(), kubeconfig.clone());
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            k8s_cmd(&s, &app, &kubeconfig, &args).output().unwrap()
        })
    };
    let args = |a: &[&str]| a.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    let mut outputs = String::new();
    let base = kube.url();
    let at = |path: String| get_json(&base, &path);
    let kp =
        |n: &str| format!("/apis/configuration.konghq.com/v1/namespaces/{name}/kongplugins/{n}");

    let o = run(args(&["-v", "deploy", "k8s", "--no-verify"]))
        .await
        .unwrap();
    outputs.push_str(&stdout(&o));
    outputs.push_str(&stderr(&o));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("+ KongPlugin") || out.contains("KongPlugin"),
        "{out}"
    );

    // The plugins, with the spec's key name and the rate limit, labelled as the app's.
    let key_auth = at(kp(&format!("{name}-key-auth"))).expect("key-auth KongPlugin");
    assert_eq!(key_auth["plugin"], "key-auth");
    assert_eq!(
        key_auth["config"]["key_names"],
        serde_json::json!(["X-API-Key"])
    );
    assert_eq!(
        key_auth["metadata"]["labels"]["app.kubernetes.io/instance"],
        name.as_str()
    );
    assert_eq!(
        key_auth["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "deployctl"
    );
    let rl = at(kp(&format!("{name}-rate-limiting"))).expect("rate-limiting KongPlugin");
    assert_eq!(rl["config"]["minute"], 100);
    // The consumer and its credential Secret.
    let consumer = at(format!(
        "/apis/configuration.konghq.com/v1/namespaces/{name}/kongconsumers/{name}-dev"
    ))
    .expect("KongConsumer");
    assert_eq!(consumer["username"], "dev");
    assert_eq!(
        consumer["metadata"]["annotations"]["kubernetes.io/ingress.class"],
        "kong"
    );
    let secret_name = consumer["credentials"][0].as_str().unwrap().to_owned();
    let secret = at(format!("/api/v1/namespaces/{name}/secrets/{secret_name}")).expect("Secret");
    assert_eq!(
        secret["metadata"]["labels"]["konghq.com/credential"],
        "key-auth"
    );
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/instance"],
        name.as_str()
    );
    let key = |secret: &serde_json::Value| {
        use base64::Engine as _;
        let b = base64::engine::general_purpose::STANDARD
            .decode(secret["data"]["key"].as_str().unwrap())
            .unwrap();
        String::from_utf8(b).unwrap()
    };
    let first_key = key(&secret);
    assert_eq!(first_key.len(), 64, "32 random bytes as hex");
    // The Service carries the plugins.
    let svc = at(format!("/api/v1/namespaces/{name}/services/{name}")).expect("Service");
    assert_eq!(
        svc["metadata"]["annotations"]["konghq.com/plugins"],
        format!("{name}-key-auth,{name}-rate-limiting").as_str(),
        "{svc}"
    );

    // A redeploy: nothing of Kong's changes, and the key is kept.
    kube.take_mutations();
    let o = run(args(&["--output", "json", "deploy", "k8s", "--no-verify"]))
        .await
        .unwrap();
    outputs.push_str(&stdout(&o));
    outputs.push_str(&stderr(&o));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let result = json_lines(&o).pop().unwrap();
    let changes = result["targets"]
        .as_array()
        .and_then(|t| t.first())
        .map(|t| t.to_string())
        .unwrap_or_default();
    let writes: Vec<String> = kube
        .take_mutations()
        .into_iter()
        .filter(|m| !m.starts_with("GET"))
        .filter(|m| m.contains("/kong") || m.contains("/secrets") || m.contains("/services"))
        .collect();
    assert_eq!(writes, Vec::<String>::new(), "{changes}");
    let secret = at(format!("/api/v1/namespaces/{name}/secrets/{secret_name}")).unwrap();
    assert_eq!(key(&secret), first_key);

    // Without rate limiting, the redeploy prunes that KongPlugin and the annotation drops it.
    std::fs::write(
        app.join("deploy.yaml"),
        format!(
            "{}kong:\n  openapi: openapi.yaml\n  mode: ingress-controller\n  consumer: {{ username: dev }}\n",
            k8s_yaml(&name, &s.registry.addr, &s.registry.user)
        ),
    )
    .unwrap();
    let o = run(args(&["deploy", "k8s", "--no-verify"])).await.unwrap();
    outputs.push_str(&stdout(&o));
    outputs.push_str(&stderr(&o));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("KongPlugin"), "{}", stdout(&o));
    assert!(at(kp(&format!("{name}-rate-limiting"))).is_none());
    assert!(at(kp(&format!("{name}-key-auth"))).is_some());
    let svc = at(format!("/api/v1/namespaces/{name}/services/{name}")).expect("Service");
    assert_eq!(
        svc["metadata"]["annotations"]["konghq.com/plugins"],
        format!("{name}-key-auth").as_str(),
        "{svc}"
    );
    let secret = at(format!("/api/v1/namespaces/{name}/secrets/{secret_name}")).unwrap();
    assert_eq!(key(&secret), first_key);

    // render k8s --out writes them too, and keeps the key it wrote before.
    let dir = tmp.path().join("out");
    let render = args(&[
        "render",
        "k8s",
        "--image",
        &format!("{}/{name}@sha256:{}", s.registry.addr, "a".repeat(64)),
        "--out",
        dir.to_str().unwrap(),
    ]);
    let o = run(render.clone()).await.unwrap();
    outputs.push_str(&stdout(&o));
    outputs.push_str(&stderr(&o));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let file = |f: String| std::fs::read_to_string(dir.join(f)).unwrap();
    let plugin_file = file(format!("kongplugin-{name}-key-auth.yaml"));
    assert!(plugin_file.contains("plugin: key-auth"), "{plugin_file}");
    assert!(file(format!("kongconsumer-{name}-dev.yaml")).contains("username: dev"));
    assert!(file(format!("service-{name}.yaml")).contains("konghq.com/plugins"));
    let written = file(format!("secret-{secret_name}.yaml"));
    let o = run(render).await.unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(file(format!("secret-{secret_name}.yaml")), written);

    let o = run(args(&["destroy", "k8s"])).await.unwrap();
    outputs.push_str(&stdout(&o));
    outputs.push_str(&stderr(&o));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(at(kp(&format!("{name}-key-auth"))).is_none());
    assert!(at(format!("/api/v1/namespaces/{name}/secrets/{secret_name}")).is_none());
    let left = at(format!(
        "/apis/configuration.konghq.com/v1/namespaces/{name}/kongconsumers"
    ));
    assert_eq!(
        left.and_then(|l| l["items"].as_array().map(Vec::len))
            .unwrap_or(0),
        0
    );

    // The key was in the Secret only: in no output of any run.
    assert!(
        !outputs.contains(&first_key),
        "the consumer key leaked:\n{outputs}"
    );
}

/// The admin token taken from a secret (issue 19 §2: "the Admin API URL and token (a
/// secret)"): `kong.admin_token: { ssm: … }` is read from Parameter Store (moto) just
/// before the gateway step and reaches the Kong stand-in — which refuses every request
/// without it — as the `Kong-Admin-Token` header; it appears in no output: text, `-v` logs,
/// `--output json`, `validate --print`, nor the error of a refused (wrong) token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_from_parameter_store_reaches_kong_and_no_output() {
    let Some(s) = services() else {
        return;
    };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let name = unique("kong-token");
    let token = format!("kt-{name}-0f3e9c1d2b7a");
    let kube = deployctl_kube_standin::StandIn::start().await.unwrap();
    let kong = KongStandin::start_with(deployctl_kong_standin::Options::with_admin_token(
        token.clone(),
    ))
    .await
    .unwrap();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&s.aws.endpoint)
        .credentials_provider(aws_sdk_ssm::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let parameter = format!("/deployctl-test/{name}/kong-admin-token");
    let put = |value: String| {
        let (ssm, parameter) = (ssm.clone(), parameter.clone());
        async move {
            ssm.put_parameter()
                .name(parameter)
                .value(value)
                .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                .overwrite(true)
                .send()
                .await
                .unwrap();
        }
    };
    put(token.clone()).await;

    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    write_kubeconfig(&kubeconfig, &kube.url());
    let app = tmp.path().join("hello");
    copy_dir(&workspace().join("fixtures/apps/hello"), &app);
    std::fs::write(
        app.join("deploy.yaml"),
        format!(
            "{}kong:\n  openapi: openapi.yaml\n  admin_url: {}\n  admin_token: {{ ssm: {parameter} }}\n  consumer: {{ username: dev }}\n",
            k8s_yaml(&name, &s.registry.addr, &s.registry.user),
            kong.url()
        ),
    )
    .unwrap();
    std::fs::write(app.join("openapi.yaml"), SPEC).unwrap();
    let endpoint = s.aws.endpoint.clone();
    let run = |args: &'static [&'static str]| {
        let (s, app, kubeconfig, endpoint) =
            (s.clone(), app.clone(), kubeconfig.clone(), endpoint.clone());
        tokio::task::spawn_blocking(move || {
            k8s_cmd(&s, &app, &kubeconfig, args)
                .env("AWS_ENDPOINT_URL", endpoint)
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env("AWS_REGION", "us-east-1")
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .output()
                .unwrap()
        })
    };
    let mut outputs = String::new();

    // Without the header, the stand-in refuses (and records nothing).
    let anonymous = deployctl_kong::AdminApi::new(client(), &kong.url(), None).unwrap();
    let refused = anonymous.get("/services").await.unwrap_err().to_string();
    assert!(refused.contains("401"), "{refused}");

    let o = run(&["-v", "--output", "json", "deploy", "k8s", "--no-verify"])
        .await
        .unwrap();
    outputs.push_str(&stdout(&o));
    outputs.push_str(&stderr(&o));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let result = json_lines(&o).pop().unwrap();
    assert_eq!(result["gateway"]["result"], "configured", "{result}");
    // The writes were made, so every one carried the token.
    let writes = kong.take_mutations();
    assert!(
        writes.iter().any(|w| w.starts_with("PUT /services/")),
        "{writes:?}"
    );

    let o = run(&["-v", "status", "k8s"]).await.unwrap();
    outputs.push_str(&stdout(&o));
    outputs.push_str(&stderr(&o));
    assert!(stdout(&o).contains("route GET ~/pets$"), "{}", stdout(&o));
    let o = run(&["validate", "--print"]).await.unwrap();
    outputs.push_str(&stdout(&o));
    outputs.push_str(&stderr(&o));

    // A wrong token in Parameter Store: Kong's 401, the hint names kong.admin_token, and
    // the wrong value is not shown either.
    let wrong = format!("kt-wrong-{name}-77aa");
    put(wrong.clone()).await;
    let o = run(&["-v", "deploy", "k8s", "--no-verify"]).await.unwrap();
    let (out, err) = (stdout(&o), stderr(&o));
    outputs.push_str(&out);
    outputs.push_str(&err);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(err.contains("401"), "{err}");
    assert!(err.contains("kong.admin_token"), "{err}");
    assert!(
        !outputs.contains(&wrong),
        "the wrong token leaked:\n{outputs}"
    );
    assert!(!outputs.contains(&token), "the token leaked:\n{outputs}");
}

/// `mode: ingress-controller` on a cluster without the Kong Ingress Controller's CRDs (the
/// stand-in behind a proxy that answers 404 for their API group, as such a cluster does):
/// the deploy fails before anything is applied — exit 3, naming the kind and the CRDs to
/// install — and the cluster sees no write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_controller_mode_without_the_crds_fails_before_any_change() {
    use deployctl_testsupport::faults::{Canned, Effect, Match, Proxy, Rule, When};
    let Some(s) = services() else {
        return;
    };
    let kube = deployctl_kube_standin::StandIn::start().await.unwrap();
    let proxy = Proxy::start(&kube.url()).unwrap();
    proxy.push(Rule::new(
        Match::PathContains("/apis/configuration.konghq.com".into()),
        When::Every,
        Effect::Respond(Canned {
            status: 404,
            headers: vec![("content-type".into(), "application/json".into())],
            body: r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","details":{},"code":404}"#.into(),
        }),
    ));
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    write_kubeconfig(&kubeconfig, &proxy.url());
    let app = tmp.path().join("hello");
    copy_dir(&workspace().join("fixtures/apps/hello"), &app);
    let name = unique("kic-nocrd");
    std::fs::write(
        app.join("deploy.yaml"),
        format!(
            "{}kong:\n  openapi: openapi.yaml\n  mode: ingress-controller\n  consumer: {{ username: dev }}\n",
            k8s_yaml(&name, &s.registry.addr, &s.registry.user)
        ),
    )
    .unwrap();
    std::fs::write(app.join("openapi.yaml"), SECURED_SPEC).unwrap();
    kube.take_mutations();
    let o = tokio::task::spawn_blocking(move || {
        k8s_cmd(&s, &app, &kubeconfig, &["deploy", "k8s", "--no-verify"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{}{err}", stdout(&o));
    assert!(
        err.contains("the cluster does not serve configuration.konghq.com/v1 KongPlugin"),
        "{err}"
    );
    assert!(err.contains("Kong Ingress Controller's CRDs"), "{err}");
    let writes: Vec<String> = kube
        .take_mutations()
        .into_iter()
        .filter(|m| !m.starts_with("GET"))
        .collect();
    assert_eq!(writes, Vec::<String>::new());
}

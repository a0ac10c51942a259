//! Helpers of the reliability tests (`faults.rs`, `interrupt.rs`): deployctl wired through
//! fault proxies to moto, the registry and the Kubernetes stand-in; runs bounded in time;
//! what moto and the stand-in hold for an app.

#![allow(dead_code, clippy::unwrap_used)] // not every test binary uses every helper

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deployctl_testsupport::faults::Proxy;

/// The call timeout the runs use (`DEPLOYCTL_CALL_TIMEOUT`): short, so a stalled answer
/// costs seconds, not minutes.
pub const CALL_TIMEOUT: &str = "3s";

/// The services every reliability test needs.
#[derive(Debug, Clone)]
pub struct Services {
    pub docker: deployctl_testsupport::Docker,
    pub registry: deployctl_testsupport::Registry,
    pub aws: deployctl_testsupport::Aws,
}

/// The services, or `None` (printed; a failure when CI=true).
pub fn services() -> Option<Services> {
    let (Some(docker), Some(registry), Some(aws)) = (
        deployctl_testsupport::docker(),
        deployctl_testsupport::registry(),
        deployctl_testsupport::aws(),
    ) else {
        return None;
    };
    Some(Services {
        docker,
        registry,
        aws,
    })
}

/// Whether the full matrix was asked for.
pub fn full() -> bool {
    std::env::var("DEPLOYCTL_RELIABILITY_FULL").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A unique app name `<prefix>-<n>`.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 100_000_000;
    format!("{prefix}-{stamp}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// A copy of the hello app in `dir` with `yaml` as its deploy.yaml.
pub fn app_in(dir: &Path, yaml: &str) -> PathBuf {
    let app = dir.join("hello");
    crate::common::copy_dir(
        &crate::common::workspace().join("fixtures/apps/hello"),
        &app,
    );
    std::fs::write(app.join("deploy.yaml"), yaml).unwrap();
    app
}

pub fn lambda_yaml(name: &str) -> String {
    format!(
        "version: \"1.0\"\napp:\n  name: {name}\n  port: 8080\n  health_check_path: /health\nlambda:\n  enabled: true\n  region: us-east-1\n  function:\n    memory: ${{MEMORY:-256}}\n"
    )
}

pub fn k8s_yaml(name: &str, registry: &str, user: &str) -> String {
    format!(
        "version: \"1.0\"\napp:\n  name: {name}\n  port: 8080\n  health_check_path: /health\nregistry:\n  url: {registry}\n  username: {user}\n  password: ${{REGISTRY_PASSWORD}}\nkubernetes:\n  enabled: true\n  namespace: {name}\n"
    )
}

/// `deployctl args` in `app` for Lambda: AWS calls to `aws_endpoint`, the push to
/// `push_endpoint`.
pub fn lambda_cmd(
    s: &Services,
    app: &Path,
    aws_endpoint: &str,
    push_endpoint: &str,
    args: &[&str],
) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deployctl"));
    c.args(args)
        .current_dir(app)
        .env_remove("RUST_LOG")
        .env("DOCKER_HOST", &s.docker.host)
        .env("DOCKER_CONFIG", app.join("no-docker-config"))
        .env("AWS_ENDPOINT_URL", aws_endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            app.join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("DEPLOYCTL_ECR_PUSH_ENDPOINT", push_endpoint)
        .env("DEPLOYCTL_CALL_TIMEOUT", CALL_TIMEOUT);
    c
}

/// `deployctl args` in `app` for Kubernetes with `kubeconfig`.
pub fn k8s_cmd(s: &Services, app: &Path, kubeconfig: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deployctl"));
    c.args(args)
        .current_dir(app)
        .env_remove("RUST_LOG")
        .env("DOCKER_HOST", &s.docker.host)
        .env("DOCKER_CONFIG", app.join("no-docker-config"))
        .env("REGISTRY_PASSWORD", &s.registry.password)
        .env("KUBECONFIG", kubeconfig)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("DEPLOYCTL_CALL_TIMEOUT", CALL_TIMEOUT);
    c
}

/// A kubeconfig for the API server at `url` (the stand-in, or a proxy in front of it).
pub fn write_kubeconfig(path: &Path, url: &str) {
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: {url}\nusers:\n- name: standin\n  user:\n    token: standin-token\ncontexts:\n- name: standin\n  context:\n    cluster: standin\n    user: standin\n    namespace: default\ncurrent-context: standin\n"
        ),
    )
    .unwrap();
}

/// A finished (or killed) run.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
    /// The run outlived its limit and was killed.
    pub hung: bool,
}

impl Run {
    pub fn all(&self) -> String {
        format!(
            "exit {:?} after {:.1} s{}\n--- stdout\n{}--- stderr\n{}",
            self.code,
            self.took.as_secs_f64(),
            if self.hung { " (HUNG, killed)" } else { "" },
            self.stdout,
            self.stderr
        )
    }

    /// The first `error:` line of stderr.
    pub fn error_line(&self) -> String {
        self.stderr
            .lines()
            .find(|l| l.contains("error"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }
}

/// Starts `cmd` with its output collected by threads.
pub struct Running {
    child: Child,
    started: Instant,
    out: std::thread::JoinHandle<String>,
    err: std::thread::JoinHandle<String>,
}

impl Running {
    pub fn start(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let collect = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut s = Vec::new();
                let _ = r.read_to_end(&mut s);
                String::from_utf8_lossy(&s).into_owned()
            })
        };
        let out = collect(Box::new(child.stdout.take().unwrap()));
        let err = collect(Box::new(child.stderr.take().unwrap()));
        Self {
            child,
            started: Instant::now(),
            out,
            err,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
    }

    /// Waits until the process ends or `limit` has passed since it started (then kills it).
    pub fn finish(mut self, limit: Duration) -> Run {
        let mut hung = false;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if self.started.elapsed() > limit {
                hung = true;
                let _ = self.child.kill();
                break self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let took = self.started.elapsed();
        Run {
            code: status.code(),
            stdout: self.out.join().unwrap_or_default(),
            stderr: self.err.join().unwrap_or_default(),
            took,
            hung,
        }
    }
}

/// Runs `cmd` to its end, killing it after `limit`.
pub fn run(cmd: &mut Command, limit: Duration) -> Run {
    Running::start(cmd).finish(limit)
}

/// The registry address through `proxy` (`127.0.0.1:<port>`).
pub fn addr(proxy: &Proxy) -> String {
    proxy.addr().to_string()
}

// ---------------------------------------------------------------------------------------
// What moto holds for an app.

pub fn sdk(rt: &tokio::runtime::Runtime, endpoint: &str) -> aws_types::SdkConfig {
    rt.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_sts::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load(),
    )
}

/// Counts of the app's resources in moto, by kind: lambda function, alias, published
/// version, permission (on the alias), http api, iam role, log group, ecr repository, and
/// deploy lock parameters (SSM).
pub fn aws_inventory(
    rt: &tokio::runtime::Runtime,
    endpoint: &str,
    app: &str,
) -> BTreeMap<&'static str, usize> {
    let sdk = sdk(rt, endpoint);
    let c = deployctl_aws::AwsClients::new(&sdk);
    let ecr = aws_sdk_ecr::Client::new(&sdk);
    rt.block_on(async {
        let mut out = BTreeMap::new();
        let function = c
            .lambda
            .get_function()
            .function_name(app)
            .send()
            .await
            .is_ok();
        out.insert("lambda function", usize::from(function));
        let (mut aliases, mut versions, mut permissions) = (0, 0, 0);
        if function {
            aliases = c
                .lambda
                .list_aliases()
                .function_name(app)
                .send()
                .await
                .map_or(0, |a| a.aliases().len());
            versions = c
                .lambda
                .list_versions_by_function()
                .function_name(app)
                .send()
                .await
                .map_or(0, |v| {
                    v.versions()
                        .iter()
                        .filter(|v| v.version() != Some("$LATEST"))
                        .count()
                });
            // The permission is on the alias (moto answers the same for any qualifier).
            if let Ok(p) = c
                .lambda
                .get_policy()
                .function_name(app)
                .qualifier("live")
                .send()
                .await
            {
                let doc: serde_json::Value =
                    serde_json::from_str(p.policy().unwrap_or("{}")).unwrap_or_default();
                permissions = doc["Statement"].as_array().map_or(0, Vec::len);
            }
        }
        out.insert("alias", aliases);
        out.insert("version", versions);
        out.insert("permission", permissions);
        let mut apis = 0;
        let mut token: Option<String> = None;
        loop {
            let page = c
                .apigateway
                .get_apis()
                .set_next_token(token.clone())
                .send()
                .await
                .unwrap();
            apis += page
                .items()
                .iter()
                .filter(|a| a.name() == Some(app))
                .count();
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        out.insert("http api", apis);
        let role = c
            .iam
            .get_role()
            .role_name(deployctl_aws::role_name(app))
            .send()
            .await
            .is_ok();
        out.insert("iam role", usize::from(role));
        let groups = c
            .logs
            .describe_log_groups()
            .log_group_name_prefix(format!("/aws/lambda/{app}"))
            .send()
            .await
            .map_or(0, |g| {
                g.log_groups()
                    .iter()
                    .filter(|g| g.log_group_name() == Some(&format!("/aws/lambda/{app}")))
                    .count()
            });
        out.insert("log group", groups);
        let repos = ecr
            .describe_repositories()
            .repository_names(app)
            .send()
            .await
            .map_or(0, |r| r.repositories().len());
        out.insert("ecr repository", repos);
        let locks = c
            .ssm
            .get_parameters_by_path()
            .path(format!("/deployctl/locks/{app}"))
            .recursive(true)
            .send()
            .await
            .map_or(0, |p| p.parameters().len());
        out.insert("lock parameter", locks);
        out
    })
}

/// What a converged Lambda deploy leaves: one of each (one version, one permission), and
/// no deploy lock.
pub fn lambda_expected() -> BTreeMap<&'static str, usize> {
    let mut want: BTreeMap<&'static str, usize> = [
        "lambda function",
        "alias",
        "version",
        "permission",
        "http api",
        "iam role",
        "log group",
        "ecr repository",
    ]
    .into_iter()
    .map(|k| (k, 1))
    .collect();
    want.insert("lock parameter", 0);
    want
}

// ---------------------------------------------------------------------------------------
// What the stand-in holds for an app.

/// `GET url` (HTTP/1.1, plain) → JSON.
pub fn get_json(base: &str, path: &str) -> Option<serde_json::Value> {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer standin-token\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    serde_json::from_str(&body).ok()
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n.min(rest.len())]);
        body = rest.get(n + 2..).unwrap_or_default();
    }
    out
}

/// Objects per kind in namespace `ns` (every namespaced kind the stand-in serves; Events
/// left out: the cluster writes them, not deployctl), plus `Namespace` (0 or 1) and
/// `history revision` (keys of the app's history ConfigMap).
pub fn k8s_inventory(standin: &str, ns: &str, app: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for kind in deployctl_kube_standin::KINDS {
        if kind.kind == "Event" {
            continue;
        }
        let prefix = if kind.group.is_empty() {
            format!("/api/{}", kind.version)
        } else {
            format!("/apis/{}/{}", kind.group, kind.version)
        };
        let n = if kind.namespaced {
            get_json(
                standin,
                &format!("{prefix}/namespaces/{ns}/{}", kind.plural),
            )
            .and_then(|v| v["items"].as_array().map(Vec::len))
            .unwrap_or(0)
        } else {
            usize::from(get_json(standin, &format!("{prefix}/{}/{ns}", kind.plural)).is_some())
        };
        out.insert(kind.kind.to_owned(), n);
    }
    let revisions = get_json(
        standin,
        &format!("/api/v1/namespaces/{ns}/configmaps/{app}-deployctl-history"),
    )
    .and_then(|v| {
        v["data"]
            .as_object()
            .map(|d| d.keys().filter(|k| k.starts_with("revision-")).count())
    })
    .unwrap_or(0);
    out.insert("history revision".to_owned(), revisions);
    out
}

/// The kinds of `inv` with more than one object, where one is the most a converged deploy
/// of the hello app leaves (ConfigMap: the app's and the history; Pod: the replicas).
pub fn k8s_duplicates(inv: &BTreeMap<String, usize>) -> Vec<String> {
    inv.iter()
        .filter(|(k, n)| {
            let max = match k.as_str() {
                "ConfigMap" => 2,
                "Pod" => usize::MAX,
                _ => 1,
            };
            **n > max
        })
        .map(|(k, n)| format!("{n} {k}"))
        .collect()
}

/// The kinds of `inv` with any object left.
pub fn leftovers<K: std::fmt::Display>(inv: &BTreeMap<K, usize>) -> Vec<String> {
    inv.iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{n} {k}"))
        .collect()
}

/// The kinds whose count differs from `want`.
pub fn differences(
    got: &BTreeMap<&'static str, usize>,
    want: &BTreeMap<&'static str, usize>,
) -> Vec<String> {
    want.iter()
        .filter(|(k, n)| got.get(*k) != Some(n))
        .map(|(k, n)| format!("{k}: {} (want {n})", got.get(k).copied().unwrap_or(0)))
        .collect()
}

/// Prints a table: a header row, then rows, columns padded.
pub fn print_table(title: &str, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    println!("\n{title}\n");
    println!("{}", line(header.iter().map(|h| (*h).to_owned()).collect()));
    println!(
        "|{}|",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("|")
    );
    for r in rows {
        println!("{}", line(r.clone()));
    }
    println!();
}

/// The `state` of each revision in the app's history ConfigMap, oldest first (`good` when a
/// record has none, as deployctl reads it).
pub fn history_states(standin: &str, ns: &str, app: &str) -> Vec<String> {
    let Some(cm) = get_json(
        standin,
        &format!("/api/v1/namespaces/{ns}/configmaps/{app}-deployctl-history"),
    ) else {
        return Vec::new();
    };
    let Some(data) = cm["data"].as_object() else {
        return Vec::new();
    };
    let mut revisions: Vec<(u64, String)> = data
        .iter()
        .filter_map(|(k, v)| {
            let n = k.strip_prefix("revision-")?.parse().ok()?;
            let doc: serde_yaml::Value = serde_yaml::from_str(v.as_str()?).ok()?;
            let state = doc
                .get("state")
                .and_then(serde_yaml::Value::as_str)
                .unwrap_or("good")
                .to_owned();
            Some((n, state))
        })
        .collect();
    revisions.sort();
    revisions.into_iter().map(|(_, s)| s).collect()
}

// ---------------------------------------------------------------------------------------

/// One target as the reliability tests drive it: deployctl wired through a fault proxy,
/// and what a converged deploy and a destroy must leave.
pub trait Harness {
    /// The proxy the target's requests go through.
    fn proxy(&self) -> &Proxy;
    /// `lambda` or `k8s`.
    fn target(&self) -> &'static str;
    /// `deployctl <args>` in `app`.
    fn cmd(&self, app: &Path, args: &[&str]) -> Command;
    fn deploy_args(&self) -> Vec<&'static str>;
    fn destroy_args(&self) -> Vec<&'static str>;
    fn yaml(&self, name: &str) -> String;
    /// Problems with what is deployed for `name` after a converged deploy (`update`: the
    /// changed setting of a second deploy was applied).
    fn not_one_of_each(&self, name: &str, update: bool) -> Vec<String>;
    /// What is left of `name` after destroy.
    fn left(&self, name: &str) -> Vec<String>;
    /// Whether the proxy stands in front of the registry (pushes go through it).
    fn proxies_registry(&self) -> bool {
        false
    }
}

/// Lambda on moto, with the proxy in front of moto.
pub struct LambdaHarness {
    pub s: Services,
    pub rt: tokio::runtime::Runtime,
    pub aws: Proxy,
}

impl LambdaHarness {
    pub fn start(s: Services) -> Self {
        let aws = Proxy::start(&s.aws.endpoint).unwrap();
        Self {
            s,
            rt: tokio::runtime::Runtime::new().unwrap(),
            aws,
        }
    }

    fn inventory(&self, name: &str) -> BTreeMap<&'static str, usize> {
        aws_inventory(&self.rt, &self.s.aws.endpoint, name)
    }
}

impl Harness for LambdaHarness {
    fn proxy(&self) -> &Proxy {
        &self.aws
    }
    fn target(&self) -> &'static str {
        "lambda"
    }
    fn cmd(&self, app: &Path, args: &[&str]) -> Command {
        lambda_cmd(&self.s, app, &self.aws.url(), &self.s.registry.addr, args)
    }
    fn deploy_args(&self) -> Vec<&'static str> {
        vec!["deploy", "lambda", "--no-verify"]
    }
    fn destroy_args(&self) -> Vec<&'static str> {
        vec!["destroy", "lambda", "--purge-images"]
    }
    fn yaml(&self, name: &str) -> String {
        lambda_yaml(name)
    }
    fn not_one_of_each(&self, name: &str, update: bool) -> Vec<String> {
        let mut want = lambda_expected();
        if update {
            want.insert("version", 2);
        }
        differences(&self.inventory(name), &want)
    }
    fn left(&self, name: &str) -> Vec<String> {
        leftovers(&self.inventory(name))
    }
}

/// Kubernetes on the stand-in (its Services' proxy answered by a local HTTP server), with
/// the proxy in front of the stand-in or of the registry.
pub struct K8sHarness {
    pub s: Services,
    _rt: tokio::runtime::Runtime,
    pub standin: deployctl_kube_standin::StandIn,
    kubeconfig: tempfile::TempPath,
    pub proxy: Proxy,
    /// The registry deploys push to (the proxy, when it stands in front of the registry).
    registry: String,
}

impl K8sHarness {
    pub fn start(s: Services, proxy_the_registry: bool) -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let standin = rt
            .block_on(deployctl_kube_standin::StandIn::start())
            .unwrap();
        let app = rt.block_on(deployctl_testsupport::http_server(200));
        standin.set_default_proxy_target(Some(&app.url));
        let kubeconfig = tempfile::NamedTempFile::new().unwrap().into_temp_path();
        let (proxy, registry) = if proxy_the_registry {
            let p = Proxy::start(&s.registry.addr).unwrap();
            write_kubeconfig(&kubeconfig, &standin.url());
            let registry = addr(&p);
            (p, registry)
        } else {
            let p = Proxy::start(&standin.url()).unwrap();
            write_kubeconfig(&kubeconfig, &p.url());
            (p, s.registry.addr.clone())
        };
        Self {
            s,
            _rt: rt,
            standin,
            kubeconfig,
            proxy,
            registry,
        }
    }

    fn inventory(&self, name: &str) -> BTreeMap<String, usize> {
        k8s_inventory(&self.standin.url(), name, name)
    }
}

impl Harness for K8sHarness {
    fn proxy(&self) -> &Proxy {
        &self.proxy
    }
    fn target(&self) -> &'static str {
        "k8s"
    }
    fn cmd(&self, app: &Path, args: &[&str]) -> Command {
        k8s_cmd(&self.s, app, &self.kubeconfig, args)
    }
    fn deploy_args(&self) -> Vec<&'static str> {
        vec!["deploy", "k8s"]
    }
    fn destroy_args(&self) -> Vec<&'static str> {
        vec!["destroy", "k8s"]
    }
    fn yaml(&self, name: &str) -> String {
        k8s_yaml(name, &self.registry, &self.s.registry.user)
    }
    /// One of each, and the one revision of the history recorded as good.
    fn not_one_of_each(&self, name: &str, _update: bool) -> Vec<String> {
        let inv = self.inventory(name);
        let mut wrong = k8s_duplicates(&inv);
        for kind in ["Deployment", "ReplicaSet", "Service", "history revision"] {
            if inv.get(kind) != Some(&1) {
                wrong.push(format!("{kind}: {:?} (want 1)", inv.get(kind)));
            }
        }
        let states = history_states(&self.standin.url(), name, name);
        if states != ["good"] {
            wrong.push(format!("history states {states:?} (want [\"good\"])"));
        }
        wrong
    }
    fn left(&self, name: &str) -> Vec<String> {
        leftovers(&self.inventory(name))
    }
    fn proxies_registry(&self) -> bool {
        self.registry != self.s.registry.addr
    }
}

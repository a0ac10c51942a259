//! Issue 15 §5, "Secrets, end to end": the real binary runs every command that reads a
//! config — validate --print, plan, deploy (dry run, first, unchanged, changed, with a new
//! secret value), push, render (stdout and --out), status, logs, history, rollback, destroy —
//! in text, `-o json` and `-v -v`, with markers as a `secrets:` value, the registry password,
//! the ECR token and the AWS secret key. The day-two commands (status, logs, history,
//! rollback, destroy) run without the secret variables, as users run them. Every byte of
//! stdout and stderr, every file the runs write, every object the Kubernetes stand-in stores,
//! what moto holds for the app (Lambda, API Gateway, IAM, ECR, logs) and the Docker engine's
//! view of the local container and image are searched for each marker, raw and base64 (every
//! alignment, both alphabets, and base64 of base64).
//!
//! The markers may appear only where they are needed to run the app:
//! - the Kubernetes Secrets (the app's, and the image-pull Secret for the registry password):
//!   the stand-in's Secret `data`, the Secret files `render --out` writes, and the Secret
//!   documents `render` prints for `kubectl apply -f -`;
//! - the Lambda function's environment (docs/LAMBDA.md), in moto;
//! - the local container's environment (`Config.Env`), in the Docker engine.
//!
//! Each of those is also checked to *hold* the marker, so a search that finds nothing proves
//! something. Two apps run: one on Lambda, Kubernetes and local with ECR (the ECR token), one
//! on Kubernetes and local with a private registry (the htpasswd password). See
//! docs/RELIABILITY.md, "Secrets".

#![allow(clippy::unwrap_used)] // a failure here is a test failure

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{copy_dir, workspace};
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// Markers and the search for them

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64(alphabet: &[u8; 64], bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
        }
        for _ in chunk.len()..3 {
            out.push('=');
        }
    }
    out
}

/// The base64 characters that depend only on `value` when it is encoded after `k` other
/// bytes (k = 0, 1, 2): whatever surrounds the value, its encoding contains one of these.
fn base64_cores(alphabet: &[u8; 64], value: &[u8]) -> Vec<String> {
    (0..3)
        .map(|k| {
            let mut bytes = vec![0_u8; k];
            bytes.extend_from_slice(value);
            let enc = base64(alphabet, &bytes);
            let start = (8 * k).div_ceil(6);
            let end = 8 * (k + value.len()) / 6;
            enc[start..end].to_owned()
        })
        .collect()
}

/// One form of one secret value.
#[derive(Debug, Clone)]
struct Needle {
    what: String,
    bytes: Vec<u8>,
}

/// `value` raw, base64 (every alignment, both alphabets) and base64 of that (a base64 value
/// inside base64, as in a `.dockerconfigjson` or a Secret's data in a request body).
fn forms(name: &str, value: &str) -> Vec<Needle> {
    let mut out = vec![Needle {
        what: name.to_owned(),
        bytes: value.as_bytes().to_vec(),
    }];
    let push = |out: &mut Vec<Needle>, what: String, core: String| {
        if core.len() >= KEY && out.iter().all(|n| n.bytes != core.as_bytes()) {
            out.push(Needle {
                what,
                bytes: core.into_bytes(),
            });
        }
    };
    for (alphabet, label) in [(STD, "base64"), (URL, "base64url")] {
        for (k, core) in base64_cores(alphabet, value.as_bytes())
            .into_iter()
            .enumerate()
        {
            for (j, twice) in base64_cores(alphabet, core.as_bytes())
                .into_iter()
                .enumerate()
            {
                push(
                    &mut out,
                    format!("{name} ({label} twice, offsets {k}, {j})"),
                    twice,
                );
            }
            push(&mut out, format!("{name} ({label}, offset {k})"), core);
        }
    }
    out
}

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len().max(1))
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// Needles are found by their first `KEY` bytes, then compared whole.
const KEY: usize = 8;

/// Every place a marker was found where it must not be, and the count of bytes searched.
#[derive(Default)]
struct Audit {
    needles: Vec<Needle>,
    index: std::collections::HashMap<[u8; KEY], Vec<usize>>,
    leaks: Vec<String>,
    places: usize,
    bytes: usize,
}

impl Audit {
    fn add(&mut self, name: &str, value: &str) {
        assert!(value.len() >= 12, "{name}: a marker this short finds noise");
        for n in forms(name, value) {
            let key: [u8; KEY] = n.bytes[..KEY].try_into().unwrap();
            self.index.entry(key).or_default().push(self.needles.len());
            self.needles.push(n);
        }
    }

    /// The needles found in `bytes`, with their offsets.
    fn found(&self, bytes: &[u8]) -> Vec<(&Needle, usize)> {
        let mut out = Vec::new();
        for (at, window) in bytes.windows(KEY).enumerate() {
            let Some(ids) = self.index.get(window) else {
                continue;
            };
            for &id in ids {
                let n = &self.needles[id];
                if bytes[at..].starts_with(&n.bytes) {
                    out.push((n, at));
                }
            }
        }
        out
    }

    /// Records a leak for every marker in `bytes`, which must hold none.
    fn check(&mut self, place: &str, bytes: &[u8]) {
        self.places += 1;
        self.bytes += bytes.len();
        let found: Vec<String> = self
            .found(bytes)
            .into_iter()
            .map(|(n, at)| {
                let from = at.saturating_sub(80);
                let to = (at + n.bytes.len() + 80).min(bytes.len());
                format!(
                    "{} in {place} at byte {at}: …{}…",
                    n.what,
                    String::from_utf8_lossy(&bytes[from..to]).replace('\n', "⏎")
                )
            })
            .collect();
        self.leaks.extend(found);
    }

    /// Whether `bytes` holds the marker `name` in some form (the positive controls).
    fn holds(&self, name: &str, bytes: &[u8]) -> bool {
        let prefix = format!("{name} (");
        self.found(bytes)
            .iter()
            .any(|(n, _)| n.what == name || n.what.starts_with(&prefix))
    }
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}{:x}{:x}", nanos, std::process::id())
}

// ---------------------------------------------------------------------------------------
// Plain HTTP/1.0 GETs (stand-in, moto, the Docker socket): whole body, no client library

fn http_get(addr: &str, path: &str) -> (u16, Vec<u8>) {
    request(addr, "GET", path, &[], "")
}

fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    exchange(&mut s, method, path, headers, body)
}

fn docker_get(host: &str, path: &str) -> (u16, Vec<u8>) {
    let sock = host.strip_prefix("unix://").unwrap_or(host);
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    exchange(&mut s, "GET", path, &[], "")
}

/// One HTTP/1.0 exchange (the server closes the connection after the body).
fn exchange(
    s: &mut (impl Read + Write),
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<u8>) {
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = find_all(&raw, b"\r\n\r\n")
        .first()
        .copied()
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut body = raw[(split + 4).min(raw.len())..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find_all(b, b"\r\n").first().copied() {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..eol])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
    out
}

// ---------------------------------------------------------------------------------------
// The run: one app dir, every command audited

struct Run {
    phase: &'static str,
    root: PathBuf,
    app: PathBuf,
    env: Vec<(String, String)>,
    audit: Audit,
    /// Files under `root` as last seen: (modified, length).
    files: BTreeMap<PathBuf, (SystemTime, u64)>,
    /// The Secret files `render --out` wrote.
    secret_files: Vec<PathBuf>,
    commands: usize,
}

/// An `extra` value that removes the variable: the day-two commands (status, logs,
/// history, rollback, destroy) run as a user runs them, without the secrets they never use.
const UNSET: &str = "\u{0}unset";

fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, (SystemTime, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if meta.is_dir() {
            walk(&e.path(), out);
        } else if meta.is_file() {
            out.insert(
                e.path(),
                (meta.modified().unwrap_or(UNIX_EPOCH), meta.len()),
            );
        }
    }
}

impl Run {
    fn snapshot(&self) -> BTreeMap<PathBuf, (SystemTime, u64)> {
        let mut files = BTreeMap::new();
        walk(&self.root, &mut files);
        files
    }

    /// Runs `deployctl args` with the run's environment and `extra`; audits stdout, stderr
    /// and every file it created or changed.
    fn deployctl<S: AsRef<str>>(&mut self, args: &[S], extra: &[(&str, &str)]) -> Output {
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        self.commands += 1;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_deployctl"));
        cmd.args(&args).current_dir(&self.app).env_clear();
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            if *v == UNSET {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        let o = cmd.output().unwrap();
        let label = format!("{}: deployctl {}", self.phase, args.join(" "));
        let is_render = args.contains(&"render") && !args.contains(&"--out");
        if is_render {
            self.check_render_stdout(&label, &o.stdout, args.contains(&"json"));
        } else {
            self.audit.check(&format!("{label} (stdout)"), &o.stdout);
        }
        self.audit.check(&format!("{label} (stderr)"), &o.stderr);
        let now = self.snapshot();
        for (path, stamp) in &now {
            if self.files.get(path) == Some(stamp) {
                continue;
            }
            let bytes = std::fs::read(path).unwrap_or_default();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if args.contains(&"--out") && name.starts_with("secret-") {
                // The one file allowed to hold the values: it must, or the search is blind.
                assert!(
                    self.audit.holds("secrets: value", &bytes)
                        || self.audit.holds("registry password", &bytes),
                    "{label}: {} holds no marker",
                    path.display()
                );
                self.secret_files.push(path.clone());
                continue;
            }
            if self.secret_files.contains(path) {
                continue;
            }
            self.audit
                .check(&format!("{label} (wrote {})", path.display()), &bytes);
        }
        self.files = now;
        o
    }

    /// `render` without --out prints the Secrets too (for `kubectl apply -f -`): they are
    /// the allowed place; every other byte is searched.
    fn check_render_stdout(&mut self, label: &str, stdout: &[u8], json: bool) {
        let text = String::from_utf8_lossy(stdout);
        let mut secret_docs = 0;
        let mut rest = String::new();
        if json {
            for line in text.lines() {
                let mut v: Value = serde_json::from_str(line).unwrap();
                if let Some(ms) = v.get_mut("manifests").and_then(Value::as_array_mut) {
                    ms.retain(|m| {
                        let secret = m["kind"] == "Secret";
                        secret_docs += usize::from(secret);
                        !secret
                    });
                }
                rest.push_str(&v.to_string());
                rest.push('\n');
            }
        } else {
            for doc in text.split("---\n") {
                if doc.lines().any(|l| l == "kind: Secret") {
                    assert!(
                        self.audit.holds("secrets: value", doc.as_bytes())
                            || self.audit.holds("registry password", doc.as_bytes()),
                        "{label}: a Secret without a marker"
                    );
                    secret_docs += 1;
                } else {
                    rest.push_str(doc);
                }
            }
        }
        assert!(secret_docs >= 1, "{label}: no Secret rendered: {text}");
        self.audit
            .check(&format!("{label} (stdout)"), rest.as_bytes());
    }

    /// Like [`Run::deployctl`], and the command must succeed.
    fn ok<S: AsRef<str> + std::fmt::Debug>(
        &mut self,
        args: &[S],
        extra: &[(&str, &str)],
    ) -> Output {
        let o = self.deployctl(args, extra);
        assert!(
            o.status.success(),
            "{}: deployctl {args:?} failed: {}{}",
            self.phase,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }
}

impl Drop for Run {
    /// A failed test still removes what it deployed (unaudited: the test has failed).
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_deployctl"));
            cmd.args(["destroy", "--purge-images"])
                .current_dir(&self.app)
                .env_clear()
                .envs(self.env.iter().map(|(k, v)| (k, v)));
            let _ = cmd.output();
        }
    }
}

fn result_of(o: &Output) -> Value {
    let text = String::from_utf8_lossy(&o.stdout);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Every target's plan of a JSON deploy result changes nothing.
fn all_unchanged(result: &Value) -> bool {
    result["targets"].as_array().unwrap().iter().all(|t| {
        t["plan"]["changes"]
            .as_array()
            .is_none_or(|cs| cs.iter().all(|c| c["action"] == "unchanged"))
    })
}

// ---------------------------------------------------------------------------------------
// The services' state

/// Every object the stand-in stores, in every namespace: markers only in the `data` of the
/// Secrets `allowed` names (namespace, name, the marker it must hold).
fn audit_standin(audit: &mut Audit, url: &str, phase: &str, allowed: &[(&str, &str, &str)]) {
    let addr = url.trim_start_matches("http://");
    let mut seen: Vec<String> = Vec::new();
    for k in deployctl_kube_standin::KINDS {
        let path = if k.group.is_empty() {
            format!("/api/{}/{}", k.version, k.plural)
        } else {
            format!("/apis/{}/{}/{}", k.group, k.version, k.plural)
        };
        let (status, body) = http_get(addr, &path);
        assert_eq!(
            status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&body)
        );
        let list: Value = serde_json::from_slice(&body).unwrap();
        for item in list["items"].as_array().unwrap() {
            let ns = item["metadata"]["namespace"].as_str().unwrap_or_default();
            let name = item["metadata"]["name"].as_str().unwrap_or_default();
            let place = format!("{phase}: stand-in {} {ns}/{name}", k.kind);
            seen.push(format!("{} {name}", k.kind));
            let mut item = item.clone();
            if let Some((_, _, marker)) = allowed
                .iter()
                .find(|(n, s, _)| k.kind == "Secret" && *n == ns && *s == name)
            {
                let data = item.as_object_mut().unwrap().remove("data");
                let data = serde_json::to_vec(&data).unwrap();
                assert!(
                    audit.holds(marker, &data),
                    "{place}: its data lacks the {marker}"
                );
                seen.push(format!("allowed {name}"));
            }
            audit.check(&place, &serde_json::to_vec(&item).unwrap());
        }
    }
    for (_, name, _) in allowed {
        assert!(
            seen.contains(&format!("allowed {name}")),
            "{phase}: no Secret {name}: {seen:?}"
        );
    }
    for kind in ["Deployment", "ReplicaSet", "Pod", "ConfigMap"] {
        assert!(
            seen.iter().any(|s| s.starts_with(&format!("{kind} "))),
            "{phase}: the stand-in holds no {kind}: {seen:?}"
        );
    }
    assert!(
        seen.iter().any(|s| s.ends_with("-deployctl-history")),
        "{phase}: no history ConfigMap was searched: {seen:?}"
    );
}

/// A JSON body; anything else (an HTML error page) as one string, still searched.
fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| {
        let text = String::from_utf8_lossy(bytes).into_owned();
        eprintln!("not JSON: {}", text.chars().take(200).collect::<String>());
        Value::String(text)
    })
}

/// A moto API call, routed by the service named in the (unchecked) signature.
fn moto(
    endpoint: &str,
    service: &str,
    method: &str,
    path: &str,
    target: &str,
    body: &str,
) -> Vec<u8> {
    let addr = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
    );
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("Accept", "application/json"),
    ];
    if !target.is_empty() {
        headers.push(("X-Amz-Target", target));
        headers.push(("Content-Type", "application/x-amz-json-1.1"));
    }
    let (status, bytes) = request(addr, method, path, &headers, body);
    // 404 for what is not there, 400 for an ECR repository without a policy.
    assert!(
        (200..500).contains(&status),
        "moto {service} {method} {path} {target}: HTTP {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    bytes
}

/// What moto holds for the app `function` (and every IAM role and policy, HTTP API, ECR
/// repository and log group of the account): markers only in the function's environment
/// (`Environment` of the function and of its versions). Returns whether that held the
/// secret.
fn audit_moto(audit: &mut Audit, endpoint: &str, phase: &str, function: &str) -> bool {
    let call =
        |service: &str, method: &str, path: &str| moto(endpoint, service, method, path, "", "");
    let json_call = |service: &str, target: &str, body: &str| {
        moto(endpoint, service, "POST", "/", target, body)
    };
    let mut env_holds = false;
    let mut strip_env = |audit: &Audit, v: &mut Value| {
        if let Some(env) = v.as_object_mut().and_then(|o| o.remove("Environment")) {
            env_holds |= audit.holds("secrets: value", &serde_json::to_vec(&env).unwrap());
        }
    };
    let mut bodies: Vec<(String, Vec<u8>)> = Vec::new();

    // Lambda: every function (ours without its environment), versions, aliases, policy, URL.
    let mut list = json(&call("lambda", "GET", "/2015-03-31/functions/"));
    for f in list
        .get_mut("Functions")
        .and_then(Value::as_array_mut)
        .unwrap()
    {
        if f["FunctionName"] == function {
            strip_env(audit, f);
        }
    }
    bodies.push((
        "lambda ListFunctions".into(),
        serde_json::to_vec(&list).unwrap(),
    ));
    let fn_path = format!("/2015-03-31/functions/{function}");
    let mut get = json(&call("lambda", "GET", &fn_path));
    if let Some(c) = get.get_mut("Configuration") {
        strip_env(audit, c);
    }
    bodies.push((
        "lambda GetFunction".into(),
        serde_json::to_vec(&get).unwrap(),
    ));
    let mut versions = json(&call("lambda", "GET", &format!("{fn_path}/versions")));
    let versions_list = versions.get_mut("Versions").and_then(Value::as_array_mut);
    for v in versions_list.into_iter().flatten() {
        strip_env(audit, v);
    }
    bodies.push((
        "lambda ListVersionsByFunction".into(),
        serde_json::to_vec(&versions).unwrap(),
    ));
    for (what, path) in [
        ("lambda ListAliases", format!("{fn_path}/aliases")),
        ("lambda GetPolicy", format!("{fn_path}/policy")),
        (
            "lambda GetFunctionUrlConfig",
            format!("/2021-10-31/functions/{function}/url"),
        ),
        (
            "lambda ListTags",
            format!("/2017-03-31/tags/arn:aws:lambda:us-east-1:123456789012:function:{function}"),
        ),
    ] {
        bodies.push((what.into(), call("lambda", "GET", &path)));
    }

    // API Gateway: every HTTP API; ours with its integrations, routes and stages.
    let apis = call("apigateway", "GET", "/v2/apis");
    let list: Value = serde_json::from_slice(&apis).unwrap();
    for api in list["items"].as_array().into_iter().flatten() {
        if api["name"] == function {
            let id = api["apiId"].as_str().unwrap();
            for part in ["integrations", "routes", "stages"] {
                let path = format!("/v2/apis/{id}/{part}");
                bodies.push((
                    format!("apigateway GET {path}"),
                    call("apigateway", "GET", &path),
                ));
            }
        }
    }
    bodies.push(("apigateway GetApis".into(), apis));

    // IAM: roles (trust and inline policies, tags), users, groups, customer policies.
    bodies.push((
        "iam GetAccountAuthorizationDetails".into(),
        call(
            "iam",
            "GET",
            "/?Action=GetAccountAuthorizationDetails&Version=2010-05-08&Filter.member.1=Role&Filter.member.2=User&Filter.member.3=Group&Filter.member.4=LocalManagedPolicy",
        ),
    ));

    // ECR: repositories, their tags, images and policies.
    let ecr = "AmazonEC2ContainerRegistry_V20150921";
    let repos = json_call("ecr", &format!("{ecr}.DescribeRepositories"), "{}");
    let list: Value = serde_json::from_slice(&repos).unwrap();
    for r in list["repositories"].as_array().into_iter().flatten() {
        if r["repositoryName"] == function {
            let arn = r["repositoryArn"].as_str().unwrap();
            let name = serde_json::json!({ "repositoryName": function }).to_string();
            for (op, body) in [
                (
                    "ListTagsForResource",
                    serde_json::json!({ "resourceArn": arn }).to_string(),
                ),
                ("DescribeImages", name.clone()),
                ("GetLifecyclePolicy", name.clone()),
                ("GetRepositoryPolicy", name.clone()),
            ] {
                bodies.push((
                    format!("ecr {op}"),
                    json_call("ecr", &format!("{ecr}.{op}"), &body),
                ));
            }
        }
    }
    bodies.push(("ecr DescribeRepositories".into(), repos));

    // CloudWatch Logs: log groups and the app's tags.
    bodies.push((
        "logs DescribeLogGroups".into(),
        json_call("logs", "Logs_20140328.DescribeLogGroups", "{}"),
    ));
    let group =
        serde_json::json!({ "logGroupName": format!("/aws/lambda/{function}") }).to_string();
    bodies.push((
        "logs ListTagsLogGroup".into(),
        json_call("logs", "Logs_20140328.ListTagsLogGroup", &group),
    ));

    for (what, bytes) in bodies {
        audit.check(&format!("{phase}: moto {what}"), &bytes);
    }
    env_holds
}

/// The local container and its image as the engine reports them: markers only in the
/// container's `Config.Env`. Returns whether that held the secret.
fn audit_docker(audit: &mut Audit, host: &str, phase: &str, app: &str) -> bool {
    let (status, body) = docker_get(host, &format!("/containers/deployctl-{app}/json"));
    assert_eq!(status, 200, "{phase}: inspect the local container");
    let mut c: Value = serde_json::from_slice(&body).unwrap();
    let env = c["Config"]
        .as_object_mut()
        .unwrap()
        .remove("Env")
        .unwrap_or_default();
    let holds = audit.holds("secrets: value", &serde_json::to_vec(&env).unwrap());
    audit.check(
        &format!("{phase}: docker inspect deployctl-{app}"),
        &serde_json::to_vec(&c).unwrap(),
    );
    let image = c["Image"].as_str().unwrap().to_owned();
    for path in [
        format!("/images/{image}/json"),
        format!("/images/{image}/history"),
    ] {
        let (status, body) = docker_get(host, &path);
        assert_eq!(status, 200, "{phase}: GET {path}");
        audit.check(&format!("{phase}: docker GET {path}"), &body);
    }
    holds
}

// ---------------------------------------------------------------------------------------

struct Services {
    docker: deployctl_testsupport::Docker,
    reg: deployctl_testsupport::Registry,
    aws: deployctl_testsupport::Aws,
}

impl Services {
    /// What a run needs to deploy to Lambda on moto (pushes to the test registry), with
    /// `aws_key` as the secret access key.
    fn moto_env(&self, aws_key: &str) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.aws.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", aws_key),
            ("DEPLOYCTL_ECR_PUSH_ENDPOINT", self.reg.addr.as_str()),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec()
    }
}

fn services() -> Option<Services> {
    let (Some(docker), Some(reg), Some(aws)) = (
        deployctl_testsupport::docker(),
        deployctl_testsupport::registry(),
        deployctl_testsupport::aws(),
    ) else {
        return None;
    };
    let hello = workspace().join("fixtures/apps/hello/hello");
    assert!(
        hello.is_file(),
        "{} is missing: run `cargo xtask fixtures` first",
        hello.display()
    );
    Some(Services { docker, reg, aws })
}

/// The ECR token moto hands out, as deployctl will receive it: (token, password).
fn ecr_token(rt: &tokio::runtime::Runtime, endpoint: &str) -> (String, String) {
    let conf = aws_sdk_ecr::Config::builder()
        .behavior_version(aws_sdk_ecr::config::BehaviorVersion::latest())
        .region(aws_sdk_ecr::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_ecr::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .build();
    let out = rt
        .block_on(
            aws_sdk_ecr::Client::from_conf(conf)
                .get_authorization_token()
                .send(),
        )
        .unwrap();
    let token = out.authorization_data()[0]
        .authorization_token()
        .unwrap()
        .to_owned();
    let decoded = decode_base64(&token);
    let (_, password) = decoded.split_once(':').unwrap();
    (token, password.to_owned())
}

fn decode_base64(s: &str) -> String {
    let mut bits = 0_u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = STD.iter().position(|&a| a == c).unwrap() as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn base_env(root: &Path, s: &Services, kubeconfig: &Path) -> Vec<(String, String)> {
    let home = root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::create_dir_all(root.join("docker-config")).unwrap();
    [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("HOME", home.display().to_string()),
        ("TMPDIR", root.join("tmp").display().to_string()),
        ("DOCKER_HOST", s.docker.host.clone()),
        (
            "DOCKER_CONFIG",
            root.join("docker-config").display().to_string(),
        ),
        ("KUBECONFIG", kubeconfig.display().to_string()),
        ("AWS_CONFIG_FILE", "/dev/null".to_owned()),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            root.join("no-aws-credentials").display().to_string(),
        ),
        ("RELEASE", "one".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A copy of the hello app named `sec-<n>` with the deploy.yaml `yaml(name, port)` writes,
/// the stand-in's kubeconfig beside it and the stand-in's service proxy forwarding to the
/// local target's port (so the Kubernetes health check gets the app's answer).
fn new_run(
    phase: &'static str,
    s: &Services,
    standin: &deployctl_kube_standin::StandIn,
    audit: Audit,
    yaml: impl Fn(&str, u16) -> String,
) -> (tempfile::TempDir, Run, String) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let app = root.join("hello");
    copy_dir(&workspace().join("fixtures/apps/hello"), &app);
    let name = format!(
        "sec-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis()
            % 1_000_000_000
    );
    let port = deployctl_testsupport::free_port();
    standin.set_default_proxy_target(Some(&format!("http://127.0.0.1:{port}")));
    let kubeconfig = root.join("kubeconfig");
    standin.write_kubeconfig(&kubeconfig).unwrap();
    std::fs::write(app.join("deploy.yaml"), yaml(&name, port)).unwrap();
    let env = base_env(&root, s, &kubeconfig);
    let mut run = Run {
        phase,
        root,
        app,
        env,
        audit,
        files: BTreeMap::new(),
        secret_files: Vec::new(),
        commands: 0,
    };
    run.files = run.snapshot();
    (tmp, run, name)
}

fn runtime_and_standin() -> (tokio::runtime::Runtime, deployctl_kube_standin::StandIn) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let standin = rt
        .block_on(deployctl_kube_standin::StandIn::start())
        .unwrap();
    (rt, standin)
}

fn finish(run: &Run, started: Instant) {
    let a = &run.audit;
    eprintln!(
        "{}: {} commands; searched {} places, {} bytes; {:?}",
        run.phase,
        run.commands,
        a.places,
        a.bytes,
        started.elapsed()
    );
    assert!(
        a.leaks.is_empty(),
        "{}: {} leaks:\n{}",
        run.phase,
        a.leaks.len(),
        a.leaks.join("\n")
    );
}

/// Lambda, Kubernetes and local, pushed to ECR (moto, with the test registry as its push
/// endpoint): the secret, the ECR token and the AWS secret key.
#[test]
fn secrets_reach_only_the_secret_the_function_and_the_container() {
    let Some(s) = services() else { return };
    let started = Instant::now();
    let (rt, standin) = runtime_and_standin();
    let secret = unique("sEcReTmArKeR");
    let rotated = unique("sEcReTmArKeR2x");
    let aws_key = unique("AwSkEyMaRkEr");
    let (ecr_token, ecr_password) = ecr_token(&rt, &s.aws.endpoint);
    let mut audit = Audit::default();
    audit.add("secrets: value", &secret);
    audit.add("secrets: value", &rotated);
    audit.add("AWS secret key", &aws_key);
    audit.add("ECR token", &ecr_token);
    audit.add("ECR password", &ecr_password);
    let (_tmp, mut run, name) = new_run("lambda+k8s+local", &s, &standin, audit, |name, port| {
        format!(
            "version: \"1.0\"\napp:\n  name: {name}\n  port: 8080\n  health_check_path: /health\nenv:\n  RELEASE: ${{RELEASE}}\nsecrets:\n  API_TOKEN: ${{E2E_SECRET}}\nlocal:\n  enabled: true\n  port: {port}\nlambda:\n  enabled: true\n  region: us-east-1\nkubernetes:\n  enabled: true\n  namespace: {name}\n"
        )
    });
    run.env.push(("E2E_SECRET".to_owned(), secret.clone()));
    run.env.extend(s.moto_env(&aws_key));
    let variants: [&[&str]; 3] = [&[], &["-o", "json"], &["-v", "-v"]];
    let bare = [("E2E_SECRET", UNSET)];
    let with = |pre: &[&str], args: &[&str]| -> Vec<String> {
        pre.iter().chain(args).map(|s| (*s).to_owned()).collect()
    };

    for pre in variants {
        let o = run.ok(&with(pre, &["validate", "--print"]), &[]);
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("***"),
            "validate --print shows the secret as ***"
        );
        run.ok(&with(pre, &["plan"]), &[]);
        run.ok(&with(pre, &["plan", "--dry-run"]), &[]);
        run.ok(&with(pre, &["deploy", "--dry-run"]), &[]);
    }

    // First deploy, traced; then unchanged, in JSON and in text.
    let o = run.ok(&["-v", "-v", "deploy"], &[]);
    assert!(o.stderr.len() > 10_000, "no trace output");
    let o = run.ok(&["-o", "json", "deploy"], &[]);
    let first = result_of(&o);
    assert!(all_unchanged(&first), "second deploy changed: {first:#}");
    let digest = first["image"]["digest"].as_str().unwrap().to_owned();
    run.ok(&["deploy"], &[]);

    let image = format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/{name}@{digest}");
    for (i, pre) in variants.into_iter().enumerate() {
        let out = run.root.join(format!("manifests-{i}"));
        let out = out.to_str().unwrap().to_owned();
        run.ok(&with(pre, &["render", "k8s", "--image", &image]), &[]);
        run.ok(
            &with(pre, &["render", "k8s", "--image", &image, "--out", &out]),
            &[],
        );
        run.ok(&with(pre, &["status"]), &bare);
        run.ok(&with(pre, &["logs", "--tail", "20"]), &bare);
        run.ok(&with(pre, &["history"]), &bare);
    }
    assert_eq!(
        run.secret_files.len(),
        3,
        "one Secret file per render --out"
    );

    // A changed deploy, so there is something to roll back to.
    let two = [("RELEASE", "two")];
    let o = run.ok(&["-o", "json", "deploy"], &two);
    assert!(
        !all_unchanged(&result_of(&o)),
        "RELEASE=two changed nothing"
    );
    run.ok(&["-v", "-v", "rollback", "lambda"], &bare);
    run.ok(&["-o", "json", "rollback", "k8s"], &bare);
    run.ok(&["rollback", "lambda", "--to", "2"], &bare);
    run.ok(&["-v", "-v", "history"], &bare);

    // A new secret value: the plans and diffs that compare the old value with the new one
    // (Kubernetes Secret, Lambda environment, local container), then a rollback of
    // Kubernetes to a revision whose Secret no longer matches.
    let rotated = [("RELEASE", "two"), ("E2E_SECRET", rotated.as_str())];
    for pre in variants {
        run.ok(&with(pre, &["plan"]), &rotated);
    }
    run.ok(
        &["-o", "json", "deploy", "--dry-run", "--server-dry-run"],
        &rotated,
    );
    let o = run.ok(&["-v", "-v", "-o", "json", "deploy"], &rotated);
    assert!(
        !all_unchanged(&result_of(&o)),
        "a new secret changed nothing"
    );
    let o = run.deployctl(&["-v", "-v", "rollback", "k8s", "--to", "1"], &bare);
    let text = String::from_utf8_lossy(&o.stdout) + String::from_utf8_lossy(&o.stderr);
    assert!(
        text.contains("Secret"),
        "rollback names the changed Secret: {text}"
    );
    run.ok(&["-o", "json", "history"], &bare);
    run.ok(&["-v", "-v", "status"], &bare);

    // What the services hold while the app is deployed.
    let phase = run.phase;
    audit_standin(
        &mut run.audit,
        &standin.url(),
        phase,
        &[(&name, &format!("{name}-secrets"), "secrets: value")],
    );
    assert!(
        audit_moto(
            &mut run.audit,
            &s.aws.endpoint,
            "moto while deployed",
            &name
        ),
        "moto's Lambda environment lacks the secret: the moto search is blind"
    );
    assert!(
        audit_docker(&mut run.audit, &s.docker.host, phase, &name),
        "the local container's environment lacks the secret"
    );

    run.ok(&["-o", "json", "destroy", "--dry-run"], &bare);
    run.ok(&["-v", "-v", "destroy", "--purge-images"], &bare);
    let o = run.ok(&["status"], &bare);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(text.matches("not deployed").count(), 3, "{text}");
    // Nothing of the app is left in moto to hold a marker.
    assert!(
        !audit_moto(&mut run.audit, &s.aws.endpoint, "moto after destroy", &name),
        "the function outlived destroy"
    );
    finish(&run, started);
}

/// Kubernetes and local, pushed to the test registry with its htpasswd password: the
/// secret and the registry password (which belongs in the image-pull Secret only).
#[test]
fn a_registry_password_reaches_only_the_image_pull_secret() {
    let Some(s) = services() else { return };
    let started = Instant::now();
    let (_rt, standin) = runtime_and_standin();
    let secret = unique("sEcReTmArKeR");
    let mut audit = Audit::default();
    audit.add("secrets: value", &secret);
    audit.add("registry password", &s.reg.password);
    let (_tmp, mut run, name) = new_run("registry+k8s+local", &s, &standin, audit, |name, port| {
        format!(
            "version: \"1.0\"\napp:\n  name: {name}\n  port: 8080\n  health_check_path: /health\nenv:\n  RELEASE: ${{RELEASE}}\nsecrets:\n  API_TOKEN: ${{E2E_SECRET}}\nregistry:\n  url: {reg}\n  username: {user}\n  password: ${{REGISTRY_PASSWORD}}\nlocal:\n  enabled: true\n  port: {port}\nkubernetes:\n  enabled: true\n  namespace: {name}\n",
            reg = s.reg.addr,
            user = s.reg.user,
        )
    });
    run.env.extend(
        [
            ("E2E_SECRET", secret),
            ("REGISTRY_PASSWORD", s.reg.password.clone()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let variants: [&[&str]; 3] = [&[], &["-o", "json"], &["-v", "-v"]];
    let bare = [("E2E_SECRET", UNSET), ("REGISTRY_PASSWORD", UNSET)];
    let with = |pre: &[&str], args: &[&str]| -> Vec<String> {
        pre.iter().chain(args).map(|s| (*s).to_owned()).collect()
    };

    for pre in variants {
        let o = run.ok(&with(pre, &["validate", "--print"]), &[]);
        assert!(String::from_utf8_lossy(&o.stdout).contains("***"));
        run.ok(&with(pre, &["plan", "--dry-run"]), &[]);
    }
    run.ok(&["-v", "-v", "push"], &[]);
    run.ok(&["-v", "-v", "deploy"], &[]);
    let o = run.ok(&["-o", "json", "deploy"], &[]);
    let first = result_of(&o);
    assert!(all_unchanged(&first), "second deploy changed: {first:#}");
    let image = first["image"]["reference"].as_str().unwrap().to_owned();
    for (i, pre) in variants.into_iter().enumerate() {
        let out = run.root.join(format!("manifests-{i}"));
        let out = out.to_str().unwrap().to_owned();
        run.ok(&with(pre, &["render", "k8s", "--image", &image]), &[]);
        run.ok(
            &with(pre, &["render", "k8s", "--image", &image, "--out", &out]),
            &[],
        );
        run.ok(&with(pre, &["status"]), &bare);
        run.ok(&with(pre, &["logs", "--tail", "20"]), &bare);
        run.ok(&with(pre, &["history"]), &bare);
    }
    // Each render --out wrote the app's Secret and the image-pull Secret.
    assert_eq!(run.secret_files.len(), 6, "{:?}", run.secret_files);
    let pull_secret = std::fs::read(
        run.root
            .join(format!("manifests-0/secret-{name}-registry.yaml")),
    )
    .unwrap();
    assert!(
        run.audit.holds("registry password", &pull_secret),
        "the image-pull Secret lacks the password"
    );

    let two = [("RELEASE", "two")];
    let o = run.ok(&["-v", "-v", "deploy"], &two);
    drop(o);
    run.ok(&["-v", "-v", "rollback", "k8s"], &bare);
    run.ok(&["-o", "json", "history"], &bare);

    let phase = run.phase;
    audit_standin(
        &mut run.audit,
        &standin.url(),
        phase,
        &[
            (&name, &format!("{name}-secrets"), "secrets: value"),
            (&name, &format!("{name}-registry"), "registry password"),
        ],
    );
    assert!(
        audit_docker(&mut run.audit, &s.docker.host, phase, &name),
        "the local container's environment lacks the secret"
    );
    run.ok(&["-v", "-v", "destroy"], &bare);
    let o = run.ok(&["-o", "json", "status"], &bare);
    drop(o);
    finish(&run, started);
}

/// The search itself: each form a marker can take is found, wherever it sits, and text
/// without it is not flagged.
#[test]
fn the_search_finds_a_marker_in_every_form() {
    let marker = "sEcReTmArKeR-0123456789abcdef";
    let mut audit = Audit::default();
    audit.add("m", marker);
    for prefix in ["", "x", "xy", "xyz"] {
        let value = format!("{prefix}{marker}\"}}");
        for alphabet in [STD, URL] {
            let once = base64(alphabet, value.as_bytes());
            let twice = base64(alphabet, format!("{{\"auth\":\"{once}\"}}").as_bytes());
            for text in [&value, &once, &twice] {
                assert!(audit.holds("m", text.as_bytes()), "{text}");
                audit.check("t", format!("lead {text} tail").as_bytes());
            }
        }
    }
    assert_eq!(audit.leaks.len(), 4 * 2 * 3, "{:#?}", audit.leaks);
    let mut clean = Audit::default();
    clean.add("m", marker);
    clean.check(
        "t",
        base64(STD, b"sEcReTmArKeR-0123456789abcdeX and more").as_bytes(),
    );
    clean.check("t", b"sEcReTmArKeR-0123456789abcde");
    assert!(clean.leaks.is_empty(), "{:#?}", clean.leaks);
}

/// Issue 18 §3: `secrets:` values kept in AWS Secrets Manager (a JSON key) and SSM
/// Parameter Store (a SecureString), on Lambda, Kubernetes and local. `validate` and `plan`
/// never read them (they pass before the secrets exist); a deploy whose secret is missing
/// fails with exit 2 naming `secrets.NAME`, and changes nothing; once they exist the values
/// reach the Kubernetes Secret and the Lambda environment and no output; an unchanged re-run
/// changes nothing; a rotated value makes exactly one Lambda configuration update and one
/// new pod template, and the run after it changes nothing again.
#[test]
fn secrets_from_secrets_manager_and_ssm_reach_the_secret_and_the_function() {
    let Some(s) = services() else { return };
    let started = Instant::now();
    let (_rt, standin) = runtime_and_standin();
    let password = unique("sMpAsSwOrD");
    let rotated = unique("sMpAsSwOrD2r");
    let token = unique("sSmToKeN");
    let mut audit = Audit::default();
    audit.add("secrets: value", &password);
    audit.add("secrets: value", &rotated);
    audit.add("secrets: value", &token);
    let (_tmp, mut run, name) = new_run("aws secrets", &s, &standin, audit, |name, port| {
        format!(
            "version: \"1.0\"\napp:\n  name: {name}\n  port: 8080\n  health_check_path: /health\nsecrets:\n  DB_PASSWORD: {{ aws_secret: {name}/db, key: password }}\n  API_TOKEN: {{ ssm: /{name}/api/token }}\nlocal:\n  enabled: true\n  port: {port}\nlambda:\n  enabled: true\n  region: us-east-1\nkubernetes:\n  enabled: true\n  namespace: {name}\n"
        )
    });
    run.env.extend(s.moto_env("testing"));
    let sm = |op: &str, body: String| {
        moto(
            &s.aws.endpoint,
            "secretsmanager",
            "POST",
            "/",
            &format!("secretsmanager.{op}"),
            &body,
        )
    };

    // Neither validate nor plan reads a value: both pass while the secrets do not exist.
    run.ok(&["validate"], &[]);
    run.ok(&["plan"], &[]);
    let o = run.deployctl(&["deploy"], &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a missing secret is bad input: {stderr}"
    );
    assert!(
        stderr.contains("secrets.API_TOKEN") || stderr.contains("secrets.DB_PASSWORD"),
        "the error names the field: {stderr}"
    );
    assert!(stderr.contains("not found"), "{stderr}");
    let o = run.ok(&["status"], &[]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        text.matches("not deployed").count(),
        3,
        "nothing changed: {text}"
    );

    sm(
        "CreateSecret",
        serde_json::json!({
            "Name": format!("{name}/db"),
            "SecretString": serde_json::json!({"username": "app", "password": password}).to_string(),
        })
        .to_string(),
    );
    moto(
        &s.aws.endpoint,
        "ssm",
        "POST",
        "/",
        "AmazonSSM.PutParameter",
        &serde_json::json!({"Name": format!("/{name}/api/token"), "Value": token, "Type": "SecureString"})
            .to_string(),
    );

    // A key the secret's JSON lacks: exit 2, naming the field and the key, nothing changed.
    let yaml_path = run.app.join("deploy.yaml");
    let yaml = std::fs::read_to_string(&yaml_path).unwrap();
    std::fs::write(&yaml_path, yaml.replace("key: password", "key: passwd")).unwrap();
    let o = run.deployctl(&["deploy"], &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("secrets.DB_PASSWORD"), "{stderr}");
    assert!(stderr.contains("no key `passwd`"), "{stderr}");
    std::fs::write(&yaml_path, &yaml).unwrap();

    let o = run.ok(&["-o", "json", "deploy"], &[]);
    let first = result_of(&o);
    assert!(
        !all_unchanged(&first),
        "the first deploy changed nothing: {first:#}"
    );
    // Traced: the SDK's wire logs of GetSecretValue / GetParameter are scrubbed too.
    let o = run.ok(&["-v", "-v", "-o", "json", "deploy"], &[]);
    assert!(o.stderr.len() > 10_000, "no trace output");
    let again = result_of(&o);
    assert!(
        all_unchanged(&again),
        "an unchanged re-run changed: {again:#}"
    );
    assert_eq!(again["aws_calls"]["mutating"], 0, "{again:#}");
    let digest = first["image"]["digest"].as_str().unwrap().to_owned();
    let image = format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/{name}@{digest}");
    run.ok(&["render", "k8s", "--image", &image], &[]);

    let checksum = || {
        let (status, body) = http_get(
            standin.url().trim_start_matches("http://"),
            &format!("/apis/apps/v1/namespaces/{name}/deployments/{name}"),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let d: Value = serde_json::from_slice(&body).unwrap();
        d["spec"]["template"]["metadata"]["annotations"]["deployctl/config-checksum"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before = checksum();

    // Rotation: a new password in Secrets Manager is one update on each target.
    sm(
        "PutSecretValue",
        serde_json::json!({
            "SecretId": format!("{name}/db"),
            "SecretString": serde_json::json!({"username": "app", "password": rotated}).to_string(),
        })
        .to_string(),
    );
    let o = run.ok(&["-o", "json", "deploy"], &[]);
    let after = result_of(&o);
    let ops: Vec<&str> = after["aws_calls"]["mutating_operations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        ops.iter()
            .filter(|o| o.ends_with(":UpdateFunctionConfiguration"))
            .count(),
        1,
        "one Lambda configuration update: {after:#}"
    );
    assert!(
        !ops.iter().any(|o| o.ends_with(":UpdateFunctionCode")),
        "{after:#}"
    );
    let changed = |kind: &str| -> Vec<String> {
        after["targets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["target"] == kind)
            .flat_map(|t| t["plan"]["changes"].as_array().cloned().unwrap_or_default())
            .filter(|c| c["action"] != "unchanged")
            .map(|c| format!("{} {}", c["kind"].as_str().unwrap_or(""), c["action"]))
            .collect()
    };
    let k8s = changed("k8s");
    assert_eq!(
        k8s.iter().filter(|c| c.starts_with("Deployment ")).count(),
        1,
        "one new pod template: {k8s:?} {after:#}"
    );
    assert!(k8s.iter().any(|c| c.starts_with("Secret ")), "{k8s:?}");
    assert_ne!(
        checksum(),
        before,
        "the pod template's checksum annotation changed"
    );
    let o = run.ok(&["-o", "json", "deploy"], &[]);
    let settled = result_of(&o);
    assert!(all_unchanged(&settled), "after rotation: {settled:#}");
    assert_eq!(settled["aws_calls"]["mutating"], 0, "{settled:#}");

    // The values themselves: the rotated password and the SSM token, in the Kubernetes
    // Secret and in the live Lambda environment.
    let (status, body) = http_get(
        standin.url().trim_start_matches("http://"),
        &format!("/api/v1/namespaces/{name}/secrets/{name}-secrets"),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let secret: Value = serde_json::from_slice(&body).unwrap();
    let data = |k: &str| decode_base64(secret["data"][k].as_str().unwrap());
    assert_eq!(data("DB_PASSWORD"), rotated);
    assert_eq!(data("API_TOKEN"), token);
    let function = json(&moto(
        &s.aws.endpoint,
        "lambda",
        "GET",
        &format!("/2015-03-31/functions/{name}"),
        "",
        "",
    ));
    let vars = &function["Configuration"]["Environment"]["Variables"];
    assert_eq!(vars["DB_PASSWORD"], rotated.as_str());
    assert_eq!(vars["API_TOKEN"], token.as_str());

    let phase = run.phase;
    audit_standin(
        &mut run.audit,
        &standin.url(),
        phase,
        &[(&name, &format!("{name}-secrets"), "secrets: value")],
    );
    assert!(
        audit_moto(
            &mut run.audit,
            &s.aws.endpoint,
            "moto while deployed",
            &name
        ),
        "moto's Lambda environment lacks the secrets"
    );
    run.ok(&["destroy"], &[]);
    finish(&run, started);
}

/// A value read from Parameter Store that takes Lambda's environment past 4 KB stops the
/// deploy with exit 2 before anything is built or created: the message names
/// `secrets.BIG` and its size, never the value.
#[test]
fn an_oversized_secret_from_ssm_stops_a_lambda_deploy_before_anything_changes() {
    let Some(s) = services() else { return };
    let started = Instant::now();
    let (_rt, standin) = runtime_and_standin();
    let big = format!("{}{}", unique("bIgSsMvAlUe"), "x".repeat(5000));
    let mut audit = Audit::default();
    audit.add("secrets: value", &big);
    let (_tmp, mut run, name) = new_run("oversized secret", &s, &standin, audit, |name, _| {
        format!(
            "version: \"1.0\"\napp:\n  name: {name}\nsecrets:\n  BIG: {{ ssm: /{name}/big }}\nlambda:\n  enabled: true\n  region: us-east-1\n"
        )
    });
    run.env.extend(s.moto_env("testing"));
    moto(
        &s.aws.endpoint,
        "ssm",
        "POST",
        "/",
        "AmazonSSM.PutParameter",
        &serde_json::json!({"Name": format!("/{name}/big"), "Value": big, "Type": "SecureString", "Tier": "Advanced"})
            .to_string(),
    );
    run.ok(&["validate"], &[]);
    let o = run.deployctl(&["-o", "json", "deploy"], &[]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("secrets.BIG"), "{stdout}");
    assert!(
        stdout.contains("above Lambda's 4096-byte limit"),
        "{stdout}"
    );
    assert!(stdout.contains("BIG=***"), "{stdout}");
    assert!(
        !stdout.contains("\"stage\":\"build\""),
        "nothing was built: {stdout}"
    );
    let o = run.ok(&["status"], &[]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("not deployed"), "{text}");
    finish(&run, started);
}

/// `lambda.secrets: reference`: a Lambda-only deploy reads no value (the secret does not even
/// exist) and the function gets `<NAME>_SECRET_ARN` / `<NAME>_SSM_PARAMETER` instead; a
/// re-run changes nothing.
#[test]
fn lambda_reference_mode_passes_the_references_and_reads_no_value() {
    let Some(s) = services() else { return };
    let started = Instant::now();
    let (_rt, standin) = runtime_and_standin();
    let (_tmp, mut run, name) = new_run(
        "lambda reference mode",
        &s,
        &standin,
        Audit::default(),
        |name, _| {
            format!(
                "version: \"1.0\"\napp:\n  name: {name}\nsecrets:\n  DB_PASSWORD: {{ aws_secret: {name}/db, key: password }}\n  API_TOKEN: {{ ssm: /{name}/api/token }}\nlambda:\n  enabled: true\n  region: us-east-1\n  secrets: reference\n"
            )
        },
    );
    run.env.extend(s.moto_env("testing"));
    run.ok(&["deploy"], &[]);
    let function = json(&moto(
        &s.aws.endpoint,
        "lambda",
        "GET",
        &format!("/2015-03-31/functions/{name}"),
        "",
        "",
    ));
    let vars = &function["Configuration"]["Environment"]["Variables"];
    assert_eq!(
        vars["DB_PASSWORD_SECRET_ARN"],
        format!("{name}/db").as_str()
    );
    assert_eq!(
        vars["API_TOKEN_SSM_PARAMETER"],
        format!("/{name}/api/token").as_str()
    );
    assert!(vars.get("DB_PASSWORD").is_none(), "{vars}");
    let o = run.ok(&["-o", "json", "deploy"], &[]);
    let again = result_of(&o);
    assert!(all_unchanged(&again), "{again:#}");
    run.ok(&["destroy"], &[]);
    finish(&run, started);
}

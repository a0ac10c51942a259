//! The services, the ECR token, and a new run's app, environment and stand-in.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

use crate::*;

pub(crate) struct Services {
    pub(crate) docker: deployctl_testsupport::Docker,
    pub(crate) reg: deployctl_testsupport::Registry,
    pub(crate) aws: deployctl_testsupport::Aws,
}

impl Services {
    /// What a run needs to deploy to Lambda on moto (pushes to the test registry), with
    /// `aws_key` as the secret access key.
    pub(crate) fn moto_env(&self, aws_key: &str) -> Vec<(String, String)> {
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

pub(crate) fn services() -> Option<Services> {
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
pub(crate) fn ecr_token(rt: &tokio::runtime::Runtime, endpoint: &str) -> (String, String) {
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

pub(crate) fn decode_base64(s: &str) -> String {
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

pub(crate) fn base_env(root: &Path, s: &Services, kubeconfig: &Path) -> Vec<(String, String)> {
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
pub(crate) fn new_run(
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

pub(crate) fn runtime_and_standin() -> (tokio::runtime::Runtime, deployctl_kube_standin::StandIn) {
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

pub(crate) fn finish(run: &Run, started: Instant) {
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

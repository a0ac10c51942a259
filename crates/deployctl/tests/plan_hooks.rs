//! Goldens: the hook steps a deploy runs, listed per target by `plan` and `deploy --dry-run`
//! (text and JSON, one app and `--workspace`) — phase, where each runs (local command,
//! Kubernetes Job, Lambda invoke), its command or event, its timeout. Cases are workspaces
//! under `fixtures/plan/`.

#![allow(clippy::unwrap_used)] // integration test: a failure here is a test failure

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{copy_dir, json_lines, stderr, stdout, workspace};

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(workspace().join("fixtures/plan"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("deployctl-workspace.yaml").is_file())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no cases under fixtures/plan");
    cases
}

/// `deployctl` in `dir` with `env` and nothing of this machine's AWS, Kubernetes or Docker
/// settings but what `env` gives.
fn run(dir: &Path, env: &[(String, String)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deployctl"));
    c.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.join(".home"))
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join(".no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("KUBECONFIG", dir.join(".no-kubeconfig"))
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("DOCKER_CONFIG", dir.join(".docker"));
    c.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    c.output().unwrap()
}

/// The text without what differs between machines and runs: the case's directory.
fn normal(text: &str, dir: &Path) -> String {
    text.replace(&dir.display().to_string(), "<case>")
}

/// `plan` without any reachable target: each section is what a first deploy creates, and
/// lists the hook steps as that target runs them.
#[test]
fn plan_lists_each_targets_hook_steps() {
    for case in cases() {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(&name);
        copy_dir(&case, &dir);
        let o = run(&dir, &[], &["plan", "--workspace"]);
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
        insta::assert_snapshot!(format!("plan__{name}__text"), normal(&stdout(&o), &dir));

        let o = run(&dir, &[], &["-o", "json", "plan", "--workspace"]);
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
        let lines: Vec<String> = json_lines(&o)
            .iter()
            .map(|l| normal(&serde_json::to_string_pretty(l).unwrap(), &dir))
            .collect();
        insta::assert_snapshot!(format!("plan__{name}__json"), lines.join("\n"));

        // One service on its own lists the same steps.
        let o = run(&dir.join("services/api"), &[], &["plan"]);
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
        let text = stdout(&o);
        assert!(
            text.contains("  > hook pre_deploy: Kubernetes Job `./migrate up` (timeout 300s)"),
            "{text}"
        );
    }
}

/// The lines of a deploy's text output that say which target a plan is for and its hooks.
fn hook_lines(text: &str) -> String {
    text.lines()
        .filter(|l| {
            let l = l.split_once(" | ").map_or(*l, |(_, rest)| rest);
            l.contains("> hook") || (l.ends_with("unchanged") && !l.starts_with(' '))
        })
        .map(|l| {
            // The plan's header counts differ between a target's first and later dry runs.
            l.split_once(": ")
                .filter(|(_, rest)| rest.contains(" to create,"))
                .map_or_else(|| l.to_owned(), |(head, _)| format!("{head}:"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `hooks` of every target plan in a JSON run's lines, with the service and target.
fn json_hooks(lines: &[serde_json::Value]) -> String {
    let mut out = Vec::new();
    let mut walk = |v: &serde_json::Value, service: &serde_json::Value| {
        fn find<'a>(v: &'a serde_json::Value, found: &mut Vec<&'a serde_json::Value>) {
            match v {
                serde_json::Value::Object(m) => {
                    if m.contains_key("target") && m.contains_key("changes") {
                        found.push(v);
                    }
                    m.values().for_each(|x| find(x, found));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|x| find(x, found)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        find(v, &mut found);
        for plan in found {
            out.push(serde_json::json!({
                "service": service,
                "target": plan["target"],
                "hooks": plan.get("hooks").cloned().unwrap_or_default(),
            }));
        }
    };
    for l in lines {
        walk(l, &l["service"]);
    }
    out.dedup();
    serde_json::to_string_pretty(&out).unwrap()
}

/// `deploy --dry-run` against moto, the Kubernetes stand-in and the Docker engine: each
/// target's plan lists its hook steps, for one app and for the workspace, in text and JSON.
#[test]
fn deploy_dry_run_lists_each_targets_hook_steps() {
    let (Some(docker), Some(aws)) = (
        deployctl_testsupport::docker(),
        deployctl_testsupport::aws(),
    ) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let standin = rt
        .block_on(deployctl_kube_standin::StandIn::start())
        .unwrap();
    for case in cases() {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(&name);
        copy_dir(&case, &dir);
        let kubeconfig = dir.join(".kubeconfig");
        standin.write_kubeconfig(&kubeconfig).unwrap();
        let env: Vec<(String, String)> = [
            ("KUBECONFIG", kubeconfig.display().to_string()),
            ("DOCKER_HOST", docker.host.clone()),
            ("AWS_ENDPOINT_URL", aws.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .to_vec();
        let o = run(&dir, &env, &["deploy", "--workspace", "--dry-run"]);
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
        let text = hook_lines(&stdout(&o));
        insta::assert_snapshot!(format!("deploy_dry_run__{name}__text"), text);
        // One service on its own: the same lines, without the service prefix.
        let one = run(&dir.join("services/api"), &env, &["deploy", "--dry-run"]);
        assert_eq!(
            one.status.code(),
            Some(0),
            "{}{}",
            stdout(&one),
            stderr(&one)
        );
        let api: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("api | "))
            .collect();
        assert_eq!(hook_lines(&stdout(&one)), api.join("\n"));

        let o = run(
            &dir,
            &env,
            &["-o", "json", "deploy", "--workspace", "--dry-run"],
        );
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
        insta::assert_snapshot!(
            format!("deploy_dry_run__{name}__json"),
            json_hooks(&json_lines(&o))
        );
        // Nothing ran: the steps' scripts do not exist, and nothing failed.
    }
}

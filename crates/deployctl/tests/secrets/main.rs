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

#[path = "../common/mod.rs"]
mod common;
mod http;
mod run;
mod search;
mod setup;
mod state;

pub(crate) use std::collections::BTreeMap;
pub(crate) use std::io::{Read, Write};
pub(crate) use std::path::{Path, PathBuf};
pub(crate) use std::process::{Command, Output};
pub(crate) use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub(crate) use common::{copy_dir, workspace};
pub(crate) use http::*;
pub(crate) use run::*;
pub(crate) use search::*;
pub(crate) use serde_json::Value;
pub(crate) use setup::*;
pub(crate) use state::*;

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
    let variants = VARIANTS;
    let bare = [("E2E_SECRET", UNSET)];

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
    run.render_and_inspect(&image, &bare);
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
    audit_deployed(
        &mut run.audit,
        &s.aws.endpoint,
        &standin.url(),
        phase,
        &name,
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
    let variants = VARIANTS;
    let bare = [("E2E_SECRET", UNSET), ("REGISTRY_PASSWORD", UNSET)];

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
    run.render_and_inspect(&image, &bare);
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
    audit_deployed(
        &mut run.audit,
        &s.aws.endpoint,
        &standin.url(),
        phase,
        &name,
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

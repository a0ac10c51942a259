//! Local hook steps through the real binary on the local target (the hello fixture app on
//! the Docker engine): the `DEPLOYCTL_*` variables and the app directory, the order around
//! the deploy, output lines as JSON events, a failing `pre_deploy` that deploys nothing,
//! `--skip-hooks`, hooks listed by a dry run, and `pre_destroy`.

#![allow(clippy::unwrap_used)] // integration test: a failure here is a test failure

mod common;

use std::path::Path;

use common::{hello_app_named, json_lines, on_docker_only, stderr, stdout};

fn yaml(name: &str, port: u16, hooks: &str) -> String {
    format!(
        "version: \"1.0\"\napp:\n  name: {name}\n  version: 1.4.0\n  port: 8080\nlocal:\n  enabled: true\n  port: {port}\nenvironments:\n  staging: {{}}\n{hooks}"
    )
}

const HOOKS: &str = "hooks:\n  pre_deploy:\n    \
    - run: echo \"pre $DEPLOYCTL_APP $DEPLOYCTL_VERSION $DEPLOYCTL_TARGET $DEPLOYCTL_ENV $DEPLOYCTL_IMAGE\" >> hooks.log\n    \
    - command: [sh, -c, \"echo checked the schema\"]\n  \
    post_deploy:\n    - run: echo post >> hooks.log\n  \
    pre_destroy:\n    - run: echo destroy >> hooks.log\n";

fn log(app: &Path) -> Vec<String> {
    std::fs::read_to_string(app.join("hooks.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn local_hooks_run_around_the_deploy_with_the_deploy_variables() {
    let Some(docker) = deployctl_testsupport::docker() else {
        return;
    };
    let port = deployctl_testsupport::free_port();
    let (_tmp, app, name) = hello_app_named("hooks", |n| yaml(n, port, HOOKS));
    let run = |args: &[&str]| {
        on_docker_only(&app, &docker.host)
            .args(args)
            .output()
            .unwrap()
    };

    // A dry run lists the hooks and runs none.
    let o = run(&["deploy", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("> hook pre_deploy: local command `echo \"pre $DEPLOYCTL_APP"),
        "{text}"
    );
    assert!(
        text.contains("> hook post_deploy: local command `echo post >> hooks.log` (timeout 600s)"),
        "{text}"
    );
    assert!(log(&app).is_empty(), "a dry run ran a hook");

    // --skip-hooks: deployed, no hook ran.
    let o = run(&["deploy", "--skip-hooks"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(log(&app).is_empty(), "{:?}", log(&app));

    // A deploy runs pre_deploy (in the app directory, with the variables), then post_deploy.
    let o = run(&["-o", "json", "--env", "staging", "deploy"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let lines = log(&app);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let pre: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(
        &pre[..5],
        ["pre", name.as_str(), "1.4.0", "local", "staging"],
        "{lines:?}"
    );
    assert!(
        pre[5].contains("@sha256:"),
        "the image by digest/ID: {lines:?}"
    );
    assert_eq!(lines[1], "post");
    // The output lines are events of the hook's stage.
    let events = json_lines(&o);
    assert!(
        events.iter().any(|e| e["stage"] == "pre_deploy"
            && e["target"] == "local"
            && e["event"] == "message"
            && e["text"] == "checked the schema"),
        "{events:?}"
    );
    let order: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "started")
        .filter_map(|e| e["stage"].as_str().map(str::to_owned))
        .collect();
    let at = |s: &str| order.iter().position(|x| x == s).unwrap();
    assert!(
        at("pre_deploy") < at("apply") && at("verify") < at("post_deploy"),
        "{order:?}"
    );

    // pre_destroy runs before the container goes.
    let o = run(&["destroy"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(log(&app).last().map(String::as_str), Some("destroy"));
}

#[test]
fn a_failing_pre_deploy_step_deploys_nothing_and_says_why() {
    let Some(docker) = deployctl_testsupport::docker() else {
        return;
    };
    let port = deployctl_testsupport::free_port();
    let hooks = "hooks:\n  pre_deploy:\n    - run: \"echo 'schema check: 2 problems'; exit 3\"\n    \
                 - run: echo never >> hooks.log\n";
    let (_tmp, app, _name) = hello_app_named("hookfail", |n| yaml(n, port, hooks));
    let o = on_docker_only(&app, &docker.host)
        .arg("deploy")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(all.contains("exited with 3"), "{all}");
    assert!(all.contains("schema check: 2 problems"), "{all}");
    assert!(log(&app).is_empty(), "the next step ran");
    // Nothing was deployed: status finds no container.
    let o = on_docker_only(&app, &docker.host)
        .args(["-o", "json", "status"])
        .output()
        .unwrap();
    let text = stdout(&o);
    assert!(text.contains("\"deployed\":false"), "{text}");
}

/// Under `--workspace`, a step's output lines are JSON events of its hook stage that carry
/// the service; a step past its `timeout:` is stopped and fails naming the step, and the
/// service's deploy fails with nothing switched.
#[test]
fn workspace_hook_output_lines_are_json_events_with_the_service_and_a_timeout_stops_a_step() {
    let Some(docker) = deployctl_testsupport::docker() else {
        return;
    };
    let port = deployctl_testsupport::free_port();
    let hooks = "hooks:\n  pre_deploy:\n    - run: echo \"migrated $DEPLOYCTL_APP\"; echo \"to 42\" >&2\n  \
                 post_deploy:\n    - { run: \"echo slow; sleep 60; echo never >> hooks.log\", timeout: 1 }\n";
    let (tmp, app, name) = hello_app_named("hookws", |n| yaml(n, port, hooks));
    std::fs::write(
        tmp.path().join("deployctl-workspace.yaml"),
        "services:\n  shop:\n    path: hello\n",
    )
    .unwrap();
    let o = on_docker_only(tmp.path(), &docker.host)
        .args(["-o", "json", "deploy", "--workspace"])
        .output()
        .unwrap();
    // The post_deploy step timed out: the service failed.
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let events = json_lines(&o);
    let message = |stage: &str, text: &str| {
        events.iter().any(|e| {
            e["service"] == "shop"
                && e["stage"] == stage
                && e["target"] == "local"
                && e["event"] == "message"
                && e["text"] == text
        })
    };
    assert!(
        message("pre_deploy", &format!("migrated {name}")),
        "{events:?}"
    );
    assert!(message("pre_deploy", "to 42"), "{events:?}");
    assert!(
        message(
            "post_deploy",
            "> local command `echo slow; sleep 60; echo never >> hooks.log` (timeout 1s)"
        ),
        "{events:?}"
    );
    assert!(message("post_deploy", "slow"), "{events:?}");
    let failed = events
        .iter()
        .find(|e| e["service"] == "shop" && e["stage"] == "post_deploy" && e["event"] == "failed")
        .unwrap_or_else(|| panic!("no failed post_deploy event: {events:?}"));
    let error = failed.to_string();
    assert!(
        error.contains("ran longer than its timeout of 1s and was stopped"),
        "{error}"
    );
    assert!(
        log(&app).is_empty(),
        "the timed-out step went on: {:?}",
        log(&app)
    );
    let _ = on_docker_only(&app, &docker.host)
        .args(["destroy", "--skip-hooks"])
        .output();
}

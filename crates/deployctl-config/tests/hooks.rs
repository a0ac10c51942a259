//! `hooks:` — the three step shapes, what they become in the core, the shape errors with
//! their positions, and overlays.

use std::collections::BTreeMap;
use std::path::Path;

use deployctl_config::{Config, ConfigError, LoadOptions, load_str};
use deployctl_core::{HookStep, LocalCommand, TaskCleanup};

const BASE: &str = "version: '1'\napp:\n  name: shop\nkubernetes:\n  enabled: true\n";

fn load_env(extra: &str, env: Option<&str>) -> Result<Config, ConfigError> {
    let vars = BTreeMap::<String, String>::new();
    let mut opts = LoadOptions::new(&vars);
    opts.environment = env;
    load_str(&format!("{BASE}{extra}"), Path::new("deploy.yaml"), &opts)
}

/// Every diagnostic of a failed load, one per line as the CLI prints them.
fn text(result: Result<Config, ConfigError>) -> String {
    match result {
        Ok(_) => panic!("loaded, but should be invalid"),
        Err(ConfigError::Invalid { diagnostics, .. }) => diagnostics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => panic!("not a validation error: {e}"),
    }
}

fn errors(extra: &str) -> String {
    text(load_env(extra, None))
}

#[test]
fn the_three_step_shapes_become_core_steps() {
    let c = load_env(
        "hooks:\n  pre_deploy:\n    - run: ./scripts/check.sh\n    - { command: [make, smoke], timeout: 45 }\n    \
         - task: { command: [./migrate, up], timeout: 120, cleanup: always }\n  \
         post_deploy:\n    - run: echo done\n",
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let h = c.hooks.to_core();
    assert_eq!(h.pre_deploy.len(), 3);
    assert_eq!(
        h.pre_deploy[0],
        HookStep::Local {
            command: LocalCommand::Shell("./scripts/check.sh".into()),
            timeout_seconds: 600,
        }
    );
    assert_eq!(
        h.pre_deploy[1],
        HookStep::Local {
            command: LocalCommand::Argv(vec!["make".into(), "smoke".into()]),
            timeout_seconds: 45,
        }
    );
    let HookStep::Task(t) = &h.pre_deploy[2] else {
        panic!("{:?}", h.pre_deploy[2])
    };
    assert_eq!(t.command, ["./migrate", "up"]);
    assert_eq!(t.timeout_seconds, 120);
    assert_eq!(t.cleanup, TaskCleanup::Always);
    assert_eq!(h.post_deploy.len(), 1);
    assert!(h.pre_destroy.is_empty());
}

#[test]
fn a_task_defaults_to_ten_minutes_cleaned_up_on_success() {
    let c = load_env(
        "hooks:\n  pre_deploy:\n    - task: { command: [migrate] }\n",
        None,
    )
    .unwrap();
    let HookStep::Task(t) = &c.hooks.to_core().pre_deploy[0] else {
        panic!()
    };
    assert_eq!(
        (t.timeout_seconds, t.cleanup),
        (600, TaskCleanup::OnSuccess)
    );
    assert_eq!(t.event, None);
}

#[test]
fn a_lambda_task_carries_its_event_as_json() {
    let vars = BTreeMap::<String, String>::new();
    let c = load_str(
        "version: '1'\napp:\n  name: shop\nregistry:\n  url: 123456789012.dkr.ecr.us-east-1.amazonaws.com\n\
         lambda:\n  enabled: true\n  region: us-east-1\nhooks:\n  pre_deploy:\n    \
         - task: { event: { action: migrate, steps: 2 } }\n",
        Path::new("deploy.yaml"),
        &LoadOptions::new(&vars),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let HookStep::Task(t) = &c.hooks.to_core().pre_deploy[0] else {
        panic!()
    };
    let event: serde_json::Value = serde_json::from_str(t.event.as_deref().unwrap()).unwrap();
    assert_eq!(event, serde_json::json!({"action": "migrate", "steps": 2}));
}

#[test]
fn shape_errors_name_line_column_field_and_hint() {
    let text = errors("hooks:\n  pre_deploy:\n    - {}\n");
    assert!(text.contains("deploy.yaml:8:7"), "{text}");
    assert!(text.contains("hooks.pre_deploy[0]"), "{text}");
    assert!(text.contains("needs `run`, `command` or `task`"), "{text}");
    assert!(text.contains("hint: e.g. { run:"), "{text}");

    let text = errors("hooks:\n  pre_deploy:\n    - run: a\n      command: [b]\n");
    assert!(text.contains("deploy.yaml:8:"), "{text}");
    assert!(text.contains("not several"), "{text}");

    let text = errors("hooks:\n  post_deploy:\n    - comand: [x]\n");
    assert!(text.contains("hooks.post_deploy[0].comand"), "{text}");
    assert!(text.contains("did you mean `command`?"), "{text}");

    let text = errors("hooks:\n  pre_deploy:\n    - command: []\n");
    assert!(text.contains("hooks.pre_deploy[0].command"), "{text}");
    assert!(text.contains("must name a program"), "{text}");

    let text = errors("hooks:\n  pre_deploy:\n    - task: { command: [m], cleanup: sometimes }\n");
    assert!(text.contains("hooks.pre_deploy[0].task.cleanup"), "{text}");
    assert!(text.contains("on_success"), "{text}");

    let text = errors("hooks:\n  pre_deploy:\n    - task: { command: [m], timeout: 0 }\n");
    assert!(text.contains("hooks.pre_deploy[0].task.timeout"), "{text}");

    // A local step's own time limit: a day at most; a task's is `task.timeout`.
    let text = errors("hooks:\n  pre_deploy:\n    - { run: x, timeout: 86401 }\n");
    assert!(text.contains("hooks.pre_deploy[0].timeout"), "{text}");
    assert!(
        text.contains("86401 seconds is outside 1 to 86400"),
        "{text}"
    );
    let text = errors("hooks:\n  pre_deploy:\n    - { task: { command: [m] }, timeout: 5 }\n");
    assert!(text.contains("hooks.pre_deploy[0].timeout"), "{text}");
    assert!(text.contains("task.timeout"), "{text}");

    let text = errors("hooks:\n  pre_deploy:\n    - task: { timeout: 5 }\n");
    assert!(text.contains("hooks.pre_deploy[0].task.command"), "{text}");

    let text = errors("hooks:\n  pre_destroy:\n    - task: { command: [m] }\n");
    assert!(text.contains("hooks.pre_destroy[0].task"), "{text}");
    assert!(text.contains("runs here, not in the target"), "{text}");

    let text = errors("hooks:\n  during_deploy: []\n");
    assert!(text.contains("hooks.during_deploy"), "{text}");

    let text = errors("hooks:\n  pre_deploy: ./check.sh\n");
    assert!(text.contains("hooks.pre_deploy"), "{text}");
}

#[test]
fn the_local_target_runs_no_tasks() {
    let vars = BTreeMap::<String, String>::new();
    let err = text(load_str(
        "version: '1'\napp:\n  name: shop\nhooks:\n  pre_deploy:\n    - task: { command: [m] }\n",
        Path::new("deploy.yaml"),
        &LoadOptions::new(&vars),
    ));
    assert!(err.contains("the local target runs no tasks"), "{err}");
}

#[test]
fn an_environment_overlay_replaces_a_phase() {
    let yaml = "hooks:\n  pre_deploy:\n    - run: ./check.sh\n  post_deploy:\n    - run: ./notify\n\
                environments:\n  prod:\n    hooks:\n      pre_deploy:\n        \
                - task: { command: [./migrate, up] }\n";
    let base = load_env(yaml, None).unwrap().hooks.to_core();
    assert!(matches!(base.pre_deploy[..], [HookStep::Local { .. }]));
    let prod = load_env(yaml, Some("prod")).unwrap().hooks.to_core();
    assert!(matches!(prod.pre_deploy[..], [HookStep::Task(_)]));
    assert_eq!(prod.post_deploy, base.post_deploy, "other phases are kept");
    // A bad step in the overlay is placed in the overlay.
    let bad = "environments:\n  prod:\n    hooks:\n      pre_deploy:\n        - {}\n";
    let err = text(load_env(bad, Some("prod")));
    assert!(err.contains("deploy.yaml:10:11"), "{err}");
}

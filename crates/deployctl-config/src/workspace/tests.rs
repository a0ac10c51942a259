use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::LoadOptions;

/// A fresh directory under the system temp dir (removed at the end of the test).
struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tree(files: &[(&str, &str)]) -> Dir {
    static N: AtomicUsize = AtomicUsize::new(0);
    let root = std::env::temp_dir().join(format!(
        "deployctl-ws-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&root);
    for (path, text) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    Dir(root)
}

fn app(name: &str) -> String {
    format!("version: \"1.0\"\napp:\n  name: {name}\n")
}

fn problems(err: ConfigError) -> Vec<String> {
    match err {
        ConfigError::Invalid { diagnostics, .. } => diagnostics
            .iter()
            .map(|d| {
                format!(
                    "{}:{}: {}: {}",
                    d.line.unwrap_or(0),
                    d.column.unwrap_or(0),
                    d.path,
                    d.message
                )
            })
            .collect(),
        other => panic!("{other}"),
    }
}

#[test]
fn found_by_walking_up_from_a_service_directory() {
    let d = tree(&[
        (WORKSPACE_FILE, "services:\n  api: { path: svc/api }\n"),
        ("svc/api/deploy.yaml", &app("api")),
        ("svc/api/src/x", ""),
    ]);
    let found = find_workspace(&d.0.join("svc/api/src")).unwrap();
    assert_eq!(found, d.0.join(WORKSPACE_FILE));
    assert_eq!(find_workspace(&d.0.join("svc/api")).unwrap(), found);
    assert!(find_workspace(Path::new("/")).is_none());
}

#[test]
fn services_and_dependencies_are_read() {
    let d = tree(&[
        (
            WORKSPACE_FILE,
            "services:\n  db: { path: db }\n  api:\n    path: api\n    depends_on: [db]\n",
        ),
        ("db/deploy.yaml", &app("db")),
        ("api/deploy.yaml", &app("api")),
    ]);
    let ws = load_workspace(&d.0.join(WORKSPACE_FILE)).unwrap();
    assert_eq!(ws.services.len(), 2);
    assert_eq!(ws.services["api"].depends_on, vec!["db".to_owned()]);
    assert_eq!(ws.services["api"].config_file, d.0.join("api/deploy.yaml"));
    assert_eq!(
        deployctl_core::plan_waves(&ws.graph()).unwrap(),
        vec![vec!["db".to_owned()], vec!["api".to_owned()]]
    );
}

#[test]
fn services_inherit_defaults_and_may_override_them() {
    let d = tree(&[
        (
            WORKSPACE_FILE,
            "defaults:\n  registry: { url: registry.example.com/team }\n  lambda: { region: eu-west-1, function: { memory: 256 } }\n  kubernetes: { namespace: shop }\n  environments:\n    staging: { kubernetes: { namespace: shop-staging } }\nservices:\n  a: { path: a }\n  b: { path: b }\n",
        ),
        ("a/deploy.yaml", &app("a")),
        (
            "b/deploy.yaml",
            &format!("{}lambda:\n  region: us-east-1\n", app("b")),
        ),
    ]);
    let ws = load_workspace(&d.0.join(WORKSPACE_FILE)).unwrap();
    let vars: HashMap<String, String> = HashMap::new();
    let opts = LoadOptions::new(&vars);
    let a = ws.load_service("a", &opts).unwrap();
    assert_eq!(a.app.name, "a");
    assert_eq!(
        a.registry.as_ref().unwrap().url,
        "registry.example.com/team"
    );
    assert_eq!(a.lambda.region.as_deref(), Some("eu-west-1"));
    assert_eq!(a.kubernetes.namespace, "shop");
    let b = ws.load_service("b", &opts).unwrap();
    assert_eq!(b.lambda.region.as_deref(), Some("us-east-1"), "override");
    assert_eq!(b.lambda.function.memory, 256, "sibling key still inherited");
    let staging = ws
        .load_service("b", &opts.with_environment(Some("staging")))
        .unwrap();
    assert_eq!(staging.kubernetes.namespace, "shop-staging");
}

#[test]
fn a_cycle_is_named_at_its_line_and_column() {
    let d = tree(&[
        (
            WORKSPACE_FILE,
            "services:\n  a:\n    path: a\n    depends_on: [b]\n  b:\n    path: b\n    depends_on: [a]\n",
        ),
        ("a/deploy.yaml", &app("a")),
        ("b/deploy.yaml", &app("b")),
    ]);
    let err = load_workspace(&d.0.join(WORKSPACE_FILE)).unwrap_err();
    assert_eq!(
        problems(err),
        vec!["4:18: services.a.depends_on[0]: dependency cycle: a -> b -> a"]
    );
}

#[test]
fn unknown_names_missing_directories_and_configs_are_each_reported() {
    let d = tree(&[
        (
            WORKSPACE_FILE,
            "services:\n  api:\n    path: api\n    depends_on: [dbb]\n  gone:\n    path: nowhere\n  bare:\n    path: bare\n    dependson: [api]\n",
        ),
        ("api/deploy.yaml", &app("api")),
        ("bare/README", ""),
    ]);
    let err = load_workspace(&d.0.join(WORKSPACE_FILE)).unwrap_err();
    let p = problems(err);
    assert_eq!(p.len(), 4, "{p:?}");
    assert_eq!(
        p[0],
        "4:18: services.api.depends_on[0]: `dbb` is not a service"
    );
    assert_eq!(
        p[1],
        format!(
            "6:11: services.gone.path: the directory {} does not exist",
            d.0.join("nowhere").display()
        )
    );
    assert!(
        p[2].starts_with("8:11: services.bare.path: ") && p[2].ends_with("has no deploy.yaml"),
        "{p:?}"
    );
    assert_eq!(p[3], "9:5: services.bare.dependson: unknown field");
}

#[test]
fn unknown_default_sections_get_a_suggestion() {
    let d = tree(&[(
        WORKSPACE_FILE,
        "defaults:\n  lamda: { region: eu-west-1 }\nservices: {}\n",
    )]);
    let err = load_workspace(&d.0.join(WORKSPACE_FILE)).unwrap_err();
    let ConfigError::Invalid { diagnostics, .. } = err else {
        panic!()
    };
    assert_eq!(diagnostics[0].line, Some(2));
    assert_eq!(diagnostics[0].path, "defaults.lamda");
    assert_eq!(
        diagnostics[0].hint.as_deref(),
        Some("did you mean `lambda`?")
    );
}

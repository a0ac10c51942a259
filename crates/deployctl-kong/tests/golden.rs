//! Golden tests: the desired Kong state (and, for `mode: ingress-controller`, the rendered
//! resources) for every case under `fixtures/kong/<case>/` (a deploy.yaml and its spec).
//! A case whose spec cannot be mapped snapshots the error and its hint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use deployctl_config::{KongMode, LoadOptions};
use deployctl_core::Secret;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/kong")
}

fn cases() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(fixtures())
        .expect("fixtures/kong")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("deploy.yaml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

fn config(case: &str) -> deployctl_config::Config {
    let vars: HashMap<String, String> =
        HashMap::from([("KONG_ADMIN_TOKEN".to_owned(), "golden-token".to_owned())]);
    deployctl_config::load(
        &fixtures().join(case).join("deploy.yaml"),
        &LoadOptions::new(&vars),
    )
    .unwrap_or_else(|e| panic!("{case}: {e:?}"))
}

fn golden(case: &str) -> String {
    let config = config(case);
    let kong = config.kong.as_ref().expect("kong section");
    let result = deployctl_kong::load_spec(&kong.openapi)
        .and_then(|spec| deployctl_kong::desired(&config, &spec).map(|d| (spec, d)));
    let (_, desired) = match result {
        Ok(ok) => ok,
        Err(e) => {
            let fixtures = fixtures().join(case);
            let text = format!("error: {e}\nhint: {}\n", e.hint());
            return text.replace(&fixtures.display().to_string(), "<case>");
        }
    };
    let mut out = format!(
        "upstream: {}\nroutes:\n{}\n---\n",
        desired.upstream,
        desired
            .route_lines()
            .iter()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    out.push_str(&serde_yaml::to_string(&desired).expect("yaml"));
    if kong.mode == KongMode::IngressController {
        let key = Secret::new("golden-key".to_owned());
        match deployctl_kong::render::render(&desired, &config.kubernetes.namespace, Some(&key)) {
            Ok(r) => {
                for m in &r.manifests {
                    out.push_str("---\n");
                    out.push_str(&serde_yaml::to_string(m).expect("yaml"));
                }
                out.push_str("--- # Service annotations\n");
                out.push_str(&serde_yaml::to_string(&r.service_annotations).expect("yaml"));
            }
            Err(e) => out.push_str(&format!("--- # render error\n{e}\n")),
        }
    }
    out
}

#[test]
fn desired_state_per_fixture() {
    let cases = cases();
    assert!(cases.len() >= 4, "fixtures/kong has {cases:?}");
    for case in &cases {
        insta::assert_snapshot!(case.as_str(), golden(case));
    }
}

#[test]
fn a_rerun_gives_the_same_ids() {
    for case in cases() {
        assert_eq!(golden(&case), golden(&case), "{case}");
    }
}

#[test]
fn the_token_never_appears_in_the_desired_state() {
    let text = golden("bearer-31-json");
    assert!(!text.contains("golden-token"), "{text}");
}

//! The `config` target: any text is loaded as `deploy.yaml` (parse, `environments:`
//! overlay, `${VAR}` and `{{ … }}` interpolation, typed model, validation rules).
//!
//! Property: the load returns (within libFuzzer's `-timeout`), and a failed load names the
//! file it was given, in the error and in every diagnostic, with a message.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Config, ConfigError, LoadOptions, load_str};

/// The name the text is loaded as.
const FILE: &str = "fuzz/deploy.yaml";

/// Overlays tried when the text mentions `environments` (the fixtures' names).
const ENVIRONMENTS: [&str; 2] = ["staging", "production"];

/// Checks the property for `data` (bytes that are not UTF-8 are replaced, as an editor would).
pub fn check(data: &[u8]) {
    let source = String::from_utf8_lossy(data);
    // The variables the fixtures use, one empty (for `${VAR:?}` and `${VAR:-default}`).
    let vars: BTreeMap<String, String> = [
        ("APP_NAME", "fuzz-app"),
        ("REGION", "us-east-1"),
        ("PORT", "8080"),
        ("TAG", "1.0.0"),
        ("EMPTY", ""),
        ("DB_PASSWORD", "db-secret"),
        ("NPM_TOKEN", "npm-secret"),
        ("REGISTRY_PASSWORD", "registry-secret"),
        ("STRIPE_KEY", "stripe-secret"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let file = Path::new(FILE);
    holds(load_str(&source, file, &LoadOptions::new(&vars)));
    if source.contains("environments") {
        for env in ENVIRONMENTS {
            let opts = LoadOptions::new(&vars)
                .with_environment(Some(env))
                .with_deferred_secrets();
            holds(load_str(&source, file, &opts));
        }
    }
}

fn holds(result: Result<Config, ConfigError>) {
    let Err(err) = result else {
        return;
    };
    let shown = err.to_string();
    assert!(
        shown.contains(FILE),
        "the error does not name the file: {shown}"
    );
    if let ConfigError::Invalid { file, diagnostics } = &err {
        assert_eq!(file, Path::new(FILE), "{shown}");
        assert!(
            !diagnostics.is_empty(),
            "invalid with no diagnostic: {shown}"
        );
        for d in diagnostics {
            assert_eq!(d.file, Path::new(FILE), "{d}");
            assert!(
                !d.message.trim().is_empty(),
                "a diagnostic without a message: {d:?}"
            );
        }
    }
}

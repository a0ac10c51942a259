//! Route generation cross-checked against Kong's own converter, the npm package
//! `openapi-2-kong` (installed by `cargo xtask services up` into
//! `target/clients/openapi2kong`; skipped with a reason when absent, a failure when
//! `CI=true`). For every fixture spec it reads (OpenAPI 3.0 only: it refuses 3.1), the same
//! paths and methods must come out, and every auth plugin it puts on a route must be on
//! deployctl's route too, with its key names. The differences are deliberate and listed in
//! docs/KONG.md ("Compared with openapi-2-kong"); the normalisation below undoes exactly
//! those: Kong 3's `~` prefix, the `servers` path prefix, escaped regex metacharacters, and
//! `[^\/]` vs `[^/]`.

use std::collections::HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use deployctl_config::LoadOptions;
use deployctl_kong::Kind;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `node_modules` holding openapi-2-kong, or `None` (printed; a panic when CI=true).
fn converter() -> Option<PathBuf> {
    let modules = root().join("target/clients/openapi2kong/node_modules");
    let have_node = Command::new("node").arg("--version").output().is_ok();
    if have_node && modules.join("openapi-2-kong/package.json").is_file() {
        return Some(modules);
    }
    let why = "skipped: openapi-2-kong is not installed (node and target/clients/openapi2kong); run `cargo xtask services up`";
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    println!("{why}");
    None
}

/// (METHOD, path regex) → auth plugins (name → key names).
type Routes = BTreeMap<(String, String), BTreeMap<String, BTreeSet<String>>>;

fn theirs(modules: &Path, spec: &Path) -> Result<Routes, String> {
    let o = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi2kong/routes.js"))
        .arg(spec)
        .env("NODE_PATH", modules)
        .output()
        .map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    let mut out = Routes::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let mut auth: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for p in v["auth"].as_array().into_iter().flatten() {
            let keys = auth
                .entry(p["name"].as_str().unwrap_or("?").to_owned())
                .or_default();
            for k in p["key_names"].as_array().into_iter().flatten() {
                keys.insert(k.as_str().unwrap_or_default().to_owned());
            }
        }
        for m in v["methods"].as_array().into_iter().flatten() {
            for p in v["paths"].as_array().into_iter().flatten() {
                let path = p.as_str().unwrap_or_default().replace("[^\\/]", "[^/]");
                out.insert(
                    (m.as_str().unwrap_or_default().to_owned(), path),
                    auth.clone(),
                );
            }
        }
    }
    Ok(out)
}

fn ours(case: &Path) -> (Routes, deployctl_kong::Spec) {
    let vars: HashMap<String, String> =
        HashMap::from([("KONG_ADMIN_TOKEN".to_owned(), "t".to_owned())]);
    let config = deployctl_config::load(&case.join("deploy.yaml"), &LoadOptions::new(&vars))
        .expect("config");
    let spec =
        deployctl_kong::load_spec(&config.kong.as_ref().expect("kong").openapi).expect("spec");
    let desired = deployctl_kong::desired(&config, &spec).expect("desired");
    let mut auth_by_route: BTreeMap<&str, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for p in desired.of(Kind::Plugin) {
        if let Some(route) = p.body["route"]["id"].as_str() {
            let keys = auth_by_route
                .entry(route)
                .or_default()
                .entry(p.body["name"].as_str().unwrap_or_default().to_owned())
                .or_default();
            for k in p.body["config"]["key_names"]
                .as_array()
                .into_iter()
                .flatten()
            {
                keys.insert(k.as_str().unwrap_or_default().to_owned());
            }
        }
    }
    let mut out = Routes::new();
    for r in desired.of(Kind::Route) {
        let method = r.body["methods"][0].as_str().unwrap_or_default().to_owned();
        let regex = r.body["paths"][0].as_str().unwrap_or_default();
        let path = regex.trim_start_matches('~');
        let path = path.strip_prefix(spec.base_path.as_str()).unwrap_or(path);
        let mut plain = String::new();
        let mut chars = path.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                plain.extend(chars.next());
            } else {
                plain.push(c);
            }
        }
        out.insert(
            (method, plain),
            auth_by_route
                .get(r.id.as_str())
                .cloned()
                .unwrap_or_default(),
        );
    }
    (out, spec)
}

#[test]
fn routes_match_kongs_converter_on_every_openapi_30_fixture() {
    let Some(modules) = converter() else {
        return;
    };
    let mut compared = 0;
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("fixtures/kong"))
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .collect();
    dirs.sort();
    for case in dirs {
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let spec_file = ["openapi.yaml", "openapi.yml", "openapi.json"]
            .iter()
            .map(|f| case.join(f))
            .find(|p| p.is_file())
            .expect("a spec");
        let text = std::fs::read_to_string(&spec_file).expect("read");
        let Ok((ours, spec)) = std::panic::catch_unwind(|| ours(&case)) else {
            // deployctl refuses this spec (an unsupported scheme): nothing to compare.
            continue;
        };
        if !spec.version.starts_with("3.0") {
            // openapi-2-kong 3.6 reads only 3.0; deployctl reads 3.1 too.
            assert!(theirs(&modules, &spec_file).is_err(), "{name}: {text}");
            continue;
        }
        let theirs = theirs(&modules, &spec_file).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The same routes, except the OPTIONS routes deployctl adds for CORS preflights.
        let extra: Vec<&(String, String)> =
            ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
        assert!(
            extra.iter().all(|(m, _)| m == "OPTIONS"),
            "{name}: only deployctl has {extra:?}"
        );
        let missing: Vec<&(String, String)> =
            theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
        assert!(
            missing.is_empty(),
            "{name}: only openapi-2-kong has {missing:?}"
        );
        for (route, their_auth) in &theirs {
            let our_auth = &ours[route];
            for (plugin, keys) in their_auth {
                let ours_keys = our_auth.get(plugin).unwrap_or_else(|| {
                    panic!("{name}: {route:?} has {plugin} there, not here ({our_auth:?})")
                });
                assert!(
                    ours_keys.is_superset(keys),
                    "{name}: {route:?} {plugin} keys {keys:?} vs {ours_keys:?}"
                );
            }
            // Where deployctl adds auth the converter does not, it is the document-level
            // `security` (the converter reads only the operation's).
            if their_auth.is_empty() && !our_auth.is_empty() {
                let op = spec
                    .operations
                    .iter()
                    .find(|o| {
                        o.method.eq_ignore_ascii_case(&route.0)
                            && route.1.starts_with(
                                &o.path
                                    .split('{')
                                    .next()
                                    .unwrap_or_default()
                                    .replace('.', ""),
                            )
                    })
                    .expect("operation");
                assert!(
                    op.security.is_none() && spec.security.is_some(),
                    "{name}: {route:?}"
                );
            }
        }
        compared += 1;
    }
    assert!(compared >= 2, "compared {compared} fixtures");
}

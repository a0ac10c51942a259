//! Architecture invariant: the core does no IO and knows no service. Its manifest may name
//! only these dependencies; anything else (an SDK, kube, bollard, tokio, a YAML or HTTP
//! crate) belongs in an adapter crate. `serde_json` is allowed: it only turns values into
//! text and back (the deploy records' one stored form, shared by every target), no IO.

const ALLOWED: &[&str] = &["async-trait", "futures", "serde", "serde_json", "thiserror"];

#[test]
fn core_dependencies_are_only_the_allowed_ones() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("read Cargo.toml");
    let mut section = "";
    let mut deps = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section == "[dependencies]"
            && let Some((name, _)) = line.split_once(['=', '.'])
            && !name.trim().is_empty()
            && !name.trim().starts_with('#')
        {
            deps.push(name.trim().to_owned());
        }
    }
    assert!(!deps.is_empty(), "parsed no dependencies from the manifest");
    for d in &deps {
        assert!(
            ALLOWED.contains(&d.as_str()),
            "deployctl-core must not depend on `{d}`: the core does no IO (see docs/ARCHITECTURE.md)"
        );
    }
}

/// The adapter crates: each talks to one outside system.
const ADAPTERS: &[&str] = &[
    "deployctl-image",
    "deployctl-registry",
    "deployctl-aws",
    "deployctl-k8s",
    "deployctl-kong",
    "deployctl-local",
    "deployctl-lambda-emulator",
];

/// Architecture invariant: adapters depend on the core (and the config model), never on each
/// other; only the binary wires several together.
#[test]
fn adapters_do_not_depend_on_each_other() {
    let crates = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for adapter in ADAPTERS {
        let path = format!("{crates}/{adapter}/Cargo.toml");
        let manifest = std::fs::read_to_string(&path).expect("read an adapter's Cargo.toml");
        let mut section = "";
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line;
                continue;
            }
            if section != "[dependencies]" {
                continue;
            }
            let name = line.split(['=', '.']).next().unwrap_or("").trim();
            assert!(
                !ADAPTERS.contains(&name) || name == *adapter,
                "{adapter} depends on the adapter {name}: adapters depend on the core only (docs/ARCHITECTURE.md)"
            );
        }
    }
}

//! Debian's `deck` (1.4, Kong's own declarative-config tool, built on go-kong) against the
//! stand-in: ping, dump, diff and sync of a checked-in state file, a second sync that
//! changes nothing, `--select-tag` leaving untagged entities alone, the admin token.
//! Skips with a printed reason when deck is missing (fails when `CI=true`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{Out, call, crate_dir, output};
use deployctl_kong_standin::{KongStandin, Options};
use serde_json::json;

fn fixture(name: &str) -> std::path::PathBuf {
    crate_dir().join("tests/fixtures").join(name)
}

async fn deck(bin: &Path, url: &str, args: &[&str]) -> Out {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .args(["--kong-addr", url, "--no-color"])
        .env_remove("DECK_KONG_ADDR")
        .env("HOME", std::env::temp_dir());
    output(cmd).await
}

fn yaml(path: &Path) -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A dump with each basic-auth password replaced by `HASHED`, after checking it is a hash
/// (64 hex characters) and not the password sent.
fn hashed_passwords(mut dump: serde_yaml::Value) -> serde_yaml::Value {
    for consumer in dump["consumers"].as_sequence_mut().into_iter().flatten() {
        let creds = consumer.get_mut("basicauth_credentials");
        for cred in creds
            .and_then(|c| c.as_sequence_mut())
            .into_iter()
            .flatten()
        {
            let pw = cred["password"].as_str().unwrap().to_owned();
            assert!(
                pw.len() == 64 && pw.chars().all(|c| c.is_ascii_hexdigit()),
                "a basic-auth password reads back hashed: {pw}"
            );
            cred["password"] = "HASHED".into();
        }
    }
    dump
}

/// "Created: c / Updated: u / Deleted: d" of deck's summary.
fn summary(o: &Out) -> (u32, u32, u32) {
    let n = |what: &str| {
        o.stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(what))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {what} in deck's output:\n{}", o.all()))
    };
    (n("Created:"), n("Updated:"), n("Deleted:"))
}

#[tokio::test(flavor = "multi_thread")]
async fn deck_pings_dumps_diffs_and_syncs_a_state_file() {
    let Some(bin) = common::deck() else { return };
    let kong = KongStandin::start().await.unwrap();
    let url = kong.url();
    let dir = tempfile::tempdir().unwrap();

    let ping = deck(&bin, &url, &["ping"]).await;
    assert!(
        ping.ok && ping.stdout.contains("Kong version"),
        "{}",
        ping.all()
    );

    let empty = dir.path().join("empty.yaml");
    let o = deck(&bin, &url, &["dump", "-o", empty.to_str().unwrap()]).await;
    assert!(o.ok, "{}", o.all());
    assert_eq!(
        yaml(&empty),
        serde_yaml::from_str::<serde_yaml::Value>("_format_version: \"1.1\"").unwrap()
    );

    let state = fixture("deck-state.yaml");
    let o = deck(&bin, &url, &["diff", "-s", state.to_str().unwrap()]).await;
    assert!(o.ok, "{}", o.all());
    assert_eq!(summary(&o), (13, 0, 0));
    assert!(kong.take_mutations().is_empty(), "diff changes nothing");

    let o = deck(&bin, &url, &["sync", "-s", state.to_str().unwrap()]).await;
    assert!(o.ok, "{}", o.all());
    assert_eq!(summary(&o), (13, 0, 0));
    let m = kong.take_mutations();
    assert_eq!(m.len(), 13, "{m:?}");
    assert!(
        m.iter().all(|m| m.starts_with("PUT /")),
        "deck upserts by id: {m:?}"
    );

    // What Kong holds now, with its defaults: as checked in.
    let dumped = dir.path().join("dump.yaml");
    let o = deck(&bin, &url, &["dump", "-o", dumped.to_str().unwrap()]).await;
    assert!(o.ok, "{}", o.all());
    assert_eq!(
        hashed_passwords(yaml(&dumped)),
        yaml(&fixture("deck-dump.yaml"))
    );

    // That state again: nothing to do, nothing done.
    let full = fixture("deck-dump.yaml");
    let o = deck(&bin, &url, &["sync", "-s", full.to_str().unwrap()]).await;
    assert!(o.ok, "{}", o.all());
    assert_eq!(summary(&o), (0, 0, 0), "{}", o.all());
    let o = deck(&bin, &url, &["diff", "-s", full.to_str().unwrap()]).await;
    assert_eq!(summary(&o), (0, 0, 0), "{}", o.all());
    assert!(kong.take_mutations().is_empty());

    // The consumer's key as given; the templated route as a regex path.
    let (_, keys) = call(&url, "GET", "/consumers/shop-developer/key-auth", None, &[]).await;
    assert_eq!(keys["data"][0]["key"], "0123456789abcdef0123456789abcdef");
    let (_, route) = call(&url, "GET", "/routes/shop-get-item", None, &[]).await;
    assert_eq!(route["paths"], json!(["~/items/[^/]+$"]));
    assert_eq!(route["strip_path"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn deck_with_select_tag_manages_only_its_tagged_entities() {
    let Some(bin) = common::deck() else { return };
    let kong = KongStandin::start().await.unwrap();
    let url = kong.url();
    let dir = tempfile::tempdir().unwrap();
    // Somebody else's service, untagged.
    let (s, other) = call(
        &url,
        "POST",
        "/services",
        Some(json!({"name": "other", "host": "o"})),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{other}");
    call(
        &url,
        "POST",
        "/services/other/routes",
        Some(json!({"name": "other-r", "paths": ["/o"]})),
        &[],
    )
    .await;
    kong.take_mutations();

    let tag = ["--select-tag", "deployctl:shop"];
    let full = fixture("deck-dump.yaml");
    let o = deck(
        &bin,
        &url,
        &[&["sync", "-s", full.to_str().unwrap()][..], &tag].concat(),
    )
    .await;
    assert!(o.ok, "{}", o.all());
    assert_eq!(summary(&o), (13, 0, 0));
    kong.take_mutations();

    let dumped = dir.path().join("tagged.yaml");
    let o = deck(
        &bin,
        &url,
        &[&["dump", "-o", dumped.to_str().unwrap()][..], &tag].concat(),
    )
    .await;
    assert!(o.ok, "{}", o.all());
    let text = std::fs::read_to_string(&dumped).unwrap();
    assert!(
        !text.contains("other"),
        "the untagged service is not in a tagged dump:\n{text}"
    );
    assert!(text.contains("shop-get-items"));

    // One route fewer in the file: deck deletes that one, and nothing untagged.
    let mut state = yaml(&full);
    let routes = state["services"][0]["routes"].as_sequence_mut().unwrap();
    let before = routes.len();
    routes.retain(|r| r["name"].as_str() != Some("shop-get-items"));
    assert_eq!(routes.len(), before - 1);
    let smaller = dir.path().join("smaller.yaml");
    std::fs::write(&smaller, serde_yaml::to_string(&state).unwrap()).unwrap();
    let o = deck(
        &bin,
        &url,
        &[&["sync", "-s", smaller.to_str().unwrap()][..], &tag].concat(),
    )
    .await;
    assert!(o.ok, "{}", o.all());
    assert_eq!(summary(&o), (0, 0, 1), "{}", o.all());
    let m = kong.take_mutations();
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(m[0].starts_with("DELETE /routes/"), "{m:?}");
    assert_eq!(call(&url, "GET", "/services/other", None, &[]).await.0, 200);
    assert_eq!(call(&url, "GET", "/routes/other-r", None, &[]).await.0, 200);
    assert_eq!(
        call(&url, "GET", "/routes/shop-get-items", None, &[])
            .await
            .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deck_sends_the_admin_token_as_a_header() {
    let Some(bin) = common::deck() else { return };
    let kong = KongStandin::start_with(Options::with_admin_token("s3cret"))
        .await
        .unwrap();
    let url = kong.url();
    let o = deck(&bin, &url, &["ping"]).await;
    assert!(!o.ok, "without the token deck is refused: {}", o.all());
    let o = deck(
        &bin,
        &url,
        &["ping", "--headers", "Kong-Admin-Token:s3cret"],
    )
    .await;
    assert!(o.ok, "{}", o.all());
}

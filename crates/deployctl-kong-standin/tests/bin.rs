//! The `deployctl-kong-standin` binary: serves on the port asked for, says where, and
//! refuses bad arguments with exit 2.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_deployctl-kong-standin");

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_serves_and_requires_its_token() {
    let mut child = Command::new(BIN)
        .args(["--port", "0", "--admin-token", "t"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    let unauthorised = common::call(&url, "GET", "/", None, &[]).await.0;
    let (status, info) = common::call(&url, "GET", "/", None, &[("Kong-Admin-Token", "t")]).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(unauthorised, 401);
    assert_eq!(status, 200);
    assert_eq!(info["version"], deployctl_kong_standin::KONG_VERSION);
}

#[test]
fn bad_arguments_exit_2_with_the_usage() {
    for args in [&["--port", "eighty"][..], &["--colour"]] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("usage: deployctl-kong-standin"), "{err}");
    }
}

//! `cargo xtask reliability`: the full fault matrix and every kill -9 boundary.
//!
//! Starts the services and builds the fixtures as `test` does, then runs the reliability
//! tests of the binary (`crates/deployctl/tests/faults.rs` and `interrupt.rs`) with
//! `DEPLOYCTL_RELIABILITY_FULL=1` and `--nocapture`, so each prints its whole table. Plain
//! `cargo test` (and so CI) runs a subset of the same cells. Extra arguments go to the test
//! binaries (e.g. a test name filter).

use anyhow::Result;

use crate::{fixtures, services, util};

pub fn run(extra: &[&str]) -> Result<i32> {
    util::step("services up");
    let env = services::up()?;
    util::step("fixtures");
    fixtures::build()?;
    util::step("reliability: every stage × fault, every kill -9 boundary");
    let status = std::process::Command::new(util::cargo())
        .current_dir(util::root())
        .args([
            "test",
            "-p",
            "deployctl",
            "--test",
            "faults",
            "--test",
            "interrupt",
            "--",
            "--nocapture",
        ])
        .args(extra)
        .envs(env)
        .env("DEPLOYCTL_RELIABILITY_FULL", "1")
        .status()?;
    Ok(status.code().unwrap_or(1))
}

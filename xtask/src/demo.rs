//! `cargo xtask demo`: the main job end to end on local defaults.
//!
//! Today that is init → validate → plan → build on a fresh copy of `fixtures/apps/hello`,
//! the build on the local Docker engine that `services up` runs; deploy steps join as
//! their targets land.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{root, step};

pub fn run() -> Result<i32> {
    let bin = crate::util::release_binary()?;
    step("starting the local Docker engine and building the fixture app");
    let env = crate::services::up()?;
    crate::fixtures::build()?;
    let docker_host = env
        .get("DEPLOYCTL_TEST_DOCKER_HOST")
        .cloned()
        .unwrap_or_default();

    let work = root().join("target/demo");
    let app = work.join("hello");
    let _ = std::fs::remove_dir_all(&work);
    copy_dir(&root().join("fixtures/apps/hello"), &app)?;
    println!("    copied fixtures/apps/hello to {}", app.display());

    for args in [
        vec!["init"],
        vec!["validate"],
        vec!["plan"],
        vec!["--output", "json", "plan"],
        vec!["build"],
    ] {
        step(&format!("deployctl {}", args.join(" ")));
        let status = Command::new(&bin)
            .args(&args)
            .current_dir(&app)
            .env("DOCKER_HOST", &docker_host)
            .status()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        if !status.success() {
            bail!("deployctl {} failed ({status})", args.join(" "));
        }
    }
    step("done");
    println!("    the generated files are in {}", app.display());
    Ok(0)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "target" {
            continue;
        }
        let dest = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

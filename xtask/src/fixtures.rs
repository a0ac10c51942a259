//! Builds the fixture app: a static HTTP server that runs in a `FROM scratch` image; and the
//! AWS Lambda Web Adapter, statically linked the same way, for the Lambda emulator's tests.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{cargo, root, run};

/// `cargo xtask fixtures`: the fixture app and the adapter.
pub fn all() -> Result<i32> {
    build()?;
    adapter()?;
    Ok(0)
}

/// Builds `fixtures/apps/hello/hello` (statically linked) and returns its path.
pub fn build() -> Result<PathBuf> {
    let app = root().join("fixtures/apps/hello");
    let target_dir = root().join("target/fixtures");
    let triple = "x86_64-unknown-linux-gnu";
    run(Command::new(cargo())
        .args(["build", "--release", "--quiet", "--target", triple])
        .arg("--manifest-path")
        .arg(app.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static"))
    .context("building the fixture app failed")?;
    let built = target_dir.join(triple).join("release/hello");
    let dest = app.join("hello");
    std::fs::copy(&built, &dest)
        .with_context(|| format!("cannot copy {} to {}", built.display(), dest.display()))?;
    // A static executable has no program interpreter (no PT_INTERP program header).
    let bytes = std::fs::read(&dest)?;
    if has_interpreter(&bytes) {
        bail!(
            "{} is dynamically linked; it cannot run in a FROM scratch image",
            dest.display()
        );
    }
    println!("    built {} (static)", dest.display());
    Ok(dest)
}

/// The crate release of the AWS Lambda Web Adapter the emulator tests run. `deployctl init`
/// pins the adapter's image tag (`deployctl_scaffold::LAMBDA_ADAPTER_VERSION`, 1.1.0), which
/// has no crate release; this is the newest published crate (binary `lambda-adapter`).
pub const ADAPTER_CRATE_VERSION: &str = "1.0.0-rc1";

/// Builds `target/fixtures/adapter/bin/lambda-adapter` (statically linked) from the crate
/// `lambda_web_adapter` with its own lock file, once: an installed binary of this version is
/// kept (about 3 minutes of one core on a fresh machine otherwise).
pub fn adapter() -> Result<PathBuf> {
    let root_dir = root().join("target/fixtures/adapter");
    let bin = root_dir.join("bin/lambda-adapter");
    let record = std::fs::read_to_string(root_dir.join(".crates.toml")).unwrap_or_default();
    let installed = record.contains(&format!("lambda_web_adapter {ADAPTER_CRATE_VERSION} "));
    if !(installed && bin.is_file()) {
        let triple = "x86_64-unknown-linux-gnu";
        run(Command::new(cargo())
            .args([
                "install",
                "lambda_web_adapter",
                "--locked",
                "--quiet",
                "--force",
            ])
            .args(["--version", ADAPTER_CRATE_VERSION, "--target", triple])
            .arg("--root")
            .arg(&root_dir)
            .arg("--target-dir")
            .arg(root().join("target/fixtures/adapter-build"))
            .env("RUSTFLAGS", "-C target-feature=+crt-static"))
        .context("building the AWS Lambda Web Adapter (crate lambda_web_adapter) failed")?;
    }
    if has_interpreter(&std::fs::read(&bin)?) {
        bail!(
            "{} is dynamically linked; it cannot run in a FROM scratch image",
            bin.display()
        );
    }
    println!(
        "    {} {} (lambda_web_adapter {ADAPTER_CRATE_VERSION}, static)",
        if installed { "kept" } else { "built" },
        bin.display()
    );
    Ok(bin)
}

/// Whether an ELF64 little-endian executable names a program interpreter.
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..usize::from(phnum)).any(|i| u32_at(phoff + i * usize::from(phentsize)) == Some(3))
}

//! `cargo xtask fuzz [--time 60s] [TARGET...]`: runs the cargo-fuzz targets of
//! `crates/deployctl-fuzz` (all of them when none is named), each for the given time.
//!
//! cargo-fuzz is installed when missing (`cargo install cargo-fuzz --locked`) and runs with
//! `RUSTC_BOOTSTRAP=1`, since the only toolchain is stable and it builds with
//! `-Zsanitizer=address`. Everything it writes lives under `target/fuzz/`: the build, the
//! corpus each target grows (`corpus/<target>`), the seeds copied from `fixtures/` at every
//! run (`seeds/<target>`) and libFuzzer's logs. An input that crashes, hangs past
//! [`INPUT_TIMEOUT_S`] or runs out of memory is copied to `fixtures/fuzz/<target>/`, where the
//! owning crate's `tests/fuzz_regressions.rs` replays it under plain `cargo test`.
//!
//! `cargo xtask test` runs every target for [`CI_SECONDS`] (or `DEPLOYCTL_FUZZ_SECONDS`;
//! `0` skips) after the tests.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::util;

/// Every target, in `crates/deployctl-fuzz/fuzz_targets/`.
pub const TARGETS: [&str; 5] = [
    "config",
    "dockerignore",
    "image_ref",
    "k8s_filters",
    "unpack",
];

/// Seconds per target in `cargo xtask test`.
pub const CI_SECONDS: u64 = 10;

/// libFuzzer's `-timeout`: one input taking longer is a hang, saved like a crash.
pub const INPUT_TIMEOUT_S: u64 = 10;

/// After this many failing inputs a target stops: they are likely one bug.
const MAX_FAILURES: usize = 3;

/// What one target's run found.
#[derive(Debug)]
pub struct Outcome {
    /// The target.
    pub target: &'static str,
    /// Inputs executed (libFuzzer's `number_of_executed_units`, summed over restarts).
    pub executions: u64,
    /// Seconds libFuzzer fuzzed (its `Done N runs in S second(s)`, summed).
    pub fuzzed_s: u64,
    /// How long it took, with the build `cargo fuzz run` checks first.
    pub elapsed: Duration,
    /// The failing inputs, as saved under `fixtures/fuzz/<target>/`.
    pub failures: Vec<PathBuf>,
}

/// `cargo xtask fuzz [--time 60s] [TARGET...]`.
pub fn cli(args: &[&str]) -> Result<i32> {
    let mut time = Duration::from_secs(60);
    let mut targets = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if let Some(value) = arg.strip_prefix("--time=") {
            time = parse_duration(value)?;
        } else if *arg == "--time" {
            let value = rest.next().context("--time needs a value, e.g. 60s")?;
            time = parse_duration(value)?;
        } else if let Some(t) = TARGETS.iter().find(|t| *t == arg) {
            targets.push(*t);
        } else {
            bail!(
                "unknown fuzz target or option `{arg}`; targets: {}",
                TARGETS.join(", ")
            );
        }
    }
    if targets.is_empty() {
        targets = TARGETS.to_vec();
    }
    let outcomes = run(&targets, time)?;
    Ok(i32::from(outcomes.iter().any(|o| !o.failures.is_empty())))
}

/// The short run of `cargo xtask test`: every target for `DEPLOYCTL_FUZZ_SECONDS` (default
/// [`CI_SECONDS`]) seconds; `None` when that is 0.
pub fn short_run() -> Result<Option<Vec<Outcome>>> {
    let seconds = match std::env::var("DEPLOYCTL_FUZZ_SECONDS") {
        Ok(s) => s
            .trim()
            .parse::<u64>()
            .with_context(|| format!("DEPLOYCTL_FUZZ_SECONDS={s:?} is not a whole number"))?,
        Err(_) => CI_SECONDS,
    };
    if seconds == 0 {
        println!("fuzz: skipped (DEPLOYCTL_FUZZ_SECONDS=0)");
        return Ok(None);
    }
    run(&TARGETS, Duration::from_secs(seconds)).map(Some)
}

/// `60s`, `2m`, `1m30s` or plain seconds.
fn parse_duration(text: &str) -> Result<Duration> {
    let bad = || anyhow::anyhow!("`{text}` is not a duration such as 60s, 2m or 1m30s");
    let mut total = 0u64;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total += match c {
            'h' => n * 3600,
            'm' => n * 60,
            's' => n,
            _ => return Err(bad()),
        };
    }
    if !digits.is_empty() {
        total += digits.parse::<u64>().map_err(|_| bad())?;
    }
    if total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

fn fuzz_dir() -> PathBuf {
    util::root().join("crates/deployctl-fuzz")
}

fn work_dir() -> PathBuf {
    util::target_dir().join("fuzz")
}

/// `cargo fuzz <verb>` with the fuzz crate, its build directory and `RUSTC_BOOTSTRAP=1`.
fn cargo_fuzz(verb: &str) -> Command {
    let mut cmd = Command::new(util::cargo());
    cmd.current_dir(util::root())
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", verb, "--fuzz-dir"])
        .arg(fuzz_dir())
        .arg("--target-dir")
        .arg(work_dir().join("build"))
        // Overflow checks and debug assertions: an arithmetic overflow is a finding too.
        .arg("--debug-assertions");
    cmd
}

/// Installs cargo-fuzz when `cargo fuzz` is not there.
fn ensure_cargo_fuzz() -> Result<()> {
    let present = Command::new(util::cargo())
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    util::step("installing cargo-fuzz (cargo install cargo-fuzz --locked)");
    let started = Instant::now();
    let status = Command::new(util::cargo())
        .args(["install", "cargo-fuzz", "--locked", "--quiet"])
        .status()
        .context("cannot run cargo install")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz --locked failed ({status})");
    }
    println!(
        "cargo-fuzz installed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Builds and runs `targets`, each for `time`; prints a line per target and a summary.
pub fn run(targets: &[&'static str], time: Duration) -> Result<Vec<Outcome>> {
    ensure_cargo_fuzz()?;
    util::step(&format!("cargo fuzz build ({})", targets.join(", ")));
    let started = Instant::now();
    let mut build = cargo_fuzz("build");
    if targets.len() == 1 {
        build.args(targets);
    }
    let status = build.status().context("cannot run cargo fuzz build")?;
    if !status.success() {
        bail!("cargo fuzz build failed ({status})");
    }
    println!("fuzz build: {:.0} s", started.elapsed().as_secs_f64());
    let mut outcomes = Vec::new();
    for target in targets {
        util::step(&format!("fuzz {target} for {} s", time.as_secs()));
        let outcome = run_target(target, time)?;
        println!(
            "{target}: {} executions in {} s of fuzzing ({:.0} s in all), {} failing input{}",
            outcome.executions,
            outcome.fuzzed_s,
            outcome.elapsed.as_secs_f64(),
            outcome.failures.len(),
            if outcome.failures.len() == 1 { "" } else { "s" }
        );
        for f in &outcome.failures {
            println!("  saved {}", f.display());
        }
        outcomes.push(outcome);
    }
    println!(
        "\n{:<14} {:>8} {:>12} {:>8}",
        "target", "seconds", "executions", "failing"
    );
    for o in &outcomes {
        println!(
            "{:<14} {:>8} {:>12} {:>8}",
            o.target,
            o.fuzzed_s,
            o.executions,
            o.failures.len()
        );
    }
    if outcomes.iter().any(|o| !o.failures.is_empty()) {
        println!(
            "\nfailing inputs are in fixtures/fuzz/<target>/: fix the code, keep the file \
             (the crate's tests/fuzz_regressions.rs replays it) and commit both"
        );
    }
    Ok(outcomes)
}

/// Runs one target for `time`, restarting libFuzzer after a failing input (it stops at the
/// first) until the time is used, [`MAX_FAILURES`] inputs failed, or an input fails again.
fn run_target(target: &'static str, time: Duration) -> Result<Outcome> {
    let work = work_dir();
    let corpus = work.join("corpus").join(target);
    let seeds = work.join("seeds").join(target);
    let artifacts = work.join("artifacts").join(target);
    let logs = work.join("logs");
    for dir in [&corpus, &artifacts, &logs] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    write_seeds(target, &seeds)?;
    let saved_dir = util::root().join("fixtures/fuzz").join(target);
    let started = Instant::now();
    let mut outcome = Outcome {
        target,
        executions: 0,
        fuzzed_s: 0,
        elapsed: Duration::ZERO,
        failures: Vec::new(),
    };
    let mut seen = BTreeSet::new();
    let mut round = 0;
    loop {
        let left = time.saturating_sub(started.elapsed());
        if left < Duration::from_secs(1) {
            break;
        }
        round += 1;
        let mut cmd = cargo_fuzz("run");
        cmd.arg(target).arg(&corpus).arg(&seeds);
        if saved_dir.is_dir() {
            // Inputs that failed before: seeds now, and a regression if one fails again.
            cmd.arg(&saved_dir);
        }
        cmd.arg("--")
            .arg(format!("-max_total_time={}", left.as_secs()))
            .arg(format!("-timeout={INPUT_TIMEOUT_S}"))
            .arg("-rss_limit_mb=2048")
            .arg("-print_final_stats=1")
            .arg(format!("-artifact_prefix={}/", artifacts.display()));
        let out = cmd
            .output()
            .with_context(|| format!("cannot run cargo fuzz run {target}"))?;
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let log_file = logs.join(format!("{target}-{round}.log"));
        std::fs::write(&log_file, &log)
            .with_context(|| format!("cannot write {}", log_file.display()))?;
        outcome.executions += executions(&log);
        outcome.fuzzed_s += fuzzed_seconds(&log);
        let written = artifact_paths(&log);
        if out.status.success() {
            break;
        }
        if written.is_empty() {
            bail!(
                "cargo fuzz run {target} failed ({}) without saving an input; see {}",
                out.status,
                log_file.display()
            );
        }
        let mut repeated = false;
        for artifact in written {
            let name = artifact
                .file_name()
                .context("libFuzzer named an artifact without a file name")?
                .to_owned();
            repeated |= !seen.insert(name.clone());
            std::fs::create_dir_all(&saved_dir)?;
            let saved = saved_dir.join(&name);
            std::fs::copy(&artifact, &saved).with_context(|| {
                format!("cannot copy {} to {}", artifact.display(), saved.display())
            })?;
            if !outcome.failures.contains(&saved) {
                outcome.failures.push(saved);
            }
            if let Some(reason) = failure_reason(&log) {
                println!("{target}: {reason}");
            }
        }
        if repeated || outcome.failures.len() >= MAX_FAILURES {
            break;
        }
    }
    outcome.elapsed = started.elapsed();
    Ok(outcome)
}

/// Executions from libFuzzer's output: `stat::number_of_executed_units: N` (printed at exit
/// and on a crash), else the last `#N` status line.
fn executions(log: &str) -> u64 {
    let stat = log.lines().rev().find_map(|l| {
        l.trim()
            .strip_prefix("stat::number_of_executed_units:")
            .and_then(|n| n.trim().parse().ok())
    });
    stat.or_else(|| {
        log.lines().rev().find_map(|l| {
            l.strip_prefix('#')
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
    })
    .unwrap_or(0)
}

/// Seconds from libFuzzer's closing `Done N runs in S second(s)` (absent after a crash).
fn fuzzed_seconds(log: &str) -> u64 {
    log.lines()
        .rev()
        .find_map(|l| {
            l.strip_prefix("Done ")
                .and_then(|rest| rest.split_once(" runs in "))
                .and_then(|(_, s)| s.split_whitespace().next())
                .and_then(|s| s.parse().ok())
        })
        .unwrap_or(0)
}

/// The inputs libFuzzer saved (`Test unit written to PATH`).
fn artifact_paths(log: &str) -> Vec<PathBuf> {
    log.lines()
        .filter_map(|l| l.split_once("Test unit written to ").map(|(_, p)| p.trim()))
        .map(PathBuf::from)
        .collect()
}

/// The first line saying why the input failed (a panic, a timeout, a sanitizer report).
fn failure_reason(log: &str) -> Option<String> {
    log.lines()
        .find(|l| {
            l.contains("panicked at")
                || l.contains("ERROR: libFuzzer:")
                || l.contains("ERROR: AddressSanitizer")
        })
        .map(|l| l.trim().to_owned())
}

/// Writes the seed inputs of `target`, taken from `fixtures/` at every run, into `dir`.
fn write_seeds(target: &str, dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    let fixtures = util::root().join("fixtures");
    let seeds: Vec<Vec<u8>> = match target {
        // Every config fixture, valid and invalid, and the Kubernetes cases.
        "config" => files_under(&fixtures, &|p| {
            p.extension().is_some_and(|e| e == "yaml" || e == "yml")
                && (p.starts_with(fixtures.join("config")) || p.ends_with("deploy.yaml"))
        })
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect(),
        // Every `.dockerignore`, and each with its own lines as paths after a NUL.
        "dockerignore" => files_under(&fixtures, &|p| p.ends_with(".dockerignore"))
            .into_iter()
            .filter_map(|p| std::fs::read(p).ok())
            .flat_map(|text| {
                let mut with_paths = text.clone();
                with_paths.push(0);
                with_paths.extend_from_slice(b"target/debug/app\nsrc/main.rs\n.git/HEAD\n");
                [text, with_paths]
            })
            .collect(),
        // Registry URLs, repositories and base images the fixtures name, alone and combined.
        "image_ref" => {
            let mut refs = BTreeSet::new();
            for p in files_under(&fixtures, &|p| {
                p.extension().is_some_and(|e| e == "yaml")
                    || p.file_name().is_some_and(|n| n == "Dockerfile")
            }) {
                let text = std::fs::read_to_string(p).unwrap_or_default();
                for line in text.lines() {
                    let line = line.trim();
                    for key in ["url:", "repository:", "image:", "FROM "] {
                        if let Some(v) = line.strip_prefix(key) {
                            let v = v.trim().trim_matches('"');
                            let v = v.strip_prefix("https://").unwrap_or(v);
                            if !v.is_empty() {
                                refs.insert(v.to_owned());
                                refs.insert(format!("{v}/app:1.0"));
                                refs.insert(format!(
                                    "{v}/app@sha256:{}",
                                    "0123456789abcdef".repeat(4)
                                ));
                            }
                        }
                    }
                }
            }
            refs.into_iter().map(String::into_bytes).collect()
        }
        // Values of the Kubernetes fixtures (special characters among them) and JSON files.
        "k8s_filters" => {
            let mut values = BTreeSet::new();
            for p in files_under(&fixtures.join("k8s"), &|p| p.ends_with("deploy.yaml")) {
                let text = std::fs::read_to_string(p).unwrap_or_default();
                for line in text.lines() {
                    if let Some((_, v)) = line.split_once(": ") {
                        values.insert(v.trim().as_bytes().to_vec());
                    }
                }
            }
            for p in files_under(&fixtures, &|p| p.extension().is_some_and(|e| e == "json")) {
                if let Ok(bytes) = std::fs::read(p) {
                    values.insert(bytes);
                }
            }
            values.into_iter().collect()
        }
        // The fixture apps as the CLI's client sends them: a tar of each (the stream the
        // target reads), and the same gzipped (the request body), written by the system's tar.
        "unpack" => {
            let mut out = Vec::new();
            let apps = fixtures.join("apps");
            for entry in std::fs::read_dir(&apps)?.filter_map(Result::ok) {
                for flags in ["-cf", "-czf"] {
                    let o = Command::new("tar")
                        .args(["--format=gnu", flags, "-", "-C"])
                        .arg(entry.path())
                        .arg(".")
                        .output()
                        .context("cannot run tar for the unpack seeds")?;
                    if o.status.success() && o.stdout.len() <= 1 << 20 {
                        out.push(o.stdout);
                    }
                }
            }
            out
        }
        other => bail!("no seeds for fuzz target `{other}`"),
    };
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:04}")), seed)?;
    }
    Ok(())
}

/// Files below `dir` (not in `target/` or `fuzz/` directories) that `keep` accepts, sorted.
fn files_under(dir: &Path, keep: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if name != "target" && name != "fuzz" && name != "node_modules" {
                    stack.push(path);
                }
            } else if keep(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s").ok(), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("60").ok(), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m30s").ok(), Some(Duration::from_secs(90)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
    }

    #[test]
    fn executions_and_artifacts_from_libfuzzer_output() {
        let log = "#2\tINITED cov: 10\n#4096\tpulse  cov: 12\n#52113\tDONE   cov: 40 exec/s: 868\n\
                   stat::number_of_executed_units: 52113\nstat::average_exec_per_sec:     868\n";
        assert_eq!(executions(log), 52113);
        assert_eq!(fuzzed_seconds("Done 52113 runs in 60 second(s)\n"), 60);
        assert_eq!(executions("#77\tNEW cov: 3\n"), 77);
        let crash = "==1== ERROR: libFuzzer: deadly signal\nMS: 1 ChangeByte-; base unit: 0\n\
                     artifact_prefix='/t/a/'; Test unit written to /t/a/crash-abc\n";
        assert_eq!(artifact_paths(crash), [PathBuf::from("/t/a/crash-abc")]);
        assert_eq!(
            failure_reason(crash).as_deref(),
            Some("==1== ERROR: libFuzzer: deadly signal")
        );
    }
}

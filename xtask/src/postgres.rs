//! PostgreSQL for `deployctl serve`'s store tests: Debian's `postgresql`, a cluster made with
//! `initdb` (in `target/services/postgres/data`, or under /tmp when we are root), listening on
//! a free loopback port only, with trust authentication (a test database on loopback, never
//! anything else). Run as the `postgres` user when we are root (PostgreSQL refuses root).

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::util::{run, wait_for};

/// The role and database the tests connect as.
const USER: &str = "deployctl";

/// The directory of the newest installed PostgreSQL's programs.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

/// Installs Debian's `postgresql` when no server is installed.
pub fn install() -> Result<()> {
    if bin_dir().is_some() {
        return Ok(());
    }
    println!("    installing postgresql (Debian package)");
    run(Command::new("apt-get")
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "postgresql"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    Ok(())
}

/// FNV-1a of a path: a stable name for its cluster dir.
fn fnv(p: &Path) -> u64 {
    p.to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program` run as the `postgres` user when we are root (`setpriv` execs it, so the pid
/// is the program's own).
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn answers(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .is_ok()
}

/// Starts the cluster (made on first use) and returns `DEPLOYCTL_TEST_DATABASE_URL`.
pub fn up(state: &Path) -> Result<BTreeMap<String, String>> {
    install()?;
    let bin = bin_dir().context("no PostgreSQL server under /usr/lib/postgresql after install")?;
    let dir = state.join("postgres");
    fs::create_dir_all(&dir)?;
    // The cluster's own files belong to the postgres user, who may not be able to reach the
    // checkout (a clone under /root): as root they live under /tmp, one dir per checkout.
    let own = if is_root() {
        let d = PathBuf::from(format!("/tmp/deployctl-postgres-{:016x}", fnv(&dir)));
        fs::create_dir_all(&d)?;
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&d))?;
        d
    } else {
        dir.clone()
    };
    let data = own.join("data");
    if !data.join("PG_VERSION").is_file() {
        run(as_owner(&bin.join("initdb")).arg("-D").arg(&data).args([
            "-U",
            USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]))
        .context("initdb failed")?;
    }
    let port = crate::services::port_for(&dir, |a| {
        a.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .is_some_and(answers)
    })?;
    if !crate::services::running(&dir, || answers(port)) {
        let pid = crate::services::spawn(
            as_owner(&bin.join("postgres"))
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string()])
                .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
                .arg("-c")
                .arg(format!("unix_socket_directories={}", own.display())),
            &dir,
        )?;
        let ready = bin.join("pg_isready");
        if !wait_for(Duration::from_secs(60), || {
            Command::new(&ready)
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success())
        }) {
            bail!(
                "postgres (pid {pid}) did not accept connections on 127.0.0.1:{port} within 60 s; its log ends:\n{}",
                crate::services::log_tail(&dir)
            );
        }
        println!("    postgres started on 127.0.0.1:{port} (pid {pid})");
    } else {
        println!("    postgres already running on 127.0.0.1:{port}");
    }
    Ok(BTreeMap::from([(
        "DEPLOYCTL_TEST_DATABASE_URL".to_owned(),
        format!("postgres://{USER}@127.0.0.1:{port}/postgres"),
    )]))
}

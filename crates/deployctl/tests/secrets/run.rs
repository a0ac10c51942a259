//! The run: one app dir, every command audited.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

use crate::*;

pub(crate) struct Run {
    pub(crate) phase: &'static str,
    pub(crate) root: PathBuf,
    pub(crate) app: PathBuf,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) audit: Audit,
    /// Files under `root` as last seen: (modified, length).
    pub(crate) files: BTreeMap<PathBuf, (SystemTime, u64)>,
    /// The Secret files `render --out` wrote.
    pub(crate) secret_files: Vec<PathBuf>,
    pub(crate) commands: usize,
}

/// An `extra` value that removes the variable: the day-two commands (status, logs,
/// history, rollback, destroy) run as a user runs them, without the secrets they never use.
pub(crate) const UNSET: &str = "\u{0}unset";

/// The output variants every command runs in: text, JSON, and traced.
pub(crate) const VARIANTS: [&[&str]; 3] = [&[], &["-o", "json"], &["-v", "-v"]];

/// `pre` then `args`, as one argument list.
pub(crate) fn with(pre: &[&str], args: &[&str]) -> Vec<String> {
    pre.iter().chain(args).map(|s| (*s).to_owned()).collect()
}

pub(crate) fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, (SystemTime, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if meta.is_dir() {
            walk(&e.path(), out);
        } else if meta.is_file() {
            out.insert(
                e.path(),
                (meta.modified().unwrap_or(UNIX_EPOCH), meta.len()),
            );
        }
    }
}

impl Run {
    pub(crate) fn snapshot(&self) -> BTreeMap<PathBuf, (SystemTime, u64)> {
        let mut files = BTreeMap::new();
        walk(&self.root, &mut files);
        files
    }

    /// Runs `deployctl args` with the run's environment and `extra`; audits stdout, stderr
    /// and every file it created or changed.
    pub(crate) fn deployctl<S: AsRef<str>>(
        &mut self,
        args: &[S],
        extra: &[(&str, &str)],
    ) -> Output {
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        self.commands += 1;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_deployctl"));
        cmd.args(&args).current_dir(&self.app).env_clear();
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            if *v == UNSET {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        let o = cmd.output().unwrap();
        let label = format!("{}: deployctl {}", self.phase, args.join(" "));
        let is_render = args.contains(&"render") && !args.contains(&"--out");
        if is_render {
            self.check_render_stdout(&label, &o.stdout, args.contains(&"json"));
        } else {
            self.audit.check(&format!("{label} (stdout)"), &o.stdout);
        }
        self.audit.check(&format!("{label} (stderr)"), &o.stderr);
        let now = self.snapshot();
        for (path, stamp) in &now {
            if self.files.get(path) == Some(stamp) {
                continue;
            }
            let bytes = std::fs::read(path).unwrap_or_default();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if args.contains(&"--out") && name.starts_with("secret-") {
                // The one file allowed to hold the values: it must, or the search is blind.
                assert!(
                    self.audit.holds("secrets: value", &bytes)
                        || self.audit.holds("registry password", &bytes),
                    "{label}: {} holds no marker",
                    path.display()
                );
                self.secret_files.push(path.clone());
                continue;
            }
            if self.secret_files.contains(path) {
                continue;
            }
            self.audit
                .check(&format!("{label} (wrote {})", path.display()), &bytes);
        }
        self.files = now;
        o
    }

    /// `render` without --out prints the Secrets too (for `kubectl apply -f -`): they are
    /// the allowed place; every other byte is searched.
    pub(crate) fn check_render_stdout(&mut self, label: &str, stdout: &[u8], json: bool) {
        let text = String::from_utf8_lossy(stdout);
        let mut secret_docs = 0;
        let mut rest = String::new();
        if json {
            for line in text.lines() {
                let mut v: Value = serde_json::from_str(line).unwrap();
                if let Some(ms) = v.get_mut("manifests").and_then(Value::as_array_mut) {
                    ms.retain(|m| {
                        let secret = m["kind"] == "Secret";
                        secret_docs += usize::from(secret);
                        !secret
                    });
                }
                rest.push_str(&v.to_string());
                rest.push('\n');
            }
        } else {
            for doc in text.split("---\n") {
                if doc.lines().any(|l| l == "kind: Secret") {
                    assert!(
                        self.audit.holds("secrets: value", doc.as_bytes())
                            || self.audit.holds("registry password", doc.as_bytes()),
                        "{label}: a Secret without a marker"
                    );
                    secret_docs += 1;
                } else {
                    rest.push_str(doc);
                }
            }
        }
        assert!(secret_docs >= 1, "{label}: no Secret rendered: {text}");
        self.audit
            .check(&format!("{label} (stdout)"), rest.as_bytes());
    }

    /// In every variant: `render k8s` of `image` to stdout and with `--out` (into
    /// `manifests-<i>`), then `status`, `logs` and `history` with `bare` (the secrets unset).
    pub(crate) fn render_and_inspect(&mut self, image: &str, bare: &[(&str, &str)]) {
        for (i, pre) in VARIANTS.into_iter().enumerate() {
            let out = self.root.join(format!("manifests-{i}"));
            let out = out.to_str().unwrap().to_owned();
            self.ok(&with(pre, &["render", "k8s", "--image", image]), &[]);
            self.ok(
                &with(pre, &["render", "k8s", "--image", image, "--out", &out]),
                &[],
            );
            self.ok(&with(pre, &["status"]), bare);
            self.ok(&with(pre, &["logs", "--tail", "20"]), bare);
            self.ok(&with(pre, &["history"]), bare);
        }
    }

    /// Like [`Run::deployctl`], and the command must succeed.
    pub(crate) fn ok<S: AsRef<str> + std::fmt::Debug>(
        &mut self,
        args: &[S],
        extra: &[(&str, &str)],
    ) -> Output {
        let o = self.deployctl(args, extra);
        assert!(
            o.status.success(),
            "{}: deployctl {args:?} failed: {}{}",
            self.phase,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }
}

impl Drop for Run {
    /// A failed test still removes what it deployed (unaudited: the test has failed).
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_deployctl"));
            cmd.args(["destroy", "--purge-images"])
                .current_dir(&self.app)
                .env_clear()
                .envs(self.env.iter().map(|(k, v)| (k, v)));
            let _ = cmd.output();
        }
    }
}

pub(crate) fn result_of(o: &Output) -> Value {
    let text = String::from_utf8_lossy(&o.stdout);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Every target's plan of a JSON deploy result changes nothing.
pub(crate) fn all_unchanged(result: &Value) -> bool {
    result["targets"].as_array().unwrap().iter().all(|t| {
        t["plan"]["changes"]
            .as_array()
            .is_none_or(|cs| cs.iter().all(|c| c["action"] == "unchanged"))
    })
}

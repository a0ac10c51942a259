//! Printing results: text for people, one JSON object per line for scripts.
//!
//! Text goes to stdout for results and stderr for errors. With `--output json`, stdout carries
//! only JSON lines: events (later) and one final `result` object carrying
//! `schema_version` (`deployctl_core::EVENT_SCHEMA_VERSION`).

use deployctl_core::ErrorKind;
use serde_json::{Value, json};

use crate::cli::OutputFormat;

/// Writes one line to stdout. A closed stdout (`deployctl … | head`) is not an error worth
/// a panic: the line is dropped.
pub fn out_line(line: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Writes text to stdout as is (no newline added), ignoring a closed stdout.
pub fn out_text(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Writes one line to stderr, ignoring a closed stderr.
pub fn err_line(line: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// A failure as the user sees it: what failed, why, what to do, and its kind (the exit
/// code comes from [`ErrorKind::exit_code`], the one mapping).
#[derive(Debug)]
pub struct Failure {
    /// What kind of failure: decides the exit code.
    pub kind: ErrorKind,
    /// One line: what failed.
    pub message: String,
    /// Causes, outermost first.
    pub causes: Vec<String>,
    /// What to do.
    pub hint: Option<String>,
    /// Per-field problems (config validation).
    pub diagnostics: Vec<deployctl_config::Diagnostic>,
}

impl Failure {
    /// A failure of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            causes: Vec::new(),
            hint: None,
            diagnostics: Vec::new(),
        }
    }

    /// Invalid input (config, flags, arguments): exit 2, nothing remote touched.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// The environment is not usable (credentials, engine, cluster): exit 3.
    pub fn environment(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Environment, message)
    }

    /// A remote operation failed: exit 1.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Failed, message)
    }

    /// The exit code of this failure.
    pub fn code(&self) -> i32 {
        self.kind.exit_code()
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// A failure from a pipeline stage: its kind's exit code, message, causes and hint.
    pub fn from_stage(err: &deployctl_core::StageError) -> Self {
        let mut f = Self::new(err.kind, err.message.clone());
        f.causes = err.chain().into_iter().skip(1).collect();
        f.hint.clone_from(&err.hint);
        f
    }

    /// Adds the cause chain of `err`.
    pub fn caused_by(mut self, err: &(dyn std::error::Error + 'static)) -> Self {
        let mut next = Some(err);
        while let Some(e) = next {
            let text = e.to_string();
            if !self.causes.contains(&text) && text != self.message {
                self.causes.push(text);
            }
            next = e.source();
        }
        self
    }
}

/// Where and how results are printed.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    format: OutputFormat,
    /// The workspace service this output belongs to (`deploy --workspace`): text lines are
    /// prefixed with it and JSON objects carry it as `service`.
    service: Option<&'static str>,
}

impl Output {
    pub fn new(format: OutputFormat) -> Self {
        Self {
            format,
            service: None,
        }
    }

    /// The same output for one service of a workspace. The name is kept for the rest of the
    /// process (a workspace has a handful of services).
    pub fn for_service(self, name: &str) -> Self {
        Self {
            service: Some(Box::leak(name.to_owned().into_boxed_str())),
            ..self
        }
    }

    /// Adds `service` to a JSON object when this output belongs to a service.
    fn tag(&self, obj: &mut Value) {
        if let (Some(s), Value::Object(o)) = (self.service, obj) {
            o.insert("service".into(), Value::from(s));
        }
    }

    pub fn is_json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    /// Prints a text line (text mode only).
    pub fn text(&self, line: impl AsRef<str>) {
        if !self.is_json() {
            match self.service {
                Some(s) => out_line(format_args!("{s} | {}", line.as_ref())),
                None => out_line(line.as_ref()),
            }
        }
    }

    /// Prints the final result object (JSON mode only).
    pub fn result(&self, command: &str, data: Value) {
        if self.is_json() {
            let mut obj = json!({
                "schema_version": deployctl_core::EVENT_SCHEMA_VERSION,
                "type": "result",
                "command": command,
                "ok": true,
            });
            merge(&mut obj, data);
            self.tag(&mut obj);
            out_line(&obj);
        }
    }

    /// Reports `failure` and returns its exit code.
    pub fn fail(&self, command: &str, failure: &Failure) -> i32 {
        if self.is_json() {
            let mut obj = json!({
                "schema_version": deployctl_core::EVENT_SCHEMA_VERSION,
                "type": "result",
                "command": command,
                "ok": false,
                "exit_code": failure.code(),
                "error": {
                    "message": failure.message,
                    "causes": failure.causes,
                    "hint": failure.hint,
                    "diagnostics": failure.diagnostics,
                },
            });
            self.tag(&mut obj);
            out_line(&obj);
        } else {
            match self.service {
                Some(s) => err_line(format_args!("{s} | error: {}", failure.message)),
                None => err_line(format_args!("error: {}", failure.message)),
            }
            for d in &failure.diagnostics {
                err_line(format_args!("{d}"));
            }
            for cause in &failure.causes {
                err_line(format_args!("  caused by: {cause}"));
            }
            if let Some(hint) = &failure.hint {
                err_line(format_args!("  hint: {hint}"));
            }
        }
        failure.code()
    }
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        for (k, v) in from {
            into.insert(k, v);
        }
    }
}

/// Prints pipeline events as they happen: on a terminal, one live line per stage and target
/// (spinner, step counter or byte bar, latest message, duration when done); otherwise (a pipe,
/// CI, `NO_COLOR`) timestamped lines on stderr; with `--output json`, JSON lines on stdout.
#[derive(Debug)]
pub struct EventPrinter {
    output: Output,
    start: std::time::Instant,
    live: Option<Live>,
}

#[derive(Debug)]
struct Live {
    multi: indicatif::MultiProgress,
    bars: std::sync::Mutex<std::collections::HashMap<String, indicatif::ProgressBar>>,
}

impl Live {
    fn bar(&self, key: &str) -> indicatif::ProgressBar {
        let mut bars = match self.bars.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        bars.entry(key.to_owned())
            .or_insert_with(|| {
                let bar = self.multi.add(indicatif::ProgressBar::new_spinner());
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} {prefix:<14} {msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                bar.set_prefix(key.to_owned());
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                bar
            })
            .clone()
    }

    fn show(&self, event: &deployctl_core::Event, service: Option<&str>) {
        use deployctl_core::EventKind;
        let key = match service {
            Some(s) => format!("{s}/{}", event.stage),
            None => event.stage.to_string(),
        };
        let bar = self.bar(&key);
        match &event.kind {
            EventKind::Started => bar.set_message("started"),
            EventKind::Progress(p) => match (p.current, p.total) {
                (Some(c), Some(t)) if p.unit.as_deref() == Some("bytes") => bar.set_message(
                    format!("{} {:.1}/{:.1} MB", p.item, c as f64 / 1e6, t as f64 / 1e6),
                ),
                (Some(c), Some(t)) => bar.set_message(format!("[{c}/{t}] {}", p.item)),
                _ => bar.set_message(p.item.clone()),
            },
            EventKind::Message { text } => bar.set_message(text.trim().to_owned()),
            EventKind::Finished {
                duration_ms,
                summary,
            } => {
                bar.set_style(
                    indicatif::ProgressStyle::with_template("✓ {prefix:<14} {msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                bar.finish_with_message(format!(
                    "{summary} ({:.1}s)",
                    *duration_ms as f64 / 1000.0
                ));
            }
            EventKind::Skipped { reason } => {
                bar.set_style(
                    indicatif::ProgressStyle::with_template("- {prefix:<14} {msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                bar.finish_with_message(format!("skipped: {reason}"));
            }
            EventKind::Failed { error, .. } => {
                bar.set_style(
                    indicatif::ProgressStyle::with_template("✗ {prefix:<14} {msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                bar.abandon_with_message(format!(
                    "failed: {}",
                    error.first().map_or("", String::as_str)
                ));
            }
            _ => {}
        }
    }
}

impl EventPrinter {
    pub fn new(output: Output) -> Self {
        use std::io::IsTerminal;
        let live = (!output.is_json()
            && std::io::stderr().is_terminal()
            && std::env::var_os("NO_COLOR").is_none()
            && std::env::var_os("CI").is_none())
        .then(|| Live {
            multi: indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::stderr(),
            ),
            bars: std::sync::Mutex::new(std::collections::HashMap::new()),
        });
        Self {
            output,
            start: std::time::Instant::now(),
            live,
        }
    }
}

impl deployctl_core::EventSink for EventPrinter {
    fn emit(&self, event: deployctl_core::Event) {
        use deployctl_core::EventKind;
        // In the log too (`-v`), so stages line up with the libraries' own lines.
        tracing::debug!(stage = %event.stage, event = ?event.kind, "stage");
        if self.output.is_json() {
            // One shape for the CLI's event lines and the API's event stream.
            let mut obj = event.to_json();
            self.output.tag(&mut obj);
            out_line(&obj);
            return;
        }
        if let Some(live) = &self.live {
            live.show(&event, self.output.service);
            return;
        }
        let t = self.start.elapsed().as_secs_f64();
        let line = match &event.kind {
            EventKind::Started => "started".to_owned(),
            EventKind::Progress(p) => p.item.clone(),
            EventKind::Message { text } => format!("  {text}"),
            EventKind::Finished {
                duration_ms,
                summary,
            } => format!("done in {:.1}s: {summary}", *duration_ms as f64 / 1000.0),
            EventKind::Skipped { reason } => format!("skipped: {reason}"),
            EventKind::Failed { error, .. } => {
                format!("failed: {}", error.first().map_or("", String::as_str))
            }
            _ => return,
        };
        let stage = match self.output.service {
            Some(s) => format!("{s}/{}", event.stage),
            None => event.stage.to_string(),
        };
        err_line(format_args!("[{t:6.1}s] {stage:<8} {line}"));
    }
}

//! Following a build's output: the classic builder's `Step n/m` lines and BuildKit's
//! status updates become core events, and enough is remembered to name a failing step and
//! quote its last output lines.

use std::collections::{HashMap, HashSet, VecDeque};

use bollard::moby::buildkit::v1::StatusResponse;
use deployctl_core::{Event, EventKind, EventSink, Progress, Stage};

use crate::builder::Scrub;
use crate::error::ImageError;

/// How many lines of build output a failure quotes.
const TAIL_LINES: usize = 8;

/// Follows a build's output, classic or BuildKit, turning it into events and remembering
/// enough to name the failing step and quote its last lines.
pub(crate) struct BuildLog<'a> {
    events: &'a dyn EventSink,
    scrub: &'a Scrub,
    /// Whether the engine has answered with any output.
    pub(crate) began: bool,
    /// Steps by key (a BuildKit vertex digest; the classic builder's `Step n/m : …` line):
    /// key → name, the vertices seen starting, each step's last lines (output before any
    /// step under the empty key), the step running last, the first vertex that failed,
    /// bytes last reported per BuildKit status.
    names: HashMap<String, String>,
    started: HashSet<String>,
    tails: HashMap<String, VecDeque<String>>,
    current: Option<String>,
    failed: Option<String>,
    reported: HashMap<String, i64>,
}

impl<'a> BuildLog<'a> {
    pub(crate) fn new(events: &'a dyn EventSink, scrub: &'a Scrub) -> Self {
        Self {
            events,
            scrub,
            began: false,
            names: HashMap::new(),
            started: HashSet::new(),
            tails: HashMap::new(),
            current: None,
            failed: None,
            reported: HashMap::new(),
        }
    }

    fn emit(&self, kind: EventKind) {
        self.events.emit(Event::now(Stage::Build, kind));
    }

    /// An output line of the step `key`: kept among its last lines, and shown.
    fn output(&mut self, key: &str, line: String) {
        let tail = self.tails.entry(key.to_owned()).or_default();
        tail.push_back(line.clone());
        if tail.len() > TAIL_LINES {
            tail.pop_front();
        }
        self.emit(EventKind::Message { text: line });
    }

    /// Classic builder output; returns the image ID from `Successfully built …`.
    pub(crate) fn classic(&mut self, text: &str) -> Option<String> {
        let mut id = None;
        for line in text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.trim().is_empty())
        {
            let line = self.scrub.text(line);
            if let Some((n, m)) = parse_step(&line) {
                self.names.insert(line.clone(), line.clone());
                self.current = Some(line.clone());
                self.emit(EventKind::Progress(Progress::counted(
                    line,
                    n,
                    Some(m),
                    "step",
                )));
            } else {
                if let Some(built) = line.strip_prefix("Successfully built ") {
                    id = Some(built.trim().to_owned());
                }
                let step = self.current.clone().unwrap_or_default();
                self.output(&step, line);
            }
        }
        id
    }

    /// One BuildKit status update: vertices starting or failing, their logs, byte counts.
    pub(crate) fn buildkit(&mut self, status: &StatusResponse) {
        for v in &status.vertexes {
            let name = self.scrub.text(&v.name);
            self.names.insert(v.digest.clone(), name.clone());
            if v.started.is_some() && self.started.insert(v.digest.clone()) {
                if let Some((n, m)) = parse_buildkit_step(&name) {
                    self.current = Some(v.digest.clone());
                    self.emit(EventKind::Progress(Progress::counted(
                        name.clone(),
                        n,
                        Some(m),
                        "step",
                    )));
                } else {
                    self.emit(EventKind::Message { text: name.clone() });
                }
            }
            if !v.error.is_empty() && self.failed.is_none() {
                self.failed = Some(v.digest.clone());
            }
        }
        for l in &status.logs {
            let text = String::from_utf8_lossy(&l.msg);
            for line in text
                .lines()
                .map(str::trim_end)
                .filter(|l| !l.trim().is_empty())
            {
                let line = self.scrub.text(line);
                self.output(&l.vertex, line);
            }
        }
        for s in &status.statuses {
            if s.name.is_empty() || s.current <= 0 {
                continue;
            }
            let last = self.reported.get(&s.id).copied().unwrap_or(0);
            let done = s.completed.is_some();
            if done || s.current - last >= 1 << 20 {
                self.reported.insert(s.id.clone(), s.current);
                self.emit(EventKind::Progress(Progress::counted(
                    self.scrub.text(&s.name),
                    u64::try_from(s.current).unwrap_or(0),
                    u64::try_from(s.total).ok().filter(|t| *t > 0),
                    "bytes",
                )));
            }
        }
    }

    /// The failure as an error naming the step and quoting its last lines.
    pub(crate) fn step_error(&mut self, message: &str) -> ImageError {
        let key = self
            .failed
            .clone()
            .or_else(|| self.current.clone())
            .unwrap_or_default();
        let step = self
            .names
            .get(&key)
            .cloned()
            .unwrap_or_else(|| "the build".to_owned());
        let output = self.tails.remove(&key).unwrap_or_default();
        ImageError::Step {
            step,
            message: self.scrub.text(message),
            output: output.into(),
        }
    }
}

/// `Step 2/5 : COPY . /app` → (2, 5).
fn parse_step(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("Step ")?;
    let (frac, _) = rest.split_once(" :")?;
    let (n, m) = frac.split_once('/')?;
    Some((n.trim().parse().ok()?, m.trim().parse().ok()?))
}

/// BuildKit's vertex names: `[2/5] COPY . /app` or `[build 2/5] RUN make` → (2, 5);
/// `[internal] load build context` → none.
fn parse_buildkit_step(name: &str) -> Option<(u64, u64)> {
    let (inside, _) = name.strip_prefix('[')?.split_once(']')?;
    let frac = inside.rsplit(' ').next()?;
    let (n, m) = frac.split_once('/')?;
    Some((n.parse().ok()?, m.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::{BuildLog, parse_buildkit_step, parse_step};
    use crate::builder::Scrub;
    use crate::error::ImageError;
    use bollard::moby::buildkit::v1::{StatusResponse, Vertex, VertexLog};
    use deployctl_core::{EventKind, Secret, VecSink};

    fn vertex(digest: &str, name: &str, error: &str) -> Vertex {
        Vertex {
            digest: digest.into(),
            name: name.into(),
            started: Some(Default::default()),
            error: error.into(),
            ..Vertex::default()
        }
    }

    fn log(digest: &str, text: &str) -> VertexLog {
        VertexLog {
            vertex: digest.into(),
            msg: text.as_bytes().to_vec(),
            ..VertexLog::default()
        }
    }

    #[test]
    fn buildkit_failure_quotes_the_failing_vertex() {
        let events = VecSink::new();
        let scrub = Scrub(vec![Secret::new("hunter2")]);
        let mut bk = BuildLog::new(&events, &scrub);
        bk.buildkit(&StatusResponse {
            vertexes: vec![
                vertex("sha256:ctx", "[internal] load build context", ""),
                vertex("sha256:a", "[1/2] COPY app /app", ""),
            ],
            ..StatusResponse::default()
        });
        bk.buildkit(&StatusResponse {
            vertexes: vec![vertex("sha256:b", "[2/2] RUN make", "")],
            logs: (1..=12)
                .map(|i| log("sha256:b", &format!("make line {i} token=hunter2\n")))
                .chain([log("sha256:a", "copied\n")])
                .collect(),
            ..StatusResponse::default()
        });
        bk.buildkit(&StatusResponse {
            vertexes: vec![vertex("sha256:b", "[2/2] RUN make", "exit code: 2")],
            ..StatusResponse::default()
        });
        let ImageError::Step {
            step,
            message,
            output,
        } = bk
            .step_error("process \"/bin/sh -c make\" did not complete successfully: exit code: 2")
        else {
            panic!("a step error");
        };
        assert_eq!(step, "[2/2] RUN make");
        assert!(message.contains("exit code: 2"), "{message}");
        assert_eq!(output.len(), 8, "{output:?}");
        assert_eq!(output[0], "make line 5 token=***");
        assert_eq!(output[7], "make line 12 token=***");
        let steps: Vec<_> = events
            .events()
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::Progress(p) => Some((p.item, p.current, p.total)),
                _ => None,
            })
            .collect();
        assert_eq!(
            steps,
            [
                ("[1/2] COPY app /app".to_owned(), Some(1), Some(2)),
                ("[2/2] RUN make".to_owned(), Some(2), Some(2)),
            ]
        );
        let all = format!("{:?}", events.events());
        assert!(!all.contains("hunter2"), "a secret reached an event");
    }

    #[test]
    fn steps() {
        assert_eq!(parse_step("Step 2/5 : COPY . /app"), Some((2, 5)));
        assert_eq!(parse_step("Step 10/12 : RUN x"), Some((10, 12)));
        assert_eq!(parse_step("Steps are fun"), None);
        assert_eq!(parse_step(" ---> 1234"), None);
    }

    #[test]
    fn buildkit_steps() {
        assert_eq!(parse_buildkit_step("[2/5] COPY . /app"), Some((2, 5)));
        assert_eq!(parse_buildkit_step("[build 3/4] RUN make"), Some((3, 4)));
        assert_eq!(
            parse_buildkit_step("[stage-1 1/2] COPY --from=build /a /b"),
            Some((1, 2))
        );
        assert_eq!(parse_buildkit_step("[internal] load build context"), None);
        assert_eq!(parse_buildkit_step("exporting to image"), None);
        assert_eq!(parse_buildkit_step("[a/b] x"), None);
    }
}

//! `GET /metrics`: the Prometheus text exposition. Jobs ended and stage durations are counted
//! by this process since it started (as Prometheus counters are; each server of a shared
//! database exposes its own); the queue depth is read from the store, so it is the same on
//! every server. No series names a project or an app: any valid token may read them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use serde_json::Value;

/// Upper bounds of the stage duration buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    data: Mutex<Data>,
}

#[derive(Debug, Default)]
struct Data {
    /// (kind, target, result) → jobs ended.
    jobs: BTreeMap<(String, String, String), u64>,
    /// (stage, target) → durations.
    stages: BTreeMap<(String, String), Histogram>,
}

#[derive(Debug, Default)]
struct Histogram {
    /// Per bucket of [`BUCKETS`], not cumulative.
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A job of `kind` ended with `result` (its status) having touched `targets` (none: one
    /// sample with `target="none"`).
    pub(crate) fn job_ended(&self, kind: &str, targets: &[String], result: &str) {
        let mut d = self.data();
        let none = ["none".to_owned()];
        let targets = if targets.is_empty() {
            &none[..]
        } else {
            targets
        };
        for t in targets {
            *d.jobs
                .entry((kind.to_owned(), t.clone(), result.to_owned()))
                .or_default() += 1;
        }
    }

    /// An event of a job: a stage that ended with a duration is observed.
    pub(crate) fn event(&self, body: &Value) {
        let (Some(stage), Some(ms)) = (
            body.get("stage").and_then(Value::as_str),
            body.get("duration_ms").and_then(Value::as_u64),
        ) else {
            return;
        };
        let target = body.get("target").and_then(Value::as_str).unwrap_or("none");
        #[allow(clippy::cast_precision_loss)] // durations in ms are far below 2^52
        let secs = ms as f64 / 1000.0;
        let mut d = self.data();
        let h = d
            .stages
            .entry((stage.to_owned(), target.to_owned()))
            .or_default();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            h.counts[i] += 1;
        }
        h.count += 1;
        h.sum += secs;
    }

    /// The exposition, with the store's `queued`/`running` counts and this process's
    /// `active` jobs.
    pub(crate) fn render(&self, queued: i64, running: i64, active: usize) -> String {
        let d = self.data();
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# HELP deployctl_jobs_total Jobs (deployments and app operations) ended in this process, per target they touched and result.\n# TYPE deployctl_jobs_total counter"
        );
        for ((kind, target, result), n) in &d.jobs {
            let _ = writeln!(
                o,
                "deployctl_jobs_total{{kind=\"{}\",target=\"{}\",result=\"{}\"}} {n}",
                esc(kind),
                esc(target),
                esc(result)
            );
        }
        let _ = writeln!(
            o,
            "# HELP deployctl_stage_duration_seconds How long each stage of a job took, per target.\n# TYPE deployctl_stage_duration_seconds histogram"
        );
        for ((stage, target), h) in &d.stages {
            let labels = format!("stage=\"{}\",target=\"{}\"", esc(stage), esc(target));
            let mut cumulative = 0;
            for (b, n) in BUCKETS.iter().zip(h.counts) {
                cumulative += n;
                let _ = writeln!(
                    o,
                    "deployctl_stage_duration_seconds_bucket{{{labels},le=\"{b}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                o,
                "deployctl_stage_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                o,
                "deployctl_stage_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                o,
                "deployctl_stage_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        let _ = writeln!(
            o,
            "# HELP deployctl_queue_depth Jobs waiting in the queues (every project, every server of the store).\n# TYPE deployctl_queue_depth gauge\ndeployctl_queue_depth {queued}"
        );
        let _ = writeln!(
            o,
            "# HELP deployctl_jobs_running Jobs running (every server of the store).\n# TYPE deployctl_jobs_running gauge\ndeployctl_jobs_running {running}"
        );
        let _ = writeln!(
            o,
            "# HELP deployctl_jobs_active Jobs running in this process.\n# TYPE deployctl_jobs_active gauge\ndeployctl_jobs_active {active}"
        );
        o
    }
}

/// A label value escaped as the exposition format wants it.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_jobs_counted_per_target() {
        let m = Metrics::default();
        m.event(&serde_json::json!({"stage": "apply", "target": "k8s", "event": "finished", "duration_ms": 700}));
        m.event(&serde_json::json!({"stage": "apply", "target": "k8s", "event": "finished", "duration_ms": 3000}));
        m.event(&serde_json::json!({"stage": "build", "event": "started"}));
        m.job_ended("deploy", &["k8s".into(), "lambda".into()], "succeeded");
        m.job_ended("destroy", &[], "failed");
        let text = m.render(2, 1, 1);
        for want in [
            "deployctl_jobs_total{kind=\"deploy\",target=\"k8s\",result=\"succeeded\"} 1",
            "deployctl_jobs_total{kind=\"deploy\",target=\"lambda\",result=\"succeeded\"} 1",
            "deployctl_jobs_total{kind=\"destroy\",target=\"none\",result=\"failed\"} 1",
            "deployctl_stage_duration_seconds_bucket{stage=\"apply\",target=\"k8s\",le=\"0.5\"} 0",
            "deployctl_stage_duration_seconds_bucket{stage=\"apply\",target=\"k8s\",le=\"1\"} 1",
            "deployctl_stage_duration_seconds_bucket{stage=\"apply\",target=\"k8s\",le=\"5\"} 2",
            "deployctl_stage_duration_seconds_bucket{stage=\"apply\",target=\"k8s\",le=\"+Inf\"} 2",
            "deployctl_stage_duration_seconds_sum{stage=\"apply\",target=\"k8s\"} 3.7",
            "deployctl_queue_depth 2",
            "deployctl_jobs_running 1",
            "deployctl_jobs_active 1",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        assert!(!text.contains("stage=\"build\""), "{text}");
    }
}

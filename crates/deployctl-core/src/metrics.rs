//! Deployment metrics (issue 18 §4), pure: what one deploy of a service to a target is
//! recorded as ([`DeployRecord`]: when, the result, each stage's duration), and the
//! statistics `history --stats` shows per service and target ([`deploy_stats`]: how many,
//! how often, the success rate, p50/p95 of the total and of each stage).
//!
//! Where the records are kept is each target's business (its history); this module only
//! computes.

use std::collections::BTreeMap;

/// How a recorded deploy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeployResult {
    /// Deployed (and verified, when verification ran).
    Succeeded,
    /// Failed at some stage.
    Failed,
}

/// One deploy of a service to a target.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct DeployRecord {
    /// The service (the app's name).
    pub service: String,
    /// The target (`lambda`, `k8s`, `local`).
    pub target: String,
    /// When it started, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// How it ended.
    pub result: DeployResult,
    /// Each stage that ran and how long it took, in milliseconds, in order
    /// (`plan`, `pre_deploy`, `apply`, `verify`, `post_deploy`, …).
    pub stages: Vec<(String, u64)>,
}

impl DeployRecord {
    /// A record of a deploy of `service` to `target` that started at `at_ms`.
    pub fn new(
        service: impl Into<String>,
        target: impl Into<String>,
        at_ms: u64,
        result: DeployResult,
        stages: Vec<(String, u64)>,
    ) -> Self {
        Self {
            service: service.into(),
            target: target.into(),
            at_ms,
            result,
            stages,
        }
    }

    /// The sum of its stages' durations.
    pub fn duration_ms(&self) -> u64 {
        self.stages.iter().map(|(_, ms)| *ms).sum()
    }
}

/// How many records a target keeps, at most (the newest).
pub const KEPT_RECORDS: usize = 100;

/// `existing` (oldest first) with `record` appended, as compact JSON: the newest records,
/// at most [`KEPT_RECORDS`] and, when `max_bytes` is given, as many as fit in it (the
/// oldest go first). What every target stores, so the format is written once.
pub fn append_record(
    mut existing: Vec<DeployRecord>,
    record: &DeployRecord,
    max_bytes: Option<usize>,
) -> String {
    existing.push(record.clone());
    let drop = existing.len().saturating_sub(KEPT_RECORDS);
    existing.drain(..drop);
    loop {
        let text = serde_json::to_string(&existing).unwrap_or_else(|_| "[]".to_owned());
        match max_bytes {
            Some(max) if text.len() > max && !existing.is_empty() => {
                existing.remove(0);
            }
            _ => return text,
        }
    }
}

/// The records `append_record` wrote. Text that is not such a list (written by hand, or by
/// another version) reads as an error naming what is wrong, never as no records.
pub fn parse_records(text: &str) -> Result<Vec<DeployRecord>, serde_json::Error> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(text)
}

/// p50 and p95 of some durations, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Percentiles {
    /// The median.
    pub p50_ms: u64,
    /// The 95th percentile.
    pub p95_ms: u64,
}

/// The statistics of one service on one target.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct DeployStats {
    /// The service.
    pub service: String,
    /// The target.
    pub target: String,
    /// How many deploys are recorded.
    pub deploys: usize,
    /// How many succeeded.
    pub succeeded: usize,
    /// `succeeded / deploys`, 0.0–1.0.
    pub success_rate: f64,
    /// Deploys per day over the span from the first to the last record (at least one day).
    pub per_day: f64,
    /// The first and last record's start, in milliseconds since the Unix epoch.
    pub first_ms: u64,
    /// The last record's start.
    pub last_ms: u64,
    /// Of the total durations.
    pub duration: Percentiles,
    /// Of each stage's durations, by stage name.
    pub stages: BTreeMap<String, Percentiles>,
}

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// The nearest-rank percentile `p` (0–100) of `sorted` (ascending, not empty).
fn percentile(sorted: &[u64], p: u64) -> u64 {
    let n = sorted.len() as u64;
    // Nearest rank: ceil(p/100 · n), 1-based.
    let rank = (p * n).div_ceil(100).clamp(1, n);
    sorted[usize::try_from(rank - 1).unwrap_or(0)]
}

fn percentiles(mut values: Vec<u64>) -> Percentiles {
    values.sort_unstable();
    if values.is_empty() {
        return Percentiles {
            p50_ms: 0,
            p95_ms: 0,
        };
    }
    Percentiles {
        p50_ms: percentile(&values, 50),
        p95_ms: percentile(&values, 95),
    }
}

/// The statistics per (service, target), sorted by service then target.
#[allow(clippy::cast_precision_loss)] // counts and spans far below 2^52
pub fn deploy_stats(records: &[DeployRecord]) -> Vec<DeployStats> {
    let mut groups: BTreeMap<(&str, &str), Vec<&DeployRecord>> = BTreeMap::new();
    for r in records {
        groups
            .entry((r.service.as_str(), r.target.as_str()))
            .or_default()
            .push(r);
    }
    groups
        .into_iter()
        .map(|((service, target), rs)| {
            let deploys = rs.len();
            let succeeded = rs
                .iter()
                .filter(|r| r.result == DeployResult::Succeeded)
                .count();
            let first_ms = rs.iter().map(|r| r.at_ms).min().unwrap_or(0);
            let last_ms = rs.iter().map(|r| r.at_ms).max().unwrap_or(0);
            let days = ((last_ms - first_ms) as f64 / DAY_MS as f64).max(1.0);
            let mut by_stage: BTreeMap<String, Vec<u64>> = BTreeMap::new();
            for r in &rs {
                for (stage, ms) in &r.stages {
                    by_stage.entry(stage.clone()).or_default().push(*ms);
                }
            }
            DeployStats {
                service: service.to_owned(),
                target: target.to_owned(),
                deploys,
                succeeded,
                success_rate: succeeded as f64 / deploys as f64,
                per_day: deploys as f64 / days,
                first_ms,
                last_ms,
                duration: percentiles(rs.iter().map(|r| r.duration_ms()).collect()),
                stages: by_stage
                    .into_iter()
                    .map(|(s, v)| (s, percentiles(v)))
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(service: &str, target: &str, day: u64, ok: bool, apply: u64) -> DeployRecord {
        DeployRecord::new(
            service,
            target,
            day * DAY_MS,
            if ok {
                DeployResult::Succeeded
            } else {
                DeployResult::Failed
            },
            vec![("plan".into(), 100), ("apply".into(), apply)],
        )
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=20).collect();
        assert_eq!(percentile(&v, 50), 10);
        assert_eq!(percentile(&v, 95), 19);
        assert_eq!(percentile(&[7], 95), 7);
        assert_eq!(percentile(&[1, 2], 50), 1);
        assert_eq!(percentile(&[1, 2], 95), 2);
    }

    #[test]
    fn stats_per_service_and_target() {
        let mut records: Vec<DeployRecord> = (0..10)
            .map(|i| rec("api", "k8s", i, i != 3, 1000 + i * 100))
            .collect();
        records.push(rec("api", "lambda", 0, true, 5000));
        records.push(rec("web", "k8s", 2, false, 200));
        let stats = deploy_stats(&records);
        let keys: Vec<(&str, &str)> = stats
            .iter()
            .map(|s| (s.service.as_str(), s.target.as_str()))
            .collect();
        assert_eq!(keys, [("api", "k8s"), ("api", "lambda"), ("web", "k8s")]);
        let api = &stats[0];
        assert_eq!((api.deploys, api.succeeded), (10, 9));
        assert!((api.success_rate - 0.9).abs() < 1e-9);
        // Ten deploys over nine days.
        assert!((api.per_day - 10.0 / 9.0).abs() < 1e-9);
        // Totals are 100 + 1000..1900: p50 the 5th (1500), p95 the 10th (2000).
        assert_eq!(api.duration.p50_ms, 1500);
        assert_eq!(api.duration.p95_ms, 2000);
        assert_eq!(api.stages["apply"].p50_ms, 1400);
        assert_eq!(api.stages["plan"].p95_ms, 100);
        // One record: one per day at least a day, rate 0 when it failed.
        let web = &stats[2];
        assert!((web.per_day - 1.0).abs() < 1e-9);
        assert!(web.success_rate.abs() < 1e-9);
    }

    #[test]
    fn append_keeps_the_newest_that_fit() {
        let mut text = String::new();
        for i in 0..120 {
            let existing = parse_records(&text).unwrap();
            text = append_record(existing, &rec("api", "k8s", i, true, i), None);
        }
        let kept = parse_records(&text).unwrap();
        assert_eq!(kept.len(), KEPT_RECORDS);
        assert_eq!(kept[0].at_ms, 20 * DAY_MS);
        let small = append_record(kept, &rec("api", "k8s", 200, false, 1), Some(1000));
        assert!(small.len() <= 1000, "{}", small.len());
        let small = parse_records(&small).unwrap();
        assert!(small.len() > 3 && small.len() < 20, "{}", small.len());
        assert_eq!(small.last().unwrap().at_ms, 200 * DAY_MS);
        assert!(parse_records("{not json").is_err());
        assert!(parse_records("").unwrap().is_empty());
    }

    #[test]
    fn no_records_no_stats() {
        assert!(deploy_stats(&[]).is_empty());
    }
}

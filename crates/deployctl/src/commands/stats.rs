//! `history --stats [--workspace]`: reads each target's deploy records and prints
//! `deployctl_core::deploy_stats` of them, a table or one JSON result. Nothing is computed
//! here.

use std::time::Duration;

use deployctl_core::{DeployRecord, DeployStats, deploy_stats};
use serde_json::json;

use crate::cli::{Cli, HistoryArgs};
use crate::output::{Failure, Output};

/// What one service's targets hold: the records, and the targets that keep none.
#[derive(Default)]
struct Gathered {
    records: Vec<DeployRecord>,
    not_recorded: Vec<String>,
}

/// The records of the service `cli` names, on `target` (default: every enabled target).
fn gather(cli: &Cli, target: Option<&str>, into: &mut Gathered) -> Result<(), Failure> {
    let got = super::ops::with_targets(cli, target, async |adapters, _aws, _config, _c| {
        let mut all = Vec::new();
        for t in &adapters {
            let records = t
                .deploy_records()
                .await
                .map_err(|e| Failure::from_stage(&e))?;
            all.push((t.name().to_owned(), records));
        }
        Ok(all)
    })?;
    for (target, records) in got {
        match records {
            Some(r) => into.records.extend(r),
            None => into.not_recorded.push(target),
        }
    }
    Ok(())
}

/// `history --stats`, for this app or (`--workspace`) every service of the workspace.
pub fn run(cli: &Cli, args: &HistoryArgs, out: &Output) -> i32 {
    let mut gathered = Gathered::default();
    let result = if args.workspace {
        super::workspace::service_configs(args.only.as_deref()).and_then(|services| {
            for (_, config) in services {
                gather(
                    &super::workspace::service_cli(cli, config),
                    args.target.as_deref(),
                    &mut gathered,
                )?;
            }
            Ok(())
        })
    } else {
        gather(cli, args.target.as_deref(), &mut gathered)
    };
    if let Err(f) = result {
        return out.fail("history", &f);
    }
    let stats = deploy_stats(&gathered.records);
    print_table(out, &stats);
    for t in &gathered.not_recorded {
        out.text(format!("{t}: this target does not record deploys"));
    }
    out.result(
        "history",
        json!({ "stats": stats, "not_recorded": gathered.not_recorded }),
    );
    0
}

fn secs(ms: u64) -> String {
    format!("{:.1}s", Duration::from_millis(ms).as_secs_f64())
}

fn print_table(out: &Output, stats: &[DeployStats]) {
    if stats.is_empty() {
        out.text("no deploys recorded");
        return;
    }
    out.text(format!(
        "{:<20} {:<7} {:>7} {:>8} {:>7} {:>7} {:>7}  stages p50/p95",
        "SERVICE", "TARGET", "DEPLOYS", "SUCCESS", "PER DAY", "P50", "P95"
    ));
    for s in stats {
        let stages: Vec<String> = s
            .stages
            .iter()
            .map(|(name, p)| format!("{name} {}/{}", secs(p.p50_ms), secs(p.p95_ms)))
            .collect();
        out.text(format!(
            "{:<20} {:<7} {:>7} {:>7.0}% {:>7.1} {:>7} {:>7}  {}",
            s.service,
            s.target,
            s.deploys,
            s.success_rate * 100.0,
            s.per_day,
            secs(s.duration.p50_ms),
            secs(s.duration.p95_ms),
            stages.join(", ")
        ));
    }
}

//! Recording each deploy (issue 18 §4): the stages' durations as they ran, and the
//! [`DeployRecord`] the pipeline hands the target after the deploy, under its lock.

use std::time::{Instant, SystemTime};

use super::{AfterPlan, Pipeline, StageOutcome};
use crate::event::{Event, EventKind, Stage, duration_ms};
use crate::metrics::{DeployRecord, DeployResult};
use crate::target::Target;

/// The stages that ran, with their durations, in order.
pub(super) struct Timings(pub(super) Vec<(String, u64)>);

impl Timings {
    /// Notes `stage` as started at `at` if it ran (finished or failed); a skipped or
    /// unreached stage is not a stage of this deploy.
    pub(super) fn ran<T>(&mut self, stage: &str, outcome: &StageOutcome<T>, at: Instant) {
        if matches!(outcome, StageOutcome::Done(_) | StageOutcome::Failed(_)) {
            self.0.push((stage.to_owned(), duration_ms(at.elapsed())));
        }
    }
}

/// How the stages after the plan ended, as one result.
fn result(after: &AfterPlan) -> DeployResult {
    let failed = after.pre_deploy.error().is_some()
        || after.apply.error().is_some()
        || after.verify.error().is_some()
        || after.post_deploy.error().is_some()
        || after.rollback.error().is_some();
    if failed {
        DeployResult::Failed
    } else {
        DeployResult::Succeeded
    }
}

impl Pipeline<'_> {
    /// Hands the deploy's record to `target`, when the pipeline records deploys; a write
    /// that fails is a warning on the apply stage, never a failed deploy.
    pub(super) async fn record(&self, target: &dyn Target, after: &AfterPlan) {
        let Some(service) = &self.service else {
            return;
        };
        let total: u64 = after.stage_ms.iter().map(|(_, ms)| *ms).sum();
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, duration_ms);
        let record = DeployRecord::new(
            service.clone(),
            target.name(),
            now_ms.saturating_sub(total),
            result(after),
            after.stage_ms.clone(),
        );
        if let Err(err) = target.record_deploy(&record).await {
            self.events.emit(Event::now(
                Stage::Apply(target.name().to_owned()),
                EventKind::Message {
                    text: format!(
                        "warning: this deploy was not recorded for `history --stats`: {}",
                        err.chain().join(": ")
                    ),
                },
            ));
        }
    }
}

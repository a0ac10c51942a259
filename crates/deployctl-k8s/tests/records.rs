//! Deploy records (issue 18 §4) in the history ConfigMap, against the stand-in through the
//! core pipeline: two deploys and a failing one are recorded with their stages, the
//! revisions' apply leaves the records' key alone, an unchanged redeploy's only write is
//! the record, and destroy removes them with the history.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use deployctl_core::{
    Cancellation, DeployResult, HookContext, HookOutput, HookRunner, LocalCommand, NullSink,
    Pipeline, RunMode, RunRequest, StageError, Target, deploy_stats,
};
use deployctl_kube_standin::StandIn;

use common::{client, image, target};

const HOOKED: &str = "hooks:\n  pre_deploy:\n    - run: ./check.sh\n";

/// The local hook step: fails while `fail` is set.
#[derive(Default)]
struct Check {
    fail: AtomicBool,
}
#[async_trait]
impl HookRunner for Check {
    async fn run(
        &self,
        _c: &LocalCommand,
        _t: std::time::Duration,
        _x: &HookContext,
        _o: &dyn HookOutput,
        _k: &Cancellation,
    ) -> Result<(), StageError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StageError::new(
                deployctl_core::ErrorKind::Failed,
                "check.sh exited with 1",
            ));
        }
        Ok(())
    }
}

#[tokio::test]
async fn deploys_are_recorded_in_the_history_and_destroy_removes_them() {
    let standin = StandIn::start().await.unwrap();
    let c = client(&standin).await;
    let t = target(&c, HOOKED);
    let hooks = common::config(HOOKED).hooks.to_core();
    let check = Check::default();
    let pipeline = Pipeline::new(&NullSink)
        .with_service("web")
        .with_target(&t)
        .with_hooks(&hooks, &check, HookContext::new("web", "1", ""));
    let run = |n: u8| {
        let mut request = RunRequest::deploy_image(RunMode::Apply, image("web", n));
        request.verify = false;
        pipeline.run(request)
    };

    assert_eq!(t.deploy_records().await.unwrap(), Some(Vec::new()));
    assert!(run(1).await.is_success());
    assert!(run(2).await.is_success());
    check.fail.store(true, Ordering::SeqCst);
    assert!(!run(3).await.is_success());

    let records = t.deploy_records().await.unwrap().unwrap();
    let results: Vec<DeployResult> = records.iter().map(|r| r.result).collect();
    assert_eq!(
        results,
        [
            DeployResult::Succeeded,
            DeployResult::Succeeded,
            DeployResult::Failed
        ]
    );
    let stages: Vec<&str> = records[0].stages.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(stages, ["plan", "pre_deploy", "apply"]);
    // The failed one stopped at its hook: no apply.
    let stages: Vec<&str> = records[2].stages.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(stages, ["plan", "pre_deploy"]);
    assert!(
        records
            .iter()
            .all(|r| r.service == "web" && r.target == "k8s")
    );
    assert!(records.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));

    let stats = deploy_stats(&records);
    assert_eq!(stats.len(), 1);
    assert_eq!((stats[0].deploys, stats[0].succeeded), (3, 2));
    assert!(stats[0].stages.contains_key("apply"));

    // The revisions are intact next to the records (their apply leaves the key alone).
    let history = t.history().await.unwrap();
    assert_eq!(history.len(), 2, "{history:?}");

    // An unchanged redeploy: its only write is the record.
    check.fail.store(false, Ordering::SeqCst);
    standin.take_mutations();
    assert!(run(2).await.is_success());
    assert_eq!(
        standin.take_mutations(),
        ["PATCH /api/v1/namespaces/shop/configmaps/web-deployctl-history"]
    );
    assert_eq!(t.deploy_records().await.unwrap().unwrap().len(), 4);

    t.destroy(&NullSink, &Cancellation::new()).await.unwrap();
    assert_eq!(t.deploy_records().await.unwrap(), Some(Vec::new()));
}

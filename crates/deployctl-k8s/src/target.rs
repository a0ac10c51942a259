//! [`K8sTarget`]: the core `Target` over a Kubernetes cluster, wired from the other
//! modules: render → `observe` → `diff` (the plan) → `apply` → `rollout` (watch, fast
//! failure, automatic rollback) → `verify`; status, logs, history/rollback and destroy.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deployctl_config::Config;
use deployctl_core::{Action, Revision as CoreRevision};
use deployctl_core::{
    ApplyOutcome, Cancellation, DeployLock, EventSink, LogQuery, LogSink, Plan, PushedImage,
    ResourceChange, RollbackOutcome, Stage, StageError, Target, TargetStatus, Verification,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams};
use serde_json::json;

use crate::apply::FIELD_MANAGER;
use crate::cluster::{Cluster, managed_kind, say};
use crate::diff::{Diff, diff};
use crate::error::{Error, api_err};
use crate::history::{History, Revision, RevisionState};
use crate::lock::LeaseLock;
use crate::render::{Manifest, RenderInput, render};
use crate::resources::placeholder_image;
use crate::rollout::Watch;
use crate::verify::Health;

/// Options that come from flags rather than deploy.yaml.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct K8sOptions {
    /// Take over fields another field manager owns.
    pub force_conflicts: bool,
    /// Roll back automatically when a rollout (or its verification) fails.
    pub auto_rollback: bool,
    /// How long a rollout may take.
    pub rollout_timeout: Duration,
    /// Plans also send every manifest as a server-side dry run (`dryRun=All`), so the API
    /// server validates them and reports conflicts without storing anything.
    pub server_dry_run: bool,
    /// How long `verify` retries the health path before the deploy counts as failed.
    pub verify_timeout: Duration,
    /// `destroy --tenant`: also remove the tenant objects and namespace
    /// (`kubernetes.tenant`), when no other deployctl app is left there.
    pub destroy_tenant: bool,
}

impl K8sOptions {
    /// Options from the config's `kubernetes.rollout`.
    pub fn from_config(config: &Config) -> Self {
        Self {
            force_conflicts: false,
            auto_rollback: config.kubernetes.rollout.auto_rollback,
            rollout_timeout: Duration::from_secs(u64::from(
                config.kubernetes.rollout.timeout_seconds,
            )),
            server_dry_run: false,
            verify_timeout: Duration::from_secs(60),
            destroy_tenant: false,
        }
    }

    /// With `destroy --tenant`.
    #[must_use]
    pub fn destroy_tenant(mut self, on: bool) -> Self {
        self.destroy_tenant = on;
        self
    }

    /// With `--server-dry-run`.
    #[must_use]
    pub fn server_dry_run(mut self, on: bool) -> Self {
        self.server_dry_run = on;
        self
    }

    /// With `--force-conflicts`.
    #[must_use]
    pub fn force_conflicts(mut self, force: bool) -> Self {
        self.force_conflicts = force;
        self
    }

    /// With `--no-rollback`.
    #[must_use]
    pub fn auto_rollback(mut self, on: bool) -> Self {
        self.auto_rollback = on;
        self
    }

    /// With a rollout deadline.
    #[must_use]
    pub fn rollout_timeout(mut self, timeout: Duration) -> Self {
        self.rollout_timeout = timeout;
        self
    }

    /// With a verification deadline (default 60 s).
    #[must_use]
    pub fn verify_timeout(mut self, timeout: Duration) -> Self {
        self.verify_timeout = timeout;
        self
    }
}

/// What the last apply rolled out, for a rollback when its verification fails.
#[derive(Debug, Clone)]
struct Applied {
    /// The revision the apply made live.
    number: u64,
    /// What a failed verification goes back to, with its number.
    previous: Option<(u64, Revision)>,
}

/// Collects the progress messages of a rollback run where no event stream is at hand.
#[derive(Debug, Default)]
struct Notes(Mutex<Vec<String>>);

impl EventSink for Notes {
    fn emit(&self, event: deployctl_core::Event) {
        if let deployctl_core::EventKind::Message { text } = event.kind
            && let Ok(mut notes) = self.0.lock()
        {
            notes.push(text);
        }
    }
}

impl Notes {
    fn warnings(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|n| {
                n.iter()
                    .filter(|t| t.starts_with("warning:"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Deploys the rendered manifests to a cluster through the `kube::Client` it is given.
#[derive(Clone)]
pub struct K8sTarget {
    cluster: Cluster,
    config: Config,
    options: K8sOptions,
    applied: Arc<Mutex<Option<Applied>>>,
    lock: LeaseLock,
    extra: Option<Arc<crate::render::Extra>>,
}

impl std::fmt::Debug for K8sTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("K8sTarget")
            .field("app", &self.config.app.name)
            .field("namespace", &self.config.kubernetes.namespace)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl K8sTarget {
    /// A target deploying `config` through `client`.
    pub fn new(client: kube::Client, config: Config, options: K8sOptions) -> Self {
        let cluster = Cluster {
            client,
            namespace: config.kubernetes.namespace.clone(),
            app: config.app.name.clone(),
            service: config.kubernetes_service_name().to_owned(),
        };
        Self {
            lock: LeaseLock::new(cluster.clone()),
            cluster,
            config,
            options,
            applied: Arc::new(Mutex::new(None)),
            extra: None,
        }
    }

    /// With resources another library rendered for the app (the Kong Ingress Controller's):
    /// applied, pruned and destroyed with the app's own (see [`crate::Extra`]).
    #[must_use]
    pub fn with_extra(mut self, extra: crate::render::Extra) -> Self {
        self.extra = Some(Arc::new(extra));
        self
    }

    fn watch<'a>(
        &self,
        events: &'a dyn EventSink,
        stage: Stage,
        cancel: &'a Cancellation,
    ) -> Watch<'a> {
        Watch {
            events,
            stage,
            cancel,
            timeout: self.options.rollout_timeout,
        }
    }

    fn keep(&self) -> usize {
        usize::try_from(self.config.kubernetes.deployment.revision_history.max(1)).unwrap_or(10)
    }

    fn render(&self, image: Option<&PushedImage>) -> Result<Vec<Manifest>, Error> {
        let placeholder;
        let image = match image {
            Some(i) => i,
            None => {
                placeholder = placeholder_image(&self.config)?;
                &placeholder
            }
        };
        let input = RenderInput::new(&self.config, image);
        match self.extra.as_deref() {
            Some(extra) => render(input.with_extra(extra)),
            None => render(input),
        }
    }

    async fn plan_for(&self, image: Option<&PushedImage>) -> Result<(Diff, Vec<Manifest>), Error> {
        let mut manifests = self.render(image)?;
        let observed = self.cluster.observe(&manifests).await?;
        // A value generated once (a consumer's key) keeps its live value.
        for (m, have) in manifests.iter_mut().zip(&observed.live) {
            crate::render::keep_generated(m, have.as_ref());
        }
        let d = diff(
            &self.cluster.namespace,
            &manifests,
            &observed,
            image.is_some(),
        );
        if self.options.server_dry_run && observed.namespace_exists {
            for m in &manifests {
                self.cluster
                    .apply_manifest(m, self.options.force_conflicts, true)
                    .await?;
            }
        }
        Ok((d, manifests))
    }

    fn remember(&self, applied: Option<Applied>) {
        if let Ok(mut slot) = self.applied.lock() {
            *slot = applied;
        }
    }

    fn last_applied(&self) -> Option<Applied> {
        self.applied.lock().ok().and_then(|slot| slot.clone())
    }

    /// Applies every manifest (server-side), then deletes what the app no longer renders.
    async fn apply_all(
        &self,
        manifests: &[Manifest],
        prune: &[crate::cluster::InventoryEntry],
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<(), Error> {
        let stage = Stage::Apply("k8s".into());
        for m in manifests {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled(format!("applying {}/{}", m.kind, m.name)));
            }
            self.cluster
                .apply_manifest(m, self.options.force_conflicts, false)
                .await?;
        }
        say(
            events,
            &stage,
            format!(
                "applied {} resources (server-side, field manager {FIELD_MANAGER})",
                manifests.len()
            ),
        );
        for entry in prune {
            if self
                .cluster
                .delete(entry, &DeleteParams::background())
                .await?
            {
                say(
                    events,
                    &stage,
                    format!("pruned {}/{}", entry.kind.kind, entry.name),
                );
            }
        }
        Ok(())
    }

    /// Sets the Deployment's replicas to `replicas`: the live revision is applied again with
    /// that count (field manager `deployctl`, so the next deploy returns to the configured
    /// count without a conflict), then the rollout is waited for.
    pub async fn scale(
        &self,
        replicas: i32,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<(), StageError> {
        if self.config.kubernetes.hpa.enabled {
            return Err(Error::Missing(
                "the HorizontalPodAutoscaler owns the replica count (kubernetes.hpa.enabled); change hpa.min_replicas/max_replicas instead".into(),
            )
            .into());
        }
        let history = self.cluster.history().await?;
        let Some((_, live)) = history.live() else {
            return Err(Error::Missing(format!(
                "{} is not deployed in namespace {}: nothing to scale",
                self.cluster.app, self.cluster.namespace
            ))
            .into());
        };
        let mut deployment = live.deployment.clone();
        deployment["spec"]["replicas"] = json!(replicas);
        let stage = Stage::Apply("k8s".into());
        say(
            events,
            &stage,
            format!("scaling {} to {replicas}", self.cluster.app),
        );
        let kind = managed_kind("apps/v1", "Deployment")
            .ok_or_else(|| Error::Missing("no API for Deployment".into()))?;
        self.cluster.apply_recorded(kind, &deployment).await?;
        let scaled = Revision::of_deployment(deployment);
        self.cluster
            .wait_rollout(
                scaled.deployment_name(),
                scaled.image().unwrap_or_default(),
                &self.watch(events, stage, cancel),
            )
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Target for K8sTarget {
    async fn run_task(
        &self,
        phase: deployctl_core::HookPhase,
        task: &deployctl_core::TargetTask,
        image: &PushedImage,
        output: &dyn deployctl_core::HookOutput,
        cancel: &Cancellation,
    ) -> Result<(), StageError> {
        let (job, before) = crate::task::task_job(&self.config, image, phase, task)?;
        self.cluster
            .run_task_job(&job, &before, task, output, cancel)
            .await?;
        Ok(())
    }

    fn task_runner(&self) -> Option<deployctl_core::TaskRunner> {
        Some(crate::task::TASK_RUNNER)
    }

    /// A failed `post_deploy` hook rolls back, as a failed rollout does, unless
    /// `--no-rollback` / `rollout.auto_rollback: false`.
    fn rolls_back_on_failed_hook(&self) -> bool {
        self.options.auto_rollback
    }

    fn name(&self) -> &str {
        "k8s"
    }

    fn lock(&self) -> Option<&dyn DeployLock> {
        Some(&self.lock)
    }

    async fn plan(&self, image: Option<&PushedImage>) -> Result<Plan, StageError> {
        Ok(self.plan_for(image).await?.0.plan)
    }

    async fn apply(
        &self,
        image: &PushedImage,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<ApplyOutcome, StageError> {
        let stage = Stage::Apply("k8s".into());
        self.remember(None);
        let (Diff { plan, prune }, manifests) = self.plan_for(Some(image)).await?;
        let desired = Revision::from_manifests(&manifests);
        let mut history = self.cluster.history().await?;
        let previous = history.live().map(|(n, r)| (n, r.clone()));
        // Whether the history already says this revision is live and good. When it does
        // not — a deploy of it was killed before its rollout was seen, or it failed — the
        // manifests may well be unchanged, and the rollout must still be watched.
        let settled = match (&desired, &previous) {
            (Some(d), Some((_, live))) => live.same_as(d) && live.state == RevisionState::Good,
            (None, _) => true,
            (Some(_), None) => false,
        };
        let number = desired.as_ref().map(|d| history.number_for(d));
        if plan.is_noop() && desired.is_none() {
            return Ok(ApplyOutcome::new(
                plan,
                history.current.map(|c| c.to_string()),
                self.cluster.endpoints(&self.config).await,
            ));
        }
        let rollout_changes = plan
            .changes
            .iter()
            .any(|c| c.kind == "Deployment" && c.action.is_change());
        if rollout_changes {
            // Fails before anything is applied when the rollout's pods cannot fit.
            self.cluster.check_quota(&manifests).await?;
        }
        if !plan.is_noop() {
            self.cluster.ensure_namespace().await?;
            if let (Some(d), Some(n), false) = (&desired, number, settled) {
                // Recorded before anything of it is applied: a kill from here on leaves
                // a record that the next run finds.
                history.record(n, d.clone(), RevisionState::Pending);
                self.cluster.save_history(&history, self.keep()).await?;
            }
            self.apply_all(&manifests, &prune, events, cancel).await?;
        } else if !settled && let Some(n) = number {
            say(
                events,
                &stage,
                format!(
                    "the manifests are in place, but revision {n} was never seen rolled out \
                     (an earlier deploy was interrupted or failed): watching its rollout"
                ),
            );
        }
        let (Some(revision), Some(number)) = (desired, number) else {
            return Ok(ApplyOutcome::new(
                plan,
                None,
                self.cluster.endpoints(&self.config).await,
            ));
        };
        // Even an unchanged deploy waits for the Deployment to be complete for its current
        // generation: a crash-looping live revision is a failed deploy, not "unchanged".
        let w = self.watch(events, stage, cancel);
        let rolled_out = self
            .cluster
            .wait_rollout(
                revision.deployment_name(),
                revision.image().unwrap_or_default(),
                &w,
            )
            .await;
        // What a failure goes back to: the live revision, or — when the live one is what
        // fails — the good one before it.
        let fallback = match &previous {
            Some((n, _)) if *n == number => history
                .before(number)
                .and_then(|b| Some((b, history.revisions.get(&b)?.clone()))),
            other => other.clone(),
        };
        match rolled_out {
            Ok(_) => {
                if !settled {
                    history.record(number, revision, RevisionState::Good);
                    self.cluster.save_history(&history, self.keep()).await?;
                }
                self.remember(Some(Applied {
                    number,
                    previous: fallback,
                }));
                Ok(ApplyOutcome::new(
                    plan,
                    Some(number.to_string()),
                    self.cluster.endpoints(&self.config).await,
                ))
            }
            Err(Error::Rollout {
                deployment,
                reason,
                events: evs,
                ..
            }) => {
                let rolled_back = self
                    .cluster
                    .roll_back_after_failure(
                        fallback.as_ref().map(|(n, r)| (*n, r)),
                        &format!("rollout failed ({reason})"),
                        self.options.auto_rollback,
                        &w,
                    )
                    .await?;
                history.record(number, revision, RevisionState::Failed);
                if let Some(back) = rolled_back.as_deref().and_then(|b| b.parse().ok()) {
                    history.current = Some(back);
                }
                self.cluster.save_history(&history, self.keep()).await?;
                Err(Error::Rollout {
                    deployment,
                    reason,
                    events: evs,
                    rolled_back,
                }
                .into())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn verify(
        &self,
        _outcome: &ApplyOutcome,
        cancel: &Cancellation,
    ) -> Result<Vec<Verification>, StageError> {
        let health = self
            .cluster
            .check_health(
                &self.config.app.health_check_path,
                i32::from(self.config.app.port),
                self.options.verify_timeout,
                cancel,
            )
            .await?;
        let (url, method, mut detail) = match health {
            Health::Healthy(v) => return Ok(vec![v]),
            Health::NotVerifiable(reason) => {
                return Ok(vec![Verification::NotVerifiable { reason }]);
            }
            Health::Unhealthy {
                url,
                method,
                detail,
            } => (url, method, detail),
        };
        // A failed verification is a failed rollout: back to what was live before.
        let applied = self.last_applied();
        let mut rolled_back = None;
        if let Some(applied) = applied.filter(|_| self.options.auto_rollback)
            && let Some((n, revision)) = &applied.previous
        {
            let stage = Stage::Verify("k8s".into());
            let sink = Notes::default();
            let w = self.watch(&sink, stage, cancel);
            let failed = applied.number;
            let reason = format!("verification failed ({detail})");
            rolled_back = Some(
                self.cluster
                    .undo_deploy(failed, (*n, revision), &reason, self.keep(), &w)
                    .await?,
            );
            self.remember(None);
            // `verify` has no event stream: a warning of the rollback goes into the error.
            for warning in sink.warnings() {
                detail = format!("{detail}; {warning}");
            }
        }
        Err(Error::Unhealthy {
            url,
            method,
            detail,
            rolled_back,
        }
        .into())
    }

    async fn status(&self) -> Result<TargetStatus, StageError> {
        Ok(self.cluster.status(&self.config).await?)
    }

    async fn logs(
        &self,
        query: &LogQuery,
        sink: &dyn LogSink,
        cancel: &Cancellation,
    ) -> Result<(), StageError> {
        Ok(self.cluster.logs(query, sink, cancel).await?)
    }

    async fn destroy_plan(&self) -> Result<Plan, StageError> {
        let mut plan = Plan::new("k8s");
        for entry in self.cluster.inventory().await? {
            plan.push(ResourceChange::new(
                entry.kind.kind,
                entry.name,
                Action::Delete,
                "carries the app's instance label",
            ));
        }
        let cms: Api<ConfigMap> = self.cluster.api();
        let history = self.cluster.history_name();
        if cms
            .get_opt(&history)
            .await
            .map_err(|e| api_err("get", "history", e))?
            .is_some()
        {
            plan.push(ResourceChange::new(
                "ConfigMap",
                history,
                Action::Delete,
                "deploy history",
            ));
        }
        if self.cluster.namespace_to_delete().await? {
            plan.push(ResourceChange::new(
                "Namespace",
                &self.cluster.namespace,
                Action::Delete,
                "created by deployctl; nothing else is in it",
            ));
        }
        if self.options.destroy_tenant {
            if self.config.kubernetes.tenant.is_none() {
                return Err(Error::NoTenant {
                    app: self.config.app.name.clone(),
                }
                .into());
            }
            self.cluster.tenant_destroy_plan(&mut plan).await?;
        }
        Ok(plan)
    }

    async fn destroy(
        &self,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<Plan, StageError> {
        let plan = self.destroy_plan().await?;
        let stage = Stage::Destroy("k8s".into());
        self.cluster.destroy_all(events, &stage, cancel).await?;
        if self.options.destroy_tenant {
            self.cluster.destroy_tenant(events, &stage).await?;
        }
        Ok(plan)
    }

    async fn record_deploy(&self, record: &deployctl_core::DeployRecord) -> Result<(), StageError> {
        // Records that do not parse are started again (the hint of `Error::Records` says
        // so); any other failure to read stops the write, so nothing is lost.
        let existing = match self.cluster.deploy_records().await {
            Ok(records) => records,
            Err(crate::error::Error::Records { .. }) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let text = deployctl_core::append_record(existing, record, None);
        Ok(self.cluster.save_deploy_records(&text).await?)
    }

    async fn deploy_records(
        &self,
    ) -> Result<Option<Vec<deployctl_core::DeployRecord>>, StageError> {
        Ok(Some(self.cluster.deploy_records().await?))
    }

    async fn history(&self) -> Result<Vec<CoreRevision>, StageError> {
        let history = self.cluster.history().await?;
        Ok(history
            .revisions
            .iter()
            .map(|(n, r)| {
                CoreRevision::new(
                    n.to_string(),
                    r.image().map(str::to_owned),
                    Some(*n) == history.current,
                )
                .with_state(r.state.as_str())
            })
            .collect())
    }

    async fn rollback(
        &self,
        to: Option<&str>,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<RollbackOutcome, StageError> {
        let mut history: History = self.cluster.history().await?;
        let Some(current) = history.current else {
            return Err(Error::Missing(format!(
                "{} has no deploy history in namespace {}: nothing to roll back",
                self.cluster.app, self.cluster.namespace
            ))
            .into());
        };
        let target = match to {
            Some(t) => t
                .parse::<u64>()
                .map_err(|_| Error::Missing(format!("`{t}` is not a revision number")))?,
            None => history.before(current).ok_or_else(|| {
                Error::Missing(format!(
                    "revision {current} is the oldest recorded; there is nothing to roll back to"
                ))
            })?,
        };
        let Some(revision) = history.revisions.get(&target).cloned() else {
            return Err(Error::Missing(format!(
                "no revision {target}; recorded: {}",
                history.numbers()
            ))
            .into());
        };
        let stage = Stage::Rollback("k8s".into());
        if target == current {
            say(
                events,
                &stage,
                format!("revision {target} is already live; nothing to roll back"),
            );
            return Ok(RollbackOutcome::new(
                Some(current.to_string()),
                target.to_string(),
            ));
        }
        self.cluster
            .restore(&revision, target, &self.watch(events, stage, cancel))
            .await?;
        history.current = Some(target);
        self.cluster.save_history(&history, self.keep()).await?;
        Ok(RollbackOutcome::new(
            Some(current.to_string()),
            target.to_string(),
        ))
    }
}

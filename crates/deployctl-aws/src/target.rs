//! [`LambdaTarget`]: the core `Target` over Lambda, IAM, API Gateway and CloudWatch Logs,
//! locked with an [`SsmLock`].

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use deployctl_core::{
    Action, ApplyOutcome, Cancellation, DeployLock, Endpoint, EventSink, LogLine, LogQuery,
    LogSink, Plan, PushedImage, ResourceChange, ResourceStatus, RollbackOutcome, StageError,
    Target, TargetStatus, Verification,
};

use crate::apply::Apply;
use crate::clients::AwsClients;
use crate::diff::{diff, image_uri};
use crate::error::AwsError;
use crate::lock::SsmLock;
use crate::observe::{self, API_PERMISSION_SID, URL_PERMISSION_SID};
use crate::spec::{ALIAS, LambdaScope, LambdaSpec};
use crate::verify::{self, Check, VerifyMethod};

/// Deploys a container image as a Lambda function behind an alias, an HTTP API and
/// optionally a function URL.
#[derive(Debug, Clone)]
pub struct LambdaTarget {
    clients: AwsClients,
    lock: SsmLock,
    spec: LambdaSpec,
    role_propagation: Duration,
    poll: Duration,
    scope: LambdaScope,
    verify_method: VerifyMethod,
    verify_deadline: Duration,
    /// `pre_deploy` tasks handed over by `run_task`, invoked by the next apply before the
    /// alias moves.
    armed: std::sync::Arc<std::sync::Mutex<Vec<deployctl_core::TargetTask>>>,
}

impl LambdaTarget {
    /// A target deploying `spec` with `clients`.
    pub fn new(clients: AwsClients, spec: LambdaSpec) -> Self {
        let lock = SsmLock::new(clients.ssm.clone(), &spec.function_name, &spec.region);
        Self {
            clients,
            lock,
            spec,
            role_propagation: Duration::from_secs(90),
            poll: Duration::from_secs(2),
            scope: LambdaScope::All,
            verify_method: VerifyMethod::Auto,
            verify_deadline: Duration::from_secs(60),
            armed: std::sync::Arc::default(),
        }
    }

    /// How `verify` checks the deployment (default: HTTP where the endpoints answer, else
    /// an invoke of the alias).
    #[must_use]
    pub fn with_verify_method(mut self, method: VerifyMethod) -> Self {
        self.verify_method = method;
        self
    }

    /// How long `verify` keeps retrying before it reports the deployment unhealthy
    /// (default 60 s: a cold start of a container function can take a while).
    #[must_use]
    pub fn with_verify_deadline(mut self, deadline: Duration) -> Self {
        self.verify_deadline = deadline;
        self
    }

    /// Converge only part of the deployment (default: all of it).
    #[must_use]
    pub fn with_scope(mut self, scope: LambdaScope) -> Self {
        self.scope = scope;
        self
    }

    /// How long `CreateFunction` is retried while a new role is not yet assumable
    /// (default 90 s).
    #[must_use]
    pub fn with_role_propagation_timeout(mut self, timeout: Duration) -> Self {
        self.role_propagation = timeout;
        self
    }

    /// How often `logs --follow` polls (default 2 s).
    #[must_use]
    pub fn with_log_poll_interval(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// The deployment this target converges to.
    pub fn spec(&self) -> &LambdaSpec {
        &self.spec
    }

    fn endpoints(&self, api: Option<&str>, url: Option<&str>) -> Vec<Endpoint> {
        let verifiable = !self.spec.emulated;
        api.map(|u| Endpoint::new("api gateway", u, verifiable))
            .into_iter()
            .chain(url.map(|u| Endpoint::new("function url", u, verifiable)))
            .collect()
    }
}

/// The image URI the function runs for `image`: its own ECR repository when it names one
/// (`deploy --image <account>.dkr.ecr…/repo@sha256:…`), else the spec's ECR repository with
/// the same digest (an image pushed to an emulator's push endpoint stands for it).
fn function_image(spec: &LambdaSpec, image: &PushedImage) -> String {
    if image.reference.is_ecr() {
        format!("{}@{}", image.reference.name(), image.digest())
    } else {
        image_uri(spec, image.digest().as_str())
    }
}

/// What a first deploy of `spec` creates, without reading the account: the adapter's own
/// diff against an empty account (the plan `plan` shows when AWS cannot be read).
pub fn first_deploy_plan(spec: &LambdaSpec) -> Result<Plan, AwsError> {
    Ok(diff(spec, &observe::Observed::default(), None, LambdaScope::All)?.plan)
}

#[async_trait]
impl Target for LambdaTarget {
    /// `pre_deploy`: the task is handed to the apply that follows, which invokes the
    /// version it publishes before the alias moves (a function error leaves the alias on
    /// the version live before). `post_deploy`: an invoke of the alias, now live.
    async fn run_task(
        &self,
        phase: deployctl_core::HookPhase,
        task: &deployctl_core::TargetTask,
        _image: &PushedImage,
        output: &dyn deployctl_core::HookOutput,
        _cancel: &Cancellation,
    ) -> Result<(), StageError> {
        if phase == deployctl_core::HookPhase::PreDeploy {
            if let Ok(mut armed) = self.armed.lock() {
                armed.push(task.clone());
            }
            output.line(
                "the task invokes the new version once it is published, before the alias moves",
            );
            return Ok(());
        }
        let qualified = format!("{}:{}", self.spec.function_name, ALIAS);
        crate::task::invoke(&self.clients.lambda, &qualified, task, output).await?;
        Ok(())
    }

    fn name(&self) -> &str {
        "lambda"
    }

    fn task_runner(&self) -> Option<deployctl_core::TaskRunner> {
        Some(crate::task::TASK_RUNNER)
    }

    fn lock(&self) -> Option<&dyn DeployLock> {
        Some(&self.lock)
    }

    async fn plan(&self, image: Option<&PushedImage>) -> Result<Plan, StageError> {
        let obs = observe::observe(&self.clients, &self.spec).await?;
        let uri = image.map(|i| function_image(&self.spec, i));
        Ok(diff(&self.spec, &obs, uri.as_deref(), self.scope)?.plan)
    }

    async fn apply(
        &self,
        image: &PushedImage,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<ApplyOutcome, StageError> {
        if image.is_index() {
            return Err(AwsError::Invalid {
                field: "image".into(),
                message: format!(
                    "{} is a multi-platform index; Lambda needs a single-platform image manifest",
                    image.reference
                ),
            }
            .into());
        }
        // Read again: the state may have moved since the plan was shown.
        let obs = observe::observe(&self.clients, &self.spec).await?;
        let uri = function_image(&self.spec, image);
        let d = diff(&self.spec, &obs, Some(&uri), self.scope)?;
        let armed: Vec<deployctl_core::TargetTask> = self
            .armed
            .lock()
            .map(|mut a| std::mem::take(&mut *a))
            .unwrap_or_default();
        let applied = Apply {
            c: &self.clients,
            spec: &self.spec,
            events,
            cancel,
            role_propagation: self.role_propagation,
            pre_alias: &armed,
        }
        .run(&d, &obs, &uri)
        .await?;
        let version = match applied.version {
            Some(v) => Some(v),
            None => obs.alias.map(|a| a.version),
        };
        Ok(ApplyOutcome::new(
            d.plan,
            version,
            self.endpoints(applied.api_endpoint.as_deref(), applied.url.as_deref()),
        ))
    }

    async fn verify(
        &self,
        outcome: &ApplyOutcome,
        cancel: &Cancellation,
    ) -> Result<Vec<Verification>, StageError> {
        let check = Check {
            lambda: &self.clients.lambda,
            qualified_name: format!("{}:{ALIAS}", self.spec.function_name),
            health_path: &self.spec.health_path,
            deadline: self.verify_deadline,
            retry_every: Duration::from_millis(500).min(self.verify_deadline),
            emulated: self.spec.emulated,
            method: self.verify_method,
        };
        Ok(verify::verify(&check, &outcome.endpoints, cancel).await?)
    }

    async fn status(&self) -> Result<TargetStatus, StageError> {
        let spec = &self.spec;
        let obs = observe::observe(&self.clients, spec).await?;
        let mut st = TargetStatus::new("lambda");
        let Some(f) = &obs.function else {
            return Ok(st);
        };
        st.deployed = true;
        st.version = obs.alias.as_ref().map(|a| a.version.clone());
        st.image = f.image_uri.clone();
        let mut function = ResourceStatus::new(
            "lambda function",
            &spec.function_name,
            f.state.clone().unwrap_or_else(|| "unknown".into()),
        );
        function.details = [
            ("last update", f.last_update_status.clone()),
            ("last modified", f.last_modified.clone()),
            ("image", f.image_uri.clone()),
            ("memory", f.memory.map(|m| format!("{m} MB"))),
            ("timeout", f.timeout.map(|t| format!("{t} s"))),
            ("architecture", f.architecture.clone()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect();
        st.resources.push(function);
        if let Some(a) = &obs.alias {
            let mut alias = ResourceStatus::new(
                "lambda alias",
                format!("{}:{ALIAS}", spec.function_name),
                format!("version {}", a.version),
            );
            alias.details.push((
                "published versions".into(),
                obs.versions
                    .iter()
                    .map(|(n, _)| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
            st.resources.push(alias);
        }
        if let Some(api) = &obs.api {
            let mut r = ResourceStatus::new(
                "http api",
                &api.id,
                if api.stage.is_some() {
                    "deployed"
                } else {
                    "no stage"
                },
            );
            if let Some(e) = &api.endpoint {
                r.details.push(("endpoint".into(), e.clone()));
            }
            st.resources.push(r);
        }
        if let Some((url, auth)) = &obs.url {
            let mut r = ResourceStatus::new("function url", url, format!("auth {auth}"));
            r.details.push(("qualifier".into(), ALIAS.into()));
            st.resources.push(r);
        }
        st.endpoints = self.endpoints(
            obs.api.as_ref().and_then(|a| a.endpoint.as_deref()),
            obs.url.as_ref().map(|(u, _)| u.as_str()),
        );
        Ok(st)
    }

    async fn logs(
        &self,
        query: &LogQuery,
        sink: &dyn LogSink,
        cancel: &Cancellation,
    ) -> Result<(), StageError> {
        let group = &self.spec.log_group;
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let since = query
            .since_seconds
            .map(|s| now_ms - i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX / 2));
        let mut start = since;
        let mut seen: HashSet<String> = HashSet::new();
        loop {
            let mut token: Option<String> = None;
            let mut lines = Vec::new();
            loop {
                let page = self
                    .clients
                    .logs
                    .filter_log_events()
                    .log_group_name(group)
                    .set_start_time(start)
                    .set_filter_pattern(query.filter.as_ref().map(|f| format!("\"{f}\"")))
                    .set_next_token(token.clone())
                    .send()
                    .await
                    .map_err(|e| AwsError::sdk("logs", "FilterLogEvents", group, e));
                let page = match page {
                    Ok(p) => p,
                    Err(e) if e.code() == Some("ResourceNotFoundException") => {
                        return Err(AwsError::Missing(format!(
                            "log group {group} does not exist: nothing is deployed or the function never ran"
                        ))
                        .into());
                    }
                    Err(e) => return Err(e.into()),
                };
                for ev in page.events() {
                    let id = ev.event_id().map_or_else(
                        || {
                            format!(
                                "{:?}{:?}{:?}",
                                ev.log_stream_name(),
                                ev.timestamp(),
                                ev.message()
                            )
                        },
                        str::to_owned,
                    );
                    if !seen.insert(id) {
                        continue;
                    }
                    let text = ev.message().unwrap_or_default().trim_end().to_owned();
                    if let Some(f) = &query.filter
                        && !text.contains(f.as_str())
                    {
                        continue;
                    }
                    lines.push(LogLine::new(
                        ev.log_stream_name().unwrap_or(group).to_owned(),
                        ev.timestamp().and_then(|t| u64::try_from(t).ok()),
                        text,
                    ));
                    if let Some(t) = ev.timestamp() {
                        start = Some(start.map_or(t, |s| s.max(t)));
                    }
                }
                match page.next_token() {
                    Some(t) if !t.is_empty() && Some(t) != token.as_deref() => {
                        token = Some(t.to_owned());
                    }
                    _ => break,
                }
            }
            lines.sort_by_key(|l| l.at_ms);
            if let Some(tail) = query
                .tail
                .filter(|_| !query.follow || seen.len() == lines.len())
            {
                let skip = lines
                    .len()
                    .saturating_sub(usize::try_from(tail).unwrap_or(usize::MAX));
                lines.drain(..skip);
            }
            for l in lines {
                sink.line(l);
            }
            if !query.follow || cancel.is_cancelled() {
                return Ok(());
            }
            let deadline = tokio::time::Instant::now() + self.poll;
            while tokio::time::Instant::now() < deadline {
                if cancel.is_cancelled() {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    async fn destroy_plan(&self) -> Result<Plan, StageError> {
        Ok(crate::destroy::plan(&self.clients, &self.spec).await?.0)
    }

    async fn destroy(
        &self,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<Plan, StageError> {
        let plan = crate::destroy::run(&self.clients, &self.spec, events, cancel).await?;
        // The records are bookkeeping: a role without the permission for them (older IAM
        // policies) still destroys the app, and is told what was left.
        if let Err(e) = crate::records::delete(&self.clients.ssm, &self.spec.function_name).await {
            events.emit(deployctl_core::Event::now(
                deployctl_core::Stage::Destroy("lambda".into()),
                deployctl_core::EventKind::Message {
                    text: format!("warning: the deploy records were not deleted: {e}"),
                },
            ));
        }
        Ok(plan)
    }

    async fn record_deploy(&self, record: &deployctl_core::DeployRecord) -> Result<(), StageError> {
        Ok(crate::records::append(&self.clients.ssm, &self.spec.function_name, record).await?)
    }

    async fn deploy_records(
        &self,
    ) -> Result<Option<Vec<deployctl_core::DeployRecord>>, StageError> {
        Ok(Some(
            crate::records::read(&self.clients.ssm, &self.spec.function_name).await?,
        ))
    }

    async fn history(&self) -> Result<Vec<deployctl_core::Revision>, StageError> {
        let name = self.spec.function_name.as_str();
        if observe::read_function(&self.clients, name).await?.is_none() {
            return Ok(Vec::new());
        }
        let live = observe::read_alias(&self.clients, name)
            .await?
            .map(|a| a.version);
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .clients
                .lambda
                .list_versions_by_function()
                .function_name(name)
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(|e| AwsError::sdk("lambda", "ListVersionsByFunction", name, e))?;
            for v in page.versions() {
                let Some(version) = v.version().filter(|v| *v != "$LATEST") else {
                    continue;
                };
                // Each version's description records the image it was published from.
                let image = v
                    .description()
                    .and_then(|d| d.strip_prefix("deployed by deployctl: "))
                    .map(str::to_owned);
                out.push(deployctl_core::Revision::new(
                    version,
                    image,
                    live.as_deref() == Some(version),
                ));
            }
            match page.next_marker() {
                Some(m) if !m.is_empty() => marker = Some(m.to_owned()),
                _ => break,
            }
        }
        out.sort_by_key(|r| r.version.parse::<u64>().unwrap_or(0));
        Ok(out)
    }

    async fn rollback(
        &self,
        to: Option<&str>,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<RollbackOutcome, StageError> {
        let spec = &self.spec;
        let name = spec.function_name.as_str();
        let Some(alias) = observe::read_alias(&self.clients, name).await? else {
            return Err(AwsError::Missing(format!(
                "{name} has no `{ALIAS}` alias: nothing was deployed by deployctl"
            ))
            .into());
        };
        let versions = observe::read_versions(&self.clients, name).await?;
        let current: u64 = alias.version.parse().unwrap_or(0);
        let target = match to {
            Some(v) => {
                let n: u64 = v.parse().map_err(|_| AwsError::Invalid {
                    field: "--to".into(),
                    message: format!("`{v}` is not a version number"),
                })?;
                if !versions.iter().any(|(x, _)| *x == n) {
                    return Err(AwsError::Missing(format!(
                        "{name} has no version {n}; published versions: {}",
                        versions
                            .iter()
                            .map(|(x, _)| x.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .into());
                }
                n
            }
            None => versions
                .iter()
                .rev()
                .map(|(n, _)| *n)
                .find(|n| *n < current)
                .ok_or_else(|| {
                    AwsError::Missing(format!(
                        "{name}:{ALIAS} is at version {current}, the oldest published; there is nothing to roll back to"
                    ))
                })?,
        };
        if target == current {
            return Ok(RollbackOutcome::new(
                Some(alias.version),
                target.to_string(),
            ));
        }
        if cancel.is_cancelled() {
            return Err(StageError::cancelled("moving the alias"));
        }
        self.clients
            .lambda
            .update_alias()
            .function_name(name)
            .name(ALIAS)
            .function_version(target.to_string())
            .set_revision_id(alias.revision_id.clone())
            .send()
            .await
            .map_err(|e| AwsError::sdk("lambda", "UpdateAlias", name, e))?;
        events.emit(deployctl_core::Event::now(
            deployctl_core::Stage::Rollback("lambda".into()),
            deployctl_core::EventKind::Message {
                text: format!("alias {name}:{ALIAS} moved from version {current} to {target}"),
            },
        ));
        Ok(RollbackOutcome::new(
            Some(alias.version),
            target.to_string(),
        ))
    }
}

/// Resource kinds in destroy plans, reused by the destroy module.
pub(crate) fn delete(kind: &str, name: &str, reason: &str) -> ResourceChange {
    ResourceChange::new(kind, name, Action::Delete, reason)
}

/// Statement ids deployctl adds to the alias policy.
pub(crate) const SIDS: [&str; 2] = [API_PERMISSION_SID, URL_PERMISSION_SID];

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use deployctl_core::{Digest, ImageRef, PushedImage};

    use super::function_image;
    use crate::LambdaSpec;

    #[test]
    fn the_function_runs_the_ecr_repository_it_is_given() {
        let vars = BTreeMap::<String, String>::new();
        let config = deployctl_config::load_str(
            "version: '1'\napp:\n  name: shop\nlambda:\n  enabled: true\n  region: us-east-1\n",
            Path::new("deploy.yaml"),
            &deployctl_config::LoadOptions::new(&vars),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let ecr = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        let spec =
            LambdaSpec::from_config(&config, "123456789012", "us-east-1", &format!("{ecr}/shop"));
        let d = format!("sha256:{}", "a".repeat(64));
        let image = |r: &str| {
            PushedImage::new(
                ImageRef::parse(r).unwrap(),
                Digest::parse(&d).unwrap(),
                None,
            )
        };
        assert_eq!(
            function_image(&spec, &image(&format!("{ecr}/other@{d}"))),
            format!("{ecr}/other@{d}"),
            "--image names another ECR repository: that one runs"
        );
        assert_eq!(
            function_image(&spec, &image(&format!("127.0.0.1:5000/shop@{d}"))),
            format!("{ecr}/shop@{d}"),
            "pushed to an emulator's endpoint: the ECR name it stands for"
        );
    }
}

//! Carrying out a [`Diff`]: the only module (with `destroy`) that makes mutating calls.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_apigatewayv2::types::{Cors, IntegrationType, ProtocolType, RouteSettings};
use aws_sdk_lambda::client::Waiters;
use aws_sdk_lambda::types::{
    Architecture, Environment, EphemeralStorage, FileSystemConfig, FunctionCode,
    FunctionUrlAuthType, PackageType, VpcConfig,
};
use aws_smithy_types::error::display::DisplayErrorContext;
use deployctl_core::{Cancellation, Event, EventKind, EventSink, Stage};

use crate::clients::AwsClients;
use crate::diff::Diff;
use crate::error::AwsError;
use crate::observe::{API_PERMISSION_SID, ApiState, Observed, URL_PERMISSION_SID, find_api};
use crate::spec::{ALIAS, LAMBDA_TRUST_POLICY, LambdaSpec};

/// How long to wait for the function to become active or updated.
const FUNCTION_WAIT: Duration = Duration::from_secs(600);

/// What an apply ended with.
#[derive(Debug, Clone, Default)]
pub(crate) struct Applied {
    pub version: Option<String>,
    pub api_endpoint: Option<String>,
    pub url: Option<String>,
}

pub(crate) struct Apply<'a> {
    pub c: &'a AwsClients,
    pub spec: &'a LambdaSpec,
    pub events: &'a dyn EventSink,
    pub cancel: &'a Cancellation,
    pub role_propagation: Duration,
    /// `pre_deploy` hook tasks: each invokes the version about to go live before the alias
    /// moves; a function error stops the apply there (`task.rs`).
    pub pre_alias: &'a [deployctl_core::TargetTask],
}

/// A `pre_deploy` task's output lines as messages of the hook's stage.
struct TaskOutput<'a>(&'a dyn EventSink);

impl deployctl_core::HookOutput for TaskOutput<'_> {
    fn line(&self, text: &str) {
        self.0.emit(Event::now(
            Stage::PreDeploy("lambda".into()),
            EventKind::Message {
                text: text.to_owned(),
            },
        ));
    }
}

impl Apply<'_> {
    fn say(&self, text: impl Into<String>) {
        self.events.emit(Event::now(
            Stage::Apply("lambda".into()),
            EventKind::Message { text: text.into() },
        ));
    }

    fn check(&self, next: &str) -> Result<(), AwsError> {
        if self.cancel.is_cancelled() {
            return Err(AwsError::Cancelled(next.to_owned()));
        }
        Ok(())
    }

    /// Carries out `d`, in dependency order: role → function (code, then configuration,
    /// each awaited) → version → alias; then, independent of each other, the HTTP API, the
    /// function URL, the log group and reserved concurrency at once; then the alias'
    /// resource policy (one statement at a time: they change one document).
    ///
    /// Every Lambda update passes the `RevisionId` read before it (observed, or from the
    /// previous call's result), so a change by anybody else in between is an error
    /// ([`AwsError::Changed`]), never silently overwritten.
    pub async fn run(&self, d: &Diff, obs: &Observed, image: &str) -> Result<Applied, AwsError> {
        let spec = self.spec;
        let name = spec.function_name.as_str();
        self.role(d).await?;
        let role_arn = obs
            .role
            .as_ref()
            .map_or_else(|| spec.role_arn(), |r| r.arn.clone());

        let mut revision = obs.function.as_ref().and_then(|f| f.revision_id.clone());
        if d.create_function {
            self.check("creating the function")?;
            revision = self.create_function(image, &role_arn).await?;
        } else {
            if d.update_code {
                revision = self.update_code(image, revision).await?;
            }
            if !d.config_fields.is_empty() {
                let fields: Vec<&str> = d.config_fields.iter().map(|f| f.field.as_str()).collect();
                revision = self.update_configuration(&role_arn, revision).await?;
                self.say(format!(
                    "updated configuration of {name}: {}",
                    fields.join(", ")
                ));
            }
        }

        let mut version = d.alias_to.clone();
        if d.publish {
            self.check("publishing a version")?;
            let published = self
                .c
                .lambda
                .publish_version()
                .function_name(name)
                .description(format!("deployed by deployctl: {image}"))
                .set_revision_id(revision.clone())
                .send()
                .await
                .map_err(|e| AwsError::sdk("lambda", "PublishVersion", name, e))?;
            let v = published.version().unwrap_or_default().to_owned();
            self.say(format!("published version {v} of {name}"));
            version = Some(v);
        }
        // Hook tasks run on the version about to go live (just published, or the one the
        // alias already names), before the alias moves.
        let about_to_go_live = version
            .clone()
            .or_else(|| obs.alias.as_ref().map(|a| a.version.clone()));
        if let (false, Some(v)) = (self.pre_alias.is_empty(), &about_to_go_live) {
            for task in self.pre_alias {
                self.check("invoking a hook task")?;
                crate::task::invoke(
                    &self.c.lambda,
                    &format!("{name}:{v}"),
                    task,
                    &TaskOutput(self.events),
                )
                .await?;
            }
        }
        if let Some(v) = &version
            && (d.publish || d.alias_to.is_some())
        {
            self.check("moving the alias")?;
            let alias_revision = obs.alias.as_ref().and_then(|a| a.revision_id.clone());
            self.alias(v, d.alias_exists, alias_revision).await?;
            self.say(format!("alias {name}:{ALIAS} → version {v}"));
        }

        // Independent of each other once the alias exists. The API's integration, route and
        // stage and the alias' permissions need only the API's id, so they go side by side.
        let api_and_permissions = async {
            let api = self.api(d, obs).await?;
            let (api, ()) = tokio::try_join!(
                self.wire_api(d, api.clone()),
                self.permissions(d, obs, api.as_ref()),
            )?;
            Ok::<_, AwsError>(api)
        };
        let (api, url, (), ()) = tokio::try_join!(
            api_and_permissions,
            self.url(d, obs),
            self.log_group(d),
            self.concurrency(d),
        )?;
        let api_endpoint = match api {
            Some(ApiState {
                endpoint: Some(e), ..
            }) => Some(e),
            Some(_) => find_api(self.c, spec).await?.and_then(|a| a.endpoint),
            None => None,
        };
        Ok(Applied {
            version,
            api_endpoint,
            url,
        })
    }

    async fn update_code(
        &self,
        image: &str,
        revision: Option<String>,
    ) -> Result<Option<String>, AwsError> {
        let spec = self.spec;
        let name = spec.function_name.as_str();
        self.check("updating the function code")?;
        self.c
            .lambda
            .update_function_code()
            .function_name(name)
            .image_uri(image)
            .architectures(Architecture::from(spec.architecture))
            .set_revision_id(revision)
            .send()
            .await
            .map_err(|e| AwsError::sdk("lambda", "UpdateFunctionCode", name, e))?;
        self.say(format!("updated code of {name} to {image}"));
        // The revision once the update has finished (finishing it changes the revision):
        // read after our update, so it must show our image, or someone changed it since.
        let (revision, running) = self.wait_updated().await?;
        if running.as_deref().is_some_and(|r| r != image) {
            return Err(AwsError::Changed {
                service: "lambda",
                operation: "UpdateFunctionCode",
                resource: name.to_owned(),
            });
        }
        Ok(revision)
    }

    async fn update_configuration(
        &self,
        role_arn: &str,
        revision: Option<String>,
    ) -> Result<Option<String>, AwsError> {
        let spec = self.spec;
        let name = spec.function_name.as_str();
        self.check("updating the function configuration")?;
        self.c
            .lambda
            .update_function_configuration()
            .function_name(name)
            .role(role_arn)
            .memory_size(spec.memory)
            .timeout(spec.timeout)
            .ephemeral_storage(ephemeral(spec)?)
            .environment(environment(spec))
            .vpc_config(vpc(spec))
            .set_file_system_configs(Some(efs(spec)?))
            .set_revision_id(revision)
            .send()
            .await
            .map_err(|e| AwsError::sdk("lambda", "UpdateFunctionConfiguration", name, e))?;
        Ok(self.wait_updated().await?.0)
    }

    /// Points the alias at `version`: updated under the alias' own `RevisionId`, or created
    /// (one created meanwhile by someone else counts as found, and is then updated).
    async fn alias(
        &self,
        version: &str,
        exists: bool,
        revision: Option<String>,
    ) -> Result<(), AwsError> {
        let name = self.spec.function_name.as_str();
        let revision = if exists {
            revision
        } else {
            match self
                .c
                .lambda
                .create_alias()
                .function_name(name)
                .name(ALIAS)
                .function_version(version)
                .description("the version deployctl deployed last")
                .send()
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let e = AwsError::sdk("lambda", "CreateAlias", name, e);
                    if !already_exists(&e) {
                        return Err(e);
                    }
                    crate::observe::read_alias(self.c, name)
                        .await?
                        .and_then(|a| a.revision_id)
                }
            }
        };
        self.c
            .lambda
            .update_alias()
            .function_name(name)
            .name(ALIAS)
            .function_version(version)
            .set_revision_id(revision)
            .send()
            .await
            .map_err(|e| AwsError::sdk("lambda", "UpdateAlias", name, e))?;
        Ok(())
    }

    async fn log_group(&self, d: &Diff) -> Result<(), AwsError> {
        let spec = self.spec;
        if !d.log_group {
            return Ok(());
        }
        self.check("creating the log group")?;
        let mut req = self
            .c
            .logs
            .create_log_group()
            .log_group_name(&spec.log_group);
        for (k, v) in spec.tags() {
            req = req.tags(k, v);
        }
        match req.send().await {
            Ok(_) => self.say(format!("created log group {}", spec.log_group)),
            Err(e) => {
                let e = AwsError::sdk("logs", "CreateLogGroup", &spec.log_group, e);
                if !already_exists(&e) {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    async fn concurrency(&self, d: &Diff) -> Result<(), AwsError> {
        let Some(want) = d.concurrency else {
            return Ok(());
        };
        let name = self.spec.function_name.as_str();
        self.check("setting reserved concurrency")?;
        match want {
            Some(n) => {
                self.c
                    .lambda
                    .put_function_concurrency()
                    .function_name(name)
                    .reserved_concurrent_executions(n)
                    .send()
                    .await
                    .map_err(|e| AwsError::sdk("lambda", "PutFunctionConcurrency", name, e))?;
                self.say(format!("reserved concurrency of {name} set to {n}"));
            }
            None => {
                self.c
                    .lambda
                    .delete_function_concurrency()
                    .function_name(name)
                    .send()
                    .await
                    .map_err(|e| AwsError::sdk("lambda", "DeleteFunctionConcurrency", name, e))?;
                self.say(format!("reserved concurrency of {name} removed"));
            }
        }
        Ok(())
    }

    async fn role(&self, d: &Diff) -> Result<(), AwsError> {
        let spec = self.spec;
        let role = spec.role.name.as_str();
        let w = &d.role;
        if w.create {
            self.check("creating the IAM role")?;
            let mut req = self
                .c
                .iam
                .create_role()
                .role_name(role)
                .assume_role_policy_document(LAMBDA_TRUST_POLICY)
                .description(format!(
                    "Execution role of Lambda function {} (created by deployctl)",
                    spec.function_name
                ));
            for (k, v) in spec.tags() {
                let tag = aws_sdk_iam::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .map_err(|e| AwsError::Invalid {
                        field: "tags".into(),
                        message: e.to_string(),
                    })?;
                req = req.tags(tag);
            }
            match req.send().await {
                Ok(_) => self.say(format!("created IAM role {role}")),
                Err(e) => {
                    let e = AwsError::sdk("iam", "CreateRole", role, e);
                    if !already_exists(&e) {
                        return Err(e);
                    }
                    // Created meanwhile: found, if it is ours (the rest below is idempotent).
                    let found = crate::observe::read_role(self.c, role).await?;
                    if !found.as_ref().is_some_and(|r| r.managed) {
                        return Err(AwsError::NotManaged {
                            kind: "IAM role",
                            name: role.to_owned(),
                        });
                    }
                }
            }
        }
        if w.trust {
            self.c
                .iam
                .update_assume_role_policy()
                .role_name(role)
                .policy_document(LAMBDA_TRUST_POLICY)
                .send()
                .await
                .map_err(|e| AwsError::sdk("iam", "UpdateAssumeRolePolicy", role, e))?;
            self.say(format!("restored the Lambda trust policy of {role}"));
        }
        for arn in &w.attach {
            self.check("attaching role policies")?;
            self.c
                .iam
                .attach_role_policy()
                .role_name(role)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| {
                    AwsError::sdk("iam", "AttachRolePolicy", format!("{role} ← {arn}"), e)
                })?;
            self.say(format!("attached {arn} to {role}"));
        }
        for arn in &w.detach {
            self.c
                .iam
                .detach_role_policy()
                .role_name(role)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| {
                    AwsError::sdk("iam", "DetachRolePolicy", format!("{role} ← {arn}"), e)
                })?;
            self.say(format!("detached {arn} from {role}"));
        }
        for name in &w.put_inline {
            let doc = spec
                .role
                .inline_policies
                .get(name)
                .map(serde_json::Value::to_string)
                .unwrap_or_default();
            self.c
                .iam
                .put_role_policy()
                .role_name(role)
                .policy_name(name)
                .policy_document(doc)
                .send()
                .await
                .map_err(|e| AwsError::sdk("iam", "PutRolePolicy", format!("{role}/{name}"), e))?;
            self.say(format!("set inline policy {name} on {role}"));
        }
        for name in &w.delete_inline {
            self.c
                .iam
                .delete_role_policy()
                .role_name(role)
                .policy_name(name)
                .send()
                .await
                .map_err(|e| {
                    AwsError::sdk("iam", "DeleteRolePolicy", format!("{role}/{name}"), e)
                })?;
            self.say(format!("removed inline policy {name} from {role}"));
        }
        Ok(())
    }

    /// Creates the function and waits until it is active; returns its `RevisionId`. One
    /// created meanwhile by someone else counts as found: if it is ours, its code and
    /// configuration are set to this deploy's under its `RevisionId`.
    async fn create_function(
        &self,
        image: &str,
        role_arn: &str,
    ) -> Result<Option<String>, AwsError> {
        let name = self.spec.function_name.as_str();
        if !self.send_create_function(image, role_arn).await? {
            let found = crate::observe::read_function(self.c, name).await?;
            let Some(found) = found.filter(|f| f.managed) else {
                return Err(AwsError::NotManaged {
                    kind: "Lambda function",
                    name: name.to_owned(),
                });
            };
            self.say(format!(
                "function {name} was created meanwhile by another run; updating it"
            ));
            self.wait_active().await?;
            let revision = self.update_code(image, found.revision_id).await?;
            return self.update_configuration(role_arn, revision).await;
        }
        self.say(format!("created function {name}"));
        self.wait_active().await
    }

    /// `CreateFunction`, retried while a new role is not assumable yet; `false` when the
    /// function exists already.
    async fn send_create_function(&self, image: &str, role_arn: &str) -> Result<bool, AwsError> {
        let spec = self.spec;
        let name = spec.function_name.as_str();
        let started = Instant::now();
        let mut delay = Duration::from_millis(500);
        loop {
            let mut req = self
                .c
                .lambda
                .create_function()
                .function_name(name)
                .package_type(PackageType::Image)
                .code(FunctionCode::builder().image_uri(image).build())
                .role(role_arn)
                .memory_size(spec.memory)
                .timeout(spec.timeout)
                .architectures(Architecture::from(spec.architecture))
                .ephemeral_storage(ephemeral(spec)?)
                .environment(environment(spec))
                .set_file_system_configs(Some(efs(spec)?))
                .description(format!("{} (deployed by deployctl)", spec.app))
                .publish(false);
            if spec.vpc.is_some() {
                req = req.vpc_config(vpc(spec));
            }
            for (k, v) in spec.tags() {
                req = req.tags(k, v);
            }
            match req.send().await {
                Ok(_) => return Ok(true),
                Err(e) => {
                    let e = AwsError::sdk("lambda", "CreateFunction", name, e);
                    if already_exists(&e) {
                        return Ok(false);
                    }
                    // A new role takes seconds to become assumable by Lambda.
                    let propagating = e.code() == Some("InvalidParameterValueException")
                        && e.to_string().contains("cannot be assumed");
                    if !propagating {
                        return Err(e);
                    }
                    if started.elapsed() + delay > self.role_propagation {
                        return Err(AwsError::Role {
                            role: spec.role.name.clone(),
                            reason: format!(
                                "Lambda still cannot assume it after {}s ({e})",
                                started.elapsed().as_secs()
                            ),
                        });
                    }
                    self.say(format!(
                        "role {} is not assumable yet; retrying in {} ms",
                        spec.role.name,
                        delay.as_millis()
                    ));
                    self.check("creating the function")?;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(8));
                }
            }
        }
    }

    async fn wait_active(&self) -> Result<Option<String>, AwsError> {
        let name = self.spec.function_name.as_str();
        let done = self
            .c
            .lambda
            .wait_until_function_active_v2()
            .function_name(name)
            .wait(FUNCTION_WAIT)
            .await
            .map_err(|e| AwsError::NotReady {
                function: name.to_owned(),
                state: "Active",
                reason: DisplayErrorContext(&e).to_string(),
            })?;
        Ok(done
            .as_result()
            .ok()
            .and_then(|o| o.configuration())
            .and_then(|c| c.revision_id())
            .map(str::to_owned))
    }

    /// Waits for the last update to finish; the function's `RevisionId` and image then.
    async fn wait_updated(&self) -> Result<(Option<String>, Option<String>), AwsError> {
        let name = self.spec.function_name.as_str();
        let done = self
            .c
            .lambda
            .wait_until_function_updated_v2()
            .function_name(name)
            .wait(FUNCTION_WAIT)
            .await
            .map_err(|e| AwsError::NotReady {
                function: name.to_owned(),
                state: "updated",
                reason: DisplayErrorContext(&e).to_string(),
            })?;
        let got = done.as_result().ok();
        Ok((
            got.and_then(|o| o.configuration())
                .and_then(|c| c.revision_id())
                .map(str::to_owned),
            got.and_then(|o| o.code())
                .and_then(|c| c.image_uri())
                .map(str::to_owned),
        ))
    }

    /// The HTTP API with its integration, route and stage (its permission comes after, in
    /// [`Self::permissions`]); the API as it is now, `None` when there is none.
    async fn api(&self, d: &Diff, obs: &Observed) -> Result<Option<ApiState>, AwsError> {
        let spec = self.spec;
        futures::future::try_join_all(d.delete_extra_apis.iter().map(|id| async move {
            self.check("deleting a duplicate HTTP API")?;
            delete_api(self.c, id).await?;
            self.say(format!(
                "deleted HTTP API {id} (a duplicate of the app's API)"
            ));
            Ok::<_, AwsError>(())
        }))
        .await?;
        if d.delete_api {
            if let Some(found) = &obs.api {
                self.check("deleting the HTTP API")?;
                self.c
                    .apigateway
                    .delete_api()
                    .api_id(&found.id)
                    .send()
                    .await
                    .map_err(|e| AwsError::sdk("apigateway", "DeleteApi", &found.id, e))?;
                self.say(format!("deleted HTTP API {}", found.id));
            }
            return Ok(None);
        }
        let Some(want) = &spec.api else {
            return Ok(None);
        };
        let api: ApiState = match &obs.api {
            Some(a) => a.clone(),
            // Only when the diff says so: a run scoped to the function creates no API.
            None if !d.create_api => return Ok(None),
            None => {
                self.check("creating the HTTP API")?;
                let mut req = self
                    .c
                    .apigateway
                    .create_api()
                    .name(&want.name)
                    .protocol_type(ProtocolType::Http)
                    .description(format!("{} (deployed by deployctl)", spec.app));
                if let Some(c) = &want.cors {
                    req = req.cors_configuration(cors(c));
                }
                for (k, v) in spec.tags() {
                    req = req.tags(k, v);
                }
                let made = req
                    .send()
                    .await
                    .map_err(|e| AwsError::sdk("apigateway", "CreateApi", &want.name, e))?;
                let id = made.api_id().unwrap_or_default().to_owned();
                self.say(format!("created HTTP API {} ({id})", want.name));
                ApiState {
                    id,
                    endpoint: made.api_endpoint().map(str::to_owned),
                    cors: want.cors.clone(),
                    integration: None,
                    route: None,
                    stage: None,
                }
            }
        };
        let id = api.id.clone();
        if d.update_cors && obs.api.is_some() {
            match &want.cors {
                Some(c) => {
                    self.c
                        .apigateway
                        .update_api()
                        .api_id(&id)
                        .cors_configuration(cors(c))
                        .send()
                        .await
                        .map_err(|e| AwsError::sdk("apigateway", "UpdateApi", &id, e))?;
                }
                None => {
                    self.c
                        .apigateway
                        .delete_cors_configuration()
                        .api_id(&id)
                        .send()
                        .await
                        .map_err(|e| {
                            AwsError::sdk("apigateway", "DeleteCorsConfiguration", &id, e)
                        })?;
                }
            }
            self.say(format!("updated CORS of HTTP API {id}"));
        }
        Ok(Some(api))
    }

    /// The API's integration with the alias, its `$default` route and its stage.
    async fn wire_api(
        &self,
        d: &Diff,
        api: Option<ApiState>,
    ) -> Result<Option<ApiState>, AwsError> {
        let spec = self.spec;
        let (Some(mut api), Some(want)) = (api, &spec.api) else {
            return Ok(None);
        };
        let id = api.id.clone();
        if d.integration {
            self.check("integrating the API with the function")?;
            let uri = spec.alias_arn();
            let integration_id = match &api.integration {
                Some((iid, _, _)) => {
                    self.c
                        .apigateway
                        .update_integration()
                        .api_id(&id)
                        .integration_id(iid)
                        .integration_type(IntegrationType::AwsProxy)
                        .integration_uri(&uri)
                        .payload_format_version("2.0")
                        .send()
                        .await
                        .map_err(|e| AwsError::sdk("apigateway", "UpdateIntegration", &id, e))?;
                    iid.clone()
                }
                None => self
                    .c
                    .apigateway
                    .create_integration()
                    .api_id(&id)
                    .integration_type(IntegrationType::AwsProxy)
                    .integration_uri(&uri)
                    .payload_format_version("2.0")
                    .send()
                    .await
                    .map_err(|e| AwsError::sdk("apigateway", "CreateIntegration", &id, e))?
                    .integration_id()
                    .unwrap_or_default()
                    .to_owned(),
            };
            self.say(format!("API {id} integrated with {uri}"));
            api.integration = Some((integration_id, uri, "2.0".into()));
        }
        if d.route {
            let target = api
                .integration
                .as_ref()
                .map(|(iid, _, _)| format!("integrations/{iid}"))
                .unwrap_or_default();
            match &api.route {
                Some((rid, _)) => {
                    self.c
                        .apigateway
                        .update_route()
                        .api_id(&id)
                        .route_id(rid)
                        .target(&target)
                        .send()
                        .await
                        .map_err(|e| AwsError::sdk("apigateway", "UpdateRoute", &id, e))?;
                }
                None => {
                    let made = self
                        .c
                        .apigateway
                        .create_route()
                        .api_id(&id)
                        .route_key("$default")
                        .target(&target)
                        .send()
                        .await;
                    if let Err(e) = made {
                        let e = AwsError::sdk("apigateway", "CreateRoute", &id, e);
                        if !already_exists(&e) {
                            return Err(e);
                        }
                        // Created meanwhile: found; point it at this integration.
                        let routes = self
                            .c
                            .apigateway
                            .get_routes()
                            .api_id(&id)
                            .send()
                            .await
                            .map_err(|e| AwsError::sdk("apigateway", "GetRoutes", &id, e))?;
                        if let Some(rid) = routes
                            .items()
                            .iter()
                            .find(|r| r.route_key() == Some("$default"))
                            .and_then(|r| r.route_id())
                        {
                            self.c
                                .apigateway
                                .update_route()
                                .api_id(&id)
                                .route_id(rid)
                                .target(&target)
                                .send()
                                .await
                                .map_err(|e| AwsError::sdk("apigateway", "UpdateRoute", &id, e))?;
                        }
                    }
                }
            }
            self.say(format!("route $default → {target}"));
        }
        if d.stage {
            let mut settings = RouteSettings::builder();
            if let Some((rate, burst)) = want.throttling {
                settings = settings
                    .throttling_rate_limit(rate)
                    .throttling_burst_limit(burst);
            }
            let update = || {
                self.c
                    .apigateway
                    .update_stage()
                    .api_id(&id)
                    .stage_name(&want.stage)
                    .auto_deploy(true)
                    .default_route_settings(settings.clone().build())
                    .send()
            };
            if api.stage.is_some() {
                update()
                    .await
                    .map_err(|e| AwsError::sdk("apigateway", "UpdateStage", &id, e))?;
            } else {
                let mut req = self
                    .c
                    .apigateway
                    .create_stage()
                    .api_id(&id)
                    .stage_name(&want.stage)
                    .auto_deploy(true)
                    .default_route_settings(settings.clone().build());
                for (k, v) in spec.tags() {
                    req = req.tags(k, v);
                }
                if let Err(e) = req.send().await {
                    let e = AwsError::sdk("apigateway", "CreateStage", &id, e);
                    if !already_exists(&e) {
                        return Err(e);
                    }
                    // Created meanwhile: found; give it this deploy's settings.
                    update()
                        .await
                        .map_err(|e| AwsError::sdk("apigateway", "UpdateStage", &id, e))?;
                }
            }
            self.say(format!("stage {} of API {id} deployed", want.stage));
        }
        Ok(Some(api))
    }

    /// The function URL (its permission comes after, in [`Self::permissions`]).
    async fn url(&self, d: &Diff, obs: &Observed) -> Result<Option<String>, AwsError> {
        let spec = self.spec;
        let name = spec.function_name.as_str();
        if d.delete_url {
            self.c
                .lambda
                .delete_function_url_config()
                .function_name(name)
                .qualifier(ALIAS)
                .send()
                .await
                .map_err(|e| AwsError::sdk("lambda", "DeleteFunctionUrlConfig", name, e))?;
            self.say(format!("deleted the function URL of {name}:{ALIAS}"));
            return Ok(None);
        }
        let Some(auth) = &spec.function_url else {
            return Ok(None);
        };
        let auth_type = FunctionUrlAuthType::from(auth.as_str());
        let mut url = obs.url.as_ref().map(|(u, _)| u.clone());
        let mut update = d.update_url;
        if d.create_url {
            self.check("creating the function URL")?;
            match self
                .c
                .lambda
                .create_function_url_config()
                .function_name(name)
                .qualifier(ALIAS)
                .auth_type(auth_type.clone())
                .send()
                .await
            {
                Ok(made) => {
                    url = Some(made.function_url().to_owned());
                    self.say(format!("function URL {}", made.function_url()));
                }
                Err(e) => {
                    let e = AwsError::sdk("lambda", "CreateFunctionUrlConfig", name, e);
                    if !already_exists(&e) {
                        return Err(e);
                    }
                    // Created meanwhile: found; give it this deploy's auth type.
                    update = true;
                }
            }
        }
        if update {
            let made = self
                .c
                .lambda
                .update_function_url_config()
                .function_name(name)
                .qualifier(ALIAS)
                .auth_type(auth_type)
                .send()
                .await
                .map_err(|e| AwsError::sdk("lambda", "UpdateFunctionUrlConfig", name, e))?;
            url = Some(made.function_url().to_owned());
            self.say(format!("function URL auth type set to {auth}"));
        }
        Ok(url)
    }

    /// The alias' resource policy: the statements that let the API and the function URL
    /// invoke it. One document, so one change at a time, each under the policy's
    /// `RevisionId` read just before it (`AddPermission` returns none to chain).
    async fn permissions(
        &self,
        d: &Diff,
        obs: &Observed,
        api: Option<&ApiState>,
    ) -> Result<(), AwsError> {
        let spec = self.spec;
        let name = spec.function_name.as_str();
        if d.remove_url_permission {
            self.remove_permission(URL_PERMISSION_SID, obs).await?;
        }
        if d.delete_api {
            self.remove_permission(API_PERMISSION_SID, obs).await?;
        }
        if d.api_permission
            && let Some(api) = api
        {
            self.check("allowing the API to invoke the function")?;
            self.remove_permission(API_PERMISSION_SID, obs).await?;
            let req = self
                .c
                .lambda
                .add_permission()
                .function_name(name)
                .qualifier(ALIAS)
                .statement_id(API_PERMISSION_SID)
                .action("lambda:InvokeFunction")
                .principal("apigateway.amazonaws.com")
                .source_arn(api.source_arn(spec));
            self.add_permission(req).await?;
            self.say(format!("API {} may invoke {name}:{ALIAS}", api.id));
        }
        if d.url_permission
            && let Some(auth) = &spec.function_url
        {
            let req = self
                .c
                .lambda
                .add_permission()
                .function_name(name)
                .qualifier(ALIAS)
                .statement_id(URL_PERMISSION_SID)
                .action("lambda:InvokeFunctionUrl")
                .principal("*")
                .function_url_auth_type(FunctionUrlAuthType::from(auth.as_str()));
            self.add_permission(req).await?;
            self.say(format!(
                "the function URL of {name}:{ALIAS} is public (auth NONE)"
            ));
        }
        Ok(())
    }

    /// The alias policy's `RevisionId`; `None` when it has no policy yet.
    async fn policy_revision(&self) -> Result<Option<String>, AwsError> {
        let name = self.spec.function_name.as_str();
        match self
            .c
            .lambda
            .get_policy()
            .function_name(name)
            .qualifier(ALIAS)
            .send()
            .await
        {
            Ok(p) => Ok(p.revision_id().map(str::to_owned)),
            Err(e) => {
                let e = AwsError::sdk("lambda", "GetPolicy", format!("{name}:{ALIAS}"), e);
                if e.code() == Some("ResourceNotFoundException") {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Sends `req` under the policy's current `RevisionId`; a statement with its id that
    /// exists already (added meanwhile) counts as found.
    async fn add_permission(
        &self,
        req: aws_sdk_lambda::operation::add_permission::builders::AddPermissionFluentBuilder,
    ) -> Result<(), AwsError> {
        let name = self.spec.function_name.as_str();
        let revision = self.policy_revision().await?;
        match req.set_revision_id(revision).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = AwsError::sdk("lambda", "AddPermission", format!("{name}:{ALIAS}"), e);
                if already_exists(&e) { Ok(()) } else { Err(e) }
            }
        }
    }

    /// Removes every statement `sid` (an older deployctl could leave duplicates behind),
    /// each under the policy's current `RevisionId`.
    async fn remove_permission(&self, sid: &str, obs: &Observed) -> Result<(), AwsError> {
        if !obs.permissions.contains_key(sid) {
            return Ok(());
        }
        remove_statements(self.c, self.spec, sid).await
    }
}

/// Removes every statement `sid` from the alias' policy (a policy can hold duplicates that
/// an older deployctl's races left behind), each under the policy's `RevisionId` read just
/// before it.
///
/// Not on an emulator: moto (5.x) refuses *every* `RevisionId` on `RemovePermission` with
/// `PreconditionFailedException` (it compares the query parameter's list of values with the
/// string), so there the removal is unconditional; `AddPermission`'s is honoured.
pub(crate) async fn remove_statements(
    c: &AwsClients,
    spec: &LambdaSpec,
    sid: &str,
) -> Result<(), AwsError> {
    let name = spec.function_name.as_str();
    // Bounded: a policy holds at most a few hundred statements.
    for _ in 0..100 {
        let policy = match c
            .lambda
            .get_policy()
            .function_name(name)
            .qualifier(ALIAS)
            .send()
            .await
        {
            Ok(p) => p,
            Err(e) => {
                let e = AwsError::sdk("lambda", "GetPolicy", format!("{name}:{ALIAS}"), e);
                return if e.code() == Some("ResourceNotFoundException") {
                    Ok(())
                } else {
                    Err(e)
                };
            }
        };
        let doc: serde_json::Value =
            serde_json::from_str(policy.policy().unwrap_or_default()).unwrap_or_default();
        let present = doc["Statement"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["Sid"] == sid));
        if !present {
            return Ok(());
        }
        if let Err(e) = c
            .lambda
            .remove_permission()
            .function_name(name)
            .qualifier(ALIAS)
            .statement_id(sid)
            .set_revision_id(
                policy
                    .revision_id()
                    .filter(|_| !spec.emulated)
                    .map(str::to_owned),
            )
            .send()
            .await
        {
            let e = AwsError::sdk("lambda", "RemovePermission", format!("{name}:{ALIAS}"), e);
            return if e.code() == Some("ResourceNotFoundException") {
                Ok(())
            } else {
                Err(e)
            };
        }
    }
    Ok(())
}

/// Deletes HTTP API `id`; one that is gone already is fine.
pub(crate) async fn delete_api(c: &AwsClients, id: &str) -> Result<(), AwsError> {
    match c.apigateway.delete_api().api_id(id).send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = AwsError::sdk("apigateway", "DeleteApi", id, e);
            if e.code() == Some("NotFoundException") {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

/// Whether a create failed because the resource exists (created meanwhile): found.
pub(crate) fn already_exists(e: &AwsError) -> bool {
    match e.code() {
        Some("EntityAlreadyExists" | "ResourceAlreadyExistsException") => true,
        // Lambda and API Gateway also use these codes for "an update is in progress".
        Some("ResourceConflictException" | "ConflictException") => {
            e.to_string().to_ascii_lowercase().contains("already exist")
        }
        _ => false,
    }
}

fn ephemeral(spec: &LambdaSpec) -> Result<EphemeralStorage, AwsError> {
    EphemeralStorage::builder()
        .size(spec.ephemeral_storage)
        .build()
        .map_err(|e| AwsError::Invalid {
            field: "lambda.function.ephemeral_storage".into(),
            message: e.to_string(),
        })
}

fn environment(spec: &LambdaSpec) -> Environment {
    let vars: HashMap<String, String> = spec
        .environment
        .iter()
        .map(|(k, v)| (k.clone(), v.expose().to_owned()))
        .collect();
    Environment::builder().set_variables(Some(vars)).build()
}

fn vpc(spec: &LambdaSpec) -> VpcConfig {
    let (subnets, groups) = spec.vpc.clone().unwrap_or_default();
    VpcConfig::builder()
        .set_subnet_ids(Some(subnets))
        .set_security_group_ids(Some(groups))
        .build()
}

fn efs(spec: &LambdaSpec) -> Result<Vec<FileSystemConfig>, AwsError> {
    spec.efs
        .iter()
        .map(|(arn, mount)| {
            FileSystemConfig::builder()
                .arn(arn)
                .local_mount_path(mount)
                .build()
                .map_err(|e| AwsError::Invalid {
                    field: "lambda.efs".into(),
                    message: e.to_string(),
                })
        })
        .collect()
}

fn cors(c: &crate::spec::CorsSpec) -> Cors {
    Cors::builder()
        .set_allow_origins(Some(c.origins.clone()))
        .set_allow_methods(Some(c.methods.clone()))
        .set_allow_headers(Some(c.headers.clone()))
        .set_max_age(c.max_age)
        .build()
}

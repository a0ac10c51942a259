//! Desired vs observed: what a deploy must change, and the plan that says so.

use std::collections::{BTreeMap, BTreeSet};

use deployctl_core::{Action, FieldChange, Plan, ResourceChange};

use crate::error::AwsError;
use crate::observe::{API_PERMISSION_SID, Observed, URL_PERMISSION_SID};
use crate::spec::{ALIAS, EnvValue, LambdaScope, LambdaSpec};

/// The role work.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RoleWork {
    pub create: bool,
    pub trust: bool,
    pub attach: Vec<String>,
    pub detach: Vec<String>,
    pub put_inline: Vec<String>,
    pub delete_inline: Vec<String>,
}

impl RoleWork {
    fn any(&self) -> bool {
        self.create
            || self.trust
            || !self.attach.is_empty()
            || !self.detach.is_empty()
            || !self.put_inline.is_empty()
            || !self.delete_inline.is_empty()
    }
}

/// Everything a deploy must do; empty means "unchanged".
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Diff {
    pub role: RoleWork,
    pub create_function: bool,
    pub update_code: bool,
    /// Configuration fields that differ (empty: no configuration update).
    pub config_fields: Vec<FieldChange>,
    /// `Some(wanted)` when reserved concurrency must change.
    pub concurrency: Option<Option<i32>>,
    pub publish: bool,
    /// Version the alias must point at when no new version is published.
    pub alias_to: Option<String>,
    pub alias_exists: bool,
    pub create_api: bool,
    pub update_cors: bool,
    pub integration: bool,
    pub route: bool,
    pub stage: bool,
    pub api_permission: bool,
    pub delete_api: bool,
    /// Duplicates of the app's HTTP API (same name and tags) to delete.
    pub delete_extra_apis: Vec<String>,
    pub create_url: bool,
    pub update_url: bool,
    pub delete_url: bool,
    pub url_permission: bool,
    pub remove_url_permission: bool,
    pub log_group: bool,
    pub plan: Plan,
}

impl Diff {
    /// Whether $LATEST changes in this deploy.
    pub fn function_changes(&self) -> bool {
        self.create_function || self.update_code || !self.config_fields.is_empty()
    }
}

/// The image URI the function should run, given the pushed digest.
pub(crate) fn image_uri(spec: &LambdaSpec, digest: &str) -> String {
    format!("{}@{digest}", spec.image_repository)
}

/// Compares `spec` with `obs` for the part of the deployment `scope` names. `image` is the
/// wanted image URI, `None` before the build.
pub(crate) fn diff(
    spec: &LambdaSpec,
    obs: &Observed,
    image: Option<&str>,
    scope: LambdaScope,
) -> Result<Diff, AwsError> {
    let mut d = Diff {
        plan: Plan::new("lambda"),
        ..Diff::default()
    };
    if scope.converges_function() {
        role(spec, obs, &mut d)?;
        function(spec, obs, image, &mut d)?;
        version_and_alias(spec, obs, &mut d);
    } else if obs.alias.is_none() {
        return Err(AwsError::Missing(format!(
            "function `{}` has no `{ALIAS}` alias for the API to call yet: deploy the function first (`deployctl deploy lambda`, or `--update`)",
            spec.function_name
        )));
    }
    if scope.converges_api() {
        api(spec, obs, &mut d);
        url(spec, obs, &mut d);
    }
    if scope.converges_function() {
        log_group(spec, obs, &mut d);
    }
    Ok(d)
}

fn log_group(spec: &LambdaSpec, obs: &Observed, d: &mut Diff) {
    d.log_group = obs.log_group.is_none();
    push(
        &mut d.plan,
        "log group",
        &spec.log_group,
        if d.log_group {
            Action::Create
        } else {
            Action::Unchanged
        },
        if d.log_group {
            "keeps the function's logs; deleted by destroy"
        } else {
            "exists"
        },
    );
}

fn push(plan: &mut Plan, kind: &str, name: &str, action: Action, reason: &str) {
    plan.push(ResourceChange::new(kind, name, action, reason));
}

fn role(spec: &LambdaSpec, obs: &Observed, d: &mut Diff) -> Result<(), AwsError> {
    let name = &spec.role.name;
    if !spec.role.managed {
        let Some(found) = &obs.role else {
            return Err(AwsError::Role {
                role: name.clone(),
                reason: "it does not exist (lambda.iam.role names a role deployctl never creates)"
                    .into(),
            });
        };
        if !found.trusts_lambda {
            return Err(AwsError::Role {
                role: name.clone(),
                reason: "its trust policy does not allow lambda.amazonaws.com to assume it".into(),
            });
        }
        push(
            &mut d.plan,
            "iam role",
            name,
            Action::Unchanged,
            "named in lambda.iam.role; used as is",
        );
        return Ok(());
    }
    let Some(found) = &obs.role else {
        d.role = RoleWork {
            create: true,
            attach: spec.role.policies.clone(),
            put_inline: spec.role.inline_policies.keys().cloned().collect(),
            ..RoleWork::default()
        };
        push(
            &mut d.plan,
            "iam role",
            name,
            Action::Create,
            "execution role trusted by lambda.amazonaws.com",
        );
        return Ok(());
    };
    if !found.managed {
        return Err(AwsError::NotManaged {
            kind: "IAM role",
            name: name.clone(),
        });
    }
    let want: BTreeSet<&String> = spec.role.policies.iter().collect();
    let have: BTreeSet<&String> = found.policies.iter().collect();
    d.role.trust = !found.trusts_lambda;
    d.role.attach = want.difference(&have).map(|s| (*s).clone()).collect();
    d.role.detach = have.difference(&want).map(|s| (*s).clone()).collect();
    for (k, v) in &spec.role.inline_policies {
        if found.inline.get(k) != Some(v) {
            d.role.put_inline.push(k.clone());
        }
    }
    d.role.delete_inline = found
        .inline
        .keys()
        .filter(|k| !spec.role.inline_policies.contains_key(*k))
        .cloned()
        .collect();
    let mut fields = Vec::new();
    if d.role.trust {
        fields.push(FieldChange::new(
            "trust policy",
            None,
            Some("lambda.amazonaws.com".into()),
        ));
    }
    for p in &d.role.attach {
        fields.push(FieldChange::new("policies", None, Some(p.clone())));
    }
    for p in &d.role.detach {
        fields.push(FieldChange::new("policies", Some(p.clone()), None));
    }
    for p in &d.role.put_inline {
        fields.push(FieldChange::new(
            format!("inline_policies.{p}"),
            found.inline.get(p).map(|v| v.to_string()),
            spec.role.inline_policies.get(p).map(|v| v.to_string()),
        ));
    }
    for p in &d.role.delete_inline {
        fields.push(FieldChange::new(
            format!("inline_policies.{p}"),
            Some("(set)".into()),
            None,
        ));
    }
    let action = if d.role.any() {
        Action::Update { fields }
    } else {
        Action::Unchanged
    };
    push(&mut d.plan, "iam role", name, action, "execution role");
    Ok(())
}

fn function(
    spec: &LambdaSpec,
    obs: &Observed,
    image: Option<&str>,
    d: &mut Diff,
) -> Result<(), AwsError> {
    let name = &spec.function_name;
    let Some(f) = &obs.function else {
        d.create_function = true;
        push(
            &mut d.plan,
            "lambda function",
            name,
            Action::Create,
            "container image function",
        );
        concurrency(spec, obs, d);
        return Ok(());
    };
    if !f.managed {
        return Err(AwsError::NotManaged {
            kind: "Lambda function",
            name: name.clone(),
        });
    }
    let mut fields = Vec::new();
    match image {
        Some(want) if f.image_uri.as_deref() == Some(want) => {}
        Some(want) => {
            d.update_code = true;
            fields.push(FieldChange::new(
                "image",
                f.image_uri.clone(),
                Some(want.to_owned()),
            ));
        }
        None => {
            d.update_code = true;
            fields.push(FieldChange::new(
                "image",
                f.image_uri.clone(),
                Some("(the image this deploy builds)".into()),
            ));
        }
    }
    if f.architecture.as_deref() != Some(spec.architecture) {
        d.update_code = true;
        fields.push(FieldChange::new(
            "architecture",
            f.architecture.clone(),
            Some(spec.architecture.to_owned()),
        ));
    }
    let mut config = Vec::new();
    let num = |field: &str, have: Option<i32>, want: i32, out: &mut Vec<FieldChange>| {
        if have != Some(want) {
            out.push(FieldChange::new(
                field,
                have.map(|v| v.to_string()),
                Some(want.to_string()),
            ));
        }
    };
    num("memory", f.memory, spec.memory, &mut config);
    num("timeout", f.timeout, spec.timeout, &mut config);
    num(
        "ephemeral_storage",
        f.ephemeral_storage,
        spec.ephemeral_storage,
        &mut config,
    );
    env_fields(&spec.environment, &f.environment, &mut config);
    let role_arn = obs
        .role
        .as_ref()
        .map_or_else(|| spec.role_arn(), |r| r.arn.clone());
    if f.role.as_deref() != Some(role_arn.as_str()) {
        config.push(FieldChange::new("role", f.role.clone(), Some(role_arn)));
    }
    let want_vpc = spec.vpc.clone().map(|(mut s, mut g)| {
        s.sort();
        g.sort();
        (s, g)
    });
    if f.vpc != want_vpc {
        let show = |v: &Option<(Vec<String>, Vec<String>)>| {
            v.as_ref()
                .map(|(s, g)| format!("subnets {} / security groups {}", s.join(","), g.join(",")))
        };
        config.push(FieldChange::new("vpc", show(&f.vpc), show(&want_vpc)));
    }
    if f.efs != spec.efs {
        let show = |v: &Option<(String, String)>| v.as_ref().map(|(a, m)| format!("{a} at {m}"));
        config.push(FieldChange::new("efs", show(&f.efs), show(&spec.efs)));
    }
    d.config_fields = config.clone();
    fields.extend(config);
    let action = if fields.is_empty() {
        Action::Unchanged
    } else {
        Action::Update { fields }
    };
    push(
        &mut d.plan,
        "lambda function",
        name,
        action,
        "container image function",
    );

    concurrency(spec, obs, d);
    Ok(())
}

fn concurrency(spec: &LambdaSpec, obs: &Observed, d: &mut Diff) {
    let name = &spec.function_name;
    if obs.concurrency != spec.reserved_concurrency {
        d.concurrency = Some(spec.reserved_concurrency);
        push(
            &mut d.plan,
            "reserved concurrency",
            name,
            if obs.function.is_none() {
                Action::Create
            } else {
                Action::Update {
                    fields: vec![FieldChange::new(
                        "reserved_concurrency",
                        obs.concurrency.map(|v| v.to_string()),
                        spec.reserved_concurrency.map(|v| v.to_string()),
                    )],
                }
            },
            "function concurrency",
        );
    }
}

fn env_fields(
    want: &BTreeMap<String, EnvValue>,
    have: &BTreeMap<String, String>,
    out: &mut Vec<FieldChange>,
) {
    for (k, v) in want {
        match have.get(k) {
            Some(h) if h == v.expose() => {}
            h => out.push(match v {
                EnvValue::Secret(_) => FieldChange::sensitive(format!("environment.{k}")),
                EnvValue::Plain(p) => {
                    FieldChange::new(format!("environment.{k}"), h.cloned(), Some(p.clone()))
                }
            }),
        }
    }
    for k in have.keys().filter(|k| !want.contains_key(*k)) {
        // The old value may have been a secret: never show it.
        out.push(FieldChange::new(
            format!("environment.{k}"),
            Some("(set)".into()),
            None,
        ));
    }
}

fn version_and_alias(spec: &LambdaSpec, obs: &Observed, d: &mut Diff) {
    let alias_name = format!("{}:{ALIAS}", spec.function_name);
    d.alias_exists = obs.alias.is_some();
    let current = if d.function_changes() {
        None
    } else {
        // A published version with exactly $LATEST's code and configuration.
        let latest = obs.function.as_ref().map(|f| f.fingerprint.as_str());
        obs.versions
            .iter()
            .rev()
            .find(|(_, fp)| Some(fp.as_str()) == latest)
            .map(|(n, _)| n.to_string())
    };
    match &current {
        None => {
            d.publish = true;
            push(
                &mut d.plan,
                "lambda version",
                &spec.function_name,
                Action::Create,
                "a version is published per deploy",
            );
        }
        Some(v) => push(
            &mut d.plan,
            "lambda version",
            &format!("{}:{v}", spec.function_name),
            Action::Unchanged,
            "published",
        ),
    }
    let have = obs.alias.as_ref().map(|a| a.version.clone());
    let action = match (&have, &current) {
        (None, _) => Action::Create,
        (Some(h), Some(c)) if h == c => Action::Unchanged,
        (Some(h), c) => Action::Update {
            fields: vec![FieldChange::new(
                "version",
                Some(h.clone()),
                Some(c.clone().unwrap_or_else(|| "(new version)".into())),
            )],
        },
    };
    if action.is_change() {
        d.alias_to = current;
    }
    let moves = action.is_change();
    push(
        &mut d.plan,
        "lambda alias",
        &alias_name,
        action,
        if moves {
            "moves to the deployed version"
        } else {
            "points at the deployed version"
        },
    );
}

fn api(spec: &LambdaSpec, obs: &Observed, d: &mut Diff) {
    d.delete_extra_apis.clone_from(&obs.extra_apis);
    for id in &obs.extra_apis {
        push(
            &mut d.plan,
            "http api",
            id,
            Action::Delete,
            "a duplicate with this app's name and tags (concurrent deploys of an older deployctl)",
        );
    }
    let Some(want) = &spec.api else {
        if let Some(found) = &obs.api {
            d.delete_api = true;
            push(
                &mut d.plan,
                "http api",
                &found.id,
                Action::Delete,
                "lambda.api_gateway.enabled is false",
            );
        }
        return;
    };
    let alias_arn = spec.alias_arn();
    let Some(found) = &obs.api else {
        d.create_api = true;
        d.integration = true;
        d.route = true;
        d.stage = true;
        d.api_permission = true;
        for (kind, name, reason) in [
            (
                "http api",
                want.name.as_str(),
                "HTTP API in front of the alias",
            ),
            (
                "api integration",
                alias_arn.as_str(),
                "AWS_PROXY, payload format 2.0",
            ),
            (
                "api route",
                "$default",
                "every request goes to the function",
            ),
            ("api stage", want.stage.as_str(), "auto-deploy"),
            (
                "lambda permission",
                API_PERMISSION_SID,
                "lets the API invoke the alias",
            ),
        ] {
            push(&mut d.plan, kind, name, Action::Create, reason);
        }
        return;
    };
    let norm = |c: &Option<crate::spec::CorsSpec>| {
        c.clone().map(|mut c| {
            c.origins.sort();
            c.methods.sort();
            c.headers.sort();
            c
        })
    };
    d.update_cors = norm(&found.cors) != norm(&want.cors);
    let show_cors = |c: &Option<crate::spec::CorsSpec>| {
        c.as_ref().map(|c| {
            format!(
                "origins {} methods {} headers {}{}",
                c.origins.join(","),
                c.methods.join(","),
                c.headers.join(","),
                c.max_age
                    .map(|m| format!(" max-age {m}"))
                    .unwrap_or_default()
            )
        })
    };
    push(
        &mut d.plan,
        "http api",
        &want.name,
        if d.update_cors {
            Action::Update {
                fields: vec![FieldChange::new(
                    "cors",
                    show_cors(&found.cors),
                    show_cors(&want.cors),
                )],
            }
        } else {
            Action::Unchanged
        },
        found.endpoint.as_deref().unwrap_or("HTTP API"),
    );
    // Only the fields that differ: an existing integration is updated in place.
    let integration_fields: Vec<FieldChange> = match &found.integration {
        None => Vec::new(),
        Some((_, uri, payload)) => [
            ("uri", uri, alias_arn.as_str()),
            ("payload_format_version", payload, "2.0"),
        ]
        .into_iter()
        .filter(|(_, have, want)| have.as_str() != *want)
        .map(|(field, have, want)| FieldChange::new(field, Some(have.clone()), Some(want.into())))
        .collect(),
    };
    d.integration = found.integration.is_none() || !integration_fields.is_empty();
    push(
        &mut d.plan,
        "api integration",
        &alias_arn,
        if found.integration.is_none() {
            Action::Create
        } else if d.integration {
            Action::Update {
                fields: integration_fields,
            }
        } else {
            Action::Unchanged
        },
        "AWS_PROXY, payload format 2.0",
    );
    // An integration updated in place keeps its id, so a route already targeting it stays;
    // a new integration gets a new id the route must be pointed at.
    let target = found
        .integration
        .as_ref()
        .map(|(id, _, _)| format!("integrations/{id}"));
    d.route =
        found.integration.is_none() || found.route.as_ref().map(|(_, t)| t) != target.as_ref();
    push(
        &mut d.plan,
        "api route",
        "$default",
        if found.route.is_none() {
            Action::Create
        } else if d.route {
            Action::Update {
                fields: vec![FieldChange::new(
                    "target",
                    found.route.as_ref().map(|(_, t)| t.clone()),
                    Some("the integration".into()),
                )],
            }
        } else {
            Action::Unchanged
        },
        "every request goes to the function",
    );
    let want_stage = (true, want.throttling);
    d.stage = found.stage != Some(want_stage);
    let show = |s: &(bool, Option<(f64, i32)>)| {
        format!(
            "auto-deploy {}{}",
            s.0,
            s.1.map(|(r, b)| format!(", throttling {r}/s burst {b}"))
                .unwrap_or_default()
        )
    };
    push(
        &mut d.plan,
        "api stage",
        &want.stage,
        match &found.stage {
            None => Action::Create,
            Some(have) if d.stage => Action::Update {
                fields: vec![FieldChange::new(
                    "settings",
                    Some(show(have)),
                    Some(show(&want_stage)),
                )],
            },
            Some(_) => Action::Unchanged,
        },
        "auto-deploy",
    );
    let source = found.source_arn(spec);
    d.api_permission = obs.permissions.get(API_PERMISSION_SID) != Some(&source);
    push(
        &mut d.plan,
        "lambda permission",
        API_PERMISSION_SID,
        if d.api_permission {
            Action::Create
        } else {
            Action::Unchanged
        },
        "lets the API invoke the alias",
    );
}

fn url(spec: &LambdaSpec, obs: &Observed, d: &mut Diff) {
    let name = format!("{}:{ALIAS}", spec.function_name);
    let has_url_permission = obs.permissions.contains_key(URL_PERMISSION_SID);
    match (&spec.function_url, &obs.url) {
        (None, None) => {}
        (None, Some(_)) => {
            d.delete_url = true;
            d.remove_url_permission = has_url_permission;
            push(
                &mut d.plan,
                "function url",
                &name,
                Action::Delete,
                "lambda.function_url.enabled is false",
            );
        }
        (Some(auth), found) => {
            let action = match found {
                None => {
                    d.create_url = true;
                    Action::Create
                }
                Some((_, have)) if have != auth => {
                    d.update_url = true;
                    Action::Update {
                        fields: vec![FieldChange::new(
                            "auth_type",
                            Some(have.clone()),
                            Some(auth.clone()),
                        )],
                    }
                }
                Some(_) => Action::Unchanged,
            };
            push(
                &mut d.plan,
                "function url",
                &name,
                action,
                "HTTPS endpoint of the alias",
            );
            let public = auth == "NONE";
            d.url_permission = public && !has_url_permission;
            d.remove_url_permission = !public && has_url_permission;
            if d.url_permission || d.remove_url_permission {
                push(
                    &mut d.plan,
                    "lambda permission",
                    URL_PERMISSION_SID,
                    if d.url_permission {
                        Action::Create
                    } else {
                        Action::Delete
                    },
                    "public invoke through the function URL",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;

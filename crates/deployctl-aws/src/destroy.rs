//! Removing what deployctl created, and only that (checked by tags).

use deployctl_core::{
    Action, Cancellation, Event, EventKind, EventSink, Plan, ResourceChange, Stage,
};

use crate::apply::{delete_api, remove_statements};
use crate::clients::AwsClients;
use crate::error::AwsError;
use crate::observe::{self, Observed};
use crate::spec::{ALIAS, LambdaSpec};
use crate::target::{SIDS, delete};

fn left(kind: &str, name: &str, reason: &str) -> ResourceChange {
    ResourceChange::new(kind, name, Action::Unchanged, reason)
}

/// What destroy would delete, with the state it was computed from.
pub(crate) async fn plan(c: &AwsClients, spec: &LambdaSpec) -> Result<(Plan, Observed), AwsError> {
    let obs = observe::observe(c, spec).await?;
    let mut p = Plan::new("lambda");
    let fname = &spec.function_name;
    let function_ours = obs.function.as_ref().is_some_and(|f| f.managed);
    if function_ours {
        for sid in SIDS {
            if obs.permissions.contains_key(sid) {
                p.push(delete(
                    "lambda permission",
                    sid,
                    "statement added by deployctl",
                ));
            }
        }
    }
    if let Some(api) = &obs.api {
        p.push(delete(
            "http api",
            &api.id,
            "with its stage, route and integration",
        ));
    }
    for id in &obs.extra_apis {
        p.push(delete(
            "http api",
            id,
            "a duplicate with this app's name and tags (concurrent deploys of an older deployctl)",
        ));
    }
    match &obs.function {
        Some(f) if f.managed => {
            if obs.url.is_some() {
                p.push(delete(
                    "function url",
                    &format!("{fname}:{ALIAS}"),
                    "created by deployctl",
                ));
            }
            if obs.alias.is_some() {
                p.push(delete(
                    "lambda alias",
                    &format!("{fname}:{ALIAS}"),
                    "created by deployctl",
                ));
            }
            p.push(delete(
                "lambda function",
                fname,
                &format!("and its {} published version(s)", obs.versions.len()),
            ));
        }
        Some(_) => p.push(left(
            "lambda function",
            fname,
            "not created by deployctl (no deployctl:managed-by tag); left alone",
        )),
        None => {}
    }
    match &obs.role {
        Some(r) if r.managed => p.push(delete(
            "iam role",
            &spec.role.name,
            "created by deployctl, with its policy attachments",
        )),
        Some(_) => p.push(left(
            "iam role",
            &spec.role.name,
            if spec.role.managed {
                "not created by deployctl; left alone"
            } else {
                "named in lambda.iam.role; never deleted"
            },
        )),
        None => {}
    }
    match obs.log_group {
        Some(true) => p.push(delete("log group", &spec.log_group, "created by deployctl")),
        Some(false) => p.push(left(
            "log group",
            &spec.log_group,
            "not created by deployctl; left alone",
        )),
        None => {}
    }
    Ok((p, obs))
}

/// Deletes what [`plan`] lists; a second run finds nothing and deletes nothing.
pub(crate) async fn run(
    c: &AwsClients,
    spec: &LambdaSpec,
    events: &dyn EventSink,
    cancel: &Cancellation,
) -> Result<Plan, AwsError> {
    let (plan, obs) = plan(c, spec).await?;
    let say = |text: String| {
        events.emit(Event::now(
            Stage::Destroy("lambda".into()),
            EventKind::Message { text },
        ));
    };
    let check = |next: &str| {
        if cancel.is_cancelled() {
            Err(AwsError::Cancelled(next.to_owned()))
        } else {
            Ok(())
        }
    };
    let gone = |e: &AwsError| {
        matches!(
            e.code(),
            Some("ResourceNotFoundException" | "NoSuchEntity" | "NotFoundException")
        )
    };
    let fname = spec.function_name.as_str();
    let function_ours = obs.function.as_ref().is_some_and(|f| f.managed);
    if function_ours {
        for sid in SIDS.iter().filter(|s| obs.permissions.contains_key(**s)) {
            check("removing permissions")?;
            // Every statement with the id, duplicates included.
            remove_statements(c, spec, sid).await?;
            say(format!("removed permission {sid}"));
        }
    }
    // Every API with the app's name and tags, duplicates included.
    for id in obs.api.iter().map(|a| &a.id).chain(&obs.extra_apis) {
        check("deleting the HTTP API")?;
        delete_api(c, id).await?;
        say(format!("deleted HTTP API {id}"));
    }
    if function_ours {
        if obs.url.is_some() {
            check("deleting the function URL")?;
            if let Err(e) = c
                .lambda
                .delete_function_url_config()
                .function_name(fname)
                .qualifier(ALIAS)
                .send()
                .await
            {
                let e = AwsError::sdk("lambda", "DeleteFunctionUrlConfig", fname, e);
                if !gone(&e) {
                    return Err(e);
                }
            }
            say(format!("deleted the function URL of {fname}:{ALIAS}"));
        }
        if obs.alias.is_some() {
            check("deleting the alias")?;
            if let Err(e) = c
                .lambda
                .delete_alias()
                .function_name(fname)
                .name(ALIAS)
                .send()
                .await
            {
                let e = AwsError::sdk("lambda", "DeleteAlias", fname, e);
                if !gone(&e) {
                    return Err(e);
                }
            }
            say(format!("deleted alias {fname}:{ALIAS}"));
        }
        check("deleting the function")?;
        if let Err(e) = c.lambda.delete_function().function_name(fname).send().await {
            let e = AwsError::sdk("lambda", "DeleteFunction", fname, e);
            if !gone(&e) {
                return Err(e);
            }
        }
        say(format!("deleted function {fname} and all its versions"));
    }
    if let Some(role) = obs.role.as_ref().filter(|r| r.managed) {
        check("deleting the IAM role")?;
        let name = spec.role.name.as_str();
        for arn in &role.policies {
            if let Err(e) = c
                .iam
                .detach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send()
                .await
            {
                let e = AwsError::sdk("iam", "DetachRolePolicy", name, e);
                if !gone(&e) {
                    return Err(e);
                }
            }
        }
        for policy in role.inline.keys() {
            if let Err(e) = c
                .iam
                .delete_role_policy()
                .role_name(name)
                .policy_name(policy)
                .send()
                .await
            {
                let e = AwsError::sdk("iam", "DeleteRolePolicy", name, e);
                if !gone(&e) {
                    return Err(e);
                }
            }
        }
        if let Err(e) = c.iam.delete_role().role_name(name).send().await {
            let e = AwsError::sdk("iam", "DeleteRole", name, e);
            if !gone(&e) {
                return Err(e);
            }
        }
        say(format!("deleted IAM role {name}"));
    }
    if obs.log_group == Some(true) {
        check("deleting the log group")?;
        if let Err(e) = c
            .logs
            .delete_log_group()
            .log_group_name(&spec.log_group)
            .send()
            .await
        {
            let e = AwsError::sdk("logs", "DeleteLogGroup", &spec.log_group, e);
            if !gone(&e) {
                return Err(e);
            }
        }
        say(format!("deleted log group {}", spec.log_group));
    }
    Ok(plan)
}

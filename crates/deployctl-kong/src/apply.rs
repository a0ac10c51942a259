//! The only mutating calls: PUT upserts by ID in creation order, the consumer's key
//! (generated here, once), then deletes of tagged entities no longer wanted. `destroy`
//! deletes every tagged entity, dependants first.

use deployctl_core::{Action, Plan, ResourceChange, Secret};
use serde_json::json;

use crate::admin::AdminApi;
use crate::desired::{Desired, Kind, tag};
use crate::diff::{GatewayPlan, KeyAction};
use crate::error::KongError;
use crate::observe::observe;

/// Options of [`apply`].
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct ApplyOptions {
    /// Replace the consumer's key (`--rotate-key`).
    pub rotate_key: bool,
}

impl ApplyOptions {
    /// With `--rotate-key` set or not.
    pub fn rotate_key(mut self, yes: bool) -> Self {
        self.rotate_key = yes;
        self
    }
}

/// What [`apply`] did.
#[derive(Debug)]
#[non_exhaustive]
pub struct Applied {
    /// Mutating requests made.
    pub mutations: usize,
    /// The consumer's new key, when one was generated (shown once; a `Secret`).
    pub new_key: Option<Secret>,
}

/// Carries out `plan` (made by [`crate::diff`] from `desired`).
pub async fn apply(
    api: &AdminApi,
    desired: &Desired,
    plan: &GatewayPlan,
) -> Result<Applied, KongError> {
    let mut mutations = 0;
    for e in &plan.upserts {
        let path = format!("/{}/{}", e.kind.collection(), e.id);
        api.put(&path, &e.body).await?;
        mutations += 1;
    }
    let mut new_key = None;
    if let (Some(k), KeyAction::Create | KeyAction::Rotate) = (&desired.key, plan.key) {
        let key = generate_key()?;
        api.put(
            &format!("/consumers/{}/key-auth/{}", k.consumer_id, k.id),
            &json!({ "key": key.expose(), "tags": [desired.tag] }),
        )
        .await
        .map_err(|e| scrub(e, &key))?;
        mutations += 1;
        new_key = Some(key);
    }
    for (kind, id, consumer) in &plan.deletes {
        api.delete(&delete_path(*kind, id, consumer.as_deref()))
            .await?;
        mutations += 1;
    }
    Ok(Applied { mutations, new_key })
}

/// Deletes every entity tagged `deployctl:<app>` (never anything untagged), dependants
/// first; with `dry_run`, only says what it would delete. A second destroy deletes nothing.
pub async fn destroy(api: &AdminApi, app: &str, dry_run: bool) -> Result<Plan, KongError> {
    let observed = observe(api, app).await?;
    let tag = tag(app);
    let mut plan = Plan::new("kong");
    for kind in [
        Kind::Plugin,
        Kind::Route,
        Kind::KeyAuth,
        Kind::Consumer,
        Kind::Service,
    ] {
        for (id, have) in observed.of(kind) {
            let name = have["name"]
                .as_str()
                .or_else(|| have["username"].as_str())
                .unwrap_or(id);
            plan.push(ResourceChange::new(
                kind.label(),
                name,
                Action::Delete,
                format!("tagged {tag}"),
            ));
            if !dry_run {
                api.delete(&delete_path(kind, id, have["consumer"]["id"].as_str()))
                    .await?;
            }
        }
    }
    Ok(plan)
}

/// Kong's messages can quote the value of a unique field: the key never leaves in one.
fn scrub(e: KongError, key: &Secret) -> KongError {
    match e {
        KongError::Admin {
            method,
            path,
            status,
            message,
        } => KongError::Admin {
            method,
            path,
            status,
            message: message.replace(key.expose(), deployctl_core::REDACTED),
        },
        other => other,
    }
}

fn delete_path(kind: Kind, id: &str, consumer: Option<&str>) -> String {
    match (kind, consumer) {
        (Kind::KeyAuth, Some(c)) => format!("/consumers/{c}/key-auth/{id}"),
        _ => format!("/{}/{id}", kind.collection()),
    }
}

/// 32 random bytes from the process's rustls provider (aws-lc-rs), as hex.
pub(crate) fn generate_key() -> Result<Secret, KongError> {
    let mut bytes = [0u8; 32];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| KongError::Invalid {
            field: "kong.consumer.create_key".into(),
            message: "the system's random number generator failed".into(),
        })?;
    Ok(Secret::new(
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_long_and_different() {
        let a = super::generate_key().expect("key");
        let b = super::generate_key().expect("key");
        assert_eq!(a.expose().len(), 64);
        assert_ne!(a.expose(), b.expose());
    }
}

//! The deploy lock on a cluster: a `coordination.k8s.io/v1` Lease `<app>-deployctl-lock` in
//! the app's namespace, as Kubernetes' own leader election keeps one.
//!
//! Atomicity comes from the API server: a free lock is taken by `create` (of two creators
//! one gets `409 AlreadyExists`), an expired one by `replace` under the `resourceVersion`
//! that was read (of two takers one gets `409 Conflict`), and the holder releases it by a
//! `delete` with that `resourceVersion` as a precondition, so nobody frees a lock somebody
//! else took in between. `spec.holderIdentity` is the run's id; the annotation
//! `deployctl/lock-holder` says who that is for people (`kubectl get lease -o yaml`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use deployctl_core::{Acquire, DeployLock, LockHolder, LockOwner, StageError};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use serde_json::json;

use crate::cluster::Cluster;
use crate::error::{Error, api_err};
use crate::render::MANAGED_BY;

/// The annotation naming the holder for people.
const WHO_ANNOTATION: &str = "deployctl/lock-holder";
/// How often a take is tried again after losing a race to another taker.
const RACES: usize = 5;

/// The Lease that locks deploys of one app in one namespace.
#[derive(Clone)]
pub(crate) struct LeaseLock {
    cluster: Cluster,
}

impl LeaseLock {
    pub fn new(cluster: Cluster) -> Self {
        Self { cluster }
    }

    fn name(&self) -> String {
        format!("{}-deployctl-lock", self.cluster.app)
    }

    fn api(&self) -> Api<Lease> {
        self.cluster.api()
    }

    async fn read(&self) -> Result<Option<Lease>, Error> {
        self.api()
            .get_opt(&self.name())
            .await
            .map_err(|e| api_err("get", format!("Lease/{}", self.name()), e))
    }

    fn lease(&self, owner: &LockOwner, ttl: Duration, acquired_ms: u64) -> Result<Lease, Error> {
        let now = now_ms();
        serde_json::from_value(json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name(),
                "namespace": self.cluster.namespace,
                "labels": {
                    "app.kubernetes.io/name": self.cluster.app,
                    "app.kubernetes.io/managed-by": MANAGED_BY,
                },
                "annotations": { WHO_ANNOTATION: owner.who },
            },
            "spec": {
                "holderIdentity": owner.id,
                "leaseDurationSeconds": i32::try_from(ttl.as_secs().max(1)).unwrap_or(i32::MAX),
                "acquireTime": micro(acquired_ms),
                "renewTime": micro(now),
            },
        }))
        .map_err(|e| Error::Missing(format!("cannot build the lock Lease: {e}")))
    }

    async fn create(&self, owner: &LockOwner, ttl: Duration) -> Result<bool, Error> {
        let lease = self.lease(owner, ttl, now_ms())?;
        match self.api().create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(api_err("create", format!("Lease/{}", self.name()), e)),
        }
    }

    /// Replaces `seen` (under its resourceVersion) with `owner` holding a fresh lease;
    /// `false` when somebody changed it first.
    async fn replace(
        &self,
        seen: &Lease,
        owner: &LockOwner,
        ttl: Duration,
        acquired_ms: u64,
    ) -> Result<bool, Error> {
        let mut lease = self.lease(owner, ttl, acquired_ms)?;
        lease.metadata.resource_version = seen.metadata.resource_version.clone();
        match self
            .api()
            .replace(&self.name(), &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(false),
            Err(e) => Err(api_err("replace", format!("Lease/{}", self.name()), e)),
        }
    }

    async fn delete(&self, seen: &Lease) -> Result<(), Error> {
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: seen.metadata.resource_version.clone(),
                uid: seen.metadata.uid.clone(),
            }),
            ..DeleteParams::default()
        };
        match self.api().delete(&self.name(), &dp).await {
            Ok(_) => Ok(()),
            // Gone already, or changed since it was read (someone else holds it now).
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(api_err("delete", format!("Lease/{}", self.name()), e)),
        }
    }
}

/// The holder a Lease records; `None` when released (no holder identity).
fn holder_of(lease: &Lease) -> Option<LockHolder> {
    let spec = lease.spec.as_ref()?;
    let id = spec.holder_identity.clone().filter(|h| !h.is_empty())?;
    let who = lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(WHO_ANNOTATION))
        .cloned()
        .unwrap_or_else(|| id.clone());
    let ms = |t: &Option<MicroTime>| {
        t.as_ref()
            .map(|t| u64::try_from(t.0.as_millisecond()).unwrap_or(0))
    };
    let renewed = ms(&spec.renew_time).or(ms(&spec.acquire_time)).unwrap_or(0);
    let acquired = ms(&spec.acquire_time).unwrap_or(renewed);
    let expires = spec
        .lease_duration_seconds
        .map(|s| renewed + u64::try_from(s).unwrap_or(0) * 1000);
    Some(LockHolder::new(id, who, acquired, expires))
}

fn micro(ms: u64) -> MicroTime {
    MicroTime(
        k8s_openapi::jiff::Timestamp::from_millisecond(i64::try_from(ms).unwrap_or(i64::MAX))
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn stage_err(e: Error) -> StageError {
    e.into()
}

#[async_trait]
impl DeployLock for LeaseLock {
    fn describe(&self) -> String {
        format!(
            "Lease {} in namespace {}",
            self.name(),
            self.cluster.namespace
        )
    }

    async fn try_acquire(&self, owner: &LockOwner, ttl: Duration) -> Result<Acquire, StageError> {
        // The Lease lives in the app's namespace, which a first deploy creates.
        self.cluster.ensure_namespace().await.map_err(stage_err)?;
        for _ in 0..RACES {
            let Some(seen) = self.read().await.map_err(stage_err)? else {
                if self.create(owner, ttl).await.map_err(stage_err)? {
                    return Ok(Acquire::Taken);
                }
                continue;
            };
            let taken = match holder_of(&seen) {
                Some(h) if h.id == owner.id => {
                    self.replace(&seen, owner, ttl, h.acquired_at_ms).await
                }
                Some(h) if !h.expired(now_ms()) => return Ok(Acquire::Held(h)),
                // Released, or its holder stopped renewing: take it over.
                _ => self.replace(&seen, owner, ttl, now_ms()).await,
            };
            if taken.map_err(stage_err)? {
                return Ok(Acquire::Taken);
            }
        }
        Err(Error::Missing(format!(
            "could not take Lease/{}: it changed under every attempt ({RACES} tries)",
            self.name()
        ))
        .into())
    }

    async fn renew(&self, owner: &LockOwner, ttl: Duration) -> Result<(), StageError> {
        for _ in 0..RACES {
            let seen = self.read().await.map_err(stage_err)?;
            let holder = seen.as_ref().and_then(holder_of);
            let (Some(seen), Some(h)) = (seen, holder) else {
                return Err(Error::Missing(format!("Lease/{} was deleted", self.name())).into());
            };
            if h.id != owner.id {
                return Err(Error::Missing(format!(
                    "Lease/{} is now held by {}",
                    self.name(),
                    h.who
                ))
                .into());
            }
            if self
                .replace(&seen, owner, ttl, h.acquired_at_ms)
                .await
                .map_err(stage_err)?
            {
                return Ok(());
            }
        }
        Err(Error::Missing(format!(
            "could not renew Lease/{}: it changed under every attempt",
            self.name()
        ))
        .into())
    }

    async fn release(&self, owner: &LockOwner) -> Result<(), StageError> {
        let Some(seen) = self.read().await.map_err(stage_err)? else {
            return Ok(());
        };
        if holder_of(&seen).is_some_and(|h| h.id == owner.id) {
            self.delete(&seen).await.map_err(stage_err)?;
        }
        Ok(())
    }

    async fn holder(&self) -> Result<Option<LockHolder>, StageError> {
        Ok(self
            .read()
            .await
            .map_err(stage_err)?
            .as_ref()
            .and_then(holder_of))
    }

    async fn break_lock(&self) -> Result<Option<LockHolder>, StageError> {
        let Some(seen) = self.read().await.map_err(stage_err)? else {
            return Ok(None);
        };
        self.delete(&seen).await.map_err(stage_err)?;
        Ok(holder_of(&seen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(spec: serde_json::Value) -> Lease {
        serde_json::from_value(json!({
            "metadata": {"name": "web-deployctl-lock", "annotations": {WHO_ANNOTATION: "ana@ci (pid 7)"}},
            "spec": spec,
        }))
        .unwrap_or_default()
    }

    #[test]
    fn reads_the_holder_and_its_expiry_from_the_lease() {
        let h = holder_of(&lease(json!({
            "holderIdentity": "run-1",
            "leaseDurationSeconds": 60,
            "acquireTime": "2026-12-02T10:00:00.000000Z",
            "renewTime": "2026-12-02T10:00:40.500000Z",
        })));
        let h = h.unwrap_or_else(|| panic!("a holder"));
        assert_eq!(h.id, "run-1");
        assert_eq!(h.who, "ana@ci (pid 7)");
        assert_eq!(h.acquired_at_ms, 1_796_205_600_000);
        assert_eq!(h.expires_at_ms, Some(1_796_205_600_000 + 100_500));
    }

    #[test]
    fn a_lease_without_holder_is_free() {
        assert_eq!(holder_of(&lease(json!({"leaseDurationSeconds": 60}))), None);
        assert_eq!(holder_of(&lease(json!({"holderIdentity": ""}))), None);
    }

    #[test]
    fn times_round_trip_through_micro_time() {
        let t = micro(1_796_205_600_123);
        assert_eq!(t.0.as_millisecond(), 1_796_205_600_123);
    }
}

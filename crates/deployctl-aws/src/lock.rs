//! The deploy lock of a Lambda deployment, in SSM Parameter Store.
//!
//! Parameter Store has one atomic primitive: `PutParameter` with `Overwrite=false` creates a
//! name or fails with `ParameterAlreadyExists`. It has no compare-and-swap, so a lock is a
//! series of *epochs*, one parameter each, under one path:
//!
//! ```text
//! /deployctl/locks/<function>/lambda/<epoch>   {"id","who","acquired_ms","expires_ms"}
//! ```
//!
//! The holder is the highest epoch. Taking a free lock creates epoch 1; taking over an
//! expired one creates the next epoch (of two takers exactly one creates it), then deletes
//! the older ones; releasing deletes the holder's epoch; breaking deletes them all. A new
//! epoch is only ours once a read *after* creating it shows no other unexpired holder: two
//! takers that both created an epoch (one read an older state) cannot both pass that check,
//! and the loser deletes its epoch again.
//!
//! A renewal overwrites the holder's own epoch (no conditional write exists): it is refused
//! once the lease has (nearly) run out, when somebody may be taking it over, and it is
//! checked by a read afterwards. Expiry compares wall clocks of different machines; the
//! lease (60 s by default, renewed every 20 s) is far longer than any sane clock skew.
//!
//! Names follow Parameter Store's rules: letters, digits, `-`, `_`, `.` and `/`; the first
//! level is not `aws` or `ssm`; at most 15 levels. A Lambda function name (the lock's key:
//! every resource of the deployment is named after it) only has letters, digits, `-`, `_`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_ssm::types::ParameterType;
use deployctl_core::{Acquire, DeployLock, ErrorKind, LockHolder, LockOwner, StageError};

use crate::error::AwsError;

/// Where every deployctl lock parameter lives; calls on names under it are lock bookkeeping
/// (see [`crate::Call::is_mutating`]).
pub const LOCK_ROOT: &str = "/deployctl/locks";

/// How often a taker re-reads after a lost race before giving up for this attempt.
const RACES: usize = 6;

/// The lock of one Lambda deployment (one function name, one account and region).
#[derive(Debug, Clone)]
pub struct SsmLock {
    ssm: aws_sdk_ssm::Client,
    path: String,
    region: String,
}

/// One epoch as read: its number and holder (`None`: a value that is not deployctl's JSON,
/// treated as an expired holder).
#[derive(Debug, Clone)]
struct Epoch {
    n: u64,
    holder: Option<LockHolder>,
}

impl Epoch {
    fn holder(&self) -> LockHolder {
        self.holder.clone().unwrap_or_else(|| {
            LockHolder::new(
                "",
                "an unreadable lock value (treated as expired)",
                0,
                Some(0),
            )
        })
    }

    fn is(&self, owner: &LockOwner) -> bool {
        self.holder.as_ref().is_some_and(|h| h.id == owner.id)
    }

    fn live(&self, now: u64) -> bool {
        self.holder.as_ref().is_some_and(|h| !h.expired(now))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn value(owner: &LockOwner, acquired_ms: u64, expires_ms: u64) -> String {
    serde_json::json!({
        "id": owner.id,
        "who": owner.who,
        "acquired_ms": acquired_ms,
        "expires_ms": expires_ms,
    })
    .to_string()
}

fn parse(value: &str) -> Option<LockHolder> {
    let v: serde_json::Value = serde_json::from_str(value).ok()?;
    Some(LockHolder::new(
        v["id"].as_str()?,
        v["who"].as_str().unwrap_or("unknown"),
        v["acquired_ms"].as_u64().unwrap_or(0),
        Some(v["expires_ms"].as_u64().unwrap_or(0)),
    ))
}

fn lost(message: String) -> StageError {
    StageError::new(ErrorKind::Failed, message)
}

impl SsmLock {
    /// The lock of Lambda function `function` in the account and region of `ssm`.
    pub fn new(ssm: aws_sdk_ssm::Client, function: &str, region: &str) -> Self {
        Self {
            ssm,
            path: format!("{LOCK_ROOT}/{function}/lambda"),
            region: region.to_owned(),
        }
    }

    /// The parameter path the epochs live under (`/deployctl/locks/<function>/lambda`).
    pub fn path(&self) -> &str {
        &self.path
    }

    fn name(&self, epoch: u64) -> String {
        format!("{}/{epoch}", self.path)
    }

    /// Every epoch, lowest first.
    async fn read(&self) -> Result<Vec<Epoch>, AwsError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .ssm
                .get_parameters_by_path()
                .path(&self.path)
                .recursive(false)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| AwsError::sdk("ssm", "GetParametersByPath", &self.path, e))?;
            for p in page.parameters() {
                let Some(n) = p
                    .name()
                    .and_then(|n| n.rsplit('/').next())
                    .and_then(|n| n.parse::<u64>().ok())
                else {
                    continue;
                };
                out.push(Epoch {
                    n,
                    holder: p.value().and_then(parse),
                });
            }
            match page.next_token() {
                Some(t) if !t.is_empty() && Some(t) != token.as_deref() => {
                    token = Some(t.to_owned());
                }
                _ => break,
            }
        }
        out.sort_by_key(|e| e.n);
        Ok(out)
    }

    /// Creates `epoch`; `false` when it exists already (somebody else created it first).
    async fn create(&self, epoch: u64, value: String) -> Result<bool, AwsError> {
        let name = self.name(epoch);
        match self
            .ssm
            .put_parameter()
            .name(&name)
            .value(value)
            .r#type(ParameterType::String)
            .overwrite(false)
            .description("deployctl deploy lock: one deploy of this Lambda function at a time")
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => {
                let e = AwsError::sdk("ssm", "PutParameter", name, e);
                if e.code() == Some("ParameterAlreadyExists") {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn overwrite(&self, epoch: u64, value: String) -> Result<(), AwsError> {
        let name = self.name(epoch);
        self.ssm
            .put_parameter()
            .name(&name)
            .value(value)
            .r#type(ParameterType::String)
            .overwrite(true)
            .send()
            .await
            .map_err(|e| AwsError::sdk("ssm", "PutParameter", name, e))?;
        Ok(())
    }

    /// Deletes `epoch`; one that is gone already is fine.
    async fn delete(&self, epoch: u64) -> Result<(), AwsError> {
        let name = self.name(epoch);
        match self.ssm.delete_parameter().name(&name).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = AwsError::sdk("ssm", "DeleteParameter", name, e);
                if e.code() == Some("ParameterNotFound") {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Deletes epochs that no longer matter; a failure only leaves an expired epoch behind,
    /// which the next taker removes.
    async fn sweep(&self, epochs: impl Iterator<Item = u64>) {
        for n in epochs {
            if let Err(e) = self.delete(n).await {
                tracing::warn!(lock = %self.path, epoch = n, error = %e, "could not delete an old lock epoch");
            }
        }
    }

    /// After creating `mine`: ours when no other epoch has a live holder, else give it back.
    async fn confirm(&self, mine: u64, owner: &LockOwner) -> Result<Acquire, StageError> {
        let epochs = self.read().await?;
        let now = now_ms();
        let rival = epochs
            .iter()
            .rev()
            .find(|e| e.n != mine && e.live(now) && !e.is(owner));
        if let Some(rival) = rival {
            self.delete(mine).await?;
            return Ok(Acquire::Held(rival.holder()));
        }
        self.sweep(epochs.iter().map(|e| e.n).filter(|n| *n != mine))
            .await;
        Ok(Acquire::Taken)
    }
}

#[async_trait]
impl DeployLock for SsmLock {
    fn describe(&self) -> String {
        format!("SSM parameter {}/<epoch> in {}", self.path, self.region)
    }

    async fn try_acquire(&self, owner: &LockOwner, ttl: Duration) -> Result<Acquire, StageError> {
        for _ in 0..RACES {
            let epochs = self.read().await?;
            let now = now_ms();
            let expires = now.saturating_add(ms(ttl));
            let Some(top) = epochs.last() else {
                if self.create(1, value(owner, now, expires)).await? {
                    return self.confirm(1, owner).await;
                }
                continue;
            };
            let holder = top.holder();
            if top.is(owner) {
                // Ours already (a retry of this run): extend it.
                self.overwrite(top.n, value(owner, holder.acquired_at_ms, expires))
                    .await?;
                return Ok(Acquire::Taken);
            }
            if !holder.expired(now) {
                return Ok(Acquire::Held(holder));
            }
            // The holder stopped renewing: take over with the next epoch.
            if self.create(top.n + 1, value(owner, now, expires)).await? {
                return self.confirm(top.n + 1, owner).await;
            }
        }
        Err(lost(format!(
            "could not take the deploy lock ({}): it changed hands {RACES} times while reading it",
            self.describe()
        ))
        .with_hint("run the command again"))
    }

    async fn renew(&self, owner: &LockOwner, ttl: Duration) -> Result<(), StageError> {
        let epochs = self.read().await?;
        let now = now_ms();
        let Some(top) = epochs.last().filter(|e| e.is(owner)) else {
            let by = epochs.last().map_or_else(
                || "nobody holds it now".to_owned(),
                |e| format!("held by {} now", e.holder().describe(now)),
            );
            return Err(lost(format!("the lease is no longer ours ({by})")));
        };
        let holder = top.holder();
        // Too late to renew safely: a waiting run may be taking it over right now.
        let margin = ms(ttl / 6);
        if holder
            .expires_at_ms
            .is_none_or(|at| at <= now.saturating_add(margin))
        {
            return Err(lost(
                "the lease ran out before it could be renewed (this run stalled)".to_owned(),
            ));
        }
        self.overwrite(
            top.n,
            value(owner, holder.acquired_at_ms, now.saturating_add(ms(ttl))),
        )
        .await?;
        // The write above is unconditional: check nobody took over in between.
        let after = self.read().await?;
        match after.last() {
            Some(e) if e.n == top.n && e.is(owner) => Ok(()),
            other => {
                let by =
                    other.map_or_else(|| "nobody".to_owned(), |e| e.holder().describe(now_ms()));
                if other.is_some_and(|e| e.n != top.n) {
                    self.sweep(std::iter::once(top.n)).await;
                }
                Err(lost(format!(
                    "the lease was taken over while renewing it (held by {by})"
                )))
            }
        }
    }

    async fn release(&self, owner: &LockOwner) -> Result<(), StageError> {
        for e in self.read().await?.iter().filter(|e| e.is(owner)) {
            self.delete(e.n).await?;
        }
        Ok(())
    }

    async fn holder(&self) -> Result<Option<LockHolder>, StageError> {
        Ok(self.read().await?.last().map(Epoch::holder))
    }

    async fn break_lock(&self) -> Result<Option<LockHolder>, StageError> {
        let epochs = self.read().await?;
        for e in &epochs {
            self.delete(e.n).await?;
        }
        Ok(epochs.last().map(Epoch::holder))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_foreign_values_read_as_expired() {
        let owner = LockOwner::new("run-1", "ana@box (pid 7)");
        let h = parse(&value(&owner, 10, 70)).unwrap_or_else(|| panic!("parses"));
        assert_eq!(h, LockHolder::new("run-1", "ana@box (pid 7)", 10, Some(70)));
        assert!(parse("locked").is_none());
        let foreign = Epoch { n: 3, holder: None };
        assert!(foreign.holder().expired(1));
        assert!(!foreign.is(&owner));
    }
}

//! Deploy locks: one deploy (or rollback, scale, destroy) of an app on a target at a time.
//!
//! Adapters implement [`DeployLock`] over something their service makes atomic — a
//! Kubernetes `Lease` created once and replaced under its `resourceVersion`, an SSM parameter
//! created with overwrite off, an `flock` on a file for the local engine. The core decides
//! everything else in [`locked`]: how long to wait and what to say while waiting, renewing
//! the lease while the work runs, stopping the work when the lease is lost, and releasing
//! it afterwards. Sleeping needs a runtime, which the core does not have: the caller passes
//! a [`Timer`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::cancel::Cancellation;
use crate::error::{ErrorKind, StageError};
use crate::event::{Event, EventKind, EventSink, Stage};

/// Who is taking a lock: one run of deployctl.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockOwner {
    /// Unique for this run, so a run recognises its own lock (and nobody else's).
    pub id: String,
    /// For people: `user@host (pid 4242)`.
    pub who: String,
}

impl LockOwner {
    /// An owner.
    pub fn new(id: impl Into<String>, who: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            who: who.into(),
        }
    }
}

/// The holder of a lock, as read from the service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct LockHolder {
    /// The holder's run id.
    pub id: String,
    /// The holder, for people.
    pub who: String,
    /// When it took the lock, in milliseconds since the Unix epoch.
    pub acquired_at_ms: u64,
    /// When the lease runs out unless renewed; `None` for a lock the operating system frees
    /// when its holder dies (a file lock).
    pub expires_at_ms: Option<u64>,
}

impl LockHolder {
    /// A holder.
    pub fn new(
        id: impl Into<String>,
        who: impl Into<String>,
        acquired_at_ms: u64,
        expires_at_ms: Option<u64>,
    ) -> Self {
        Self {
            id: id.into(),
            who: who.into(),
            acquired_at_ms,
            expires_at_ms,
        }
    }

    /// Whether its lease ran out at `now_ms` (its holder stopped renewing: it died).
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }

    /// `user@host (pid 1) since 12:01:02 UTC (3m ago)`.
    pub fn describe(&self, now_ms: u64) -> String {
        let mut out = format!(
            "{} since {} ({} ago)",
            self.who,
            clock(self.acquired_at_ms),
            human(now_ms.saturating_sub(self.acquired_at_ms))
        );
        if let Some(at) = self.expires_at_ms {
            if at > now_ms {
                out.push_str(&format!(
                    ", lease expires in {} unless renewed",
                    human(at - now_ms)
                ));
            } else {
                out.push_str(", lease expired");
            }
        }
        out
    }
}

/// What [`DeployLock::try_acquire`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Acquire {
    /// The lock is now ours (it was free, ours already, or its holder's lease had expired).
    Taken,
    /// Somebody else holds it.
    Held(LockHolder),
}

/// A lock per app and target, implemented by each target over its service.
#[async_trait]
pub trait DeployLock: Send + Sync {
    /// Where the lock lives, for messages: `Lease deployctl-lock-web in namespace prod`.
    fn describe(&self) -> String;

    /// Takes the lock for `owner` with a lease of `ttl`, atomically: of two callers at the
    /// same moment exactly one gets [`Acquire::Taken`]. A holder whose lease has expired is
    /// replaced.
    async fn try_acquire(&self, owner: &LockOwner, ttl: Duration) -> Result<Acquire, StageError>;

    /// Extends `owner`'s lease to `ttl` from now; an error when `owner` no longer holds it.
    async fn renew(&self, owner: &LockOwner, ttl: Duration) -> Result<(), StageError>;

    /// Gives the lock up if `owner` holds it; nothing otherwise.
    async fn release(&self, owner: &LockOwner) -> Result<(), StageError>;

    /// The current holder, if any (expired or not).
    async fn holder(&self) -> Result<Option<LockHolder>, StageError>;

    /// Removes the lock whoever holds it (`deployctl unlock`); returns who held it.
    async fn break_lock(&self) -> Result<Option<LockHolder>, StageError>;
}

/// Sleeping, from the caller's runtime.
pub trait Timer: Send + Sync {
    /// Completes after `duration`. It must really wait (return `Pending` first): the lease
    /// renewal loops on it beside the work.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// How locks are taken.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LockPolicy {
    /// This run.
    pub owner: LockOwner,
    /// How long to wait for another holder before failing.
    pub wait: Duration,
    /// The lease: renewed every third of it while working; a holder that dies frees the lock
    /// after at most this long.
    pub ttl: Duration,
}

impl LockPolicy {
    /// Waits up to `wait` with a 60 s lease.
    pub fn new(owner: LockOwner, wait: Duration) -> Self {
        Self {
            owner,
            wait,
            ttl: Duration::from_secs(60),
        }
    }

    /// With another lease length (at least 3 s).
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_secs(3));
        self
    }
}

/// How often a waiting run asks again.
const POLL: Duration = Duration::from_secs(1);
/// How often a waiting run says it is still waiting.
const REMIND: Duration = Duration::from_secs(30);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn say(events: &dyn EventSink, stage: &Stage, text: String) {
    events.emit(Event::now(stage.clone(), EventKind::Message { text }));
}

/// Takes `lock` (waiting up to the policy's `wait`), runs `work` while renewing the lease,
/// then releases it. `work` receives the cancellation it must honour: it fires when `cancel`
/// does, and when the lease is lost (another run may be deploying now, so stopping between
/// calls is the only safe course).
///
/// # Errors
/// The lock is held by another run past the wait ([`ErrorKind::Failed`], naming the holder
/// and how to break a stale lock); taking, renewing or releasing it failed; or `work`'s own
/// error.
pub async fn locked<T, F>(
    lock: &dyn DeployLock,
    policy: &LockPolicy,
    timer: &dyn Timer,
    events: &dyn EventSink,
    stage: &Stage,
    cancel: &Cancellation,
    work: impl FnOnce(Cancellation) -> F,
) -> Result<T, StageError>
where
    F: std::future::Future<Output = Result<T, StageError>>,
{
    acquire(lock, policy, timer, events, stage, cancel).await?;
    let inner = Cancellation::new();
    let lost: std::sync::Mutex<Option<StageError>> = std::sync::Mutex::new(None);
    let guard = async {
        loop {
            let tick = timer.sleep(policy.ttl / 3).fuse();
            let parent = cancel.cancelled().fuse();
            futures::pin_mut!(tick, parent);
            futures::select! {
                () = parent => {
                    inner.cancel();
                    return std::future::pending::<()>().await;
                }
                () = tick => {}
            }
            if let Err(e) = lock.renew(&policy.owner, policy.ttl).await {
                if let Ok(mut slot) = lost.lock() {
                    *slot = Some(e);
                }
                inner.cancel();
                return std::future::pending::<()>().await;
            }
        }
    };
    let work = work(inner.clone()).fuse();
    let guard = guard.fuse();
    futures::pin_mut!(work, guard);
    let result = futures::select! {
        r = work => r,
        () = guard => unreachable_guard(),
    };
    let lost = lost.lock().ok().and_then(|mut slot| slot.take());
    if let Some(e) = lost {
        // Not ours any more: releasing would free somebody else's lock.
        let err = StageError::new(
            ErrorKind::Failed,
            format!(
                "lost the deploy lock ({}) while working: {}; stopped at the next safe point",
                lock.describe(),
                e.message
            ),
        )
        .with_hint("re-run the command: it continues from what is in place")
        .with_source(e);
        return match result {
            Ok(_) => Err(err),
            Err(work_err) if work_err.kind == ErrorKind::Cancelled => Err(err),
            Err(work_err) => Err(work_err),
        };
    }
    if let Err(e) = lock.release(&policy.owner).await {
        say(
            events,
            stage,
            format!(
                "warning: could not release the deploy lock ({}): {}; it expires by itself in {}",
                lock.describe(),
                e.message,
                human(u64::try_from(policy.ttl.as_millis()).unwrap_or(u64::MAX))
            ),
        );
    }
    result
}

/// Runs `work` holding `lock` when there is one and `locking` says how to take it ([`locked`]),
/// else runs it as it is: what the pipeline does around apply and verify, and what a
/// day-two command (rollback, scale, destroy) does around its own work.
///
/// # Errors
/// As [`locked`].
pub async fn holding<T, F>(
    lock: Option<&dyn DeployLock>,
    locking: Option<(&LockPolicy, &dyn Timer)>,
    events: &dyn EventSink,
    stage: &Stage,
    cancel: &Cancellation,
    work: impl FnOnce(Cancellation) -> F,
) -> Result<T, StageError>
where
    F: std::future::Future<Output = Result<T, StageError>>,
{
    match (lock, locking) {
        (Some(lock), Some((policy, timer))) => {
            locked(lock, policy, timer, events, stage, cancel, work).await
        }
        _ => work(cancel.clone()).await,
    }
}

// The guard future never completes: it parks itself once it has cancelled the work.
fn unreachable_guard<T>() -> Result<T, StageError> {
    Err(StageError::new(
        ErrorKind::Failed,
        "the deploy lock's renewal stopped unexpectedly",
    ))
}

async fn acquire(
    lock: &dyn DeployLock,
    policy: &LockPolicy,
    timer: &dyn Timer,
    events: &dyn EventSink,
    stage: &Stage,
    cancel: &Cancellation,
) -> Result<(), StageError> {
    let mut waited = Duration::ZERO;
    let mut reminded: Option<Duration> = None;
    loop {
        if cancel.is_cancelled() {
            return Err(StageError::cancelled("taking the deploy lock"));
        }
        let holder = match lock.try_acquire(&policy.owner, policy.ttl).await? {
            Acquire::Taken => {
                if reminded.is_some() {
                    say(
                        events,
                        stage,
                        format!("took the deploy lock after waiting {}", human_d(waited)),
                    );
                }
                return Ok(());
            }
            Acquire::Held(holder) => holder,
        };
        let now = now_ms();
        if waited >= policy.wait {
            return Err(held_error(lock, &holder, now, waited));
        }
        if reminded.is_none_or(|at| waited >= at + REMIND) {
            say(
                events,
                stage,
                format!(
                    "waiting for the deploy lock ({}): held by {}; giving up in {}",
                    lock.describe(),
                    holder.describe(now),
                    human_d(policy.wait.saturating_sub(waited))
                ),
            );
            reminded = Some(waited);
        }
        let step = POLL
            .min(policy.wait.saturating_sub(waited))
            .max(Duration::from_millis(50));
        let sleep = timer.sleep(step).fuse();
        let stop = cancel.cancelled().fuse();
        futures::pin_mut!(sleep, stop);
        futures::select! {
            () = sleep => {}
            () = stop => return Err(StageError::cancelled("taking the deploy lock")),
        }
        waited += step;
    }
}

fn held_error(
    lock: &dyn DeployLock,
    holder: &LockHolder,
    now: u64,
    waited: Duration,
) -> StageError {
    let waited = if waited.is_zero() {
        String::new()
    } else {
        format!(" (waited {})", human_d(waited))
    };
    StageError::new(
        ErrorKind::Failed,
        format!(
            "another deploy holds the lock ({}): {}{waited}",
            lock.describe(),
            holder.describe(now)
        ),
    )
    .with_hint(
        "wait for it and re-run, or give --lock-timeout more time; if that deploy died, its \
         lease expires by itself, or `deployctl unlock <target>` breaks the lock now",
    )
}

/// Breaks `lock` and says what it broke: for `deployctl unlock`.
///
/// # Errors
/// Reading or deleting the lock failed.
pub async fn break_lock(lock: &dyn DeployLock) -> Result<String, StageError> {
    Ok(match lock.break_lock().await? {
        Some(holder) => format!(
            "broke the deploy lock ({}) held by {}",
            lock.describe(),
            holder.describe(now_ms())
        ),
        None => format!("the deploy lock ({}) was not held", lock.describe()),
    })
}

fn human_d(d: Duration) -> String {
    human(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn human(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `HH:MM:SS UTC` of a Unix time in milliseconds.
fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!(
        "{:02}:{:02}:{:02} UTC",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::executor::block_on;

use super::*;
use crate::event::VecSink;

/// A lock held in memory with the contract adapters keep: atomic take, renew only by the
/// holder, release only by the holder.
#[derive(Default)]
struct MemLock {
    holder: Mutex<Option<LockHolder>>,
    /// Another holder lets go after this many `try_acquire` calls.
    free_after: Mutex<Option<usize>>,
    tries: AtomicUsize,
    renews: AtomicUsize,
    releases: AtomicUsize,
    fail_renew: bool,
}

impl MemLock {
    fn held_by_other(free_after: Option<usize>) -> Self {
        let lock = Self::default();
        *lock.holder.lock().unwrap() = Some(LockHolder::new(
            "other-run",
            "ana@ci-7 (pid 99)",
            now_ms() - 125_000,
            Some(now_ms() + 45_000),
        ));
        *lock.free_after.lock().unwrap() = free_after;
        lock
    }
}

#[async_trait]
impl DeployLock for MemLock {
    fn describe(&self) -> String {
        "memory lock".into()
    }

    async fn try_acquire(&self, owner: &LockOwner, ttl: Duration) -> Result<Acquire, StageError> {
        let n = self.tries.fetch_add(1, Ordering::SeqCst) + 1;
        let mut holder = self.holder.lock().unwrap();
        if let Some(after) = *self.free_after.lock().unwrap()
            && n > after
        {
            *holder = None;
        }
        match &*holder {
            Some(h) if h.id != owner.id && !h.expired(now_ms()) => Ok(Acquire::Held(h.clone())),
            _ => {
                let ttl_ms = u64::try_from(ttl.as_millis()).unwrap();
                *holder = Some(LockHolder::new(
                    &owner.id,
                    &owner.who,
                    now_ms(),
                    Some(now_ms() + ttl_ms),
                ));
                Ok(Acquire::Taken)
            }
        }
    }

    async fn renew(&self, owner: &LockOwner, _ttl: Duration) -> Result<(), StageError> {
        self.renews.fetch_add(1, Ordering::SeqCst);
        let holder = self.holder.lock().unwrap();
        if self.fail_renew || holder.as_ref().is_none_or(|h| h.id != owner.id) {
            return Err(StageError::new(ErrorKind::Failed, "taken over by run-3"));
        }
        Ok(())
    }

    async fn release(&self, owner: &LockOwner) -> Result<(), StageError> {
        self.releases.fetch_add(1, Ordering::SeqCst);
        let mut holder = self.holder.lock().unwrap();
        if holder.as_ref().is_some_and(|h| h.id == owner.id) {
            *holder = None;
        }
        Ok(())
    }

    async fn holder(&self) -> Result<Option<LockHolder>, StageError> {
        Ok(self.holder.lock().unwrap().clone())
    }

    async fn break_lock(&self) -> Result<Option<LockHolder>, StageError> {
        Ok(self.holder.lock().unwrap().take())
    }
}

/// Virtual time: every sleep is counted and completes at the next poll (it yields once,
/// as a real sleep does, so other futures get to run).
#[derive(Default)]
struct InstantTimer {
    slept: Mutex<Vec<Duration>>,
}

impl Timer for InstantTimer {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.slept.lock().unwrap().push(duration);
        let mut yielded = false;
        Box::pin(futures::future::poll_fn(move |cx| {
            if yielded {
                std::task::Poll::Ready(())
            } else {
                yielded = true;
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        }))
    }
}

fn policy(wait: Duration) -> LockPolicy {
    LockPolicy::new(LockOwner::new("run-1", "me@here (pid 1)"), wait)
}

fn stage() -> Stage {
    Stage::Apply("k8s".into())
}

fn messages(sink: &VecSink) -> Vec<String> {
    sink.events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Message { text } => Some(text),
            _ => None,
        })
        .collect()
}

#[test]
fn a_free_lock_is_taken_held_while_working_and_released() {
    let lock = MemLock::default();
    let timer = InstantTimer::default();
    let sink = VecSink::default();
    let cancel = Cancellation::new();
    let seen = block_on(locked(
        &lock,
        &policy(Duration::ZERO),
        &timer,
        &sink,
        &stage(),
        &cancel,
        |_| async { Ok::<_, StageError>(lock.holder.lock().unwrap().clone()) },
    ))
    .unwrap();
    assert_eq!(seen.map(|h| h.id), Some("run-1".to_owned()));
    assert_eq!(*lock.holder.lock().unwrap(), None, "released afterwards");
    assert_eq!(lock.releases.load(Ordering::SeqCst), 1);
    assert!(messages(&sink).is_empty(), "{:?}", messages(&sink));
}

#[test]
fn a_held_lock_fails_at_once_without_a_wait_naming_the_holder_and_the_way_out() {
    let lock = MemLock::held_by_other(None);
    let timer = InstantTimer::default();
    let sink = VecSink::default();
    let ran = AtomicUsize::new(0);
    let err = block_on(locked(
        &lock,
        &policy(Duration::ZERO),
        &timer,
        &sink,
        &stage(),
        &Cancellation::new(),
        |_| async {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok::<_, StageError>(())
        },
    ))
    .unwrap_err();
    assert_eq!(ran.load(Ordering::SeqCst), 0, "the work never ran");
    assert_eq!(err.kind, ErrorKind::Failed);
    assert!(err.message.contains("ana@ci-7 (pid 99)"), "{}", err.message);
    assert!(err.message.contains("(2m05s ago)"), "{}", err.message);
    assert!(err.message.contains("memory lock"), "{}", err.message);
    assert!(err.hint.unwrap().contains("deployctl unlock"));
    assert_eq!(
        lock.releases.load(Ordering::SeqCst),
        0,
        "not ours to release"
    );
}

#[test]
fn a_waiting_run_says_who_it_waits_for_once_then_takes_the_lock_when_freed() {
    let lock = MemLock::held_by_other(Some(4));
    let timer = InstantTimer::default();
    let sink = VecSink::default();
    block_on(locked(
        &lock,
        &policy(Duration::from_secs(120)),
        &timer,
        &sink,
        &stage(),
        &Cancellation::new(),
        |_| async { Ok::<_, StageError>(()) },
    ))
    .unwrap();
    assert_eq!(lock.tries.load(Ordering::SeqCst), 5);
    let said = messages(&sink);
    assert_eq!(said.len(), 2, "{said:?}");
    assert!(said[0].starts_with("waiting for the deploy lock (memory lock): held by ana@ci-7"));
    assert!(said[0].contains("giving up in 2m00s"), "{}", said[0]);
    assert_eq!(said[1], "took the deploy lock after waiting 4s");
    let polls = timer
        .slept
        .lock()
        .unwrap()
        .iter()
        .filter(|d| **d == Duration::from_secs(1))
        .count();
    assert_eq!(polls, 4, "asked again every second");
}

#[test]
fn waiting_ends_at_the_deadline_with_how_long_it_waited() {
    let lock = MemLock::held_by_other(None);
    let timer = InstantTimer::default();
    let err = block_on(locked(
        &lock,
        &policy(Duration::from_secs(3)),
        &timer,
        &VecSink::default(),
        &stage(),
        &Cancellation::new(),
        |_| async { Ok::<_, StageError>(()) },
    ))
    .unwrap_err();
    assert!(err.message.ends_with("(waited 3s)"), "{}", err.message);
}

#[test]
fn losing_the_lease_cancels_the_work_and_leaves_the_new_holders_lock_alone() {
    let lock = MemLock {
        fail_renew: true,
        ..MemLock::default()
    };
    let timer = InstantTimer::default();
    let err = block_on(locked(
        &lock,
        &policy(Duration::ZERO),
        &timer,
        &VecSink::default(),
        &stage(),
        &Cancellation::new(),
        |c| async move {
            c.cancelled().await;
            Err::<(), _>(StageError::cancelled("applying"))
        },
    ))
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Failed);
    assert!(
        err.message
            .starts_with("lost the deploy lock (memory lock) while working: taken over by run-3"),
        "{}",
        err.message
    );
    assert_eq!(lock.releases.load(Ordering::SeqCst), 0);
}

#[test]
fn the_lease_is_renewed_while_the_work_runs() {
    let lock = MemLock::default();
    let timer = InstantTimer::default();
    let polls = AtomicUsize::new(0);
    block_on(locked(
        &lock,
        &policy(Duration::ZERO).ttl(Duration::from_secs(30)),
        &timer,
        &VecSink::default(),
        &stage(),
        &Cancellation::new(),
        |_| {
            // Yields a few times, so the renewal (whose timer is instant) gets to run.
            futures::future::poll_fn(|cx| {
                if polls.fetch_add(1, Ordering::SeqCst) < 5 {
                    cx.waker().wake_by_ref();
                    std::task::Poll::Pending
                } else {
                    std::task::Poll::Ready(Ok::<_, StageError>(()))
                }
            })
        },
    ))
    .unwrap();
    assert!(lock.renews.load(Ordering::SeqCst) >= 1);
    assert!(
        timer
            .slept
            .lock()
            .unwrap()
            .iter()
            .all(|d| *d == Duration::from_secs(10)),
        "renewed every third of the lease"
    );
}

#[test]
fn cancelling_the_run_reaches_the_work_and_still_releases() {
    let lock = MemLock::default();
    let timer = InstantTimer::default();
    let cancel = Cancellation::new();
    cancel.cancel();
    // Cancelled before the lock: nothing is taken.
    let err = block_on(locked(
        &lock,
        &policy(Duration::ZERO),
        &timer,
        &VecSink::default(),
        &stage(),
        &cancel,
        |_| async { Ok::<_, StageError>(()) },
    ))
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Cancelled);
    assert_eq!(lock.tries.load(Ordering::SeqCst), 0);

    // Cancelled while working: the work sees it, the lock is released.
    let cancel = Cancellation::new();
    let err = block_on(locked(
        &lock,
        &policy(Duration::ZERO),
        &timer,
        &VecSink::default(),
        &stage(),
        &cancel,
        |c| {
            let outer = cancel.clone();
            async move {
                outer.cancel();
                c.cancelled().await;
                Err::<(), _>(StageError::cancelled("applying"))
            }
        },
    ))
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Cancelled);
    assert_eq!(*lock.holder.lock().unwrap(), None);
}

#[test]
fn holders_read_as_people_write_times() {
    let h = LockHolder::new("x", "bo@laptop (pid 7)", 3_723_000, Some(3_783_000));
    assert_eq!(
        h.describe(3_733_000),
        "bo@laptop (pid 7) since 01:02:03 UTC (10s ago), lease expires in 50s unless renewed"
    );
    assert_eq!(
        h.describe(3_800_000),
        "bo@laptop (pid 7) since 01:02:03 UTC (1m17s ago), lease expired"
    );
    assert!(h.expired(3_783_000));
    assert!(!LockHolder::new("x", "y", 0, None).expired(u64::MAX));
}

//! Cooperative cancellation, without a runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

/// A cancellation flag shared by the pipeline and the adapters.
///
/// The binary cancels it on Ctrl-C. The pipeline checks it between calls, so a run stops at
/// a point a re-run converges from; adapters check it between their own remote calls and
/// may `await` [`Cancellation::cancelled`] in a `select`.
#[derive(Clone, Default, Debug)]
pub struct Cancellation {
    inner: Arc<Inner>,
}

#[derive(Default, Debug)]
struct Inner {
    cancelled: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl Cancellation {
    /// A new, not cancelled, flag.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests cancellation and wakes every task waiting in [`Cancellation::cancelled`].
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        let wakers = match self.inner.wakers.lock() {
            Ok(mut guard) => std::mem::take(&mut *guard),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Completes once cancellation is requested.
    pub async fn cancelled(&self) {
        std::future::poll_fn(|cx| {
            if self.is_cancelled() {
                return Poll::Ready(());
            }
            let mut wakers = match self.inner.wakers.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            // Re-check under the lock: `cancel` may have run in between.
            if self.is_cancelled() {
                return Poll::Ready(());
            }
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_wakes_waiters() {
        let c = Cancellation::new();
        let c2 = c.clone();
        let waiter = std::thread::spawn(move || futures::executor::block_on(c2.cancelled()));
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!c.is_cancelled());
        c.cancel();
        waiter.join().unwrap();
        assert!(c.is_cancelled());
    }
}

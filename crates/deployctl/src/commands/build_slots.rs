//! `deploy --workspace --build-jobs N`: image builds bounded across the services of one run,
//! apart from `--jobs` (one engine serialises heavy builds anyway).

use std::sync::OnceLock;

use deployctl_core::{
    BuildSpec, BuiltImage, Cancellation, Event, EventKind, EventSink, ImageBuilder, Stage,
    StageError,
};
use tokio::sync::Semaphore;

/// The run's build slots; set once by `deploy --workspace`, absent otherwise.
static SLOTS: OnceLock<Semaphore> = OnceLock::new();

/// Bounds the builds of this process to `n` at once (the first call wins).
pub fn limit(n: usize) {
    let _ = SLOTS.set(Semaphore::new(n.max(1)));
}

/// A builder that waits for a build slot when the run has them (says so when it waits).
pub struct Slotted<B> {
    inner: B,
    slots: Option<&'static Semaphore>,
}

impl<B> Slotted<B> {
    /// `inner`, bounded by the process's slots when [`limit`] set them.
    pub fn new(inner: B) -> Self {
        Self::with_slots(inner, SLOTS.get())
    }

    fn with_slots(inner: B, slots: Option<&'static Semaphore>) -> Self {
        Self { inner, slots }
    }
}

#[async_trait::async_trait]
impl<B: ImageBuilder> ImageBuilder for Slotted<B> {
    async fn build(
        &self,
        spec: &BuildSpec,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<BuiltImage, StageError> {
        let _permit = match self.slots {
            Some(s) => match s.try_acquire() {
                Ok(p) => Some(p),
                Err(_) => {
                    events.emit(Event::now(
                        Stage::Build,
                        EventKind::Message {
                            text: "waiting for a build slot (--build-jobs)".into(),
                        },
                    ));
                    s.acquire().await.ok()
                }
            },
            None => None,
        };
        self.inner.build(spec, events, cancel).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use deployctl_core::NullSink;

    use super::*;

    /// A builder that counts how many builds are inside it at once and yields while inside.
    struct Counting {
        inside: AtomicUsize,
        most: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl ImageBuilder for Counting {
        async fn build(
            &self,
            _spec: &BuildSpec,
            _events: &dyn EventSink,
            _cancel: &Cancellation,
        ) -> Result<BuiltImage, StageError> {
            let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
            self.inside.fetch_sub(1, Ordering::SeqCst);
            Err(StageError::new(
                deployctl_core::ErrorKind::Failed,
                "counted",
            ))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn builds_wait_for_a_slot() {
        for slots in [1usize, 2] {
            let sem: &'static Semaphore = Box::leak(Box::new(Semaphore::new(slots)));
            let b = std::sync::Arc::new(Slotted::with_slots(
                Counting {
                    inside: AtomicUsize::new(0),
                    most: AtomicUsize::new(0),
                },
                Some(sem),
            ));
            let spec = BuildSpec::new(".", "Dockerfile");
            let runs = (0..6).map(|_| {
                let b = b.clone();
                let spec = spec.clone();
                tokio::spawn(async move {
                    let _ = b.build(&spec, &NullSink, &Cancellation::new()).await;
                })
            });
            futures::future::join_all(runs).await;
            let most = b.inner.most.load(Ordering::SeqCst);
            assert!(
                (1..=slots).contains(&most),
                "{most} builds at once with {slots} slots"
            );
        }
    }
}

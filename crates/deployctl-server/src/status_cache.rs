//! The app status route's readings, one per app, so a busy server answers `GET …/apps/{a}`
//! from memory instead of reading every target (Kubernetes, Lambda, the local engine) per
//! request.
//!
//! A reading is fresh for [`FRESH`]; one up to [`STALE`] old is answered while a refresh
//! runs in the background; an older one (or none) waits for the refresh. Readers of an app
//! share its one refresh in flight, so a burst of requests starts one read, not one each.
//! A reading belongs to the config it was taken with: another current config discards it.
//! The jobs invalidate an app's reading when one of its jobs ends, and take a fresh one
//! before they record the end ([`StatusCache::refresh`]), so a client that sees the job
//! ended reads the state it left.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use serde_json::Value;

use crate::runner::{AppConfig, DeployRequest, ReadError, Runner};
use crate::tokens::now_ms;

/// A reading this young is answered as is.
pub(crate) const FRESH: Duration = Duration::from_secs(2);
/// A reading this young is answered while one refresh runs in the background.
pub(crate) const STALE: Duration = Duration::from_secs(10);

/// One reading of an app's status.
#[derive(Debug, Clone)]
pub(crate) struct Reading {
    /// The runner's status result object.
    pub(crate) status: Value,
    /// When the read started, ms since the Unix epoch: the state is at least this new.
    pub(crate) read_at_ms: i64,
    taken: Instant,
}

type Refresh = Shared<BoxFuture<'static, Result<Reading, ReadError>>>;

#[derive(Default)]
struct Entry {
    /// The config of `reading` and `refresh`.
    request: Option<DeployRequest>,
    reading: Option<Reading>,
    /// The refresh in flight: the future its readers share.
    refresh: Option<Refresh>,
    /// Bumped by every invalidation: a refresh started before one neither stores its
    /// reading nor clears the refresh in flight (there is at most one per generation).
    generation: u64,
}

type Key = (String, String);

/// Every app's reading. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct StatusCache {
    entries: Arc<Mutex<HashMap<Key, Entry>>>,
}

impl std::fmt::Debug for StatusCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let apps = self.lock().len();
        f.debug_struct("StatusCache").field("apps", &apps).finish()
    }
}

impl StatusCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The app's status: its reading when fresh (or stale, refreshing it behind), else the
    /// result of the one refresh in flight.
    pub(crate) async fn read(
        &self,
        runner: &Arc<dyn Runner>,
        app: &AppConfig,
    ) -> Result<Reading, ReadError> {
        let wait = {
            let mut entries = self.lock();
            let entry = entries
                .entry((app.project.clone(), app.app.clone()))
                .or_default();
            if entry.request.as_ref() != Some(&app.request) {
                discard(entry);
                entry.request = Some(app.request.clone());
            }
            match &entry.reading {
                Some(r) if r.taken.elapsed() < FRESH => return Ok(r.clone()),
                Some(r) if r.taken.elapsed() < STALE => {
                    let r = r.clone();
                    drop(self.refreshing(entry, runner, app));
                    return Ok(r);
                }
                _ => self.refreshing(entry, runner, app),
            }
        };
        wait.await
    }

    /// Forgets the app's reading (and the refresh in flight: readers after this start
    /// another).
    pub(crate) fn invalidate(&self, project: &str, app: &str) {
        if let Some(entry) = self.lock().get_mut(&(project.to_owned(), app.to_owned())) {
            discard(entry);
        }
    }

    /// Invalidates the app's reading and takes a fresh one (shared with readers meanwhile).
    pub(crate) async fn refresh(
        &self,
        runner: &Arc<dyn Runner>,
        app: &AppConfig,
    ) -> Result<Reading, ReadError> {
        self.invalidate(&app.project, &app.app);
        self.read(runner, app).await
    }

    /// The entry's refresh in flight, started (as a task of its own, so it ends and stores
    /// its reading whoever waits) when there is none.
    fn refreshing(&self, entry: &mut Entry, runner: &Arc<dyn Runner>, app: &AppConfig) -> Refresh {
        if let Some(r) = &entry.refresh {
            return r.clone();
        }
        let generation = entry.generation;
        let cache = self.clone();
        let runner = Arc::clone(runner);
        let app = app.clone();
        let task = tokio::spawn(async move {
            let (read_at_ms, taken) = (now_ms(), Instant::now());
            let out = runner.status(&app).await.map(|status| Reading {
                status,
                read_at_ms,
                taken,
            });
            let mut entries = cache.lock();
            if let Some(entry) = entries
                .get_mut(&(app.project.clone(), app.app.clone()))
                .filter(|e| e.generation == generation)
            {
                entry.refresh = None;
                if let Ok(r) = &out {
                    entry.reading = Some(r.clone());
                }
            }
            out
        });
        let shared = async move {
            task.await.unwrap_or_else(|e| {
                Err(ReadError::failed(format!(
                    "the status read stopped before it answered: {e}"
                )))
            })
        }
        .boxed()
        .shared();
        entry.refresh = Some(shared.clone());
        shared
    }
}

fn discard(entry: &mut Entry) {
    entry.reading = None;
    entry.refresh = None;
    entry.generation += 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{Job, Outcome};
    use deployctl_core::Cancellation;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts status reads; each takes 50 ms.
    #[derive(Debug, Default)]
    struct Counting(AtomicUsize);

    #[async_trait::async_trait]
    impl Runner for Counting {
        async fn run(&self, _: Job, _: crate::JobEvents, _: Cancellation) -> Outcome {
            Outcome::succeeded(Value::Null)
        }
        async fn status(&self, _: &AppConfig) -> Result<Value, ReadError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(serde_json::json!({ "n": n }))
        }
    }

    /// Makes app p/a's reading `by` older (Instant is not paused: set it back by hand).
    fn age(cache: &StatusCache, by: Duration) {
        let mut entries = cache.lock();
        let entry = entries
            .get_mut(&("p".into(), "a".into()))
            .unwrap_or_else(|| panic!());
        let r = entry.reading.as_mut().unwrap_or_else(|| panic!());
        r.taken = Instant::now().checked_sub(by).unwrap_or_else(Instant::now);
    }

    fn app(config: &str) -> AppConfig {
        AppConfig {
            project: "p".into(),
            app: "a".into(),
            request: serde_json::from_value(serde_json::json!({ "config": config }))
                .unwrap_or_else(|e| panic!("{e}")),
        }
    }

    #[tokio::test]
    async fn readers_share_one_refresh_and_fresh_readings_are_kept() {
        let counting = Arc::new(Counting::default());
        let runner: Arc<dyn Runner> = counting.clone();
        let cache = StatusCache::default();
        let a = app("x");
        let reads = (0..20).map(|_| cache.read(&runner, &a));
        let all = futures::future::join_all(reads).await;
        assert!(
            all.iter()
                .all(|r| r.as_ref().is_ok_and(|r| r.status["n"] == 1))
        );
        assert_eq!(counting.0.load(Ordering::SeqCst), 1);
        // Fresh: answered from memory.
        let again = cache
            .read(&runner, &a)
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(again.status["n"], 1);
        assert_eq!(counting.0.load(Ordering::SeqCst), 1);
        // Another config: read again.
        let other = cache
            .read(&runner, &app("y"))
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(other.status["n"], 2);
        // Invalidated (a job ended): read again.
        cache.invalidate("p", "a");
        let after = cache
            .refresh(&runner, &app("y"))
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(after.status["n"], 3);
    }

    #[tokio::test]
    async fn a_stale_reading_is_answered_while_one_refresh_runs() {
        let counting = Arc::new(Counting::default());
        let runner: Arc<dyn Runner> = counting.clone();
        let cache = StatusCache::default();
        let a = app("x");
        cache
            .read(&runner, &a)
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        // Age the reading past FRESH.
        age(&cache, FRESH * 2);
        for _ in 0..5 {
            let r = cache
                .read(&runner, &a)
                .await
                .unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(r.status["n"], 1, "the stale reading, at once");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            counting.0.load(Ordering::SeqCst),
            2,
            "one refresh for five readers"
        );
        let r = cache
            .read(&runner, &a)
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(r.status["n"], 2);
        // Older than STALE: the reader waits for a new reading.
        age(&cache, STALE * 2);
        let r = cache
            .read(&runner, &a)
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(r.status["n"], 3);
    }
}

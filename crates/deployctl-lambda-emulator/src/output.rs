//! The output of a sandbox's processes: every line of each, prefixed with its program, as
//! the engine streams it, and which programs' output has ended.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};

/// The output of every process, one line per entry, each prefixed with its program; and
/// the programs whose output has ended.
#[derive(Debug, Clone, Default)]
pub(crate) struct Output(Arc<Mutex<Vec<String>>>, Arc<Mutex<Vec<String>>>);

impl Output {
    pub(crate) fn push(&self, line: String) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }
    pub(crate) fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
    /// Copies a process's output stream into the log, line by line, until it ends.
    /// `keep` (the exec's input half) lives as long as the stream is read.
    pub(crate) fn follow<S, K>(&self, program: &str, stream: S, keep: K)
    where
        S: Stream<Item = Result<bollard::container::LogOutput, bollard::errors::Error>>
            + Send
            + 'static,
        K: Send + 'static,
    {
        let out = self.clone();
        let tag = program.rsplit('/').next().unwrap_or(program).to_owned();
        let program = program.to_owned();
        tokio::spawn(async move {
            let _keep = keep;
            let mut stream = Box::pin(stream);
            let mut partial = String::new();
            while let Some(item) = stream.next().await {
                let chunk = match item {
                    Ok(c) => c,
                    Err(e) => {
                        out.push(format!("[{tag}] (its output could not be read: {e})"));
                        break;
                    }
                };
                partial.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
                while let Some(end) = partial.find('\n') {
                    let line: String = partial.drain(..=end).collect();
                    out.push(format!("[{tag}] {}", line.trim_end()));
                }
            }
            if !partial.trim().is_empty() {
                out.push(format!("[{tag}] {}", partial.trim_end()));
            }
            out.1
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(program);
        });
    }
    /// Waits (up to `within`) until the output of `program`, which exited, has all arrived.
    pub(crate) async fn drained(&self, program: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self
                .1
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .any(|p| p == program)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

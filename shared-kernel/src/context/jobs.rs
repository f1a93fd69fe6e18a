//! Background jobs: a use case run on a schedule until the process stops.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

/// What one run of a job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing more is due now: wait for the next tick.
    Done,
    /// It did a full batch, so more may be due: run again at once.
    More,
}

type Run = Arc<dyn Fn() -> BoxFuture<'static, Result<Progress, String>> + Send + Sync>;

/// A named job, run every `interval`. Each must be safe to run on several
/// instances at once.
#[derive(Clone)]
pub struct Job {
    name: &'static str,
    interval: Duration,
    run: Run,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.name)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// `run` every `interval`; a run that answers [`Progress::More`] is
    /// followed at once by another.
    pub fn every<F, Fut, E>(name: &'static str, interval: Duration, run: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Progress, E>> + Send + 'static,
        E: std::fmt::Display,
    {
        Self {
            name,
            interval,
            run: Arc::new(move || {
                let running = run();
                Box::pin(async move { running.await.map_err(|e| e.to_string()) })
            }),
        }
    }

    /// [`Progress::More`] when a run handled a full batch of `batch`.
    pub fn progress(handled: usize, batch: usize) -> Progress {
        if handled >= batch {
            Progress::More
        } else {
            Progress::Done
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Runs the job at every tick until `stop` is cancelled; a failed run is
    /// logged and tried again at the next tick.
    pub async fn run_until(self, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stop.cancelled() => break,
            }
            loop {
                match (self.run)().await {
                    Ok(Progress::More) if !stop.is_cancelled() => continue,
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(job = self.name, %error, "background job failed; it runs again at its next tick");
                        break;
                    }
                }
            }
        }
    }
}

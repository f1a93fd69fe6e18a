//! Background work: event delivery (the outbox's dispatcher, and with a
//! broker each context's consumer), the outbox's retention, and the jobs of
//! the contexts this process runs (the order expiry sweep, the release of
//! reservations whose order never arrived, what payment providers are owed,
//! the pruning of payment notifications too old to be replayed).
//! Every piece is safe to run on several instances at once.

use std::time::Duration;

use shared_kernel::context::{Job, Progress};
use shared_kernel::storage::db::Backend;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::modules::Modules;

/// The running background tasks.
pub struct Workers {
    stop: CancellationToken,
    supervisor: JoinHandle<()>,
}

impl Workers {
    /// Starts the dispatcher; once it has delivered the backlog left by a
    /// previous run, starts the jobs (so that they judge reservations and
    /// orders only after every pending event about them was applied).
    pub fn start(modules: &Modules, settings: &Settings) -> Self {
        let stop = CancellationToken::new();
        let dispatcher = modules.dispatcher.clone();
        let broker = modules.broker.clone();
        let contexts = modules.contexts;
        let mut jobs = modules.jobs.clone();
        jobs.push(outbox_retention(modules, settings));
        // PostgreSQL and MySQL let several dispatchers work side by side (each
        // claims its own rows with SKIP LOCKED); SQLite has one writer, so one is enough.
        let lanes = match modules.db.backend() {
            Backend::Postgres | Backend::Mysql => 4,
            Backend::Sqlite => 1,
        };
        let token = stop.clone();
        let supervisor = tokio::spawn(async move {
            match dispatcher.drain().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deliveries = n, "delivered the events left pending"),
                Err(error) => tracing::warn!(%error, "could not deliver the pending events yet"),
            }
            tracing::info!(
                lanes,
                subscribers = dispatcher.subscribers(),
                "event delivery started"
            );
            let mut tasks: Vec<_> = (0..lanes)
                .map(|_| tokio::spawn(dispatcher.clone().run(token.clone())))
                .collect();
            // With a broker, each context's subscribers consume their queue.
            if let Some(broker) = &broker {
                for context in contexts.iter().filter(|c| !c.subscribers.is_empty()) {
                    let names = context.subscribers.iter().map(|s| s.name).collect();
                    tasks.push(broker.consume(
                        context.name,
                        names,
                        dispatcher.clone(),
                        token.clone(),
                    ));
                }
            }
            tasks.extend(
                jobs.into_iter()
                    .map(|job| tokio::spawn(job.run_until(token.clone()))),
            );
            for task in tasks {
                let _ = task.await;
            }
        });
        Self { stop, supervisor }
    }

    /// Stops every task; work in progress (an event being handled, a job's run) completes first.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.supervisor.await;
    }
}

/// Prunes delivered events from the outbox once they are older than
/// `SHOP__WORKER__EVENT_RETENTION_HOURS`.
fn outbox_retention(modules: &Modules, settings: &Settings) -> Job {
    let dispatcher = modules.dispatcher.clone();
    let retention = Duration::from_secs(settings.worker.event_retention_hours.saturating_mul(3600));
    Job::every("outbox retention", Duration::from_secs(3600), move || {
        let dispatcher = dispatcher.clone();
        async move {
            let pruned = dispatcher.prune(retention).await?;
            if pruned > 0 {
                tracing::info!(events = pruned, "pruned delivered events from the outbox");
            }
            Ok::<_, shared_kernel::storage::db::DbError>(Progress::Done)
        }
    })
}

//! Background work: event delivery, the order expiry sweep, the release of
//! reservations whose order never arrived, what payment providers are owed
//! (closing the trades of cancelled orders, refunding money that cannot be
//! kept), the outbox's retention, and the pruning of payment notifications
//! too old to be replayed.
//! Every piece is safe to run on several instances at once.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use shared_kernel::db::Backend;

use crate::config::Settings;
use crate::startup::Modules;

/// The running background tasks.
pub struct Workers {
    stop: CancellationToken,
    supervisor: JoinHandle<()>,
}

impl Workers {
    /// Starts the dispatcher; once it has delivered the backlog left by a
    /// previous run, starts the sweeps (so that they judge reservations and
    /// orders only after every pending event about them was applied).
    pub fn start(modules: &Modules, settings: &Settings) -> Self {
        let stop = CancellationToken::new();
        let dispatcher = modules.dispatcher.clone();
        let broker = modules.broker.clone();
        // Each context's work runs only in a process that runs the context.
        let orders = modules.order.as_ref().map(|order| order.orders.clone());
        let inventory = modules
            .product
            .as_ref()
            .map(|product| product.inventory.clone());
        let sweep_every = Duration::from_millis(settings.order.expiry_sweep_ms);
        let grace = Duration::from_secs(settings.worker.abandoned_reservation_grace_secs);
        let retention =
            Duration::from_secs(settings.worker.event_retention_hours.saturating_mul(3600));
        let pruner = modules.dispatcher.clone();
        let payments = modules
            .payment
            .as_ref()
            .map(|payment| payment.payments.clone());
        let settle_every = Duration::from_millis(settings.worker.poll_ms);
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
                for (context, subscribers) in by_context(dispatcher.subscriber_names()) {
                    tasks.push(broker.consume(
                        context,
                        subscribers,
                        dispatcher.clone(),
                        token.clone(),
                    ));
                }
            }
            if let Some(orders) = orders {
                tasks.push(tokio::spawn(every(
                    "order expiry",
                    sweep_every,
                    token.clone(),
                    move || {
                        let orders = orders.clone();
                        async move {
                            // A full batch means more are due: go on until they are all cancelled.
                            loop {
                                match orders.expire_due().await {
                                    Ok(n) if n as i64 >= domain_order::EXPIRY_BATCH => continue,
                                    Ok(_) => return Ok(()),
                                    Err(e) => return Err(e.to_string()),
                                }
                            }
                        }
                    },
                )));
            }
            if let Some(inventory) = inventory {
                tasks.push(tokio::spawn(every(
                    "abandoned reservations",
                    Duration::from_secs(60),
                    token.clone(),
                    move || {
                        let inventory = inventory.clone();
                        async move {
                            inventory
                                .release_abandoned(grace)
                                .await
                                .map(drop)
                                .map_err(|e| e.to_string())
                        }
                    },
                )));
            }
            tasks.push(tokio::spawn(every(
                "outbox retention",
                Duration::from_secs(3600),
                token.clone(),
                move || {
                    let pruner = pruner.clone();
                    async move {
                        match pruner.prune(retention).await {
                            Ok(0) => Ok(()),
                            Ok(n) => {
                                tracing::info!(
                                    events = n,
                                    "pruned delivered events from the outbox"
                                );
                                Ok(())
                            }
                            Err(e) => Err(e.to_string()),
                        }
                    }
                },
            )));
            if let Some(payments) = payments {
                let settling = payments.clone();
                tasks.push(tokio::spawn(every(
                    "provider work",
                    settle_every,
                    token.clone(),
                    move || {
                        let payments = settling.clone();
                        async move {
                            // A full batch means more are due: go on until none is.
                            loop {
                                match payments.settle_with_providers().await {
                                    Ok(n)
                                        if n as i64
                                            >= domain_payment::service::PROVIDER_WORK_BATCH =>
                                    {
                                        continue;
                                    }
                                    Ok(_) => return Ok(()),
                                    Err(e) => return Err(e.to_string()),
                                }
                            }
                        }
                    },
                )));
                tasks.push(tokio::spawn(every(
                    "notification retention",
                    Duration::from_secs(60),
                    token.clone(),
                    move || {
                        let payments = payments.clone();
                        async move {
                            payments
                                .prune_notifications()
                                .await
                                .map(drop)
                                .map_err(|e| e.to_string())
                        }
                    },
                )));
            }
            for task in tasks {
                let _ = task.await;
            }
        });
        Self { stop, supervisor }
    }

    /// Stops every task; work in progress (an event being handled, a sweep) completes first.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.supervisor.await;
    }
}

/// Subscribers by the context their name begins with (`product.stock-reservations`: `product`).
fn by_context(subscribers: &[&'static str]) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut contexts: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for &subscriber in subscribers {
        let context = shared_kernel::rabbitmq::context_of(subscriber);
        match contexts.iter_mut().find(|(name, _)| *name == context) {
            Some((_, members)) => members.push(subscriber),
            None => contexts.push((context, vec![subscriber])),
        }
    }
    contexts
}

/// Runs `job` every `interval` until `stop` is cancelled.
async fn every<F, Fut>(name: &'static str, interval: Duration, stop: CancellationToken, mut job: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => break,
        }
        if let Err(error) = job().await {
            tracing::warn!(job = name, %error, "background job failed; it runs again at its next tick");
        }
    }
}

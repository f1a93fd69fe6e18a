//! Events over RabbitMQ (`SHOP__BUS__KIND=rabbitmq`): how the contexts of
//! several processes (each perhaps with its own database) tell each other what
//! happened. The outbox stays the source of truth; the broker only carries.
//!
//! - **Publishing.** The outbox's relay ([`crate::messaging::outbox::RELAY`]) hands every
//!   committed event to [`RabbitMq::publish`], which publishes it to a durable
//!   topic exchange (`SHOP__BUS__EXCHANGE`, routing key = event type) as a
//!   persistent message and waits for the broker's publisher confirm; the
//!   relay marks the event sent only then. An event is thus published at
//!   least once.
//! - **Consuming.** Each context has its own durable quorum queue,
//!   `<exchange>.<context>`, bound to the event types its subscribers take.
//!   A consumer takes what is ready (up to the prefetch), applies it in one
//!   transaction that also records each event in the inbox
//!   ([`Dispatcher::handle_delivered`]), and acknowledges only after that
//!   commit: a message delivered again (after a crash, or a lost ack) finds
//!   its event in the inbox and changes nothing.
//! - **Failures.** A message whose handler fails is returned to the queue
//!   after a backoff; after `SHOP__BUS__MAX_ATTEMPTS` attempts (the quorum
//!   queue's `x-delivery-count` counts them), or at once when it cannot be
//!   read as an event, it is rejected to the dead-letter exchange
//!   `<exchange>.dead-letter` and its queue of the same name, and counted in
//!   `shop_bus_dead_letters_total`. When the database is unavailable nothing
//!   is returned: the consumer keeps its messages and tries again, so an
//!   outage is not mistaken for a bad message. The queue's own
//!   `x-delivery-limit` (100) dead-letters a message that keeps killing its
//!   consumer before it can reject it.
//! - **Outages.** Each link (the relay's publisher, each context's consumer)
//!   logs one warning when it goes down and one line when it is back; every
//!   failed attempt in between is counted in
//!   `shop_broker_link_failures_total{link}` and logged at debug level only
//!   (lapin's own logs are off by default: see `app/src/telemetry.rs`).
//! - **Headers.** `message_id` = event id, `type` = event type, `timestamp`,
//!   `correlation_id` = request id; headers `event-version`, `occurred-at`,
//!   `request-id` and a W3C `traceparent` whose trace id is the request id.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{FutureExt as _, StreamExt as _};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::messaging::outbox::{Dispatcher, Publisher};
use crate::model::events::{EventEnvelope, EventId};

/// The broker-side safety net: a message returned this often is dead-lettered
/// by the queue itself, even if no consumer lived long enough to reject it.
/// Fixed, because a queue cannot be declared again with other arguments.
const QUEUE_DELIVERY_LIMIT: i64 = 100;
/// How long the broker has to confirm a publication.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a link's close waits for the broker's `Close-Ok`: a broker that
/// stopped answering (a lost confirm, a half-open connection) never sends it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long setting a link up (its channel, exchanges, queues, confirms,
/// consumer) may take once the connection is open: a broker that accepted
/// the connection and then went silent must not hang a reconnect.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits for `step` of a link's set-up at most [`SETUP_TIMEOUT`].
async fn in_time<T>(
    step: &str,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(SETUP_TIMEOUT, work)
        .await
        .map_err(|_| {
            anyhow::anyhow!("the broker did not answer within {SETUP_TIMEOUT:?} while {step}")
        })?
}

/// Where the broker is and how to use it.
#[derive(Clone)]
pub struct RabbitSettings {
    /// `amqp://user:password@host:5672/%2f` (or `amqps://`).
    pub url: SecretString,
    /// The topic exchange; it also prefixes the queues, so that deployments
    /// (or test runs) can share one broker.
    pub exchange: String,
    /// Attempts before a failing message is dead-lettered.
    pub max_attempts: u32,
    /// Messages a consumer holds unacknowledged, and handles in one transaction.
    pub prefetch: u16,
}

impl std::fmt::Debug for RabbitSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitSettings")
            .field("exchange", &self.exchange)
            .field("max_attempts", &self.max_attempts)
            .field("prefetch", &self.prefetch)
            .finish_non_exhaustive()
    }
}

impl RabbitSettings {
    /// The queue of `context`'s subscribers.
    pub fn queue_of(&self, context: &str) -> String {
        format!("{}.{context}", self.exchange)
    }

    /// The exchange, and the queue, of messages that could not be handled.
    pub fn dead_letters(&self) -> String {
        format!("{}.dead-letter", self.exchange)
    }
}

/// One connection and its channel (with publisher confirms on, for publishing).
struct Link {
    connection: Connection,
    channel: Channel,
}

/// Whether a link to the broker is up, so that an outage is logged when it
/// starts and when it ends, and only counted in between.
#[derive(Debug)]
struct LinkHealth {
    /// The `link` label: `publisher`, or the context of a consumer.
    link: String,
    /// Since when the link is down, and how many attempts failed since.
    down: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
}

/// How an outage ended: how long it lasted, and the attempts that failed in it.
#[derive(Debug, Clone, Copy)]
struct Outage {
    lasted: Duration,
    failures: u64,
}

impl LinkHealth {
    fn new(link: impl Into<String>) -> Self {
        let link = link.into();
        metrics::counter!("shop_broker_link_failures_total", "link" => link.clone()).increment(0);
        Self {
            link,
            down: std::sync::Mutex::new(None),
        }
    }

    /// An attempt on the link failed: a warning if it was up, a count always.
    fn failed(&self, error: &anyhow::Error, retry_in: Duration) {
        metrics::counter!("shop_broker_link_failures_total", "link" => self.link.clone())
            .increment(1);
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        match down.as_mut() {
            Some((_, failures)) => {
                *failures += 1;
                tracing::debug!(link = %self.link, error = format!("{error:#}"), retry_in_ms = retry_in.as_millis() as u64, "the message broker is still unreachable");
            }
            None => {
                *down = Some((std::time::Instant::now(), 1));
                tracing::warn!(link = %self.link, error = format!("{error:#}"), "lost the message broker; connecting again until it is back (logged once it is; attempts are counted in shop_broker_link_failures_total)");
            }
        }
    }

    /// The link works: the outage it ends, if it was down.
    fn up(&self) -> Option<Outage> {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        down.take().map(|(since, failures)| Outage {
            lasted: since.elapsed(),
            failures,
        })
    }
}

impl Link {
    /// Closes the connection, waiting at most [`CLOSE_TIMEOUT`] for the
    /// broker to say so: the link is given up on either way.
    async fn close(self, reason: &str) {
        let closing = self.connection.close(200, reason.to_owned().into());
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
    }
}

/// A subscriber's name and the event types it takes: the routing the broker's
/// queues are bound by (the subscriber's context is the part of its name
/// before the first dot).
pub type Subscription = (&'static str, &'static [&'static str]);

/// The context a subscriber belongs to: `product` for `product.stock-reservations`.
pub fn context_of(subscriber: &'static str) -> &'static str {
    subscriber
        .split_once('.')
        .map_or(subscriber, |(context, _)| context)
}

/// The RabbitMQ side of the bus: publishes for the relay, and runs one consumer per context.
pub struct RabbitMq {
    settings: RabbitSettings,
    /// Every subscriber of every context, whether this process runs it or
    /// not: each context's queue is declared, and bound, before anything is
    /// published, so that no event is lost for want of the queue that takes
    /// it (a context whose process never started yet finds them waiting).
    subscriptions: Vec<Subscription>,
    /// The relay's link, made again after it broke.
    publishing: Mutex<Option<Link>>,
    /// Whether the relay's link is up.
    publisher: LinkHealth,
}

impl std::fmt::Debug for RabbitMq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitMq")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl RabbitMq {
    /// Connects and declares the exchanges and every context's queue (with
    /// `subscriptions`, every subscriber of every context); fails when the
    /// broker cannot be reached (shop does not start without it).
    pub async fn connect(
        settings: RabbitSettings,
        subscriptions: &[Subscription],
    ) -> anyhow::Result<Arc<Self>> {
        let bus = Self {
            settings,
            subscriptions: subscriptions.to_vec(),
            publishing: Mutex::new(None),
            publisher: LinkHealth::new("publisher"),
        };
        let link = bus.open_publisher().await?;
        *bus.publishing.lock().await = Some(link);
        Ok(Arc::new(bus))
    }

    /// The relay's link: publisher confirms on, and every context's queue
    /// declared and bound (from `subscriptions`) before anything is published on it.
    async fn open_publisher(&self) -> anyhow::Result<Link> {
        let link = self.open("publisher").await?;
        let setup = async {
            link.channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            let mut contexts: Vec<&'static str> = self
                .subscriptions
                .iter()
                .map(|(subscriber, _)| context_of(subscriber))
                .collect();
            contexts.sort_unstable();
            contexts.dedup();
            for context in contexts {
                self.declare_queue(&link.channel, context, &self.event_types_of(context))
                    .await?;
            }
            Ok(())
        };
        match in_time("declaring the queues", setup).await {
            Ok(()) => Ok(link),
            Err(error) => {
                link.close("set-up failed").await;
                Err(error)
            }
        }
    }

    pub fn settings(&self) -> &RabbitSettings {
        &self.settings
    }

    /// A new connection and channel, with the exchanges and the dead-letter
    /// queue declared (the context queues: [`Self::open_publisher`], and
    /// each consumer its own).
    async fn open(&self, role: &str) -> anyhow::Result<Link> {
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(format!("shop {role}")));
        let connection = tokio::time::timeout(
            CONFIRM_TIMEOUT,
            Connection::connect(self.settings.url.expose_secret(), properties),
        )
        .await
        .map_err(|_| anyhow::anyhow!("the broker did not answer within {CONFIRM_TIMEOUT:?}"))??;
        let setup = async {
            let channel = connection.create_channel().await?;
            let durable = ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            };
            channel
                .exchange_declare(
                    self.settings.exchange.as_str().into(),
                    ExchangeKind::Topic,
                    durable,
                    FieldTable::default(),
                )
                .await?;
            let dead = self.settings.dead_letters();
            channel
                .exchange_declare(
                    dead.as_str().into(),
                    ExchangeKind::Fanout,
                    durable,
                    FieldTable::default(),
                )
                .await?;
            channel
                .queue_declare(
                    dead.as_str().into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..QueueDeclareOptions::default()
                    },
                    quorum(None),
                )
                .await?;
            channel
                .queue_bind(
                    dead.as_str().into(),
                    dead.as_str().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            Ok(channel)
        };
        let channel = match in_time("opening a channel and declaring the exchanges", setup).await {
            Ok(channel) => channel,
            Err(error) => {
                let _ = tokio::time::timeout(
                    CLOSE_TIMEOUT,
                    connection.close(200, "set-up failed".into()),
                )
                .await;
                return Err(error);
            }
        };
        Ok(Link {
            connection,
            channel,
        })
    }

    /// The event types `context`'s subscribers take.
    fn event_types_of(&self, context: &str) -> Vec<&'static str> {
        let mut types: Vec<&'static str> = self
            .subscriptions
            .iter()
            .filter(|(subscriber, _)| context_of(subscriber) == context)
            .flat_map(|(_, types)| types.iter().copied())
            .collect();
        types.sort_unstable();
        types.dedup();
        types
    }

    /// Declares `context`'s queue and binds it to the event types its subscribers take.
    async fn declare_queue(
        &self,
        channel: &Channel,
        context: &str,
        event_types: &[&'static str],
    ) -> anyhow::Result<String> {
        let queue = self.settings.queue_of(context);
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                quorum(Some(&self.settings.dead_letters())),
            )
            .await?;
        for event_type in event_types {
            channel
                .queue_bind(
                    queue.as_str().into(),
                    self.settings.exchange.as_str().into(),
                    (*event_type).into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(queue)
    }

    /// Consumes `context`'s queue for `subscribers` until `stop` is
    /// cancelled (the batch in hand is finished first), connecting again
    /// whenever the broker goes away.
    pub fn consume(
        self: &Arc<Self>,
        context: &'static str,
        subscribers: Vec<&'static str>,
        dispatcher: Dispatcher,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let bus = self.clone();
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(100);
            let health = LinkHealth::new(format!("{context} consumer"));
            while !stop.is_cancelled() {
                match bus
                    .consume_session(
                        context,
                        &subscribers,
                        &dispatcher,
                        &stop,
                        &mut pause,
                        &health,
                    )
                    .await
                {
                    Ok(()) => break,
                    Err(error) => {
                        health.failed(&error, pause);
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            () = stop.cancelled() => {}
                        }
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                }
            }
            tracing::info!(context, "event consumer stopped");
        })
    }

    /// One connection's worth of consuming: returns `Ok` when stopped, `Err` when the link broke.
    async fn consume_session(
        &self,
        context: &'static str,
        subscribers: &[&'static str],
        dispatcher: &Dispatcher,
        stop: &CancellationToken,
        pause: &mut Duration,
        health: &LinkHealth,
    ) -> anyhow::Result<()> {
        let link = self.open(&format!("{context} consumer")).await?;
        let mut event_types: Vec<&'static str> = subscribers
            .iter()
            .flat_map(|subscriber| dispatcher.event_types_of(subscriber))
            .collect();
        event_types.sort_unstable();
        event_types.dedup();
        // Declared by the publisher's link already, from `subscriptions`; again
        // here for the subscribers this process runs, in case the queue went
        // (deleted by hand, a broker reset) while the publisher's link held.
        let prefetch = self.settings.prefetch.max(1);
        let setup = async {
            let queue = self
                .declare_queue(&link.channel, context, &event_types)
                .await?;
            link.channel
                .basic_qos(prefetch, BasicQosOptions::default())
                .await?;
            let consumer = link
                .channel
                .basic_consume(
                    queue.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            Ok((queue, consumer))
        };
        let (queue, mut consumer) = match in_time("declaring the queue and consuming", setup).await
        {
            Ok(set) => set,
            Err(error) => {
                link.close("set-up failed").await;
                return Err(error);
            }
        };
        match health.up() {
            None => {
                tracing::info!(context, %queue, ?event_types, "consuming events from the broker");
            }
            Some(outage) => tracing::info!(
                context,
                %queue,
                down_ms = outage.lasted.as_millis() as u64,
                failed_attempts = outage.failures,
                "the message broker is back: consuming events from the broker again"
            ),
        }
        // Connected: the next outage starts its backoff afresh.
        *pause = Duration::from_millis(100);
        loop {
            let first = tokio::select! {
                next = consumer.next() => next,
                () = stop.cancelled() => {
                    // Unacknowledged messages (none: every batch is settled) go back to the queue.
                    link.close("shop is stopping").await;
                    return Ok(());
                }
            };
            let mut batch = match first {
                Some(delivery) => vec![delivery?],
                None => anyhow::bail!("the broker cancelled the consumer of {queue}"),
            };
            while batch.len() < usize::from(prefetch) {
                match consumer.next().now_or_never() {
                    Some(Some(delivery)) => batch.push(delivery?),
                    _ => break,
                }
            }
            self.settle(context, subscribers, dispatcher, stop, batch)
                .await?;
        }
    }

    /// Applies a batch of messages and settles each: ack once committed,
    /// return it (after a backoff) when a handler failed, dead-letter it when
    /// it failed too often or is not an event.
    async fn settle(
        &self,
        context: &'static str,
        subscribers: &[&'static str],
        dispatcher: &Dispatcher,
        stop: &CancellationToken,
        batch: Vec<Delivery>,
    ) -> anyhow::Result<()> {
        let mut readable = Vec::with_capacity(batch.len());
        let mut envelopes = Vec::with_capacity(batch.len());
        for delivery in batch {
            match envelope_of(
                &delivery.properties,
                delivery.routing_key.as_str(),
                &delivery.data,
            ) {
                Ok(envelope) => {
                    envelopes.push(envelope);
                    readable.push(delivery);
                }
                Err(reason) => {
                    tracing::error!(context, routing_key = %delivery.routing_key, %reason, "a message is not an event shop can read; dead-lettered");
                    self.dead_letter(context, &delivery, &delivery.routing_key.to_string())
                        .await?;
                }
            }
        }
        if envelopes.is_empty() {
            return Ok(());
        }
        // The database's failures are not the messages' fault: keep them and try again.
        let mut pause = Duration::from_millis(100);
        let results = loop {
            match dispatcher
                .handle_delivered(subscribers, envelopes.clone())
                .await
            {
                Ok(results) => break results,
                Err(error) => {
                    tracing::warn!(context, %error, retry_in_ms = pause.as_millis() as u64, "could not apply events from the broker; trying again");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        // Not acknowledged: the broker delivers them again.
                        () = stop.cancelled() => return Ok(()),
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        };
        for ((delivery, envelope), result) in readable.into_iter().zip(&envelopes).zip(results) {
            let event_type = envelope.event_type.clone();
            match result {
                Ok(()) => {
                    delivery.acker.ack(BasicAckOptions::default()).await?;
                    metrics::counter!("shop_bus_consumed_total", "context" => context, "event_type" => event_type, "result" => "handled")
                        .increment(1);
                }
                Err(error) => {
                    let attempts = delivery_count(&delivery.properties).saturating_add(1);
                    if attempts >= u64::from(self.settings.max_attempts) {
                        tracing::error!(context, event_id = %envelope.id, %event_type, attempts, %error, "an event kept failing; dead-lettered");
                        self.dead_letter(context, &delivery, &event_type).await?;
                    } else {
                        metrics::counter!("shop_bus_consumed_total", "context" => context, "event_type" => event_type, "result" => "failed")
                            .increment(1);
                        let wait = crate::messaging::outbox::backoff(
                            i32::try_from(attempts).unwrap_or(i32::MAX),
                            Duration::from_secs(30),
                        );
                        tracing::warn!(context, event_id = %envelope.id, attempts, %error, retry_in_ms = wait.as_millis() as u64, "an event failed; the broker delivers it again");
                        // Returned later, without holding up the rest of the queue.
                        tokio::spawn(async move {
                            tokio::time::sleep(wait).await;
                            let requeue = BasicNackOptions {
                                requeue: true,
                                ..BasicNackOptions::default()
                            };
                            let _ = delivery.acker.nack(requeue).await;
                        });
                    }
                }
            }
        }
        Ok(())
    }

    async fn dead_letter(
        &self,
        context: &'static str,
        delivery: &Delivery,
        event_type: &str,
    ) -> anyhow::Result<()> {
        delivery
            .acker
            .reject(BasicRejectOptions { requeue: false })
            .await?;
        metrics::counter!("shop_bus_dead_letters_total", "context" => context, "event_type" => event_type.to_owned())
            .increment(1);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Publisher for RabbitMq {
    async fn publish(&self, events: &[EventEnvelope]) -> Vec<anyhow::Result<()>> {
        let mut publishing = self.publishing.lock().await;
        if publishing
            .as_ref()
            .is_none_or(|link| !link.channel.status().connected())
        {
            match self.open_publisher().await {
                Ok(link) => *publishing = Some(link),
                Err(error) => {
                    self.publisher.failed(&error, Duration::ZERO);
                    let error = format!("cannot reach the message broker: {error:#}");
                    return events
                        .iter()
                        .map(|_| Err(anyhow::anyhow!(error.clone())))
                        .collect();
                }
            }
        }
        let Some(link) = publishing.as_ref() else {
            return events
                .iter()
                .map(|_| Err(anyhow::anyhow!("no link to the message broker")))
                .collect();
        };
        // Every message goes out first, then the confirms are awaited: one round trip for the batch.
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            let (payload, properties) = message_of(event);
            pending.push(
                link.channel
                    .basic_publish(
                        self.settings.exchange.as_str().into(),
                        event.event_type.as_str().into(),
                        BasicPublishOptions::default(),
                        &payload,
                        properties,
                    )
                    .await,
            );
        }
        let mut results = Vec::with_capacity(events.len());
        let mut broken = false;
        for publication in pending {
            let result = match publication {
                Ok(confirm) => match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
                    Ok(Ok(Confirmation::Ack(_))) => Ok(()),
                    Ok(Ok(Confirmation::Nack(_))) => {
                        Err(anyhow::anyhow!("the broker refused the message (nack)"))
                    }
                    Ok(Ok(Confirmation::NotRequested)) => Err(anyhow::anyhow!(
                        "publisher confirms are off on this channel"
                    )),
                    Ok(Err(error)) => Err(anyhow::Error::from(error)),
                    Err(_) => Err(anyhow::anyhow!(
                        "the broker did not confirm within {CONFIRM_TIMEOUT:?}"
                    )),
                },
                Err(error) => Err(anyhow::Error::from(error)),
            };
            broken |= result.is_err();
            results.push(result);
        }
        if broken {
            if let Some(Err(error)) = results.iter().find(|result| result.is_err()) {
                self.publisher.failed(error, Duration::ZERO);
            }
            // Start afresh next time: a channel that lost a confirm is not trusted again.
            if let Some(link) = publishing.take() {
                link.close("starting afresh").await;
            }
        } else if let Some(outage) = self.publisher.up() {
            tracing::info!(
                down_ms = outage.lasted.as_millis() as u64,
                failed_attempts = outage.failures,
                "the message broker is back: publishing events again"
            );
        }
        results
    }
}

/// The arguments of a quorum queue, dead-lettering to `dead_letters` when given.
fn quorum(dead_letters: Option<&str>) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), long_string("quorum"));
    if let Some(exchange) = dead_letters {
        arguments.insert("x-dead-letter-exchange".into(), long_string(exchange));
        arguments.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(QUEUE_DELIVERY_LIMIT),
        );
    }
    arguments
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.to_owned()))
}

/// An event as a message: the payload as the body, the rest as properties and headers.
fn message_of(event: &EventEnvelope) -> (Vec<u8>, BasicProperties) {
    let payload = serde_json::to_vec(&event.payload).unwrap_or_default();
    let request_id = event.request_id.clone().unwrap_or_default();
    let mut headers = FieldTable::default();
    headers.insert(
        "event-version".into(),
        AMQPValue::LongUInt(u32::from(event.version)),
    );
    headers.insert(
        "occurred-at".into(),
        long_string(
            &event
                .occurred_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        ),
    );
    let span: u64 = rand::random();
    headers.insert(
        "traceparent".into(),
        long_string(&crate::remote::adapters::traceparent(
            &request_id,
            rand::random(),
            span,
        )),
    );
    let mut properties = BasicProperties::default()
        .with_message_id(ShortString::from(event.id.as_str().to_owned()))
        .with_type(ShortString::from(event.event_type.clone()))
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_app_id("shop".into())
        .with_timestamp(u64::try_from(event.occurred_at.timestamp()).unwrap_or_default());
    if !request_id.is_empty() {
        headers.insert("request-id".into(), long_string(&request_id));
        properties = properties.with_correlation_id(ShortString::from(request_id));
    }
    (payload, properties.with_headers(headers))
}

/// The event a message carries, or why it carries none.
fn envelope_of(
    properties: &BasicProperties,
    routing_key: &str,
    body: &[u8],
) -> Result<EventEnvelope, String> {
    let id = properties
        .message_id()
        .as_ref()
        .map(|id| id.as_str().to_owned())
        .filter(|id| !id.is_empty())
        .ok_or("it has no message id (the event id)")?;
    let event_type = properties
        .kind()
        .as_ref()
        .map(|kind| kind.as_str().to_owned())
        .unwrap_or_else(|| routing_key.to_owned());
    let headers = properties.headers().as_ref();
    let header = |name: &str| headers.and_then(|h| h.inner().get(name));
    let version = header("event-version")
        .and_then(as_integer)
        .and_then(|v| u16::try_from(v).ok())
        .ok_or("it has no event-version header")?;
    let occurred_at = header("occurred-at")
        .and_then(as_text)
        .and_then(|at| DateTime::parse_from_rfc3339(&at).ok())
        .map(|at| at.with_timezone(&Utc))
        .ok_or("it has no occurred-at header")?;
    let request_id = header("request-id").and_then(as_text);
    let payload = serde_json::from_slice(body).map_err(|e| format!("its body is not JSON: {e}"))?;
    Ok(EventEnvelope {
        id: EventId::from(id),
        event_type,
        version,
        occurred_at,
        request_id,
        payload,
    })
}

/// How often the queue delivered this message before (`x-delivery-count`, set by quorum queues).
fn delivery_count(properties: &BasicProperties) -> u64 {
    properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-delivery-count"))
        .and_then(as_integer)
        .unwrap_or(0)
}

fn as_integer(value: &AMQPValue) -> Option<u64> {
    match value {
        AMQPValue::ShortShortUInt(v) => Some(u64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(u64::from(*v)),
        AMQPValue::LongUInt(v) => Some(u64::from(*v)),
        AMQPValue::ShortShortInt(v) => u64::try_from(*v).ok(),
        AMQPValue::ShortInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongLongInt(v) => u64::try_from(*v).ok(),
        _ => None,
    }
}

fn as_text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok().map(str::to_owned),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_carries_its_event_whole() {
        let event = crate::model::events::OrderCancelled {
            order_id: "o1".into(),
            reason: crate::model::events::CancellationReason::Expired,
        };
        let request = "0190b8e4-7f6a-7c3e-9a41-5b2f8c1d2e3f";
        let envelope = EventEnvelope::new(&event, Some(request.into())).unwrap();
        let (body, properties) = message_of(&envelope);
        let traceparent = properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("traceparent"))
            .and_then(as_text)
            .unwrap();
        assert!(
            traceparent.starts_with("00-0190b8e47f6a7c3e9a415b2f8c1d2e3f-"),
            "the trace id is the request id: {traceparent}"
        );
        assert_eq!(
            properties.correlation_id().as_ref().unwrap().as_str(),
            request
        );
        let back = envelope_of(&properties, "order.cancelled", &body).unwrap();
        // The broker's timestamp has seconds; the header keeps microseconds.
        assert_eq!(
            back.occurred_at.timestamp_micros(),
            envelope.occurred_at.timestamp_micros()
        );
        assert_eq!(back.id, envelope.id);
        assert_eq!(back.event_type, envelope.event_type);
        assert_eq!(back.version, envelope.version);
        assert_eq!(back.request_id, envelope.request_id);
        assert_eq!(back.payload, envelope.payload);
        assert_eq!(delivery_count(&properties), 0);
    }

    #[test]
    fn a_message_without_an_event_id_is_not_an_event() {
        let error = envelope_of(&BasicProperties::default(), "order.cancelled", b"{}").unwrap_err();
        assert!(error.contains("message id"), "{error}");
    }
}

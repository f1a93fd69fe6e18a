//! The event bus with a transactional outbox.
//!
//! - A use case publishes events with [`Outbox::publish`] *inside* its write
//!   transaction: the state change and the events it causes commit together,
//!   or not at all. Publishing writes the event once and one delivery row per
//!   subscription to its type in `event_subscriptions`.
//! - Routing is the consumers' to decide: each process records the
//!   subscribers it runs, and the event types they take, when it starts
//!   ([`Dispatcher::register`]); a subscriber that only another process (or
//!   a newer version, in a rolling deploy) runs gets its deliveries all the
//!   same, and each process claims only the deliveries of its own
//!   subscribers. [`unsubscribe`] retires a subscriber for good.
//! - The [`Dispatcher`] delivers pending deliveries in batches, each batch one
//!   write unit: it claims its subscribers' rows (with `FOR UPDATE SKIP
//!   LOCKED` where the backend has several writers, so that several instances
//!   share the work and never take the same row), hands each subscriber its events of the batch at once
//!   ([`EventHandler::handle_batch`]) on the same connection, and marks them
//!   handled in one statement. The handler's writes and the "handled" marks
//!   commit together, so an event is applied once per subscriber even when
//!   it is delivered again after a crash. When a subscriber's batch fails,
//!   it is rolled back and its events are handled one by one, so that only
//!   the failing event is retried later, with backoff.
//! - It is woken right after a publishing transaction commits
//!   ([`Outbox::wake`]), and polls as a fallback (events of other instances).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::model::clock;
use crate::model::events::{EventEnvelope, EventId, IntegrationEvent};
use crate::storage::db::{AnyConnection, Db, DbError};

diesel::table! {
    outbox_events (id) {
        id -> Text,
        event_type -> Text,
        version -> Integer,
        payload -> Text,
        occurred_at -> Timestamp,
        request_id -> Nullable<Text>,
    }
}

diesel::table! {
    event_deliveries (event_id, subscriber) {
        event_id -> Text,
        subscriber -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        handled_at -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    event_subscriptions (event_type, subscriber) {
        event_type -> Text,
        subscriber -> Text,
        registered_at -> Timestamp,
    }
}

diesel::table! {
    event_inbox (event_id, subscriber) {
        event_id -> Text,
        subscriber -> Text,
        handled_at -> Timestamp,
    }
}

diesel::joinable!(event_deliveries -> outbox_events (event_id));
diesel::allow_tables_to_appear_in_same_query!(
    outbox_events,
    event_deliveries,
    event_subscriptions,
    event_inbox
);

/// The event bus's own tables (outbox, deliveries, subscriptions, inbox),
/// which every process needs whatever contexts it runs.
pub const MIGRATIONS: crate::storage::db::MigrationSet = crate::storage::db::MigrationSet {
    sqlite: &diesel_migrations::embed_migrations!("../migrations/sqlite/bus"),
    postgres: &diesel_migrations::embed_migrations!("../migrations/postgres/bus"),
    mysql: &diesel_migrations::embed_migrations!("../migrations/mysql/bus"),
};

/// The subscriber that relays events to a message broker (`SHOP__BUS__KIND=rabbitmq`):
/// it takes every event type, and its deliveries are "sent" once the broker confirmed them.
pub const RELAY: &str = "bus.relay";

/// Hands events to a message broker. The relay marks an event sent only when
/// [`Publisher::publish`] said the broker has it (for RabbitMQ: a publisher
/// confirm), so an event is published at least once; consumers recognise a
/// second copy by its id ([`Dispatcher::handle_delivered`]).
#[async_trait::async_trait]
pub trait Publisher: Send + Sync + 'static {
    /// Publishes `events` in order; one result per event, `Ok` once the broker has it.
    async fn publish(&self, events: &[EventEnvelope]) -> Vec<anyhow::Result<()>>;
}

/// A subscriber's reaction to events. It runs inside the delivery's
/// transaction, on the connection it is given: whatever it writes commits
/// together with the mark that it handled this event.
pub trait EventHandler: Send + Sync + 'static {
    fn handle(&self, conn: &mut AnyConnection, event: &EventEnvelope) -> anyhow::Result<()>;

    /// Handles several events at once, in the order they were published; a
    /// handler may override it to do the work of many events in a few
    /// statements. When it fails, its writes are undone and the events are
    /// handed to [`EventHandler::handle`] one by one.
    fn handle_batch(
        &self,
        conn: &mut AnyConnection,
        events: &[EventEnvelope],
    ) -> anyhow::Result<()> {
        events.iter().try_for_each(|event| self.handle(conn, event))
    }
}

struct Subscription {
    name: &'static str,
    event_types: Vec<&'static str>,
    handler: Arc<dyn EventHandler>,
}

/// Collects the subscribers; [`EventBusBuilder::build_with`] fixes them.
#[derive(Default)]
pub struct EventBusBuilder {
    subscriptions: Vec<Subscription>,
}

impl EventBusBuilder {
    /// Registers `handler` under a stable `name` (it keys the delivery rows) for the given event types.
    pub fn subscribe(
        mut self,
        name: &'static str,
        event_types: &[&'static str],
        handler: Arc<dyn EventHandler>,
    ) -> Self {
        self.subscriptions.push(Subscription {
            name,
            event_types: event_types.to_vec(),
            handler,
        });
        self
    }

    /// Builds the bus: its dispatcher delivers to the subscribers what
    /// `outbox` records (the outbox is made first, since some subscribers
    /// publish events of their own).
    pub fn build(self, db: Db, options: DispatchOptions, outbox: &Outbox) -> Dispatcher {
        let bus = self;
        let wake = outbox.wake.clone();
        let mut routes = Vec::new();
        let mut handlers = HashMap::new();
        for subscription in bus.subscriptions {
            for event_type in &subscription.event_types {
                routes.push((*event_type, subscription.name));
            }
            handlers.insert(subscription.name, subscription.handler);
        }
        let mut names: Vec<&'static str> = handlers.keys().copied().collect();
        names.sort_unstable();
        Dispatcher {
            db,
            handlers: Arc::new(handlers),
            names: names.into(),
            routes: routes.into(),
            wake,
            options,
            relay: None,
        }
    }
}

/// Publishes events inside the caller's transaction.
#[derive(Clone)]
pub struct Outbox {
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

impl Outbox {
    /// An outbox for one process's event bus ([`EventBusBuilder::build`]).
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self {
            wake: Arc::new(Notify::new()),
        }
    }

    /// Records `event` for every subscription to its type. Call it inside the
    /// write transaction of the state change that causes the event.
    pub fn publish<E: IntegrationEvent>(
        &self,
        conn: &mut AnyConnection,
        event: &E,
    ) -> QueryResult<EventId> {
        let mut ids = self.publish_all(conn, std::slice::from_ref(event))?;
        ids.pop().ok_or(diesel::result::Error::NotFound)
    }

    /// Records several events of one type in two statements (their rows, and
    /// a delivery row per event and subscription, copied from
    /// `event_subscriptions` by the database), inside the caller's transaction.
    pub fn publish_all<E: IntegrationEvent>(
        &self,
        conn: &mut AnyConnection,
        events: &[E],
    ) -> QueryResult<Vec<EventId>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let request_id = current_request_id();
        let serialisation =
            |e: serde_json::Error| diesel::result::Error::SerializationError(Box::new(e));
        let mut rows = Vec::with_capacity(events.len());
        for event in events {
            let envelope = EventEnvelope::new(event, request_id.clone()).map_err(serialisation)?;
            let payload = serde_json::to_string(&envelope.payload).map_err(serialisation)?;
            rows.push((envelope.id, payload, envelope.occurred_at.naive_utc()));
        }
        let values: Vec<_> = rows
            .iter()
            .map(|(id, payload, occurred_at)| {
                (
                    outbox_events::id.eq(id.as_str()),
                    outbox_events::event_type.eq(E::TYPE),
                    outbox_events::version.eq(i32::from(E::VERSION)),
                    outbox_events::payload.eq(payload.as_str()),
                    outbox_events::occurred_at.eq(*occurred_at),
                    outbox_events::request_id.eq(request_id.as_deref()),
                )
            })
            .collect();
        crate::insert_rows!(conn, outbox_events::table, values)?;
        let ids: Vec<&str> = rows.iter().map(|(id, ..)| id.as_str()).collect();
        let deliveries = outbox_events::table
            .inner_join(
                event_subscriptions::table
                    .on(event_subscriptions::event_type.eq(outbox_events::event_type)),
            )
            .filter(outbox_events::id.eq_any(ids))
            .select((
                outbox_events::id,
                event_subscriptions::subscriber,
                0.into_sql::<diesel::sql_types::Integer>(),
                outbox_events::occurred_at,
            ));
        diesel::insert_into(event_deliveries::table)
            .values(deliveries)
            .into_columns((
                event_deliveries::event_id,
                event_deliveries::subscriber,
                event_deliveries::attempts,
                event_deliveries::next_attempt_at,
            ))
            .execute(conn)?;
        tracing::debug!(
            events = rows.len(),
            event_type = E::TYPE,
            "events published"
        );
        Ok(rows.into_iter().map(|(id, ..)| id).collect())
    }

    /// Wakes the dispatcher; call it after the publishing transaction committed.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

fn current_request_id() -> Option<String> {
    crate::web::request_id::current()
}

/// How the dispatcher paces itself.
#[derive(Debug, Clone)]
pub struct DispatchOptions {
    /// How often to look for work when nothing woke it (other instances' events, retries).
    pub poll_interval: Duration,
    /// The longest wait before a failed delivery is tried again.
    pub max_backoff: Duration,
    /// The most deliveries one transaction handles.
    pub batch_size: i64,
    /// How long the relay holds events it is publishing before another
    /// instance (or this one, restarted) may take them, should it die in
    /// between. Short: a second publication costs only a duplicate, which
    /// consumers recognise, while a long lease delays events after a crash.
    pub relay_lease: Duration,
}

impl Default for DispatchOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            batch_size: 128,
            relay_lease: Duration::from_secs(5),
        }
    }
}

/// What one dispatch attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatched {
    /// The subscriber handled the event.
    Handled {
        event_type: String,
        subscriber: String,
        lag: Duration,
    },
    /// The handler failed; the delivery will be retried.
    Failed {
        event_type: String,
        subscriber: String,
    },
}

/// Delivers pending events to their subscribers.
#[derive(Clone)]
pub struct Dispatcher {
    db: Db,
    handlers: Arc<HashMap<&'static str, Arc<dyn EventHandler>>>,
    /// The subscribers this process runs, by name: the deliveries it claims.
    names: Arc<[&'static str]>,
    /// (event type, subscriber) of each subscription, recorded by [`Dispatcher::register`].
    routes: Arc<[(&'static str, &'static str)]>,
    wake: Arc<Notify>,
    options: DispatchOptions,
    /// Where events go when a message broker carries them; `None` delivers them here.
    relay: Option<Arc<dyn Publisher>>,
}

impl Dispatcher {
    /// How many subscribers it delivers to.
    pub fn subscribers(&self) -> usize {
        self.handlers.len()
    }

    /// The subscribers this process runs, by name.
    pub fn subscriber_names(&self) -> &[&'static str] {
        &self.names
    }

    /// The event types `subscriber` takes.
    pub fn event_types_of(&self, subscriber: &str) -> Vec<&'static str> {
        self.routes
            .iter()
            .filter(|(_, name)| *name == subscriber)
            .map(|(event_type, _)| *event_type)
            .collect()
    }

    /// Events travel through a message broker: every event published in this
    /// database is handed to `publisher` (by the [`RELAY`] subscriber), and this
    /// process's subscribers take their events from the broker
    /// ([`Dispatcher::handle_delivered`]) instead of from the outbox.
    #[must_use]
    pub fn with_relay(mut self, publisher: Arc<dyn Publisher>) -> Self {
        self.relay = Some(publisher);
        self
    }

    /// Records this process's subscriptions in `event_subscriptions` (those
    /// already there are left as they are), so that every process publishing
    /// from now on writes their deliveries. Call it once at start, before
    /// anything is published; returns how many were new.
    ///
    /// With a broker ([`Dispatcher::with_relay`]) it records the relay for
    /// every event type instead, and removes this process's subscribers'
    /// subscriptions (they take their events from the broker now; deliveries
    /// written for them before are still delivered here, by
    /// [`Dispatcher::drain`]).
    pub fn register(&self, conn: &mut AnyConnection) -> QueryResult<usize> {
        let now = clock::now();
        let routes: Vec<(&'static str, &'static str)> = if self.relay.is_some() {
            diesel::delete(
                event_subscriptions::table
                    .filter(event_subscriptions::subscriber.eq_any(self.names.iter())),
            )
            .execute(conn)?;
            crate::model::events::ALL_TYPES
                .iter()
                .map(|event_type| (*event_type, RELAY))
                .collect()
        } else {
            self.routes.to_vec()
        };
        let rows: Vec<_> = routes
            .iter()
            .map(|(event_type, subscriber)| {
                (
                    event_subscriptions::event_type.eq(*event_type),
                    event_subscriptions::subscriber.eq(*subscriber),
                    event_subscriptions::registered_at.eq(now),
                )
            })
            .collect();
        if rows.is_empty() {
            return Ok(0);
        }
        crate::insert_ignoring_duplicates!(conn, event_subscriptions::table, &rows)
    }

    /// Delivers events until `stop` is cancelled. The delivery in progress
    /// when it is cancelled completes first.
    pub async fn run(self, stop: CancellationToken) {
        tracing::debug!(
            subscribers = self.handlers.len(),
            "event dispatcher lane started"
        );
        while !stop.is_cancelled() {
            match self.work_once().await {
                Ok(false) => {
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(self.options.poll_interval) => {}
                        () = stop.cancelled() => {}
                    }
                }
                Ok(true) => {}
                Err(error) => {
                    tracing::warn!(%error, "event dispatch failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(self.options.poll_interval) => {}
                        () = stop.cancelled() => {}
                    }
                }
            }
        }
        tracing::info!("event dispatcher stopped");
    }

    /// One batch of deliveries here, then one of events to the broker (with
    /// one); whether there was anything to do.
    async fn work_once(&self) -> Result<bool, DbError> {
        let delivered = self.dispatch_batch().await?.len();
        let relayed = self.relay_batch().await?;
        Ok(delivered + relayed > 0)
    }

    /// Delivers (or relays) everything that is due now; returns how many deliveries were attempted.
    pub async fn drain(&self) -> Result<usize, DbError> {
        let mut attempted = 0;
        loop {
            let delivered = self.dispatch_batch().await?.len();
            let relayed = self.relay_batch().await?;
            if delivered + relayed == 0 {
                return Ok(attempted);
            }
            attempted += delivered + relayed;
        }
    }

    /// Hands the relay's due events to the broker: it leases them first (so
    /// that other instances leave them alone for a while), publishes them,
    /// and marks sent those the broker confirmed; the others are tried again
    /// after a backoff (or, should this process die, once the lease is over).
    /// Returns how many events it tried to send.
    pub async fn relay_batch(&self) -> Result<usize, DbError> {
        let Some(publisher) = self.relay.clone() else {
            return Ok(0);
        };
        let due = self
            .db
            .run(|conn| any_due(conn, &[RELAY], clock::now()).map_err(DbError::from))
            .await?;
        if !due {
            return Ok(0);
        }
        let (lease, limit) = (self.options.relay_lease, self.options.batch_size);
        let leased = self
            .db
            .write_alone(move |conn| lease_for_relay(conn, lease, limit))
            .await?;
        if leased.is_empty() {
            return Ok(0);
        }
        let mut envelopes = Vec::with_capacity(leased.len());
        let mut outcomes: Vec<(DueDelivery, String, Result<(), String>)> = Vec::new();
        let mut sendable = Vec::with_capacity(leased.len());
        for (delivery, row) in leased {
            let event_type = row.event_type.clone();
            match row.into_envelope() {
                Ok(envelope) => {
                    envelopes.push(envelope);
                    sendable.push((delivery, event_type));
                }
                Err(e) => outcomes.push((
                    delivery,
                    event_type,
                    Err(format!("the stored event does not parse: {e}")),
                )),
            }
        }
        let sent = publisher.publish(&envelopes).await;
        for ((delivery, event_type), result) in sendable.into_iter().zip(sent) {
            outcomes.push((delivery, event_type, result.map_err(|e| format!("{e:#}"))));
        }
        let tried = outcomes.len();
        for (_, event_type, result) in &outcomes {
            let result = if result.is_ok() {
                "confirmed"
            } else {
                "failed"
            };
            metrics::counter!("shop_bus_published_total", "event_type" => event_type.clone(), "result" => result)
                .increment(1);
        }
        // The broker's outages are everyone's: tried again soon, whatever the attempts.
        let max_backoff = self.options.max_backoff.min(Duration::from_secs(5));
        let marks: Vec<(String, i32, Option<String>)> = outcomes
            .into_iter()
            .map(|(delivery, event_type, result)| {
                // The publisher logs its link's outages (once down, once
                // back); each event it could not publish is only counted
                // (shop_bus_published_total{result="failed"}).
                if let Err(error) = &result {
                    tracing::debug!(event_id = %delivery.event_id, %event_type, %error, "could not publish an event to the broker; it is tried again");
                }
                (delivery.event_id, delivery.attempts, result.err())
            })
            .collect();
        self.db
            .write_alone(move |conn| mark_relayed(conn, &marks, max_backoff))
            .await?;
        Ok(tried)
    }

    /// Applies events a broker delivered to this process's `subscribers`
    /// (those of one context's queue), in one transaction: each subscriber
    /// handles the events of the types it takes and records them in the inbox
    /// in the same savepoint, so an event it already handled (the broker
    /// delivers again what was not acknowledged) is skipped. A subscriber's
    /// events are handled all at once when that works, else one by one.
    ///
    /// Returns one result per event once committed: `Err` names the
    /// subscriber that failed on it (its writes are undone, the other
    /// subscribers' are kept). The outer `Err` is the database's: nothing
    /// was committed.
    pub async fn handle_delivered(
        &self,
        subscribers: &[&'static str],
        envelopes: Vec<EventEnvelope>,
    ) -> Result<Vec<Result<(), String>>, DbError> {
        let handlers = self.handlers.clone();
        let routes = self.routes.clone();
        let mut subscribers = subscribers.to_vec();
        subscribers.sort_unstable();
        let results = self
            .db
            .write_alone(move |conn| {
                handle_with_inbox(conn, &handlers, &routes, &subscribers, &envelopes)
            })
            .await?;
        // Handlers publish events of their own (an order paid): the relay sends them now.
        self.wake.notify_one();
        Ok(results)
    }

    /// Deletes handled deliveries and delivered events older than `retention`; returns the events deleted.
    pub async fn prune(&self, retention: Duration) -> Result<usize, DbError> {
        let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        self.db
            .write_alone(move |conn| {
                let now = clock::now();
                prune(conn, now.checked_sub_signed(retention).unwrap_or(now)).map_err(DbError::from)
            })
            .await
    }

    /// Claims up to `batch_size` due deliveries and delivers them in one
    /// transaction, each handler in a savepoint of its own: one commit for
    /// the batch, yet a failing handler undoes only its own writes.
    pub async fn dispatch_batch(&self) -> Result<Vec<Dispatched>, DbError> {
        // A read first: when nothing is due (most wake-ups once the work is
        // done), no write transaction is opened at all.
        let names = self.names.clone();
        let due = self
            .db
            .run(move |conn| any_due(conn, &names, clock::now()).map_err(DbError::from))
            .await?;
        if !due {
            return Ok(Vec::new());
        }
        let (handlers, names) = (self.handlers.clone(), self.names.clone());
        let (max_backoff, limit) = (self.options.max_backoff, self.options.batch_size);
        let batch = self
            .db
            .write_alone(move |conn| deliver_batch(conn, &handlers, &names, max_backoff, limit))
            .await?;
        // Counted once committed.
        for dispatched in &batch {
            match dispatched {
                Dispatched::Handled {
                    event_type, lag, ..
                } => {
                    metrics::histogram!("shop_outbox_dispatch_lag_seconds")
                        .record(lag.as_secs_f64());
                    metrics::counter!("shop_outbox_deliveries_total", "event_type" => event_type.clone(), "result" => "handled")
                        .increment(1);
                }
                Dispatched::Failed { event_type, .. } => {
                    metrics::counter!("shop_outbox_deliveries_total", "event_type" => event_type.clone(), "result" => "failed")
                        .increment(1);
                }
            }
        }
        Ok(batch)
    }
}

#[derive(Debug, Queryable)]
struct DueDelivery {
    event_id: String,
    subscriber: String,
    attempts: i32,
}

#[derive(Debug, Clone, Queryable)]
struct EventRow {
    id: String,
    event_type: String,
    version: i32,
    payload: String,
    occurred_at: NaiveDateTime,
    request_id: Option<String>,
}

impl EventRow {
    fn into_envelope(self) -> Result<EventEnvelope, serde_json::Error> {
        Ok(EventEnvelope {
            id: EventId::from(self.id),
            event_type: self.event_type,
            version: u16::try_from(self.version).unwrap_or(u16::MAX),
            occurred_at: clock::to_utc(self.occurred_at),
            request_id: self.request_id,
            payload: serde_json::from_str(&self.payload)?,
        })
    }
}

/// Whether any delivery of these subscribers is due now (a read: it locks nothing).
fn any_due(
    conn: &mut AnyConnection,
    subscribers: &[&'static str],
    now: NaiveDateTime,
) -> QueryResult<bool> {
    use event_deliveries::dsl as d;
    let first: Option<String> = d::event_deliveries
        .filter(d::handled_at.is_null())
        .filter(d::subscriber.eq_any(subscribers))
        .filter(d::next_attempt_at.le(now))
        .select(d::event_id)
        .first(conn)
        .optional()?;
    Ok(first.is_some())
}

/// Takes the oldest due deliveries of these subscribers, locking them against other instances.
fn claim(
    conn: &mut AnyConnection,
    subscribers: &[&'static str],
    now: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<DueDelivery>> {
    use event_deliveries::dsl as d;
    let due = d::event_deliveries
        .filter(d::handled_at.is_null())
        .filter(d::subscriber.eq_any(subscribers))
        .filter(d::next_attempt_at.le(now))
        .order((
            d::next_attempt_at.asc(),
            d::event_id.asc(),
            d::subscriber.asc(),
        ))
        .select((d::event_id, d::subscriber, d::attempts))
        .limit(limit);
    crate::load_skip_locked!(conn, due)
}

fn deliver_batch(
    conn: &mut AnyConnection,
    handlers: &HashMap<&'static str, Arc<dyn EventHandler>>,
    subscribers: &[&'static str],
    max_backoff: Duration,
    limit: i64,
) -> Result<Vec<Dispatched>, DbError> {
    let now = clock::now();
    let due = claim(conn, subscribers, now, limit)?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    // The batch's events in one query; an event with several subscribers is read once.
    let ids: Vec<&str> = due.iter().map(|d| d.event_id.as_str()).collect();
    let events: HashMap<String, EventRow> = outbox_events::table
        .filter(outbox_events::id.eq_any(&ids))
        .load::<EventRow>(conn)?
        .into_iter()
        .map(|row| (row.id.clone(), row))
        .collect();
    // Each subscriber's share, in a fixed order (by name, then as claimed: by
    // publication), so that batches take their locks in the same order.
    let mut shares: Vec<(String, Vec<(DueDelivery, EventRow)>)> = Vec::new();
    for delivery in due {
        let row = events
            .get(&delivery.event_id)
            .cloned()
            .ok_or(DbError::Query(diesel::result::Error::NotFound))?;
        match shares
            .iter_mut()
            .find(|(name, _)| *name == delivery.subscriber)
        {
            Some((_, share)) => share.push((delivery, row)),
            None => shares.push((delivery.subscriber.clone(), vec![(delivery, row)])),
        }
    }
    shares.sort_by(|a, b| a.0.cmp(&b.0));
    let mut dispatched = Vec::new();
    for (subscriber, share) in shares {
        dispatched.extend(deliver_share(
            conn,
            &subscriber,
            share,
            handlers,
            max_backoff,
            now,
        )?);
    }
    Ok(dispatched)
}

/// Whether a handler failed because its statement lost a race (a deadlock,
/// a serialization failure, a lock wait): not the event's fault, and the
/// delivery's transaction may be gone with it (a MySQL deadlock rolls back
/// the whole transaction, savepoints and all). The unit must run again
/// whole, as the writer runs any unit that lost a race.
fn lost_a_race(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<diesel::result::Error>()
            .or_else(|| match cause.downcast_ref::<DbError>() {
                Some(DbError::Query(inner)) => Some(inner),
                _ => None,
            })
            .is_some_and(crate::storage::group_commit::is_retryable)
    })
}

/// Delivers one subscriber's events of a batch: all at once when that works,
/// else one at a time, so that a failing event holds up only itself.
fn deliver_share(
    conn: &mut AnyConnection,
    subscriber: &str,
    share: Vec<(DueDelivery, EventRow)>,
    handlers: &HashMap<&'static str, Arc<dyn EventHandler>>,
    max_backoff: Duration,
    now: NaiveDateTime,
) -> Result<Vec<Dispatched>, DbError> {
    let handler = handlers.get(subscriber);
    let envelopes: Result<Vec<EventEnvelope>, _> = share
        .iter()
        .map(|(_, row)| row.clone().into_envelope())
        .collect();
    if let (Some(handler), Ok(envelopes)) = (handler, envelopes) {
        let span = tracing::info_span!("events", subscriber = %subscriber, count = envelopes.len());
        let handled = span.in_scope(|| {
            conn.transaction::<_, anyhow::Error, _>(|conn| handler.handle_batch(conn, &envelopes))
        });
        if let Err(error) = &handled
            && lost_a_race(error)
        {
            // The batch runs again whole: nothing more may be written now
            // (on MySQL the transaction is gone, so whatever followed would
            // commit on its own, one event at a time).
            return Err(DbError::Aborted);
        }
        if handled.is_ok() {
            let ids: Vec<&str> = share.iter().map(|(due, _)| due.event_id.as_str()).collect();
            mark_handled(conn, subscriber, &ids, now)?;
            return Ok(share
                .into_iter()
                .map(|(delivery, row)| {
                    let dispatched = handled_now(delivery, &row);
                    if let Dispatched::Handled {
                        subscriber, lag, ..
                    } = &dispatched
                    {
                        event_span(&row, subscriber, 1).in_scope(|| {
                            tracing::debug!(lag_ms = lag.as_millis() as u64, "event handled");
                        });
                    }
                    dispatched
                })
                .collect());
        }
    }
    share
        .into_iter()
        .map(|(delivery, row)| deliver(conn, delivery, row, handlers, max_backoff, now))
        .collect()
}

/// Claims the relay's due deliveries and holds them for `lease` (a write
/// unit of its own, so that the lease is visible before anything is sent).
fn lease_for_relay(
    conn: &mut AnyConnection,
    lease: Duration,
    limit: i64,
) -> Result<Vec<(DueDelivery, EventRow)>, DbError> {
    use event_deliveries::dsl as d;
    let now = clock::now();
    let due = claim(conn, &[RELAY], now, limit)?;
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = due.iter().map(|d| d.event_id.as_str()).collect();
    diesel::update(
        d::event_deliveries
            .filter(d::subscriber.eq(RELAY))
            .filter(d::event_id.eq_any(&ids)),
    )
    .set(d::next_attempt_at.eq(now + chrono::Duration::from_std(lease).unwrap_or_default()))
    .execute(conn)?;
    let mut events: HashMap<String, EventRow> = outbox_events::table
        .filter(outbox_events::id.eq_any(&ids))
        .load::<EventRow>(conn)?
        .into_iter()
        .map(|row| (row.id.clone(), row))
        .collect();
    Ok(due
        .into_iter()
        .filter_map(|delivery| {
            let row = events.remove(&delivery.event_id)?;
            Some((delivery, row))
        })
        .collect())
}

/// Records what the broker said of the relayed events: `(event id, attempts
/// before, error)`; the sent ones in one statement, each failed one with
/// its backoff.
fn mark_relayed(
    conn: &mut AnyConnection,
    marks: &[(String, i32, Option<String>)],
    max_backoff: Duration,
) -> Result<(), DbError> {
    let now = clock::now();
    let sent: Vec<&str> = marks
        .iter()
        .filter(|(_, _, error)| error.is_none())
        .map(|(id, ..)| id.as_str())
        .collect();
    mark_handled(conn, RELAY, &sent, now)?;
    for (id, attempts, error) in marks {
        let Some(error) = error else { continue };
        let attempts = attempts + 1;
        record_failure(
            conn,
            id,
            RELAY,
            attempts,
            error,
            backoff(attempts, max_backoff),
            now,
        )?;
    }
    Ok(())
}

/// Records a failed attempt (the `attempts`-th) at a delivery: its error,
/// and when it is due again.
fn record_failure(
    conn: &mut AnyConnection,
    event_id: &str,
    subscriber: &str,
    attempts: i32,
    error: &str,
    backoff: Duration,
    now: NaiveDateTime,
) -> QueryResult<()> {
    use event_deliveries::dsl as d;
    let next = now + chrono::Duration::from_std(backoff).unwrap_or_default();
    let message: String = error.chars().take(2000).collect();
    diesel::update(d::event_deliveries.find((event_id, subscriber)))
        .set((
            d::attempts.eq(attempts),
            d::next_attempt_at.eq(next),
            d::last_error.eq(Some(message)),
        ))
        .execute(conn)?;
    Ok(())
}

/// See [`Dispatcher::handle_delivered`].
fn handle_with_inbox(
    conn: &mut AnyConnection,
    handlers: &HashMap<&'static str, Arc<dyn EventHandler>>,
    routes: &[(&'static str, &'static str)],
    subscribers: &[&'static str],
    envelopes: &[EventEnvelope],
) -> Result<Vec<Result<(), String>>, DbError> {
    use event_inbox::dsl as i;
    let now = clock::now();
    let mut results: Vec<Result<(), String>> = vec![Ok(()); envelopes.len()];
    // A message the broker delivered twice in one batch is handled once.
    let mut first_of: HashMap<&str, usize> = HashMap::new();
    let firsts: Vec<usize> = (0..envelopes.len())
        .filter(|&at| *first_of.entry(envelopes[at].id.as_str()).or_insert(at) == at)
        .collect();
    for &subscriber in subscribers {
        let Some(handler) = handlers.get(subscriber) else {
            continue;
        };
        let takes: Vec<usize> = firsts
            .iter()
            .copied()
            .filter(|&at| routes.contains(&(envelopes[at].event_type.as_str(), subscriber)))
            .collect();
        if takes.is_empty() {
            continue;
        }
        let ids: Vec<&str> = takes.iter().map(|&at| envelopes[at].id.as_str()).collect();
        let seen: Vec<String> = i::event_inbox
            .filter(i::subscriber.eq(subscriber))
            .filter(i::event_id.eq_any(&ids))
            .select(i::event_id)
            .load(conn)?;
        let fresh: Vec<usize> = takes
            .into_iter()
            .filter(|&at| !seen.iter().any(|id| id == envelopes[at].id.as_str()))
            .collect();
        if fresh.is_empty() {
            continue;
        }
        let batch: Vec<EventEnvelope> = fresh.iter().map(|&at| envelopes[at].clone()).collect();
        let span = tracing::info_span!("events", subscriber = %subscriber, count = batch.len());
        let handled = span.in_scope(|| {
            conn.transaction::<_, anyhow::Error, _>(|conn| {
                record_in_inbox(conn, subscriber, &batch, now)?;
                handler.handle_batch(conn, &batch)
            })
        });
        if handled.is_ok() {
            continue;
        }
        for at in fresh {
            let envelope = &envelopes[at];
            let span = tracing::info_span!(
                "event",
                event_id = %envelope.id,
                event_type = %envelope.event_type,
                subscriber = %subscriber,
                request_id = envelope.request_id.as_deref().unwrap_or(""),
            );
            let _entered = span.enter();
            let handled = conn.transaction::<_, anyhow::Error, _>(|conn| {
                record_in_inbox(conn, subscriber, std::slice::from_ref(envelope), now)?;
                handler.handle(conn, envelope)
            });
            if let Err(error) = handled {
                tracing::error!(error = format!("{error:#}"), "event handler failed");
                results[at] = Err(format!("{subscriber}: {error:#}"));
            }
        }
    }
    for at in 0..envelopes.len() {
        let first = first_of[envelopes[at].id.as_str()];
        if first != at {
            results[at] = results[first].clone();
        }
    }
    Ok(results)
}

fn record_in_inbox(
    conn: &mut AnyConnection,
    subscriber: &str,
    events: &[EventEnvelope],
    now: NaiveDateTime,
) -> QueryResult<()> {
    use event_inbox::dsl as i;
    let rows: Vec<_> = events
        .iter()
        .map(|event| {
            (
                i::event_id.eq(event.id.as_str()),
                i::subscriber.eq(subscriber),
                i::handled_at.eq(now),
            )
        })
        .collect();
    crate::insert_rows!(conn, i::event_inbox, rows)?;
    Ok(())
}

/// Marks a subscriber's deliveries handled, in one statement.
fn mark_handled(
    conn: &mut AnyConnection,
    subscriber: &str,
    ids: &[&str],
    now: NaiveDateTime,
) -> QueryResult<()> {
    use event_deliveries::dsl as d;
    if ids.is_empty() {
        return Ok(());
    }
    diesel::update(
        d::event_deliveries
            .filter(d::subscriber.eq(subscriber))
            .filter(d::event_id.eq_any(ids)),
    )
    .set((
        d::handled_at.eq(Some(now)),
        d::attempts.eq(d::attempts + 1),
        d::last_error.eq(None::<String>),
    ))
    .execute(conn)?;
    Ok(())
}

/// The span of one event's delivery: it carries the request id of the request that caused the event.
fn event_span(row: &EventRow, subscriber: &str, attempt: i32) -> tracing::Span {
    tracing::info_span!(
        "event",
        event_id = %row.id,
        event_type = %row.event_type,
        subscriber = %subscriber,
        request_id = row.request_id.as_deref().unwrap_or(""),
        attempt,
    )
}

fn handled_now(delivery: DueDelivery, row: &EventRow) -> Dispatched {
    let lag = (clock::now() - row.occurred_at)
        .to_std()
        .unwrap_or_default();
    Dispatched::Handled {
        event_type: row.event_type.clone(),
        subscriber: delivery.subscriber,
        lag,
    }
}

fn deliver(
    conn: &mut AnyConnection,
    due: DueDelivery,
    row: EventRow,
    handlers: &HashMap<&'static str, Arc<dyn EventHandler>>,
    max_backoff: Duration,
    now: NaiveDateTime,
) -> Result<Dispatched, DbError> {
    let event_type = row.event_type.clone();

    let span = event_span(&row, &due.subscriber, due.attempts + 1);
    let _entered = span.enter();

    let occurred = row.clone();
    let outcome = match (handlers.get(due.subscriber.as_str()), row.into_envelope()) {
        (None, _) => Err(anyhow::anyhow!(
            "no subscriber named {} is registered",
            due.subscriber
        )),
        (_, Err(e)) => Err(anyhow::anyhow!("the stored event does not parse: {e}")),
        // A savepoint: a failing handler's writes are undone, the failure is still recorded.
        (Some(handler), Ok(envelope)) => {
            conn.transaction::<_, anyhow::Error, _>(|conn| handler.handle(conn, &envelope))
        }
    };

    match outcome {
        // As in `deliver_share`: the unit runs again whole, nothing is recorded now.
        Err(error) if lost_a_race(&error) => Err(DbError::Aborted),
        Ok(()) => {
            mark_handled(conn, &due.subscriber, &[due.event_id.as_str()], now)?;
            tracing::debug!("event handled");
            Ok(handled_now(due, &occurred))
        }
        Err(error) => {
            let attempts = due.attempts + 1;
            let backoff = backoff(attempts, max_backoff);
            tracing::error!(
                error = format!("{error:#}"),
                retry_in_ms = backoff.as_millis() as u64,
                "event handler failed"
            );
            record_failure(
                conn,
                &due.event_id,
                &due.subscriber,
                attempts,
                &format!("{error:#}"),
                backoff,
                now,
            )?;
            Ok(Dispatched::Failed {
                event_type,
                subscriber: due.subscriber,
            })
        }
    }
}

/// 100 ms, 200 ms, 400 ms, ... up to `max`.
pub(crate) fn backoff(attempts: i32, max: Duration) -> Duration {
    let exponent = u32::try_from(attempts.clamp(1, 20) - 1).unwrap_or(0);
    Duration::from_millis(100)
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(max)
}

/// Deletes what the outbox no longer needs: deliveries handled before
/// `before`, then events older than that with no delivery left. Pending and
/// failing deliveries, and their events, are kept whatever their age.
/// Returns the number of events deleted.
pub fn prune(conn: &mut AnyConnection, before: NaiveDateTime) -> QueryResult<usize> {
    use diesel::dsl::{exists, not};
    diesel::delete(event_deliveries::table.filter(event_deliveries::handled_at.lt(before)))
        .execute(conn)?;
    diesel::delete(event_inbox::table.filter(event_inbox::handled_at.lt(before))).execute(conn)?;
    let undelivered =
        event_deliveries::table.filter(event_deliveries::event_id.eq(outbox_events::id));
    diesel::delete(
        outbox_events::table
            .filter(outbox_events::occurred_at.lt(before))
            .filter(not(exists(undelivered))),
    )
    .execute(conn)
}

/// Retires `subscriber` everywhere: its subscriptions, so that no delivery is
/// written for it any more, and its deliveries not yet handled, which would
/// otherwise wait for it (and keep their events) for ever. For a subscriber
/// no version of shop runs any more; a process that still runs it records
/// it again when it starts. Returns the pending deliveries dropped.
pub fn unsubscribe(conn: &mut AnyConnection, subscriber: &str) -> QueryResult<usize> {
    diesel::delete(
        event_subscriptions::table.filter(event_subscriptions::subscriber.eq(subscriber)),
    )
    .execute(conn)?;
    diesel::delete(
        event_deliveries::table
            .filter(event_deliveries::subscriber.eq(subscriber))
            .filter(event_deliveries::handled_at.is_null()),
    )
    .execute(conn)
}

/// Counts of the outbox's deliveries, for health and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Deliveries not yet handled.
    pub pending: i64,
    /// Of those, deliveries that failed at least once.
    pub failing: i64,
}

/// How much work waits in the outbox.
pub fn backlog(conn: &mut AnyConnection) -> QueryResult<Backlog> {
    use event_deliveries::dsl as d;
    let pending: i64 = d::event_deliveries
        .filter(d::handled_at.is_null())
        .count()
        .get_result(conn)?;
    let failing: i64 = d::event_deliveries
        .filter(d::handled_at.is_null())
        .filter(d::attempts.gt(0))
        .count()
        .get_result(conn)?;
    Ok(Backlog { pending, failing })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_limit() {
        let max = Duration::from_secs(60);
        assert_eq!(backoff(1, max), Duration::from_millis(100));
        assert_eq!(backoff(2, max), Duration::from_millis(200));
        assert_eq!(backoff(4, max), Duration::from_millis(800));
        assert_eq!(backoff(30, max), max);
    }

    /// A handler's error that is a lost race, however it is wrapped, makes
    /// the delivery run again whole; any other is the event's failure.
    #[test]
    fn a_lost_race_is_told_apart_from_a_failing_handler() {
        use diesel::result::{DatabaseErrorKind, Error as DieselError};
        let conflict = || {
            DieselError::DatabaseError(
                DatabaseErrorKind::SerializationFailure,
                Box::new("could not serialize access".to_owned()),
            )
        };
        assert!(lost_a_race(&anyhow::Error::from(conflict())));
        assert!(lost_a_race(&anyhow::Error::from(
            DbError::Query(conflict())
        )));
        assert!(lost_a_race(
            &anyhow::Error::from(conflict()).context("confirming reservations")
        ));
        assert!(!lost_a_race(&anyhow::anyhow!("the payload does not parse")));
        assert!(!lost_a_race(&anyhow::Error::from(DieselError::NotFound)));
    }
}

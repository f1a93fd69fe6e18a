//! Group commit: concurrent write units share one transaction and one commit.
//!
//! A *unit* is one use case's write (`Db::write`). Units queue here; a writer
//! thread, owning one connection, takes whatever is waiting (the first unit
//! at once, then every unit already queued, up to a bound: no timer ever
//! makes a lone write wait), and runs them in one transaction: first with
//! no savepoint between them (most units succeed); when one fails or loses a
//! race, the transaction is rolled back whole and the batch runs again, each
//! unit in a savepoint of its own (`run_batch`), so that:
//!
//! - a unit that fails rolls back to its savepoint alone and is answered
//!   with its error at once (it wrote nothing);
//! - the others are answered only after the commit is durable; if the commit
//!   fails, every one of them fails (503, safe to retry) and none was
//!   acknowledged;
//! - a unit that lost a deadlock, a serialization conflict or a lock wait is
//!   rolled back to its savepoint and runs again in the next batch (a bounded
//!   number of times), so the client never sees it.
//!
//! SQLite has one writer (the engine allows one); PostgreSQL a few, each with
//! its own connection. Reads never come here: they use the pool.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use diesel::Connection as _;
use diesel::connection::{
    AnsiTransactionManager, Instrumentation, InstrumentationEvent, TransactionManager,
};
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::storage::connection::{AnyConnection, DbError};

/// How many times a unit that lost a deadlock or a conflict runs again before its caller gets a 503.
const MAX_TRIES: u32 = 12;

/// Whether a failed statement lost a race that running it again may win:
/// a serialization failure, a deadlock, a lock wait that timed out, or
/// SQLite's lock held by another process for longer than the busy timeout.
/// (diesel reports only some of them as kinds, MySQL's deadlock 1213 among
/// them; the others are recognised by each engine's message. A MySQL
/// deadlock rolls the whole transaction back, not only the statement: the
/// batch's savepoints are gone, and every unit of it runs again.)
pub fn is_retryable(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        DieselError::DatabaseError(_, info) => {
            let message = info.message();
            message.contains("deadlock detected")
                || message.contains("lock timeout")
                || message.contains("database is locked")
                || message.contains("could not serialize")
                // MySQL and MariaDB: 1205, and 1020 (MariaDB's snapshot isolation).
                || message.contains("Lock wait timeout exceeded")
                || message.contains("Record has changed since last read")
        }
        _ => false,
    }
}

/// Notices, on a writer's connection, that a statement lost a race (see
/// [`is_retryable`]), so that its unit runs again; and counts statements
/// (the `shop_db_statements_total` metric) on every connection.
pub(crate) struct LostRaceDetector {
    statements: metrics::Counter,
    lost_race: Option<Arc<AtomicBool>>,
}

impl LostRaceDetector {
    pub(crate) fn new(role: &'static str, lost_race: Option<Arc<AtomicBool>>) -> Self {
        Self {
            statements: metrics::counter!("shop_db_statements_total", "connection" => role),
            lost_race,
        }
    }
}

impl Instrumentation for LostRaceDetector {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::FinishQuery { error, .. } = event {
            self.statements.increment(1);
            if let (Some(flag), Some(error)) = (&self.lost_race, error)
                && is_retryable(error)
            {
                flag.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// What a unit says of the rows it locks, so that batches take their locks
/// in one global order and two batches can never wait for each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locks {
    /// Rows no other unit contends for in an order that matters (new rows,
    /// one order's or one payment's row): such units run first in a batch.
    Unordered,
    /// Contended rows, by key (a context's own, such as product ids): within
    /// a batch these units run in the order of their keys, and a unit whose
    /// first key comes before what the batch already locked waits for the
    /// next batch. (Each unit locks its own rows in key order.)
    Keys(Vec<String>),
    /// Rows it cannot name in advance (event handlers, sweeps): it runs in a
    /// transaction of its own, and itself locks keyed rows in key order.
    Alone,
}

/// What became of one run of a unit.
enum Ran {
    /// It wrote; it waits for the commit.
    Wrote,
    /// It failed and rolled back; it was answered.
    Failed,
    /// It lost a race; it runs again in a later batch.
    Retry,
}

/// A unit, its result type erased so that units of every use case share a queue.
trait Unit: Send {
    /// Runs the work; the result is kept until [`Unit::commit`] or [`Unit::abort`].
    fn run(&mut self, conn: &mut AnyConnection) -> Result<(), ()>;
    /// Answers the caller now with the unit's own failure.
    fn answer_failure(self: Box<Self>);
    /// The commit is durable: answers with the result.
    fn commit(self: Box<Self>);
    /// Answers with `error` instead of the result (the commit failed, or it lost too many races).
    fn abort(self: Box<Self>, error: DbError);
    /// Counts one more try; returns whether it may run again.
    fn try_again(&mut self) -> bool;
    fn locks(&self) -> &Locks;
}

struct TypedUnit<T, E, F> {
    work: F,
    outcome: Option<Result<T, E>>,
    reply: tokio::sync::oneshot::Sender<Result<T, E>>,
    tries: u32,
    locks: Locks,
    span: tracing::Span,
    request_id: Option<String>,
}

impl<T, E, F> Unit for TypedUnit<T, E, F>
where
    F: FnMut(&mut AnyConnection) -> Result<T, E> + Send,
    T: Send,
    E: From<DbError> + Send,
{
    fn run(&mut self, conn: &mut AnyConnection) -> Result<(), ()> {
        let work = &mut self.work;
        // A unit that panics fails alone: the writer thread lives on.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.span.in_scope(|| {
                crate::web::request_id::in_blocking(self.request_id.clone(), || work(conn))
            })
        }))
        .unwrap_or_else(|_| {
            tracing::error!("a write unit panicked; it was rolled back");
            Err(E::from(DbError::Aborted))
        });
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        if ok { Ok(()) } else { Err(()) }
    }

    fn answer_failure(self: Box<Self>) {
        if let Some(outcome) = self.outcome {
            let _ = self.reply.send(outcome);
        }
    }

    fn commit(self: Box<Self>) {
        if let Some(outcome) = self.outcome {
            let _ = self.reply.send(outcome);
        }
    }

    fn abort(self: Box<Self>, error: DbError) {
        let _ = self.reply.send(Err(E::from(error)));
    }

    fn try_again(&mut self) -> bool {
        self.tries += 1;
        self.outcome = None;
        self.tries < MAX_TRIES
    }

    fn locks(&self) -> &Locks {
        &self.locks
    }
}

/// What the writers of one database did since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Transactions committed.
    pub commits: u64,
    /// Units committed.
    pub committed: u64,
    /// Units that failed and rolled back alone.
    pub failed: u64,
    /// Times a unit lost a race and was queued again.
    pub retried: u64,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    committed: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
}

impl Counters {
    fn add(&self, counter: &AtomicU64, metric: &'static str, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("shop_db_write_units_total", "result" => metric).increment(n);
    }
}

/// The queue of units waiting for a writer.
struct Queue {
    units: Mutex<VecDeque<Box<dyn Unit>>>,
    ready: Condvar,
    closed: AtomicBool,
    counters: Counters,
}

impl Queue {
    /// Waits for the first unit, then takes every one already waiting, up to `max`.
    fn take(&self, max: usize) -> Option<Vec<Box<dyn Unit>>> {
        let mut units = self.units.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if !units.is_empty() {
                // A unit that runs alone takes a batch of its own.
                let n = match units.iter().position(|u| *u.locks() == Locks::Alone) {
                    Some(0) => 1,
                    Some(alone) => alone.min(max),
                    None => units.len().min(max),
                };
                return Some(units.drain(..n).collect());
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            units = self
                .ready
                .wait(units)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn push(&self, unit: Box<dyn Unit>) {
        self.units
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(unit);
        self.ready.notify_one();
    }

    /// Puts units that lost a race at the head of the queue: they run in the next batch.
    fn push_front(&self, retry: Vec<Box<dyn Unit>>) {
        if retry.is_empty() {
            return;
        }
        let mut units = self.units.lock().unwrap_or_else(PoisonError::into_inner);
        for unit in retry.into_iter().rev() {
            units.push_front(unit);
        }
        drop(units);
        self.ready.notify_all();
    }
}

/// Opens a writer's connection.
pub(crate) type Connect = Arc<dyn Fn() -> Result<AnyConnection, DbError> + Send + Sync>;

/// The writers of one database. Dropping the last handle stops them once the queue is empty.
pub(crate) struct GroupCommit {
    queue: Arc<Queue>,
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.queue.closed.store(true, Ordering::Release);
        self.queue.ready.notify_all();
    }
}

impl GroupCommit {
    /// Starts `writers` threads, each with its own connection, sharing
    /// commits of up to `max_batch` units. With several writers, batches
    /// order their units by the keys of the rows they lock ([`Locks`]).
    pub(crate) fn start(
        writers: usize,
        max_batch: usize,
        connect: Connect,
    ) -> std::io::Result<Self> {
        let queue = Arc::new(Queue {
            units: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            closed: AtomicBool::new(false),
            counters: Counters::default(),
        });
        for n in 0..writers.max(1) {
            let (queue, connect) = (queue.clone(), connect.clone());
            std::thread::Builder::new()
                .name(format!("shop-db-writer-{n}"))
                .spawn(move || writer(&queue, max_batch.max(1), &connect))?;
        }
        Ok(Self { queue })
    }

    pub(crate) fn queued(&self) -> usize {
        self.queue
            .units
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub(crate) fn stats(&self) -> WriteStats {
        let c = &self.queue.counters;
        WriteStats {
            commits: c.commits.load(Ordering::Relaxed),
            committed: c.committed.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
        }
    }

    /// Queues a unit and waits until it is committed (or failed).
    pub(crate) async fn write<T, E, F>(&self, locks: Locks, work: F) -> Result<T, E>
    where
        F: FnMut(&mut AnyConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.queue.push(Box::new(TypedUnit {
            work,
            outcome: None,
            reply,
            tries: 0,
            locks: match locks {
                Locks::Keys(mut ids) => {
                    ids.sort_unstable();
                    ids.dedup();
                    Locks::Keys(ids)
                }
                other => other,
            },
            span: tracing::Span::current(),
            request_id: crate::web::request_id::current(),
        }));
        answer
            .await
            .unwrap_or_else(|_| Err(E::from(DbError::Aborted)))
    }
}

/// A writer thread: takes batches until the queue is closed and empty.
fn writer(queue: &Queue, max_batch: usize, connect: &Connect) {
    let lost_race = Arc::new(AtomicBool::new(false));
    let mut conn: Option<AnyConnection> = None;
    while let Some(batch) = queue.take(max_batch) {
        let batch = in_lock_order(batch, queue);
        let connection = match conn.take() {
            Some(c) => Ok(c),
            None => connect().map(|mut c| {
                c.set_instrumentation(LostRaceDetector::new("writer", Some(lost_race.clone())));
                c
            }),
        };
        let mut connection = match connection {
            Ok(c) => c,
            Err(error) => {
                tracing::warn!(%error, "a database writer cannot connect");
                for unit in batch {
                    unavailable_metric().increment(1);
                    unit.abort(DbError::Unavailable(error.to_string()));
                }
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        let healthy = run_batch(&mut connection, batch, &lost_race, queue);
        if healthy {
            conn = Some(connection);
        }
    }
}

/// Orders a batch so that it takes its keyed locks in ascending key order:
/// units that lock nothing contended first, then units by their first key;
/// a unit whose keys do not all come after those already taken in this
/// batch goes back to the queue, for the next batch. Every batch (and every
/// unit running alone) then locks keyed rows in one global
/// order, so no two of them, on any writer or instance, can deadlock.
fn in_lock_order(batch: Vec<Box<dyn Unit>>, queue: &Queue) -> Vec<Box<dyn Unit>> {
    if batch.len() < 2 {
        return batch;
    }
    let (mut keyed, mut ordered): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .partition(|u| matches!(u.locks(), Locks::Keys(_)));
    keyed.sort_by_key(|u| match u.locks() {
        Locks::Keys(ids) => ids.first().cloned(),
        _ => None,
    });
    let mut highest: Option<String> = None;
    let mut later = Vec::new();
    for unit in keyed {
        let Locks::Keys(ids) = unit.locks() else {
            continue;
        };
        let fits = match (&highest, ids.first()) {
            (Some(highest), Some(first)) => first > highest,
            _ => true,
        };
        if fits {
            if let Some(last) = ids.last() {
                highest = Some(last.clone());
            }
            ordered.push(unit);
        } else {
            later.push(unit);
        }
    }
    queue.push_front(later);
    ordered
}

/// Runs one batch in one transaction; returns whether the connection is
/// still usable. Optimistically first: the units run one after the other
/// with no savepoint between them (most units succeed, and a savepoint costs
/// two statements a unit, a round trip each on PostgreSQL). When one fails
/// or loses a race, the transaction is rolled back whole and the batch runs
/// again, each unit in its own savepoint, so that the failure is its alone.
fn run_batch(
    conn: &mut AnyConnection,
    mut batch: Vec<Box<dyn Unit>>,
    lost_race: &AtomicBool,
    queue: &Queue,
) -> bool {
    metrics::histogram!("shop_db_batch_units").record(batch.len() as f64);
    if batch.len() < 2 || begin(conn).is_err() {
        return run_guarded(conn, batch, lost_race, queue);
    }
    let mut clean = true;
    for unit in &mut batch {
        lost_race.store(false, Ordering::Relaxed);
        if unit.run(conn).is_err() || lost_race.load(Ordering::Relaxed) {
            clean = false;
            break;
        }
    }
    if clean {
        return commit_batch(conn, batch, Vec::new(), queue);
    }
    if let Err(error) = rollback(conn) {
        tracing::warn!(%error, "cannot roll back a batch");
        let mut again = Vec::new();
        for unit in batch {
            retry_or_abort(unit, &mut again);
        }
        queue.push_front(again);
        return false;
    }
    run_guarded(conn, batch, lost_race, queue)
}

/// Runs one batch in one transaction, each unit (when there are several) in
/// a savepoint of its own; returns whether the connection is still usable.
fn run_guarded(
    conn: &mut AnyConnection,
    batch: Vec<Box<dyn Unit>>,
    lost_race: &AtomicBool,
    queue: &Queue,
) -> bool {
    lost_race.store(false, Ordering::Relaxed);
    if let Err(error) = begin(conn) {
        return requeue_unbegun(batch, &error, queue);
    }
    let mut guarded = Guarded {
        conn,
        lost_race,
        counters: &queue.counters,
        // A lone unit needs no savepoint: the transaction is its own.
        shared: batch.len() > 1,
        wrote: Vec::with_capacity(batch.len()),
        again: Vec::new(),
        broken: false,
    };
    for unit in batch {
        guarded.run(unit);
    }
    guarded.finish(queue)
}

/// The transaction could not begin: a batch that lost a race runs again,
/// any other is answered as unavailable. Returns whether the connection is
/// still usable.
fn requeue_unbegun(batch: Vec<Box<dyn Unit>>, error: &DieselError, queue: &Queue) -> bool {
    let retry = is_retryable(error);
    tracing::warn!(%error, "a database writer could not begin a transaction");
    let mut again = Vec::new();
    for mut unit in batch {
        if retry && unit.try_again() {
            queue.counters.add(&queue.counters.retried, "retried", 1);
            again.push(unit);
        } else {
            unavailable_metric().increment(1);
            unit.abort(DbError::Unavailable(format!(
                "cannot begin a transaction: {error}"
            )));
        }
    }
    queue.push_front(again);
    retry
}

/// One guarded transaction in progress: the units that wrote (waiting for
/// the commit), those to run again in the next batch, and whether the
/// transaction can still go on.
struct Guarded<'a> {
    conn: &'a mut AnyConnection,
    lost_race: &'a AtomicBool,
    counters: &'a Counters,
    shared: bool,
    wrote: Vec<Box<dyn Unit>>,
    again: Vec<Box<dyn Unit>>,
    broken: bool,
}

impl Guarded<'_> {
    /// Runs one unit in its savepoint and settles what became of it.
    fn run(&mut self, unit: Box<dyn Unit>) {
        if self.broken {
            // The transaction cannot go on: whatever is left runs in the next batch.
            return retry_or_abort(unit, &mut self.again);
        }
        if self.shared
            && let Err(error) = savepoint(self.conn)
        {
            tracing::warn!(%error, "cannot open a savepoint");
            self.broken = true;
            return retry_or_abort(unit, &mut self.again);
        }
        let (unit, outcome) = self.attempt(unit);
        if let Some(outcome) = self.close_savepoint(outcome) {
            self.settle(unit, outcome);
        } else {
            retry_or_abort(unit, &mut self.again);
        }
    }

    /// Runs the unit once, and tells whether it wrote, failed or lost a race.
    fn attempt(&mut self, mut unit: Box<dyn Unit>) -> (Box<dyn Unit>, Ran) {
        self.lost_race.store(false, Ordering::Relaxed);
        let ran = unit.run(self.conn);
        let outcome = match (ran, self.lost_race.load(Ordering::Relaxed)) {
            (Ok(()), false) => Ran::Wrote,
            (_, true) => Ran::Retry,
            (Err(()), false) => Ran::Failed,
        };
        (unit, outcome)
    }

    /// Releases the unit's savepoint when it wrote, rolls back to it when
    /// not; notes a transaction that cannot go on. `None` when the unit
    /// wrote but its savepoint could not be released (it runs again).
    fn close_savepoint(&mut self, outcome: Ran) -> Option<Ran> {
        if !matches!(outcome, Ran::Wrote)
            && self.shared
            && let Err(error) = rollback_savepoint(self.conn)
        {
            tracing::warn!(%error, "cannot roll back a savepoint");
            self.broken = true;
        }
        if matches!(outcome, Ran::Retry) && lost_race_ends_transaction(self.conn) {
            // The units before this one were rolled back with it: none may be
            // committed, so they all run again (see `finish`).
            self.broken = true;
        } else if matches!(outcome, Ran::Wrote)
            && self.shared
            && let Err(error) = release_savepoint(self.conn)
        {
            tracing::warn!(%error, "cannot release a savepoint");
            self.broken = true;
            return None;
        }
        Some(outcome)
    }

    /// A unit that wrote waits for the commit; one that failed is answered
    /// now; one that lost a race runs again in the next batch (or, out of
    /// tries, is answered as unavailable).
    fn settle(&mut self, mut unit: Box<dyn Unit>, outcome: Ran) {
        match outcome {
            Ran::Wrote => self.wrote.push(unit),
            Ran::Failed => {
                self.counters.add(&self.counters.failed, "failed", 1);
                if self.shared || !self.broken {
                    unit.answer_failure();
                }
            }
            Ran::Retry => {
                if unit.try_again() {
                    self.counters.add(&self.counters.retried, "retried", 1);
                    self.again.push(unit);
                } else {
                    unavailable_metric().increment(1);
                    unit.abort(DbError::Unavailable(
                        "the write kept losing to concurrent writes".into(),
                    ));
                }
            }
        }
    }

    /// Commits what wrote, or, when there is nothing to commit (a lone unit
    /// that failed) or the transaction is unusable, rolls back and runs the
    /// units that wrote again. Returns whether the connection is still usable.
    fn finish(mut self, queue: &Queue) -> bool {
        if self.broken || (!self.shared && self.wrote.is_empty()) {
            let rolled_back = rollback(self.conn).is_ok();
            for unit in self.wrote {
                retry_or_abort(unit, &mut self.again);
            }
            queue.push_front(self.again);
            return rolled_back;
        }
        commit_batch(self.conn, self.wrote, self.again, queue)
    }
}

/// Commits the units that wrote and answers them; queues `again` for the
/// next batch. Returns whether the connection is still usable.
fn commit_batch(
    conn: &mut AnyConnection,
    wrote: Vec<Box<dyn Unit>>,
    mut again: Vec<Box<dyn Unit>>,
    queue: &Queue,
) -> bool {
    let counters = &queue.counters;
    match commit(conn) {
        Ok(()) => {
            counters.commits.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("shop_db_commits_total").increment(1);
            counters.add(&counters.committed, "committed", wrote.len() as u64);
            for unit in wrote {
                unit.commit();
            }
            queue.push_front(again);
            true
        }
        Err(error) => {
            let retry = is_retryable(&error);
            tracing::warn!(%error, units = wrote.len(), "a shared commit failed");
            let usable = rollback(conn).is_ok() || retry;
            for mut unit in wrote {
                if retry && unit.try_again() {
                    again.push(unit);
                } else {
                    unavailable_metric().increment(1);
                    unit.abort(DbError::Unavailable(format!("the commit failed: {error}")));
                }
            }
            queue.push_front(again);
            usable
        }
    }
}

/// Units answered 503 (the database could not take them).
fn unavailable_metric() -> metrics::Counter {
    metrics::counter!("shop_db_write_units_total", "result" => "unavailable")
}

/// Queues `unit` for the next batch, or, when it has run out of tries,
/// answers it as unavailable (503, safe to retry): never drops it unanswered.
fn retry_or_abort(mut unit: Box<dyn Unit>, again: &mut Vec<Box<dyn Unit>>) {
    if unit.try_again() {
        again.push(unit);
    } else {
        unavailable_metric().increment(1);
        unit.abort(DbError::Unavailable("the transaction failed".into()));
    }
}

/// Whether losing a race (see [`is_retryable`]) ended the whole transaction,
/// not only the statement. InnoDB rolls back a deadlock's whole transaction
/// (and, with `innodb_rollback_on_timeout`, a lock wait's): the savepoints
/// are gone, diesel tolerates the failed `ROLLBACK TO SAVEPOINT` after such
/// an error, and the statements after it would run outside any transaction.
/// PostgreSQL and SQLite undo only the statement; the savepoint stands.
fn lost_race_ends_transaction(conn: &AnyConnection) -> bool {
    match conn {
        AnyConnection::Sqlite(_) | AnyConnection::Postgres(_) => false,
        #[cfg(feature = "mysql")]
        AnyConnection::Mysql(_) => true,
    }
}

// The transaction and its savepoints go through diesel's transaction manager,
// so that a unit may open nested transactions of its own.

fn begin(conn: &mut AnyConnection) -> Result<(), DieselError> {
    match conn {
        // Take the write lock up front: a deferred transaction that reads and
        // then writes can fail at once when another process holds the lock.
        AnyConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
        }
        other => savepoint(other),
    }
}

/// Begins a transaction, or a savepoint inside the one begun.
fn savepoint(conn: &mut AnyConnection) -> Result<(), DieselError> {
    crate::per_backend!(conn, |c| <AnsiTransactionManager as TransactionManager<
        _,
    >>::begin_transaction(c))
}

fn release_savepoint(conn: &mut AnyConnection) -> Result<(), DieselError> {
    commit(conn)
}

fn rollback_savepoint(conn: &mut AnyConnection) -> Result<(), DieselError> {
    rollback(conn)
}

fn commit(conn: &mut AnyConnection) -> Result<(), DieselError> {
    crate::per_backend!(conn, |c| <AnsiTransactionManager as TransactionManager<
        _,
    >>::commit_transaction(c))
}

fn rollback(conn: &mut AnyConnection) -> Result<(), DieselError> {
    crate::per_backend!(conn, |c| <AnsiTransactionManager as TransactionManager<
        _,
    >>::rollback_transaction(c))
}

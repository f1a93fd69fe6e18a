//! The engines' own limits for the statements one createOrder runs, with no
//! HTTP and no application around them:
//!
//! - SQLite: on one connection in one thread (diesel, prepared statements
//!   cached, as shop talks to it), (a) a commit per order and (b) 64 orders a
//!   commit with no savepoint between its units, as the seam batches when
//!   no unit fails (it adds a savepoint per unit only after a failure);
//! - PostgreSQL: pgbench running the same statements as a custom script,
//!   32 clients, over 10,000 products;
//! - MySQL/MariaDB: the same statements in MySQL's dialect
//!   ([`RESERVE_MYSQL`]) from 32 client threads over diesel (as pgbench:
//!   a commit per order, a delivery batch one time in 65), over 10,000
//!   products (see the MySQL section below for why not mariadb-slap).
//!
//! The statements live in ONE place, [`RESERVE`] (and [`RESERVE_MYSQL`]),
//! [`PLACE`] and [`DELIVER`]: the SQLite and MySQL loops bind them, the
//! pgbench script is generated from them.
//! Update them here when the write path changes. Parameters are written
//! `:name` (pgbench's syntax); `IN (:list)` is a list (SQLite and MySQL: `IN (?, ?, ...)`,
//! PostgreSQL: `= ANY (CAST(:list AS TEXT[]))`, as diesel's `eq_any` does).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::NaiveDateTime;
use diesel::backend::Backend;
#[cfg(feature = "mysql")]
use diesel::mysql::MysqlConnection;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::LoadQuery;
use diesel::query_dsl::methods::ExecuteDsl;
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, HasSqlType, Integer, Nullable, Text, Timestamp, Untyped};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, QueryResult, QueryableByName, RunQueryDsl, connection::SimpleConnection};
use serde_json::{Value, json};

use crate::load::round;

/// Products the ceilings spread their orders over (ids "1" to "10000"), like the order scenario.
pub const PRODUCTS: i64 = 10_000;
/// The subscriber that confirms reservations (one delivery row per order):
/// the only subscription of `order.placed` ([`SUBSCRIPTION`]).
pub const SUBSCRIBER: &str = "product.stock-reservations";
/// The subscription row publishing copies deliveries from (shop records its
/// subscriptions in `event_subscriptions` when it starts; the ceilings' databases
/// are only migrated, so they get this row, the one an order's event joins).
pub const SUBSCRIPTION: &str = "INSERT INTO event_subscriptions (event_type, subscriber, registered_at) \
     VALUES ('order.placed', 'product.stock-reservations', '2026-01-01 00:00:00')";
/// The subscribers a shop process runs, whose deliveries its dispatcher claims
/// (the `NAME`s of the domain crates' event handlers).
pub const SUBSCRIBERS: [&str; 4] = [
    "product.stock-reservations",
    "order.payment-outcomes",
    "payment.refunds",
    "payment.trade-closing",
];
/// Orders a delivery claim takes at most, and orders per shared commit in (b).
pub const BATCH: usize = 64;

/// The reservation unit (product context, through the `Inventory` port).
pub const RESERVE: [&str; 3] = [
    "INSERT INTO stock_reservations (id, status, hold_until, created_at, updated_at) \
     VALUES (:oid, 'held', :hold, :now, :now) ON CONFLICT (id) DO NOTHING",
    // pgbench keeps this row's columns in :price and :currency (\gset)
    "UPDATE products SET stock = stock - :qty, updated_at = :now \
     WHERE id = :pid AND stock >= :qty RETURNING price_minor AS price, currency",
    "INSERT INTO stock_reservation_lines (reservation_id, product_id, quantity, unit_price_minor, currency) \
     VALUES (:oid, :pid, :qty, :price, :currency)",
];

/// The reservation unit as the seam runs it on MySQL and MariaDB, which
/// have neither `ON CONFLICT` nor `UPDATE ... RETURNING`
/// (`insert_ignoring_duplicates!` and `update_returning!` in
/// shared-kernel/src/storage/db.rs): `INSERT IGNORE`, and the `UPDATE` then a
/// `SELECT` of the row it changed, in the same transaction.
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
pub const RESERVE_MYSQL: [&str; 4] = [
    "INSERT IGNORE INTO stock_reservations (id, status, hold_until, created_at, updated_at) \
     VALUES (:oid, 'held', :hold, :now, :now)",
    "UPDATE products SET stock = stock - :qty, updated_at = :now \
     WHERE id = :pid AND stock >= :qty",
    "SELECT price_minor AS price, currency FROM products WHERE id = :pid",
    RESERVE[2],
];

/// The order unit (order context): the order, its line, its event and the event's delivery row.
pub const PLACE: [&str; 4] = [
    "INSERT INTO orders (id, user_id, status, amount_minor, currency, created_at, updated_at, expires_at) \
     VALUES (:oid, :uid, 'pending_payment', :amount, :currency, :now, :now, :expires)",
    "INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price_minor) \
     VALUES (:oid, 1, :pid, :qty, :price)",
    "INSERT INTO outbox_events (id, event_type, version, payload, occurred_at, request_id) \
     VALUES (:eid, 'order.placed', 1, :payload, :now, :rid)",
    // a delivery per subscription of the event's type, copied by the database
    // (shop: `IN (?)` / `= ANY($1)` over the batch's event ids; here the one id)
    "INSERT INTO event_deliveries (event_id, subscriber, attempts, next_attempt_at) \
     SELECT outbox_events.id, event_subscriptions.subscriber, 0, outbox_events.occurred_at \
     FROM outbox_events INNER JOIN event_subscriptions \
     ON event_subscriptions.event_type = outbox_events.event_type WHERE outbox_events.id = :eid",
];

/// Event delivery, amortised: one batch of up to [`BATCH`] due deliveries.
/// The claim takes `FOR UPDATE SKIP LOCKED` on PostgreSQL ([`PG_CLAIM_LOCK`]).
pub const DELIVER: [&str; 4] = [
    "SELECT event_id, subscriber, attempts FROM event_deliveries \
     WHERE handled_at IS NULL AND subscriber IN (:subs) AND next_attempt_at <= :now \
     ORDER BY next_attempt_at, event_id, subscriber LIMIT 64",
    "SELECT id, event_type, version, payload, occurred_at, request_id FROM outbox_events WHERE id IN (:eids)",
    "UPDATE stock_reservations SET status = 'confirmed', updated_at = :now WHERE id IN (:rids) AND status = 'held'",
    "UPDATE event_deliveries SET handled_at = :now, attempts = attempts + 1 \
     WHERE subscriber = :sub AND event_id IN (:eids)",
];
/// (MySQL 8 and MariaDB 10.6 take it too.)
pub const PG_CLAIM_LOCK: &str = " FOR UPDATE SKIP LOCKED";

/// Statements per order the lists above run: 7, plus 4 per delivery batch.
pub fn statements_per_order() -> f64 {
    (RESERVE.len() + PLACE.len()) as f64 + DELIVER.len() as f64 / BATCH as f64
}

/// The same on MySQL: 8 (the reserved price is a statement of its own), plus 4 per batch.
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
pub fn statements_per_order_mysql() -> f64 {
    (RESERVE_MYSQL.len() + PLACE.len()) as f64 + DELIVER.len() as f64 / BATCH as f64
}

/// Creates the schema (with the binary under test: `shop migrate`) and the products.
pub fn migrate(shop: &Path, database_url: &str) -> Result<()> {
    let out = Command::new(shop)
        .arg("migrate")
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .output()
        .with_context(|| format!("cannot run {} migrate", shop.display()))?;
    if !out.status.success() {
        bail!(
            "shop migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

const SEED: &str = "INSERT INTO products (id, name, description, price_minor, currency, stock, created_at, updated_at) ";

// ---------------------------------------------------------------- SQLite --

/// A bound value.
enum Arg {
    Text(String),
    Int(i64),
    Time(NaiveDateTime),
}

/// One statement with `?` placeholders and its values; prepared once per
/// connection and cached by its text (as diesel caches shop's queries).
struct Stmt<'a> {
    sql: &'a str,
    args: Vec<&'a Arg>,
}

impl QueryId for Stmt<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Stmt<'_> {
    type SqlType = Untyped;
}

impl<DB> QueryFragment<DB> for Stmt<'_>
where
    DB: Backend + HasSqlType<Text> + HasSqlType<BigInt> + HasSqlType<Timestamp>,
    String: ToSql<Text, DB>,
    i64: ToSql<BigInt, DB>,
    NaiveDateTime: ToSql<Timestamp, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let mut args = self.args.iter();
        for (i, part) in self.sql.split('?').enumerate() {
            if i > 0 {
                match args.next().copied() {
                    Some(Arg::Text(s)) => out.push_bind_param::<Text, _>(s)?,
                    Some(Arg::Int(n)) => out.push_bind_param::<BigInt, _>(n)?,
                    Some(Arg::Time(t)) => out.push_bind_param::<Timestamp, _>(t)?,
                    None => {
                        return Err(diesel::result::Error::QueryBuilderError(
                            "more placeholders than values".into(),
                        ));
                    }
                }
            }
            out.push_sql(part);
        }
        Ok(())
    }
}

impl RunQueryDsl<SqliteConnection> for Stmt<'_> {}
#[cfg(feature = "mysql")]
impl RunQueryDsl<MysqlConnection> for Stmt<'_> {}

/// A statement of the lists rendered with positional parameters (SQLite, MySQL): `?` for each `:name`, in order.
struct Rendered {
    sql: String,
    names: Vec<String>,
}

/// `:name` → `?`; `IN (:list)` → `IN (?, ?, ...)` with `list_len` placeholders.
fn render_positional(sql: &str, list_len: usize) -> Rendered {
    let mut out = String::with_capacity(sql.len());
    let mut names = Vec::new();
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c == ':' && chars.peek().is_some_and(|(_, n)| n.is_ascii_alphabetic()) {
            let mut name = String::new();
            while let Some((_, n)) = chars.peek().copied() {
                if n.is_ascii_alphanumeric() || n == '_' {
                    name.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            if out.ends_with("IN (") {
                out.push_str(&vec!["?"; list_len.max(1)].join(", "));
            } else {
                out.push('?');
            }
            names.push(name);
        } else {
            out.push(c);
        }
    }
    Rendered { sql: out, names }
}

/// The values of one order (and of a delivery batch), by parameter name.
#[derive(Default)]
struct Vars(Vec<(&'static str, Arg)>);

impl Vars {
    fn set(&mut self, name: &'static str, value: Arg) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name, value)),
        }
    }

    fn get(&self, name: &str) -> QueryResult<&Arg> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| {
                diesel::result::Error::QueryBuilderError(format!("no value for :{name}").into())
            })
    }
}

/// Binds `vars` to a rendered statement; list parameters take `lists`.
fn stmt<'a>(
    r: &'a Rendered,
    vars: &'a Vars,
    lists: &'a [(&str, Vec<Arg>)],
) -> QueryResult<Stmt<'a>> {
    let mut args = Vec::new();
    for name in &r.names {
        match lists.iter().find(|(n, _)| n == name) {
            Some((_, values)) => args.extend(values.iter()),
            None => args.push(vars.get(name)?),
        }
    }
    Ok(Stmt { sql: &r.sql, args })
}

#[derive(QueryableByName)]
struct Taken {
    #[diesel(sql_type = BigInt)]
    price: i64,
    #[diesel(sql_type = Text)]
    currency: String,
}

#[derive(QueryableByName)]
#[allow(dead_code)] // read as shop reads it
struct Due {
    #[diesel(sql_type = Text)]
    event_id: String,
    #[diesel(sql_type = Text)]
    subscriber: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

#[derive(QueryableByName)]
#[allow(dead_code)] // read as shop reads it
struct EventRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    event_type: String,
    #[diesel(sql_type = Integer)]
    version: i32,
    #[diesel(sql_type = Text)]
    payload: String,
    #[diesel(sql_type = Timestamp)]
    occurred_at: NaiveDateTime,
    #[diesel(sql_type = Nullable<Text>)]
    request_id: Option<String>,
}

/// A small, fast, deterministic generator for product picks.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

impl Vars {
    fn text(&self, name: &str) -> QueryResult<&str> {
        match self.get(name)? {
            Arg::Text(s) => Ok(s),
            _ => Err(diesel::result::Error::QueryBuilderError(
                format!(":{name} is not text").into(),
            )),
        }
    }
}

/// The values of one order before its reservation: product `pid`, user
/// `bench-{user}`, UUIDv7 order and event ids as shop makes them, now.
fn order_vars(pid: u64, user: u64, seq: u64) -> Vars {
    let now = chrono::Utc::now().naive_utc();
    let mut vars = Vars::default();
    vars.set("oid", Arg::Text(uuid::Uuid::now_v7().to_string()));
    vars.set("eid", Arg::Text(uuid::Uuid::now_v7().to_string()));
    vars.set("pid", Arg::Text(pid.to_string()));
    vars.set("uid", Arg::Text(format!("bench-{user}")));
    vars.set("qty", Arg::Int(1));
    vars.set("now", Arg::Time(now));
    vars.set("hold", Arg::Time(now + chrono::Duration::minutes(16)));
    vars.set("expires", Arg::Time(now + chrono::Duration::minutes(15)));
    vars.set("sub", Arg::Text(SUBSCRIBER.to_owned()));
    vars.set("rid", Arg::Text(format!("bench-{seq}")));
    vars
}

/// After the reservation: its price, and the order's amount and event (as
/// shop writes it: shared-kernel's OrderPlaced).
fn priced(vars: &mut Vars, taken: Taken) -> QueryResult<()> {
    let Arg::Time(now) = vars.get("now")? else {
        return Err(diesel::result::Error::QueryBuilderError(
            ":now is not a time".into(),
        ));
    };
    let payload = json!({"orderId": vars.text("oid")?, "userId": vars.text("uid")?,
        "lines": [{"productId": vars.text("pid")?, "quantity": 1, "unitPrice": taken.price}],
        "amount": taken.price, "currency": taken.currency,
        "expiresAt": (*now + chrono::Duration::minutes(15)).and_utc()});
    vars.set("payload", Arg::Text(payload.to_string()));
    vars.set("price", Arg::Int(taken.price));
    vars.set("amount", Arg::Int(taken.price));
    vars.set("currency", Arg::Text(taken.currency));
    Ok(())
}

/// A statement that answers rows: the one that yields the reserved price
/// (`UPDATE ... RETURNING`, or MySQL's `SELECT` after its `UPDATE`).
fn answers_rows(sql: &str) -> bool {
    sql.starts_with("SELECT") || sql.contains(" RETURNING ")
}

/// The reservation unit's statements, then the order unit's, on any
/// connection (the caller owns the transaction). Every statement that
/// writes must write exactly one row, as it does in shop.
fn reserve_and_place<C>(
    conn: &mut C,
    reserve: &[Rendered],
    place: &[Rendered],
    vars: &mut Vars,
) -> QueryResult<()>
where
    C: Connection,
    for<'a> Stmt<'a>: RunQueryDsl<C> + ExecuteDsl<C> + LoadQuery<'a, C, Taken>,
{
    let one = |n: usize, sql: &str| {
        if n == 1 {
            Ok(())
        } else {
            Err(diesel::result::Error::QueryBuilderError(
                format!("{n} rows written, not one: {sql}").into(),
            ))
        }
    };
    for r in reserve {
        if answers_rows(&r.sql) {
            let taken: Vec<Taken> = stmt(r, vars, &[])?.load(conn)?;
            let taken = taken
                .into_iter()
                .next()
                .ok_or(diesel::result::Error::NotFound)?;
            priced(vars, taken)?;
        } else {
            one(stmt(r, vars, &[])?.execute(conn)?, &r.sql)?;
        }
    }
    for r in place {
        one(stmt(r, vars, &[])?.execute(conn)?, &r.sql)?;
    }
    Ok(())
}

/// One delivery batch on any connection (the caller owns the transaction):
/// claim with `claim` (the backend's form of [`DELIVER`]'s first), read the
/// events, confirm their reservations, mark them handled; how many it handled.
fn deliver<C>(conn: &mut C, claim: &str) -> QueryResult<usize>
where
    C: Connection,
    for<'a> Stmt<'a>:
        RunQueryDsl<C> + ExecuteDsl<C> + LoadQuery<'a, C, Due> + LoadQuery<'a, C, EventRow>,
{
    let mut vars = Vars::default();
    vars.set("now", Arg::Time(chrono::Utc::now().naive_utc()));
    vars.set("sub", Arg::Text(SUBSCRIBER.to_owned()));
    let subs = [(
        "subs",
        SUBSCRIBERS
            .iter()
            .map(|s| Arg::Text((*s).to_owned()))
            .collect(),
    )];
    let claim = render_positional(claim, SUBSCRIBERS.len());
    let due: Vec<Due> = stmt(&claim, &vars, &subs)?.load(conn)?;
    if due.is_empty() {
        return Ok(0);
    }
    let n = due.len();
    let eids: Vec<Arg> = due.into_iter().map(|d| Arg::Text(d.event_id)).collect();
    let lists = [("eids", eids)];
    let events: Vec<EventRow> =
        stmt(&render_positional(DELIVER[1], n), &vars, &lists)?.load(conn)?;
    let rids: Vec<Arg> = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.payload).ok())
        .filter_map(|p| p["orderId"].as_str().map(|s| Arg::Text(s.to_owned())))
        .collect();
    let rids_len = rids.len();
    let [(_, eids)] = lists;
    let lists = [("eids", eids), ("rids", rids)];
    stmt(&render_positional(DELIVER[2], rids_len), &vars, &lists)?.execute(conn)?;
    stmt(&render_positional(DELIVER[3], n), &vars, &lists)?.execute(conn)?;
    Ok(n)
}

struct SqliteCeiling {
    conn: SqliteConnection,
    reserve: Vec<Rendered>,
    place: Vec<Rendered>,
    rng: XorShift,
    orders: u64,
}

impl SqliteCeiling {
    fn open(path: &Path) -> Result<Self> {
        let path = path.to_str().context("the SQLite path is not UTF-8")?;
        let mut conn = SqliteConnection::establish(path)?;
        // shop's pragmas (shared-kernel/src/storage/db.rs)
        conn.batch_execute(
            "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
             PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )?;
        Ok(Self {
            conn,
            reserve: RESERVE.iter().map(|s| render_positional(s, 0)).collect(),
            place: PLACE.iter().map(|s| render_positional(s, 0)).collect(),
            rng: XorShift(0x9e37_79b9_7f4a_7c15),
            orders: 0,
        })
    }

    fn seed(&mut self) -> Result<()> {
        self.conn.batch_execute(&format!(
            "BEGIN IMMEDIATE; \
             WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {PRODUCTS}) \
             {SEED} SELECT CAST(n AS TEXT), 'Product ' || n, 'benchmark', 100 + n % 9000, 'CNY', 1000000000, \
             '2026-01-01 00:00:00', '2026-01-01 00:00:00' FROM g; {SUBSCRIPTION}; COMMIT;"
        ))?;
        Ok(())
    }

    /// The reservation unit, then the order unit, of one order.
    fn order(&mut self) -> QueryResult<()> {
        let pid = self.rng.next() % PRODUCTS as u64 + 1;
        let mut vars = order_vars(pid, self.orders % 32, self.orders + 1);
        self.orders += 1;
        reserve_and_place(&mut self.conn, &self.reserve, &self.place, &mut vars)
    }

    /// One delivery batch: claim, read the events, confirm their reservations, mark them handled.
    fn deliver(&mut self) -> QueryResult<usize> {
        deliver(&mut self.conn, DELIVER[0])
    }

    /// (a) a commit per order; a delivery batch its own commit every [`BATCH`] orders.
    fn plain(&mut self, duration: Duration) -> Result<u64> {
        let deadline = Instant::now() + duration;
        let mut done = 0u64;
        while Instant::now() < deadline {
            for _ in 0..BATCH {
                self.conn.batch_execute("BEGIN IMMEDIATE")?;
                self.order()?;
                self.conn.batch_execute("COMMIT")?;
                done += 1;
            }
            self.conn.batch_execute("BEGIN IMMEDIATE")?;
            self.deliver()?;
            self.conn.batch_execute("COMMIT")?;
        }
        Ok(done)
    }

    /// (b) [`BATCH`] orders a commit, as the seam batches units when none fails: no savepoints.
    fn batched(&mut self, duration: Duration) -> Result<u64> {
        let deadline = Instant::now() + duration;
        let mut done = 0u64;
        while Instant::now() < deadline {
            self.conn.batch_execute("BEGIN IMMEDIATE")?;
            self.deliver()?; // the previous batch's events, as the dispatcher would
            for _ in 0..BATCH {
                self.order()?;
                done += 1;
            }
            self.conn.batch_execute("COMMIT")?;
        }
        Ok(done)
    }

    fn count(&mut self, sql: &str) -> Result<i64> {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let rows: Vec<N> = diesel::sql_query(sql).load(&mut self.conn)?;
        Ok(rows.first().map_or(0, |r| r.n))
    }
}

/// This thread's time on a CPU and waiting for one (seconds), from
/// /proc/thread-self/schedstat: on a shared machine, the rate per CPU-second
/// is what the engine does when it has a core to itself.
fn thread_times() -> Option<(f64, f64)> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let mut f = s.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some((f.next()?? / 1e9, f.next()?? / 1e9))
}

/// Runs one variant; its figures.
fn timed(orders: impl FnOnce() -> Result<u64>) -> Result<Value> {
    let (t, cpu) = (Instant::now(), thread_times());
    let n = orders()?;
    let seconds = t.elapsed().as_secs_f64();
    let used = cpu
        .zip(thread_times())
        .map(|((c0, w0), (c1, w1))| (c1 - c0, w1 - w0));
    Ok(json!({
        "orders": n,
        "seconds": round(seconds),
        "per_second": round(n as f64 / seconds),
        "cpu_seconds": used.map(|u| round(u.0)),
        "waited_for_cpu_seconds": used.map(|u| round(u.1)),
        "per_cpu_second": used.filter(|u| u.0 > 0.0).map(|u| round(n as f64 / u.0)),
    }))
}

/// The SQLite ceilings on a fresh file: (a) and (b), `duration` each.
pub fn sqlite(shop: &Path, file: &Path, duration: Duration) -> Result<Value> {
    migrate(shop, &format!("sqlite://{}", file.display()))?;
    let mut c = SqliteCeiling::open(file)?;
    c.seed()?;
    let plain_figures = timed(|| c.plain(duration))?;
    let batched_figures = timed(|| c.batched(duration))?;
    let plain = plain_figures["orders"].as_u64().unwrap_or(0);
    let batched = batched_figures["orders"].as_u64().unwrap_or(0);
    // every order wrote its rows, and the stock they took is gone
    let orders = c.count("SELECT COUNT(*) AS n FROM orders")?;
    let taken = c.count(&format!(
        "SELECT {PRODUCTS} * 1000000000 - SUM(stock) AS n FROM products"
    ))?;
    let lines = c.count("SELECT COUNT(*) AS n FROM stock_reservation_lines")?;
    let handled =
        c.count("SELECT COUNT(*) AS n FROM event_deliveries WHERE handled_at IS NOT NULL")?;
    let total = (plain + batched) as i64;
    if orders != total || taken != total || lines != total {
        bail!(
            "SQLite ceiling: {total} orders run, but {orders} orders, {lines} reservation lines, {taken} units taken"
        );
    }
    Ok(json!({
        "statements_per_order": round(statements_per_order()),
        "commit_per_order": plain_figures,
        "batched_64": batched_figures,
        "deliveries_handled": handled,
    }))
}

// ------------------------------------------------------------ PostgreSQL --

/// pgbench on PATH or in Debian's /usr/lib/postgresql/*/bin.
pub fn find_pgbench() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("pgbench"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin/pgbench"))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        found.pop()
    })
}

/// `IN (:list)` → `= ANY (CAST(:list AS TEXT[]))`.
fn render_pg(sql: &str) -> String {
    let mut out = sql.to_owned();
    while let Some(at) = out.find(" IN (:") {
        let rest = &out[at + 6..];
        let Some(end) = rest.find(')') else { break };
        let name = rest[..end].to_owned();
        out = format!(
            "{} = ANY (CAST(:{name} AS TEXT[])){}",
            &out[..at],
            &rest[end + 1..]
        );
    }
    out
}

/// The two pgbench scripts: an order (both units, one transaction; pgbench
/// has no savepoint batching) and a delivery batch, weighted 64 to 1.
pub fn pgbench_scripts() -> (String, String) {
    let mut order = String::from(
        "-- generated by shop-bench from tests/bench/src/ceiling.rs\n\
         \\set seq :seq + 1\n\
         \\set oid (1000 + :client_id) * 1000000000000 + :seq\n\
         \\set eid :oid\n\
         \\set pid random(1, 10000)\n\
         BEGIN;\n",
    );
    for (i, sql) in RESERVE.iter().enumerate() {
        let end = if i == 1 { " \\gset" } else { ";" };
        order.push_str(&format!("{}{end}\n", render_pg(sql)));
    }
    order.push_str("\\set amount :price * :qty\n");
    for sql in PLACE {
        order.push_str(&format!("{};\n", render_pg(sql)));
    }
    order.push_str("COMMIT;\n");

    // The claim keeps the claimed ids in :eids (and :rids: here an event's id is its order's).
    let claim = format!("{}{PG_CLAIM_LOCK}", render_pg(DELIVER[0]));
    let mut deliver = format!(
        "-- generated by shop-bench from tests/bench/src/ceiling.rs\n\
         BEGIN;\n\
         SELECT COALESCE(array_agg(event_id), '{{}}') AS eids, COALESCE(array_agg(event_id), '{{}}') AS rids \
         FROM ({claim}) due \\gset\n"
    );
    for sql in &DELIVER[1..] {
        deliver.push_str(&format!("{};\n", render_pg(sql)));
    }
    deliver.push_str("COMMIT;\n");
    (order, deliver)
}

/// pgbench with the generated scripts, 32 clients, `seconds`, on a fresh database `url`.
pub fn postgres(shop: &Path, pgbench: &Path, url: &str, dir: &Path, seconds: u64) -> Result<Value> {
    use diesel::pg::PgConnection;
    migrate(shop, url)?;
    let mut conn = PgConnection::establish(url)?;
    conn.batch_execute(&format!(
        "{SEED} SELECT g::text, 'Product ' || g, 'benchmark', 100 + g % 9000, 'CNY', 1000000000, \
         now(), now() FROM generate_series(1, {PRODUCTS}) g; {SUBSCRIPTION}; ANALYZE;"
    ))?;
    let (order, deliver) = pgbench_scripts();
    let order_file = dir.join("ceiling_order.sql");
    let deliver_file = dir.join("ceiling_deliver.sql");
    std::fs::write(&order_file, &order)?;
    std::fs::write(&deliver_file, &deliver)?;
    let now = chrono::Utc::now().naive_utc();
    let ts = |t: NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
    let payload = json!({"orderId": "0".repeat(16), "userId": "bench-0",
        "lines": [{"productId": "1", "quantity": 1, "unitPrice": 100}],
        "amount": 100, "currency": "CNY", "expiresAt": now.and_utc()})
    .to_string();
    let cpu = crate::load::CpuMeter::start();
    let out = Command::new(pgbench)
        .args(["-n", "-M", "prepared", "-c", "32", "-j", "2"])
        .args(["-T", &seconds.max(1).to_string()])
        .arg("-f")
        .arg(format!("{}@{BATCH}", order_file.display()))
        .arg("-f")
        .arg(format!("{}@1", deliver_file.display()))
        .args([
            "-D",
            "seq=0",
            "-D",
            "qty=1",
            "-D",
            "uid=bench-user",
            "-D",
            "rid=bench",
        ])
        .args(["-D", &format!("sub={SUBSCRIBER}")])
        .args(["-D", &format!("subs={{{}}}", SUBSCRIBERS.join(","))])
        .args(["-D", &format!("now={}", ts(now))])
        .args([
            "-D",
            &format!("hold={}", ts(now + chrono::Duration::minutes(16))),
        ])
        .args([
            "-D",
            &format!("expires={}", ts(now + chrono::Duration::minutes(15))),
        ])
        .args(["-D", &format!("payload={payload}")])
        .arg(url)
        .output()
        .with_context(|| format!("cannot run {}", pgbench.display()))?;
    let busy_cores = cpu.busy_cores();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() || stderr.contains("aborted") {
        bail!("pgbench failed ({}):\n{stdout}\n{stderr}", out.status);
    }
    let number = |line: &str, after: &str| -> Option<f64> {
        let rest = &line[line.find(after)? + after.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    };
    let find = |key: &str| stdout.lines().find(|l| l.contains(key));
    // " - 12345 transactions (98.5% of total, tps = 1234.5)" under "SQL script 1:"
    let script_stats = |n: usize| -> Option<(f64, f64)> {
        let mut lines = stdout
            .lines()
            .skip_while(|l| !l.starts_with(&format!("SQL script {n}:")));
        lines
            .find(|l| l.contains("transactions ("))
            .and_then(|l| Some((number(l, " - ")?, number(l, "tps = ")?)))
    };
    let (orders, orders_tps) = script_stats(1).context(format!(
        "no per-script figures in pgbench output:\n{stdout}"
    ))?;
    let (batches, _) = script_stats(2).unwrap_or((0.0, 0.0));
    let failed = find("number of failed transactions:").and_then(|l| number(l, ": "));
    let latency = find("latency average =").and_then(|l| number(l, "= "));
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let count = |conn: &mut PgConnection, sql: &str| -> Result<i64> {
        let rows: Vec<N> = diesel::sql_query(sql).load(conn)?;
        Ok(rows.first().map_or(0, |r| r.n))
    };
    let in_db = count(&mut conn, "SELECT COUNT(*) AS n FROM orders")?;
    let handled = count(
        &mut conn,
        "SELECT COUNT(*) AS n FROM event_deliveries WHERE handled_at IS NOT NULL",
    )?;
    let confirmed = count(
        &mut conn,
        "SELECT COUNT(*) AS n FROM stock_reservations WHERE status = 'confirmed'",
    )?;
    // pgbench counts the transactions that ended before -T ran out; those in
    // flight then (at most one a client) commit, uncounted.
    let in_flight = in_db as f64 - orders;
    if !(0.0..=32.0).contains(&in_flight) || failed.unwrap_or(0.0) > 0.0 {
        bail!(
            "pgbench reported {orders} orders ({failed:?} failed), the database holds {in_db}:\n{stdout}\n{stderr}"
        );
    }
    Ok(json!({
        "clients": 32,
        "seconds": seconds,
        "statements_per_order": round(statements_per_order()),
        "orders": orders,
        "orders_in_database": in_db,
        "per_second": round(orders_tps),
        "delivery_batches": batches,
        "deliveries_handled": handled,
        "reservations_confirmed": confirmed,
        "latency_average_ms": latency,
        "busy_cores": busy_cores.map(round),
        "scripts": {"order": order, "deliver": deliver},
    }))
}

// ---------------------------------------------------------- MySQL/MariaDB --
//
// The MySQL ceiling is a Rust loop, not mariadb-slap (which this machine
// has): mariadb-slap sends text queries (shop's diesel prepares every
// statement and runs it as a binary-protocol statement), cannot carry the
// reserved price from one statement into the next one (only through user
// variables, `SELECT ... INTO @price`, a statement shop does not run), has
// no fixed duration (a number of queries), and counts queries, not
// transactions. Here: [`CLIENTS`] threads, each on its own connection with
// shop's session settings, as pgbench runs on PostgreSQL: an order (both
// units in one transaction) or, one time in 65 at random, a delivery batch
// (weights 64 to 1, as the pgbench scripts), for the run's duration.

/// Client threads of the MySQL ceiling: the load generator's 32 clients.
#[cfg(feature = "mysql")]
pub const CLIENTS: usize = 32;

/// Every shop connection's session settings on MySQL (shared-kernel/src/storage/db.rs,
/// `MYSQL_SESSION`), and its writers' lock wait (`MYSQL_WRITER_LOCK_WAIT_TIMEOUT_SECS`).
#[cfg(feature = "mysql")]
const MYSQL_SESSION: &str = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; \
     SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,ONLY_FULL_GROUP_BY'; \
     SET SESSION innodb_lock_wait_timeout = 1;";

/// What one client thread did.
#[cfg(feature = "mysql")]
struct ClientRun {
    orders: u64,
    batches: u64,
    delivered: u64,
    /// Transactions that lost a race (deadlock, lock wait timeout) and ran again, as shop retries them.
    retried: u64,
    latencies: crate::load::Sample,
}

#[cfg(feature = "mysql")]
fn mysql_connect(url: &str) -> Result<MysqlConnection> {
    let mut conn = MysqlConnection::establish(url)
        .with_context(|| format!("cannot connect to {}", redact(url)))?;
    conn.batch_execute(MYSQL_SESSION)?;
    Ok(conn)
}

/// `scheme://user:secret@host` → `scheme://user:***@host`.
#[cfg(feature = "mysql")]
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if url[s + 3..at].contains(':') => {
            let colon = s + 3 + url[s + 3..at].find(':').unwrap_or(0);
            format!("{}:***{}", &url[..colon], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// One client: connects, waits at `start` until every client has (so that
/// no connection's set-up is timed), then runs orders and delivery batches
/// for `duration`.
#[cfg(feature = "mysql")]
fn mysql_client(
    url: &str,
    client: usize,
    start: &std::sync::Barrier,
    duration: Duration,
) -> Result<ClientRun> {
    use shared_kernel::storage::group_commit::is_retryable;
    let conn = mysql_connect(url);
    start.wait();
    let mut conn = conn?;
    let deadline = Instant::now() + duration;
    let reserve: Vec<Rendered> = RESERVE_MYSQL
        .iter()
        .map(|s| render_positional(s, 0))
        .collect();
    let place: Vec<Rendered> = PLACE.iter().map(|s| render_positional(s, 0)).collect();
    let claim = format!("{}{PG_CLAIM_LOCK}", DELIVER[0]);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ ((client as u64 + 1) << 32));
    let mut run = ClientRun {
        orders: 0,
        batches: 0,
        delivered: 0,
        retried: 0,
        latencies: crate::load::Sample::default(),
    };
    let mut seq = 0u64;
    while Instant::now() < deadline {
        let delivery = rng.next().is_multiple_of(BATCH as u64 + 1);
        let pid = rng.next() % PRODUCTS as u64 + 1;
        let started = Instant::now();
        let outcome = loop {
            let attempt = if delivery {
                conn.transaction(|c| deliver(c, &claim))
            } else {
                seq += 1;
                let mut vars = order_vars(pid, client as u64, seq);
                conn.transaction(|c| reserve_and_place(c, &reserve, &place, &mut vars))
                    .map(|()| 0)
            };
            match attempt {
                Err(e) if is_retryable(&e) => run.retried += 1,
                other => break other,
            }
        };
        let handled = outcome.with_context(|| {
            format!(
                "MySQL ceiling, client {client}: {}",
                if delivery {
                    "a delivery batch"
                } else {
                    "an order"
                }
            )
        })?;
        if delivery {
            run.batches += 1;
            run.delivered += handled as u64;
        } else {
            run.orders += 1;
            run.latencies.record(200, started.elapsed());
        }
    }
    Ok(run)
}

#[cfg(feature = "mysql")]
fn mysql_count(conn: &mut MysqlConnection, sql: &str) -> Result<i64> {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let rows: Vec<N> = diesel::sql_query(sql).load(conn)?;
    Ok(rows.first().map_or(0, |r| r.n))
}

/// The MySQL/MariaDB ceiling on a fresh database `url`: [`CLIENTS`] threads for `duration`.
#[cfg(feature = "mysql")]
pub fn mysql(shop: &Path, url: &str, duration: Duration) -> Result<Value> {
    migrate(shop, url)?;
    let mut conn = mysql_connect(url)?;
    for first in (1..=PRODUCTS).step_by(1000) {
        let rows: Vec<String> = (first..first + 1000)
            .map(|n| {
                format!(
                    "('{n}', 'Product {n}', 'benchmark', {}, 'CNY', 1000000000, \
                     '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
                    100 + n % 9000
                )
            })
            .collect();
        conn.batch_execute(&format!("{SEED} VALUES {}", rows.join(", ")))?;
    }
    conn.batch_execute(SUBSCRIPTION)?;
    conn.batch_execute("ANALYZE TABLE products")?;
    // Every thread is started before any is joined, and they all start the
    // clock together, once every one of them is connected.
    let start = std::sync::Arc::new(std::sync::Barrier::new(CLIENTS + 1));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (url, start) = (url.to_owned(), start.clone());
            std::thread::spawn(move || mysql_client(&url, client, &start, duration))
        })
        .collect();
    start.wait();
    let cpu = crate::load::CpuMeter::start();
    let started = Instant::now();
    let mut runs = Vec::with_capacity(CLIENTS);
    for t in threads {
        runs.push(
            t.join()
                .map_err(|_| anyhow::anyhow!("a MySQL ceiling client panicked"))??,
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let (busy_cores, client_cores) = (cpu.busy_cores(), cpu.own_cores());
    let mut latencies = crate::load::Sample::default();
    let (mut orders, mut batches, mut delivered, mut retried) = (0, 0, 0, 0);
    for r in runs {
        orders += r.orders;
        batches += r.batches;
        delivered += r.delivered;
        retried += r.retried;
        for l in r.latencies.latencies {
            latencies.record(200, l);
        }
    }
    // every order wrote its rows, and the stock it took is gone
    let in_db = mysql_count(&mut conn, "SELECT COUNT(*) AS n FROM orders")?;
    let lines = mysql_count(
        &mut conn,
        "SELECT COUNT(*) AS n FROM stock_reservation_lines",
    )?;
    let taken = mysql_count(
        &mut conn,
        &format!("SELECT CAST({PRODUCTS} * 1000000000 - SUM(stock) AS SIGNED) AS n FROM products"),
    )?;
    let handled = mysql_count(
        &mut conn,
        "SELECT COUNT(*) AS n FROM event_deliveries WHERE handled_at IS NOT NULL",
    )?;
    let confirmed = mysql_count(
        &mut conn,
        "SELECT COUNT(*) AS n FROM stock_reservations WHERE status = 'confirmed'",
    )?;
    let total = orders as i64;
    if in_db != total || lines != total || taken != total || handled != delivered as i64 {
        bail!(
            "MySQL ceiling: {total} orders and {delivered} deliveries run, but the database holds \
             {in_db} orders, {lines} reservation lines, {taken} units taken, {handled} deliveries handled"
        );
    }
    Ok(json!({
        "client": format!("{CLIENTS} threads, one diesel MysqlConnection each (prepared statements, shop's session settings)"),
        "clients": CLIENTS,
        "seconds": round(seconds),
        "statements_per_order": round(statements_per_order_mysql()),
        "orders": orders,
        "per_second": round(orders as f64 / seconds),
        "latency_average_ms": (!latencies.latencies.is_empty()).then(|| round(
            latencies.latencies.iter().map(Duration::as_secs_f64).sum::<f64>() * 1000.0
                / latencies.latencies.len() as f64)),
        "p50_ms": round(latencies.percentile(0.50)),
        "p99_ms": round(latencies.percentile(0.99)),
        "delivery_batches": batches,
        "deliveries_handled": handled,
        "reservations_confirmed": confirmed,
        "retried": retried,
        "busy_cores": busy_cores.map(round),
        "client_cores": client_cores.map(round),
        "statements": {"reserve": RESERVE_MYSQL, "place": PLACE, "deliver": DELIVER, "claim_lock": PG_CLAIM_LOCK},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_render_per_backend() {
        let r = render_positional(DELIVER[3], 3);
        assert!(r.sql.ends_with("event_id IN (?, ?, ?)"), "{}", r.sql);
        assert_eq!(r.names, ["now", "sub", "eids"]);
        assert!(render_pg(DELIVER[3]).ends_with("event_id = ANY (CAST(:eids AS TEXT[]))"));
    }

    #[test]
    fn mysql_reservation_is_the_same_unit_in_its_dialect() {
        // the same insert without ON CONFLICT, the same update without RETURNING
        let insert = RESERVE[0].replace(" ON CONFLICT (id) DO NOTHING", "");
        assert_eq!(
            RESERVE_MYSQL[0],
            insert.replace("INSERT INTO", "INSERT IGNORE INTO")
        );
        let (update, returning) = RESERVE[1].split_once(" RETURNING ").unwrap_or_default();
        assert_eq!(RESERVE_MYSQL[1], update);
        assert!(
            RESERVE_MYSQL[2]
                .starts_with(&format!("SELECT {returning} FROM products WHERE id = :pid"))
        );
        assert!(answers_rows(RESERVE[1]) && answers_rows(RESERVE_MYSQL[2]));
        assert!(!answers_rows(RESERVE_MYSQL[1]));
        assert_eq!(RESERVE_MYSQL[3], RESERVE[2]);
        assert!((statements_per_order_mysql() - statements_per_order() - 1.0).abs() < 1e-9);
    }
}

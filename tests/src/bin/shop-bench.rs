//! shop's load driver. It starts the `shop` binary itself on loopback, loads
//! it with bounded concurrency for a bounded time, stops by itself, and
//! prints a table (and writes a JSON file) of the figures, each next to the
//! ceiling it is measured against in the same run:
//!
//! - read: getProductInfo over 10,000 products, against /health/live of the same binary;
//! - order: createOrder (one line, quantity 1) from 32 clients over many products;
//! - purchase: order -> initiatePayment -> signed notify -> order seen paid;
//! - flash sale: 1,000 concurrent buyers for 100 units of one product;
//! - raw database: the statements one order writes, straight on the same
//!   engine with the same concurrency, no HTTP;
//! - the server's start-up time to ready, idle and peak resident memory.
//!
//! Usage (BENCHMARKS.md), one command:
//!   cargo run --release -p shop-tests --bin shop-bench -- [--postgres URL]
//! Options: --shop PATH (default: target/release/shop, built first with `cargo build --release -p shop`),
//!          --seconds N (per scenario, default 10),
//!          --smoke (a few seconds in all, for CI), --out FILE (default target/bench/results.json),
//!          --postgres URL (also run on PostgreSQL; or SHOP_BENCH_POSTGRES_URL), --db-prefix NAME
//!          (the databases it creates there, default shop_bench and shop_bench_raw).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use diesel::RunQueryDsl;
use serde_json::{Value, json};
use shared_kernel::db::{
    AnyConnection, DatabaseUrl, Db, PoolOptions, run_migrations, write_transaction,
};

const ADMIN: &str = "bench-admin-token";
const SECRET: &str = "bench-webhook-secret";

struct Options {
    /// The binary under test; `None`: build and use target/release/shop.
    shop: Option<PathBuf>,
    seconds: f64,
    smoke: bool,
    postgres: Option<String>,
    /// Names of the PostgreSQL databases made for the run (`<prefix>`, `<prefix>_raw`).
    db_prefix: String,
    out: PathBuf,
}

fn options() -> Result<Options> {
    let mut o = Options {
        shop: None,
        seconds: 10.0,
        smoke: false,
        postgres: std::env::var("SHOP_BENCH_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty()),
        out: PathBuf::from("target/bench/results.json"),
        db_prefix: "shop_bench".to_owned(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--shop" => o.shop = Some(args.next().context("--shop PATH")?.into()),
            "--seconds" => o.seconds = args.next().context("--seconds N")?.parse()?,
            "--smoke" => o.smoke = true,
            "--postgres" => o.postgres = Some(args.next().context("--postgres URL")?),
            "--out" => o.out = args.next().context("--out FILE")?.into(),
            "--db-prefix" => o.db_prefix = args.next().context("--db-prefix NAME")?,
            other => bail!("unknown argument {other}; see the top of tests/src/bin/shop-bench.rs"),
        }
    }
    if o.smoke {
        o.seconds = o.seconds.min(1.0);
    }
    Ok(o)
}

/// Latencies of one scenario.
#[derive(Default)]
struct Sample {
    latencies: Vec<Duration>,
    statuses: BTreeMap<u16, usize>,
    elapsed: Duration,
}

impl Sample {
    fn merge(&mut self, other: Sample) {
        self.latencies.extend(other.latencies);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
    }

    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn percentile(&mut self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i].as_secs_f64() * 1000.0
    }

    fn server_errors(&self) -> usize {
        self.statuses
            .iter()
            .filter(|(s, _)| **s >= 500)
            .map(|(_, n)| n)
            .sum()
    }

    fn summary(&mut self) -> Value {
        json!({
            "per_second": round(self.rate()),
            "p50_ms": round(self.percentile(0.50)),
            "p99_ms": round(self.percentile(0.99)),
            "count": self.latencies.len(),
            "statuses": self.statuses.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `clients` tasks run `step` in a loop for `duration`; each step's latency and status are kept.
async fn load<F, Fut>(clients: usize, duration: Duration, step: F) -> Sample
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = (u16, Duration)> + Send,
{
    let step = Arc::new(step);
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let step = step.clone();
            tokio::spawn(async move {
                let mut sample = Sample::default();
                let mut i = 0;
                while Instant::now() < deadline {
                    let (status, latency) = step(client, i).await;
                    sample.latencies.push(latency);
                    *sample.statuses.entry(status).or_default() += 1;
                    i += 1;
                }
                sample
            })
        })
        .collect();
    let mut total = Sample::default();
    for task in tasks {
        if let Ok(sample) = task.await {
            total.merge(sample);
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// The server under test.
struct Server {
    child: Child,
    base: String,
    started_in: Duration,
}

impl Server {
    async fn start(shop: &PathBuf, database_url: &str) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let started = Instant::now();
        let child = Command::new(shop)
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("SHOP__SERVER__BIND", format!("127.0.0.1:{port}"))
            .env("SHOP__AUTH__ADMIN_TOKEN", ADMIN)
            .env("SHOP__PAYMENT__WEBHOOK_SECRET", SECRET)
            .env("SHOP__LOG__FORMAT", "json")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (build it: cargo build --release -p shop)",
                    shop.display()
                )
            })?;
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{base}/health/ready")).send().await
                && r.status().is_success()
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("shop did not become ready in 30 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(Self {
            child,
            base,
            started_in: started.elapsed(),
        })
    }

    /// Resident memory in MiB: (now, peak).
    fn memory(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Duration, Value) {
    let started = Instant::now();
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.json::<Value>().await.unwrap_or(Value::Null);
            (status, started.elapsed(), body)
        }
        Err(_) => (599, started.elapsed(), Value::Null),
    }
}

fn sign(body: &[u8]) -> String {
    let signer = domain_payment::signature::ShopSignature::new(SECRET.to_owned().into());
    signer.sign(chrono::Utc::now().timestamp(), body)
}

/// Creates `n` products (with `stock` each) through the API; returns their ids.
async fn seed(http: &reqwest::Client, base: &str, n: usize, stock: i64) -> Result<Vec<String>> {
    let made = Arc::new(tokio::sync::Mutex::new(Vec::with_capacity(n)));
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (http, base, made, next) = (http.clone(), base.to_owned(), made.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let body = json!({"name": format!("Product {i}"), "description": "benchmark", "price": 100 + i as i64 % 9000, "currency": "CNY", "stock": stock});
                    let (status, _, product) =
                        send(http.post(format!("{base}/api/v1/products")).bearer_auth(ADMIN).json(&body)).await;
                    if status == 201
                        && let Some(id) = product["productId"].as_str()
                    {
                        made.lock().await.push(id.to_owned());
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let made = made.lock().await.clone();
    if made.len() != n {
        bail!("seeding made {} of {n} products", made.len());
    }
    Ok(made)
}

/// Runs every scenario against one fresh database.
async fn scenarios(o: &Options, label: &str, database_url: &str, raw_url: &str) -> Result<Value> {
    let clients = 32;
    let duration = Duration::from_secs_f64(o.seconds);
    let shop = o.shop.clone().context("the binary under test")?;
    let server = Server::start(&shop, database_url).await?;
    let (idle_mib, _) = server.memory();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()?;
    let base = server.base.clone();
    let mut results = serde_json::Map::new();
    results.insert(
        "startup_ms".into(),
        json!(round(server.started_in.as_secs_f64() * 1000.0)),
    );
    results.insert("idle_rss_mib".into(), json!(round(idle_mib)));

    // read, against the framework ceiling
    let catalog = if o.smoke { 200 } else { 10_000 };
    let products = Arc::new(seed(&http, &base, catalog, 1_000_000).await?);
    let mut ceiling = {
        let (http, url) = (http.clone(), format!("{base}/health/live"));
        load(clients, duration, move |_, _| {
            let request = http.get(&url);
            async move {
                let (s, l, _) = send(request).await;
                (s, l)
            }
        })
        .await
    };
    let mut read = {
        let (http, base, products) = (http.clone(), base.clone(), products.clone());
        load(clients, duration, move |c, i| {
            let id = &products[(c * 7919 + i * 104_729) % products.len()];
            let request = http.get(format!("{base}/api/v1/products/{id}"));
            async move {
                let (s, l, _) = send(request).await;
                (s, l)
            }
        })
        .await
    };
    let ratio = read.rate() / ceiling.rate().max(1e-9);
    results.insert("ceiling_health_live".into(), ceiling.summary());
    results.insert("read_get_product_info".into(), read.summary());
    results.insert("read_over_ceiling".into(), json!(round(ratio)));

    // order
    let mut order = {
        let (http, base, products) = (http.clone(), base.clone(), products.clone());
        load(clients, duration, move |c, i| {
            let id = &products[(c * 31 + i * 7) % products.len()];
            let body = json!({"userId": format!("bench-{c}"), "items": [{"productId": id, "quantity": 1}]});
            let request = http.post(format!("{base}/api/v1/orders")).json(&body);
            async move {
                let (s, l, _) = send(request).await;
                (s, l)
            }
        })
        .await
    };
    results.insert("order_create_order".into(), order.summary());

    // purchase: order -> payment -> notify -> paid
    let mut notify_to_paid = Sample::default();
    let mut purchase = {
        let (http, base, products) = (http.clone(), base.clone(), products.clone());
        let lags = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = lags.clone();
        let mut sample = load(clients, duration, move |c, i| {
            let (http, base, lags) = (http.clone(), base.clone(), lags.clone());
            let id = products[(c * 17 + i * 13) % products.len()].clone();
            async move {
                let started = Instant::now();
                let body = json!({"userId": format!("buyer-{c}"), "items": [{"productId": id, "quantity": 1}]});
                let (s, _, order) = send(http.post(format!("{base}/api/v1/orders")).json(&body)).await;
                if s != 201 {
                    return (s, started.elapsed());
                }
                let order_id = order["orderId"].as_str().unwrap_or_default().to_owned();
                let body = json!({"orderId": order_id, "paymentMethod": "alipay"});
                let (s, _, payment) = send(http.post(format!("{base}/api/v1/payments")).json(&body)).await;
                if s != 201 {
                    return (s, started.elapsed());
                }
                let note = serde_json::to_vec(&json!({"paymentId": payment["paymentId"], "paymentStatus": "success", "amount": payment["amount"], "currency": payment["currency"]})).unwrap_or_default();
                let (s, _, _) = send(
                    http.post(format!("{base}/api/v1/payments/notify"))
                        .header("Shop-Signature", sign(&note))
                        .header("content-type", "application/json")
                        .body(note),
                )
                .await;
                if s != 200 {
                    return (s, started.elapsed());
                }
                let notified = Instant::now();
                loop {
                    let (s, _, order) = send(http.get(format!("{base}/api/v1/orders/{order_id}"))).await;
                    if s == 200 && order["status"] == "paid" {
                        break;
                    }
                    if notified.elapsed() > Duration::from_secs(10) || s != 200 {
                        return (598, started.elapsed());
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                if let Ok(mut lags) = lags.lock() {
                    lags.push(notified.elapsed());
                }
                (200, started.elapsed())
            }
        })
        .await;
        notify_to_paid.latencies = kept.lock().map(|l| l.clone()).unwrap_or_default();
        notify_to_paid.elapsed = sample.elapsed;
        sample.elapsed = sample.elapsed.max(Duration::from_millis(1));
        sample
    };
    results.insert("purchase_flow".into(), purchase.summary());
    results.insert("purchase_notify_to_paid".into(), notify_to_paid.summary());

    // flash sale
    let buyers = if o.smoke { 100 } else { 1000 };
    let units = if o.smoke { 10 } else { 100 };
    let hot = seed(&http, &base, 1, units).await?.remove(0);
    let started = Instant::now();
    let sold = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..buyers)
        .map(|b| {
            let (http, base, hot, sold) = (http.clone(), base.clone(), hot.clone(), sold.clone());
            tokio::spawn(async move {
                let body = json!({"userId": format!("flash-{b}"), "items": [{"productId": hot, "quantity": 1}]});
                let (s, l, _) = send(http.post(format!("{base}/api/v1/orders")).json(&body)).await;
                if s == 201 {
                    sold.fetch_add(1, Ordering::Relaxed);
                }
                (s, l)
            })
        })
        .collect();
    let mut flash = Sample::default();
    for task in tasks {
        let (s, l) = task.await?;
        flash.latencies.push(l);
        *flash.statuses.entry(s).or_default() += 1;
    }
    flash.elapsed = started.elapsed();
    let (_, _, product) = send(http.get(format!("{base}/api/v1/products/{hot}"))).await;
    let sold = sold.load(Ordering::Relaxed);
    let left = product["stock"].as_i64().unwrap_or(-1);
    let flash_ok = sold == units as usize && left == 0 && flash.server_errors() == 0;
    let mut flash_summary = flash.summary();
    flash_summary["sell_out_ms"] = json!(round(flash.elapsed.as_secs_f64() * 1000.0));
    flash_summary["buyers"] = json!(buyers);
    flash_summary["units"] = json!(units);
    flash_summary["sold"] = json!(sold);
    flash_summary["stock_left"] = json!(left);
    flash_summary["exact"] = json!(flash_ok);
    results.insert("flash_sale".into(), flash_summary);

    let (rss, peak) = server.memory();
    results.insert("rss_after_load_mib".into(), json!(round(rss)));
    results.insert("peak_rss_mib".into(), json!(round(peak)));
    drop(server);

    // the raw database ceiling, same engine, same concurrency
    let mut raw = raw_orders(raw_url, clients, duration).await?;
    let order_rate = order.rate();
    results.insert("raw_db_order_statements".into(), raw.summary());
    results.insert(
        "order_over_raw".into(),
        json!(round(order_rate / raw.rate().max(1e-9))),
    );
    if !flash_ok {
        bail!(
            "{label}: flash sale sold {sold} of {units} units, {left} left, {} server errors",
            flash.server_errors()
        );
    }
    for (name, sample) in [("read", &read), ("order", &order), ("purchase", &purchase)] {
        if sample.server_errors() > 0 {
            bail!(
                "{label}: {name} saw {} server errors",
                sample.server_errors()
            );
        }
    }
    Ok(Value::Object(results))
}

/// The statements one createOrder runs (the product look-up, the stock
/// reservation, the order and its event), straight on the database.
async fn raw_orders(url: &str, clients: usize, duration: Duration) -> Result<Sample> {
    let parsed = DatabaseUrl::parse(url)?;
    let db = Db::connect(
        &parsed,
        &PoolOptions {
            max_size: 10,
            ..PoolOptions::default()
        },
    )?;
    run_migrations(&mut *db.get_blocking()?, shop::startup::migrations())?;
    let product = uuid::Uuid::now_v7().to_string();
    let now = chrono::Utc::now().naive_utc();
    {
        let mut conn = db.get_blocking()?;
        q(&conn, "INSERT INTO products (id, name, description, price_minor, currency, stock, created_at, updated_at) VALUES (?, 'Raw', '', 100, 'CNY', 1000000000, ?, ?)")
            .bind::<diesel::sql_types::Text, _>(&product)
            .bind::<diesel::sql_types::Timestamp, _>(now)
            .bind::<diesel::sql_types::Timestamp, _>(now)
            .execute(&mut *conn)?;
    }
    let product = Arc::new(product);
    let sample = load(clients, duration, move |_, _| {
        let (db, product) = (db.clone(), product.clone());
        async move {
            let started = Instant::now();
            let done = db.run(move |conn| raw_order(conn, &product)).await;
            (if done.is_ok() { 201 } else { 500 }, started.elapsed())
        }
    })
    .await;
    Ok(sample)
}

fn q(conn: &AnyConnection, sql: &str) -> diesel::query_builder::SqlQuery {
    // SQLite takes `?`; PostgreSQL `$1, $2, ...`.
    match conn {
        AnyConnection::Sqlite(_) => diesel::sql_query(sql),
        AnyConnection::Postgres(_) => {
            let mut n = 0;
            let numbered: String = sql
                .chars()
                .map(|c| {
                    if c == '?' {
                        n += 1;
                        format!("${n}")
                    } else {
                        c.to_string()
                    }
                })
                .collect();
            diesel::sql_query(numbered)
        }
    }
}

fn raw_order(conn: &mut AnyConnection, product: &str) -> Result<(), shared_kernel::db::DbError> {
    use diesel::sql_types::{Text, Timestamp};
    let order = uuid::Uuid::now_v7().to_string();
    let event = uuid::Uuid::now_v7().to_string();
    let now = chrono::Utc::now().naive_utc();
    // the product look-up
    q(conn, "SELECT id FROM products WHERE id = ?")
        .bind::<Text, _>(product)
        .execute(conn)?;
    // the reservation
    write_transaction(conn, |conn| {
        q(conn, "SELECT status FROM stock_reservations WHERE id = ?")
            .bind::<Text, _>(&order)
            .execute(conn)?;
        q(
            conn,
            "UPDATE products SET stock = stock - 1, updated_at = ? WHERE id = ? AND stock >= 1",
        )
        .bind::<Timestamp, _>(now)
        .bind::<Text, _>(product)
        .execute(conn)?;
        q(conn, "INSERT INTO stock_reservations (id, status, hold_until, created_at, updated_at) VALUES (?, 'held', ?, ?, ?)")
            .bind::<Text, _>(&order)
            .bind::<Timestamp, _>(now)
            .bind::<Timestamp, _>(now)
            .bind::<Timestamp, _>(now)
            .execute(conn)?;
        q(
            conn,
            "SELECT id, price_minor, currency FROM products WHERE id = ?",
        )
        .bind::<Text, _>(product)
        .execute(conn)?;
        q(conn, "INSERT INTO stock_reservation_lines (reservation_id, product_id, quantity, unit_price_minor, currency) VALUES (?, ?, 1, 100, 'CNY')")
            .bind::<Text, _>(&order)
            .bind::<Text, _>(product)
            .execute(conn)?;
        q(
            conn,
            "SELECT product_id FROM stock_reservation_lines WHERE reservation_id = ?",
        )
        .bind::<Text, _>(&order)
        .execute(conn)?;
        Ok::<_, shared_kernel::db::DbError>(())
    })?;
    // the order, its line, its event and the event's delivery row (the
    // delivery itself runs later, in batches, off the request path)
    write_transaction(conn, |conn| {
        q(conn, "INSERT INTO orders (id, user_id, status, amount_minor, currency, created_at, updated_at, expires_at) VALUES (?, 'raw', 'pending_payment', 100, 'CNY', ?, ?, ?)")
            .bind::<Text, _>(&order)
            .bind::<Timestamp, _>(now)
            .bind::<Timestamp, _>(now)
            .bind::<Timestamp, _>(now)
            .execute(conn)?;
        q(conn, "INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price_minor) VALUES (?, 1, ?, 1, 100)")
            .bind::<Text, _>(&order)
            .bind::<Text, _>(product)
            .execute(conn)?;
        q(conn, "INSERT INTO outbox_events (id, event_type, version, payload, occurred_at) VALUES (?, 'order.placed', 1, '{}', ?)")
            .bind::<Text, _>(&event)
            .bind::<Timestamp, _>(now)
            .execute(conn)?;
        q(conn, "INSERT INTO event_deliveries (event_id, subscriber, attempts, next_attempt_at) VALUES (?, 'product.stock-reservations', 0, ?)")
            .bind::<Text, _>(&event)
            .bind::<Timestamp, _>(now)
            .execute(conn)?;
        Ok::<_, shared_kernel::db::DbError>(())
    })?;
    Ok(())
}

/// A fresh PostgreSQL database on the server `url` names.
fn fresh_postgres(url: &str, name: &str) -> Result<String> {
    use diesel::Connection;
    let mut conn = diesel::pg::PgConnection::establish(url)?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn)?;
    diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn)?;
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let host = base.rsplit_once('/').map_or(base, |(h, _)| h);
    Ok(match query {
        Some(q) => format!("{host}/{name}?{q}"),
        None => format!("{host}/{name}"),
    })
}

fn print_table(label: &str, r: &Value) {
    let row = |name: &str, key: &str| {
        let s = &r[key];
        println!(
            "  {name:<34} {:>10.1}/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
            s["per_second"].as_f64().unwrap_or(0.0),
            s["p50_ms"].as_f64().unwrap_or(0.0),
            s["p99_ms"].as_f64().unwrap_or(0.0)
        );
    };
    println!("\n{label}");
    row("ceiling: GET /health/live", "ceiling_health_live");
    row("read: getProductInfo", "read_get_product_info");
    println!(
        "  {:<34} {:>10.2}",
        "read / ceiling",
        r["read_over_ceiling"].as_f64().unwrap_or(0.0)
    );
    row("order: createOrder (32 clients)", "order_create_order");
    row("raw DB: one order's statements", "raw_db_order_statements");
    println!(
        "  {:<34} {:>10.2}",
        "order / raw",
        r["order_over_raw"].as_f64().unwrap_or(0.0)
    );
    row("purchase: order→pay→notify→paid", "purchase_flow");
    row("purchase: notify → paid", "purchase_notify_to_paid");
    let f = &r["flash_sale"];
    println!(
        "  {:<34} {} buyers, {} units: sold {} in {:.0} ms, stock left {}, 5xx {}",
        "flash sale",
        f["buyers"],
        f["units"],
        f["sold"],
        f["sell_out_ms"].as_f64().unwrap_or(0.0),
        f["stock_left"],
        f["statuses"]
            .as_object()
            .map_or(0, |s| s.iter().filter(|(k, _)| k.starts_with('5')).count())
    );
    println!(
        "  {:<34} start-up {:.0} ms, idle {:.1} MiB, after load {:.1} MiB, peak {:.1} MiB",
        "server",
        r["startup_ms"].as_f64().unwrap_or(0.0),
        r["idle_rss_mib"].as_f64().unwrap_or(0.0),
        r["rss_after_load_mib"].as_f64().unwrap_or(0.0),
        r["peak_rss_mib"].as_f64().unwrap_or(0.0)
    );
}

/// Builds the release `shop` (a no-op when it is up to date) and returns its path.
fn release_shop() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "shop",
            "--bin",
            "shop",
        ])
        .status()?;
    if !status.success() {
        bail!("cargo build --release -p shop failed");
    }
    let target =
        std::env::var("CARGO_TARGET_DIR").map_or_else(|_| PathBuf::from("target"), PathBuf::from);
    Ok(target.join("release").join("shop"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut o = options()?;
    if o.shop.is_none() {
        o.shop = Some(release_shop()?);
    }
    let dir = std::env::temp_dir().join(format!("shop-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut all = serde_json::Map::new();
    all.insert(
        "settings".into(),
        json!({"seconds_per_scenario": o.seconds, "smoke": o.smoke, "clients": 32,
               "shop": o.shop.as_ref().map(|p| p.display().to_string()),
               "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)}),
    );
    let sqlite = scenarios(
        &o,
        "SQLite",
        &format!("sqlite://{}", dir.join("shop.db").display()),
        &format!("sqlite://{}", dir.join("raw.db").display()),
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let sqlite = sqlite?;
    print_table("SQLite", &sqlite);
    all.insert("sqlite".into(), sqlite);
    if let Some(url) = &o.postgres {
        let shop_db = fresh_postgres(url, &o.db_prefix)?;
        let raw_db = fresh_postgres(url, &format!("{}_raw", o.db_prefix))?;
        let pg = scenarios(&o, "PostgreSQL", &shop_db, &raw_db).await?;
        print_table("PostgreSQL", &pg);
        all.insert("postgres".into(), pg);
    }
    if let Some(parent) = o.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(
        &o.out,
        serde_json::to_string_pretty(&Value::Object(all))? + "\n",
    )?;
    println!("\nresults: {}", o.out.display());
    Ok(())
}

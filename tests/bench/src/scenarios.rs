//! shop's scenarios: reads and orders on its REST routes and on the original
//! spec's aliases (the same requests the peer takes), the purchase flow, the
//! flash sale, and expiry of thousands of orders at once.

use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::load::{Id, Sample, article, hit, load, pick, round, send};
use crate::server::{self, ADMIN, COMMITS, DbWork, SECRET, STATEMENTS, Server, free_port};

pub const CLIENTS: usize = 32;

type Step = Pin<Box<dyn Future<Output = (u16, Duration)> + Send>>;

pub struct Settings {
    pub shop: std::path::PathBuf,
    pub duration: Duration,
    pub warmup: Duration,
    pub smoke: bool,
    pub catalog: usize,
}

fn sign(body: &[u8]) -> String {
    let signer = domain_payment::signature::ShopSignature::new(SECRET.to_owned().into());
    signer.sign(Utc::now().timestamp(), body)
}

fn http() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// The Flask peer's two scenarios, with the generator and requests shop's aliases take.
pub async fn peer(s: &Settings, peer: &crate::peer::Peer) -> Result<Value> {
    let http = http()?;
    let ids = Arc::new(peer.seed(&http, s.catalog, 1_000_000).await?);
    let mut read = load(
        CLIENTS,
        s.warmup,
        s.duration,
        article::get_product_info(&http, &peer.base, &ids),
    )
    .await;
    let mut order = load(
        CLIENTS,
        s.warmup,
        s.duration,
        article::create_order(&http, &peer.base, &ids, None),
    )
    .await;
    Ok(json!({
        "server": crate::peer::Peer::describe(),
        "read_get_product_info": read.summary(),
        "order_create_order": order.summary(),
    }))
}

/// Where a purchase's requests go: the order context's routes to `order`, the
/// payment context's to `payment` (one base in the monolith, two processes in split mode).
#[derive(Clone)]
pub struct Bases {
    pub order: String,
    pub payment: String,
}

impl Bases {
    fn one(base: &str) -> Self {
        Self {
            order: base.to_owned(),
            payment: base.to_owned(),
        }
    }
}

/// One purchase: order → initiatePayment → signed notify; with `poll`, then
/// the order is read until it is paid. Returns the status and notify → paid.
async fn purchase(
    http: &reqwest::Client,
    bases: &Bases,
    product: &Id,
    user: &str,
    token: &str,
    poll: bool,
) -> (u16, Option<Duration>) {
    let body = json!({"userId": user, "items": [{"productId": product.json, "quantity": 1}]});
    let (s, _, order) = send(
        http.post(format!("{}/api/v1/orders", bases.order))
            .bearer_auth(token)
            .json(&body),
    )
    .await;
    if s != 201 {
        return (s, None);
    }
    let order_id = order["orderId"].as_str().unwrap_or_default().to_owned();
    let body = json!({"orderId": order_id, "paymentMethod": "alipay"});
    let (s, _, payment) = send(
        http.post(format!("{}/api/v1/payments", bases.payment))
            .bearer_auth(token)
            .json(&body),
    )
    .await;
    if s != 201 {
        return (s, None);
    }
    let note = serde_json::to_vec(&json!({"paymentId": payment["paymentId"], "paymentStatus": "success", "amount": payment["amount"], "currency": payment["currency"]})).unwrap_or_default();
    let (s, _, _) = send(
        http.post(format!("{}/api/v1/payments/notify", bases.payment))
            .header("Shop-Signature", sign(&note))
            .header("content-type", "application/json")
            .body(note),
    )
    .await;
    if s != 200 || !poll {
        return (s, None);
    }
    let notified = Instant::now();
    loop {
        let (s, _, order) = send(
            http.get(format!("{}/api/v1/orders/{order_id}", bases.order))
                .bearer_auth(token),
        )
        .await;
        if s == 200 && order["status"] == "paid" {
            return (200, Some(notified.elapsed()));
        }
        if notified.elapsed() > Duration::from_secs(10) || s != 200 {
            return (598, None);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The purchase flow under load: [`CLIENTS`] clients, client c buying as
/// `{prefix}-c` with its token, each purchase polled until its order is paid
/// (after `s.warmup` unrecorded). Returns the purchases and notify → seen paid.
async fn purchase_load(
    s: &Settings,
    http: &reqwest::Client,
    bases: &Bases,
    ids: &Arc<Vec<Id>>,
    prefix: &str,
) -> (Sample, Value) {
    let lags = Arc::new(Mutex::new(Vec::new()));
    let tokens = server::tokens(prefix, CLIENTS);
    let buy = || {
        let (http, bases, ids, lags, tokens, prefix) = (
            http.clone(),
            bases.clone(),
            ids.clone(),
            lags.clone(),
            tokens.clone(),
            prefix.to_owned(),
        );
        move |c: usize, i: usize| -> Step {
            let (http, bases, ids, lags, tokens, user) = (
                http.clone(),
                bases.clone(),
                ids.clone(),
                lags.clone(),
                tokens.clone(),
                format!("{prefix}-{c}"),
            );
            Box::pin(async move {
                let started = Instant::now();
                let product = &ids[pick(ids.len(), c, i)];
                let (status, lag) = purchase(&http, &bases, product, &user, &tokens[c], true).await;
                if let (Some(lag), Ok(mut lags)) = (lag, lags.lock()) {
                    lags.push(lag);
                }
                (status, started.elapsed())
            })
        }
    };
    load(CLIENTS, s.warmup, Duration::ZERO, buy()).await;
    if let Ok(mut lags) = lags.lock() {
        lags.clear(); // the warm-up's
    }
    let purchases = load(CLIENTS, Duration::ZERO, s.duration, buy()).await;
    let mut notify_to_paid = Sample {
        elapsed: purchases.elapsed,
        ..Sample::default()
    };
    for lag in lags.lock().map(|l| l.clone()).unwrap_or_default() {
        notify_to_paid.record(200, lag);
    }
    (purchases, notify_to_paid.summary())
}

/// `n` purchases that do not poll, from [`CLIENTS`] clients at once (client c
/// as `{prefix}-c`); their statuses.
async fn purchase_burst(
    http: &reqwest::Client,
    bases: &Bases,
    ids: &Arc<Vec<Id>>,
    n: usize,
    prefix: &str,
) -> Sample {
    let tokens = server::tokens(prefix, CLIENTS);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (http, bases, ids, tokens, user) = (
                http.clone(),
                bases.clone(),
                ids.clone(),
                tokens.clone(),
                format!("{prefix}-{c}"),
            );
            tokio::spawn(async move {
                let mut sample = Sample::default();
                for i in (c..n).step_by(CLIENTS) {
                    let started = Instant::now();
                    let (status, _) = purchase(
                        &http,
                        &bases,
                        &ids[pick(ids.len(), c, i + 7)],
                        &user,
                        &tokens[c],
                        false,
                    )
                    .await;
                    sample.record(status, started.elapsed());
                }
                sample
            })
        })
        .collect();
    let mut all = Sample::default();
    for t in tasks {
        if let Ok(sample) = t.await {
            for (status, k) in sample.statuses {
                *all.statuses.entry(status).or_default() += k;
            }
        }
    }
    all
}

/// The database work per unit of a run, read from `/metrics` around it, once
/// every event it caused is delivered.
async fn counted<F>(http: &reqwest::Client, base: &str, run: F) -> Result<(Sample, Value)>
where
    F: Future<Output = Sample>,
{
    server::drain(http, base, Duration::from_secs(30)).await;
    let before = server::metrics(http, base).await;
    let sample = run.await;
    let drained = server::drain(http, base, Duration::from_secs(60)).await;
    let after = server::metrics(http, base).await;
    let created = |m: &Option<std::collections::BTreeMap<String, f64>>| {
        m.as_ref()
            .and_then(|m| m.get("shop_orders_created_total").copied())
    };
    let orders = match (created(&before), created(&after)) {
        (Some(b), Some(a)) => a - b,
        _ => sample.ok() as f64,
    };
    let mut work = DbWork::between(&before, &after, orders).json();
    work["outbox_drained"] = json!(drained);
    Ok((sample, work))
}

/// Every shop scenario on one fresh database.
pub async fn shop(s: &Settings, database_url: &str) -> Result<Value> {
    let server = Server::start(&s.shop, database_url, &[]).await?;
    let (idle_mib, _) = server.memory();
    let http = http()?;
    let base = server.base.clone();
    let mut r = Map::new();
    r.insert(
        "startup_ms".into(),
        json!(round(server.started_in.as_secs_f64() * 1000.0)),
    );
    r.insert("idle_rss_mib".into(), json!(round(idle_mib)));
    let ids = Arc::new(server::seed(&http, &base, s.catalog, 1_000_000).await?);

    // the framework's own ceiling
    let mut health = {
        let (http, url) = (http.clone(), format!("{base}/health/live"));
        load(CLIENTS, s.warmup, s.duration, move |_, _| -> Step {
            Box::pin(hit(http.get(&url)))
        })
        .await
    };
    r.insert("health_live".into(), health.summary());

    // reads: REST, then the original spec's alias (the peer's request)
    let mut read_rest = {
        let (http, base, ids) = (http.clone(), base.clone(), ids.clone());
        load(CLIENTS, s.warmup, s.duration, move |c, i| -> Step {
            let id = &ids[pick(ids.len(), c, i)];
            Box::pin(hit(http.get(format!("{base}/api/v1/products/{}", id.query))))
        })
        .await
    };
    r.insert("read_rest".into(), read_rest.summary());
    let mut read_alias = load(
        CLIENTS,
        s.warmup,
        s.duration,
        article::get_product_info(&http, &base, &ids),
    )
    .await;
    r.insert("read_alias".into(), read_alias.summary());

    // orders: REST (with the database work each costs), then the alias;
    // client c orders as bench-{c}, with the token minted for it here
    let bench_tokens = server::tokens("bench", CLIENTS);
    let rest_order = |http: &reqwest::Client| {
        let (http, base, ids, tokens) = (
            http.clone(),
            base.clone(),
            ids.clone(),
            bench_tokens.clone(),
        );
        move |c: usize, i: usize| -> Step {
            let id = &ids[pick(ids.len(), c, i)];
            let body = json!({"userId": format!("bench-{c}"), "items": [{"productId": id.json, "quantity": 1}]});
            Box::pin(hit(http
                .post(format!("{base}/api/v1/orders"))
                .bearer_auth(&tokens[c])
                .json(&body)))
        }
    };
    load(CLIENTS, s.warmup, Duration::ZERO, rest_order(&http)).await;
    let (mut order_rest, per_order) = counted(
        &http,
        &base,
        load(CLIENTS, Duration::ZERO, s.duration, rest_order(&http)),
    )
    .await?;
    r.insert("order_rest".into(), order_rest.summary());
    r.insert("db_per_create_order".into(), per_order);
    let mut order_alias = load(
        CLIENTS,
        s.warmup,
        s.duration,
        article::create_order(&http, &base, &ids, Some(bench_tokens.clone())),
    )
    .await;
    r.insert("order_alias".into(), order_alias.summary());

    // purchase: order -> payment -> notify -> seen paid
    let bases = Bases::one(&base);
    let (mut purchases, notify_to_paid) = purchase_load(s, &http, &bases, &ids, "buyer").await;
    r.insert("purchase".into(), purchases.summary());
    r.insert("notify_to_paid".into(), notify_to_paid);

    // the database work of a purchase, over purchases that do not poll
    let n = if s.smoke { 32 } else { 640 };
    let before_paid = server::metrics(&http, &base)
        .await
        .and_then(|m| m.get("shop_orders_paid_total").copied());
    let (counted_purchases, mut per_purchase) = counted(
        &http,
        &base,
        purchase_burst(&http, &bases, &ids, n, "counted"),
    )
    .await?;
    // every counted purchase reached `paid` (its events handled) before the counters were read
    let after_paid = server::metrics(&http, &base)
        .await
        .and_then(|m| m.get("shop_orders_paid_total").copied());
    let ok = counted_purchases.statuses.get(&200).copied().unwrap_or(0);
    let paid = match (before_paid, after_paid) {
        (Some(b), Some(a)) => Some(a - b),
        _ => None,
    };
    // divided by the orders created while counting: a purchase is one order
    per_purchase["purchases_ok"] = json!(ok);
    per_purchase["paid_during_count"] = json!(paid);
    r.insert("db_per_purchase".into(), per_purchase);

    // flash sale: many buyers, few units, one product
    r.insert("flash_sale".into(), flash_sale(s, &http, &base).await?);

    let (rss, peak) = server.memory();
    r.insert("rss_after_load_mib".into(), json!(round(rss)));
    r.insert("peak_rss_mib".into(), json!(round(peak)));
    drop(server);

    for (name, sample) in [
        ("health", &health),
        ("read (REST)", &read_rest),
        ("read (alias)", &read_alias),
        ("order (REST)", &order_rest),
        ("order (alias)", &order_alias),
        ("purchase", &purchases),
    ] {
        if sample.server_errors() > 0 {
            bail!("{name} saw {} server errors", sample.server_errors());
        }
    }
    Ok(Value::Object(r))
}

async fn flash_sale(s: &Settings, http: &reqwest::Client, base: &str) -> Result<Value> {
    let buyers = if s.smoke { 100 } else { 1000 };
    let units = if s.smoke { 10 } else { 100 };
    let hot = server::seed(http, base, 1, units as i64).await?.remove(0);
    // every buyer's token is minted before the sale opens
    let tokens = server::tokens("flash", buyers);
    let started = Instant::now();
    // every buyer is spawned before any answer is awaited
    let tasks: Vec<_> = (0..buyers)
        .map(|b| {
            let (http, base, hot, tokens) = (http.clone(), base.to_owned(), hot.clone(), tokens.clone());
            tokio::spawn(async move {
                let body = json!({"userId": format!("flash-{b}"), "items": [{"productId": hot.json, "quantity": 1}]});
                let (status, latency) = hit(
                    http.post(format!("{base}/api/v1/orders"))
                        .bearer_auth(&tokens[b])
                        .json(&body),
                )
                .await;
                (status, latency, started.elapsed())
            })
        })
        .collect();
    let mut flash = Sample::default();
    let mut sold_at = Vec::new();
    let mut answered_at = Duration::ZERO;
    for task in tasks {
        let (status, latency, at) = task.await?;
        flash.record(status, latency);
        if status == 201 {
            sold_at.push(at);
        }
        answered_at = answered_at.max(at);
    }
    flash.elapsed = started.elapsed();
    sold_at.sort_unstable();
    let (_, _, product) = send(http.get(format!("{base}/api/v1/products/{}", hot.query))).await;
    let left = product["stock"].as_i64().unwrap_or(-1);
    let sold = sold_at.len();
    let exact = sold == units && left == 0 && flash.server_errors() == 0;
    let mut v = flash.summary();
    v["buyers"] = json!(buyers);
    v["units"] = json!(units);
    v["sold"] = json!(sold);
    v["stock_left"] = json!(left);
    v["exact"] = json!(exact);
    v["last_unit_sold_ms"] = json!(sold_at.last().map(|d| round(d.as_secs_f64() * 1000.0)));
    v["all_answered_ms"] = json!(round(answered_at.as_secs_f64() * 1000.0));
    if !exact {
        bail!(
            "flash sale sold {sold} of {units} units, {left} left, {} server errors",
            flash.server_errors()
        );
    }
    Ok(v)
}

/// Thousands of orders expiring at once: each one's lateness after its
/// `expiresAt` (the server's `cancelledAt` minus `expiresAt`), and whether
/// and when all the stock came back.
pub async fn expiry(s: &Settings, shop: &Path, database_url: &str, orders: usize) -> Result<Value> {
    let timeout_secs: u64 = if s.smoke { 2 } else { 10 };
    let sweep_ms: u64 = 250;
    let server = Server::start(
        shop,
        database_url,
        &[
            (
                "SHOP__ORDER__PAYMENT_TIMEOUT_SECS",
                timeout_secs.to_string(),
            ),
            ("SHOP__ORDER__EXPIRY_SWEEP_MS", sweep_ms.to_string()),
        ],
    )
    .await?;
    let http = http()?;
    let base = server.base.clone();
    let (products, stock, users) = (50usize, 1000i64, 30usize);
    let ids = Arc::new(server::seed(&http, &base, products, stock).await?);
    let tokens = server::tokens("expiry", users);

    // create them as fast as 32 clients can
    let created = Arc::new(Mutex::new(Vec::with_capacity(orders)));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (http, base, ids, created, next, tokens) = (
                http.clone(),
                base.clone(),
                ids.clone(),
                created.clone(),
                next.clone(),
                tokens.clone(),
            );
            tokio::spawn(async move {
                let mut failed = 0usize;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= orders {
                        return failed;
                    }
                    let body = json!({"userId": format!("expiry-{}", i % users),
                        "items": [{"productId": ids[i % ids.len()].json, "quantity": 1}]});
                    let (status, _, order) = send(
                        http.post(format!("{base}/api/v1/orders"))
                            .bearer_auth(&tokens[i % users])
                            .json(&body),
                    )
                    .await;
                    let expires = order["expiresAt"]
                        .as_str()
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
                    match (status, order["orderId"].as_str(), expires) {
                        (201, Some(id), Some(expires)) => {
                            if let Ok(mut c) = created.lock() {
                                c.push((id.to_owned(), expires.with_timezone(&Utc)));
                            }
                        }
                        _ => failed += 1,
                    }
                }
            })
        })
        .collect();
    let mut failed = 0;
    for t in tasks {
        failed += t.await?;
    }
    let creation = started.elapsed();
    let created: std::collections::HashMap<String, DateTime<Utc>> = created
        .lock()
        .map(|c| c.iter().cloned().collect())
        .unwrap_or_default();
    let last_expiry = created.values().max().copied().unwrap_or_else(Utc::now);
    let first_expiry = created.values().min().copied().unwrap_or_else(Utc::now);

    // watch them through the list route until all are cancelled (or a deadline)
    let grace = chrono::Duration::seconds(if s.smoke { 15 } else { 60 });
    let mut late_ms: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
    let mut seen_late_ms = 0f64;
    let mut not_expired_reason = 0usize;
    while late_ms.len() < created.len() && Utc::now() < last_expiry + grace {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if Utc::now() < first_expiry {
            continue;
        }
        for u in 0..users {
            let mut cursor: Option<String> = None;
            loop {
                let mut url = format!("{base}/api/v1/orders?userId=expiry-{u}&limit=100");
                if let Some(c) = &cursor {
                    url.push_str(&format!("&cursor={c}"));
                }
                let (status, _, page) = send(http.get(url).bearer_auth(ADMIN)).await;
                if status != 200 {
                    break;
                }
                let now = Utc::now();
                for o in page["items"].as_array().into_iter().flatten() {
                    let id = o["orderId"].as_str().unwrap_or_default();
                    if o["status"] != "cancelled" || late_ms.contains_key(id) {
                        continue;
                    }
                    let Some(expires) = created.get(id) else {
                        continue;
                    };
                    let cancelled = o["cancelledAt"]
                        .as_str()
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.with_timezone(&Utc));
                    if o["cancelReason"] != "expired" {
                        not_expired_reason += 1;
                    }
                    let at = cancelled.unwrap_or(now);
                    late_ms.insert(
                        id.to_owned(),
                        (at - *expires).num_microseconds().unwrap_or(0) as f64 / 1000.0,
                    );
                    seen_late_ms = seen_late_ms.max((now - *expires).num_milliseconds() as f64);
                }
                cursor = page["nextCursor"].as_str().map(str::to_owned);
                if cursor.is_none() {
                    break;
                }
            }
        }
    }

    // the stock: all of it back?
    let mut stock_back_ms = None;
    let mut held = i64::MAX;
    let stock_deadline = Utc::now() + chrono::Duration::seconds(30);
    while Utc::now() < stock_deadline {
        held = 0;
        for id in ids.iter() {
            let (_, _, p) = send(http.get(format!("{base}/api/v1/products/{}", id.query))).await;
            held += stock - p["stock"].as_i64().unwrap_or(0);
        }
        if held == 0 {
            stock_back_ms = Some((Utc::now() - last_expiry).num_milliseconds());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let outbox = server::metrics(&http, &base).await.map(|m| {
        json!({"pending": m.get("shop_outbox_pending"), "failing": m.get("shop_outbox_failing")})
    });
    drop(server);

    let mut lateness: Vec<f64> = late_ms.values().copied().collect();
    lateness.sort_by(f64::total_cmp);
    let pct = |p: f64| -> Option<f64> {
        if lateness.is_empty() {
            return None;
        }
        Some(round(
            lateness[((lateness.len() - 1) as f64 * p).round() as usize],
        ))
    };
    let cancelled = late_ms.len();
    Ok(json!({
        "orders": created.len(),
        "failed_to_create": failed,
        "created_in_ms": round(creation.as_secs_f64() * 1000.0),
        "payment_timeout_s": timeout_secs,
        "sweep_ms": sweep_ms,
        "cancelled": cancelled,
        "not_cancelled_within_s": grace.num_seconds(),
        "not_cancelled": created.len() - cancelled,
        "cancel_reason_not_expired": not_expired_reason,
        "late_p50_ms": pct(0.5),
        "late_p99_ms": pct(0.99),
        "late_max_ms": pct(1.0),
        "seen_late_max_ms": seen_late_ms,
        "units_still_held": held,
        "outbox_at_end": outbox,
        "stock_back_after_last_expiry_ms": stock_back_ms,
        "all_within_2s": cancelled == created.len() && pct(1.0).is_some_and(|m| m <= 2000.0),
    }))
}

/// The service token of the internal API between the split processes.
const SERVICE_TOKEN: &str = "bench-service-token";

type Metrics = Option<std::collections::BTreeMap<String, f64>>;

/// The purchase flow in split mode: three `shop` processes, `--contexts
/// product` (asking order's OrderLookup, over HTTP, for its
/// abandoned-reservation job), `order` (its Inventory port over HTTP to
/// product) and `payment` (its OrderLookup port over HTTP to order), each on its own database
/// (`urls`: product, order, payment), their events over RabbitMQ (`rabbitmq`)
/// on an exchange of their own, removed with its queues at the end. The same
/// purchase load as the monolith's, then what the split costs per purchase:
/// calls between processes, messages published and consumed, statements.
pub async fn split(s: &Settings, urls: [&str; 3], rabbitmq: &str) -> Result<Value> {
    let exchange = format!(
        "shop-bench.{}.{}",
        std::process::id(),
        Utc::now().timestamp_millis()
    );
    // the broker is reachable before any process starts (a wrong URL fails first)
    let broker = shop_tests::broker::Broker::connect_to(rabbitmq)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "the broker of split mode at {rabbitmq} (--rabbitmq URL, or --no-split): {e}"
            )
        })?;
    let result = split_run(s, urls, rabbitmq, &exchange).await;
    // the processes are gone (split_run dropped them): their queues go too
    broker.remove(&exchange).await;
    let mut v = result?;
    v["exchange"] = json!(exchange);
    Ok(v)
}

async fn split_run(s: &Settings, urls: [&str; 3], rabbitmq: &str, exchange: &str) -> Result<Value> {
    let common = |contexts: &str| -> Vec<(&'static str, String)> {
        vec![
            ("SHOP__CONTEXTS", contexts.to_owned()),
            ("SHOP__BUS__KIND", "rabbitmq".to_owned()),
            ("SHOP__BUS__RABBITMQ_URL", rabbitmq.to_owned()),
            ("SHOP__BUS__EXCHANGE", exchange.to_owned()),
            ("SHOP__PORTS__TOKEN", SERVICE_TOKEN.to_owned()),
        ]
    };
    let env =
        |v: &[(&'static str, String)]| v.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();
    // Every process is told every other's URL at start (the product
    // process asks the order process's OrderLookup too), so the ports are chosen first.
    let ports = [free_port()?, free_port()?, free_port()?];
    let base = |at: usize| format!("http://127.0.0.1:{}", ports[at]);
    let mut product_env = common("product");
    product_env.push(("SHOP__PORTS__ORDER_URL", base(1)));
    let product = Server::start_on(&s.shop, urls[0], ports[0], &env(&product_env)).await?;
    let mut order_env = common("order");
    order_env.push(("SHOP__PORTS__PRODUCT_URL", base(0)));
    let order = Server::start_on(&s.shop, urls[1], ports[1], &env(&order_env)).await?;
    let mut payment_env = common("payment");
    payment_env.push(("SHOP__PORTS__ORDER_URL", base(1)));
    let payment = Server::start_on(&s.shop, urls[2], ports[2], &env(&payment_env)).await?;
    let processes = [
        ("product", &product),
        ("order", &order),
        ("payment", &payment),
    ];

    let http = http()?;
    let mut r = Map::new();
    r.insert(
        "startup_ms".into(),
        processes
            .iter()
            .map(|(name, p)| {
                (
                    (*name).to_owned(),
                    json!(round(p.started_in.as_secs_f64() * 1000.0)),
                )
            })
            .collect::<Map<_, _>>()
            .into(),
    );
    let ids = Arc::new(server::seed(&http, &product.base, s.catalog, 1_000_000).await?);
    let bases = Bases {
        order: order.base.clone(),
        payment: payment.base.clone(),
    };

    // the same load as the monolith's purchase scenario
    let (mut purchases, notify_to_paid) = purchase_load(s, &http, &bases, &ids, "buyer").await;
    r.insert("purchase".into(), purchases.summary());
    r.insert("notify_to_paid".into(), notify_to_paid);

    // what a purchase costs, over purchases that do not poll: counters of
    // all three processes before, and after every purchase is paid and the
    // processes' traffic has stopped
    let n = if s.smoke { 32 } else { 640 };
    let read_all = || async {
        let mut all = Vec::new();
        for (_, p) in processes {
            all.push(server::metrics(&http, &p.base).await);
        }
        all
    };
    let (_, settled_before) = settle(&read_all, None).await;
    let before = read_all().await;
    let burst = purchase_burst(&http, &bases, &ids, n, "counted").await;
    let ok = burst.statuses.get(&200).copied().unwrap_or(0);
    let paid_before = value(&before[1], "shop_orders_paid_total");
    let (after, settled) = settle(&read_all, paid_before.map(|b| b + ok as f64)).await;
    let delta = |i: usize, name: &str| -> Option<f64> {
        Some(value(&after[i], name)? - value(&before[i], name)?)
    };
    let orders = delta(1, "shop_orders_created_total").unwrap_or(ok as f64);
    let per = |d: Option<f64>| d.filter(|_| orders > 0.0).map(|d| round(d / orders));
    let sum = |name: &str| -> Option<f64> { (0..3).map(|i| delta(i, name)).sum() };
    let mut cost = Map::new();
    cost.insert("over".into(), json!(orders));
    cost.insert("purchases_ok".into(), json!(ok));
    cost.insert(
        "paid_during_count".into(),
        json!(delta(1, "shop_orders_paid_total")),
    );
    cost.insert("settled".into(), json!(settled_before && settled));
    cost.insert(
        "port_calls".into(),
        json!(per(sum("shop_port_calls_total"))),
    );
    cost.insert(
        "bus_published".into(),
        json!(per(sum("shop_bus_published_total"))),
    );
    cost.insert(
        "bus_consumed".into(),
        json!(per(sum("shop_bus_consumed_total"))),
    );
    cost.insert("statements".into(), json!(per(sum(STATEMENTS))));
    cost.insert("commits".into(), json!(per(sum(COMMITS))));
    for (i, (name, _)) in processes.iter().enumerate() {
        cost.insert(
            (*name).into(),
            json!({
                "port_calls": per(delta(i, "shop_port_calls_total")),
                "bus_published": per(delta(i, "shop_bus_published_total")),
                "bus_consumed": per(delta(i, "shop_bus_consumed_total")),
                "statements": per(delta(i, STATEMENTS)),
                "commits": per(delta(i, COMMITS)),
            }),
        );
    }
    r.insert("per_purchase".into(), Value::Object(cost));
    let mut memory = Map::new();
    for (name, p) in processes {
        let (rss, peak) = p.memory();
        memory.insert(
            name.into(),
            json!({"rss_mib": round(rss), "peak_rss_mib": round(peak)}),
        );
    }
    r.insert("memory".into(), Value::Object(memory));
    drop((payment, order, product));
    if purchases.server_errors() > 0 {
        bail!(
            "split purchase saw {} server errors",
            purchases.server_errors()
        );
    }
    if ok == 0 {
        bail!(
            "split mode: no counted purchase succeeded ({:?})",
            burst.statuses
        );
    }
    Ok(Value::Object(r))
}

/// A counter from one process's `/metrics`: 0 when it has not counted any
/// yet (a counter shows up at its first increment), `None` when the process
/// could not be read.
fn value(m: &Metrics, name: &str) -> Option<f64> {
    Some(m.as_ref()?.get(name).copied().unwrap_or(0.0))
}

/// Reads the three processes' counters until nothing is pending in any
/// outbox, the order process counts `paid` orders paid (when given), and the
/// messages published and consumed have not moved over three reads 100 ms
/// apart; at most 60 s. Returns the last read and whether it settled.
async fn settle<F, Fut>(read_all: &F, paid: Option<f64>) -> (Vec<Metrics>, bool)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Vec<Metrics>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last: Option<(f64, f64)> = None;
    let mut still = 0;
    loop {
        let all = read_all().await;
        let total = |name: &str| all.iter().filter_map(|m| value(m, name)).sum::<f64>();
        let traffic = (
            total("shop_bus_published_total"),
            total("shop_bus_consumed_total"),
        );
        let idle = all
            .iter()
            .all(|m| value(m, "shop_outbox_pending").unwrap_or(0.0) == 0.0);
        let paid_ok = match paid {
            Some(p) => value(&all[1], "shop_orders_paid_total").is_some_and(|v| v >= p),
            None => true,
        };
        if idle && paid_ok && last == Some(traffic) {
            still += 1;
        } else {
            still = 0;
        }
        if still >= 2 {
            return (all, true);
        }
        if Instant::now() > deadline {
            return (all, false);
        }
        last = Some(traffic);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

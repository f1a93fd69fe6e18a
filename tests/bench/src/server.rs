//! shop under test: started from its binary on loopback, seeded through its
//! admin API, read through `/metrics`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::load::{Id, send};

pub const ADMIN: &str = "bench-admin-token";
pub const SECRET: &str = "bench-webhook-secret";
/// The HS256 key of customer tokens (`SHOP__AUTH__JWT_SECRET`) of the servers the bench starts.
pub const JWT_SECRET: &str = "bench-jwt-secret-of-at-least-32-bytes";

/// A customer token for `user` under [`JWT_SECRET`] (HS256; `sub`, `iat`, and
/// `exp` a day away, so that no run outlives it), made with `jsonwebtoken`.
pub fn mint(user: &str) -> String {
    mint_under(JWT_SECRET, user)
}

/// Like [`mint`], under another HS256 key.
pub fn mint_under(secret: &str, user: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": user, "iat": now, "exp": now + 24 * 3600});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("an HS256 token")
}

/// The tokens of users `PREFIX-0` to `PREFIX-(n-1)`, minted once, up front
/// (index `i` is `PREFIX-i`'s), so that no request pays for its token.
pub fn tokens(prefix: &str, n: usize) -> Arc<Vec<String>> {
    Arc::new((0..n).map(|i| mint(&format!("{prefix}-{i}"))).collect())
}

pub struct Server {
    child: Child,
    pub base: String,
    pub started_in: Duration,
}

impl Server {
    /// `shop serve` on a free port, with `env` on top of the bench's settings.
    pub async fn start(shop: &Path, database_url: &str, env: &[(&str, String)]) -> Result<Self> {
        Self::start_on(shop, database_url, free_port()?, env).await
    }

    /// `shop serve` on `port` (one [`free_port`] gave: the other processes of
    /// split mode are told this server's URL before it starts).
    pub async fn start_on(
        shop: &Path,
        database_url: &str,
        port: u16,
        env: &[(&str, String)],
    ) -> Result<Self> {
        let started = Instant::now();
        let child = Command::new(shop)
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("SHOP__SERVER__BIND", format!("127.0.0.1:{port}"))
            .env("SHOP__AUTH__ADMIN_TOKEN", ADMIN)
            .env("SHOP__AUTH__JWT_SECRET", JWT_SECRET)
            .env("SHOP__PAYMENT__WEBHOOK_SECRET", SECRET)
            .env("SHOP__LOG__FORMAT", "json")
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (build it: cargo build --release -p shop)",
                    shop.display()
                )
            })?;
        let mut server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            started_in: Duration::ZERO,
        };
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client
                .get(format!("{}/health/ready", server.base))
                .send()
                .await
                && r.status().is_success()
            {
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!("shop exited before it was ready: {status}");
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("shop did not become ready in 30 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        server.started_in = started.elapsed();
        Ok(server)
    }

    /// Resident memory in MiB: (now, peak).
    pub fn memory(&self) -> (f64, f64) {
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

/// A loopback port nothing listens on right now (bound, then let go).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates `n` products (with `stock` each) through the admin API; returns their ids.
pub async fn seed(http: &reqwest::Client, base: &str, n: usize, stock: i64) -> Result<Vec<Id>> {
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
                        && let Some(id) = Id::from_json(&product["productId"])
                    {
                        made.lock().await.push(id);
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

/// `/metrics`, each metric's series summed over their labels.
pub async fn metrics(http: &reqwest::Client, base: &str) -> Option<BTreeMap<String, f64>> {
    let response = http
        .get(format!("{base}/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .ok()?;
    // A refusal is the driver's mistake, not a missing figure: say so.
    assert!(
        response.status().is_success(),
        "GET /metrics answered {}: the driver must be allowed to read it",
        response.status()
    );
    let text = response.text().await.ok()?;
    let mut sums = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series).trim();
        if let Ok(v) = value.trim().parse::<f64>() {
            *sums.entry(name.to_owned()).or_insert(0.0) += v;
        }
    }
    Some(sums)
}

/// Waits (up to `limit`) until every event delivery is handled, as `/metrics` reports it.
pub async fn drain(http: &reqwest::Client, base: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let pending = metrics(http, base)
            .await
            .and_then(|m| m.get("shop_outbox_pending").copied());
        match pending {
            Some(0.0) => return true,
            None => return false,
            Some(_) if Instant::now() > deadline => return false,
            Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The database work one use case cost, from the seam's counters.
pub struct DbWork {
    pub statements: Option<f64>,
    pub commits: Option<f64>,
    pub units: f64,
}

pub const STATEMENTS: &str = "shop_db_statements_total";
pub const COMMITS: &str = "shop_db_commits_total";

impl DbWork {
    pub fn between(
        before: &Option<BTreeMap<String, f64>>,
        after: &Option<BTreeMap<String, f64>>,
        units: f64,
    ) -> Self {
        let delta = |name: &str| -> Option<f64> {
            let (b, a) = (before.as_ref()?, after.as_ref()?);
            Some(a.get(name)? - b.get(name)?)
        };
        let per = |d: Option<f64>| d.filter(|_| units > 0.0).map(|d| d / units);
        Self {
            statements: per(delta(STATEMENTS)),
            commits: per(delta(COMMITS)),
            units,
        }
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "statements": self.statements.map(crate::load::round),
            "commits": self.commits.map(crate::load::round),
            "over": self.units,
        })
    }
}

//! The one load generator every HTTP figure comes from (shop's routes and
//! the Flask peer's alike): `clients` tasks, each sending one request after
//! the other for a bounded time, every latency and status kept.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Latencies and statuses of one scenario.
#[derive(Default)]
pub struct Sample {
    pub latencies: Vec<Duration>,
    pub statuses: BTreeMap<u16, usize>,
    pub elapsed: Duration,
    /// Cores the whole machine was busy during the run (from /proc/stat).
    pub busy_cores: Option<f64>,
    /// Of those, the cores this process (the load generator) used.
    pub loadgen_cores: Option<f64>,
}

impl Sample {
    fn merge(&mut self, other: Sample) {
        self.latencies.extend(other.latencies);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
    }

    pub fn record(&mut self, status: u16, latency: Duration) {
        self.latencies.push(latency);
        *self.statuses.entry(status).or_default() += 1;
    }

    /// Successful (2xx) answers a second: an error answered fast is not throughput.
    pub fn rate(&self) -> f64 {
        self.ok() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn ok(&self) -> usize {
        self.statuses
            .iter()
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn server_errors(&self) -> usize {
        self.statuses
            .iter()
            .filter(|(s, _)| **s >= 500)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn percentile(&mut self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i].as_secs_f64() * 1000.0
    }

    pub fn summary(&mut self) -> Value {
        json!({
            "per_second": round(self.rate()),
            "p50_ms": round(self.percentile(0.50)),
            "p99_ms": round(self.percentile(0.99)),
            "max_ms": round(self.percentile(1.0)),
            "count": self.latencies.len(),
            "ok": self.ok(),
            "seconds": round(self.elapsed.as_secs_f64()),
            "busy_cores": self.busy_cores.map(round),
            "loadgen_cores": self.loadgen_cores.map(round),
            "statuses": self.statuses.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

pub fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Busy and total jiffies of all CPUs, from /proc/stat.
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4)?; // idle + iowait
    Some((total - idle, total))
}

/// CPU time this process used so far, in clock ticks (USER_HZ, 100 a second), from /proc/self/stat.
fn own_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    Some(fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?)
}

/// Measures how many cores the machine kept busy, and this process used, while work ran.
pub struct CpuMeter(Option<(u64, u64)>, Option<u64>, Instant);

impl CpuMeter {
    pub fn start() -> Self {
        Self(cpu_jiffies(), own_ticks(), Instant::now())
    }

    pub fn own_cores(&self) -> Option<f64> {
        let ticks = own_ticks()?.checked_sub(self.1?)?;
        Some(ticks as f64 / 100.0 / self.2.elapsed().as_secs_f64().max(1e-9))
    }

    pub fn busy_cores(&self) -> Option<f64> {
        let (busy0, total0) = self.0?;
        let (busy1, total1) = cpu_jiffies()?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let total = total1.checked_sub(total0)?;
        (total > 0).then(|| (busy1.saturating_sub(busy0)) as f64 / total as f64 * cpus)
    }
}

/// `clients` tasks run `step` in a loop for `duration`; each step's latency and status are kept.
/// A warm-up of `warmup` (same load, unrecorded) runs first.
pub async fn load<F, Fut>(clients: usize, warmup: Duration, duration: Duration, step: F) -> Sample
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = (u16, Duration)> + Send,
{
    let step = Arc::new(step);
    if !warmup.is_zero() {
        run(clients, warmup, step.clone()).await;
    }
    run(clients, duration, step).await
}

async fn run<F, Fut>(clients: usize, duration: Duration, step: Arc<F>) -> Sample
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = (u16, Duration)> + Send,
{
    let cpu = CpuMeter::start();
    let started = Instant::now();
    let deadline = started + duration;
    // Every client is spawned before any is awaited: they run at once.
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let step = step.clone();
            tokio::spawn(async move {
                let mut sample = Sample::default();
                let mut i = 0;
                while Instant::now() < deadline {
                    let (status, latency) = step(client, i).await;
                    sample.record(status, latency);
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
    total.busy_cores = cpu.busy_cores();
    total.loadgen_cores = cpu.own_cores();
    total
}

/// Sends a request; a transport failure is status 599.
pub async fn send(request: reqwest::RequestBuilder) -> (u16, Duration, Value) {
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

/// Like [`send`], the body read and dropped.
pub async fn hit(request: reqwest::RequestBuilder) -> (u16, Duration) {
    let started = Instant::now();
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let _ = response.bytes().await;
            (status, started.elapsed())
        }
        Err(_) => (599, started.elapsed()),
    }
}

/// A product id as a server gave it: a JSON literal for bodies (17 or "uuid")
/// and its text for query strings.
#[derive(Clone, Debug)]
pub struct Id {
    pub json: Value,
    pub query: String,
}

impl Id {
    pub fn from_json(v: &Value) -> Option<Self> {
        let query = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        // Ids here are digits, or UUIDs (hex and dashes): nothing to escape in a query.
        if !query
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return None;
        }
        Some(Self {
            json: v.clone(),
            query,
        })
    }
}

/// The product a client picks at its i-th step: the same spread over the
/// catalog for every server, so that shop and the peer take the same requests.
pub fn pick(n: usize, client: usize, i: usize) -> usize {
    (client.wrapping_mul(7919) + i.wrapping_mul(104_729)) % n.max(1)
}

/// The original spec's two requests, the same bytes for shop and the peer
/// (ids aside), on the article's routes.
pub mod article {
    use super::{Id, hit, pick};
    use serde_json::json;
    use std::sync::Arc;
    use std::time::Duration;

    pub fn get_product_info(
        http: &reqwest::Client,
        base: &str,
        ids: &Arc<Vec<Id>>,
    ) -> impl Fn(usize, usize) -> std::pin::Pin<Box<dyn Future<Output = (u16, Duration)> + Send>>
    + Send
    + Sync
    + 'static {
        let (http, base, ids) = (http.clone(), base.to_owned(), ids.clone());
        move |c, i| {
            let id = &ids[pick(ids.len(), c, i)];
            let request = http.get(format!("{base}/getProductInfo?productId={}", id.query));
            Box::pin(hit(request))
        }
    }

    /// Client `c` orders as `bench-{c}`; with `tokens` (shop: `tokens[c]` is
    /// `bench-{c}`'s), each request carries its client's bearer token; the peer takes none.
    pub fn create_order(
        http: &reqwest::Client,
        base: &str,
        ids: &Arc<Vec<Id>>,
        tokens: Option<Arc<Vec<String>>>,
    ) -> impl Fn(usize, usize) -> std::pin::Pin<Box<dyn Future<Output = (u16, Duration)> + Send>>
    + Send
    + Sync
    + 'static {
        let (http, base, ids) = (http.clone(), base.to_owned(), ids.clone());
        move |c, i| {
            let id = &ids[pick(ids.len(), c, i)];
            let body = json!({"productId": id.json, "quantity": 1, "userId": format!("bench-{c}")});
            let mut request = http.post(format!("{base}/createOrder")).json(&body);
            if let Some(token) = tokens.as_ref().and_then(|t| t.get(c)) {
                request = request.bearer_auth(token);
            }
            Box::pin(hit(request))
        }
    }
}

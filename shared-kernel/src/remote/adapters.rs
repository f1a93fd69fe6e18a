//! The ports over HTTP: [`RemoteInventory`] and [`RemoteOrderLookup`] call
//! the internal API (`/internal/v1`, see [`super::internal`]) of the process
//! that runs the implementing context.
//!
//! Every call:
//! - carries the service token, the request id (`X-Request-Id`) and a W3C
//!   `traceparent` whose trace id is the request id when that is a UUID;
//! - is bounded by one budget (`SHOP__PORTS__TIMEOUT_MS`) for all its attempts;
//! - is tried up to [`MAX_ATTEMPTS`] times, with exponential back-off and full
//!   jitter, on connect errors, timeouts and 502/503/504 (never on a 4xx).
//!   Every call of these ports is safe to repeat: a reservation is idempotent
//!   per reservation id, a release is idempotent, the rest are reads;
//! - goes through a circuit breaker per remote: after [`FAILURES_TO_OPEN`]
//!   calls failed in a row it opens and calls fail at once with
//!   [`PortError::Unavailable`] for [`OPEN_FOR`]; then one trial call goes
//!   through (half-open), and its outcome closes or reopens it;
//! - is counted in `shop_port_calls_total{port, outcome}` (`ok`, `refused`,
//!   `error`, `timeout`, `short_circuited`) and timed in
//!   `shop_port_call_duration_seconds{port}`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::Rng;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;

use super::internal::{
    self, LineEntry, OrderEntry, ProductsAnswer, ProductsRequest, Refusal, ReserveAnswer,
    ReserveRequest, codes,
};
use crate::model::money::{Currency, Money};
use crate::model::ports::{
    Inventory, OrderLookup, OrderSummary, PortError, ProductSnapshot, ReservationLine,
    ReserveError, ReservedLine, Shortage,
};

/// The most attempts one call makes.
pub const MAX_ATTEMPTS: u32 = 3;
/// Consecutive failed calls that open a breaker.
pub const FAILURES_TO_OPEN: u32 = 5;
/// How long an open breaker fails calls at once before it lets a trial through.
pub const OPEN_FOR: Duration = Duration::from_secs(5);
/// The first back-off's ceiling; each retry doubles it, up to [`BACKOFF_CAP`].
pub const BACKOFF_BASE: Duration = Duration::from_millis(50);
pub const BACKOFF_CAP: Duration = Duration::from_secs(1);

/// The default budget of one call (`SHOP__PORTS__TIMEOUT_MS`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(2000);

// ---------------------------------------------------------------------------
// Pure parts: the breaker's state machine and the back-off, with the clock
// and the randomness given to them.

/// A circuit breaker's state machine. It reads no clock: callers pass `now`.
#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: BreakerState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; `failures` in a row so far.
    Closed { failures: u32 },
    /// Calls fail at once until `until`.
    Open { until: Instant },
    /// One trial call is out since `since`; the others fail at once. A trial
    /// that never reports (its caller went away) is replaced after `open_for`.
    HalfOpen { since: Instant },
}

/// Whether a call may go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The breaker is closed.
    Call,
    /// The breaker was open long enough: this call is the trial.
    Trial,
    /// The breaker is open (or a trial is out): fail at once.
    Rejected,
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            state: BreakerState::Closed { failures: 0 },
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Asks to make a call at `now`.
    pub fn admit(&mut self, now: Instant) -> Admission {
        let trial_at = match self.state {
            BreakerState::Closed { .. } => return Admission::Call,
            BreakerState::Open { until } => until,
            BreakerState::HalfOpen { since } => since + self.open_for,
        };
        if now >= trial_at {
            self.state = BreakerState::HalfOpen { since: now };
            Admission::Trial
        } else {
            Admission::Rejected
        }
    }

    /// An admitted call worked (or was refused by the other side, which works).
    pub fn succeeded(&mut self) {
        self.state = BreakerState::Closed { failures: 0 };
    }

    /// An admitted call failed at `now`.
    pub fn failed(&mut self, now: Instant) {
        self.state = match self.state {
            BreakerState::Closed { failures } if failures + 1 < self.threshold => {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            BreakerState::Closed { .. } | BreakerState::HalfOpen { .. } => BreakerState::Open {
                until: now + self.open_for,
            },
            // A call let through before the breaker opened: it stays open as it is.
            open @ BreakerState::Open { .. } => open,
        };
    }
}

/// The wait before retry number `retry` (0 for the first retry): full
/// jitter, `unit` (in `[0, 1)`, drawn at random) times the ceiling
/// `min(cap, base * 2^retry)`.
pub fn backoff(retry: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    let ceiling = base
        .checked_mul(2u32.saturating_pow(retry))
        .unwrap_or(cap)
        .min(cap);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// The W3C `traceparent` of a call made for request `request_id`: its trace
/// id is the request id's 128 bits when that is a UUID (not nil), so that one
/// id finds the request in every process's logs; otherwise `random_trace`.
pub fn traceparent(request_id: &str, random_trace: u128, span: u64) -> String {
    let trace = uuid::Uuid::parse_str(request_id)
        .ok()
        .map(|u| u.as_u128())
        .filter(|t| *t != 0)
        .unwrap_or(random_trace.max(1));
    format!("00-{trace:032x}-{:016x}-01", span.max(1))
}

// ---------------------------------------------------------------------------
// The HTTP client shared by both adapters.

/// Where a remote is and how to call it.
#[derive(Clone)]
pub struct RemoteSettings {
    /// The other process's base URL (`http://product:8080`).
    pub base_url: Url,
    /// The service token (`SHOP__PORTS__TOKEN`).
    pub token: SecretString,
    /// The budget of one call, all attempts included (`SHOP__PORTS__TIMEOUT_MS`).
    pub timeout: Duration,
}

impl std::fmt::Debug for RemoteSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSettings")
            .field("base_url", &self.base_url.as_str())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What a call's answer meant.
enum Answer<T, R> {
    Ok(T),
    /// The other side said no (a rule, not a failure).
    Refused(R),
}

/// Why an attempt failed.
#[derive(Debug)]
enum Failure {
    /// No answer within the budget: retried while the budget lasts.
    Timeout(String),
    /// Connect error, connection lost, 502/503/504: retried.
    Transient(String),
    /// An answer that is not one of the contract's: not retried.
    Fatal(String),
}

impl Failure {
    fn retryable(&self) -> bool {
        !matches!(self, Self::Fatal(_))
    }

    fn detail(&self) -> &str {
        match self {
            Self::Timeout(d) | Self::Transient(d) | Self::Fatal(d) => d,
        }
    }
}

#[derive(Clone, Copy)]
enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

struct Remote {
    /// The `port` label: `inventory` or `order_lookup`.
    port: &'static str,
    settings: RemoteSettings,
    client: reqwest::Client,
    breaker: Mutex<Breaker>,
}

impl Remote {
    fn new(port: &'static str, settings: RemoteSettings) -> Result<Self, PortError> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.timeout)
            .pool_idle_timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| PortError::Unexpected(anyhow::anyhow!("HTTP client: {e}")))?;
        // The series exist before the first call, for dashboards.
        for outcome in ["ok", "refused", "error", "timeout", "short_circuited"] {
            metrics::counter!("shop_port_calls_total", "port" => port, "outcome" => outcome)
                .increment(0);
        }
        Ok(Self {
            port,
            settings,
            client,
            breaker: Mutex::new(Breaker::new(FAILURES_TO_OPEN, OPEN_FOR)),
        })
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.settings.base_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .extend(internal::PREFIX.split('/').filter(|s| !s.is_empty()))
                .extend(segments);
        }
        url
    }

    fn admit(&self) -> Admission {
        self.breaker
            .lock()
            .map_or(Admission::Call, |mut b| b.admit(Instant::now()))
    }

    fn report(&self, ok: bool) {
        if let Ok(mut breaker) = self.breaker.lock() {
            let before = breaker.state();
            if ok {
                breaker.succeeded();
            } else {
                breaker.failed(Instant::now());
            }
            let after = breaker.state();
            if matches!(after, BreakerState::Open { .. })
                && !matches!(before, BreakerState::Open { .. })
            {
                tracing::warn!(port = self.port, url = %self.settings.base_url, "circuit breaker open: calls fail at once for {OPEN_FOR:?}");
            } else if ok && !matches!(before, BreakerState::Closed { .. }) {
                tracing::info!(port = self.port, "circuit breaker closed again");
            }
        }
    }

    /// Makes the call, with its retries, breaker and metrics. `read` turns
    /// an answer (not 502/503/504) into what it means.
    async fn call<T, R>(
        &self,
        verb: Verb,
        segments: &[&str],
        body: Option<serde_json::Value>,
        read: impl Fn(StatusCode, &[u8]) -> Result<Answer<T, R>, Failure>,
    ) -> Result<Answer<T, R>, PortError> {
        let started = Instant::now();
        let port = self.port;
        if self.admit() == Admission::Rejected {
            metrics::counter!("shop_port_calls_total", "port" => port, "outcome" => "short_circuited").increment(1);
            return Err(PortError::Unavailable(format!(
                "the {port} service is unavailable (circuit breaker open)"
            )));
        }
        let deadline = started + self.settings.timeout;
        let request_id =
            crate::web::request_id::current().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let trace: u128 = rand::rng().random();
        let url = self.url(segments);
        let mut attempt = 0;
        let result = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break Err(Failure::Timeout(format!(
                    "the {port} service did not answer within {:?}",
                    self.settings.timeout
                )));
            }
            let span: u64 = rand::rng().random();
            let outcome = self
                .attempt(
                    verb,
                    &url,
                    body.as_ref(),
                    remaining,
                    &request_id,
                    trace,
                    span,
                )
                .await;
            let outcome = outcome.and_then(|(status, bytes)| read(status, &bytes));
            attempt += 1;
            match outcome {
                Err(failure) if failure.retryable() && attempt < MAX_ATTEMPTS => {
                    let wait = backoff(
                        attempt - 1,
                        BACKOFF_BASE,
                        BACKOFF_CAP,
                        rand::rng().random::<f64>(),
                    );
                    if Instant::now() + wait >= deadline {
                        break Err(failure);
                    }
                    tracing::debug!(
                        port,
                        attempt,
                        error = failure.detail(),
                        ?wait,
                        "port call failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
                other => break other,
            }
        };
        metrics::histogram!("shop_port_call_duration_seconds", "port" => port)
            .record(started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(Answer::Ok(_)) => "ok",
            Ok(Answer::Refused(_)) => "refused",
            Err(Failure::Timeout(_)) => "timeout",
            Err(_) => "error",
        };
        metrics::counter!("shop_port_calls_total", "port" => port, "outcome" => outcome)
            .increment(1);
        self.report(result.is_ok());
        result.map_err(|failure| {
            tracing::warn!(
                port,
                attempts = attempt,
                error = failure.detail(),
                "port call failed"
            );
            PortError::Unavailable(failure.detail().to_owned())
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        verb: Verb,
        url: &Url,
        body: Option<&serde_json::Value>,
        timeout: Duration,
        request_id: &str,
        trace: u128,
        span: u64,
    ) -> Result<(StatusCode, Vec<u8>), Failure> {
        let port = self.port;
        let url = url.clone();
        let mut request = match verb {
            Verb::Get => self.client.get(url),
            Verb::Post => self.client.post(url),
            Verb::Put => self.client.put(url),
            Verb::Delete => self.client.delete(url),
        }
        .timeout(timeout)
        .bearer_auth(self.settings.token.expose_secret())
        .header("x-request-id", request_id)
        .header("traceparent", traceparent(request_id, trace, span));
        if let Some(body) = body {
            request = request.json(body);
        }
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                Failure::Timeout(format!("the {port} service did not answer in time: {e}"))
            } else {
                Failure::Transient(format!("the {port} service cannot be reached: {e}"))
            }
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if matches!(
            status,
            StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
        ) {
            return Err(Failure::Transient(format!(
                "the {port} service answered {status}"
            )));
        }
        Ok((status, bytes.to_vec()))
    }
}

fn parse<T: DeserializeOwned>(port: &str, bytes: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(bytes).map_err(|e| {
        Failure::Fatal(format!(
            "the {port} service's answer is not understood: {e}"
        ))
    })
}

fn unexpected<T>(port: &str, status: StatusCode, bytes: &[u8]) -> Result<T, Failure> {
    let code = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_owned))
        .unwrap_or_default();
    let hint = match status {
        StatusCode::UNAUTHORIZED => " (is SHOP__PORTS__TOKEN the same on both sides?)",
        StatusCode::NOT_FOUND => {
            " (does the other side serve the internal API: SHOP__PORTS__TOKEN set?)"
        }
        _ => "",
    };
    Err(Failure::Fatal(format!(
        "the {port} service answered {status} {code}{hint}"
    )))
}

fn money(port: &str, minor: i64, currency: &str) -> Result<Money, Failure> {
    Currency::parse(currency)
        .map(|c| Money::new(minor, c))
        .map_err(|_| {
            Failure::Fatal(format!(
                "the {port} service sent a bad currency {currency:?}"
            ))
        })
}

// ---------------------------------------------------------------------------
// The adapters.

/// The product context's `Inventory`, in another process.
pub struct RemoteInventory {
    remote: Arc<Remote>,
}

impl RemoteInventory {
    pub fn new(settings: RemoteSettings) -> Result<Self, PortError> {
        Ok(Self {
            remote: Arc::new(Remote::new("inventory", settings)?),
        })
    }
}

#[async_trait]
impl Inventory for RemoteInventory {
    async fn products(&self, product_ids: &[String]) -> Result<Vec<ProductSnapshot>, PortError> {
        if product_ids.is_empty() {
            return Ok(Vec::new());
        }
        let body = serde_json::to_value(ProductsRequest {
            product_ids: product_ids.to_vec(),
        })
        .map_err(anyhow::Error::from)?;
        let port = self.remote.port;
        let answer = self
            .remote
            .call(
                Verb::Post,
                &["inventory", "products"],
                Some(body),
                |status, bytes| match status {
                    StatusCode::OK => {
                        let answer: ProductsAnswer = parse(port, bytes)?;
                        answer
                            .products
                            .into_iter()
                            .map(|p| {
                                Ok(ProductSnapshot {
                                    price: money(port, p.price, &p.currency)?,
                                    product_id: p.product_id,
                                    name: p.name,
                                    stock: p.stock,
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()
                            .map(Answer::<_, ()>::Ok)
                    }
                    other => unexpected(port, other, bytes),
                },
            )
            .await?;
        match answer {
            Answer::Ok(products) => Ok(products),
            Answer::Refused(()) => Ok(Vec::new()),
        }
    }

    async fn reserve(
        &self,
        reservation_id: &str,
        lines: &[ReservationLine],
        hold_until: DateTime<Utc>,
    ) -> Result<Vec<ReservedLine>, ReserveError> {
        let body = serde_json::to_value(ReserveRequest {
            lines: lines
                .iter()
                .map(|l| LineEntry {
                    product_id: l.product_id.clone(),
                    quantity: l.quantity,
                })
                .collect(),
            hold_until,
        })
        .map_err(|e| PortError::from(anyhow::Error::from(e)))?;
        let port = self.remote.port;
        let answer = self
            .remote
            .call(
                Verb::Put,
                &["inventory", "reservations", reservation_id],
                Some(body),
                |status, bytes| match status {
                    StatusCode::OK => {
                        let answer: ReserveAnswer = parse(port, bytes)?;
                        answer
                            .lines
                            .into_iter()
                            .map(|l| {
                                Ok(ReservedLine {
                                    unit_price: money(port, l.unit_price, &l.currency)?,
                                    product_id: l.product_id,
                                    quantity: l.quantity,
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()
                            .map(Answer::Ok)
                    }
                    StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY => {
                        let refusal: Refusal = parse(port, bytes)?;
                        match refusal.problem.code.as_str() {
                            codes::UNKNOWN_PRODUCTS => Ok(Answer::Refused(
                                ReserveError::UnknownProducts(refusal.product_ids),
                            )),
                            codes::INSUFFICIENT_STOCK => {
                                Ok(Answer::Refused(ReserveError::InsufficientStock(
                                    refusal
                                        .shortages
                                        .into_iter()
                                        .map(|s| Shortage {
                                            product_id: s.product_id,
                                            requested: s.requested,
                                            available: s.available,
                                        })
                                        .collect(),
                                )))
                            }
                            codes::RESERVATION_RELEASED => {
                                Ok(Answer::Refused(ReserveError::AlreadyReleased))
                            }
                            codes::PRODUCT_ARCHIVED => Ok(Answer::Refused(
                                ReserveError::ArchivedProducts(refusal.product_ids),
                            )),
                            _ => unexpected(port, status, bytes),
                        }
                    }
                    other => unexpected(port, other, bytes),
                },
            )
            .await?;
        match answer {
            Answer::Ok(lines) => Ok(lines),
            Answer::Refused(refusal) => Err(refusal),
        }
    }

    async fn release(&self, reservation_id: &str) -> Result<(), PortError> {
        let port = self.remote.port;
        self.remote
            .call(
                Verb::Delete,
                &["inventory", "reservations", reservation_id],
                None,
                |status, bytes| match status {
                    StatusCode::NO_CONTENT | StatusCode::OK => Ok(Answer::<(), ()>::Ok(())),
                    other => unexpected(port, other, bytes),
                },
            )
            .await
            .map(|_| ())
    }
}

/// The order context's `OrderLookup`, in another process.
pub struct RemoteOrderLookup {
    remote: Arc<Remote>,
}

impl RemoteOrderLookup {
    pub fn new(settings: RemoteSettings) -> Result<Self, PortError> {
        Ok(Self {
            remote: Arc::new(Remote::new("order_lookup", settings)?),
        })
    }
}

#[async_trait]
impl OrderLookup for RemoteOrderLookup {
    async fn order(&self, order_id: &str) -> Result<Option<OrderSummary>, PortError> {
        let port = self.remote.port;
        let answer = self
            .remote
            .call(
                Verb::Get,
                &["orders", order_id],
                None,
                |status, bytes| match status {
                    StatusCode::OK => {
                        let order: OrderEntry = parse(port, bytes)?;
                        Ok(Answer::Ok(OrderSummary {
                            amount: money(port, order.amount, &order.currency)?,
                            order_id: order.order_id,
                            user_id: order.user_id,
                            state: order.status.into(),
                            expires_at: order.expires_at,
                        }))
                    }
                    StatusCode::NOT_FOUND => {
                        let refusal: Refusal = parse(port, bytes)?;
                        if refusal.problem.code == codes::ORDER_NOT_FOUND {
                            Ok(Answer::Refused(()))
                        } else {
                            unexpected(port, status, bytes)
                        }
                    }
                    other => unexpected(port, other, bytes),
                },
            )
            .await?;
        match answer {
            Answer::Ok(order) => Ok(Some(order)),
            Answer::Refused(()) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: Duration = Duration::from_secs(5);

    #[test]
    fn the_breaker_opens_after_five_failures_in_a_row() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(5, OPEN);
        for _ in 0..4 {
            assert_eq!(breaker.admit(t0), Admission::Call);
            breaker.failed(t0);
        }
        // A success in between starts the count again.
        breaker.succeeded();
        for _ in 0..4 {
            assert_eq!(breaker.admit(t0), Admission::Call);
            breaker.failed(t0);
        }
        assert_eq!(breaker.state(), BreakerState::Closed { failures: 4 });
        assert_eq!(breaker.admit(t0), Admission::Call);
        breaker.failed(t0);
        assert_eq!(breaker.state(), BreakerState::Open { until: t0 + OPEN });
        assert_eq!(breaker.admit(t0), Admission::Rejected);
        assert_eq!(
            breaker.admit(t0 + OPEN - Duration::from_millis(1)),
            Admission::Rejected
        );
    }

    #[test]
    fn after_the_open_period_one_trial_goes_through() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(5, OPEN);
        for _ in 0..5 {
            breaker.admit(t0);
            breaker.failed(t0);
        }
        let later = t0 + OPEN;
        assert_eq!(breaker.admit(later), Admission::Trial);
        assert_eq!(breaker.state(), BreakerState::HalfOpen { since: later });
        // Only one: the others fail at once while it is out.
        assert_eq!(breaker.admit(later), Admission::Rejected);
        assert_eq!(
            breaker.admit(later + Duration::from_secs(1)),
            Admission::Rejected
        );
        breaker.succeeded();
        assert_eq!(breaker.state(), BreakerState::Closed { failures: 0 });
        assert_eq!(breaker.admit(later), Admission::Call);
    }

    #[test]
    fn a_failed_trial_opens_the_breaker_again() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(5, OPEN);
        for _ in 0..5 {
            breaker.admit(t0);
            breaker.failed(t0);
        }
        let trial = t0 + OPEN + Duration::from_secs(2);
        assert_eq!(breaker.admit(trial), Admission::Trial);
        breaker.failed(trial);
        assert_eq!(
            breaker.state(),
            BreakerState::Open {
                until: trial + OPEN
            }
        );
        assert_eq!(breaker.admit(trial + OPEN / 2), Admission::Rejected);
        assert_eq!(breaker.admit(trial + OPEN), Admission::Trial);
    }

    #[test]
    fn a_trial_that_never_reports_is_replaced_after_the_open_period() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(5, OPEN);
        for _ in 0..5 {
            breaker.admit(t0);
            breaker.failed(t0);
        }
        assert_eq!(breaker.admit(t0 + OPEN), Admission::Trial);
        assert_eq!(
            breaker.admit(t0 + OPEN * 2 - Duration::from_millis(1)),
            Admission::Rejected
        );
        assert_eq!(breaker.admit(t0 + OPEN * 2), Admission::Trial);
    }

    #[test]
    fn a_late_failure_of_a_call_let_through_before_keeps_the_open_period() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(5, OPEN);
        for _ in 0..5 {
            breaker.admit(t0);
            breaker.failed(t0);
        }
        breaker.failed(t0 + Duration::from_secs(3));
        assert_eq!(breaker.state(), BreakerState::Open { until: t0 + OPEN });
    }

    #[test]
    fn back_off_is_full_jitter_under_a_doubling_ceiling() {
        let base = Duration::from_millis(50);
        let cap = Duration::from_secs(1);
        // The lowest draw waits nothing; the highest reaches the ceiling.
        for retry in 0..10 {
            assert_eq!(backoff(retry, base, cap, 0.0), Duration::ZERO);
        }
        assert_eq!(backoff(0, base, cap, 1.0), Duration::from_millis(50));
        assert_eq!(backoff(1, base, cap, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(2, base, cap, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(4, base, cap, 1.0), Duration::from_millis(800));
        assert_eq!(backoff(5, base, cap, 1.0), cap);
        assert_eq!(backoff(40, base, cap, 1.0), cap, "no overflow");
        assert_eq!(backoff(1, base, cap, 0.5), Duration::from_millis(50));
        // Out-of-range draws are clamped.
        assert_eq!(backoff(1, base, cap, 7.0), Duration::from_millis(100));
        assert_eq!(backoff(1, base, cap, -1.0), Duration::ZERO);
        // Any draw stays within [0, ceiling].
        let mut unit = 0.0;
        while unit < 1.0 {
            for retry in 0..MAX_ATTEMPTS {
                let wait = backoff(retry, base, cap, unit);
                assert!(wait <= (base * 2u32.pow(retry)).min(cap));
            }
            unit += 0.01;
        }
    }

    #[test]
    fn the_trace_id_is_the_request_id_when_that_is_a_uuid() {
        let id = "0190a6b2-7c1d-7e00-8a3b-1c2d3e4f5a6b";
        let header = traceparent(id, 0xabc, 0x1234);
        assert_eq!(
            header,
            "00-0190a6b27c1d7e008a3b1c2d3e4f5a6b-0000000000001234-01"
        );
        // Not a UUID (or the nil one): the random trace id.
        assert_eq!(
            traceparent("my-request", 0xabc, 7),
            "00-00000000000000000000000000000abc-0000000000000007-01"
        );
        assert_eq!(
            traceparent("00000000-0000-0000-0000-000000000000", 5, 7),
            "00-00000000000000000000000000000005-0000000000000007-01"
        );
        // All-zero ids are invalid in W3C trace context: never sent.
        assert_eq!(
            traceparent("x", 0, 0),
            "00-00000000000000000000000000000001-0000000000000001-01"
        );
    }

    /// A loopback HTTP server that answers the requests it gets with
    /// `answers`, in turn (then 500), one connection each, and keeps each
    /// request's head (lower-cased).
    async fn serve(answers: Vec<(u16, String)>) -> (Url, Arc<Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let kept = heads.clone();
        tokio::spawn(async move {
            let mut answers = answers.into_iter();
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                let head = loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    request.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&request).to_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length: usize = text[..end]
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        if n == 0 || request.len() >= end + 4 + length {
                            break text[..end].to_owned();
                        }
                    } else if n == 0 {
                        break text;
                    }
                };
                kept.lock().unwrap().push(head);
                let (status, body) = answers.next().unwrap_or((500, String::new()));
                let content_type = if status >= 400 {
                    "application/problem+json"
                } else {
                    "application/json"
                };
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        (url, heads)
    }

    fn settings(base_url: Url) -> RemoteSettings {
        RemoteSettings {
            base_url,
            token: SecretString::from("service-token"),
            timeout: Duration::from_secs(10),
        }
    }

    const PRODUCTS: &str =
        r#"{"products":[{"productId":"p1","name":"one","price":500,"currency":"CNY","stock":3}]}"#;

    #[tokio::test]
    async fn transient_answers_are_retried_with_the_same_ids() {
        let (url, heads) = serve(vec![
            (503, String::new()),
            (502, String::new()),
            (200, PRODUCTS.to_owned()),
        ])
        .await;
        let inventory = RemoteInventory::new(settings(url)).unwrap();
        let request_id = "0190a6b2-7c1d-7e00-8a3b-1c2d3e4f5a6b";
        let found = crate::web::request_id::scope(request_id.into(), async {
            inventory.products(&["p1".to_owned()]).await
        })
        .await
        .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].price,
            Money::new(500, Currency::parse("CNY").unwrap())
        );
        let heads = heads.lock().unwrap().clone();
        assert_eq!(heads.len(), 3, "two retries: {heads:?}");
        let mut spans = Vec::new();
        for head in &heads {
            assert!(
                head.starts_with("post /internal/v1/inventory/products "),
                "{head}"
            );
            assert!(
                head.contains("authorization: bearer service-token"),
                "{head}"
            );
            assert!(
                head.contains(&format!("x-request-id: {request_id}")),
                "{head}"
            );
            let traceparent = head
                .lines()
                .find_map(|l| l.strip_prefix("traceparent: "))
                .unwrap();
            let parts: Vec<&str> = traceparent.split('-').collect();
            assert_eq!(parts[0], "00");
            assert_eq!(parts[1], "0190a6b27c1d7e008a3b1c2d3e4f5a6b");
            assert_eq!(parts[2].len(), 16);
            assert_eq!(parts[3], "01");
            spans.push(parts[2].to_owned());
        }
        spans.dedup();
        assert_eq!(spans.len(), 3, "each attempt is a span of its own");
    }

    #[tokio::test]
    async fn at_most_three_attempts_then_unavailable() {
        let (url, heads) = serve(vec![(504, String::new()); 5]).await;
        let inventory = RemoteInventory::new(settings(url)).unwrap();
        let error = inventory.release("r-1").await.unwrap_err();
        assert!(matches!(error, PortError::Unavailable(_)), "{error:?}");
        assert_eq!(heads.lock().unwrap().len(), MAX_ATTEMPTS as usize);
    }

    #[tokio::test]
    async fn refusals_and_client_errors_are_not_retried() {
        let refusal = r#"{"type":"https://shop.example/problems/insufficient_stock","title":"Insufficient stock","status":409,"code":"insufficient_stock","shortages":[{"productId":"p1","requested":4,"available":3}]}"#;
        let (url, heads) = serve(vec![(409, refusal.to_owned()), (401, String::new())]).await;
        let inventory = RemoteInventory::new(settings(url)).unwrap();
        let lines = [ReservationLine {
            product_id: "p1".into(),
            quantity: 4,
        }];
        match inventory.reserve("r-1", &lines, Utc::now()).await {
            Err(ReserveError::InsufficientStock(shortages)) => assert_eq!(
                shortages,
                vec![Shortage {
                    product_id: "p1".into(),
                    requested: 4,
                    available: 3
                }]
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(heads.lock().unwrap().len(), 1);
        assert!(
            heads.lock().unwrap()[0].starts_with("put /internal/v1/inventory/reservations/r-1 ")
        );
        // A wrong token is a failure of the port, not a refusal, and not retried.
        assert!(matches!(
            inventory.reserve("r-2", &lines, Utc::now()).await,
            Err(ReserveError::Port(PortError::Unavailable(_)))
        ));
        assert_eq!(heads.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn an_unknown_order_is_none_but_an_unserved_route_is_a_failure() {
        let not_found = r#"{"type":"https://shop.example/problems/order_not_found","title":"Not found","status":404,"code":"order_not_found"}"#;
        let unserved = r#"{"type":"https://shop.example/problems/not_found","title":"Not found","status":404,"code":"not_found"}"#;
        let (url, _) = serve(vec![
            (404, not_found.to_owned()),
            (404, unserved.to_owned()),
        ])
        .await;
        let orders = RemoteOrderLookup::new(settings(url)).unwrap();
        assert_eq!(orders.order("o-1").await.unwrap(), None);
        assert!(matches!(
            orders.order("o-1").await,
            Err(PortError::Unavailable(_))
        ));
    }

    #[test]
    fn urls_keep_the_base_path_and_escape_ids() {
        let remote = Remote::new(
            "inventory",
            RemoteSettings {
                base_url: Url::parse("http://product:8080/shop/").unwrap(),
                token: SecretString::from("t"),
                timeout: DEFAULT_TIMEOUT,
            },
        )
        .unwrap();
        assert_eq!(
            remote.url(&["inventory", "reservations", "a/b c"]).as_str(),
            "http://product:8080/shop/internal/v1/inventory/reservations/a%2Fb%20c"
        );
    }
}

//! What operators see: Prometheus metrics and request ids.
//!
//! - Every request gets an id, taken from `X-Request-Id` when the client
//!   sent a sane one, generated otherwise, echoed in the response, recorded
//!   in the request's log span and carried (see `shared_kernel::web::request_id`)
//!   into its database work and the events it publishes.
//! - Requests are counted and timed by route template, method and status.
//! - `/metrics` renders every metric in Prometheus text format.

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpResponse, get, web};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use shared_kernel::messaging::outbox;
use shared_kernel::storage::db::Db;
use shared_kernel::web::auth::AdminTokenOnly;
use shared_kernel::web::problem::responses::{
    AdminTokenRequired, TooManyAuthFailures, Unauthorized,
};
use tracing::Span;
use tracing_actix_web::RootSpanBuilder;

/// The request id header, read and echoed.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request's id and route template, worked out once by [`observe`] and
/// kept in its extensions for the log span.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub id: String,
    pub route: String,
}

/// The process-wide metrics recorder (one per process, shared by every app in it).
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness); ours still renders what it records.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

/// HELP texts, and zero values for the series dashboards query, so that they exist before the first event.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "shop_http_requests_total",
        "HTTP requests by route template, method and status"
    );
    describe_histogram!(
        "shop_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by route template and method"
    );
    describe_counter!(
        "shop_port_calls_total",
        "Calls of a port over HTTP (split mode), by port (inventory, order_lookup) and outcome (ok, refused, error, timeout, short_circuited)"
    );
    describe_histogram!(
        "shop_port_call_duration_seconds",
        Unit::Seconds,
        "Latency of a port call over HTTP, its retries included, by port"
    );
    describe_counter!("shop_orders_created_total", "Orders placed");
    describe_counter!("shop_orders_paid_total", "Orders paid");
    describe_counter!(
        "shop_orders_cancelled_total",
        "Orders cancelled, by reason (expired, cancelled_by_user)"
    );
    describe_counter!(
        "shop_payments_initiated_total",
        "Payments opened, by method"
    );
    describe_counter!(
        "shop_payments_completed_total",
        "Payment outcomes reported by gateways, by method and outcome"
    );
    describe_counter!(
        "shop_payment_notifications_rejected_total",
        "Gateway notifications refused, by reason"
    );
    describe_counter!(
        "shop_payment_notifications_duplicate_total",
        "Gateway notifications that repeated one already applied"
    );
    describe_counter!(
        "shop_outbox_deliveries_total",
        "Event deliveries to subscribers, by event type and result"
    );
    describe_histogram!(
        "shop_outbox_dispatch_lag_seconds",
        Unit::Seconds,
        "Time from an event's commit to its handling"
    );
    describe_gauge!("shop_outbox_pending", "Event deliveries not yet handled");
    describe_counter!(
        "shop_bus_published_total",
        "Events the relay published to RabbitMQ, by event type and result (confirmed, failed)"
    );
    describe_counter!(
        "shop_bus_consumed_total",
        "Messages consumed from RabbitMQ, by context, event type and result (handled, failed: returned to the queue)"
    );
    describe_counter!(
        "shop_bus_dead_letters_total",
        "Messages sent to the dead-letter queue (kept failing, or not an event), by context and event type"
    );
    describe_gauge!(
        "shop_outbox_failing",
        "Pending event deliveries that failed at least once"
    );
    describe_gauge!(
        "shop_db_pool_connections",
        "Database connections open, by state (in_use, idle)"
    );
    describe_gauge!(
        "shop_db_pool_waiting",
        "Database work waiting for a pooled connection"
    );
    describe_counter!(
        "shop_auth_failures_total",
        "Credentials refused, by kind (customer_token, admin_token, service_token, ambiguous: two Authorization headers)"
    );
    describe_counter!(
        "shop_auth_addresses_limited_total",
        "Times a client address used up its failed authentications (its further failures are answered 429, slowly)"
    );
    describe_counter!(
        "shop_auth_failures_limited_total",
        "Failed authentications answered 429 because their client address was past its limit"
    );
    describe_counter!(
        "shop_broker_link_failures_total",
        "Failed attempts on a link to RabbitMQ (the publisher, or a context's consumer), by link: an outage logs one line down and one back"
    );

    metrics::counter!("shop_orders_created_total").increment(0);
    metrics::counter!("shop_orders_paid_total").increment(0);
    for reason in ["expired", "cancelled_by_user"] {
        metrics::counter!("shop_orders_cancelled_total", "reason" => reason).increment(0);
    }
    for method in ["alipay", "wechat_pay"] {
        metrics::counter!("shop_payments_initiated_total", "method" => method).increment(0);
        for outcome in ["succeeded", "failed"] {
            metrics::counter!("shop_payments_completed_total", "method" => method, "outcome" => outcome).increment(0);
        }
    }
    metrics::counter!("shop_payments_refunded_total").increment(0);
    for reason in [
        "invalid_signature",
        "amount_mismatch",
        "payment_not_found",
        "payment_already_final",
    ] {
        metrics::counter!("shop_payment_notifications_rejected_total", "reason" => reason)
            .increment(0);
    }
    metrics::counter!("shop_payment_notifications_duplicate_total").increment(0);
    metrics::gauge!("shop_db_pool_waiting").increment(0.0);
    for kind in [
        "customer_token",
        "staff_token",
        "admin_token",
        "service_token",
        "ambiguous",
    ] {
        metrics::counter!("shop_auth_failures_total", "kind" => kind).increment(0);
    }
    metrics::counter!("shop_auth_addresses_limited_total").increment(0);
    metrics::counter!("shop_auth_failures_limited_total").increment(0);
    metrics::counter!("shop_http_connection_errors_total").increment(0);
    metrics::counter!("shop_http_connections_refused_total").increment(0);
}

/// An id from the client is kept when it is short and printable; otherwise a new one is made.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

/// The outermost middleware: request id, then metrics of the whole request.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = request_id(&req);
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    req.extensions_mut().insert(RequestInfo {
        id: id.clone(),
        route: route.clone(),
    });
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let outcome = shared_kernel::web::request_id::scope(id.clone(), next.call(req)).await;
    let status = status_of(&outcome);
    let labels = [("route", route), ("method", method)];
    metrics::histogram!("shop_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    let mut labels = labels.to_vec();
    labels.push(("status", status.as_u16().to_string()));
    metrics::counter!("shop_http_requests_total", &labels).increment(1);
    let mut response = outcome?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(response)
}

/// The status a request ended with, whether as a response or as an error.
fn status_of<B>(outcome: &Result<ServiceResponse<B>, Error>) -> StatusCode {
    match outcome {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    }
}

/// The trace id of a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`),
/// when the request carries a well-formed one (other shop processes send it on
/// port calls): it joins the log lines of one request across processes.
fn trace_id(request: &ServiceRequest) -> Option<&str> {
    let value = request.headers().get("traceparent")?.to_str().ok()?;
    let mut parts = value.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    (parts.next().is_none()
        && hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(span, 16)
        && hex(flags, 2))
    .then_some(trace)
}

/// The request span of every log line a request causes: route template, method, status and request id.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let info = request.extensions().get::<RequestInfo>().cloned();
        let (id, route) = info.map_or_else(
            || (String::new(), "unmatched".to_owned()),
            |i| (i.id, i.route),
        );
        let span = tracing::info_span!(
            "request",
            request_id = %id,
            trace_id = tracing::field::Empty,
            method = %request.method(),
            route = %route,
            path = %request.path(),
            status = tracing::field::Empty,
        );
        if let Some(trace) = trace_id(request) {
            span.record("trace_id", trace);
        }
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        span.record("status", status_of(outcome).as_u16());
    }
}

/// Metrics
///
/// Every metric in Prometheus text format. It takes the admin token, and
/// only it: the counters tell order and payment volumes, which are a shop's
/// business, and each scrape reads the database (Prometheus sends the token
/// with `authorization: {credentials_file: ...}`; see deploy/prometheus.yml).
/// A staff member's JWT is for people, and short-lived: it does not scrape.
#[utoipa::path(
    operation_id = "metrics",
    tag = "operations",
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain"),
        (status = 401, response = Unauthorized),
        (status = 403, response = AdminTokenRequired),
        (status = 429, response = TooManyAuthFailures),
    ),
)]
#[get("/metrics")]
pub async fn render(_admin: AdminTokenOnly, db: web::Data<Db>) -> HttpResponse {
    let (open, idle) = db.pool_state();
    metrics::gauge!("shop_db_pool_connections", "state" => "in_use")
        .set(f64::from(open.saturating_sub(idle)));
    metrics::gauge!("shop_db_pool_connections", "state" => "idle").set(f64::from(idle));
    match db
        .run(|conn| outbox::backlog(conn).map_err(shared_kernel::storage::db::DbError::from))
        .await
    {
        Ok(backlog) => {
            metrics::gauge!("shop_outbox_pending").set(backlog.pending as f64);
            metrics::gauge!("shop_outbox_failing").set(backlog.failing as f64);
        }
        Err(error) => tracing::warn!(%error, "could not measure the outbox backlog"),
    }
    let handle = metrics();
    handle.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render())
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn only_a_well_formed_traceparent_gives_a_trace_id() {
        let trace = "0190a6b27c1d7e008a3b1c2d3e4f5a6b";
        let with = |value: &str| {
            let request = TestRequest::default()
                .insert_header(("traceparent", value))
                .to_srv_request();
            trace_id(&request).map(str::to_owned)
        };
        assert_eq!(
            with(&format!("00-{trace}-00f067aa0ba902b7-01")).as_deref(),
            Some(trace)
        );
        for bad in [
            format!("00-{trace}-00f067aa0ba902b7"),
            format!("00-{trace}-00f067aa0ba902b7-01-extra"),
            format!("ff-{trace}-00f067aa0ba902b7-01"),
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            format!("00-{}-00f067aa0ba902b7-01", trace.to_uppercase()),
            format!("00-{trace}-00f067aa0ba902-01"),
            "not a traceparent".to_owned(),
        ] {
            assert_eq!(with(&bad), None, "{bad}");
        }
        assert_eq!(trace_id(&TestRequest::default().to_srv_request()), None);
    }
}

//! Logs: human-readable lines on a terminal, or one JSON object a line
//! (for Logstash or Filebeat: no parsing rules needed). Every request ends
//! with one line (its span closing) that carries its route, status, latency
//! and request id; everything it causes is logged inside its span, so those
//! lines carry the request id too, and so do event handlers' lines.

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// What is logged unless `RUST_LOG` says otherwise: `info`, except the
/// per-request warning tracing-actix-web writes for every 4xx answer (a
/// client's mistake is not an operator's concern; 5xx stay, at error level).
pub const DEFAULT_FILTER: &str = "info,tracing_actix_web::middleware=error";

/// The AMQP client's own logs, unless `RUST_LOG` names `lapin`: off. lapin
/// logs every I/O error of a broken connection, at error level, each time it
/// tries (a thousand lines in a 15-second outage); shop logs each link's
/// outage itself, once when it starts and once when it ends, with the error
/// that started it (`shared_kernel::messaging::rabbitmq`).
pub const QUIET_LAPIN: &str = "lapin=off";

/// Installs the global subscriber. `RUST_LOG` refines the default filter.
pub fn init(format: LogFormat) {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
    let writer = std::io::stderr.with_max_level(tracing::Level::TRACE);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::CLOSE)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Pretty => builder.finish().with(ClientConnectionErrors).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .finish()
            .with(ClientConnectionErrors)
            .try_init(),
    };
}

/// The filter of `RUST_LOG` (the default when unset or unreadable), with
/// lapin's logs off unless it names them.
fn filter(rust_log: Option<&str>) -> EnvFilter {
    let directives = rust_log
        .filter(|value| !value.trim().is_empty())
        .unwrap_or(DEFAULT_FILTER);
    let filter = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    if directives.contains("lapin") {
        return filter;
    }
    match QUIET_LAPIN.parse() {
        Ok(quiet) => filter.add_directive(quiet),
        Err(_) => filter,
    }
}

/// actix's HTTP/1 layer logs every connection that ends in an error at error
/// level: a malformed request head (a NUL in the path, a 100 KB URI, two
/// `Content-Length`s, a thousand headers) or a client that went away. Those
/// are the client's doing, and any anonymous client could fill the error log
/// with them: they are counted (`shop_http_connection_errors_total`) and
/// logged at debug level under `shop::http` instead.
pub struct ClientConnectionErrors;

const ACTIX_H1: &str = "actix_http::h1::dispatcher";
const STREAM_ERROR: &str = "stream error: ";

impl<S: Subscriber> Layer<S> for ClientConnectionErrors {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let metadata = event.metadata();
        if *metadata.level() != Level::ERROR || metadata.target() != ACTIX_H1 {
            return true;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        let Some(cause) = message.0.strip_prefix(STREAM_ERROR) else {
            return true;
        };
        metrics::counter!("shop_http_connection_errors_total").increment(1);
        tracing::debug!(target: "shop::http", cause, "a connection ended in a protocol or I/O error");
        false
    }
}

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

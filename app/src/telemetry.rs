//! Logs: human-readable lines on a terminal, or one JSON object a line
//! (for Logstash or Filebeat: no parsing rules needed). Every request ends
//! with one line (its span closing) that carries its route, status, latency
//! and request id; everything it causes is logged inside its span, so those
//! lines carry the request id too, and so do event handlers' lines.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::fmt::writer::MakeWriterExt;

use crate::config::LogFormat;

/// What is logged unless `RUST_LOG` says otherwise: `info`, except the
/// per-request warning tracing-actix-web writes for every 4xx answer (a
/// client's mistake is not an operator's concern; 5xx stay, at error level).
pub const DEFAULT_FILTER: &str = "info,tracing_actix_web::middleware=error";

/// Installs the global subscriber. `RUST_LOG` refines the default filter.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let writer = std::io::stderr.with_max_level(tracing::Level::TRACE);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::CLOSE)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

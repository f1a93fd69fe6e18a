//! The shared kernel of shop: what every bounded context agrees on, in
//! rooms by concern. It names no context's concepts beyond the ports and
//! events the contexts exchange.
//!
//! - [`model`]: the domain vocabulary: ids, money (integer minor units with
//!   an ISO 4217 currency, never a float), timestamps, integration events,
//!   and the port traits one context offers another (`Inventory`,
//!   `OrderLookup`, `PaymentGateway`).
//! - [`storage`]: the connection type that serves SQLite, PostgreSQL and
//!   MySQL from one binary (`db`: pool, migrations, the per-backend
//!   differences), and the writers that share commits (`group_commit`).
//! - [`messaging`]: the transactional outbox and its dispatcher (`outbox`),
//!   and events over RabbitMQ between processes (`rabbitmq`).
//! - [`web`]: the HTTP edge: the RFC 9457 error model (`problem`), extractors
//!   whose failures are problems (`extract`), who is calling (`auth`),
//!   request ids, cursor pagination.
//! - [`remote`]: ports over HTTP (split mode): the internal API a process
//!   serves for the ports it offers (`internal`) and the adapters that call
//!   another process's (`adapters`).
//! - [`audit`]: the audit log: every staff write, recorded in the
//!   transaction of its change, and `listAuditEvents` that reads it.
//! - [`context`]: a bounded context as it describes itself to the app (its
//!   migrations, routes, subscribers, jobs, ports), the wiring it starts
//!   from, and background jobs.

pub mod audit;
pub mod context;
pub mod messaging;
pub mod model;
pub mod remote;
pub mod storage;
pub mod web;

pub use web::problem::{FieldViolation, Problem};

#[doc(hidden)]
pub mod __private {
    pub use uuid::Uuid;
}

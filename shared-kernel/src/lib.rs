//! The shared kernel of shop: the few things every bounded context agrees on.
//!
//! - [`money`]: integer minor units with an ISO 4217 currency, never a float.
//! - [`problem`]: the RFC 9457 error model every HTTP error is rendered in.
//! - [`auth`]: who is calling (customer tokens, the admin token) and what they may see.
//! - [`http`]: extractors whose failures are problems too (JSON body, query).
//! - [`db`]: the connection type that serves SQLite and PostgreSQL from one binary.
//! - [`pagination`]: opaque cursors and pages.
//! - [`clock`]: timestamps as the database stores them.

pub mod auth;
pub mod clock;
pub mod context;
pub mod db;
pub mod events;
pub mod group_commit;
pub mod http;
pub mod id;
pub mod money;
pub mod outbox;
pub mod pagination;
pub mod ports;
pub mod problem;
pub mod rabbitmq;
pub mod request_id;

pub use problem::{FieldViolation, Problem};

#[doc(hidden)]
pub mod __private {
    pub use uuid::Uuid;
}

//! The shared kernel of shop: the few things every bounded context agrees on.
//!
//! - [`money`]: integer minor units with an ISO 4217 currency, never a float.
//! - [`problem`]: the RFC 9457 error model every HTTP error is rendered in.
//! - [`auth`]: who is calling (customer tokens, the admin token) and what they may see.
//! - [`http`]: extractors whose failures are problems too (JSON body, query).
//! - [`db`]: the connection type that serves SQLite and PostgreSQL from one binary.
//! - [`pagination`]: opaque cursors and pages.
//! - [`clock`]: timestamps as the database stores them.

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

//! The order context: an order's lifecycle from placement to payment or
//! cancellation.
//!
//! Rooms: [`model`] holds the pure rules (the status state machine, request
//! validation, pricing); [`service`] the use cases behind the facade
//! [`OrderService`]; `repository` the diesel adapter; [`http`] the actix
//! adapter. Stock is reserved through the shared kernel's `Inventory` port;
//! every state change publishes its event through the outbox in the same
//! transaction. [`OrderDirectory`] implements the `OrderLookup` port for the
//! payment context, and [`PaymentOutcomes`] pays orders on `PaymentSucceeded`.

pub mod context;
pub mod error;
pub mod events;
pub mod http;
pub mod internal_http;
pub mod lookup;
pub mod model;
mod repository;
mod schema;
pub mod service;

pub use context::{CONTEXT, OrderConfig};
pub use error::OrderError;
pub use events::PaymentOutcomes;
pub use lookup::OrderDirectory;
pub use service::{EXPIRY_BATCH, OrderService};

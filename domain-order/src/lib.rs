//! The order context: an order's lifecycle from placement to payment or
//! cancellation.
//!
//! Rooms, the arrows pointing at the use cases:
//!
//! - [`model`]: the pure rules (the status state machine, request
//!   validation, pricing).
//! - [`service`]: the use cases behind the facade [`OrderService`], and those
//!   run in the caller's transaction (an event's delivery) or for a port.
//! - `repository`: the diesel adapter, called by the service only.
//! - [`http`]: the actix adapter; it also tells [`error`] how its bodies
//!   spell a request's fields; [`internal_http`]: the `OrderLookup` port
//!   served to a payment context in another process.
//! - [`lookup`]: [`OrderDirectory`], the shared kernel's `OrderLookup` port,
//!   calling [`service::look_up_order`]; [`events`]: [`PaymentOutcomes`],
//!   paying orders on `PaymentSucceeded` through the service.
//! - [`error`]: what the use cases can go wrong with; [`context`]: the
//!   context as it describes itself to the app ([`CONTEXT`]).
//!
//! Stock is reserved through the shared kernel's `Inventory` port; every
//! state change publishes its event through the outbox in the same
//! transaction.

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

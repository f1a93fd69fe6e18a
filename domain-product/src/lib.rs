//! The product context: the catalog and its stock.
//!
//! Rooms, the arrows pointing at the use cases:
//!
//! - [`model`]: the pure rules (no I/O).
//! - [`service`]: the use cases, by concern: [`service::catalog`] behind the
//!   module facade [`ProductCatalog`], [`service::reservations`] (the stock
//!   orders reserve) behind [`service::Reservations`] and, in the caller's
//!   transaction, for the order events.
//! - `repository` and `reservation_repository`: the diesel adapters, called
//!   by the service only.
//! - [`http`]: the actix adapter, mounted by [`http::configure_api`] and
//!   [`http::configure_original_spec`]; [`internal_http`]: the `Inventory`
//!   port served to an order context in another process.
//! - [`inventory`]: [`ProductInventory`], the shared kernel's `Inventory`
//!   port, calling the reservation use cases; [`events`]:
//!   [`StockReservations`], keeping reservations in step with orders' events
//!   through the same use cases.
//! - [`cache`]: products read by id, kept in memory, invalidated on every
//!   instance when they change.
//! - [`error`]: what the use cases can go wrong with; [`context`]: the
//!   context as it describes itself to the app ([`CONTEXT`]).

pub mod cache;
pub mod context;
pub mod error;
pub mod events;
pub mod http;
pub mod internal_http;
pub mod inventory;
pub mod model;
mod repository;
mod reservation_repository;
mod schema;
pub mod service;

pub use cache::ProductCache;
pub use context::{CONTEXT, ProductConfig};
pub use error::ProductError;
pub use events::StockReservations;
pub use inventory::ProductInventory;
pub use service::ProductCatalog;

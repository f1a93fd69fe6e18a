//! The product context: the catalog and its stock.
//!
//! Rooms: [`model`] holds the pure rules (no I/O); [`service`] the use cases
//! behind the module facade [`ProductCatalog`]; `repository` the diesel
//! adapter; [`http`] the actix adapter, mounted by [`http::configure_api`]
//! and [`http::configure_original_spec`]; [`cache`] keeps products read by
//! id in memory, invalidated on every instance when they change;
//! [`ProductInventory`] implements the shared kernel's `Inventory` port and
//! [`StockReservations`] keeps reservations in step with orders' events.

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

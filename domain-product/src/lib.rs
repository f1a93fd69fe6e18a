//! The product context: the catalog and its stock.
//!
//! Rooms: [`model`] holds the pure rules (no I/O); [`service`] the use cases
//! behind the module facade [`ProductCatalog`]; `repository` the diesel
//! adapter; [`http`] the actix adapter, mounted by [`http::configure_api`]
//! and [`http::configure_original_spec`].

pub mod error;
pub mod http;
pub mod model;
mod repository;
mod schema;
pub mod service;

pub use error::ProductError;
pub use service::ProductCatalog;

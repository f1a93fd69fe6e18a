//! The product context's use cases, one module by concern: [`catalog`], the
//! products, behind the module facade [`ProductCatalog`]; [`reservations`],
//! the stock that orders reserve, behind [`Reservations`] for the
//! `Inventory` port and as functions in the caller's transaction for the
//! order events.

pub mod catalog;
pub mod reservations;

pub use catalog::{Precondition, ProductCatalog, ProductPage};
pub use reservations::{ABANDONED_BATCH, AbandonedReservations, Reservations};

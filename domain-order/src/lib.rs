//! The order context: an order's lifecycle from placement to payment or
//! cancellation. So far it holds the pure rules ([`model`]); persistence,
//! use cases and routes arrive with the orders issue.

pub mod model;

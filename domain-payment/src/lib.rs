//! The payment context: payments, gateways and their notifications. So far
//! it holds the pure rules ([`model`]); persistence, gateways and routes
//! arrive with the payments issue.

pub mod model;

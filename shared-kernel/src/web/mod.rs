//! The HTTP edge every context shares: the problem+json error model,
//! extractors whose failures are problems, who is calling, request ids, and
//! cursor pagination.

pub mod auth;
pub mod client;
pub mod extract;
pub mod pagination;
pub mod problem;
pub mod request_id;

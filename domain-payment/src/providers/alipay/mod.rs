//! Alipay, in one folder: its three faces and its settings.
//!
//! - [`protocol`] (re-exported here): Alipay OpenAPI v2 with `RSA2`
//!   signatures, as pure code.
//! - [`gateway`]: the adapter behind the `PaymentGateway` port (the client
//!   that calls Alipay).
//! - [`notify`]: the route Alipay calls back (`POST /api/v1/payments/notify/alipay`).
//! - [`settings`]: `[payment.alipay]` (`SHOP__PAYMENT__ALIPAY__*`), read and
//!   checked when the settings load.

pub mod gateway;
pub mod notify;
pub mod protocol;
pub mod settings;

pub use protocol::*;

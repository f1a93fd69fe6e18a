//! WeChat Pay, in one folder: its three faces and its settings.
//!
//! - [`protocol`] (re-exported here): WeChat Pay API v3
//!   (`WECHATPAY2-SHA256-RSA2048`, AES-256-GCM), as pure code.
//! - [`gateway`]: the adapter behind the `PaymentGateway` port (the client
//!   that calls WeChat Pay).
//! - [`notify`]: the route WeChat Pay calls back (`POST /api/v1/payments/notify/wechat_pay`).
//! - [`settings`]: `[payment.wechat_pay]` (`SHOP__PAYMENT__WECHAT_PAY__*`),
//!   read and checked when the settings load.

pub mod gateway;
pub mod notify;
pub mod protocol;
pub mod settings;

pub use protocol::*;

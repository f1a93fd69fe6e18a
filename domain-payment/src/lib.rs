//! The payment context: payments, gateways and their notifications.
//!
//! Rooms:
//!
//! - [`context`]: the context as it describes itself to the app ([`CONTEXT`]).
//! - [`model`]: the pure rules (the payment status state machine).
//! - [`signature`]: the `Shop-Signature` scheme notifications are signed with.
//! - [`service`]: the use cases behind the facade [`PaymentService`].
//! - `repository`: the diesel adapter; [`http`]: the actix adapter of the
//!   REST and original-spec routes.
//! - [`providers`]: one folder per payment provider, holding its wire
//!   protocol, its gateway adapter, its notification route and its settings:
//!   [`providers::alipay`], [`providers::wechat_pay`], and [`sandbox`] (the
//!   built-in gateway and its checkout page); the code they share
//!   ([`providers::keys`], trade numbers) stays in `providers/`.
//!
//! Orders are read through the shared kernel's `OrderLookup` port; a
//! payment's outcome reaches the order context as an event, and [`Refunds`]
//! marks refused payments for refund.

pub mod context;
pub mod error;
pub mod events;
pub mod gateways;
pub mod http;
pub mod model;
mod notify;
pub mod providers;
mod qr;
mod repository;
mod schema;
pub mod service;
pub mod signature;

pub use context::{CONTEXT, PaymentConfig};
pub use error::PaymentError;
pub use events::{Refunds, TradeClosing};
pub use gateways::Gateways;
pub use providers::alipay::gateway::AlipayGateway;
pub use providers::sandbox::{self, CheckoutLinks, SandboxCheckout, SandboxGateway, SandboxTrades};
pub use providers::wechat_pay::gateway::WechatPayGateway;
pub use service::PaymentService;

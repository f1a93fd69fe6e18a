//! The payment context: payments, gateways and their notifications.
//!
//! Rooms, the arrows pointing at the use cases:
//!
//! - [`model`]: the pure rules (the payment status state machine, the rules
//!   a provider's report is held to).
//! - [`service`]: the use cases behind the facade [`PaymentService`], one
//!   file per use case.
//! - `repository`: the diesel adapter, called by the service only.
//! - [`http`]: the actix adapter of the REST and original-spec routes; the
//!   notification routes (the `Shop-Signature` ones there, each provider's in
//!   its folder) share one pipeline (`notify`) that applies them through the
//!   service.
//! - [`providers`]: one folder per payment provider, holding its wire
//!   protocol, its gateway adapter (the shared kernel's `PaymentGateway`
//!   port), its notification route and its settings: [`providers::alipay`],
//!   [`providers::wechat_pay`], and [`sandbox`] (the built-in gateway and its
//!   checkout page); the code they share ([`providers::keys`], trade numbers)
//!   stays in `providers/`; [`gateways`] finds a payment method's gateway.
//! - [`events`]: [`Refunds`] and [`TradeClosing`], reacting to the order
//!   context's events through the service.
//! - [`signature`]: the `Shop-Signature` scheme notifications are signed with.
//! - [`error`]: what the use cases can go wrong with; [`context`]: the
//!   context as it describes itself to the app ([`CONTEXT`]).
//!
//! Orders are read through the shared kernel's `OrderLookup` port; a
//! payment's outcome reaches the order context as an event.

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

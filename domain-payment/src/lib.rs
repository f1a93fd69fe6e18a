//! The payment context: payments, gateways and their notifications.
//!
//! Rooms: [`model`] holds the pure rules (the payment status state machine);
//! [`signature`] the `Shop-Signature` scheme notifications are signed with;
//! [`service`] the use cases behind the facade [`PaymentService`];
//! `repository` the diesel adapter; [`http`] the actix adapter; [`sandbox`]
//! the built-in gateway and its checkout page; [`providers`] the wire protocols
//! of Alipay and WeChat Pay, as pure functions. Orders are read through the
//! shared kernel's `OrderLookup` port; a payment's outcome reaches the order
//! context as an event, and [`Refunds`] marks refused payments for refund.

pub mod alipay_http;
pub mod context;
pub mod error;
pub mod events;
pub mod gateways;
pub mod http;
pub mod model;
pub mod providers;
mod qr;
mod repository;
pub mod sandbox;
mod schema;
pub mod service;
pub mod signature;
pub mod wechat_pay_notify;

pub use context::{CONTEXT, PaymentConfig};
pub use error::PaymentError;
pub use events::{Refunds, TradeClosing};
pub use gateways::Gateways;
pub use providers::wechat_pay_gateway::WechatPayGateway;
pub use sandbox::{CheckoutLinks, SandboxCheckout, SandboxGateway, SandboxTrades};
pub use service::PaymentService;

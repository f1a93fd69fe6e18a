//! Ports: what one context asks of another. Each is an object-safe async
//! trait, used as `Arc<dyn Port>`, so that an in-process implementation can
//! later be replaced by an HTTP client without touching the caller.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::model::money::Money;
use crate::storage::db::DbError;

/// A failure of the port itself, not of the request.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The other side cannot be reached right now; retrying later may work.
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<DbError> for PortError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(detail) => Self::Unavailable(detail),
            other => Self::Unexpected(anyhow::Error::new(other)),
        }
    }
}

/// A product as the catalog sells it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductSnapshot {
    pub product_id: String,
    pub name: String,
    pub price: Money,
    pub stock: i64,
}

/// One line to reserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationLine {
    pub product_id: String,
    pub quantity: i64,
}

/// One reserved line, with the unit price it was reserved at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedLine {
    pub product_id: String,
    pub quantity: i64,
    pub unit_price: Money,
}

/// Not enough of one product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortage {
    pub product_id: String,
    pub requested: i64,
    pub available: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    #[error("unknown products: {0:?}")]
    UnknownProducts(Vec<String>),
    #[error("not enough stock")]
    InsufficientStock(Vec<Shortage>),
    /// Products staff took off sale (archived): they are never reserved.
    #[error("archived products: {0:?}")]
    ArchivedProducts(Vec<String>),
    /// This reservation id was released before; it cannot be reserved again.
    #[error("the reservation was already released")]
    AlreadyReleased,
    #[error(transparent)]
    Port(#[from] PortError),
}

impl From<DbError> for ReserveError {
    fn from(error: DbError) -> Self {
        Self::Port(error.into())
    }
}

/// Catalog and stock, as the order context needs them (implemented by the product context).
#[async_trait]
pub trait Inventory: Send + Sync + 'static {
    /// The products among `product_ids` that exist, in no particular order.
    async fn products(&self, product_ids: &[String]) -> Result<Vec<ProductSnapshot>, PortError>;

    /// Reserves every line or none, never letting stock go below zero.
    /// Idempotent per `reservation_id`: reserving again returns the first
    /// result and takes nothing more. A reservation still unconfirmed (no
    /// `OrderPlaced` for it) well after `hold_until` is given back.
    async fn reserve(
        &self,
        reservation_id: &str,
        lines: &[ReservationLine],
        hold_until: DateTime<Utc>,
    ) -> Result<Vec<ReservedLine>, ReserveError>;

    /// Gives reserved stock back. Idempotent; releasing an unknown reservation
    /// records it, so that a late `reserve` with that id takes nothing.
    async fn release(&self, reservation_id: &str) -> Result<(), PortError>;
}

/// Where an order stands, as the payment context needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderState {
    PendingPayment,
    Paid,
    Cancelled,
}

/// What the payment context may know of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSummary {
    pub order_id: String,
    /// The customer the order belongs to (the user id of their token).
    pub user_id: String,
    pub amount: Money,
    pub state: OrderState,
    pub expires_at: DateTime<Utc>,
}

/// Orders, as the payment context needs them (implemented by the order context).
#[async_trait]
pub trait OrderLookup: Send + Sync + 'static {
    /// The order, or `None` when no order has this id.
    async fn order(&self, order_id: &str) -> Result<Option<OrderSummary>, PortError>;
}

/// Where the customer pays: which of the provider's payment flows.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PaymentChannel {
    /// A payment page for a computer's browser (Alipay's page pay).
    Page,
    /// A payment page for a phone's browser (Alipay's wap pay, WeChat Pay's H5).
    Wap,
    /// A QR code the customer scans with the provider's app (Alipay's
    /// precreate, WeChat Pay's Native).
    Qr,
}

/// What a gateway needs to open a payment with the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayPaymentRequest {
    pub payment_id: String,
    pub order_id: String,
    pub amount: Money,
    /// `alipay` or `wechat_pay`.
    pub method: String,
    /// The flow the customer asked for; `None`: the provider's usual one
    /// (Alipay: page; WeChat Pay: QR code).
    pub channel: Option<PaymentChannel>,
    /// What the customer sees at the provider: the order, in words.
    pub subject: String,
    /// The customer's address, which WeChat Pay's H5 flow must be given.
    pub client_ip: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// Where the customer pays: the provider's payment page, or what its QR code
/// holds (Alipay's `qr_code`, WeChat Pay's `code_url`). The QR code shop
/// shows encodes this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayPayment {
    pub payment_url: String,
}

/// One payment's trade at its provider (the provider knows it by the payment id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    pub payment_id: String,
    pub amount: Money,
}

/// Where a trade stands at its provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TradeState {
    /// Not paid (yet): the provider may not even know it until the buyer
    /// opens the payment page.
    Unpaid,
    /// Paid: `amount` (minor units) reached the merchant.
    Paid { transaction_id: String, amount: i64 },
    /// Closed: it can no longer be paid.
    Closed,
}

/// What closing a trade found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// The trade is closed (or the provider never knew it): nobody can pay it now.
    Closed,
    /// Too late: the customer paid it. The money must go back.
    AlreadyPaid { transaction_id: String },
}

/// A refund of a whole payment. `refund_id` is derived from the payment, so
/// that every retry asks for the same refund and the provider refunds once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub trade: Trade,
    pub refund_id: String,
}

/// Where a refund stands at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundState {
    /// The money went back.
    Refunded,
    /// Accepted, not yet done: ask again later (with the same refund id).
    Processing,
}

/// A payment provider (implemented inside the payment context: the built-in
/// sandbox, later Alipay and WeChat Pay adapters). Providers report outcomes
/// to the notify routes; the payment context closes the trades of orders
/// that can no longer be paid, and refunds money that cannot be kept.
#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// A stable name, stored with each payment it opens.
    fn name(&self) -> &'static str;

    /// Whether it can take a payment in `currency` (Alipay and WeChat Pay
    /// settle in CNY only). Asked before a payment is opened; by default, any.
    fn accepts(&self, currency: crate::model::money::Currency) -> bool {
        let _ = currency;
        true
    }

    /// The amounts, in minor units, it can take in one payment: Alipay takes
    /// 0.01 to 100,000,000.00 yuan, WeChat Pay 1 to 2,147,483,647 fen. Asked
    /// before a payment is opened; by default, any positive amount.
    fn amounts(&self) -> std::ops::RangeInclusive<i64> {
        1..=i64::MAX
    }

    /// Whether the outcomes of its payments arrive as notifications signed
    /// with shop's own scheme (`Shop-Signature`, on the generic notify
    /// routes), as the sandbox's do. A provider with a channel of its own
    /// (Alipay's, WeChat Pay's notifications and queries) says no: a
    /// `Shop-Signature` notification must never settle its payments.
    fn signs_with_shop_signature(&self) -> bool {
        false
    }

    /// Opens the payment with the provider.
    async fn create_payment(
        &self,
        request: &GatewayPaymentRequest,
    ) -> Result<GatewayPayment, PortError>;

    /// Where the trade stands: asked of a payment whose notification has not
    /// come as its deadline nears (a notification alone is never trusted to come).
    async fn query(&self, trade: &Trade) -> Result<TradeState, PortError>;

    /// Closes the trade, so that it can no longer be paid. Safe to repeat.
    async fn close(&self, trade: &Trade) -> Result<Closed, PortError>;

    /// Refunds the whole payment. Safe to repeat with the same refund id.
    async fn refund(&self, refund: &RefundRequest) -> Result<RefundState, PortError>;
}

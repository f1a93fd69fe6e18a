//! Integration events: what one context tells the others. Each is a
//! versioned, serde-serialised type; on the wire (and in the outbox) it
//! travels inside an [`EventEnvelope`].

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

crate::string_id!(
    /// Names one event; redeliveries carry the same id.
    EventId
);

/// A kind of integration event.
pub trait IntegrationEvent: Serialize + DeserializeOwned {
    /// The stable name subscribers select on, such as `order.cancelled`.
    const TYPE: &'static str;
    /// Bumped when the payload changes incompatibly.
    const VERSION: u16;
}

/// An event as stored in the outbox and handed to subscribers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventEnvelope {
    pub id: EventId,
    pub event_type: String,
    pub version: u16,
    pub occurred_at: DateTime<Utc>,
    /// The request that caused the event, when one did: logs of the handlers carry it.
    pub request_id: Option<String>,
    pub payload: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("expected a {expected} event, got {actual}")]
    WrongType {
        expected: &'static str,
        actual: String,
    },
    #[error("{event_type} v{version} is not understood by this version of shop")]
    UnknownVersion { event_type: String, version: u16 },
    #[error("the payload of {event_type} does not parse: {source}")]
    Payload {
        event_type: String,
        source: serde_json::Error,
    },
}

impl EventEnvelope {
    /// Wraps a new event.
    pub fn new<E: IntegrationEvent>(
        event: &E,
        request_id: Option<String>,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            id: EventId::generate(),
            event_type: E::TYPE.to_owned(),
            version: E::VERSION,
            occurred_at: Utc::now(),
            request_id,
            payload: serde_json::to_value(event)?,
        })
    }

    pub fn is<E: IntegrationEvent>(&self) -> bool {
        self.event_type == E::TYPE
    }

    /// The typed event inside.
    pub fn decode<E: IntegrationEvent>(&self) -> Result<E, EnvelopeError> {
        if self.event_type != E::TYPE {
            return Err(EnvelopeError::WrongType {
                expected: E::TYPE,
                actual: self.event_type.clone(),
            });
        }
        if self.version != E::VERSION {
            return Err(EnvelopeError::UnknownVersion {
                event_type: self.event_type.clone(),
                version: self.version,
            });
        }
        serde_json::from_value(self.payload.clone()).map_err(|source| EnvelopeError::Payload {
            event_type: self.event_type.clone(),
            source,
        })
    }
}

/// One line of a placed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLineData {
    pub product_id: String,
    pub quantity: i64,
    pub unit_price: i64,
}

/// An order was placed and its stock reserved (reservation id = order id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlaced {
    pub order_id: String,
    pub user_id: String,
    pub lines: Vec<OrderLineData>,
    pub amount: i64,
    pub currency: String,
    pub expires_at: DateTime<Utc>,
}

impl IntegrationEvent for OrderPlaced {
    const TYPE: &'static str = "order.placed";
    const VERSION: u16 = 1;
}

/// An order was paid: its reserved stock is sold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPaid {
    pub order_id: String,
    pub payment_id: String,
    pub amount: i64,
    pub currency: String,
}

impl IntegrationEvent for OrderPaid {
    const TYPE: &'static str = "order.paid";
    const VERSION: u16 = 1;
}

/// Why an order was cancelled, as events carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancellationReason {
    Expired,
    CancelledByUser,
}

/// An order was cancelled: its reserved stock goes back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCancelled {
    pub order_id: String,
    pub reason: CancellationReason,
}

impl IntegrationEvent for OrderCancelled {
    const TYPE: &'static str = "order.cancelled";
    const VERSION: u16 = 1;
}

/// The gateway confirmed a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentSucceeded {
    pub payment_id: String,
    pub order_id: String,
    pub amount: i64,
    pub currency: String,
    pub transaction_id: String,
}

impl IntegrationEvent for PaymentSucceeded {
    const TYPE: &'static str = "payment.succeeded";
    const VERSION: u16 = 1;
}

/// The gateway reported a failed payment; the order stays payable until it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentFailed {
    pub payment_id: String,
    pub order_id: String,
}

impl IntegrationEvent for PaymentFailed {
    const TYPE: &'static str = "payment.failed";
    const VERSION: u16 = 1;
}

/// The money of a payment went back to the customer: its provider confirmed
/// the refund (of a payment whose order was cancelled, or paid by another).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRefunded {
    pub payment_id: String,
    pub order_id: String,
    pub amount: i64,
    pub currency: String,
    /// The refund's id at the provider, derived from the payment.
    pub refund_id: String,
}

impl IntegrationEvent for PaymentRefunded {
    const TYPE: &'static str = "payment.refunded";
    const VERSION: u16 = 1;
}

/// Why an order refused a successful payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// The order was cancelled (by its customer, or because it expired) before the money arrived.
    OrderCancelled,
    /// Another payment had already paid the order.
    AlreadyPaid,
}

/// A payment succeeded for an order that can no longer take it: the money must go back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPaymentRefused {
    pub order_id: String,
    pub payment_id: String,
    pub reason: RefusalReason,
}

impl IntegrationEvent for OrderPaymentRefused {
    const TYPE: &'static str = "order.payment_refused";
    const VERSION: u16 = 1;
}

/// Staff took a product off sale: it still reads by id, but no order can reserve it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductArchived {
    pub product_id: String,
}

impl IntegrationEvent for ProductArchived {
    const TYPE: &'static str = "product.archived";
    const VERSION: u16 = 1;
}

/// Staff put an archived product back on sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductRestored {
    pub product_id: String,
}

impl IntegrationEvent for ProductRestored {
    const TYPE: &'static str = "product.restored";
    const VERSION: u16 = 1;
}

/// One field an edit changed, as it was and as it became.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub from: serde_json::Value,
    pub to: serde_json::Value,
}

/// Staff edited a product: the fields that changed (by their API names:
/// `name`, `description`, `price`, `currency`, `lowStockThreshold`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductUpdated {
    pub product_id: String,
    pub changes: std::collections::BTreeMap<String, FieldChange>,
}

impl IntegrationEvent for ProductUpdated {
    const TYPE: &'static str = "product.updated";
    const VERSION: u16 = 1;
}

/// A product's stock fell below its low-stock threshold (told once per fall:
/// by the reservation, adjustment or set that took it from at or above the
/// threshold to below it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductStockLow {
    pub product_id: String,
    /// The units on hand after the change.
    pub stock: i64,
    pub threshold: i64,
}

impl IntegrationEvent for ProductStockLow {
    const TYPE: &'static str = "product.stock_low";
    const VERSION: u16 = 1;
}

/// Every integration event type: what a relay to a message broker takes.
pub const ALL_TYPES: &[&str] = &[
    OrderPlaced::TYPE,
    OrderPaid::TYPE,
    OrderCancelled::TYPE,
    OrderPaymentRefused::TYPE,
    PaymentSucceeded::TYPE,
    PaymentFailed::TYPE,
    PaymentRefunded::TYPE,
    ProductUpdated::TYPE,
    ProductArchived::TYPE,
    ProductRestored::TYPE,
    ProductStockLow::TYPE,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_is_listed_once() {
        let source = include_str!("events.rs");
        let declared = source
            .matches(concat!("const TYPE", ": &'static str = \""))
            .count();
        assert_eq!(
            declared,
            ALL_TYPES.len(),
            "an event type is missing from ALL_TYPES"
        );
        let mut types = ALL_TYPES.to_vec();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), ALL_TYPES.len());
    }

    #[test]
    fn envelopes_round_trip_and_check_their_type() {
        let event = OrderCancelled {
            order_id: "o1".into(),
            reason: CancellationReason::Expired,
        };
        let envelope = EventEnvelope::new(&event, Some("req-1".into())).unwrap();
        assert_eq!(envelope.event_type, "order.cancelled");
        assert_eq!(envelope.payload["reason"], "expired");
        let json = serde_json::to_string(&envelope).unwrap();
        let back: EventEnvelope = serde_json::from_str(&json).unwrap();
        assert_eq!(back.decode::<OrderCancelled>().unwrap(), event);
        assert!(matches!(
            back.decode::<OrderPaid>(),
            Err(EnvelopeError::WrongType { .. })
        ));
    }

    #[test]
    fn unknown_versions_are_refused() {
        let event = OrderCancelled {
            order_id: "o1".into(),
            reason: CancellationReason::CancelledByUser,
        };
        let mut envelope = EventEnvelope::new(&event, None).unwrap();
        envelope.version = 2;
        assert!(matches!(
            envelope.decode::<OrderCancelled>(),
            Err(EnvelopeError::UnknownVersion { .. })
        ));
    }
}

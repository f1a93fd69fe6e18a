//! Orders as plain values: the lifecycle state machine, the validated
//! request, pricing. The lifecycle is a state machine. Every status change goes through
//! [`OrderStatus::transition`], the one place that knows which are legal.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use shared_kernel::model::money::{Currency, Money, MoneyError};
use shared_kernel::model::ports::ReservedLine;

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Cancelled(CancelReason),
}

/// Why an order was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// Not paid before `expiresAt`.
    Expired,
    /// The customer cancelled it.
    CancelledByUser,
}

/// What can happen to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEvent {
    PaymentSucceeded,
    Cancel(CancelReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an order that is {from:?} cannot take {event:?}")]
pub struct IllegalTransition {
    pub from: OrderStatus,
    pub event: OrderEvent,
}

impl OrderStatus {
    /// The status after `event`, or why it cannot happen.
    pub fn transition(self, event: OrderEvent) -> Result<OrderStatus, IllegalTransition> {
        match (self, event) {
            (Self::PendingPayment, OrderEvent::PaymentSucceeded) => Ok(Self::Paid),
            (Self::PendingPayment, OrderEvent::Cancel(reason)) => Ok(Self::Cancelled(reason)),
            (from, event) => Err(IllegalTransition { from, event }),
        }
    }

    /// The status as stored and shown (`pending_payment`, `paid`, `cancelled`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingPayment => "pending_payment",
            Self::Paid => "paid",
            Self::Cancelled(_) => "cancelled",
        }
    }

    /// The status from its stored columns (`status`, `cancel_reason`).
    pub fn from_stored(status: &str, reason: Option<&str>) -> Option<Self> {
        match (status, reason) {
            ("pending_payment", None) => Some(Self::PendingPayment),
            ("paid", None) => Some(Self::Paid),
            ("cancelled", Some("expired")) => Some(Self::Cancelled(CancelReason::Expired)),
            ("cancelled", Some("cancelled_by_user")) => {
                Some(Self::Cancelled(CancelReason::CancelledByUser))
            }
            _ => None,
        }
    }

    pub fn cancel_reason(self) -> Option<CancelReason> {
        match self {
            Self::Cancelled(reason) => Some(reason),
            _ => None,
        }
    }
}

impl CancelReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::CancelledByUser => "cancelled_by_user",
        }
    }
}

/// What `listOrders`'s `status` must match: a comma list of the statuses
/// the API shows ([`OrderFilter::parse_statuses`] reads it).
pub const STATUS_LIST_PATTERN: &str =
    "^(pending_payment|paid|cancelled)(,(pending_payment|paid|cancelled))*$";

/// The longest product id `listOrders`'s `productId` takes (ids are short).
pub const PRODUCT_ID_MAX_LEN: usize = 64;

/// Which orders a list holds; each filter given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    /// Only this customer's (always set for a customer's own list).
    pub user_id: Option<String>,
    /// Only orders in one of these statuses (as stored: `pending_payment`,
    /// `paid`, `cancelled`); empty: any.
    pub statuses: Vec<&'static str>,
    /// Only orders with a line of this product.
    pub product_id: Option<String>,
    /// Only orders created at or after this time (UTC).
    pub created_from: Option<chrono::NaiveDateTime>,
    /// Only orders created before this time (UTC).
    pub created_to: Option<chrono::NaiveDateTime>,
}

impl OrderFilter {
    /// The statuses a `status` query names, comma-separated: each must be
    /// one the API shows.
    pub fn parse_statuses(raw: &str) -> Result<Vec<&'static str>, String> {
        let known = [
            OrderStatus::PendingPayment.as_str(),
            OrderStatus::Paid.as_str(),
            "cancelled",
        ];
        let mut statuses = Vec::new();
        for part in raw.split(',') {
            match known.iter().find(|k| **k == part) {
                Some(status) if !statuses.contains(status) => statuses.push(*status),
                Some(_) => {}
                None => {
                    return Err(format!(
                        "must be a comma-separated list of {}",
                        known.join(", ")
                    ));
                }
            }
        }
        Ok(statuses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_order_can_be_paid_or_cancelled() {
        assert_eq!(
            OrderStatus::PendingPayment.transition(OrderEvent::PaymentSucceeded),
            Ok(OrderStatus::Paid)
        );
        let expired =
            OrderStatus::PendingPayment.transition(OrderEvent::Cancel(CancelReason::Expired));
        assert_eq!(expired, Ok(OrderStatus::Cancelled(CancelReason::Expired)));
    }

    #[test]
    fn final_states_take_no_more_events() {
        let finals = [
            OrderStatus::Paid,
            OrderStatus::Cancelled(CancelReason::Expired),
            OrderStatus::Cancelled(CancelReason::CancelledByUser),
        ];
        let events = [
            OrderEvent::PaymentSucceeded,
            OrderEvent::Cancel(CancelReason::Expired),
            OrderEvent::Cancel(CancelReason::CancelledByUser),
        ];
        for from in finals {
            for event in events {
                assert_eq!(
                    from.transition(event),
                    Err(IllegalTransition { from, event })
                );
            }
        }
    }

    #[test]
    fn statuses_round_trip_through_storage() {
        let all = [
            OrderStatus::PendingPayment,
            OrderStatus::Paid,
            OrderStatus::Cancelled(CancelReason::Expired),
            OrderStatus::Cancelled(CancelReason::CancelledByUser),
        ];
        for status in all {
            let reason = status.cancel_reason().map(CancelReason::as_str);
            assert_eq!(
                OrderStatus::from_stored(status.as_str(), reason),
                Some(status)
            );
        }
        assert_eq!(OrderStatus::from_stored("cancelled", None), None);
        assert_eq!(OrderStatus::from_stored("paid", Some("expired")), None);
    }

    #[test]
    fn statuses_have_their_contract_names() {
        assert_eq!(OrderStatus::PendingPayment.as_str(), "pending_payment");
        assert_eq!(
            OrderStatus::Cancelled(CancelReason::CancelledByUser).as_str(),
            "cancelled"
        );
        assert_eq!(
            OrderStatus::Cancelled(CancelReason::CancelledByUser)
                .cancel_reason()
                .map(CancelReason::as_str),
            Some("cancelled_by_user")
        );
    }
}

shared_kernel::string_id!(
    /// Names one order (and the stock reservation made for it).
    OrderId
);

/// The most units of one product in one order line.
pub const MAX_QUANTITY: i64 = 1000;
/// The most lines in one order.
pub const MAX_LINES: usize = 50;
/// The customer an order belongs to: the `sub` of the token that placed it.
pub use shared_kernel::web::auth::UserId;

/// One line of an order request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestedLine {
    pub product_id: String,
    pub quantity: i64,
}

/// A validated request to place an order. Its JSON form is canonical: it is
/// what an `Idempotency-Key` is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlaceOrder {
    pub user_id: UserId,
    pub items: Vec<RequestedLine>,
}

/// A field of an order request, named by its place in the request; the HTTP
/// layer spells it in the body's own terms (`items[1].quantity`, or
/// `quantity` on the original spec's one-line route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestField {
    Items,
    /// The product of line `n` (from 0).
    ProductId(usize),
    /// The quantity of line `n` (from 0).
    Quantity(usize),
}

/// What is wrong with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: RequestField,
    pub message: String,
}

impl Violation {
    pub fn new(field: RequestField, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// An unchecked line, as the client sent it.
#[derive(Debug, Clone)]
pub struct LineFields {
    pub product_id: String,
    pub quantity: i64,
}

impl PlaceOrder {
    /// Checks the request of `user_id` (the authenticated customer): 1 to 50
    /// lines, quantities 1 to 1000, each product on one line only. Every
    /// violation is reported.
    pub fn parse(user_id: UserId, items: Vec<LineFields>) -> Result<Self, Vec<Violation>> {
        let mut errors = Vec::new();
        if items.is_empty() {
            errors.push(Violation::new(
                RequestField::Items,
                "must hold at least one line",
            ));
        } else if items.len() > MAX_LINES {
            errors.push(Violation::new(
                RequestField::Items,
                format!("must hold at most {MAX_LINES} lines"),
            ));
        }
        for (i, item) in items.iter().enumerate() {
            if !(1..=MAX_QUANTITY).contains(&item.quantity) {
                errors.push(Violation::new(
                    RequestField::Quantity(i),
                    format!("must be between 1 and {MAX_QUANTITY}"),
                ));
            }
            if item.product_id.is_empty() {
                errors.push(Violation::new(
                    RequestField::ProductId(i),
                    "must not be empty",
                ));
            } else if items[..i]
                .iter()
                .any(|earlier| earlier.product_id == item.product_id)
            {
                errors.push(Violation::new(
                    RequestField::ProductId(i),
                    "lists a product an earlier line already lists",
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            user_id,
            items: items
                .into_iter()
                .map(|l| RequestedLine {
                    product_id: l.product_id,
                    quantity: l.quantity,
                })
                .collect(),
        })
    }

    /// The request in canonical JSON.
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The line (from 0) that names `product_id`.
    pub fn line_of(&self, product_id: &str) -> Option<usize> {
        self.items.iter().position(|l| l.product_id == product_id)
    }
}

/// One line of an order, with the unit price it was bought at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub product_id: String,
    pub quantity: i64,
    pub unit_price: Money,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub user_id: String,
    pub lines: Vec<OrderLine>,
    pub amount: Money,
    pub status: OrderStatus,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub paid_at: Option<NaiveDateTime>,
    pub cancelled_at: Option<NaiveDateTime>,
    pub payment_id: Option<String>,
}

/// What a payment that succeeded does to an order that was no longer
/// pending when it arrived (a pending order is simply paid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatePayment {
    /// The order was paid by this very payment: a redelivery, nothing to do.
    AlreadyApplied,
    /// The order cannot take the money, which must go back.
    Refused(PaymentRefusal),
}

/// Why an order refuses a payment that succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentRefusal {
    /// Cancelled (by its customer, or expired) before the money arrived.
    OrderCancelled,
    /// Another payment paid it first.
    AlreadyPaid,
}

/// A pending order's payment is not late: it pays the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the order is pending payment: a success pays it")]
pub struct StillPending;

impl Order {
    /// How this order, no longer pending, answers a success of `payment_id`.
    pub fn late_payment(&self, payment_id: &str) -> Result<LatePayment, StillPending> {
        match self.status {
            OrderStatus::PendingPayment => Err(StillPending),
            OrderStatus::Paid if self.payment_id.as_deref() == Some(payment_id) => {
                Ok(LatePayment::AlreadyApplied)
            }
            OrderStatus::Paid => Ok(LatePayment::Refused(PaymentRefusal::AlreadyPaid)),
            OrderStatus::Cancelled(_) => Ok(LatePayment::Refused(PaymentRefusal::OrderCancelled)),
        }
    }

    /// A new order pending payment: the requested lines, in the request's
    /// order, at the prices their stock was reserved at, and their total.
    pub fn place(
        id: OrderId,
        request: &PlaceOrder,
        reserved: &[ReservedLine],
        now: NaiveDateTime,
        expires_at: NaiveDateTime,
    ) -> Result<Self, PricingError> {
        let lines: Vec<OrderLine> = request
            .items
            .iter()
            .filter_map(|item| reserved.iter().find(|r| r.product_id == item.product_id))
            .map(|r| OrderLine {
                product_id: r.product_id.clone(),
                quantity: r.quantity,
                unit_price: r.unit_price,
            })
            .collect();
        let amount = total(&lines)?;
        Ok(Self {
            id,
            user_id: request.user_id.as_str().to_owned(),
            lines,
            amount,
            status: OrderStatus::PendingPayment,
            created_at: now,
            updated_at: now,
            expires_at,
            paid_at: None,
            cancelled_at: None,
            payment_id: None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("an order is paid in one currency; its products are priced in {0} and {1}")]
    MixedCurrencies(Currency, Currency),
    #[error("the order's amount is too large")]
    Overflow,
    #[error("an order needs at least one line")]
    Empty,
}

/// The amount of an order: the sum of its lines, all in one currency.
pub fn total(lines: &[OrderLine]) -> Result<Money, PricingError> {
    let first = lines.first().ok_or(PricingError::Empty)?;
    lines
        .iter()
        .try_fold(Money::new(0, first.unit_price.currency()), |sum, line| {
            let subtotal = line
                .unit_price
                .checked_mul(line.quantity)
                .map_err(|_| PricingError::Overflow)?;
            sum.checked_add(subtotal).map_err(|e| match e {
                MoneyError::CurrencyMismatch(a, b) => PricingError::MixedCurrencies(a, b),
                MoneyError::Overflow => PricingError::Overflow,
            })
        })
}

#[cfg(test)]
mod order_tests {
    use super::*;

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    fn line(product_id: &str, quantity: i64) -> LineFields {
        LineFields {
            product_id: product_id.into(),
            quantity,
        }
    }

    #[test]
    fn a_valid_request_parses_and_has_a_canonical_form() {
        let request =
            PlaceOrder::parse(user("user-1"), vec![line("p1", 2), line("p2", 1)]).unwrap();
        assert_eq!(
            request.canonical(),
            r#"{"userId":"user-1","items":[{"productId":"p1","quantity":2},{"productId":"p2","quantity":1}]}"#
        );
        assert_eq!(request.line_of("p2"), Some(1));
        assert_eq!(request.line_of("p3"), None);
    }

    #[test]
    fn shape_violations_are_all_named() {
        let errors = PlaceOrder::parse(user("u"), vec![line("p1", 0), line("", 1001)]).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                RequestField::Quantity(0),
                RequestField::Quantity(1),
                RequestField::ProductId(1)
            ]
        );
        let errors = PlaceOrder::parse(user("u"), vec![]).unwrap_err();
        assert_eq!(errors[0].field, RequestField::Items);
        let many = (0..=MAX_LINES).map(|i| line(&format!("p{i}"), 1)).collect();
        assert_eq!(
            PlaceOrder::parse(user("u"), many).unwrap_err()[0].field,
            RequestField::Items
        );
    }

    #[test]
    fn duplicate_products_are_found() {
        let dups = PlaceOrder::parse(user("u"), vec![line("a", 1), line("b", 1), line("a", 2)])
            .unwrap_err();
        assert_eq!(dups.len(), 1);
        assert_eq!(dups[0].field, RequestField::ProductId(2));
    }

    #[test]
    fn totals_are_exact_and_single_currency() {
        let cny = |minor| Money::new(minor, Currency::CNY);
        let lines = vec![
            OrderLine {
                product_id: "a".into(),
                quantity: 3,
                unit_price: cny(999),
            },
            OrderLine {
                product_id: "b".into(),
                quantity: 1,
                unit_price: cny(1),
            },
        ];
        assert_eq!(total(&lines), Ok(cny(2998)));
        let usd = Currency::parse("USD").unwrap();
        let mixed = vec![
            lines[0].clone(),
            OrderLine {
                product_id: "c".into(),
                quantity: 1,
                unit_price: Money::new(5, usd),
            },
        ];
        assert_eq!(
            total(&mixed),
            Err(PricingError::MixedCurrencies(Currency::CNY, usd))
        );
        assert_eq!(total(&[]), Err(PricingError::Empty));
        let huge = vec![OrderLine {
            product_id: "a".into(),
            quantity: 2,
            unit_price: cny(i64::MAX),
        }];
        assert_eq!(total(&huge), Err(PricingError::Overflow));
    }
}

#[cfg(test)]
mod late_payment_tests {
    use super::*;

    fn order(status: OrderStatus, payment_id: Option<&str>) -> Order {
        let now = chrono::DateTime::UNIX_EPOCH.naive_utc();
        Order {
            id: OrderId::from("o1".to_owned()),
            user_id: "u".into(),
            lines: Vec::new(),
            amount: Money::new(1, Currency::CNY),
            status,
            created_at: now,
            updated_at: now,
            expires_at: now,
            paid_at: None,
            cancelled_at: None,
            payment_id: payment_id.map(str::to_owned),
        }
    }

    #[test]
    fn a_late_success_is_refused_unless_it_is_the_one_that_paid() {
        use LatePayment::{AlreadyApplied, Refused};
        let paid_by_p1 = order(OrderStatus::Paid, Some("p1"));
        assert_eq!(paid_by_p1.late_payment("p1"), Ok(AlreadyApplied));
        assert_eq!(
            paid_by_p1.late_payment("p2"),
            Ok(Refused(PaymentRefusal::AlreadyPaid))
        );
        for reason in [CancelReason::Expired, CancelReason::CancelledByUser] {
            assert_eq!(
                order(OrderStatus::Cancelled(reason), None).late_payment("p1"),
                Ok(Refused(PaymentRefusal::OrderCancelled))
            );
        }
        assert_eq!(
            order(OrderStatus::PendingPayment, None).late_payment("p1"),
            Err(StillPending)
        );
    }
}

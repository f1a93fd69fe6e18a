//! The order lifecycle as a state machine. Every status change goes through
//! [`OrderStatus::transition`], the one place that knows which are legal.

use serde::{Deserialize, Serialize};

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

//! A payment's lifecycle. Every status change goes through
//! [`PaymentStatus::apply`], the one place that knows which are legal.

use serde::{Deserialize, Serialize};

/// How the customer pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    Alipay,
    /// Scan-to-pay: the customer scans `qrCode` with WeChat.
    WechatPay,
}

impl PaymentMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alipay => "alipay",
            Self::WechatPay => "wechat_pay",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Alipay, Self::WechatPay]
            .into_iter()
            .find(|m| m.as_str() == raw)
    }
}

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    Succeeded,
    Failed,
    /// The money arrived for an order that was already cancelled: it must go back.
    RefundRequired,
}

/// What the gateway reported, and what the order context answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentOutcome {
    Success,
    Failure,
    /// Success, but the order had been cancelled meanwhile.
    SuccessForCancelledOrder,
}

/// The result of applying an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The status changed to this one.
    Changed(PaymentStatus),
    /// The payment already was in this outcome's status: a duplicate, nothing to do.
    Unchanged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from:?} payment cannot take {outcome:?}")]
pub struct IllegalTransition {
    pub from: PaymentStatus,
    pub outcome: PaymentOutcome,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 4] = [
        Self::Pending,
        Self::Succeeded,
        Self::Failed,
        Self::RefundRequired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::RefundRequired => "refund_required",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Applies a gateway outcome. Duplicates are recognised, so a
    /// notification delivered twice changes the payment once.
    pub fn apply(self, outcome: PaymentOutcome) -> Result<Applied, IllegalTransition> {
        use PaymentOutcome as O;
        use PaymentStatus as S;
        match (self, outcome) {
            (S::Pending, O::Success) => Ok(Applied::Changed(S::Succeeded)),
            (S::Pending, O::Failure) => Ok(Applied::Changed(S::Failed)),
            (S::Pending | S::Succeeded, O::SuccessForCancelledOrder) => {
                Ok(Applied::Changed(S::RefundRequired))
            }
            (S::Succeeded | S::RefundRequired, O::Success)
            | (S::Failed, O::Failure)
            | (S::RefundRequired, O::SuccessForCancelledOrder) => Ok(Applied::Unchanged),
            (from, outcome) => Err(IllegalTransition { from, outcome }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_payment_succeeds_or_fails_once() {
        assert_eq!(
            PaymentStatus::Pending.apply(PaymentOutcome::Success),
            Ok(Applied::Changed(PaymentStatus::Succeeded))
        );
        assert_eq!(
            PaymentStatus::Pending.apply(PaymentOutcome::Failure),
            Ok(Applied::Changed(PaymentStatus::Failed))
        );
        assert_eq!(
            PaymentStatus::Succeeded.apply(PaymentOutcome::Success),
            Ok(Applied::Unchanged)
        );
        assert_eq!(
            PaymentStatus::Failed.apply(PaymentOutcome::Failure),
            Ok(Applied::Unchanged)
        );
    }

    #[test]
    fn contradictions_are_refused() {
        assert!(
            PaymentStatus::Succeeded
                .apply(PaymentOutcome::Failure)
                .is_err()
        );
        assert!(
            PaymentStatus::RefundRequired
                .apply(PaymentOutcome::Failure)
                .is_err()
        );
    }

    #[test]
    fn money_for_a_cancelled_order_must_be_refunded() {
        assert_eq!(
            PaymentStatus::Succeeded.apply(PaymentOutcome::SuccessForCancelledOrder),
            Ok(Applied::Changed(PaymentStatus::RefundRequired))
        );
        assert_eq!(
            PaymentStatus::RefundRequired.apply(PaymentOutcome::SuccessForCancelledOrder),
            Ok(Applied::Unchanged)
        );
        assert_eq!(
            PaymentStatus::RefundRequired.apply(PaymentOutcome::Success),
            Ok(Applied::Unchanged),
            "a repeated success notification"
        );
    }

    #[test]
    fn methods_have_their_contract_names() {
        assert_eq!(
            serde_json::to_string(&PaymentMethod::WechatPay).unwrap(),
            "\"wechat_pay\""
        );
        assert_eq!(
            serde_json::to_string(&PaymentStatus::RefundRequired).unwrap(),
            "\"refund_required\""
        );
    }
}

shared_kernel::string_id!(
    /// Names one payment.
    PaymentId
);

/// A payment of one order through one gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub id: PaymentId,
    pub order_id: String,
    pub method: PaymentMethod,
    pub gateway: String,
    pub status: PaymentStatus,
    pub amount: shared_kernel::money::Money,
    pub payment_url: String,
    pub expires_at: chrono::NaiveDateTime,
    pub transaction_id: Option<String>,
    pub created_at: chrono::NaiveDateTime,
    pub updated_at: chrono::NaiveDateTime,
    pub completed_at: Option<chrono::NaiveDateTime>,
    /// The customer the payment belongs to (its order's).
    pub user_id: String,
}

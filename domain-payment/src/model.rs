//! A payment's lifecycle. Every status change goes through
//! [`PaymentStatus::apply`], the one place that knows which are legal.

use serde::{Deserialize, Serialize};
use shared_kernel::ports::OrderState;

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
    /// The money arrived for an order that could no longer take it (cancelled,
    /// or paid by another payment): it must go back.
    RefundRequired,
    /// Its order was cancelled (or expired) before it was paid: the trade is
    /// closed at the provider, and the checkout offers no Pay.
    Closed,
    /// The money went back to the customer: the provider confirmed the refund.
    Refunded,
}

/// What the gateway reported, and what the order context answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentOutcome {
    Success,
    Failure,
    /// Success, but the order cannot take it (it was cancelled, or another
    /// payment paid it): the money must go back.
    SuccessRefused,
    /// The order can no longer be paid (cancelled or expired): close the trade.
    Close,
    /// The provider confirmed the refund.
    Refunded,
}

/// The longest gateway transaction id shop keeps, in bytes.
pub const TRANSACTION_ID_MAX_LEN: usize = 128;
/// What a gateway transaction id may be: 1 to 128 visible ASCII characters
/// (no space, no control character). The API document shows this pattern.
pub const TRANSACTION_ID_PATTERN: &str = "^[\\x21-\\x7e]{1,128}$";

/// Whether `raw` is a transaction id shop keeps (see [`TRANSACTION_ID_PATTERN`]).
pub fn is_valid_transaction_id(raw: &str) -> bool {
    (1..=TRANSACTION_ID_MAX_LEN).contains(&raw.len())
        && raw.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// What a gateway's notification claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifiedStatus {
    Success,
    Failure,
}

impl NotifiedStatus {
    /// What this claim means for a payment in `status` whose order is in
    /// `order` (`None` when the order context does not know it). A success
    /// the order can no longer take, because it was cancelled or because
    /// another payment paid it, is refused at once, so that the notification's
    /// answer is the state the payment ends in. (When this payment itself
    /// succeeded before, a paid order is its own doing: nothing to refuse.)
    pub fn outcome(self, status: PaymentStatus, order: Option<OrderState>) -> PaymentOutcome {
        match (self, order) {
            (Self::Failure, _) => PaymentOutcome::Failure,
            (Self::Success, Some(OrderState::Cancelled)) => PaymentOutcome::SuccessRefused,
            (Self::Success, Some(OrderState::Paid))
                if matches!(status, PaymentStatus::Pending | PaymentStatus::Failed) =>
            {
                PaymentOutcome::SuccessRefused
            }
            (Self::Success, _) => PaymentOutcome::Success,
        }
    }

    /// Whether a payment in `status` already shows this claim's result:
    /// a success was taken (paid, or marked for refund), or a failure recorded.
    pub fn agrees_with(self, status: PaymentStatus) -> bool {
        match self {
            Self::Success => matches!(
                status,
                PaymentStatus::Succeeded | PaymentStatus::RefundRequired | PaymentStatus::Refunded
            ),
            Self::Failure => matches!(status, PaymentStatus::Failed | PaymentStatus::Closed),
        }
    }
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
    pub const ALL: [PaymentStatus; 6] = [
        Self::Pending,
        Self::Succeeded,
        Self::Failed,
        Self::RefundRequired,
        Self::Closed,
        Self::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::RefundRequired => "refund_required",
            Self::Closed => "closed",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Applies a gateway outcome. Duplicates are recognised, so a
    /// notification delivered twice changes the payment once.
    ///
    /// Money that moved is never dropped: a success ends `succeeded` or
    /// `refund_required` whatever the payment's status, even after a failure
    /// or a close (the gateway's later word on the money wins; the order
    /// context then takes it, or refuses it and the payment is marked for
    /// refund). A closed payment's success is refused at once: its order is
    /// gone. Only a failure can be refused, once the payment took money; a
    /// close only while nothing was paid; a refund only of money to return.
    pub fn apply(self, outcome: PaymentOutcome) -> Result<Applied, IllegalTransition> {
        use PaymentOutcome as O;
        use PaymentStatus as S;
        match (self, outcome) {
            (S::Pending | S::Failed, O::Success) => Ok(Applied::Changed(S::Succeeded)),
            (S::Pending, O::Failure) => Ok(Applied::Changed(S::Failed)),
            (S::Pending | S::Succeeded | S::Failed | S::Closed, O::SuccessRefused)
            | (S::Closed, O::Success) => Ok(Applied::Changed(S::RefundRequired)),
            (S::Pending | S::Failed, O::Close) => Ok(Applied::Changed(S::Closed)),
            (S::RefundRequired, O::Refunded) => Ok(Applied::Changed(S::Refunded)),
            (S::Succeeded | S::RefundRequired | S::Refunded, O::Success)
            | (S::Failed | S::Closed, O::Failure)
            | (S::RefundRequired | S::Refunded, O::SuccessRefused)
            | (S::Closed, O::Close)
            | (S::Refunded, O::Refunded) => Ok(Applied::Unchanged),
            (from @ (S::Succeeded | S::RefundRequired | S::Refunded), outcome @ O::Failure)
            | (from @ (S::Succeeded | S::RefundRequired | S::Refunded), outcome @ O::Close)
            | (from @ (S::Pending | S::Succeeded | S::Failed | S::Closed), outcome @ O::Refunded) => {
                Err(IllegalTransition { from, outcome })
            }
        }
    }

    /// Whether the provider is still owed something for a payment in this
    /// status: closing its trade, or refunding its money.
    pub fn owes_provider_work(self) -> bool {
        matches!(self, Self::Closed | Self::RefundRequired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (status, outcome) pair, and where it leads.
    #[test]
    fn every_status_takes_every_outcome_as_the_table_says() {
        use Applied::{Changed, Unchanged};
        use PaymentOutcome as O;
        use PaymentStatus as S;
        let table = [
            (S::Pending, O::Success, Ok(Changed(S::Succeeded))),
            (S::Pending, O::Failure, Ok(Changed(S::Failed))),
            (
                S::Pending,
                O::SuccessRefused,
                Ok(Changed(S::RefundRequired)),
            ),
            (S::Pending, O::Close, Ok(Changed(S::Closed))),
            (S::Pending, O::Refunded, Err(S::Pending)),
            (S::Succeeded, O::Success, Ok(Unchanged)),
            (S::Succeeded, O::Failure, Err(S::Succeeded)),
            (
                S::Succeeded,
                O::SuccessRefused,
                Ok(Changed(S::RefundRequired)),
            ),
            (S::Succeeded, O::Close, Err(S::Succeeded)),
            (S::Succeeded, O::Refunded, Err(S::Succeeded)),
            (S::Failed, O::Success, Ok(Changed(S::Succeeded))),
            (S::Failed, O::Failure, Ok(Unchanged)),
            (S::Failed, O::SuccessRefused, Ok(Changed(S::RefundRequired))),
            (S::Failed, O::Close, Ok(Changed(S::Closed))),
            (S::Failed, O::Refunded, Err(S::Failed)),
            (S::RefundRequired, O::Success, Ok(Unchanged)),
            (S::RefundRequired, O::Failure, Err(S::RefundRequired)),
            (S::RefundRequired, O::SuccessRefused, Ok(Unchanged)),
            (S::RefundRequired, O::Close, Err(S::RefundRequired)),
            (S::RefundRequired, O::Refunded, Ok(Changed(S::Refunded))),
            (S::Closed, O::Success, Ok(Changed(S::RefundRequired))),
            (S::Closed, O::Failure, Ok(Unchanged)),
            (S::Closed, O::SuccessRefused, Ok(Changed(S::RefundRequired))),
            (S::Closed, O::Close, Ok(Unchanged)),
            (S::Closed, O::Refunded, Err(S::Closed)),
            (S::Refunded, O::Success, Ok(Unchanged)),
            (S::Refunded, O::Failure, Err(S::Refunded)),
            (S::Refunded, O::SuccessRefused, Ok(Unchanged)),
            (S::Refunded, O::Close, Err(S::Refunded)),
            (S::Refunded, O::Refunded, Ok(Unchanged)),
        ];
        assert_eq!(table.len(), S::ALL.len() * 5, "every pair is listed");
        for (from, outcome, expected) in table {
            let expected = expected.map_err(|from| IllegalTransition { from, outcome });
            assert_eq!(from.apply(outcome), expected, "{from:?} + {outcome:?}");
        }
    }

    #[test]
    fn money_that_moved_is_owed_back_until_refunded() {
        use PaymentStatus as S;
        let owing: Vec<_> = S::ALL
            .into_iter()
            .filter(|s| s.owes_provider_work())
            .collect();
        assert_eq!(owing, [S::RefundRequired, S::Closed]);
    }

    #[test]
    fn a_success_is_never_refused() {
        for status in PaymentStatus::ALL {
            for outcome in [PaymentOutcome::Success, PaymentOutcome::SuccessRefused] {
                let ends = match status.apply(outcome) {
                    Ok(Applied::Changed(to)) => to,
                    Ok(Applied::Unchanged) => status,
                    Err(illegal) => panic!("{illegal}"),
                };
                assert!(
                    matches!(
                        ends,
                        PaymentStatus::Succeeded
                            | PaymentStatus::RefundRequired
                            | PaymentStatus::Refunded
                    ),
                    "{status:?} + {outcome:?} ends {ends:?}"
                );
                assert!(NotifiedStatus::Success.agrees_with(ends));
            }
        }
    }

    #[test]
    fn a_success_the_order_cannot_take_is_refused_at_once() {
        use NotifiedStatus::{Failure, Success};
        use OrderState::{Cancelled, Paid, PendingPayment};
        use PaymentOutcome as O;
        use PaymentStatus as S;
        for status in S::ALL {
            assert_eq!(Failure.outcome(status, Some(Cancelled)), O::Failure);
            assert_eq!(Failure.outcome(status, Some(Paid)), O::Failure);
            assert_eq!(Success.outcome(status, Some(PendingPayment)), O::Success);
            assert_eq!(
                Success.outcome(status, None),
                O::Success,
                "left to the order context"
            );
            assert_eq!(Success.outcome(status, Some(Cancelled)), O::SuccessRefused);
        }
        // A paid order: paid by another payment, unless this one succeeded before.
        assert_eq!(Success.outcome(S::Pending, Some(Paid)), O::SuccessRefused);
        assert_eq!(Success.outcome(S::Failed, Some(Paid)), O::SuccessRefused);
        assert_eq!(Success.outcome(S::Succeeded, Some(Paid)), O::Success);
        assert_eq!(Success.outcome(S::RefundRequired, Some(Paid)), O::Success);
    }

    #[test]
    fn a_claim_agrees_with_the_statuses_it_leads_to() {
        use NotifiedStatus::{Failure, Success};
        use PaymentStatus as S;
        let agreeing = |claim: NotifiedStatus| {
            S::ALL
                .into_iter()
                .filter(|s| claim.agrees_with(*s))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            agreeing(Success),
            [S::Succeeded, S::RefundRequired, S::Refunded]
        );
        assert_eq!(agreeing(Failure), [S::Failed, S::Closed]);
    }

    #[test]
    fn transaction_ids_are_short_visible_ascii() {
        for good in [
            "tx-1",
            "2026112622001400000000000001",
            "sandbox-0190abc",
            "a:b/c_d.e",
        ] {
            assert!(is_valid_transaction_id(good), "{good:?}");
        }
        let longest = "x".repeat(TRANSACTION_ID_MAX_LEN);
        assert!(is_valid_transaction_id(&longest));
        let overlong = "x".repeat(TRANSACTION_ID_MAX_LEN + 1);
        for bad in [
            "",
            "tx\u{0}",
            "tx 1",
            "tx\n",
            "tx\u{7f}",
            "交易",
            overlong.as_str(),
        ] {
            assert!(!is_valid_transaction_id(bad), "{bad:?}");
        }
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

impl Payment {
    /// The id of this payment's refund at its provider: derived from the
    /// payment, so that every retry asks for the same refund and the
    /// provider refunds once (33 characters, within both Alipay's
    /// `out_request_no` and WeChat Pay's `out_refund_no` rules).
    pub fn refund_id(&self) -> String {
        format!("r{}", self.id.as_str().replace('-', ""))
    }
}

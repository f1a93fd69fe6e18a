//! A payment's lifecycle. Every status change goes through
//! [`PaymentStatus::apply`], the one place that knows which are legal.

use serde::{Deserialize, Serialize};
use shared_kernel::model::money::Money;
use shared_kernel::model::ports::OrderState;

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

/// A field of a genuine report that is not what the payment expects: a
/// report about some other trade, application, merchant or amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} is {actual:?}, expected {expected:?}")]
pub struct Mismatch {
    /// The provider's name for the field (`total_amount`, `amount.total`...).
    pub field: &'static str,
    pub expected: String,
    pub actual: String,
}

/// `Ok` when `actual` is `expected`, else the [`Mismatch`] naming `field`.
pub(crate) fn expect_field<T: PartialEq + ToString + ?Sized>(
    field: &'static str,
    expected: &T,
    actual: &T,
) -> Result<(), Mismatch> {
    if expected == actual {
        Ok(())
    } else {
        Err(Mismatch {
            field,
            expected: expected.to_string(),
            actual: actual.to_string(),
        })
    }
}

/// Which part of a reported amount is not the payment's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountDiffers {
    Amount,
    Currency,
}

/// The amount rule, whichever route reports a payment's outcome: an amount,
/// when reported, must be the payment's (in minor units), and a currency,
/// when reported, its currency.
pub fn check_amount(
    expected: Money,
    amount: Option<i64>,
    currency: Option<&str>,
) -> Result<(), AmountDiffers> {
    if amount.is_some_and(|amount| amount != expected.minor()) {
        return Err(AmountDiffers::Amount);
    }
    if currency.is_some_and(|currency| currency != expected.currency().as_str()) {
        return Err(AmountDiffers::Currency);
    }
    Ok(())
}

/// What a provider's notification, verified by its route, says about a
/// trade, in the provider's own words: the facts the rules of
/// [`ProviderReport::check`] hold against the payment it names before
/// anything is applied.
#[derive(Debug, Clone)]
pub struct ProviderReport {
    /// The provider that reports (its gateway's name).
    pub gateway: &'static str,
    /// The payment its trade number names.
    pub payment_id: PaymentId,
    /// Whom it is for, each beside what this server is configured with, in
    /// the order they are checked: the application (`app_id`, `appid`), the
    /// merchant (`seller_id` when one is configured, `mchid`).
    pub parties: Vec<Party>,
    /// How much the trade is for.
    pub amount: ReportedAmount,
    pub outcome: TradeOutcome,
}

/// One party a report names, and the one this server is configured with.
#[derive(Debug, Clone)]
pub struct Party {
    /// The provider's name for the field.
    pub field: &'static str,
    pub configured: String,
    pub reported: String,
}

/// The amount of a provider's report.
#[derive(Debug, Clone)]
pub struct ReportedAmount {
    /// The provider's name for the amount's field (`total_amount`, `amount.total`).
    pub field: &'static str,
    /// In minor units; `None` when the report carries none (which the rules refuse).
    pub minor: Option<i64>,
    /// The provider's name for the currency's field, and the currency, when
    /// the report carries one.
    pub currency: Option<(&'static str, String)>,
    /// How the provider writes an amount (`"9999.00"`, `999900`), for a
    /// mismatch's message.
    pub written: fn(i64) -> String,
}

/// What a provider reports of a trade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TradeOutcome {
    /// Paid, with the provider's transaction id (which a success must carry).
    Paid { transaction_id: Option<String> },
    /// Genuine news that is not a success (created, closed, refunded...).
    NotPaid,
}

/// Why a genuine report is not about the payment its trade number names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportMismatch {
    /// The payment was opened with another provider.
    OtherGateway,
    /// For another application or merchant.
    Party(Mismatch),
    /// For another amount or currency.
    Amount(Mismatch),
}

impl ProviderReport {
    /// The rules, for every provider: the payment was opened with the
    /// provider that reports, the report is for this server's application
    /// and merchant, and for the payment's amount (see [`check_amount`]; a
    /// report must carry one). The error names the first that differs.
    pub fn check(&self, payment: &Payment) -> Result<(), ReportMismatch> {
        if payment.gateway != self.gateway {
            return Err(ReportMismatch::OtherGateway);
        }
        for party in &self.parties {
            expect_field(party.field, &party.configured, &party.reported)
                .map_err(ReportMismatch::Party)?;
        }
        let amount = &self.amount;
        let expected = payment.amount;
        let other_amount = || {
            ReportMismatch::Amount(Mismatch {
                field: amount.field,
                expected: (amount.written)(expected.minor()),
                actual: amount.minor.map(amount.written).unwrap_or_default(),
            })
        };
        let Some(minor) = amount.minor else {
            return Err(other_amount());
        };
        let currency = amount.currency.as_ref();
        match check_amount(expected, Some(minor), currency.map(|(_, c)| c.as_str())) {
            Ok(()) => Ok(()),
            Err(AmountDiffers::Amount) => Err(other_amount()),
            Err(AmountDiffers::Currency) => {
                let (field, reported) =
                    currency.map_or(("currency", ""), |(f, c)| (*f, c.as_str()));
                Err(ReportMismatch::Amount(Mismatch {
                    field,
                    expected: expected.currency().to_string(),
                    actual: reported.to_owned(),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rules every provider's report and every signed notification's
    /// amount are held to, in one place.
    #[test]
    fn the_rules_hold_every_report_against_its_payment() {
        use shared_kernel::model::money::Currency;
        let cny = |minor| Money::new(minor, Currency::CNY);
        let payment = |gateway| Payment::for_tests(PaymentId::generate(), gateway, cny(999_900));
        let party = |field, configured: &str, reported: &str| Party {
            field,
            configured: configured.to_owned(),
            reported: reported.to_owned(),
        };
        // Alipay: yuan with two decimals, no currency field, the seller when configured.
        let alipay = |app_id: &str, seller_id: &str, amount| ProviderReport {
            gateway: "alipay",
            payment_id: PaymentId::generate(),
            parties: vec![
                party("app_id", "2021000000000001", app_id),
                party("seller_id", "2088000000000001", seller_id),
            ],
            amount: ReportedAmount {
                field: "total_amount",
                minor: Some(amount),
                currency: None,
                written: |fen| format!("{}.{:02}", fen / 100, fen % 100),
            },
            outcome: TradeOutcome::NotPaid,
        };
        // WeChat Pay: fen, a currency field, the merchant first.
        let wechat_pay =
            |mchid: &str, amount: Option<i64>, currency: Option<&str>| ProviderReport {
                gateway: "wechat_pay",
                payment_id: PaymentId::generate(),
                parties: vec![
                    party("mchid", "1900000001", mchid),
                    party("appid", "wxd678efh567hg6787", "wxd678efh567hg6787"),
                ],
                amount: ReportedAmount {
                    field: "amount.total",
                    minor: amount,
                    currency: currency.map(|c| ("amount.currency", c.to_owned())),
                    written: |fen| fen.to_string(),
                },
                outcome: TradeOutcome::NotPaid,
            };
        let mismatch = |field, expected: &str, actual: &str| Mismatch {
            field,
            expected: expected.to_owned(),
            actual: actual.to_owned(),
        };
        let (by_alipay, by_wechat_pay) = (payment("alipay"), payment("wechat_pay"));
        let genuine = alipay("2021000000000001", "2088000000000001", 999_900);
        assert_eq!(genuine.check(&by_alipay), Ok(()));
        assert_eq!(
            genuine.check(&by_wechat_pay),
            Err(ReportMismatch::OtherGateway)
        );
        assert_eq!(
            alipay("2021000000000002", "2088000000000002", 1).check(&by_alipay),
            Err(ReportMismatch::Party(mismatch(
                "app_id",
                "2021000000000001",
                "2021000000000002"
            )))
        );
        assert_eq!(
            alipay("2021000000000001", "", 999_900).check(&by_alipay),
            Err(ReportMismatch::Party(mismatch(
                "seller_id",
                "2088000000000001",
                ""
            )))
        );
        assert_eq!(
            alipay("2021000000000001", "2088000000000001", 1).check(&by_alipay),
            Err(ReportMismatch::Amount(mismatch(
                "total_amount",
                "9999.00",
                "0.01"
            )))
        );
        assert_eq!(
            wechat_pay("1900000001", Some(999_900), None).check(&by_wechat_pay),
            Ok(())
        );
        assert_eq!(
            wechat_pay("1900000001", Some(999_900), Some("CNY")).check(&by_wechat_pay),
            Ok(())
        );
        assert_eq!(
            wechat_pay("1900000002", Some(1), Some("USD")).check(&by_wechat_pay),
            Err(ReportMismatch::Party(mismatch(
                "mchid",
                "1900000001",
                "1900000002"
            )))
        );
        assert_eq!(
            wechat_pay("1900000001", None, None).check(&by_wechat_pay),
            Err(ReportMismatch::Amount(mismatch(
                "amount.total",
                "999900",
                ""
            )))
        );
        assert_eq!(
            wechat_pay("1900000001", Some(999_900), Some("USD")).check(&by_wechat_pay),
            Err(ReportMismatch::Amount(mismatch(
                "amount.currency",
                "CNY",
                "USD"
            )))
        );
        // A signed notification's amount and currency, each when given.
        for (amount, currency, held) in [
            (Some(999_900), Some("CNY"), Ok(())),
            (None, None, Ok(())),
            (Some(999_900), None, Ok(())),
            (Some(999_901), Some("CNY"), Err(AmountDiffers::Amount)),
            (None, Some("USD"), Err(AmountDiffers::Currency)),
        ] {
            assert_eq!(check_amount(cny(999_900), amount, currency), held);
        }
    }

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
    pub amount: shared_kernel::model::money::Money,
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
    /// A pending payment of `amount` opened with `gateway`, for tests.
    #[cfg(test)]
    pub(crate) fn for_tests(id: PaymentId, gateway: &str, amount: Money) -> Self {
        let now = chrono::DateTime::UNIX_EPOCH.naive_utc();
        Self {
            id,
            order_id: "order-1".to_owned(),
            method: PaymentMethod::Alipay,
            gateway: gateway.to_owned(),
            status: PaymentStatus::Pending,
            amount,
            payment_url: String::new(),
            expires_at: now,
            transaction_id: None,
            created_at: now,
            updated_at: now,
            completed_at: None,
            user_id: "user-1".to_owned(),
        }
    }

    /// The id of this payment's refund at its provider: derived from the
    /// payment, so that every retry asks for the same refund and the
    /// provider refunds once (33 characters, within both Alipay's
    /// `out_request_no` and WeChat Pay's `out_refund_no` rules).
    pub fn refund_id(&self) -> String {
        format!("r{}", self.id.as_str().replace('-', ""))
    }
}

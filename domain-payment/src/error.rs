use actix_web::http::StatusCode;
use shared_kernel::model::money::{Currency, Money};
use shared_kernel::model::ports::PortError;
use shared_kernel::storage::db::DbError;
use shared_kernel::{FieldViolation, Problem};

use crate::model::{PaymentId, PaymentStatus};
use crate::signature::SignatureError;

/// What can go wrong in the payment context's use cases.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("no payment {0}")]
    NotFound(PaymentId),
    #[error("no order {0}")]
    OrderNotFound(String),
    #[error("the order is already paid")]
    OrderPaid,
    #[error("the order is cancelled")]
    OrderCancelled,
    #[error("the order's payment time has run out")]
    OrderExpired,
    #[error("no payment was initiated for order {0}")]
    NoPaymentInitiated(String),
    #[error("no payment gateway is configured")]
    NoGateway,
    /// The method's provider does not take the order's currency.
    #[error("{method} does not take payments in {currency}")]
    CurrencyNotAccepted { method: String, currency: Currency },
    /// The method's provider cannot take the order's amount in one payment.
    #[error("{method} takes {min} to {max} minor units, not {amount}")]
    AmountNotAccepted {
        method: String,
        amount: Money,
        min: i64,
        max: i64,
    },
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("invalid notification")]
    Invalid(Vec<FieldViolation>),
    #[error("the notification's amount does not match the payment's")]
    AmountMismatch {
        /// The payment's amount.
        expected: Money,
        /// What the notification said, as it said it.
        amount: Option<i64>,
        currency: Option<String>,
    },
    /// The same signed bytes were accepted before, and accepting them again
    /// would change a payment, or name another one.
    #[error("the notification was accepted before")]
    Replayed,
    /// A notification naming an order was signed before the order's current
    /// payment was opened: it cannot be about that payment.
    #[error("the notification was signed before the order's payment was opened")]
    PredatesPayment,
    #[error("the payment is {0:?}; it cannot take this outcome")]
    AlreadyFinal(PaymentStatus),
    /// A `Shop-Signature` notification about a payment whose gateway has a
    /// channel of its own (Alipay, WeChat Pay): only that channel settles it.
    #[error(
        "the payment's outcome comes from its gateway {0}, not from a Shop-Signature notification"
    )]
    WrongChannel(String),
    /// No gateway here takes `Shop-Signature` notifications (the sandbox is off).
    #[error("no gateway takes Shop-Signature notifications")]
    NoSignedChannel,
    #[error(transparent)]
    Port(#[from] PortError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for PaymentError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Db(DbError::Query(error))
    }
}

/// `5.00 CNY (500 in minor units)`.
fn in_words(money: Money) -> String {
    format!("{money} ({} in minor units)", money.minor())
}

/// What a notification claimed, read in the payment's currency when it named none.
fn claimed(payment_currency: Currency, amount: Option<i64>, currency: Option<&str>) -> String {
    let currency = currency.map(|c| Currency::parse(c).map_err(|_| c));
    match (amount, currency) {
        (Some(minor), None) => in_words(Money::new(minor, payment_currency)),
        (Some(minor), Some(Ok(currency))) => in_words(Money::new(minor, currency)),
        (Some(minor), Some(Err(_))) => {
            format!("{minor} minor units of a currency that is not an ISO 4217 code")
        }
        (None, Some(Ok(currency))) => format!("the currency is {currency}"),
        (None, Some(Err(_))) => "a currency that is not an ISO 4217 code".to_owned(),
        (None, None) => "nothing about the amount".to_owned(),
    }
}

/// The one place where payment errors become HTTP problems.
impl From<PaymentError> for Problem {
    fn from(error: PaymentError) -> Self {
        let conflict = |code: &str, title: &str, detail: String| {
            Problem::new(StatusCode::CONFLICT, code, title).with_detail(detail)
        };
        match error {
            PaymentError::NotFound(id) => Problem::new(
                StatusCode::NOT_FOUND,
                "payment_not_found",
                "Payment not found",
            )
            .with_detail(format!("No payment has the id \"{id}\".")),
            PaymentError::OrderNotFound(id) => {
                Problem::new(StatusCode::NOT_FOUND, "order_not_found", "Order not found")
                    .with_detail(format!("No order has the id \"{id}\"."))
            }
            PaymentError::OrderPaid => conflict(
                "order_already_paid",
                "Order already paid",
                "The order is already paid.".into(),
            ),
            PaymentError::OrderCancelled => conflict(
                "order_cancelled",
                "Order cancelled",
                "The order is cancelled; it can no longer be paid.".into(),
            ),
            PaymentError::OrderExpired => conflict(
                "order_expired",
                "Order expired",
                "The order's payment time has run out.".into(),
            ),
            PaymentError::NoPaymentInitiated(id) => conflict(
                "no_payment_initiated",
                "No payment initiated",
                format!("Order {id:?} has no payment; initiate one first."),
            ),
            PaymentError::NoGateway => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_payment_gateway",
                "No payment gateway",
            )
            .with_detail(
                "No payment gateway is configured on this server, so no payment can be initiated.",
            ),
            PaymentError::CurrencyNotAccepted { method, currency } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "currency_not_accepted",
                "Currency not accepted",
            )
            .with_detail(format!(
                "The order is in {currency}; {method} takes payments in CNY only."
            )),
            PaymentError::AmountNotAccepted {
                method,
                amount,
                min,
                max,
            } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "amount_not_accepted",
                "Amount not accepted",
            )
            .with_detail(if max == i64::MAX {
                format!(
                    "The order is for {}; {method} takes at least {} in one payment.",
                    in_words(amount),
                    Money::new(min, amount.currency()),
                )
            } else {
                format!(
                    "The order is for {}; {method} takes {} to {} in one payment.",
                    in_words(amount),
                    Money::new(min, amount.currency()),
                    Money::new(max, amount.currency()),
                )
            }),
            PaymentError::Signature(reason) => Problem::new(
                StatusCode::UNAUTHORIZED,
                "invalid_signature",
                "Invalid signature",
            )
            .with_detail(reason.to_string()),
            PaymentError::Invalid(errors) => Problem::validation(errors),
            PaymentError::AmountMismatch {
                expected,
                amount,
                currency,
            } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "amount_mismatch",
                "Amount mismatch",
            )
            .with_detail(format!(
                "The payment is for {}; the notification says {}.",
                in_words(expected),
                claimed(expected.currency(), amount, currency.as_deref())
            )),
            PaymentError::WrongChannel(gateway) => conflict(
                "wrong_notification_channel",
                "Wrong notification channel",
                format!(
                    "This payment was opened with {gateway}: its outcome comes from {gateway}'s own \
                     notifications and queries, never from a Shop-Signature notification; nothing changed."
                ),
            ),
            PaymentError::NoSignedChannel => Problem::for_status(StatusCode::NOT_FOUND).with_detail(
                "No payment gateway here takes Shop-Signature notifications (the sandbox is off).",
            ),
            PaymentError::Replayed => conflict(
                "notification_replayed",
                "Notification replayed",
                "This notification (the same body, signed at the same second) was accepted \
                 before, and the payment it was about has since moved on, or the notification \
                 would now name another payment; nothing changed."
                    .into(),
            ),
            PaymentError::PredatesPayment => conflict(
                "notification_predates_payment",
                "Notification predates the payment",
                "The notification was signed before the order's current payment was opened, so \
                 it cannot be about that payment; nothing changed."
                    .into(),
            ),
            PaymentError::AlreadyFinal(status) => conflict(
                "payment_already_final",
                "Payment already final",
                format!(
                    "The payment is {}; a notification cannot change that.",
                    status.as_str()
                ),
            ),
            PaymentError::Port(PortError::Unavailable(detail)) => {
                // The database, or another context's process (split mode) is out of reach.
                tracing::warn!(%detail, "a port is unavailable");
                Problem::unavailable(
                    "A service this request needs is unavailable; try again shortly.",
                )
            }
            PaymentError::Port(PortError::Unexpected(error)) => Problem::internal(&error),
            PaymentError::Db(error) => error.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(amount: Option<i64>, currency: Option<&str>) -> String {
        let problem = Problem::from(PaymentError::AmountMismatch {
            expected: Money::new(500, Currency::CNY),
            amount,
            currency: currency.map(str::to_owned),
        });
        assert_eq!(problem.code, "amount_mismatch");
        problem.detail.unwrap_or_default()
    }

    #[test]
    fn amount_mismatches_are_told_in_major_and_minor_units() {
        assert_eq!(
            detail(Some(499), Some("CNY")),
            "The payment is for 5.00 CNY (500 in minor units); the notification says 4.99 CNY (499 in minor units)."
        );
        assert_eq!(
            detail(Some(501), None),
            "The payment is for 5.00 CNY (500 in minor units); the notification says 5.01 CNY (501 in minor units)."
        );
        assert_eq!(
            detail(Some(500), Some("JPY")),
            "The payment is for 5.00 CNY (500 in minor units); the notification says 500 JPY (500 in minor units)."
        );
        assert_eq!(
            detail(None, Some("USD")),
            "The payment is for 5.00 CNY (500 in minor units); the notification says the currency is USD."
        );
        assert_eq!(
            detail(Some(500), Some("usd")),
            "The payment is for 5.00 CNY (500 in minor units); the notification says 500 minor units of a currency that is not an ISO 4217 code."
        );
    }
}

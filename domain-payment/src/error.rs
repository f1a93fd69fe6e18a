use actix_web::http::StatusCode;
use shared_kernel::db::DbError;
use shared_kernel::ports::PortError;
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
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("invalid notification")]
    Invalid(Vec<FieldViolation>),
    #[error("the notification's amount does not match the payment's")]
    AmountMismatch { expected: String, got: String },
    #[error("the payment is {0:?}; it cannot take this outcome")]
    AlreadyFinal(PaymentStatus),
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
            PaymentError::Signature(reason) => Problem::new(
                StatusCode::UNAUTHORIZED,
                "invalid_signature",
                "Invalid signature",
            )
            .with_detail(reason.to_string()),
            PaymentError::Invalid(errors) => Problem::validation(errors),
            PaymentError::AmountMismatch { expected, got } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "amount_mismatch",
                "Amount mismatch",
            )
            .with_detail(format!(
                "The payment is for {expected}; the notification says {got}."
            )),
            PaymentError::AlreadyFinal(status) => conflict(
                "payment_already_final",
                "Payment already final",
                format!(
                    "The payment is {}; a notification cannot change that.",
                    status.as_str()
                ),
            ),
            PaymentError::Port(PortError::Unavailable(detail)) => {
                Problem::from(DbError::Unavailable(detail))
            }
            PaymentError::Port(PortError::Unexpected(error)) => Problem::internal(&error),
            PaymentError::Db(error) => error.into(),
        }
    }
}

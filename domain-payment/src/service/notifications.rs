//! What a provider reports about a payment: a signed notification, a
//! provider's verified notification or a query's answer, applied once through
//! the state machine with its event.

use shared_kernel::FieldViolation;
use shared_kernel::messaging::outbox::Outbox;
use shared_kernel::model::clock;
use shared_kernel::model::events::{PaymentFailed, PaymentSucceeded};
use shared_kernel::model::ports::OrderState;
use shared_kernel::storage::db::AnyConnection;

use super::PaymentService;
use crate::error::PaymentError;
use crate::model::{
    Applied, NotifiedStatus, Payment, PaymentId, PaymentStatus, ProviderReport, ReportMismatch,
    TRANSACTION_ID_MAX_LEN, TradeOutcome, check_amount, is_valid_transaction_id,
};
use crate::repository;
use crate::signature::{SignatureError, Signed};

/// Refuses a transaction id shop does not keep ([`crate::model::TRANSACTION_ID_PATTERN`]),
/// naming the field, whichever route or provider reported it.
fn check_transaction_id(id: &str) -> Result<(), PaymentError> {
    if is_valid_transaction_id(id) {
        return Ok(());
    }
    Err(PaymentError::Invalid(vec![FieldViolation::new(
        "transactionId",
        format!(
            "must be 1 to {TRANSACTION_ID_MAX_LEN} visible ASCII characters (no space or control character)"
        ),
    )]))
}

/// A notification's claim, as the gateway sent it, validated.
#[derive(Debug, Clone)]
pub struct Notification {
    outcome: NotifiedStatus,
    amount: Option<i64>,
    currency: Option<String>,
    transaction_id: Option<String>,
}

impl Notification {
    /// `amount` and `currency`, when given, must match the payment's;
    /// `transaction_id`, when given, must be one shop can keep
    /// ([`crate::model::TRANSACTION_ID_PATTERN`]).
    pub fn new(
        outcome: NotifiedStatus,
        amount: Option<i64>,
        currency: Option<String>,
        transaction_id: Option<String>,
    ) -> Result<Self, PaymentError> {
        if let Some(id) = &transaction_id {
            check_transaction_id(id)?;
        }
        Ok(Self {
            outcome,
            amount,
            currency,
            transaction_id,
        })
    }
}

/// What a notification did.
#[derive(Debug, Clone)]
pub struct Notified {
    /// The payment as the notification left it.
    pub payment: Payment,
    /// False when nothing changed: the payment already had this outcome.
    pub applied: bool,
}

/// Which payment a notification is about.
#[derive(Debug, Clone)]
pub enum PaymentRef {
    Payment(PaymentId),
    /// The original spec's notifications name the order; they mean its open
    /// (or latest) payment, which must have been opened before the
    /// notification was signed.
    Order(String),
}

/// What a provider's report did.
#[derive(Debug, Clone)]
pub enum Reported {
    /// Genuine news about the payment that changes nothing here (not a success).
    NotPaid(Payment),
    /// A success, applied once (`applied: false` for a repeat).
    Paid(Notified),
}

/// Why a provider's report is refused; nothing changed.
#[derive(Debug)]
pub enum ReportRefused {
    /// No payment has the trade number it names.
    UnknownTrade,
    /// Genuine, but not about that payment ([`ProviderReport::check`]).
    Mismatch(ReportMismatch),
    /// A success without the provider's transaction id.
    NoTransactionId,
    Payment(PaymentError),
}

impl From<PaymentError> for ReportRefused {
    fn from(error: PaymentError) -> Self {
        Self::Payment(error)
    }
}

impl PaymentService {
    /// Checks a notification's `Shop-Signature` against its raw body.
    pub fn verify(&self, signature: Option<&str>, raw_body: &[u8]) -> Result<Signed, PaymentError> {
        // Without a gateway that settles by `Shop-Signature` (the sandbox
        // off), the routes serve nothing: 404 before anything is read.
        if self.gateways.shop_signed().is_empty() {
            return Err(PaymentError::NoSignedChannel);
        }
        Ok(self
            .signature
            .verify(signature, raw_body, chrono::Utc::now().timestamp())?)
    }

    /// Signs a notification body as a gateway would (the sandbox uses it).
    pub fn sign(&self, raw_body: &[u8]) -> String {
        self.signature
            .sign(chrono::Utc::now().timestamp(), raw_body)
    }

    /// Applies a verified notification once: the payment's status changes and
    /// its event is published in one transaction, which also records the
    /// notification (`signed`), so that the same signed bytes are accepted at
    /// most once. A duplicate with other bytes changes nothing and answers
    /// `applied: false`; so does an exact replay while the payment it was
    /// accepted for still shows its outcome (a gateway's retry); any other
    /// replay is refused ([`PaymentError::Replayed`]).
    ///
    /// A success is never dropped: it ends the payment `succeeded`, or
    /// `refund_required` when the order (read through [`OrderLookup`] first)
    /// can no longer take it, cancelled or paid by another payment. The order
    /// context refuses a success that races such a change, and the payment is
    /// then marked for refund by [`crate::Refunds`].
    pub async fn apply_notification(
        &self,
        signed: Signed,
        payment: PaymentRef,
        notification: Notification,
    ) -> Result<Notified, PaymentError> {
        // Only gateways of that kind (the sandbox) settle their payments by
        // `Shop-Signature`; without one, the routes serve nothing.
        let shop_signed = self.gateways.shop_signed();
        if shop_signed.is_empty() {
            return Err(PaymentError::NoSignedChannel);
        }
        let order_id = match &payment {
            PaymentRef::Order(order_id) => order_id.clone(),
            PaymentRef::Payment(id) => self.find(id.clone()).await?.order_id,
        };
        let order = self.orders.order(&order_id).await?;
        if order.is_none()
            && let PaymentRef::Order(order_id) = &payment
        {
            return Err(PaymentError::OrderNotFound(order_id.clone()));
        }
        let order = order.map(|o| o.state);
        let outbox = self.outbox.clone();
        let notified = self
            .db
            .write(move |conn| {
                apply(
                    conn,
                    &outbox,
                    &signed,
                    &payment,
                    &notification,
                    order,
                    &shop_signed,
                )
            })
            .await?;
        let payment = &notified.payment;
        if notified.applied {
            self.outbox.wake();
            if payment.status == PaymentStatus::RefundRequired {
                tracing::warn!(payment_id = %payment.id, order_id = %payment.order_id, "the order can no longer take this payment: marked for refund");
            }
            tracing::info!(payment_id = %payment.id, status = payment.status.as_str(), "payment notification applied");
            metrics::counter!(
                "shop_payments_completed_total",
                "method" => payment.method.as_str(),
                "outcome" => payment.status.as_str()
            )
            .increment(1);
        } else {
            metrics::counter!("shop_payment_notifications_duplicate_total").increment(1);
        }
        Ok(notified)
    }

    /// Applies a success its provider reported for a payment (by a
    /// notification its adapter verified, or by a query's answer), exactly as
    /// a signed notification's: through the state machine, once (a repeat
    /// changes nothing), the order paid or the money marked for refund when
    /// the order can no longer take it. An amount other than the payment's is
    /// refused ([`PaymentError::AmountMismatch`]) and changes nothing.
    pub async fn apply_paid(
        &self,
        id: &PaymentId,
        transaction_id: &str,
        amount: i64,
    ) -> Result<Notified, PaymentError> {
        check_transaction_id(transaction_id)?;
        let payment = self.find(id.clone()).await?;
        if check_amount(payment.amount, Some(amount), None).is_err() {
            return Err(PaymentError::AmountMismatch {
                expected: payment.amount,
                amount: Some(amount),
                currency: None,
            });
        }
        let order = self
            .orders
            .order(&payment.order_id)
            .await?
            .map(|order| order.state);
        let outbox = self.outbox.clone();
        let (id, transaction_id) = (id.clone(), transaction_id.to_owned());
        let moved = self
            .db
            .write(move |conn| {
                let current = repository::find(conn, &id)?
                    .ok_or_else(|| PaymentError::NotFound(id.clone()))?;
                move_payment(
                    conn,
                    &outbox,
                    current,
                    NotifiedStatus::Success,
                    &transaction_id,
                    order,
                )
            })
            .await?;
        if moved.applied {
            self.outbox.wake();
            metrics::counter!(
                "shop_payments_completed_total",
                "method" => moved.payment.method.as_str(),
                "outcome" => moved.payment.status.as_str()
            )
            .increment(1);
        }
        Ok(moved)
    }

    /// Applies a provider's report of a trade, verified by its route: the
    /// rules first ([`ProviderReport::check`]: the payment was opened with
    /// that provider, for this application and merchant, and this amount),
    /// then a success through [`apply_paid`](Self::apply_paid), once. News
    /// that is not a success changes nothing.
    pub async fn apply_report(&self, report: ProviderReport) -> Result<Reported, ReportRefused> {
        let payment = match self.find(report.payment_id.clone()).await {
            Ok(payment) => payment,
            Err(PaymentError::NotFound(_)) => return Err(ReportRefused::UnknownTrade),
            Err(error) => return Err(error.into()),
        };
        report.check(&payment).map_err(ReportRefused::Mismatch)?;
        let TradeOutcome::Paid { transaction_id } = report.outcome else {
            return Ok(Reported::NotPaid(payment));
        };
        let transaction_id = transaction_id.ok_or(ReportRefused::NoTransactionId)?;
        let moved = self
            .apply_paid(&payment.id, &transaction_id, payment.amount.minor())
            .await?;
        Ok(Reported::Paid(moved))
    }
}

/// The payment a notification is about, as it is now.
fn find_target(conn: &mut AnyConnection, payment: &PaymentRef) -> Result<Payment, PaymentError> {
    match payment {
        PaymentRef::Payment(id) => {
            repository::find(conn, id)?.ok_or_else(|| PaymentError::NotFound(id.clone()))
        }
        PaymentRef::Order(order_id) => repository::current_for_order(conn, order_id)?
            .ok_or_else(|| PaymentError::NoPaymentInitiated(order_id.clone())),
    }
}

fn apply(
    conn: &mut AnyConnection,
    outbox: &Outbox,
    signed: &Signed,
    payment: &PaymentRef,
    notification: &Notification,
    order: Option<OrderState>,
    shop_signed: &[&str],
) -> Result<Notified, PaymentError> {
    // Checked again here: the record of a notification outlives its
    // signature's tolerance by that much again, however long this unit waited.
    if !signed.is_fresh_at(chrono::Utc::now().timestamp()) {
        return Err(SignatureError::Stale.into());
    }
    let current = find_target(conn, payment)?;
    // A payment takes outcomes only from its own gateway's verified channel.
    if !shop_signed.contains(&current.gateway.as_str()) {
        return Err(PaymentError::WrongChannel(current.gateway.clone()));
    }
    if check_amount(
        current.amount,
        notification.amount,
        notification.currency.as_deref(),
    )
    .is_err()
    {
        return Err(PaymentError::AmountMismatch {
            expected: current.amount,
            amount: notification.amount,
            currency: notification.currency.clone(),
        });
    }
    let now = clock::now();
    if !repository::record_notification(conn, signed, &current.id, now)? {
        // These bytes were accepted before (perhaps a moment ago, by a
        // concurrent delivery whose commit this one waited for): read afresh.
        let accepted_for = repository::notified_payment(conn, signed)?;
        let payment = repository::find(conn, &current.id)?
            .ok_or_else(|| PaymentError::NotFound(current.id.clone()))?;
        return if accepted_for.as_ref() == Some(&payment.id)
            && notification.outcome.agrees_with(payment.status)
        {
            Ok(Notified {
                payment,
                applied: false,
            })
        } else {
            Err(PaymentError::Replayed)
        };
    }
    if matches!(payment, PaymentRef::Order(_))
        && current.created_at.and_utc().timestamp() > signed.timestamp
    {
        return Err(PaymentError::PredatesPayment);
    }
    let transaction_id = notification
        .transaction_id
        .clone()
        .unwrap_or_else(|| format!("unreported-{}", current.id));
    move_payment(
        conn,
        outbox,
        current,
        notification.outcome,
        &transaction_id,
        order,
    )
}

/// Moves a payment as a provider's claim says (a notification's, or a
/// query's answer), through the state machine, publishing the move's event.
fn move_payment(
    conn: &mut AnyConnection,
    outbox: &Outbox,
    current: Payment,
    claim: NotifiedStatus,
    transaction_id: &str,
    order: Option<OrderState>,
) -> Result<Notified, PaymentError> {
    let now = clock::now();
    // The conditional update is the lock: of concurrent notifications, one
    // moves the payment; the others read where it went and go on from there
    // (a success after a failure still moves it), a few times at most, as
    // every status but `pending` has few ways out.
    let mut current = current;
    for _ in 0..PaymentStatus::ALL.len() {
        let outcome = claim.outcome(current.status, order);
        let next = match current.status.apply(outcome) {
            Ok(Applied::Unchanged) => {
                return Ok(Notified {
                    payment: current,
                    applied: false,
                });
            }
            Ok(Applied::Changed(next)) => next,
            Err(illegal) => return Err(PaymentError::AlreadyFinal(illegal.from)),
        };
        if repository::transition(
            conn,
            &current.id,
            current.status,
            next,
            Some(transaction_id),
            now,
        )? {
            publish(conn, outbox, &current, next, transaction_id)?;
            let payment = repository::find(conn, &current.id)?
                .ok_or_else(|| PaymentError::NotFound(current.id.clone()))?;
            return Ok(Notified {
                payment,
                applied: true,
            });
        }
        current = repository::find(conn, &current.id)?
            .ok_or_else(|| PaymentError::NotFound(current.id.clone()))?;
    }
    Err(PaymentError::AlreadyFinal(current.status))
}

/// The event of a payment's move to `next`: the order context pays the order
/// on a success (or refuses it, when it can no longer take it) and notes a
/// failure. A payment marked for refund at once concerns no other context.
fn publish(
    conn: &mut AnyConnection,
    outbox: &Outbox,
    payment: &Payment,
    next: PaymentStatus,
    transaction_id: &str,
) -> Result<(), PaymentError> {
    let (payment_id, order_id) = (payment.id.to_string(), payment.order_id.clone());
    match next {
        PaymentStatus::Succeeded => {
            outbox.publish(
                conn,
                &PaymentSucceeded {
                    payment_id,
                    order_id,
                    amount: payment.amount.minor(),
                    currency: payment.amount.currency().to_string(),
                    transaction_id: transaction_id.to_owned(),
                },
            )?;
        }
        PaymentStatus::Failed => {
            outbox.publish(
                conn,
                &PaymentFailed {
                    payment_id,
                    order_id,
                },
            )?;
        }
        // What notifications never lead to, and a refund the payment context does itself.
        PaymentStatus::Pending
        | PaymentStatus::RefundRequired
        | PaymentStatus::Closed
        | PaymentStatus::Refunded => {}
    }
    Ok(())
}

//! What other contexts' events cause here, each in the delivery's transaction.

use shared_kernel::model::clock;
use shared_kernel::model::events::OrderPaymentRefused;
use shared_kernel::storage::db::AnyConnection;

use crate::error::PaymentError;
use crate::model::{Applied, PaymentId, PaymentOutcome, PaymentStatus};
use crate::repository;

/// The use case behind the order context's `order.payment_refused`, in the
/// delivery's transaction: the order could not take a payment that
/// succeeded, so the payment is marked for refund (and the refund becomes
/// due at once). Returns whether this call marked it.
pub fn mark_for_refund(
    conn: &mut AnyConnection,
    refused: &OrderPaymentRefused,
) -> Result<bool, PaymentError> {
    let id = PaymentId::from(refused.payment_id.clone());
    let moved = apply_outcome(conn, &id, PaymentOutcome::SuccessRefused)?;
    if moved.is_some() {
        tracing::warn!(payment_id = %id, order_id = %refused.order_id, reason = ?refused.reason, "payment marked for refund");
    }
    Ok(moved.is_some())
}

/// The use case behind the order context's `order.cancelled`, in the
/// delivery's transaction: closes the order's payments that could still be
/// paid, so that their checkout stops offering Pay at once and closing each
/// trade at its provider becomes due (a success that still arrives is then
/// refunded). Returns how many it closed.
pub fn close_for_cancelled_order(
    conn: &mut AnyConnection,
    order_id: &str,
) -> Result<usize, PaymentError> {
    let mut closed = 0;
    for payment in repository::payable_for_order(conn, order_id)? {
        match apply_outcome(conn, &payment.id, PaymentOutcome::Close) {
            Ok(Some(_)) => {
                tracing::info!(payment_id = %payment.id, order_id, "payment closed: its order was cancelled");
                closed += 1;
            }
            // Paid or closed in the meantime: a success is refunded by its own path.
            Ok(None) | Err(PaymentError::AlreadyFinal(_)) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(closed)
}

/// Moves payment `id` by `outcome` through the state machine with a
/// conditional update; when another change won the race, reads where the
/// payment went and goes on from there. Returns the status it moved to, or
/// `None` when the outcome changes nothing.
fn apply_outcome(
    conn: &mut AnyConnection,
    id: &PaymentId,
    outcome: PaymentOutcome,
) -> Result<Option<PaymentStatus>, PaymentError> {
    let now = clock::now();
    for _ in 0..PaymentStatus::ALL.len() {
        let current =
            repository::find(conn, id)?.ok_or_else(|| PaymentError::NotFound(id.clone()))?;
        let next = match current.status.apply(outcome) {
            Ok(Applied::Unchanged) => return Ok(None),
            Ok(Applied::Changed(next)) => next,
            Err(illegal) => return Err(PaymentError::AlreadyFinal(illegal.from)),
        };
        if repository::transition(conn, id, current.status, next, None, now)? {
            return Ok(Some(next));
        }
    }
    Err(PaymentError::AlreadyFinal(
        repository::find(conn, id)?
            .ok_or_else(|| PaymentError::NotFound(id.clone()))?
            .status,
    ))
}

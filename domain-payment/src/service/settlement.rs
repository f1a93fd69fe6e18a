//! What the providers are owed: asking about payments whose notification has
//! not come, closing the trades of closed payments, refunding; and forgetting
//! notifications too old to replay.

use shared_kernel::messaging::outbox::Outbox;
use shared_kernel::model::clock;
use shared_kernel::model::events::PaymentRefunded;
use shared_kernel::model::ports::{Closed, RefundRequest, RefundState, Trade, TradeState};
use shared_kernel::storage::db::AnyConnection;

use super::{PaymentService, Reconciliation, call_outcome, count_provider_call};
use crate::error::PaymentError;
use crate::model::{Payment, PaymentStatus};
use crate::repository;
use crate::signature::TOLERANCE_SECS;

impl PaymentService {
    /// Does what the providers are owed and is due: asks about `pending`
    /// payments as their deadline nears (a success learned so is applied as
    /// its notification would be; one still unpaid at its deadline is
    /// closed), closes the trades of `closed` payments and refunds
    /// `refund_required` ones, up to
    /// [`PROVIDER_WORK_BATCH`] at a time; returns how many it took (call
    /// again while it returns a full batch). Each payment is taken by one
    /// worker (its due time moves forward first); a provider that fails or is
    /// still processing is asked again later, with back-off, and with the
    /// same refund id, so that a refund is made once however often it is
    /// retried. Safe on every instance at once.
    pub async fn settle_with_providers(&self) -> Result<usize, PaymentError> {
        let now = clock::now();
        let due = self
            .db
            .run(move |conn| {
                Ok::<_, PaymentError>(repository::provider_work_due(
                    conn,
                    now,
                    PROVIDER_WORK_BATCH,
                )?)
            })
            .await?;
        let taken = due.len();
        for (payment, due_at, attempts) in due {
            let attempts = attempts.saturating_add(1);
            let id = payment.id.clone();
            // Taken: put off as if it failed, until it is done.
            let retry_at = now + backoff(attempts);
            let claimed = self
                .db
                .write(move |conn| {
                    Ok::<_, PaymentError>(repository::defer_provider_work(
                        conn, &id, due_at, retry_at, attempts,
                    )?)
                })
                .await?;
            if claimed {
                self.settle(payment, attempts).await?;
            }
        }
        Ok(taken)
    }

    /// Closes or refunds one payment at its provider, and records the answer.
    async fn settle(&self, payment: Payment, attempts: i32) -> Result<(), PaymentError> {
        let gateway = self.gateways.named(&payment.gateway).cloned();
        let Some(gateway) = gateway else {
            tracing::warn!(payment_id = %payment.id, gateway = %payment.gateway, attempts, "the payment's provider is not configured here: its close or refund waits");
            return Ok(());
        };
        let trade = Trade {
            payment_id: payment.id.to_string(),
            amount: payment.amount,
        };
        let operation = match payment.status {
            PaymentStatus::Pending => "query",
            PaymentStatus::Closed => "close",
            _ => "refund",
        };
        let answer = match payment.status {
            PaymentStatus::Pending => gateway.query(&trade).await.map(Settled::Query),
            PaymentStatus::Closed => gateway.close(&trade).await.map(Settled::Close),
            PaymentStatus::RefundRequired => gateway
                .refund(&RefundRequest {
                    refund_id: payment.refund_id(),
                    trade,
                })
                .await
                .map(Settled::Refund),
            // Moved on since it was read: nothing is owed any more.
            _ => return Ok(()),
        };
        let outcome = match &answer {
            Ok(Settled::Query(TradeState::Unpaid)) => "unpaid",
            Ok(Settled::Query(TradeState::Paid { .. })) => "paid",
            Ok(Settled::Query(TradeState::Closed)) | Ok(Settled::Close(Closed::Closed)) => "closed",
            Ok(Settled::Close(Closed::AlreadyPaid { .. })) => "already_paid",
            Ok(Settled::Refund(RefundState::Refunded)) => "refunded",
            Ok(Settled::Refund(RefundState::Processing)) => "processing",
            Err(_) => call_outcome(&answer),
        };
        count_provider_call(gateway.name(), operation, outcome);
        match answer {
            // A success learned by asking is applied as its notification would be.
            Ok(Settled::Query(TradeState::Paid {
                transaction_id,
                amount,
            })) => match self.apply_paid(&payment.id, &transaction_id, amount).await {
                Ok(moved) => {
                    if moved.applied {
                        tracing::info!(payment_id = %payment.id, status = moved.payment.status.as_str(), "payment success learned from its provider (no notification came)");
                    }
                    Ok(())
                }
                Err(PaymentError::AmountMismatch { .. }) => {
                    // Not this payment's money as shop knows it: a person must look.
                    tracing::error!(payment_id = %payment.id, reported = amount, expected = payment.amount.minor(), "the provider reports another amount paid; the payment is left as it is");
                    metrics::counter!("shop_payment_amount_mismatches_total").increment(1);
                    Ok(())
                }
                Err(error) => Err(error),
            },
            Ok(settled) => {
                let outbox = self.outbox.clone();
                let recorded = payment.clone();
                let reconciliation = self.reconciliation;
                self.db
                    .write(move |conn| {
                        record_settlement(conn, &outbox, &recorded, &settled, reconciliation)
                    })
                    .await?;
                self.outbox.wake();
                Ok(())
            }
            Err(error) => {
                tracing::warn!(payment_id = %payment.id, gateway = gateway.name(), operation, attempts, %error, "the provider did not answer: asked again later");
                Ok(())
            }
        }
    }

    /// Forgets the notifications whose signatures have long been too old to
    /// verify (twice the tolerance, so that a slow request still finds the
    /// record of the notification it replays); returns how many.
    pub async fn prune_notifications(&self) -> Result<usize, PaymentError> {
        let before = chrono::Utc::now().timestamp() - 2 * TOLERANCE_SECS;
        self.db
            .write_alone(move |conn| Ok(repository::prune_notifications(conn, before)?))
            .await
    }
}

/// How many payments one round of provider work takes.
pub const PROVIDER_WORK_BATCH: i64 = 50;

/// When to ask a provider again after `attempts` tries: 2 s, 4 s, 8 s, ...
/// up to an hour.
fn backoff(attempts: i32) -> chrono::Duration {
    let exponent = u32::try_from(attempts.clamp(1, 12)).unwrap_or(12);
    chrono::Duration::seconds((1_i64 << exponent).min(3_600))
}

/// A provider's answer to a query, a close or a refund.
#[derive(Debug)]
enum Settled {
    Query(TradeState),
    Close(Closed),
    Refund(RefundState),
}

/// Records what a provider answered, in one transaction with its event.
fn record_settlement(
    conn: &mut AnyConnection,
    outbox: &Outbox,
    payment: &Payment,
    settled: &Settled,
    reconciliation: Reconciliation,
) -> Result<(), PaymentError> {
    let now = clock::now();
    match settled {
        // Applied through `apply_paid`, which asks the order context first.
        Settled::Query(TradeState::Paid { .. }) => {}
        // Unpaid at its deadline, or closed at the provider already: the
        // payment is closed (and, when the provider closed it, nothing more is
        // owed it; otherwise the close is due at once).
        Settled::Query(state @ (TradeState::Unpaid | TradeState::Closed)) => {
            let closed_there = *state == TradeState::Closed;
            if closed_there || now >= payment.expires_at {
                let closed = repository::transition(
                    conn,
                    &payment.id,
                    PaymentStatus::Pending,
                    PaymentStatus::Closed,
                    None,
                    now,
                )?;
                if closed && closed_there {
                    repository::provider_work_done(conn, &payment.id, PaymentStatus::Closed)?;
                }
            } else {
                repository::schedule_provider_work(
                    conn,
                    &payment.id,
                    PaymentStatus::Pending,
                    reconciliation.next_query(now, payment.expires_at),
                )?;
            }
        }
        Settled::Close(Closed::Closed) => {
            repository::provider_work_done(conn, &payment.id, PaymentStatus::Closed)?;
        }
        // The customer paid before the close: the money must go back (the
        // refund becomes due at once).
        Settled::Close(Closed::AlreadyPaid { transaction_id }) => {
            if repository::transition(
                conn,
                &payment.id,
                PaymentStatus::Closed,
                PaymentStatus::RefundRequired,
                Some(transaction_id),
                now,
            )? {
                tracing::warn!(payment_id = %payment.id, order_id = %payment.order_id, "paid before its trade was closed: marked for refund");
            }
        }
        // Still processing: the due time already moved forward.
        Settled::Refund(RefundState::Processing) => {}
        Settled::Refund(RefundState::Refunded) => {
            if repository::transition(
                conn,
                &payment.id,
                PaymentStatus::RefundRequired,
                PaymentStatus::Refunded,
                None,
                now,
            )? {
                outbox.publish(
                    conn,
                    &PaymentRefunded {
                        payment_id: payment.id.to_string(),
                        order_id: payment.order_id.clone(),
                        amount: payment.amount.minor(),
                        currency: payment.amount.currency().to_string(),
                        refund_id: payment.refund_id(),
                    },
                )?;
                tracing::info!(payment_id = %payment.id, order_id = %payment.order_id, "payment refunded");
                metrics::counter!("shop_payments_refunded_total").increment(1);
            }
        }
    }
    Ok(())
}

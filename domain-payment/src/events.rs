//! How the payment context reacts to other contexts' events.

use shared_kernel::clock;
use shared_kernel::db::AnyConnection;
use shared_kernel::events::{EventEnvelope, IntegrationEvent, OrderCancelled, OrderPaymentRefused};
use shared_kernel::outbox::EventHandler;

use crate::model::{Applied, PaymentId, PaymentOutcome, PaymentStatus};
use crate::repository;

/// Marks for refund a payment whose order refused it (cancelled or already paid).
#[derive(Debug, Clone, Copy, Default)]
pub struct Refunds;

impl Refunds {
    pub const NAME: &'static str = "payment.refunds";
    pub const EVENTS: &'static [&'static str] = &[OrderPaymentRefused::TYPE];
}

impl EventHandler for Refunds {
    fn handle(&self, conn: &mut AnyConnection, event: &EventEnvelope) -> anyhow::Result<()> {
        let refused: OrderPaymentRefused = event.decode()?;
        let id = PaymentId::from(refused.payment_id);
        let Some(payment) = repository::find(conn, &id)? else {
            anyhow::bail!(
                "order {} refused payment {id}, which does not exist",
                refused.order_id
            );
        };
        match payment.status.apply(PaymentOutcome::SuccessRefused) {
            Ok(Applied::Changed(PaymentStatus::RefundRequired)) => {
                repository::transition(
                    conn,
                    &id,
                    payment.status,
                    PaymentStatus::RefundRequired,
                    None,
                    clock::now(),
                )?;
                tracing::warn!(payment_id = %id, order_id = %refused.order_id, reason = ?refused.reason, "payment marked for refund");
            }
            Ok(_) => {}
            Err(illegal) => anyhow::bail!("payment {id} cannot be marked for refund: {illegal}"),
        }
        Ok(())
    }
}

/// Closes the payments of an order that was cancelled (by its customer, or
/// because it expired) before they were paid: their checkout stops offering
/// Pay at once, and the provider work of closing each trade becomes due (a
/// success that still arrives is then refunded).
#[derive(Debug, Clone, Copy, Default)]
pub struct TradeClosing;

impl TradeClosing {
    pub const NAME: &'static str = "payment.trade-closing";
    pub const EVENTS: &'static [&'static str] = &[OrderCancelled::TYPE];
}

impl EventHandler for TradeClosing {
    fn handle(&self, conn: &mut AnyConnection, event: &EventEnvelope) -> anyhow::Result<()> {
        let cancelled: OrderCancelled = event.decode()?;
        for payment in repository::payable_for_order(conn, &cancelled.order_id)? {
            if let Ok(Applied::Changed(closed)) = payment.status.apply(PaymentOutcome::Close)
                && repository::transition(
                    conn,
                    &payment.id,
                    payment.status,
                    closed,
                    None,
                    clock::now(),
                )?
            {
                tracing::info!(payment_id = %payment.id, order_id = %cancelled.order_id, "payment closed: its order was cancelled");
            }
        }
        Ok(())
    }
}

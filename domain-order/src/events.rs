//! How the order context reacts to other contexts' events.

use shared_kernel::clock;
use shared_kernel::db::AnyConnection;
use shared_kernel::events::{
    EventEnvelope, IntegrationEvent, OrderPaid, OrderPaymentRefused, PaymentSucceeded,
    RefusalReason,
};
use shared_kernel::outbox::{EventHandler, Outbox};

use crate::model::{OrderEvent, OrderId, OrderStatus};
use crate::repository;

/// Pays orders when their payment succeeds. A success for an order that can
/// no longer take it (cancelled, or paid by another payment) is refused, so
/// that the payment context marks the money for refund.
#[derive(Debug, Clone)]
pub struct PaymentOutcomes {
    outbox: Outbox,
}

impl PaymentOutcomes {
    pub const NAME: &'static str = "order.payment-outcomes";
    pub const EVENTS: &'static [&'static str] = &[PaymentSucceeded::TYPE];

    pub fn new(outbox: Outbox) -> Self {
        Self { outbox }
    }
}

impl EventHandler for PaymentOutcomes {
    fn handle(&self, conn: &mut AnyConnection, event: &EventEnvelope) -> anyhow::Result<()> {
        let paid: PaymentSucceeded = event.decode()?;
        let id = OrderId::from(paid.order_id.clone());
        if repository::apply(
            conn,
            &id,
            OrderEvent::PaymentSucceeded,
            clock::now(),
            Some(&paid.payment_id),
        )?
        .is_some()
        {
            tracing::info!(order_id = %id, payment_id = %paid.payment_id, "order paid");
            metrics::counter!("shop_orders_paid_total").increment(1);
            self.outbox.publish(
                conn,
                &OrderPaid {
                    order_id: paid.order_id,
                    payment_id: paid.payment_id,
                    amount: paid.amount,
                    currency: paid.currency,
                },
            )?;
            return Ok(());
        }
        let Some(order) = repository::find(conn, &id)? else {
            anyhow::bail!(
                "payment {} succeeded for an order that does not exist: {id}",
                paid.payment_id
            );
        };
        let reason = match order.status {
            OrderStatus::Paid if order.payment_id.as_deref() == Some(paid.payment_id.as_str()) => {
                return Ok(());
            }
            OrderStatus::Paid => RefusalReason::AlreadyPaid,
            OrderStatus::Cancelled(_) => RefusalReason::OrderCancelled,
            OrderStatus::PendingPayment => {
                anyhow::bail!("order {id} is pending yet could not be paid")
            }
        };
        tracing::warn!(order_id = %id, payment_id = %paid.payment_id, ?reason, "payment refused: it must be refunded");
        self.outbox.publish(
            conn,
            &OrderPaymentRefused {
                order_id: paid.order_id,
                payment_id: paid.payment_id,
                reason,
            },
        )?;
        Ok(())
    }
}

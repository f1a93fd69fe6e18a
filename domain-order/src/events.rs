//! How the order context reacts to other contexts' events: each handler
//! decodes the event and calls the context's use case, in the delivery's
//! transaction.

use shared_kernel::messaging::outbox::{EventHandler, Outbox};
use shared_kernel::model::events::{EventEnvelope, IntegrationEvent, PaymentSucceeded};
use shared_kernel::storage::db::AnyConnection;

use crate::service;

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
        service::record_payment_success(conn, &self.outbox, &paid)?;
        Ok(())
    }
}

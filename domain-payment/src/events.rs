//! How the payment context reacts to other contexts' events: each handler
//! decodes the event and calls the context's use case, in the delivery's
//! transaction.

use shared_kernel::messaging::outbox::EventHandler;
use shared_kernel::model::events::{
    EventEnvelope, IntegrationEvent, OrderCancelled, OrderPaymentRefused,
};
use shared_kernel::storage::db::AnyConnection;

use crate::service;

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
        service::mark_for_refund(conn, &refused)?;
        Ok(())
    }
}

/// Closes the payments of an order that was cancelled (by its customer, or
/// because it expired) before they were paid.
#[derive(Debug, Clone, Copy, Default)]
pub struct TradeClosing;

impl TradeClosing {
    pub const NAME: &'static str = "payment.trade-closing";
    pub const EVENTS: &'static [&'static str] = &[OrderCancelled::TYPE];
}

impl EventHandler for TradeClosing {
    fn handle(&self, conn: &mut AnyConnection, event: &EventEnvelope) -> anyhow::Result<()> {
        let cancelled: OrderCancelled = event.decode()?;
        service::close_for_cancelled_order(conn, &cancelled.order_id)?;
        Ok(())
    }
}

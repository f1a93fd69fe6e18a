//! How the catalog reacts to other contexts' events: the handler decodes
//! the events and calls the reservation use cases ([`reservations`]), in
//! the delivery's transaction.

use shared_kernel::messaging::outbox::EventHandler;
use shared_kernel::model::events::{
    EventEnvelope, IntegrationEvent, OrderCancelled, OrderPaid, OrderPlaced,
};
use shared_kernel::storage::db::AnyConnection;

use crate::service::reservations;

/// Keeps stock reservations in step with their orders: placed orders confirm
/// them, paid orders sell them, cancelled orders give their stock back.
#[derive(Debug, Clone, Copy, Default)]
pub struct StockReservations;

impl StockReservations {
    /// The subscriber's stable name (it keys its delivery rows).
    pub const NAME: &'static str = "product.stock-reservations";
    pub const EVENTS: &'static [&'static str] =
        &[OrderPlaced::TYPE, OrderPaid::TYPE, OrderCancelled::TYPE];
}

impl EventHandler for StockReservations {
    /// A batch in three steps, each in as few statements as it takes:
    /// confirm every placed order's reservation, sell the paid ones, then
    /// give back the stock of every cancelled one. (An order is placed before
    /// it is paid or cancelled, and never both, so the steps' order is the
    /// events' order.)
    fn handle_batch(
        &self,
        conn: &mut AnyConnection,
        events: &[EventEnvelope],
    ) -> anyhow::Result<()> {
        let mut placed = Vec::new();
        let mut paid = Vec::new();
        let mut cancelled = Vec::new();
        for event in events {
            if event.is::<OrderPlaced>() {
                placed.push(event.decode::<OrderPlaced>()?.order_id);
            } else if event.is::<OrderPaid>() {
                paid.push(event.decode::<OrderPaid>()?.order_id);
            } else if event.is::<OrderCancelled>() {
                cancelled.push(event.decode::<OrderCancelled>()?.order_id);
            }
        }
        if !placed.is_empty() {
            reservations::confirm_reservations(conn, &ids(&placed))?;
        }
        for order in &paid {
            reservations::sell_reservation(conn, order)?;
        }
        if !cancelled.is_empty() {
            reservations::release_reservations(conn, &ids(&cancelled))?;
        }
        Ok(())
    }

    fn handle(&self, conn: &mut AnyConnection, event: &EventEnvelope) -> anyhow::Result<()> {
        self.handle_batch(conn, std::slice::from_ref(event))
    }
}

fn ids(orders: &[String]) -> Vec<&str> {
    orders.iter().map(String::as_str).collect()
}

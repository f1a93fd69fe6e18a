//! How the catalog reacts to other contexts' events.

use shared_kernel::clock;
use shared_kernel::db::AnyConnection;
use shared_kernel::events::{
    EventEnvelope, IntegrationEvent, OrderCancelled, OrderPaid, OrderPlaced,
};
use shared_kernel::outbox::EventHandler;

use crate::model::ReservationStatus;
use crate::reservation_repository as reservations;

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
    /// confirm every placed order's reservation in one UPDATE, sell the paid
    /// ones, then give back the stock of every cancelled one, one UPDATE per
    /// product, in product order. (An order is placed before it is paid or
    /// cancelled, and never both, so the steps' order is the events' order.)
    fn handle_batch(
        &self,
        conn: &mut AnyConnection,
        events: &[EventEnvelope],
    ) -> anyhow::Result<()> {
        let now = clock::now();
        let mut placed = Vec::new();
        let mut cancelled = Vec::new();
        for event in events {
            if event.is::<OrderPlaced>() {
                placed.push(event.decode::<OrderPlaced>()?.order_id);
            } else if event.is::<OrderCancelled>() {
                cancelled.push(event.decode::<OrderCancelled>()?.order_id);
            }
        }
        if !placed.is_empty() {
            let ids: Vec<&str> = placed.iter().map(String::as_str).collect();
            reservations::confirm_all(conn, &ids, now)?;
        }
        for event in events.iter().filter(|e| e.is::<OrderPaid>()) {
            self.handle(conn, event)?;
        }
        if !cancelled.is_empty() {
            let ids: Vec<&str> = cancelled.iter().map(String::as_str).collect();
            let released = reservations::release_all(conn, &ids, now)?;
            tracing::info!(orders = ids.len(), released, "reserved stock released");
        }
        Ok(())
    }

    fn handle(&self, conn: &mut AnyConnection, event: &EventEnvelope) -> anyhow::Result<()> {
        let now = clock::now();
        if event.is::<OrderPlaced>() {
            let placed: OrderPlaced = event.decode()?;
            reservations::confirm(conn, &placed.order_id, now)?;
        } else if event.is::<OrderPaid>() {
            let paid: OrderPaid = event.decode()?;
            match reservations::sell(conn, &paid.order_id, now)? {
                Some(ReservationStatus::Sold) => {
                    tracing::info!(order_id = %paid.order_id, "reserved stock sold")
                }
                other => tracing::error!(
                    order_id = %paid.order_id,
                    reservation = ?other,
                    "a paid order's stock was not reserved; check the stock of its products"
                ),
            }
        } else if event.is::<OrderCancelled>() {
            let cancelled: OrderCancelled = event.decode()?;
            if reservations::release(conn, &cancelled.order_id, now)? {
                tracing::info!(order_id = %cancelled.order_id, "reserved stock released");
            }
        }
        Ok(())
    }
}

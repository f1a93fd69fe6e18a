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

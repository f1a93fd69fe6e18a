//! The product context's implementation of the [`Inventory`] port: it calls
//! the reservation use cases ([`Reservations`]) and speaks the port's terms.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use shared_kernel::model::ports::{
    Inventory, PortError, ProductSnapshot, ReservationLine, ReserveError, ReservedLine,
};

use crate::model::ProductId;
use crate::service::Reservations;

/// Stock reservations backed by the catalog's tables.
#[derive(Debug, Clone)]
pub struct ProductInventory {
    reservations: Reservations,
}

impl ProductInventory {
    pub fn new(reservations: Reservations) -> Self {
        Self { reservations }
    }
}

#[async_trait]
impl Inventory for ProductInventory {
    async fn products(&self, product_ids: &[String]) -> Result<Vec<ProductSnapshot>, PortError> {
        let ids: Vec<ProductId> = product_ids.iter().cloned().map(ProductId::from).collect();
        let found = self.reservations.products(ids).await?;
        Ok(found
            .into_iter()
            .map(|p| ProductSnapshot {
                product_id: p.id.into_string(),
                name: p.name.as_str().to_owned(),
                price: p.price,
                stock: p.stock.units(),
            })
            .collect())
    }

    async fn reserve(
        &self,
        reservation_id: &str,
        lines: &[ReservationLine],
        hold_until: DateTime<Utc>,
    ) -> Result<Vec<ReservedLine>, ReserveError> {
        self.reservations
            .reserve(reservation_id, lines, hold_until)
            .await
    }

    async fn release(&self, reservation_id: &str) -> Result<(), PortError> {
        Ok(self.reservations.release(reservation_id).await?)
    }
}

//! The product context's implementation of the [`Inventory`] port.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use shared_kernel::clock;
use shared_kernel::db::{Db, DbError, write_transaction};
use shared_kernel::ports::{
    Inventory, PortError, ProductSnapshot, ReservationLine, ReserveError, ReservedLine,
};

use crate::model::ProductId;
use crate::repository;
use crate::reservation_repository::{self as reservations, ReserveFailure};

/// Stock reservations backed by the catalog's tables.
#[derive(Debug, Clone)]
pub struct ProductInventory {
    db: Db,
}

impl ProductInventory {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Releases reservations whose order never arrived: held (never
    /// confirmed by `OrderPlaced`) for longer than `grace` past their hold.
    /// Returns how many were released.
    pub async fn release_abandoned(&self, grace: Duration) -> Result<usize, DbError> {
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        self.db
            .run(move |conn| {
                write_transaction(conn, |conn| {
                    let now = clock::now();
                    let cutoff = now.checked_sub_signed(grace).unwrap_or(now);
                    let ids = reservations::abandoned(conn, cutoff, 100)?;
                    for id in &ids {
                        tracing::warn!(reservation_id = %id, "releasing a reservation whose order never arrived");
                        reservations::release(conn, id, now)?;
                    }
                    Ok::<_, DbError>(ids.len())
                })
            })
            .await
    }
}

#[async_trait]
impl Inventory for ProductInventory {
    async fn products(&self, product_ids: &[String]) -> Result<Vec<ProductSnapshot>, PortError> {
        let ids: Vec<ProductId> = product_ids.iter().cloned().map(ProductId::from).collect();
        let found = self
            .db
            .run(move |conn| {
                let mut found = Vec::with_capacity(ids.len());
                for id in &ids {
                    if let Some(product) = repository::find(conn, id)? {
                        found.push(product);
                    }
                }
                Ok::<_, DbError>(found)
            })
            .await?;
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
        // Two first reservations of one id can race on PostgreSQL; the loser
        // hits the primary key, rolls back, and the second try finds the winner's.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (id, requested) = (reservation_id.to_owned(), lines.to_vec());
            let outcome = self
                .db
                .run(move |conn| {
                    write_transaction(conn, |conn| {
                        reservations::reserve(
                            conn,
                            &id,
                            &requested,
                            hold_until.naive_utc(),
                            clock::now(),
                        )
                    })
                })
                .await;
            match outcome {
                Ok(reserved) => return Ok(reserved),
                Err(ReserveFailure::Db(error)) if error.is_unique_violation() && attempt < 3 => {
                    continue;
                }
                Err(ReserveFailure::Db(error)) => return Err(error.into()),
                Err(ReserveFailure::Refused(refusal)) => return Err(refusal),
            }
        }
    }

    async fn release(&self, reservation_id: &str) -> Result<(), PortError> {
        let id = reservation_id.to_owned();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let id = id.clone();
            let outcome = self
                .db
                .run(move |conn| {
                    write_transaction(conn, |conn| {
                        reservations::release(conn, &id, clock::now()).map_err(DbError::from)
                    })
                })
                .await;
            match outcome {
                Ok(_) => return Ok(()),
                Err(error) if error.is_unique_violation() && attempt < 3 => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }
}

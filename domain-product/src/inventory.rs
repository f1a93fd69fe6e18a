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
        let outcome = retry_lost_race(
            || {
                let (id, requested) = (reservation_id.to_owned(), lines.to_vec());
                self.db.run(move |conn| {
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
            },
            |failure| matches!(failure, ReserveFailure::Db(error) if error.is_unique_violation()),
        )
        .await;
        match outcome {
            Ok(reserved) => Ok(reserved),
            Err(ReserveFailure::Db(error)) => Err(error.into()),
            Err(ReserveFailure::Refused(refusal)) => Err(refusal),
        }
    }

    async fn release(&self, reservation_id: &str) -> Result<(), PortError> {
        retry_lost_race(
            || {
                let id = reservation_id.to_owned();
                self.db.run(move |conn| {
                    write_transaction(conn, |conn| {
                        reservations::release(conn, &id, clock::now()).map_err(DbError::from)
                    })
                })
            },
            DbError::is_unique_violation,
        )
        .await?;
        Ok(())
    }
}

/// Runs `work` again, up to three tries in all, when it lost a race: two
/// first reservations (or releases) of one id can meet on PostgreSQL, and
/// the loser hits the primary key and rolls back; its next try finds the
/// winner's row and answers as the idempotent call it is.
async fn retry_lost_race<T, E, Fut>(
    mut work: impl FnMut() -> Fut,
    lost_race: impl Fn(&E) -> bool,
) -> Result<T, E>
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut tries = 1;
    loop {
        match work().await {
            Err(error) if tries < 3 && lost_race(&error) => tries += 1,
            outcome => return outcome,
        }
    }
}

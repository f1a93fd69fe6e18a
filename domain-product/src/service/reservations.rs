//! The stock reservations' use cases: what the `Inventory` port offers other
//! contexts ([`Reservations`]), and the reactions to the order context's
//! events, each in the caller's transaction (the event delivery's). An
//! order's reservation id is its order id.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use shared_kernel::context::Later;
use shared_kernel::messaging::outbox::Outbox;
use shared_kernel::model::clock;
use shared_kernel::model::events::ProductStockLow;
use shared_kernel::model::ports::{OrderLookup, ReservationLine, ReserveError, ReservedLine};
use shared_kernel::storage::db::{AnyConnection, Db, DbError};

use crate::model::{Product, ProductId, ReservationStatus};
use crate::repository;
use crate::reservation_repository::{self as reservations, ReserveFailure};

/// Placed orders keep their stock: their reservations, held until now, are
/// confirmed (no longer released as abandoned). Returns how many were confirmed.
pub fn confirm_reservations(conn: &mut AnyConnection, orders: &[&str]) -> Result<usize, DbError> {
    Ok(reservations::confirm_all(conn, orders, clock::now())?)
}

/// A paid order's stock is sold. Returns the reservation's status after
/// (`Sold`; anything else means the stock was not reserved, and is logged).
pub fn sell_reservation(
    conn: &mut AnyConnection,
    order: &str,
) -> Result<Option<ReservationStatus>, DbError> {
    let status = reservations::sell(conn, order, clock::now())?;
    match status {
        Some(ReservationStatus::Sold) => tracing::info!(order_id = %order, "reserved stock sold"),
        other => tracing::error!(
            order_id = %order,
            reservation = ?other,
            "a paid order's stock was not reserved; check the stock of its products"
        ),
    }
    Ok(status)
}

/// Cancelled orders give their stock back (one UPDATE per product, in
/// product order). Returns how many reservations were released.
pub fn release_reservations(conn: &mut AnyConnection, orders: &[&str]) -> Result<usize, DbError> {
    let released = reservations::release_all(conn, orders, clock::now())?;
    if released > 0 {
        tracing::info!(orders = orders.len(), released, "reserved stock released");
    }
    Ok(released)
}

/// The most abandoned reservations one run of the job looks at.
pub const ABANDONED_BATCH: i64 = 500;

/// The stock use cases behind the `Inventory` port, backed by the catalog's tables.
#[derive(Debug, Clone)]
pub struct Reservations {
    db: Db,
    /// Tells `product.stock_low` when a reservation crosses a threshold.
    outbox: Outbox,
}

impl Reservations {
    pub fn new(db: Db, outbox: Outbox) -> Self {
        Self { db, outbox }
    }

    /// The products among `ids` that exist, as the database has them now.
    pub async fn products(&self, ids: Vec<ProductId>) -> Result<Vec<Product>, DbError> {
        self.db
            .run(move |conn| {
                let mut found = Vec::with_capacity(ids.len());
                for id in &ids {
                    if let Some(product) = repository::find(conn, id)? {
                        found.push(product);
                    }
                }
                Ok::<_, DbError>(found)
            })
            .await
    }

    /// Reserves every line or none, until `hold_until` unless the order's
    /// `OrderPlaced` confirms it first.
    pub async fn reserve(
        &self,
        reservation_id: &str,
        lines: &[ReservationLine],
        hold_until: DateTime<Utc>,
    ) -> Result<Vec<ReservedLine>, ReserveError> {
        // An id no product can have (too long, NUL) never reaches the database.
        let impossible: Vec<String> = lines
            .iter()
            .filter(|l| !ProductId::from(l.product_id.clone()).could_exist())
            .map(|l| l.product_id.clone())
            .collect();
        if !impossible.is_empty() {
            return Err(ReserveError::UnknownProducts(impossible));
        }
        let (id, requested) = (reservation_id.to_owned(), lines.to_vec());
        let products = requested.iter().map(|l| l.product_id.clone()).collect();
        let outbox = self.outbox.clone();
        let outcome = self
            .db
            .write_locking(products, move |conn| {
                let reserved = reservations::reserve(
                    conn,
                    &id,
                    &requested,
                    hold_until.naive_utc(),
                    clock::now(),
                )?;
                // Only a product with a threshold can cross it: an order of
                // products without one publishes nothing here.
                for low in &reserved.low {
                    outbox
                        .publish(
                            conn,
                            &ProductStockLow {
                                product_id: low.product_id.clone(),
                                stock: low.stock,
                                threshold: low.threshold,
                            },
                        )
                        .map_err(DbError::from)?;
                }
                Ok(reserved)
            })
            .await;
        match outcome {
            Ok(reserved) => {
                if !reserved.low.is_empty() {
                    self.outbox.wake();
                }
                Ok(reserved.lines)
            }
            Err(ReserveFailure::Db(error)) => Err(error.into()),
            Err(ReserveFailure::Refused(refusal)) => Err(refusal),
        }
    }

    /// Gives a reservation's stock back (an order that was not placed).
    pub async fn release(&self, reservation_id: &str) -> Result<(), DbError> {
        let id = reservation_id.to_owned();
        // Its products are known only once its lines are read.
        self.db
            .write_alone(move |conn| {
                reservations::release(conn, &id, clock::now()).map_err(DbError::from)
            })
            .await?;
        Ok(())
    }

    /// Releases reservations whose order never arrived: held (never
    /// confirmed by `OrderPlaced`) for longer than `grace` past their hold,
    /// and unknown to the order context. A reservation whose order exists is
    /// kept: its events are on their way (a broker backlog, a process down),
    /// and releasing its stock would sell it twice. So is one whose order
    /// cannot be asked about now (`orders` unreachable, or none configured).
    /// Returns how many were released.
    pub async fn release_abandoned(
        &self,
        grace: Duration,
        orders: Option<&Arc<dyn OrderLookup>>,
    ) -> Result<usize, DbError> {
        let Some(orders) = orders else {
            return Ok(0);
        };
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let now = clock::now();
        let cutoff = now.checked_sub_signed(grace).unwrap_or(now);
        let candidates = self
            .db
            .run(move |conn| {
                Ok::<_, DbError>(reservations::abandoned(conn, cutoff, ABANDONED_BATCH)?)
            })
            .await?;
        let mut abandoned = Vec::new();
        for id in candidates {
            match orders.order(&id).await {
                Ok(None) => abandoned.push(id),
                Ok(Some(_)) => tracing::info!(
                    reservation_id = %id,
                    "a held reservation's order exists: kept until its events arrive"
                ),
                Err(error) => tracing::warn!(
                    reservation_id = %id,
                    %error,
                    "cannot tell whether a held reservation's order exists: kept"
                ),
            }
        }
        if abandoned.is_empty() {
            return Ok(0);
        }
        self.db
            .write_alone(move |conn| {
                for id in &abandoned {
                    tracing::warn!(reservation_id = %id, "releasing a reservation whose order never arrived");
                }
                let ids: Vec<&str> = abandoned.iter().map(String::as_str).collect();
                Ok::<_, DbError>(reservations::release_all(conn, &ids, clock::now())?)
            })
            .await
    }
}

/// Releases, now and then, the reservations whose order never arrived
/// ([`Reservations::release_abandoned`]), asking the order context, through
/// its `OrderLookup` port, which orders exist.
#[derive(Clone)]
pub struct AbandonedReservations {
    reservations: Reservations,
    orders: Later<dyn OrderLookup>,
    grace: Duration,
}

impl AbandonedReservations {
    pub fn new(
        reservations: Reservations,
        orders: Later<dyn OrderLookup>,
        grace: Duration,
    ) -> Self {
        Self {
            reservations,
            orders,
            grace,
        }
    }

    /// One run: how many reservations were released.
    pub async fn release(&self) -> Result<usize, DbError> {
        self.reservations
            .release_abandoned(self.grace, self.orders.get())
            .await
    }
}

//! Stock reservations in the product context's own tables. Every status
//! change is a conditional UPDATE (`... WHERE status IN (sources)`), so that
//! concurrent reactions to the same reservation apply once on every backend.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use shared_kernel::db::{AnyConnection, DbError};
use shared_kernel::money::{Currency, Money};
use shared_kernel::ports::{ReservationLine, ReserveError, ReservedLine, Shortage};

use crate::model::ReservationStatus;
use crate::schema::{
    products, stock_reservation_lines as lines, stock_reservations as reservations,
};

/// Why a reservation was not made; either way the transaction rolls back.
#[derive(Debug, thiserror::Error)]
pub enum ReserveFailure {
    #[error(transparent)]
    Refused(ReserveError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for ReserveFailure {
    fn from(error: diesel::result::Error) -> Self {
        Self::Db(DbError::Query(error))
    }
}

fn status_of(conn: &mut AnyConnection, id: &str) -> QueryResult<Option<ReservationStatus>> {
    let raw: Option<String> = reservations::table
        .find(id)
        .select(reservations::status)
        .first(conn)
        .optional()?;
    Ok(raw.and_then(|s| ReservationStatus::parse(&s)))
}

fn reserved_lines(conn: &mut AnyConnection, id: &str) -> Result<Vec<ReservedLine>, ReserveFailure> {
    let rows: Vec<(String, i64, i64, String)> = lines::table
        .filter(lines::reservation_id.eq(id))
        .order(lines::product_id.asc())
        .select((
            lines::product_id,
            lines::quantity,
            lines::unit_price_minor,
            lines::currency,
        ))
        .load(conn)?;
    rows.into_iter()
        .map(|(product_id, quantity, price, currency)| {
            let currency = Currency::parse(&currency).map_err(|e| {
                DbError::Query(diesel::result::Error::DeserializationError(Box::new(e)))
            })?;
            Ok(ReservedLine {
                product_id,
                quantity,
                unit_price: Money::new(price, currency),
            })
        })
        .collect()
}

/// Reserves every line or none (the caller's transaction rolls back on any error).
pub fn reserve(
    conn: &mut AnyConnection,
    id: &str,
    requested: &[ReservationLine],
    hold_until: NaiveDateTime,
    now: NaiveDateTime,
) -> Result<Vec<ReservedLine>, ReserveFailure> {
    match status_of(conn, id)? {
        Some(ReservationStatus::Released) => {
            return Err(ReserveFailure::Refused(ReserveError::AlreadyReleased));
        }
        Some(_) => return reserved_lines(conn, id),
        None => {}
    }
    // A fixed lock order (by product id) keeps concurrent multi-line reservations free of deadlocks.
    let mut sorted: Vec<&ReservationLine> = requested.iter().collect();
    sorted.sort_by(|a, b| a.product_id.cmp(&b.product_id));

    // Take every line in a savepoint: when one is short, the lines already
    // taken go back before the refusal is explained.
    let taken = conn.transaction::<(), diesel::result::Error, _>(|conn| {
        for line in &sorted {
            let updated = diesel::update(
                products::table
                    .filter(products::id.eq(&line.product_id))
                    .filter(products::stock.ge(line.quantity)),
            )
            .set((
                products::stock.eq(products::stock - line.quantity),
                products::updated_at.eq(now),
            ))
            .execute(conn)?;
            if updated == 0 {
                return Err(diesel::result::Error::RollbackTransaction);
            }
        }
        Ok(())
    });
    match taken {
        Ok(()) => {}
        Err(diesel::result::Error::RollbackTransaction) => {
            return Err(ReserveFailure::Refused(explain_refusal(conn, &sorted)?));
        }
        Err(other) => return Err(other.into()),
    }

    diesel::insert_into(reservations::table)
        .values((
            reservations::id.eq(id),
            reservations::status.eq(ReservationStatus::Held.as_str()),
            reservations::hold_until.eq(hold_until),
            reservations::created_at.eq(now),
            reservations::updated_at.eq(now),
        ))
        .execute(conn)?;
    let ids: Vec<&str> = sorted.iter().map(|l| l.product_id.as_str()).collect();
    let prices: Vec<(String, i64, String)> = products::table
        .filter(products::id.eq_any(&ids))
        .select((products::id, products::price_minor, products::currency))
        .load(conn)?;
    for line in &sorted {
        let Some((_, price, currency)) = prices.iter().find(|(pid, _, _)| *pid == line.product_id)
        else {
            return Err(ReserveFailure::Refused(ReserveError::UnknownProducts(
                vec![line.product_id.clone()],
            )));
        };
        diesel::insert_into(lines::table)
            .values((
                lines::reservation_id.eq(id),
                lines::product_id.eq(&line.product_id),
                lines::quantity.eq(line.quantity),
                lines::unit_price_minor.eq(price),
                lines::currency.eq(currency),
            ))
            .execute(conn)?;
    }
    reserved_lines(conn, id)
}

/// Why a reservation could not take every line: unknown products first, then shortages.
fn explain_refusal(
    conn: &mut AnyConnection,
    requested: &[&ReservationLine],
) -> QueryResult<ReserveError> {
    let ids: Vec<&str> = requested.iter().map(|l| l.product_id.as_str()).collect();
    let stock: Vec<(String, i64)> = products::table
        .filter(products::id.eq_any(&ids))
        .select((products::id, products::stock))
        .load(conn)?;
    let unknown: Vec<String> = requested
        .iter()
        .filter(|l| !stock.iter().any(|(id, _)| *id == l.product_id))
        .map(|l| l.product_id.clone())
        .collect();
    if !unknown.is_empty() {
        return Ok(ReserveError::UnknownProducts(unknown));
    }
    let shortages = requested
        .iter()
        .filter_map(|line| {
            let (_, on_hand) = stock.iter().find(|(id, _)| *id == line.product_id)?;
            (*on_hand < line.quantity).then(|| Shortage {
                product_id: line.product_id.clone(),
                requested: line.quantity,
                available: *on_hand,
            })
        })
        .collect();
    Ok(ReserveError::InsufficientStock(shortages))
}

/// Moves a reservation to `target` when it is in one of the target's source
/// statuses; returns whether it moved. Unknown reservations do not move.
fn transition(
    conn: &mut AnyConnection,
    id: &str,
    target: ReservationStatus,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let sources: Vec<&str> = ReservationStatus::sources(target)
        .iter()
        .map(|s| s.as_str())
        .collect();
    let moved = diesel::update(
        reservations::table
            .filter(reservations::id.eq(id))
            .filter(reservations::status.eq_any(sources)),
    )
    .set((
        reservations::status.eq(target.as_str()),
        reservations::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(moved == 1)
}

/// The order exists: the reservation is no longer at risk of being swept as abandoned.
pub fn confirm(conn: &mut AnyConnection, id: &str, now: NaiveDateTime) -> QueryResult<bool> {
    transition(conn, id, ReservationStatus::Confirmed, now)
}

/// The order was paid: the units are sold for good.
pub fn sell(
    conn: &mut AnyConnection,
    id: &str,
    now: NaiveDateTime,
) -> QueryResult<Option<ReservationStatus>> {
    if transition(conn, id, ReservationStatus::Sold, now)? {
        return Ok(Some(ReservationStatus::Sold));
    }
    status_of(conn, id)
}

/// Gives the units back; returns whether anything came back. Releasing an
/// unknown id records it as released, so that a late reserve takes nothing.
pub fn release(conn: &mut AnyConnection, id: &str, now: NaiveDateTime) -> QueryResult<bool> {
    if transition(conn, id, ReservationStatus::Released, now)? {
        let taken: Vec<(String, i64)> = lines::table
            .filter(lines::reservation_id.eq(id))
            .select((lines::product_id, lines::quantity))
            .order(lines::product_id.asc())
            .load(conn)?;
        for (product_id, quantity) in taken {
            diesel::update(products::table.find(&product_id))
                .set((
                    products::stock.eq(products::stock + quantity),
                    products::updated_at.eq(now),
                ))
                .execute(conn)?;
        }
        return Ok(true);
    }
    if status_of(conn, id)?.is_none() {
        diesel::insert_into(reservations::table)
            .values((
                reservations::id.eq(id),
                reservations::status.eq(ReservationStatus::Released.as_str()),
                reservations::hold_until.eq(now),
                reservations::created_at.eq(now),
                reservations::updated_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(false)
}

/// Held reservations whose hold ended before `cutoff`: their order was never placed.
pub fn abandoned(
    conn: &mut AnyConnection,
    cutoff: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<String>> {
    reservations::table
        .filter(reservations::status.eq(ReservationStatus::Held.as_str()))
        .filter(reservations::hold_until.lt(cutoff))
        .order(reservations::hold_until.asc())
        .select(reservations::id)
        .limit(limit)
        .load(conn)
}

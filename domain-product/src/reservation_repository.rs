//! Stock reservations in the product context's own tables. Every status
//! change is a conditional UPDATE (`... WHERE status IN (sources)`), so that
//! concurrent reactions to the same reservation apply once on every backend.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use shared_kernel::model::money::{Currency, Money};
use shared_kernel::model::ports::{ReservationLine, ReserveError, ReservedLine, Shortage};
use shared_kernel::storage::db::{AnyConnection, DbError};

use crate::model::{ProductStatus, ReservationStatus, fell_below};
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

/// A product whose stock a reservation took below its low-stock threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockLow {
    pub product_id: String,
    pub stock: i64,
    pub threshold: i64,
}

/// What a reservation took, and the thresholds it crossed (none when it
/// was made before: a repeat crosses nothing).
#[derive(Debug, Clone)]
pub struct Reserved {
    pub lines: Vec<ReservedLine>,
    pub low: Vec<StockLow>,
}

/// Reserves every line or none: on an error the caller's unit rolls back
/// whatever was taken. A new reservation costs 2 + L statements for L
/// lines: its row (inserted only when the id is new), one conditional
/// decrement per line that also reads the price it is sold at, and the lines.
pub fn reserve(
    conn: &mut AnyConnection,
    id: &str,
    requested: &[ReservationLine],
    hold_until: NaiveDateTime,
    now: NaiveDateTime,
) -> Result<Reserved, ReserveFailure> {
    let inserted = shared_kernel::insert_ignoring_duplicates!(
        conn,
        reservations::table,
        (
            reservations::id.eq(id),
            reservations::status.eq(ReservationStatus::Held.as_str()),
            reservations::hold_until.eq(hold_until),
            reservations::created_at.eq(now),
            reservations::updated_at.eq(now),
        )
    )?;
    if inserted == 0 {
        // Reserved (or released) before under this id: answer as the first time.
        return match status_of(conn, id)? {
            Some(ReservationStatus::Released) => {
                Err(ReserveFailure::Refused(ReserveError::AlreadyReleased))
            }
            _ => Ok(Reserved {
                lines: reserved_lines(conn, id)?,
                low: Vec::new(),
            }),
        };
    }
    // A fixed lock order (by product id), in every path that locks products,
    // keeps concurrent multi-line reservations and releases free of deadlocks.
    let mut sorted: Vec<&ReservationLine> = requested.iter().collect();
    sorted.sort_by(|a, b| a.product_id.cmp(&b.product_id));

    let mut reserved = Vec::with_capacity(sorted.len());
    let mut low = Vec::new();
    for (i, line) in sorted.iter().enumerate() {
        let taken: Option<(i64, String, i64, Option<i64>)> = shared_kernel::update_returning!(
            conn,
            diesel::update(
                products::table
                    .filter(products::id.eq(&line.product_id))
                    .filter(products::stock.ge(line.quantity))
                    .filter(products::status.eq(ProductStatus::Active.as_str())),
            )
            .set((
                products::stock.eq(products::stock - line.quantity),
                products::updated_at.eq(now),
            )),
            (
                products::price_minor,
                products::currency,
                products::stock,
                products::low_stock_threshold
            ),
            products::table
                .filter(products::id.eq(&line.product_id))
                .select((
                    products::price_minor,
                    products::currency,
                    products::stock,
                    products::low_stock_threshold
                ))
        )?;
        let Some((price, currency, stock_after, threshold)) = taken else {
            // The lines before this one were taken; this one and the rest say why not.
            return Err(ReserveFailure::Refused(explain_refusal(
                conn,
                &sorted[i..],
            )?));
        };
        let currency = Currency::parse(&currency).map_err(|e| {
            DbError::Query(diesel::result::Error::DeserializationError(Box::new(e)))
        })?;
        reserved.push(ReservedLine {
            product_id: line.product_id.clone(),
            quantity: line.quantity,
            unit_price: Money::new(price, currency),
        });
        if let Some(threshold) = fell_below(threshold, stock_after + line.quantity, stock_after) {
            low.push(StockLow {
                product_id: line.product_id.clone(),
                stock: stock_after,
                threshold,
            });
        }
    }
    let currencies: Vec<Currency> = reserved.iter().map(|l| l.unit_price.currency()).collect();
    let rows: Vec<_> = reserved
        .iter()
        .zip(&currencies)
        .map(|(line, currency)| {
            (
                lines::reservation_id.eq(id),
                lines::product_id.eq(line.product_id.as_str()),
                lines::quantity.eq(line.quantity),
                lines::unit_price_minor.eq(line.unit_price.minor()),
                lines::currency.eq(currency.as_str()),
            )
        })
        .collect();
    shared_kernel::insert_rows!(conn, lines::table, rows)?;
    Ok(Reserved {
        lines: reserved,
        low,
    })
}

/// Why a reservation could not take every line: unknown products first,
/// then archived ones, then shortages.
fn explain_refusal(
    conn: &mut AnyConnection,
    requested: &[&ReservationLine],
) -> QueryResult<ReserveError> {
    let ids: Vec<&str> = requested.iter().map(|l| l.product_id.as_str()).collect();
    let stock: Vec<(String, i64, String)> = products::table
        .filter(products::id.eq_any(&ids))
        .select((products::id, products::stock, products::status))
        .load(conn)?;
    let unknown: Vec<String> = requested
        .iter()
        .filter(|l| !stock.iter().any(|(id, _, _)| *id == l.product_id))
        .map(|l| l.product_id.clone())
        .collect();
    if !unknown.is_empty() {
        return Ok(ReserveError::UnknownProducts(unknown));
    }
    let archived: Vec<String> = requested
        .iter()
        .filter(|l| {
            stock.iter().any(|(id, _, status)| {
                *id == l.product_id && status != ProductStatus::Active.as_str()
            })
        })
        .map(|l| l.product_id.clone())
        .collect();
    if !archived.is_empty() {
        return Ok(ReserveError::ArchivedProducts(archived));
    }
    let shortages = requested
        .iter()
        .filter_map(|line| {
            let (_, on_hand, _) = stock.iter().find(|(id, _, _)| *id == line.product_id)?;
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
    Ok(release_all(conn, &[id], now)? == 1)
}

/// Gives back the units of several reservations at once; returns how many
/// reservations gave units back. The stock of each product is restored by
/// one UPDATE, products in id order (the lock order of every path), so that
/// a release of many orders cannot deadlock with reservations.
pub fn release_all(
    conn: &mut AnyConnection,
    ids: &[&str],
    now: NaiveDateTime,
) -> QueryResult<usize> {
    let mut released: Vec<&str> = Vec::with_capacity(ids.len());
    for id in ids {
        if transition(conn, id, ReservationStatus::Released, now)? {
            released.push(id);
        }
    }
    if released.len() < ids.len() {
        // Ids that name no reservation are recorded as released.
        let known: Vec<String> = reservations::table
            .filter(reservations::id.eq_any(ids))
            .select(reservations::id)
            .load(conn)?;
        let unknown: Vec<_> = ids
            .iter()
            .filter(|id| !known.iter().any(|k| k == *id))
            .map(|id| {
                (
                    reservations::id.eq(*id),
                    reservations::status.eq(ReservationStatus::Released.as_str()),
                    reservations::hold_until.eq(now),
                    reservations::created_at.eq(now),
                    reservations::updated_at.eq(now),
                )
            })
            .collect();
        if !unknown.is_empty() {
            shared_kernel::insert_ignoring_duplicates!(conn, reservations::table, &unknown)?;
        }
    }
    if released.is_empty() {
        return Ok(0);
    }
    let taken: Vec<(String, i64)> = lines::table
        .filter(lines::reservation_id.eq_any(&released))
        .select((lines::product_id, lines::quantity))
        .load(conn)?;
    let mut per_product: BTreeMap<String, i64> = BTreeMap::new();
    for (product_id, quantity) in taken {
        *per_product.entry(product_id).or_default() += quantity;
    }
    for (product_id, quantity) in per_product {
        diesel::update(products::table.find(&product_id))
            .set((
                products::stock.eq(products::stock + quantity),
                products::updated_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(released.len())
}

/// Confirms several held reservations in one statement: their orders exist.
pub fn confirm_all(
    conn: &mut AnyConnection,
    ids: &[&str],
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        reservations::table
            .filter(reservations::id.eq_any(ids))
            .filter(reservations::status.eq(ReservationStatus::Held.as_str())),
    )
    .set((
        reservations::status.eq(ReservationStatus::Confirmed.as_str()),
        reservations::updated_at.eq(now),
    ))
    .execute(conn)
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

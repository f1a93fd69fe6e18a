//! The diesel adapter of the order context. Functions take the caller's
//! connection, so that an order's rows and its events commit together.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use shared_kernel::model::money::{Currency, Money};
use shared_kernel::storage::db::AnyConnection;
use shared_kernel::web::pagination::PageRequest;

use shared_kernel::model::id::uuid_v7_floor;

use crate::model::{CancelReason, Order, OrderEvent, OrderFilter, OrderId, OrderLine, OrderStatus};
use crate::schema::{order_idempotency_keys as keys, order_lines, orders};

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = orders)]
struct OrderRow {
    id: String,
    user_id: String,
    status: String,
    cancel_reason: Option<String>,
    amount_minor: i64,
    currency: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    expires_at: NaiveDateTime,
    paid_at: Option<NaiveDateTime>,
    cancelled_at: Option<NaiveDateTime>,
    payment_id: Option<String>,
}

fn corrupt(what: String) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(what.into())
}

impl OrderRow {
    fn into_domain(self, lines: Vec<(String, i64, i64)>) -> QueryResult<Order> {
        let currency = Currency::parse(&self.currency).map_err(|e| corrupt(e.to_string()))?;
        let status = OrderStatus::from_stored(&self.status, self.cancel_reason.as_deref())
            .ok_or_else(|| {
                corrupt(format!(
                    "order {} has status {:?}/{:?}",
                    self.id, self.status, self.cancel_reason
                ))
            })?;
        Ok(Order {
            id: OrderId::from(self.id),
            user_id: self.user_id,
            lines: lines
                .into_iter()
                .map(|(product_id, quantity, price)| OrderLine {
                    product_id,
                    quantity,
                    unit_price: Money::new(price, currency),
                })
                .collect(),
            amount: Money::new(self.amount_minor, currency),
            status,
            created_at: self.created_at,
            updated_at: self.updated_at,
            expires_at: self.expires_at,
            paid_at: self.paid_at,
            cancelled_at: self.cancelled_at,
            payment_id: self.payment_id,
        })
    }
}

pub fn insert(conn: &mut AnyConnection, order: &Order) -> QueryResult<()> {
    diesel::insert_into(orders::table)
        .values((
            orders::id.eq(order.id.as_str()),
            orders::user_id.eq(&order.user_id),
            orders::status.eq(order.status.as_str()),
            orders::cancel_reason.eq(order.status.cancel_reason().map(CancelReason::as_str)),
            orders::amount_minor.eq(order.amount.minor()),
            orders::currency.eq(order.amount.currency().as_str()),
            orders::created_at.eq(order.created_at),
            orders::updated_at.eq(order.updated_at),
            orders::expires_at.eq(order.expires_at),
        ))
        .execute(conn)?;
    let lines: Vec<_> = (1..)
        .zip(&order.lines)
        .map(|(line_no, line): (i32, _)| {
            (
                order_lines::order_id.eq(order.id.as_str()),
                order_lines::line_no.eq(line_no),
                order_lines::product_id.eq(line.product_id.as_str()),
                order_lines::quantity.eq(line.quantity),
                order_lines::unit_price_minor.eq(line.unit_price.minor()),
            )
        })
        .collect();
    shared_kernel::insert_rows!(conn, order_lines::table, lines)?;
    Ok(())
}

fn lines_of(
    conn: &mut AnyConnection,
    ids: &[&str],
) -> QueryResult<Vec<(String, String, i64, i64)>> {
    order_lines::table
        .filter(order_lines::order_id.eq_any(ids))
        .order((order_lines::order_id.asc(), order_lines::line_no.asc()))
        .select((
            order_lines::order_id,
            order_lines::product_id,
            order_lines::quantity,
            order_lines::unit_price_minor,
        ))
        .load(conn)
}

fn assemble(conn: &mut AnyConnection, rows: Vec<OrderRow>) -> QueryResult<Vec<Order>> {
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let mut lines = lines_of(conn, &ids)?;
    rows.into_iter()
        .map(|row| {
            let (mine, rest): (Vec<_>, Vec<_>) = lines
                .drain(..)
                .partition(|(order_id, ..)| *order_id == row.id);
            lines = rest;
            row.into_domain(mine.into_iter().map(|(_, p, q, u)| (p, q, u)).collect())
        })
        .collect()
}

pub fn find(conn: &mut AnyConnection, id: &OrderId) -> QueryResult<Option<Order>> {
    if !id.could_exist() {
        return Ok(None);
    }
    let row = orders::table
        .find(id.as_str())
        .select(OrderRow::as_select())
        .first(conn)
        .optional()?;
    Ok(assemble(conn, row.into_iter().collect())?.pop())
}

/// The customer an order belongs to.
pub fn owner(conn: &mut AnyConnection, id: &OrderId) -> QueryResult<Option<String>> {
    if !id.could_exist() {
        return Ok(None);
    }
    orders::table
        .find(id.as_str())
        .select(orders::user_id)
        .first(conn)
        .optional()
}

/// One page of the orders `filter` selects, oldest first or newest first
/// (by id, which is time-ordered: a page never moves while orders are
/// placed, since new ones come after every id seen), plus one extra row.
pub fn search(
    conn: &mut AnyConnection,
    filter: &OrderFilter,
    newest_first: bool,
    page: &PageRequest,
) -> QueryResult<Vec<Order>> {
    let mut query = orders::table.select(OrderRow::as_select()).into_boxed();
    if let Some(user) = &filter.user_id {
        query = query.filter(orders::user_id.eq(user.clone()));
    }
    if !filter.statuses.is_empty() {
        query = query.filter(orders::status.eq_any(filter.statuses.clone()));
    }
    if let Some(product) = &filter.product_id {
        query = query.filter(
            orders::id.eq_any(
                order_lines::table
                    .filter(order_lines::product_id.eq(product.clone()))
                    .select(order_lines::order_id),
            ),
        );
    }
    // An order's id is a UUIDv7 made when it was created: bounding the id
    // as well (a minute wider than the times, for clocks read apart) turns
    // a time range into a range of the primary key, a bounded index read;
    // the times themselves stay the exact filter.
    let slack = chrono::Duration::minutes(1);
    if let Some(from) = filter.created_from {
        query = query
            .filter(orders::created_at.ge(from))
            .filter(orders::id.ge(uuid_v7_floor(from - slack)));
    }
    if let Some(to) = filter.created_to {
        query = query
            .filter(orders::created_at.lt(to))
            .filter(orders::id.lt(uuid_v7_floor(to + slack)));
    }
    query = match (&page.after, newest_first) {
        (Some(after), true) => query.filter(orders::id.lt(after.clone())),
        (Some(after), false) => query.filter(orders::id.gt(after.clone())),
        (None, _) => query,
    };
    query = if newest_first {
        query.order(orders::id.desc())
    } else {
        query.order(orders::id.asc())
    };
    let rows = query.limit(page.fetch_size()).load(conn)?;
    assemble(conn, rows)
}

/// Applies `event` to a pending order, in one conditional UPDATE, so that of
/// several concurrent changes (a user's cancel, the expiry sweep, a payment,
/// on any number of instances) exactly one wins. Returns the new status, or
/// `None` when the order was not pending.
pub fn apply(
    conn: &mut AnyConnection,
    id: &OrderId,
    event: OrderEvent,
    now: NaiveDateTime,
    payment_id: Option<&str>,
) -> QueryResult<Option<OrderStatus>> {
    let Ok(next) = OrderStatus::PendingPayment.transition(event) else {
        return Ok(None);
    };
    let pending = orders::table
        .filter(orders::id.eq(id.as_str()))
        .filter(orders::status.eq(OrderStatus::PendingPayment.as_str()));
    let updated = match next {
        OrderStatus::Paid => diesel::update(pending)
            .set((
                orders::status.eq(next.as_str()),
                orders::paid_at.eq(Some(now)),
                orders::payment_id.eq(payment_id),
                orders::updated_at.eq(now),
            ))
            .execute(conn)?,
        _ => diesel::update(pending)
            .set((
                orders::status.eq(next.as_str()),
                orders::cancel_reason.eq(next.cancel_reason().map(CancelReason::as_str)),
                orders::cancelled_at.eq(Some(now)),
                orders::updated_at.eq(now),
            ))
            .execute(conn)?,
    };
    Ok((updated == 1).then_some(next))
}

/// Pending orders whose payment time ran out by `now`, oldest first.
pub fn due_for_expiry(
    conn: &mut AnyConnection,
    now: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<OrderId>> {
    let ids: Vec<String> = orders::table
        .filter(orders::status.eq(OrderStatus::PendingPayment.as_str()))
        .filter(orders::expires_at.le(now))
        .order(orders::expires_at.asc())
        .select(orders::id)
        .limit(limit)
        .load(conn)?;
    Ok(ids.into_iter().map(OrderId::from).collect())
}

/// Locks up to `limit` pending orders whose payment time ran out by `now`,
/// in id order; on PostgreSQL rows another instance holds are skipped.
pub fn lock_due_for_expiry(
    conn: &mut AnyConnection,
    now: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<OrderId>> {
    let due = orders::table
        .filter(orders::status.eq(OrderStatus::PendingPayment.as_str()))
        .filter(orders::expires_at.le(now))
        .order(orders::id.asc())
        .select(orders::id)
        .limit(limit);
    let ids: Vec<String> = shared_kernel::load_skip_locked!(conn, due)?;
    Ok(ids.into_iter().map(OrderId::from).collect())
}

/// Cancels pending orders locked by [`lock_due_for_expiry`], in one statement.
/// Every one of them must change: anything else rolls the unit back.
pub fn cancel_locked(
    conn: &mut AnyConnection,
    ids: &[OrderId],
    reason: CancelReason,
    now: NaiveDateTime,
) -> QueryResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let raw: Vec<&str> = ids.iter().map(OrderId::as_str).collect();
    let updated = diesel::update(
        orders::table
            .filter(orders::id.eq_any(&raw))
            .filter(orders::status.eq(OrderStatus::PendingPayment.as_str())),
    )
    .set((
        orders::status.eq(OrderStatus::Cancelled(reason).as_str()),
        orders::cancel_reason.eq(Some(reason.as_str())),
        orders::cancelled_at.eq(Some(now)),
        orders::updated_at.eq(now),
    ))
    .execute(conn)?;
    if updated != ids.len() {
        return Err(diesel::result::Error::RollbackTransaction);
    }
    Ok(())
}

/// The request and order an idempotency key was first used with.
pub fn find_key(
    conn: &mut AnyConnection,
    user_id: &str,
    key: &str,
) -> QueryResult<Option<(String, OrderId)>> {
    let found: Option<(String, String)> = keys::table
        .find((user_id, key))
        .select((keys::request, keys::order_id))
        .first(conn)
        .optional()?;
    Ok(found.map(|(request, order_id)| (request, OrderId::from(order_id))))
}

pub fn insert_key(
    conn: &mut AnyConnection,
    user_id: &str,
    key: &str,
    request: &str,
    order_id: &OrderId,
    now: NaiveDateTime,
) -> QueryResult<()> {
    diesel::insert_into(keys::table)
        .values((
            keys::user_id.eq(user_id),
            keys::idempotency_key.eq(key),
            keys::request.eq(request),
            keys::order_id.eq(order_id.as_str()),
            keys::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

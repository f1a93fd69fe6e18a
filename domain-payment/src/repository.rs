//! The diesel adapter of the payment context.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use shared_kernel::model::money::{Currency, Money};
use shared_kernel::storage::db::AnyConnection;

use crate::model::{Payment, PaymentId, PaymentMethod, PaymentStatus};
use crate::schema::{payment_notifications, payments};
use crate::signature::Signed;

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = payments)]
struct PaymentRow {
    id: String,
    order_id: String,
    method: String,
    gateway: String,
    status: String,
    amount_minor: i64,
    currency: String,
    payment_url: String,
    expires_at: NaiveDateTime,
    transaction_id: Option<String>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    completed_at: Option<NaiveDateTime>,
    user_id: String,
}

impl PaymentRow {
    fn into_domain(self) -> QueryResult<Payment> {
        let corrupt = |what: String| diesel::result::Error::DeserializationError(what.into());
        Ok(Payment {
            method: PaymentMethod::parse(&self.method)
                .ok_or_else(|| corrupt(format!("method {:?}", self.method)))?,
            status: PaymentStatus::parse(&self.status)
                .ok_or_else(|| corrupt(format!("status {:?}", self.status)))?,
            amount: Money::new(
                self.amount_minor,
                Currency::parse(&self.currency).map_err(|e| corrupt(e.to_string()))?,
            ),
            id: PaymentId::from(self.id),
            order_id: self.order_id,
            gateway: self.gateway,
            payment_url: self.payment_url,
            expires_at: self.expires_at,
            transaction_id: self.transaction_id,
            created_at: self.created_at,
            updated_at: self.updated_at,
            completed_at: self.completed_at,
            user_id: self.user_id,
        })
    }
}

/// Stores a new payment, to be asked about at its provider from `first_query`
/// (should no notification come first).
pub fn insert(
    conn: &mut AnyConnection,
    p: &Payment,
    first_query: NaiveDateTime,
) -> QueryResult<()> {
    diesel::insert_into(payments::table)
        .values((
            payments::id.eq(p.id.as_str()),
            payments::order_id.eq(&p.order_id),
            payments::method.eq(p.method.as_str()),
            payments::gateway.eq(&p.gateway),
            payments::status.eq(p.status.as_str()),
            payments::amount_minor.eq(p.amount.minor()),
            payments::currency.eq(p.amount.currency().as_str()),
            payments::payment_url.eq(&p.payment_url),
            payments::expires_at.eq(p.expires_at),
            payments::created_at.eq(p.created_at),
            payments::updated_at.eq(p.updated_at),
            payments::user_id.eq(&p.user_id),
            payments::provider_due_at.eq(first_query),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut AnyConnection, id: &PaymentId) -> QueryResult<Option<Payment>> {
    if !id.could_exist() {
        return Ok(None);
    }
    payments::table
        .find(id.as_str())
        .select(PaymentRow::as_select())
        .first(conn)
        .optional()?
        .map(PaymentRow::into_domain)
        .transpose()
}

/// The order's open (pending) payment, or else its latest one.
pub fn current_for_order(conn: &mut AnyConnection, order_id: &str) -> QueryResult<Option<Payment>> {
    if order_id.is_empty() || order_id.len() > 64 || order_id.contains('\0') {
        return Ok(None);
    }
    if let Some(open) = open_for_order(conn, order_id)? {
        return Ok(Some(open));
    }
    payments::table
        .filter(payments::order_id.eq(order_id))
        .order(payments::id.desc())
        .select(PaymentRow::as_select())
        .first(conn)
        .optional()?
        .map(PaymentRow::into_domain)
        .transpose()
}

/// The order's open (pending) payment: there is at most one.
pub fn open_for_order(conn: &mut AnyConnection, order_id: &str) -> QueryResult<Option<Payment>> {
    payments::table
        .filter(payments::order_id.eq(order_id))
        .filter(payments::status.eq(PaymentStatus::Pending.as_str()))
        .select(PaymentRow::as_select())
        .first(conn)
        .optional()?
        .map(PaymentRow::into_domain)
        .transpose()
}

/// Moves a payment from `from` to `to` in one conditional UPDATE; returns
/// whether it moved (another transaction may have moved it first).
pub fn transition(
    conn: &mut AnyConnection,
    id: &PaymentId,
    from: PaymentStatus,
    to: PaymentStatus,
    transaction_id: Option<&str>,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let target = payments::table
        .filter(payments::id.eq(id.as_str()))
        .filter(payments::status.eq(from.as_str()));
    // A status that owes the provider work (a close, a refund) makes it due now.
    let due = to.owes_provider_work().then_some(now);
    let moved = match transaction_id {
        Some(transaction_id) => diesel::update(target)
            .set((
                payments::status.eq(to.as_str()),
                payments::transaction_id.eq(transaction_id),
                payments::completed_at.eq(now),
                payments::updated_at.eq(now),
                payments::provider_due_at.eq(due),
                payments::provider_attempts.eq(0),
            ))
            .execute(conn)?,
        None => diesel::update(target)
            .set((
                payments::status.eq(to.as_str()),
                payments::updated_at.eq(now),
                payments::provider_due_at.eq(due),
                payments::provider_attempts.eq(0),
            ))
            .execute(conn)?,
    };
    Ok(moved == 1)
}

/// Records that the notification `signed` was accepted for `payment`, unless
/// the same signed bytes were accepted before; returns whether this is the
/// first time. Of concurrent deliveries of the same bytes, one records it:
/// the others wait for its commit and see it recorded.
pub fn record_notification(
    conn: &mut AnyConnection,
    signed: &Signed,
    payment: &PaymentId,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let digest = hex::encode(signed.digest);
    let inserted = shared_kernel::insert_ignoring_duplicates!(
        conn,
        payment_notifications::table,
        (
            payment_notifications::digest.eq(&digest),
            payment_notifications::payment_id.eq(payment.as_str()),
            payment_notifications::signed_at.eq(signed.timestamp),
            payment_notifications::received_at.eq(now),
        )
    )?;
    Ok(inserted == 1)
}

/// The payment a notification already accepted was about.
pub fn notified_payment(
    conn: &mut AnyConnection,
    signed: &Signed,
) -> QueryResult<Option<PaymentId>> {
    Ok(payment_notifications::table
        .find(hex::encode(signed.digest))
        .select(payment_notifications::payment_id)
        .first::<String>(conn)
        .optional()?
        .map(PaymentId::from))
}

/// Forgets the notifications signed before `signed_before` (unix seconds);
/// returns how many.
pub fn prune_notifications(conn: &mut AnyConnection, signed_before: i64) -> QueryResult<usize> {
    diesel::delete(
        payment_notifications::table.filter(payment_notifications::signed_at.lt(signed_before)),
    )
    .execute(conn)
}

/// The payments of an order that can still be paid (`pending`, or `failed`
/// and paid again later): the ones to close when the order goes.
pub fn payable_for_order(conn: &mut AnyConnection, order_id: &str) -> QueryResult<Vec<Payment>> {
    payments::table
        .filter(payments::order_id.eq(order_id))
        .filter(payments::status.eq_any([
            PaymentStatus::Pending.as_str(),
            PaymentStatus::Failed.as_str(),
        ]))
        .select(PaymentRow::as_select())
        .load(conn)?
        .into_iter()
        .map(PaymentRow::into_domain)
        .collect()
}

/// Payments whose provider work (a close, a refund) is due at `now`, oldest first.
pub fn provider_work_due(
    conn: &mut AnyConnection,
    now: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<(Payment, NaiveDateTime, i32)>> {
    payments::table
        .filter(payments::provider_due_at.le(now))
        .order(payments::provider_due_at.asc())
        .limit(limit)
        .select((
            PaymentRow::as_select(),
            payments::provider_due_at.assume_not_null(),
            payments::provider_attempts,
        ))
        .load::<(PaymentRow, NaiveDateTime, i32)>(conn)?
        .into_iter()
        .map(|(row, due, attempts)| Ok((row.into_domain()?, due, attempts)))
        .collect()
}

/// Puts a payment's provider work off to `until`, counting an attempt, if it
/// is still due at `due` (so that of several workers, one takes it); returns
/// whether it did.
pub fn defer_provider_work(
    conn: &mut AnyConnection,
    id: &PaymentId,
    due: NaiveDateTime,
    until: NaiveDateTime,
    attempts: i32,
) -> QueryResult<bool> {
    let moved = diesel::update(
        payments::table
            .filter(payments::id.eq(id.as_str()))
            .filter(payments::provider_due_at.eq(due)),
    )
    .set((
        payments::provider_due_at.eq(until),
        payments::provider_attempts.eq(attempts),
    ))
    .execute(conn)?;
    Ok(moved == 1)
}

/// The provider owes nothing more for a payment in `status`.
pub fn provider_work_done(
    conn: &mut AnyConnection,
    id: &PaymentId,
    status: PaymentStatus,
) -> QueryResult<bool> {
    let moved = diesel::update(
        payments::table
            .filter(payments::id.eq(id.as_str()))
            .filter(payments::status.eq(status.as_str())),
    )
    .set(payments::provider_due_at.eq(None::<NaiveDateTime>))
    .execute(conn)?;
    Ok(moved == 1)
}

/// Makes a payment's provider work due at `at` (a first attempt), if it is
/// still in `status`.
pub fn schedule_provider_work(
    conn: &mut AnyConnection,
    id: &PaymentId,
    status: PaymentStatus,
    at: NaiveDateTime,
) -> QueryResult<bool> {
    let moved = diesel::update(
        payments::table
            .filter(payments::id.eq(id.as_str()))
            .filter(payments::status.eq(status.as_str())),
    )
    .set((
        payments::provider_due_at.eq(at),
        payments::provider_attempts.eq(0),
    ))
    .execute(conn)?;
    Ok(moved == 1)
}

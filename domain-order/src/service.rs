//! The order context's use cases, behind its module facade.

use std::sync::Arc;
use std::time::Duration;

use shared_kernel::messaging::outbox::Outbox;
use shared_kernel::model::clock;
use shared_kernel::model::events::{
    CancellationReason, OrderCancelled, OrderLineData, OrderPaid, OrderPaymentRefused, OrderPlaced,
    PaymentSucceeded, RefusalReason,
};
use shared_kernel::model::ports::{
    Inventory, PortError, ReservationLine, ReserveError, ReservedLine,
};
use shared_kernel::storage::db::{AnyConnection, Db, DbError};
use shared_kernel::web::auth::Caller;
use shared_kernel::web::pagination::PageRequest;

use crate::error::OrderError;
use crate::model::{
    CancelReason, LatePayment, Order, OrderEvent, OrderFilter, OrderId, PaymentRefusal, PlaceOrder,
    PricingError, RequestField, UserId, Violation,
};
use crate::repository;

/// The order context's facade.
#[derive(Clone)]
pub struct OrderService {
    db: Db,
    outbox: Outbox,
    inventory: Arc<dyn Inventory>,
    payment_timeout: Duration,
}

impl std::fmt::Debug for OrderService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderService")
            .field("payment_timeout", &self.payment_timeout)
            .finish_non_exhaustive()
    }
}

/// A placed order, and whether this call placed it or replayed an earlier one.
#[derive(Debug, Clone)]
pub struct Placed {
    pub order: Order,
    pub replayed: bool,
}

/// One page of a user's orders.
#[derive(Debug, Clone)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    pub next_cursor: Option<String>,
}

impl OrderService {
    pub fn new(
        db: Db,
        outbox: Outbox,
        inventory: Arc<dyn Inventory>,
        payment_timeout: Duration,
    ) -> Self {
        Self {
            db,
            outbox,
            inventory,
            payment_timeout,
        }
    }

    /// Places an order: reserves the stock of every line through the
    /// `Inventory` port (which also tells unknown products and the prices),
    /// builds the order (pure: lines and pricing), and stores it with its
    /// `OrderPlaced` event in one write. With an idempotency key, a retry of
    /// the same request returns the first order and creates nothing.
    pub async fn place(
        &self,
        request: PlaceOrder,
        idempotency_key: Option<String>,
    ) -> Result<Placed, OrderError> {
        if let Some(key) = &idempotency_key
            && let Some(order) = self.replay(&request, key).await?
        {
            return Ok(Placed {
                order,
                replayed: true,
            });
        }
        let now = clock::now();
        let id = OrderId::generate();
        let expires_at =
            now + chrono::Duration::from_std(self.payment_timeout).unwrap_or(chrono::Duration::MAX);

        let reserved = self.reserve(&id, &request, expires_at).await?;
        let order = match Order::place(id.clone(), &request, &reserved, now, expires_at) {
            Ok(order) => order,
            Err(error) => {
                self.release_quietly(&id).await;
                return Err(match error {
                    PricingError::MixedCurrencies(..) => {
                        OrderError::MixedCurrencies(error.to_string())
                    }
                    PricingError::Overflow | PricingError::Empty => {
                        OrderError::Invalid(vec![Violation::new(
                            RequestField::Items,
                            error.to_string(),
                        )])
                    }
                });
            }
        };

        let (outbox, stored, canonical) = (self.outbox.clone(), order.clone(), request.canonical());
        let key = idempotency_key.clone();
        let event = placed_event(&stored);
        let saved = self
            .db
            .write(move |conn| {
                repository::insert(conn, &stored)?;
                if let Some(key) = &key {
                    repository::insert_key(
                        conn,
                        &stored.user_id,
                        key,
                        &canonical,
                        &stored.id,
                        stored.created_at,
                    )?;
                }
                outbox.publish(conn, &event)?;
                Ok::<_, DbError>(())
            })
            .await;
        match saved {
            Ok(()) => {
                self.outbox.wake();
                tracing::info!(order_id = %order.id, amount = order.amount.minor(), "order placed");
                metrics::counter!("shop_orders_created_total").increment(1);
                Ok(Placed {
                    order,
                    replayed: false,
                })
            }
            Err(error) => {
                self.release_quietly(&id).await;
                // Another request with the same key got there first: answer as a retry would.
                if let Some(key) = &idempotency_key
                    && error.is_unique_violation()
                    && let Some(order) = self.replay(&request, key).await?
                {
                    return Ok(Placed {
                        order,
                        replayed: true,
                    });
                }
                Err(error.into())
            }
        }
    }

    /// Reserves the stock of every line, all or none, under the order's id.
    async fn reserve(
        &self,
        id: &OrderId,
        request: &PlaceOrder,
        expires_at: chrono::NaiveDateTime,
    ) -> Result<Vec<ReservedLine>, OrderError> {
        let lines: Vec<ReservationLine> = request
            .items
            .iter()
            .map(|l| ReservationLine {
                product_id: l.product_id.clone(),
                quantity: l.quantity,
            })
            .collect();
        self.inventory
            .reserve(id.as_str(), &lines, expires_at.and_utc())
            .await
            .map_err(|e| match e {
                ReserveError::UnknownProducts(ids) => OrderError::UnknownProducts(
                    ids.into_iter()
                        .map(|id| (line_field(request, &id, RequestField::ProductId), id))
                        .collect(),
                ),
                ReserveError::InsufficientStock(shortages) => OrderError::InsufficientStock(
                    shortages
                        .into_iter()
                        .map(|s| {
                            (
                                line_field(request, &s.product_id, RequestField::Quantity),
                                s,
                            )
                        })
                        .collect(),
                ),
                ReserveError::ArchivedProducts(ids) => OrderError::ArchivedProducts(
                    ids.into_iter()
                        .map(|id| (line_field(request, &id, RequestField::ProductId), id))
                        .collect(),
                ),
                ReserveError::AlreadyReleased => OrderError::Port(PortError::Unexpected(
                    anyhow::anyhow!("a fresh reservation id {id} was already released"),
                )),
                ReserveError::Port(e) => OrderError::Port(e),
            })
    }

    /// The order an idempotency key already created, if the request is the same.
    async fn replay(&self, request: &PlaceOrder, key: &str) -> Result<Option<Order>, OrderError> {
        let (user, key, canonical) = (
            request.user_id.as_str().to_owned(),
            key.to_owned(),
            request.canonical(),
        );
        self.db
            .run(move |conn| match repository::find_key(conn, &user, &key)? {
                None => Ok(None),
                Some((first, _)) if first != canonical => Err(OrderError::KeyReused),
                Some((_, order_id)) => Ok(repository::find(conn, &order_id)?),
            })
            .await
    }

    async fn release_quietly(&self, id: &OrderId) {
        if let Err(error) = self.inventory.release(id.as_str()).await {
            // The reservation stays held; the catalog gives it back once its hold ends.
            tracing::warn!(order_id = %id, %error, "could not release the reservation of an order that was not placed");
        }
    }

    /// The order, if `caller` may see it (its customer, or staff); another
    /// customer's order is not found, exactly as if it did not exist.
    pub async fn get(&self, caller: &Caller, id: OrderId) -> Result<Order, OrderError> {
        let caller = caller.clone();
        self.db
            .run(move |conn| {
                repository::find(conn, &id)?
                    .filter(|order| caller.may_see(&order.user_id))
                    .ok_or(OrderError::NotFound(id))
            })
            .await
    }

    /// One page of a customer's orders, oldest first.
    /// One page of the orders `filter` selects: a customer's own oldest
    /// first, staff's searches newest first.
    pub async fn list(
        &self,
        filter: OrderFilter,
        newest_first: bool,
        page: PageRequest,
    ) -> Result<OrderPage, OrderError> {
        self.db
            .run(move |conn| {
                let rows = repository::search(conn, &filter, newest_first, &page)?;
                let (orders, next_cursor) = page.finish(rows, |o| o.id.as_str());
                Ok(OrderPage {
                    orders,
                    next_cursor,
                })
            })
            .await
    }

    /// The customer cancels one of their orders that is still pending payment.
    pub async fn cancel(&self, customer: &UserId, id: OrderId) -> Result<Order, OrderError> {
        let outbox = self.outbox.clone();
        let customer = customer.clone();
        let order = self
            .db
            .write(move |conn| {
                // Another customer's order is not found, and stays untouched.
                let owner = repository::owner(conn, &id)?;
                if owner.as_deref() != Some(customer.as_str()) {
                    return Err(OrderError::NotFound(id.clone()));
                }
                let cancelled = cancel_pending(conn, &outbox, &id, CancelReason::CancelledByUser)?;
                let order =
                    repository::find(conn, &id)?.ok_or_else(|| OrderError::NotFound(id.clone()))?;
                if cancelled {
                    Ok(order)
                } else {
                    Err(OrderError::NotCancellable(order.status))
                }
            })
            .await?;
        self.outbox.wake();
        tracing::info!(order_id = %order.id, "order cancelled by user");
        metrics::counter!("shop_orders_cancelled_total", "reason" => "cancelled_by_user")
            .increment(1);
        Ok(order)
    }

    /// Cancels pending orders whose payment time ran out, up to
    /// [`EXPIRY_BATCH`] at a time; returns how many (call again while it
    /// returns a full batch). Safe to run on every instance at once: each
    /// order is cancelled once. An idle sweep is one indexed read, no write.
    pub async fn expire_due(&self) -> Result<usize, OrderError> {
        let any_due = self
            .db
            .run(|conn| {
                Ok::<_, OrderError>(!repository::due_for_expiry(conn, clock::now(), 1)?.is_empty())
            })
            .await?;
        if !any_due {
            return Ok(0);
        }
        let outbox = self.outbox.clone();
        let expired = self
            .db
            .write_alone(move |conn| {
                let now = clock::now();
                let ids = repository::lock_due_for_expiry(conn, now, EXPIRY_BATCH)?;
                repository::cancel_locked(conn, &ids, CancelReason::Expired, now)?;
                let events: Vec<OrderCancelled> = ids
                    .iter()
                    .map(|id| OrderCancelled {
                        order_id: id.to_string(),
                        reason: CancellationReason::Expired,
                    })
                    .collect();
                outbox.publish_all(conn, &events)?;
                Ok::<_, OrderError>(ids)
            })
            .await?;
        if !expired.is_empty() {
            self.outbox.wake();
            for id in &expired {
                tracing::info!(order_id = %id, "order expired");
            }
            metrics::counter!("shop_orders_cancelled_total", "reason" => "expired")
                .increment(expired.len() as u64);
        }
        Ok(expired.len())
    }
}

/// What a payment's success did to its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentRecorded {
    /// The order was pending: it is paid now, and `OrderPaid` published.
    Paid,
    /// The order was already paid by this payment: nothing changed.
    AlreadyApplied,
    /// The order could not take it: `OrderPaymentRefused` published, so that
    /// the payment context gives the money back.
    Refused(PaymentRefusal),
}

/// The use case behind the payment context's `payment.succeeded`, in the
/// caller's transaction (the event delivery's): pays the order when it is
/// pending (one conditional UPDATE: of a cancel, the expiry sweep and a
/// payment racing, exactly one wins), else answers as
/// [`Order::late_payment`] says. An error leaves the delivery to be tried again.
pub fn record_payment_success(
    conn: &mut AnyConnection,
    outbox: &Outbox,
    paid: &PaymentSucceeded,
) -> anyhow::Result<PaymentRecorded> {
    let id = OrderId::from(paid.order_id.clone());
    if repository::apply(
        conn,
        &id,
        OrderEvent::PaymentSucceeded,
        clock::now(),
        Some(&paid.payment_id),
    )?
    .is_some()
    {
        outbox.publish(
            conn,
            &OrderPaid {
                order_id: paid.order_id.clone(),
                payment_id: paid.payment_id.clone(),
                amount: paid.amount,
                currency: paid.currency.clone(),
            },
        )?;
        tracing::info!(order_id = %id, payment_id = %paid.payment_id, "order paid");
        metrics::counter!("shop_orders_paid_total").increment(1);
        return Ok(PaymentRecorded::Paid);
    }
    let Some(order) = repository::find(conn, &id)? else {
        anyhow::bail!(
            "payment {} succeeded for an order that does not exist: {id}",
            paid.payment_id
        );
    };
    let refusal = match order.late_payment(&paid.payment_id)? {
        LatePayment::AlreadyApplied => return Ok(PaymentRecorded::AlreadyApplied),
        LatePayment::Refused(refusal) => refusal,
    };
    tracing::warn!(order_id = %id, payment_id = %paid.payment_id, ?refusal, "payment refused: it must be refunded");
    outbox.publish(
        conn,
        &OrderPaymentRefused {
            order_id: paid.order_id.clone(),
            payment_id: paid.payment_id.clone(),
            reason: match refusal {
                PaymentRefusal::OrderCancelled => RefusalReason::OrderCancelled,
                PaymentRefusal::AlreadyPaid => RefusalReason::AlreadyPaid,
            },
        },
    )?;
    Ok(PaymentRecorded::Refused(refusal))
}

/// The use case behind the `OrderLookup` port: an order as another context
/// reads it (the payment context, before it opens a payment). No caller to
/// check: contexts ask, not customers.
pub async fn look_up_order(db: &Db, id: OrderId) -> Result<Option<Order>, DbError> {
    db.run(move |conn| repository::find(conn, &id).map_err(DbError::from))
        .await
}

/// The most orders one expiry sweep cancels in one write unit.
pub const EXPIRY_BATCH: i64 = 500;

/// Cancels a pending order and publishes `OrderCancelled`, in the caller's transaction.
fn cancel_pending(
    conn: &mut shared_kernel::storage::db::AnyConnection,
    outbox: &Outbox,
    id: &OrderId,
    reason: CancelReason,
) -> Result<bool, OrderError> {
    if repository::apply(conn, id, OrderEvent::Cancel(reason), clock::now(), None)?.is_none() {
        return Ok(false);
    }
    let reason = match reason {
        CancelReason::Expired => CancellationReason::Expired,
        CancelReason::CancelledByUser => CancellationReason::CancelledByUser,
    };
    outbox.publish(
        conn,
        &OrderCancelled {
            order_id: id.to_string(),
            reason,
        },
    )?;
    Ok(true)
}

fn placed_event(order: &Order) -> OrderPlaced {
    OrderPlaced {
        order_id: order.id.to_string(),
        user_id: order.user_id.clone(),
        lines: order
            .lines
            .iter()
            .map(|l| OrderLineData {
                product_id: l.product_id.clone(),
                quantity: l.quantity,
                unit_price: l.unit_price.minor(),
            })
            .collect(),
        amount: order.amount.minor(),
        currency: order.amount.currency().to_string(),
        expires_at: order.expires_at.and_utc(),
    }
}

/// The field of the line that names `product_id` (or the items, should none).
fn line_field(
    request: &PlaceOrder,
    product_id: &str,
    field: fn(usize) -> RequestField,
) -> RequestField {
    request
        .line_of(product_id)
        .map_or(RequestField::Items, field)
}

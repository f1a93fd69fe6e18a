//! The payment context's use cases, behind its module facade.

use std::sync::Arc;

use chrono::NaiveDateTime;

use shared_kernel::FieldViolation;
use shared_kernel::auth::{Caller, UserId};
use shared_kernel::clock;
use shared_kernel::db::{AnyConnection, Db};
use shared_kernel::events::{
    OrderPaymentRefused, PaymentFailed, PaymentRefunded, PaymentSucceeded,
};
use shared_kernel::outbox::Outbox;
use shared_kernel::ports::{
    Closed, GatewayPaymentRequest, OrderLookup, OrderState, PaymentChannel, PortError,
    RefundRequest, RefundState, Trade, TradeState,
};

use crate::error::PaymentError;
use crate::gateways::Gateways;
pub use crate::model::NotifiedStatus;
use crate::model::{
    Applied, Payment, PaymentId, PaymentMethod, PaymentOutcome, PaymentStatus,
    TRANSACTION_ID_MAX_LEN, is_valid_transaction_id,
};
use crate::repository;
use crate::signature::{ShopSignature, SignatureError, Signed, TOLERANCE_SECS};

/// The payment context's facade.
#[derive(Clone)]
pub struct PaymentService {
    db: Db,
    outbox: Outbox,
    orders: Arc<dyn OrderLookup>,
    gateways: Gateways,
    signature: ShopSignature,
    reconciliation: Reconciliation,
}

/// When a payment whose notification has not come is asked about at its
/// provider: from `window` before its deadline, every `every` (and once more
/// at the deadline, before its trade is closed).
#[derive(Debug, Clone, Copy)]
pub struct Reconciliation {
    pub window: std::time::Duration,
    pub every: std::time::Duration,
}

impl Default for Reconciliation {
    fn default() -> Self {
        Self {
            window: std::time::Duration::from_secs(120),
            every: std::time::Duration::from_secs(15),
        }
    }
}

impl Reconciliation {
    /// When a payment opened `now` with `deadline` is first asked about.
    fn first_query(&self, now: NaiveDateTime, deadline: NaiveDateTime) -> NaiveDateTime {
        (deadline - chrono::Duration::from_std(self.window).unwrap_or_default()).max(now)
    }

    /// When an unpaid payment asked about `now` is asked again: after
    /// `every`, but not after its deadline.
    fn next_query(&self, now: NaiveDateTime, deadline: NaiveDateTime) -> NaiveDateTime {
        (now + chrono::Duration::from_std(self.every).unwrap_or_default()).min(deadline)
    }
}

impl std::fmt::Debug for PaymentService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentService")
            .field("gateways", &self.gateways)
            .finish_non_exhaustive()
    }
}

/// Refuses a transaction id shop does not keep ([`crate::model::TRANSACTION_ID_PATTERN`]),
/// naming the field, whichever route or provider reported it.
fn check_transaction_id(id: &str) -> Result<(), PaymentError> {
    if is_valid_transaction_id(id) {
        return Ok(());
    }
    Err(PaymentError::Invalid(vec![FieldViolation::new(
        "transactionId",
        format!(
            "must be 1 to {TRANSACTION_ID_MAX_LEN} visible ASCII characters (no space or control character)"
        ),
    )]))
}

/// What a customer asks for when opening a payment.
#[derive(Debug, Clone)]
pub struct Opening {
    pub order_id: String,
    pub method: PaymentMethod,
    pub channel: Option<PaymentChannel>,
    /// The customer's address (WeChat Pay's H5 flow must be given it).
    pub client_ip: Option<String>,
}

/// A notification's claim, as the gateway sent it, validated.
#[derive(Debug, Clone)]
pub struct Notification {
    outcome: NotifiedStatus,
    amount: Option<i64>,
    currency: Option<String>,
    transaction_id: Option<String>,
}

impl Notification {
    /// `amount` and `currency`, when given, must match the payment's;
    /// `transaction_id`, when given, must be one shop can keep
    /// ([`crate::model::TRANSACTION_ID_PATTERN`]).
    pub fn new(
        outcome: NotifiedStatus,
        amount: Option<i64>,
        currency: Option<String>,
        transaction_id: Option<String>,
    ) -> Result<Self, PaymentError> {
        if let Some(id) = &transaction_id {
            check_transaction_id(id)?;
        }
        Ok(Self {
            outcome,
            amount,
            currency,
            transaction_id,
        })
    }
}

/// What a notification did.
#[derive(Debug, Clone)]
pub struct Notified {
    /// The payment as the notification left it.
    pub payment: Payment,
    /// False when nothing changed: the payment already had this outcome.
    pub applied: bool,
}

/// Which payment a notification is about.
#[derive(Debug, Clone)]
pub enum PaymentRef {
    Payment(PaymentId),
    /// The original spec's notifications name the order; they mean its open
    /// (or latest) payment, which must have been opened before the
    /// notification was signed.
    Order(String),
}

impl PaymentService {
    pub fn new(
        db: Db,
        outbox: Outbox,
        orders: Arc<dyn OrderLookup>,
        gateways: Gateways,
        signature: ShopSignature,
        reconciliation: Reconciliation,
    ) -> Self {
        Self {
            db,
            outbox,
            orders,
            gateways,
            signature,
            reconciliation,
        }
    }

    /// The providers this service talks to.
    pub fn gateways(&self) -> &Gateways {
        &self.gateways
    }

    /// Opens a payment for one of `customer`'s orders that is pending and
    /// unexpired; returns it and whether it is new. While a payment of the
    /// order is open, that one is returned. Another customer's order is not
    /// found, exactly as if it did not exist.
    pub async fn initiate(
        &self,
        customer: &UserId,
        opening: Opening,
    ) -> Result<(Payment, bool), PaymentError> {
        let Opening {
            order_id,
            method,
            channel,
            client_ip,
        } = opening;
        let gateway = self
            .gateways
            .for_method(method)
            .cloned()
            .ok_or(PaymentError::NoGateway)?;
        let order = self
            .orders
            .order(&order_id)
            .await?
            .filter(|order| order.user_id == customer.as_str())
            .ok_or_else(|| PaymentError::OrderNotFound(order_id.clone()))?;
        match order.state {
            OrderState::Paid => return Err(PaymentError::OrderPaid),
            OrderState::Cancelled => return Err(PaymentError::OrderCancelled),
            OrderState::PendingPayment if order.expires_at <= chrono::Utc::now() => {
                return Err(PaymentError::OrderExpired);
            }
            OrderState::PendingPayment => {}
        }
        if !gateway.accepts(order.amount.currency()) {
            return Err(PaymentError::CurrencyNotAccepted {
                method: method.as_str().to_owned(),
                currency: order.amount.currency(),
            });
        }
        if let Some(open) = self.open_payment(&order_id).await? {
            return Ok((open, false));
        }
        let id = PaymentId::generate();
        let opened = gateway
            .create_payment(&GatewayPaymentRequest {
                payment_id: id.to_string(),
                order_id: order_id.clone(),
                amount: order.amount,
                method: method.as_str().to_owned(),
                channel,
                subject: format!("Order {order_id}"),
                client_ip,
                expires_at: order.expires_at,
            })
            .await;
        count_provider_call(gateway.name(), "create", call_outcome(&opened));
        let opened = opened?;
        let now = clock::now();
        let payment = Payment {
            id,
            order_id: order_id.clone(),
            method,
            gateway: gateway.name().to_owned(),
            status: PaymentStatus::Pending,
            amount: order.amount,
            payment_url: opened.payment_url,
            expires_at: order.expires_at.naive_utc(),
            transaction_id: None,
            created_at: now,
            updated_at: now,
            completed_at: None,
            user_id: order.user_id,
        };
        let first_query = self.reconciliation.first_query(now, payment.expires_at);
        let stored = payment.clone();
        match self
            .db
            .write(move |conn| {
                repository::insert(conn, &stored, first_query)
                    .map_err(shared_kernel::db::DbError::from)
            })
            .await
        {
            Ok(()) => {
                tracing::info!(payment_id = %payment.id, order_id = %payment.order_id, method = method.as_str(), "payment initiated");
                metrics::counter!("shop_payments_initiated_total", "method" => method.as_str())
                    .increment(1);
                Ok((payment, true))
            }
            // Another request opened one first: that is the order's open payment.
            Err(error) if error.is_unique_violation() => {
                match self.open_payment(&order_id).await? {
                    Some(open) => Ok((open, false)),
                    None => Err(error.into()),
                }
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn open_payment(&self, order_id: &str) -> Result<Option<Payment>, PaymentError> {
        let order_id = order_id.to_owned();
        let current = self
            .db
            .run(move |conn| Ok::<_, PaymentError>(repository::current_for_order(conn, &order_id)?))
            .await?;
        Ok(current.filter(|p| p.status == PaymentStatus::Pending))
    }

    /// The payment, if `caller` may see it (its customer, or staff); another
    /// customer's payment is not found, exactly as if it did not exist.
    pub async fn get(&self, caller: &Caller, id: PaymentId) -> Result<Payment, PaymentError> {
        let payment = self.find(id.clone()).await?;
        if caller.may_see(&payment.user_id) {
            Ok(payment)
        } else {
            Err(PaymentError::NotFound(id))
        }
    }

    /// The payment, whoever it belongs to (for the sandbox's checkout page,
    /// which checks its own link token).
    pub async fn find(&self, id: PaymentId) -> Result<Payment, PaymentError> {
        self.db
            .run(move |conn| repository::find(conn, &id)?.ok_or(PaymentError::NotFound(id)))
            .await
    }

    /// Checks a notification's `Shop-Signature` against its raw body.
    pub fn verify(&self, signature: Option<&str>, raw_body: &[u8]) -> Result<Signed, PaymentError> {
        Ok(self
            .signature
            .verify(signature, raw_body, chrono::Utc::now().timestamp())?)
    }

    /// Signs a notification body as a gateway would (the sandbox uses it).
    pub fn sign(&self, raw_body: &[u8]) -> String {
        self.signature
            .sign(chrono::Utc::now().timestamp(), raw_body)
    }

    /// Applies a verified notification once: the payment's status changes and
    /// its event is published in one transaction, which also records the
    /// notification (`signed`), so that the same signed bytes are accepted at
    /// most once. A duplicate with other bytes changes nothing and answers
    /// `applied: false`; so does an exact replay while the payment it was
    /// accepted for still shows its outcome (a gateway's retry); any other
    /// replay is refused ([`PaymentError::Replayed`]).
    ///
    /// A success is never dropped: it ends the payment `succeeded`, or
    /// `refund_required` when the order (read through [`OrderLookup`] first)
    /// can no longer take it, cancelled or paid by another payment. The order
    /// context refuses a success that races such a change, and the payment is
    /// then marked for refund by [`crate::Refunds`].
    pub async fn apply_notification(
        &self,
        signed: Signed,
        payment: PaymentRef,
        notification: Notification,
    ) -> Result<Notified, PaymentError> {
        let order_id = match &payment {
            PaymentRef::Order(order_id) => order_id.clone(),
            PaymentRef::Payment(id) => self.find(id.clone()).await?.order_id,
        };
        let order = self.orders.order(&order_id).await?;
        if order.is_none()
            && let PaymentRef::Order(order_id) = &payment
        {
            return Err(PaymentError::OrderNotFound(order_id.clone()));
        }
        let order = order.map(|o| o.state);
        let outbox = self.outbox.clone();
        let notified = self
            .db
            .write(move |conn| apply(conn, &outbox, &signed, &payment, &notification, order))
            .await?;
        let payment = &notified.payment;
        if notified.applied {
            self.outbox.wake();
            if payment.status == PaymentStatus::RefundRequired {
                tracing::warn!(payment_id = %payment.id, order_id = %payment.order_id, "the order can no longer take this payment: marked for refund");
            }
            tracing::info!(payment_id = %payment.id, status = payment.status.as_str(), "payment notification applied");
            metrics::counter!(
                "shop_payments_completed_total",
                "method" => payment.method.as_str(),
                "outcome" => payment.status.as_str()
            )
            .increment(1);
        } else {
            metrics::counter!("shop_payment_notifications_duplicate_total").increment(1);
        }
        Ok(notified)
    }

    /// Applies a success its provider reported for a payment (by a
    /// notification its adapter verified, or by a query's answer), exactly as
    /// a signed notification's: through the state machine, once (a repeat
    /// changes nothing), the order paid or the money marked for refund when
    /// the order can no longer take it. An amount other than the payment's is
    /// refused ([`PaymentError::AmountMismatch`]) and changes nothing.
    pub async fn apply_paid(
        &self,
        id: &PaymentId,
        transaction_id: &str,
        amount: i64,
    ) -> Result<Notified, PaymentError> {
        check_transaction_id(transaction_id)?;
        let payment = self.find(id.clone()).await?;
        if amount != payment.amount.minor() {
            return Err(PaymentError::AmountMismatch {
                expected: payment.amount,
                amount: Some(amount),
                currency: None,
            });
        }
        let order = self
            .orders
            .order(&payment.order_id)
            .await?
            .map(|order| order.state);
        let outbox = self.outbox.clone();
        let (id, transaction_id) = (id.clone(), transaction_id.to_owned());
        let moved = self
            .db
            .write(move |conn| {
                let current = repository::find(conn, &id)?
                    .ok_or_else(|| PaymentError::NotFound(id.clone()))?;
                move_payment(
                    conn,
                    &outbox,
                    current,
                    NotifiedStatus::Success,
                    &transaction_id,
                    order,
                )
            })
            .await?;
        if moved.applied {
            self.outbox.wake();
            metrics::counter!(
                "shop_payments_completed_total",
                "method" => moved.payment.method.as_str(),
                "outcome" => moved.payment.status.as_str()
            )
            .increment(1);
        }
        Ok(moved)
    }

    /// Does what the providers are owed and is due: asks about `pending`
    /// payments as their deadline nears (a success learned so is applied as
    /// its notification would be; one still unpaid at its deadline is
    /// closed), closes the trades of `closed` payments and refunds
    /// `refund_required` ones, up to
    /// [`PROVIDER_WORK_BATCH`] at a time; returns how many it took (call
    /// again while it returns a full batch). Each payment is taken by one
    /// worker (its due time moves forward first); a provider that fails or is
    /// still processing is asked again later, with back-off, and with the
    /// same refund id, so that a refund is made once however often it is
    /// retried. Safe on every instance at once.
    pub async fn settle_with_providers(&self) -> Result<usize, PaymentError> {
        let now = clock::now();
        let due = self
            .db
            .run(move |conn| {
                Ok::<_, PaymentError>(repository::provider_work_due(
                    conn,
                    now,
                    PROVIDER_WORK_BATCH,
                )?)
            })
            .await?;
        let taken = due.len();
        for (payment, due_at, attempts) in due {
            let attempts = attempts.saturating_add(1);
            let id = payment.id.clone();
            // Taken: put off as if it failed, until it is done.
            let retry_at = now + backoff(attempts);
            let claimed = self
                .db
                .write(move |conn| {
                    Ok::<_, PaymentError>(repository::defer_provider_work(
                        conn, &id, due_at, retry_at, attempts,
                    )?)
                })
                .await?;
            if claimed {
                self.settle(payment, attempts).await?;
            }
        }
        Ok(taken)
    }

    /// Closes or refunds one payment at its provider, and records the answer.
    async fn settle(&self, payment: Payment, attempts: i32) -> Result<(), PaymentError> {
        let gateway = self.gateways.named(&payment.gateway).cloned();
        let Some(gateway) = gateway else {
            tracing::warn!(payment_id = %payment.id, gateway = %payment.gateway, attempts, "the payment's provider is not configured here: its close or refund waits");
            return Ok(());
        };
        let trade = Trade {
            payment_id: payment.id.to_string(),
            amount: payment.amount,
        };
        let operation = match payment.status {
            PaymentStatus::Pending => "query",
            PaymentStatus::Closed => "close",
            _ => "refund",
        };
        let answer = match payment.status {
            PaymentStatus::Pending => gateway.query(&trade).await.map(Settled::Query),
            PaymentStatus::Closed => gateway.close(&trade).await.map(Settled::Close),
            PaymentStatus::RefundRequired => gateway
                .refund(&RefundRequest {
                    refund_id: payment.refund_id(),
                    trade,
                })
                .await
                .map(Settled::Refund),
            // Moved on since it was read: nothing is owed any more.
            _ => return Ok(()),
        };
        let outcome = match &answer {
            Ok(Settled::Query(TradeState::Unpaid)) => "unpaid",
            Ok(Settled::Query(TradeState::Paid { .. })) => "paid",
            Ok(Settled::Query(TradeState::Closed)) | Ok(Settled::Close(Closed::Closed)) => "closed",
            Ok(Settled::Close(Closed::AlreadyPaid { .. })) => "already_paid",
            Ok(Settled::Refund(RefundState::Refunded)) => "refunded",
            Ok(Settled::Refund(RefundState::Processing)) => "processing",
            Err(_) => call_outcome(&answer),
        };
        count_provider_call(gateway.name(), operation, outcome);
        match answer {
            // A success learned by asking is applied as its notification would be.
            Ok(Settled::Query(TradeState::Paid {
                transaction_id,
                amount,
            })) => match self.apply_paid(&payment.id, &transaction_id, amount).await {
                Ok(moved) => {
                    if moved.applied {
                        tracing::info!(payment_id = %payment.id, status = moved.payment.status.as_str(), "payment success learned from its provider (no notification came)");
                    }
                    Ok(())
                }
                Err(PaymentError::AmountMismatch { .. }) => {
                    // Not this payment's money as shop knows it: a person must look.
                    tracing::error!(payment_id = %payment.id, reported = amount, expected = payment.amount.minor(), "the provider reports another amount paid; the payment is left as it is");
                    metrics::counter!("shop_payment_amount_mismatches_total").increment(1);
                    Ok(())
                }
                Err(error) => Err(error),
            },
            Ok(settled) => {
                let outbox = self.outbox.clone();
                let recorded = payment.clone();
                let reconciliation = self.reconciliation;
                self.db
                    .write(move |conn| {
                        record_settlement(conn, &outbox, &recorded, &settled, reconciliation)
                    })
                    .await?;
                self.outbox.wake();
                Ok(())
            }
            Err(error) => {
                tracing::warn!(payment_id = %payment.id, gateway = gateway.name(), operation, attempts, %error, "the provider did not answer: asked again later");
                Ok(())
            }
        }
    }

    /// Forgets the notifications whose signatures have long been too old to
    /// verify (twice the tolerance, so that a slow request still finds the
    /// record of the notification it replays); returns how many.
    pub async fn prune_notifications(&self) -> Result<usize, PaymentError> {
        let before = chrono::Utc::now().timestamp() - 2 * TOLERANCE_SECS;
        self.db
            .write_alone(move |conn| Ok(repository::prune_notifications(conn, before)?))
            .await
    }
}

/// Counts a call to a provider (`shop_payment_provider_calls_total`): the
/// gateway, the operation (`create`, `query`, `close`, `refund`) and how it ended.
fn count_provider_call(gateway: &'static str, operation: &'static str, outcome: &'static str) {
    metrics::counter!(
        "shop_payment_provider_calls_total",
        "gateway" => gateway,
        "operation" => operation,
        "outcome" => outcome
    )
    .increment(1);
}

/// How a provider call ended, when its answer says no more: `ok`, or the
/// kind of failure (`unavailable`: retried; `error`: the answer was wrong).
fn call_outcome<T>(answer: &Result<T, PortError>) -> &'static str {
    match answer {
        Ok(_) => "ok",
        Err(PortError::Unavailable(_)) => "unavailable",
        Err(PortError::Unexpected(_)) => "error",
    }
}

/// How many payments one round of provider work takes.
pub const PROVIDER_WORK_BATCH: i64 = 50;

/// When to ask a provider again after `attempts` tries: 2 s, 4 s, 8 s, ...
/// up to an hour.
fn backoff(attempts: i32) -> chrono::Duration {
    let exponent = u32::try_from(attempts.clamp(1, 12)).unwrap_or(12);
    chrono::Duration::seconds((1_i64 << exponent).min(3_600))
}

/// A provider's answer to a query, a close or a refund.
#[derive(Debug)]
enum Settled {
    Query(TradeState),
    Close(Closed),
    Refund(RefundState),
}

/// Records what a provider answered, in one transaction with its event.
fn record_settlement(
    conn: &mut AnyConnection,
    outbox: &Outbox,
    payment: &Payment,
    settled: &Settled,
    reconciliation: Reconciliation,
) -> Result<(), PaymentError> {
    let now = clock::now();
    match settled {
        // Applied through `apply_paid`, which asks the order context first.
        Settled::Query(TradeState::Paid { .. }) => {}
        // Unpaid at its deadline, or closed at the provider already: the
        // payment is closed (and, when the provider closed it, nothing more is
        // owed it; otherwise the close is due at once).
        Settled::Query(state @ (TradeState::Unpaid | TradeState::Closed)) => {
            let closed_there = *state == TradeState::Closed;
            if closed_there || now >= payment.expires_at {
                let closed = repository::transition(
                    conn,
                    &payment.id,
                    PaymentStatus::Pending,
                    PaymentStatus::Closed,
                    None,
                    now,
                )?;
                if closed && closed_there {
                    repository::provider_work_done(conn, &payment.id, PaymentStatus::Closed)?;
                }
            } else {
                repository::schedule_provider_work(
                    conn,
                    &payment.id,
                    PaymentStatus::Pending,
                    reconciliation.next_query(now, payment.expires_at),
                )?;
            }
        }
        Settled::Close(Closed::Closed) => {
            repository::provider_work_done(conn, &payment.id, PaymentStatus::Closed)?;
        }
        // The customer paid before the close: the money must go back (the
        // refund becomes due at once).
        Settled::Close(Closed::AlreadyPaid { transaction_id }) => {
            if repository::transition(
                conn,
                &payment.id,
                PaymentStatus::Closed,
                PaymentStatus::RefundRequired,
                Some(transaction_id),
                now,
            )? {
                tracing::warn!(payment_id = %payment.id, order_id = %payment.order_id, "paid before its trade was closed: marked for refund");
            }
        }
        // Still processing: the due time already moved forward.
        Settled::Refund(RefundState::Processing) => {}
        Settled::Refund(RefundState::Refunded) => {
            if repository::transition(
                conn,
                &payment.id,
                PaymentStatus::RefundRequired,
                PaymentStatus::Refunded,
                None,
                now,
            )? {
                outbox.publish(
                    conn,
                    &PaymentRefunded {
                        payment_id: payment.id.to_string(),
                        order_id: payment.order_id.clone(),
                        amount: payment.amount.minor(),
                        currency: payment.amount.currency().to_string(),
                        refund_id: payment.refund_id(),
                    },
                )?;
                tracing::info!(payment_id = %payment.id, order_id = %payment.order_id, "payment refunded");
                metrics::counter!("shop_payments_refunded_total").increment(1);
            }
        }
    }
    Ok(())
}

/// The payment a notification is about, as it is now.
fn find_target(conn: &mut AnyConnection, payment: &PaymentRef) -> Result<Payment, PaymentError> {
    match payment {
        PaymentRef::Payment(id) => {
            repository::find(conn, id)?.ok_or_else(|| PaymentError::NotFound(id.clone()))
        }
        PaymentRef::Order(order_id) => repository::current_for_order(conn, order_id)?
            .ok_or_else(|| PaymentError::NoPaymentInitiated(order_id.clone())),
    }
}

fn apply(
    conn: &mut AnyConnection,
    outbox: &Outbox,
    signed: &Signed,
    payment: &PaymentRef,
    notification: &Notification,
    order: Option<OrderState>,
) -> Result<Notified, PaymentError> {
    // Checked again here: the record of a notification outlives its
    // signature's tolerance by that much again, however long this unit waited.
    if !signed.is_fresh_at(chrono::Utc::now().timestamp()) {
        return Err(SignatureError::Stale.into());
    }
    let current = find_target(conn, payment)?;
    let amount_differs = notification
        .amount
        .is_some_and(|amount| amount != current.amount.minor());
    let currency_differs = notification
        .currency
        .as_deref()
        .is_some_and(|currency| currency != current.amount.currency().as_str());
    if amount_differs || currency_differs {
        return Err(PaymentError::AmountMismatch {
            expected: current.amount,
            amount: notification.amount,
            currency: notification.currency.clone(),
        });
    }
    let now = clock::now();
    if !repository::record_notification(conn, signed, &current.id, now)? {
        // These bytes were accepted before (perhaps a moment ago, by a
        // concurrent delivery whose commit this one waited for): read afresh.
        let accepted_for = repository::notified_payment(conn, signed)?;
        let payment = repository::find(conn, &current.id)?
            .ok_or_else(|| PaymentError::NotFound(current.id.clone()))?;
        return if accepted_for.as_ref() == Some(&payment.id)
            && notification.outcome.agrees_with(payment.status)
        {
            Ok(Notified {
                payment,
                applied: false,
            })
        } else {
            Err(PaymentError::Replayed)
        };
    }
    if matches!(payment, PaymentRef::Order(_))
        && current.created_at.and_utc().timestamp() > signed.timestamp
    {
        return Err(PaymentError::PredatesPayment);
    }
    let transaction_id = notification
        .transaction_id
        .clone()
        .unwrap_or_else(|| format!("unreported-{}", current.id));
    move_payment(
        conn,
        outbox,
        current,
        notification.outcome,
        &transaction_id,
        order,
    )
}

/// The use case behind the order context's `order.payment_refused`, in the
/// delivery's transaction: the order could not take a payment that
/// succeeded, so the payment is marked for refund (and the refund becomes
/// due at once). Returns whether this call marked it.
pub fn mark_for_refund(
    conn: &mut AnyConnection,
    refused: &OrderPaymentRefused,
) -> Result<bool, PaymentError> {
    let id = PaymentId::from(refused.payment_id.clone());
    let moved = apply_outcome(conn, &id, PaymentOutcome::SuccessRefused)?;
    if moved.is_some() {
        tracing::warn!(payment_id = %id, order_id = %refused.order_id, reason = ?refused.reason, "payment marked for refund");
    }
    Ok(moved.is_some())
}

/// The use case behind the order context's `order.cancelled`, in the
/// delivery's transaction: closes the order's payments that could still be
/// paid, so that their checkout stops offering Pay at once and closing each
/// trade at its provider becomes due (a success that still arrives is then
/// refunded). Returns how many it closed.
pub fn close_for_cancelled_order(
    conn: &mut AnyConnection,
    order_id: &str,
) -> Result<usize, PaymentError> {
    let mut closed = 0;
    for payment in repository::payable_for_order(conn, order_id)? {
        match apply_outcome(conn, &payment.id, PaymentOutcome::Close) {
            Ok(Some(_)) => {
                tracing::info!(payment_id = %payment.id, order_id, "payment closed: its order was cancelled");
                closed += 1;
            }
            // Paid or closed in the meantime: a success is refunded by its own path.
            Ok(None) | Err(PaymentError::AlreadyFinal(_)) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(closed)
}

/// Moves payment `id` by `outcome` through the state machine with a
/// conditional update; when another change won the race, reads where the
/// payment went and goes on from there. Returns the status it moved to, or
/// `None` when the outcome changes nothing.
fn apply_outcome(
    conn: &mut AnyConnection,
    id: &PaymentId,
    outcome: PaymentOutcome,
) -> Result<Option<PaymentStatus>, PaymentError> {
    let now = clock::now();
    for _ in 0..PaymentStatus::ALL.len() {
        let current =
            repository::find(conn, id)?.ok_or_else(|| PaymentError::NotFound(id.clone()))?;
        let next = match current.status.apply(outcome) {
            Ok(Applied::Unchanged) => return Ok(None),
            Ok(Applied::Changed(next)) => next,
            Err(illegal) => return Err(PaymentError::AlreadyFinal(illegal.from)),
        };
        if repository::transition(conn, id, current.status, next, None, now)? {
            return Ok(Some(next));
        }
    }
    Err(PaymentError::AlreadyFinal(
        repository::find(conn, id)?
            .ok_or_else(|| PaymentError::NotFound(id.clone()))?
            .status,
    ))
}

/// Moves a payment as a provider's claim says (a notification's, or a
/// query's answer), through the state machine, publishing the move's event.
fn move_payment(
    conn: &mut AnyConnection,
    outbox: &Outbox,
    current: Payment,
    claim: NotifiedStatus,
    transaction_id: &str,
    order: Option<OrderState>,
) -> Result<Notified, PaymentError> {
    let now = clock::now();
    // The conditional update is the lock: of concurrent notifications, one
    // moves the payment; the others read where it went and go on from there
    // (a success after a failure still moves it), a few times at most, as
    // every status but `pending` has few ways out.
    let mut current = current;
    for _ in 0..PaymentStatus::ALL.len() {
        let outcome = claim.outcome(current.status, order);
        let next = match current.status.apply(outcome) {
            Ok(Applied::Unchanged) => {
                return Ok(Notified {
                    payment: current,
                    applied: false,
                });
            }
            Ok(Applied::Changed(next)) => next,
            Err(illegal) => return Err(PaymentError::AlreadyFinal(illegal.from)),
        };
        if repository::transition(
            conn,
            &current.id,
            current.status,
            next,
            Some(transaction_id),
            now,
        )? {
            publish(conn, outbox, &current, next, transaction_id)?;
            let payment = repository::find(conn, &current.id)?
                .ok_or_else(|| PaymentError::NotFound(current.id.clone()))?;
            return Ok(Notified {
                payment,
                applied: true,
            });
        }
        current = repository::find(conn, &current.id)?
            .ok_or_else(|| PaymentError::NotFound(current.id.clone()))?;
    }
    Err(PaymentError::AlreadyFinal(current.status))
}

/// The event of a payment's move to `next`: the order context pays the order
/// on a success (or refuses it, when it can no longer take it) and notes a
/// failure. A payment marked for refund at once concerns no other context.
fn publish(
    conn: &mut AnyConnection,
    outbox: &Outbox,
    payment: &Payment,
    next: PaymentStatus,
    transaction_id: &str,
) -> Result<(), PaymentError> {
    let (payment_id, order_id) = (payment.id.to_string(), payment.order_id.clone());
    match next {
        PaymentStatus::Succeeded => {
            outbox.publish(
                conn,
                &PaymentSucceeded {
                    payment_id,
                    order_id,
                    amount: payment.amount.minor(),
                    currency: payment.amount.currency().to_string(),
                    transaction_id: transaction_id.to_owned(),
                },
            )?;
        }
        PaymentStatus::Failed => {
            outbox.publish(
                conn,
                &PaymentFailed {
                    payment_id,
                    order_id,
                },
            )?;
        }
        // What notifications never lead to, and a refund the payment context does itself.
        PaymentStatus::Pending
        | PaymentStatus::RefundRequired
        | PaymentStatus::Closed
        | PaymentStatus::Refunded => {}
    }
    Ok(())
}

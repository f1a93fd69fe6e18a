//! The payment context's use cases, behind its module facade.

use std::sync::Arc;

use shared_kernel::auth::{Caller, UserId};
use shared_kernel::clock;
use shared_kernel::db::{AnyConnection, Db};
use shared_kernel::events::{PaymentFailed, PaymentSucceeded};
use shared_kernel::outbox::Outbox;
use shared_kernel::ports::{GatewayPaymentRequest, OrderLookup, OrderState, PaymentGateway};

use crate::error::PaymentError;
use crate::model::{Applied, Payment, PaymentId, PaymentMethod, PaymentOutcome, PaymentStatus};
use crate::repository;
use crate::signature::ShopSignature;

/// The payment context's facade.
#[derive(Clone)]
pub struct PaymentService {
    db: Db,
    outbox: Outbox,
    orders: Arc<dyn OrderLookup>,
    gateway: Option<Arc<dyn PaymentGateway>>,
    signature: ShopSignature,
}

impl std::fmt::Debug for PaymentService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentService")
            .field("gateway", &self.gateway.as_ref().map(|g| g.name()))
            .finish_non_exhaustive()
    }
}

/// A notification's claim, as the gateway sent it.
#[derive(Debug, Clone)]
pub struct Notification {
    pub outcome: NotifiedStatus,
    /// When given, it must match the payment's.
    pub amount: Option<i64>,
    /// When given, it must match the payment's.
    pub currency: Option<String>,
    pub transaction_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifiedStatus {
    Success,
    Failure,
}

/// What a notification did.
#[derive(Debug, Clone)]
pub struct Notified {
    pub payment: Payment,
    /// False for a duplicate: the payment already had this outcome.
    pub applied: bool,
}

/// Which payment a notification is about.
#[derive(Debug, Clone)]
pub enum PaymentRef {
    Payment(PaymentId),
    /// The original spec's notifications name the order; they mean its open (or latest) payment.
    Order(String),
}

impl PaymentService {
    pub fn new(
        db: Db,
        outbox: Outbox,
        orders: Arc<dyn OrderLookup>,
        gateway: Option<Arc<dyn PaymentGateway>>,
        signature: ShopSignature,
    ) -> Self {
        Self {
            db,
            outbox,
            orders,
            gateway,
            signature,
        }
    }

    /// Opens a payment for one of `customer`'s orders that is pending and
    /// unexpired; returns it and whether it is new. While a payment of the
    /// order is open, that one is returned. Another customer's order is not
    /// found, exactly as if it did not exist.
    pub async fn initiate(
        &self,
        customer: &UserId,
        order_id: String,
        method: PaymentMethod,
    ) -> Result<(Payment, bool), PaymentError> {
        let gateway = self.gateway.clone().ok_or(PaymentError::NoGateway)?;
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
                expires_at: order.expires_at,
            })
            .await?;
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
        let stored = payment.clone();
        match self
            .db
            .write(move |conn| {
                repository::insert(conn, &stored).map_err(shared_kernel::db::DbError::from)
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
    pub fn verify(&self, signature: Option<&str>, raw_body: &[u8]) -> Result<(), PaymentError> {
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
    /// its event is published in one transaction; a duplicate changes nothing.
    pub async fn apply_notification(
        &self,
        payment: PaymentRef,
        notification: Notification,
    ) -> Result<Notified, PaymentError> {
        if let PaymentRef::Order(order_id) = &payment
            && self.orders.order(order_id).await?.is_none()
        {
            return Err(PaymentError::OrderNotFound(order_id.clone()));
        }
        let outbox = self.outbox.clone();
        let notified = self
            .db
            .write(move |conn| apply(conn, &outbox, &payment, &notification))
            .await?;
        let payment = &notified.payment;
        if notified.applied {
            self.outbox.wake();
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
}

fn apply(
    conn: &mut AnyConnection,
    outbox: &Outbox,
    payment: &PaymentRef,
    notification: &Notification,
) -> Result<Notified, PaymentError> {
    let find = |conn: &mut AnyConnection| -> Result<Payment, PaymentError> {
        match payment {
            PaymentRef::Payment(id) => {
                repository::find(conn, id)?.ok_or_else(|| PaymentError::NotFound(id.clone()))
            }
            PaymentRef::Order(order_id) => repository::current_for_order(conn, order_id)?
                .ok_or_else(|| PaymentError::NoPaymentInitiated(order_id.clone())),
        }
    };
    let current = find(conn)?;
    let amount_differs = notification
        .amount
        .is_some_and(|amount| amount != current.amount.minor());
    let currency_differs = notification
        .currency
        .as_deref()
        .is_some_and(|currency| currency != current.amount.currency().as_str());
    if amount_differs || currency_differs {
        return Err(PaymentError::AmountMismatch {
            expected: format!("{} {}", current.amount.minor(), current.amount.currency()),
            got: format!(
                "{} {}",
                notification
                    .amount
                    .map_or("(no amount)".to_owned(), |a| a.to_string()),
                notification.currency.as_deref().unwrap_or("(no currency)")
            ),
        });
    }
    let outcome = match notification.outcome {
        NotifiedStatus::Success => PaymentOutcome::Success,
        NotifiedStatus::Failure => PaymentOutcome::Failure,
    };
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
    let now = clock::now();
    let transaction_id = notification
        .transaction_id
        .clone()
        .unwrap_or_else(|| format!("unreported-{}", current.id));
    // The conditional update is the lock: of concurrent duplicates, one moves the payment.
    if !repository::transition(
        conn,
        &current.id,
        current.status,
        next,
        Some(&transaction_id),
        now,
    )? {
        let now_current = find(conn)?;
        return match now_current.status.apply(outcome) {
            Ok(Applied::Unchanged) => Ok(Notified {
                payment: now_current,
                applied: false,
            }),
            _ => Err(PaymentError::AlreadyFinal(now_current.status)),
        };
    }
    let (id, order_id) = (current.id.to_string(), current.order_id.clone());
    match next {
        PaymentStatus::Succeeded => outbox.publish(
            conn,
            &PaymentSucceeded {
                payment_id: id,
                order_id,
                amount: current.amount.minor(),
                currency: current.amount.currency().to_string(),
                transaction_id,
            },
        )?,
        _ => outbox.publish(
            conn,
            &PaymentFailed {
                payment_id: id,
                order_id,
            },
        )?,
    };
    let payment = find(conn)?;
    Ok(Notified {
        payment,
        applied: true,
    })
}

//! Opening a payment for an order.

use shared_kernel::model::clock;
use shared_kernel::model::ports::{GatewayPaymentRequest, OrderState, PaymentChannel};
use shared_kernel::web::auth::UserId;

use super::{PaymentService, call_outcome, count_provider_call};
use crate::error::PaymentError;
use crate::model::{Payment, PaymentId, PaymentMethod, PaymentStatus};
use crate::repository;

/// What a customer asks for when opening a payment.
#[derive(Debug, Clone)]
pub struct Opening {
    pub order_id: String,
    pub method: PaymentMethod,
    pub channel: Option<PaymentChannel>,
    /// The customer's address (WeChat Pay's H5 flow must be given it).
    pub client_ip: Option<String>,
}

impl PaymentService {
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
        let accepted = gateway.amounts();
        if !accepted.contains(&order.amount.minor()) {
            return Err(PaymentError::AmountNotAccepted {
                method: method.as_str().to_owned(),
                amount: order.amount,
                min: *accepted.start(),
                max: *accepted.end(),
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
        let inserted = self
            .db
            .write(move |conn| {
                // An initiation of the same order in this batch's transaction
                // may have opened one a moment ago, not yet committed (a read
                // through the pool cannot see it): that one is the answer.
                if let Some(open) = repository::open_for_order(conn, &stored.order_id)? {
                    return Ok(Some(open));
                }
                repository::insert(conn, &stored, first_query)?;
                Ok::<_, PaymentError>(None)
            })
            .await;
        match inserted {
            Ok(None) => {}
            Ok(Some(open)) => return Ok((open, false)),
            // Another request opened one first, on another connection: it
            // was committed before this insert was refused.
            Err(PaymentError::Db(error)) if error.is_unique_violation() => {
                return match self.open_payment(&order_id).await? {
                    Some(open) => Ok((open, false)),
                    None => Err(error.into()),
                };
            }
            Err(error) => return Err(error),
        }
        tracing::info!(payment_id = %payment.id, order_id = %payment.order_id, method = method.as_str(), "payment initiated");
        metrics::counter!("shop_payments_initiated_total", "method" => method.as_str())
            .increment(1);
        self.close_if_cancelled_meanwhile(&payment).await?;
        Ok((payment, true))
    }

    /// The order may have been cancelled while its payment was being opened,
    /// and the cancellation's reaction (closing the order's payments) may
    /// have run before this payment was committed. Asked again now that it
    /// is: either the cancellation committed before this question (the
    /// payment is closed here, and the caller told `order_cancelled`), or
    /// after the payment was committed, and its reaction closes it.
    async fn close_if_cancelled_meanwhile(&self, payment: &Payment) -> Result<(), PaymentError> {
        match self.orders.order(&payment.order_id).await {
            Ok(Some(order)) if order.state == OrderState::Cancelled => {
                let order_id = payment.order_id.clone();
                self.db
                    .write_alone(move |conn| super::close_for_cancelled_order(conn, &order_id))
                    .await?;
                Err(PaymentError::OrderCancelled)
            }
            Ok(_) => Ok(()),
            // Unknown: the payment stays open until its deadline, when its
            // trade is closed; money paid for a cancelled order is refunded.
            Err(error) => {
                tracing::warn!(payment_id = %payment.id, order_id = %payment.order_id, %error, "could not ask whether a new payment's order was cancelled meanwhile");
                Ok(())
            }
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
}

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
                    .map_err(shared_kernel::storage::db::DbError::from)
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
}

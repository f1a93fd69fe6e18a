//! The order context's implementation of the [`OrderLookup`] port: it calls
//! the use case ([`service::look_up_order`]) and speaks the port's terms.

use async_trait::async_trait;
use shared_kernel::model::ports::{OrderLookup, OrderState, OrderSummary, PortError};
use shared_kernel::storage::db::Db;

use crate::model::{OrderId, OrderStatus};
use crate::service;

/// Orders as other contexts may see them.
#[derive(Debug, Clone)]
pub struct OrderDirectory {
    db: Db,
}

impl OrderDirectory {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

#[async_trait]
impl OrderLookup for OrderDirectory {
    async fn order(&self, order_id: &str) -> Result<Option<OrderSummary>, PortError> {
        let id = OrderId::from(order_id.to_owned());
        let order = service::look_up_order(&self.db, id).await?;
        Ok(order.map(|order| OrderSummary {
            order_id: order.id.into_string(),
            user_id: order.user_id,
            amount: order.amount,
            state: match order.status {
                OrderStatus::PendingPayment => OrderState::PendingPayment,
                OrderStatus::Paid => OrderState::Paid,
                OrderStatus::Cancelled(_) => OrderState::Cancelled,
            },
            expires_at: order.expires_at.and_utc(),
        }))
    }
}

//! The payment context's use cases, behind its module facade
//! [`PaymentService`], one file per use case:
//!
//! - [`initiate`]: opening a payment for an order.
//! - [`notifications`]: what a provider reports, verified by its route, applied
//!   once through the state machine, and the rules that decide whether a
//!   report is about the payment (gateway, amount, application, merchant).
//! - [`settlement`]: what the providers are owed (queries, closes, refunds)
//!   and the pruning of old notifications.
//! - [`reactions`]: what other contexts' events cause here.

use std::sync::Arc;

use chrono::NaiveDateTime;

use shared_kernel::messaging::outbox::Outbox;
use shared_kernel::model::ports::{OrderLookup, PortError};
use shared_kernel::storage::db::Db;
use shared_kernel::web::auth::Caller;

use crate::error::PaymentError;
use crate::gateways::Gateways;
pub use crate::model::NotifiedStatus;
use crate::model::{Payment, PaymentId};
use crate::repository;
use crate::signature::ShopSignature;

mod initiate;
mod notifications;
mod reactions;
mod settlement;

pub use initiate::Opening;
pub use notifications::{Notification, Notified, PaymentRef, ReportRefused, Reported};
pub use reactions::{close_for_cancelled_order, mark_for_refund};
pub use settlement::PROVIDER_WORK_BATCH;

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

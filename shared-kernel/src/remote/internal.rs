//! The internal API's contract: what a context serves under `/internal/v1`
//! for the ports another process implements over HTTP (see [`super::adapters`]),
//! and the service token that guards it. The bodies are shared by the
//! handlers (in the implementing contexts) and the adapters, so that both
//! sides speak one shape; the document is `openapi-internal.yaml`.

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use futures_util::future::LocalBoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::web::auth::{AuthError, Authenticator, bearer, constant_time_eq};
use crate::web::client::client_address;
use crate::web::problem::PROBLEM_JSON;
use crate::web::problem::Problem;

/// Where the internal routes live.
pub const PREFIX: &str = "/internal/v1";

/// Stable codes of the internal API's refusals.
pub mod codes {
    /// 422: some products do not exist (`productIds` lists them).
    pub const UNKNOWN_PRODUCTS: &str = "unknown_products";
    /// 409: not enough stock (`shortages` lists what is missing).
    pub const INSUFFICIENT_STOCK: &str = "insufficient_stock";
    /// 409: some products are archived (`productIds` lists them).
    pub const PRODUCT_ARCHIVED: &str = "product_archived";
    /// 409: this reservation id was released before and cannot be reserved again.
    pub const RESERVATION_RELEASED: &str = "reservation_released";
    /// 404: no order has this id.
    pub const ORDER_NOT_FOUND: &str = "order_not_found";
}

/// The token other processes present on the internal routes (`SHOP__PORTS__TOKEN`).
#[derive(Clone)]
pub struct ServiceToken(SecretString);

impl ServiceToken {
    pub fn new(token: SecretString) -> Self {
        Self(token)
    }

    fn matches(&self, presented: &str) -> bool {
        constant_time_eq(self.0.expose_secret().as_bytes(), presented.as_bytes())
    }
}

impl std::fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceToken(***)")
    }
}

/// Proof that the request carries the service token: every internal route takes it first.
#[derive(Debug, Clone, Copy)]
pub struct Service;

/// The realm of the internal API's challenge.
const REALM: &str = "shop internal";

/// A request without the service token: 401 `unauthorized`; a wrong token
/// from an address that keeps presenting wrong credentials: 429
/// `too_many_auth_failures` (counted with the public routes' failures, by
/// the same limiter: the right token always passes); two `Authorization`
/// headers: 400 `ambiguous_credentials`.
impl FromRequest for Service {
    type Error = AuthError;
    type Future = LocalBoxFuture<'static, Result<Self, AuthError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let unauthorized = || {
            AuthError::unauthorized(
                "The internal API needs the service token: Authorization: Bearer <SHOP__PORTS__TOKEN>.",
                REALM,
            )
        };
        let presented = match bearer(req) {
            Ok(presented) => presented,
            Err(ambiguous) => return Box::pin(std::future::ready(Err(ambiguous))),
        };
        let token = req.app_data::<web::Data<ServiceToken>>();
        if matches!((token, presented), (Some(token), Some(presented)) if token.matches(presented))
        {
            return Box::pin(std::future::ready(Ok(Service)));
        }
        let auth = req.app_data::<web::Data<Authenticator>>().cloned();
        let address = client_address(req);
        let presented = presented.is_some();
        Box::pin(async move {
            match auth {
                Some(auth) if presented => auth.failed(address, "service_token").await?,
                None if presented => {
                    metrics::counter!("shop_auth_failures_total", "kind" => "service_token")
                        .increment(1);
                }
                _ => {}
            }
            Err(unauthorized())
        })
    }
}

/// Products asked for by id.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProductsRequest {
    /// At most 1000 ids.
    #[schema(max_items = 1000)]
    pub product_ids: Vec<String>,
}

/// The products among those asked for that exist.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductsAnswer {
    pub products: Vec<ProductEntry>,
}

/// A product as the catalog sells it now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductEntry {
    pub product_id: String,
    pub name: String,
    /// Unit price in minor units of `currency`.
    pub price: i64,
    #[schema(example = "CNY")]
    pub currency: String,
    pub stock: i64,
}

/// One line to reserve.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LineEntry {
    pub product_id: String,
    #[schema(minimum = 1)]
    pub quantity: i64,
}

/// A reservation: every line or none.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReserveRequest {
    /// 1 to 100 lines, each product at most once.
    #[schema(min_items = 1, max_items = 100)]
    pub lines: Vec<LineEntry>,
    /// Until when the stock is held unconfirmed; a reservation still
    /// unconfirmed well after it is given back.
    pub hold_until: DateTime<Utc>,
}

/// The reserved lines (the first answer again, when the reservation id was reserved before).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReserveAnswer {
    pub reservation_id: String,
    pub lines: Vec<ReservedEntry>,
}

/// One reserved line, with the unit price it was reserved at.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReservedEntry {
    pub product_id: String,
    pub quantity: i64,
    /// Minor units of `currency`.
    pub unit_price: i64,
    pub currency: String,
}

/// Not enough of one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShortageEntry {
    pub product_id: String,
    pub requested: i64,
    pub available: i64,
}

/// A refused reservation: a problem with what was refused.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    #[serde(flatten)]
    pub problem: Problem,
    /// `unknown_products`: the ids no product has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub product_ids: Vec<String>,
    /// `insufficient_stock`: what is missing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shortages: Vec<ShortageEntry>,
}

impl Refusal {
    /// The problem+json response.
    pub fn response(&self) -> HttpResponse {
        HttpResponse::build(self.problem.status_code())
            .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)))
            .body(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// An order's state, as other contexts may know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStateEntry {
    PendingPayment,
    Paid,
    Cancelled,
}

/// What the payment context may know of an order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderEntry {
    pub order_id: String,
    pub user_id: String,
    /// Minor units of `currency`.
    pub amount: i64,
    pub currency: String,
    pub status: OrderStateEntry,
    pub expires_at: DateTime<Utc>,
}

impl From<crate::model::ports::OrderState> for OrderStateEntry {
    fn from(state: crate::model::ports::OrderState) -> Self {
        match state {
            crate::model::ports::OrderState::PendingPayment => Self::PendingPayment,
            crate::model::ports::OrderState::Paid => Self::Paid,
            crate::model::ports::OrderState::Cancelled => Self::Cancelled,
        }
    }
}

impl From<OrderStateEntry> for crate::model::ports::OrderState {
    fn from(state: OrderStateEntry) -> Self {
        match state {
            OrderStateEntry::PendingPayment => Self::PendingPayment,
            OrderStateEntry::Paid => Self::Paid,
            OrderStateEntry::Cancelled => Self::Cancelled,
        }
    }
}

impl From<&crate::model::ports::OrderSummary> for OrderEntry {
    fn from(order: &crate::model::ports::OrderSummary) -> Self {
        Self {
            order_id: order.order_id.clone(),
            user_id: order.user_id.clone(),
            amount: order.amount.minor(),
            currency: order.amount.currency().to_string(),
            status: order.state.into(),
            expires_at: order.expires_at,
        }
    }
}

impl From<&crate::model::ports::ProductSnapshot> for ProductEntry {
    fn from(product: &crate::model::ports::ProductSnapshot) -> Self {
        Self {
            product_id: product.product_id.clone(),
            name: product.name.clone(),
            price: product.price.minor(),
            currency: product.price.currency().to_string(),
            stock: product.stock,
        }
    }
}

impl From<&crate::model::ports::ReservedLine> for ReservedEntry {
    fn from(line: &crate::model::ports::ReservedLine) -> Self {
        Self {
            product_id: line.product_id.clone(),
            quantity: line.quantity,
            unit_price: line.unit_price.minor(),
            currency: line.unit_price.currency().to_string(),
        }
    }
}

impl From<&crate::model::ports::Shortage> for ShortageEntry {
    fn from(s: &crate::model::ports::Shortage) -> Self {
        Self {
            product_id: s.product_id.clone(),
            requested: s.requested,
            available: s.available,
        }
    }
}

/// How the internal API answers a port's own failure: 503 (safe to retry)
/// when `what` is unavailable for now, 500 for anything else.
pub fn port_problem(what: &str, error: crate::model::ports::PortError) -> Problem {
    use crate::model::ports::PortError;
    match error {
        PortError::Unavailable(detail) => {
            tracing::warn!(%detail, "{what} unavailable");
            Problem::unavailable(format!("The {what} is unavailable; try again shortly."))
        }
        PortError::Unexpected(error) => Problem::internal(&error),
    }
}

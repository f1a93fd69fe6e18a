//! The order context's HTTP adapter.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared_kernel::model::clock;
use shared_kernel::web::auth::{Caller, Customer};
use shared_kernel::web::extract::{Json, Query, invalid_query, json_integer};
use shared_kernel::web::pagination::{PageQuery, PageRequest};
use shared_kernel::web::problem::responses::{
    CustomerOnly, CustomerUnauthorized, PayloadTooLarge, TooManyAuthFailures, Unavailable,
    UnsupportedMediaType,
};
use shared_kernel::{FieldViolation, Problem};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::OrderService;
use crate::error::OrderError;
use crate::model::{
    CancelReason, LineFields, Order, OrderFilter, OrderId, OrderStatus, PlaceOrder, RequestField,
    UserId,
};
use crate::service::Placed;

/// Mounts the REST routes (under the app's `/api/v1` scope).
pub fn configure_api(cfg: &mut ServiceConfig) {
    cfg.service(list_orders)
        .service(create_order)
        .service(get_order_info)
        .service(cancel_order);
}

/// Mounts the original spec's literal paths.
pub fn configure_original_spec(cfg: &mut ServiceConfig) {
    cfg.service(original_create_order)
        .service(original_get_order_info);
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatusView {
    PendingPayment,
    Paid,
    Cancelled,
}

/// Why an order was cancelled.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancelReasonView {
    Expired,
    CancelledByUser,
}

impl From<OrderStatus> for OrderStatusView {
    fn from(status: OrderStatus) -> Self {
        match status {
            OrderStatus::PendingPayment => Self::PendingPayment,
            OrderStatus::Paid => Self::Paid,
            OrderStatus::Cancelled(_) => Self::Cancelled,
        }
    }
}

impl From<CancelReason> for CancelReasonView {
    fn from(reason: CancelReason) -> Self {
        match reason {
            CancelReason::Expired => Self::Expired,
            CancelReason::CancelledByUser => Self::CancelledByUser,
        }
    }
}

/// One line of an order.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderItemView {
    #[schema(example = "019b3f2c-7d0e-7f00-b9e6-5c3a0f1d2e4b")]
    pub product_id: String,
    #[schema(minimum = 1, maximum = 1000, example = 1)]
    pub quantity: i64,
    /// The unit price when the order was placed, in minor units of the order's currency.
    #[schema(minimum = 0, example = 999_900)]
    pub unit_price: i64,
}

/// An order.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    #[schema(example = "019b3f2d-1a2b-7c3d-8e4f-5a6b7c8d9e0f")]
    pub order_id: String,
    #[schema(example = "user-42")]
    pub user_id: String,
    pub items: Vec<OrderItemView>,
    /// The total, in minor units of `currency`.
    #[schema(minimum = 0, example = 999_900)]
    pub amount: i64,
    #[schema(example = "CNY", pattern = "^[A-Z]{3}$")]
    pub currency: String,
    pub status: OrderStatusView,
    /// Why the order was cancelled: set when `status` is `cancelled`, `null` otherwise.
    #[schema(required = true)]
    pub cancel_reason: Option<CancelReasonView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Unpaid orders are cancelled (reason `expired`) within seconds after this instant.
    pub expires_at: DateTime<Utc>,
    /// When the order was paid; `null` unless `status` is `paid`.
    #[schema(required = true)]
    pub paid_at: Option<DateTime<Utc>>,
    /// When the order was cancelled; `null` unless `status` is `cancelled`.
    #[schema(required = true)]
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl From<Order> for OrderView {
    fn from(order: Order) -> Self {
        Self {
            order_id: order.id.into_string(),
            user_id: order.user_id,
            items: order
                .lines
                .into_iter()
                .map(|l| OrderItemView {
                    product_id: l.product_id,
                    quantity: l.quantity,
                    unit_price: l.unit_price.minor(),
                })
                .collect(),
            amount: order.amount.minor(),
            currency: order.amount.currency().to_string(),
            status: order.status.into(),
            cancel_reason: order.status.cancel_reason().map(Into::into),
            created_at: clock::to_utc(order.created_at),
            updated_at: clock::to_utc(order.updated_at),
            expires_at: clock::to_utc(order.expires_at),
            paid_at: order.paid_at.map(clock::to_utc),
            cancelled_at: order.cancelled_at.map(clock::to_utc),
        }
    }
}

/// One page of a user's orders.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderList {
    pub items: Vec<OrderView>,
    /// Pass as `cursor` to read the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_cursor: Option<String>,
}

/// One line of a new order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrderItem {
    #[schema(min_length = 1, example = "019b3f2c-7d0e-7f00-b9e6-5c3a0f1d2e4b")]
    pub product_id: String,
    /// Units of this product (1 to 1000).
    #[serde(deserialize_with = "json_integer")]
    #[schema(minimum = 1, maximum = 1000, example = 1)]
    pub quantity: i64,
}

/// A new order. Each product may appear on one line only.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrder {
    /// The customer. Optional: the order always belongs to the customer whose
    /// token places it; when given, it must be that customer's user id.
    #[schema(example = "user-42")]
    pub user_id: Option<String>,
    #[schema(min_items = 1, max_items = 50)]
    pub items: Vec<CreateOrderItem>,
}

impl CreateOrder {
    /// The request of `customer`; a `userId` naming anyone else is refused.
    /// (`spell` names a field as the route's body does.)
    fn into_domain(
        self,
        customer: Customer,
        spell: fn(RequestField) -> String,
    ) -> Result<PlaceOrder, Problem> {
        same_user(&customer, self.user_id.as_deref(), "userId")?;
        let lines = self
            .items
            .into_iter()
            .map(|i| LineFields {
                product_id: i.product_id,
                quantity: i.quantity,
            })
            .collect();
        PlaceOrder::parse(customer.0, lines).map_err(|v| OrderError::Invalid(v).into_problem(spell))
    }
}

/// 403 `user_mismatch` when a request names a user other than its token's.
fn same_user(customer: &Customer, named: Option<&str>, field: &str) -> Result<(), Problem> {
    match named {
        Some(named) if named != customer.0.as_str() => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "user_mismatch",
            "Another user",
        )
        .with_detail(format!(
            "`{field}` names another user than the token's subject: a customer acts only as themself (omit `{field}`)."
        ))
        .with_errors(vec![FieldViolation::new(
            field,
            "must be the user id of the token's subject",
        )])),
        _ => Ok(()),
    }
}

/// A request field as `POST /api/v1/orders` spells it.
pub(crate) fn rest_field(field: RequestField) -> String {
    match field {
        RequestField::Items => "items".into(),
        RequestField::ProductId(n) => format!("items[{n}].productId"),
        RequestField::Quantity(n) => format!("items[{n}].quantity"),
    }
}

/// Order errors as the REST routes' problems, with the request's fields
/// spelled as their bodies spell them (`items[1].quantity`).
impl From<OrderError> for Problem {
    fn from(error: OrderError) -> Self {
        error.into_problem(rest_field)
    }
}

/// A request field as the original spec's one-line `POST /createOrder` spells it.
fn original_field(field: RequestField) -> String {
    match field {
        RequestField::ProductId(_) => "productId".into(),
        RequestField::Quantity(_) | RequestField::Items => "quantity".into(),
    }
}

/// The optional `Idempotency-Key` header of `createOrder`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// Makes retries safe: a retry with the same key and body places nothing
    /// and answers 201 with the order the first request placed, as it is now
    /// (with `Idempotent-Replayed: true`): paid or cancelled since, it shows
    /// so, with its current `updatedAt`; it is not a copy of the first
    /// response. The same key with another body is refused (422
    /// `idempotency_key_reused`). 1 to 255 visible ASCII characters, per user.
    #[serde(rename = "Idempotency-Key")]
    #[param(
        nullable = false,
        min_length = 1,
        max_length = 255,
        pattern = "^[\\x21-\\x7e]{1,255}$",
        example = "9f1c2e7a-checkout-1"
    )]
    pub idempotency_key: Option<String>,
}

/// The longest `Idempotency-Key`, in bytes.
pub const IDEMPOTENCY_KEY_MAX_LEN: usize = 255;

/// Whether `key` is a well-formed `Idempotency-Key`: 1 to
/// [`IDEMPOTENCY_KEY_MAX_LEN`] visible ASCII characters (`!` to `~`).
pub fn is_idempotency_key(key: &str) -> bool {
    (1..=IDEMPOTENCY_KEY_MAX_LEN).contains(&key.len())
        && key.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// The `Idempotency-Key` header, when sent; 400 when it is malformed.
fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, Problem> {
    let Some(value) = req.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    let key = value.to_str().ok().filter(|k| is_idempotency_key(k));
    match key {
        Some(key) => Ok(Some(key.to_owned())),
        None => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            "Invalid Idempotency-Key",
        )
        .with_detail("Idempotency-Key must be 1 to 255 visible ASCII characters.")
        .with_errors(vec![FieldViolation::new(
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        )])),
    }
}

fn created(placed: Placed, body: impl Serialize) -> HttpResponse {
    let mut response = HttpResponse::Created();
    response.insert_header((
        header::LOCATION,
        format!("/api/v1/orders/{}", placed.order.id),
    ));
    if placed.replayed {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    response.json(body)
}

/// Why an order is not placed, on the REST route and its original-spec alias.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only: the handlers answer `Problem`s
enum PlacementRefusals {
    #[response(
        status = 400,
        description = "The body is not well-formed JSON, or the Idempotency-Key is malformed",
        content_type = "application/problem+json"
    )]
    BadRequest(Problem),
    #[response(status = 401)]
    Unauthorized(#[ref_response] CustomerUnauthorized),
    #[response(
        status = 403,
        description = "`userId` names another user than the token's subject (`user_mismatch`), or the admin token was presented (`customer_token_required`)",
        content_type = "application/problem+json"
    )]
    Forbidden(Problem),
    #[response(
        status = 404,
        description = "A line names a product that does not exist (`product_not_found`; `errors` names the line)",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
    #[response(
        status = 409,
        description = "Not enough stock (`insufficient_stock`; `errors` names the line and product), or a line names a product staff archived (`product_archived`; `errors` names the line); nothing was reserved",
        content_type = "application/problem+json"
    )]
    Conflict(Problem),
    #[response(status = 413)]
    TooLarge(#[ref_response] PayloadTooLarge),
    #[response(status = 415)]
    UnsupportedMediaType(#[ref_response] UnsupportedMediaType),
    #[response(
        status = 422,
        description = "A field is missing or invalid, a product is listed twice (`validation_failed`), the products have different currencies (`currency_mismatch`), or the Idempotency-Key was used with another body (`idempotency_key_reused`)",
        content_type = "application/problem+json"
    )]
    Invalid(Problem),
    #[response(status = 429)]
    TooManyRequests(#[ref_response] TooManyAuthFailures),
    #[response(status = 503)]
    Unavailable(#[ref_response] Unavailable),
}

/// Place an order
///
/// Reserves the stock of every line (all or nothing), snapshots the unit
/// prices and computes the amount. The order waits for payment until
/// `expiresAt`; after that it is cancelled and its stock released.
#[utoipa::path(
    operation_id = "createOrder",
    tag = "orders",
    security(("customerToken" = [])),
    params(IdempotencyKeyHeader),
    request_body = CreateOrder,
    responses(
        (status = 201, description = "The order was placed (or, for a retried Idempotency-Key, the order it placed, as it is now)", body = OrderView,
            headers(("Location" = String, description = "The order's URL"),
                    ("Idempotent-Replayed" = String, description = "`true` when this answers a retry of an `Idempotency-Key`: the body is the order the first request placed, as it is now (paid or cancelled since, it says so), not a copy of the first response"))),
        PlacementRefusals,
    )
)]
#[post("/orders")]
async fn create_order(
    customer: Customer,
    req: HttpRequest,
    orders: web::Data<OrderService>,
    body: Json<CreateOrder>,
) -> Result<HttpResponse, Problem> {
    let key = idempotency_key(&req)?;
    let placed = orders
        .place(body.into_inner().into_domain(customer, rest_field)?, key)
        .await?;
    let view = OrderView::from(placed.order.clone());
    Ok(created(placed, view))
}

/// Why an order is not read, on the REST route and its original-spec alias.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only: the handlers answer `Problem`s
enum ReadRefusals {
    #[response(status = 401)]
    Unauthorized(#[ref_response] CustomerUnauthorized),
    #[response(
        status = 404,
        description = "No order of the caller has this id (`order_not_found`; another customer's order is not found either)",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
    #[response(status = 429)]
    TooManyRequests(#[ref_response] TooManyAuthFailures),
    #[response(status = 503)]
    Unavailable(#[ref_response] Unavailable),
}

/// Get an order
#[utoipa::path(
    operation_id = "getOrderInfo",
    tag = "orders",
    security(("customerToken" = []), ("adminToken" = [])),
    params(("orderId" = String, Path, description = "The order's id", example = "019b3f2d-1a2b-7c3d-8e4f-5a6b7c8d9e0f")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        ReadRefusals,
    )
)]
#[get("/orders/{orderId}")]
async fn get_order_info(
    caller: Caller,
    orders: web::Data<OrderService>,
    id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let order = orders.get(&caller, OrderId::from(id.into_inner())).await?;
    Ok(HttpResponse::Ok().json(OrderView::from(order)))
}

/// The query of `listOrders` beside its page ([`PageQuery`]).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListOrdersQuery {
    /// Whose orders. A customer lists their own (omit it, or give their own
    /// user id); staff list every customer's unless they name one.
    #[param(example = "user-42")]
    pub user_id: Option<String>,
    /// Only orders in these statuses, comma-separated: `pending_payment`,
    /// `paid`, `cancelled`.
    #[param(
        nullable = false,
        pattern = "^(pending_payment|paid|cancelled)(,(pending_payment|paid|cancelled))*$",
        example = "paid,pending_payment"
    )]
    pub status: Option<String>,
    /// Only orders with a line of this product.
    #[param(
        nullable = false,
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00]*$",
        example = "019b3f2c-7d0e-7f00-b9e6-5c3a0f1d2e4b"
    )]
    pub product_id: Option<String>,
    /// Only orders created at or after this time (RFC 3339).
    #[param(nullable = false, format = DateTime, example = "2026-12-01T00:00:00Z")]
    pub created_from: Option<String>,
    /// Only orders created before this time (RFC 3339).
    #[param(nullable = false, format = DateTime, example = "2026-12-31T00:00:00Z")]
    pub created_to: Option<String>,
}

impl ListOrdersQuery {
    /// The filter it names (its user aside), naming each bad parameter.
    fn filter(&self) -> Result<OrderFilter, Problem> {
        let mut errors = Vec::new();
        let time = |field: &str, raw: &Option<String>, errors: &mut Vec<FieldViolation>| {
            raw.as_deref().and_then(|raw| {
                chrono::DateTime::parse_from_rfc3339(raw)
                    .map(|t| t.naive_utc())
                    .map_err(|_| {
                        errors.push(FieldViolation::new(
                            field,
                            "must be an RFC 3339 time, such as 2026-12-01T00:00:00Z",
                        ));
                    })
                    .ok()
            })
        };
        let created_from = time("createdFrom", &self.created_from, &mut errors);
        let created_to = time("createdTo", &self.created_to, &mut errors);
        let statuses = match self.status.as_deref() {
            Some(raw) => OrderFilter::parse_statuses(raw).unwrap_or_else(|message| {
                errors.push(FieldViolation::new("status", message));
                Vec::new()
            }),
            None => Vec::new(),
        };
        if self
            .product_id
            .as_deref()
            .is_some_and(|p| p.is_empty() || p.len() > 64 || p.contains('\0'))
        {
            errors.push(FieldViolation::new(
                "productId",
                "must be 1 to 64 characters",
            ));
        }
        if errors.is_empty() {
            Ok(OrderFilter {
                user_id: None,
                statuses,
                product_id: self.product_id.clone(),
                created_from,
                created_to,
            })
        } else {
            Err(invalid_query(errors))
        }
    }
}

/// List orders
///
/// A customer's own orders, oldest first; with a staff token, every
/// customer's (or the one `userId` names), newest first. Both narrow by
/// `status`, `productId`, `createdFrom` and `createdTo`, a page at a time
/// (a page never moves while orders are being placed).
#[utoipa::path(
    operation_id = "listOrders",
    tag = "orders",
    security(("customerToken" = []), ("adminToken" = [])),
    params(ListOrdersQuery, PageQuery),
    responses(
        (status = 200, description = "A page of orders", body = OrderList),
        (status = 400, description = "A filter, `limit` or `cursor` is invalid (`invalid_query`, `errors` names it)", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = CustomerUnauthorized),
        (status = 403, description = "`userId` names another user than the token's subject (`user_mismatch`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = TooManyAuthFailures),
        (status = 503, response = Unavailable),
    )
)]
#[get("/orders")]
async fn list_orders(
    caller: Caller,
    orders: web::Data<OrderService>,
    query: Query<ListOrdersQuery>,
    page: Query<PageQuery>,
) -> Result<HttpResponse, Problem> {
    let mut filter = query.0.filter()?;
    let user_id = query.0.user_id;
    let newest_first = match caller {
        Caller::Customer(user) => {
            let customer = Customer(user);
            same_user(&customer, user_id.as_deref(), "userId")?;
            filter.user_id = Some(customer.0.as_str().to_owned());
            false
        }
        Caller::Staff => {
            filter.user_id = user_id
                .map(|named| {
                    UserId::parse(&named)
                        .map(|u| u.as_str().to_owned())
                        .map_err(|m| invalid_query(vec![FieldViolation::new("userId", m)]))
                })
                .transpose()?;
            true
        }
    };
    let page = PageRequest::try_from(page.0)?;
    let page = orders.list(filter, newest_first, page).await?;
    Ok(HttpResponse::Ok().json(OrderList {
        items: page.orders.into_iter().map(OrderView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Cancel an order
///
/// Only while it is pending payment; its stock is released.
#[utoipa::path(
    operation_id = "cancelOrder",
    tag = "orders",
    security(("customerToken" = [])),
    params(("orderId" = String, Path, description = "The order's id", example = "019b3f2d-1a2b-7c3d-8e4f-5a6b7c8d9e0f")),
    responses(
        (status = 200, description = "The cancelled order", body = OrderView),
        (status = 401, response = CustomerUnauthorized),
        (status = 403, response = CustomerOnly),
        (status = 404, description = "No order of the caller has this id (`order_not_found`); nothing was changed", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The order is paid or already cancelled (`order_not_cancellable`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = TooManyAuthFailures),
        (status = 503, response = Unavailable),
    )
)]
#[post("/orders/{orderId}/cancel")]
async fn cancel_order(
    customer: Customer,
    orders: web::Data<OrderService>,
    id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let order = orders
        .cancel(&customer.0, OrderId::from(id.into_inner()))
        .await?;
    Ok(HttpResponse::Ok().json(OrderView::from(order)))
}

/// An order in the original spec's words: `orderAmount` and `orderStatus` besides the order's fields.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OriginalOrderView {
    /// The same as `amount`.
    #[schema(minimum = 0, example = 999_900)]
    pub order_amount: i64,
    /// The same as `status`.
    pub order_status: OrderStatusView,
    #[serde(flatten)]
    pub order: OrderView,
}

impl From<Order> for OriginalOrderView {
    fn from(order: Order) -> Self {
        let order = OrderView::from(order);
        Self {
            order_amount: order.amount,
            order_status: order.status,
            order,
        }
    }
}

/// The original spec's order: one product line.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OriginalCreateOrder {
    #[schema(min_length = 1, example = "019b3f2c-7d0e-7f00-b9e6-5c3a0f1d2e4b")]
    pub product_id: String,
    #[serde(deserialize_with = "json_integer")]
    #[schema(minimum = 1, maximum = 1000, example = 1)]
    pub quantity: i64,
    /// Optional; when given, the user id of the token's subject.
    #[schema(example = "user-42")]
    pub user_id: Option<String>,
}

/// Place an order (original spec path)
///
/// The original spec's `createOrder`: one product line; same rules as `POST /api/v1/orders`.
#[utoipa::path(
    operation_id = "originalCreateOrder",
    tag = "original spec",
    security(("customerToken" = [])),
    params(IdempotencyKeyHeader),
    request_body = OriginalCreateOrder,
    responses(
        (status = 201, description = "The order was placed", body = OriginalOrderView,
            headers(("Location" = String, description = "The order's URL"),
                    ("Idempotent-Replayed" = String, description = "`true` when this answers a retry of an `Idempotency-Key`: the body is the order the first request placed, as it is now (paid or cancelled since, it says so), not a copy of the first response"))),
        PlacementRefusals,
    )
)]
#[post("/createOrder")]
async fn original_create_order(
    customer: Customer,
    req: HttpRequest,
    orders: web::Data<OrderService>,
    body: Json<OriginalCreateOrder>,
) -> Result<HttpResponse, Problem> {
    let key = idempotency_key(&req)?;
    let OriginalCreateOrder {
        product_id,
        quantity,
        user_id,
    } = body.into_inner();
    let request = CreateOrder {
        user_id,
        items: vec![CreateOrderItem {
            product_id,
            quantity,
        }],
    }
    .into_domain(customer, original_field)?;
    let placed = orders
        .place(request, key)
        .await
        .map_err(|e| e.into_problem(original_field))?;
    let view = OriginalOrderView::from(placed.order.clone());
    Ok(created(placed, view))
}

/// The original spec's query for one order.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct OrderIdQuery {
    /// The order's id.
    #[param(example = "019b3f2d-1a2b-7c3d-8e4f-5a6b7c8d9e0f")]
    pub order_id: String,
}

/// Get an order (original spec path)
#[utoipa::path(
    operation_id = "originalGetOrderInfo",
    tag = "original spec",
    security(("customerToken" = []), ("adminToken" = [])),
    params(OrderIdQuery),
    responses(
        (status = 200, description = "The order", body = OriginalOrderView),
        (status = 400, description = "`orderId` is missing", body = Problem, content_type = "application/problem+json"),
        ReadRefusals,
    )
)]
#[get("/getOrderInfo")]
async fn original_get_order_info(
    caller: Caller,
    orders: web::Data<OrderService>,
    query: Query<OrderIdQuery>,
) -> Result<HttpResponse, Problem> {
    let order = orders.get(&caller, OrderId::from(query.0.order_id)).await?;
    Ok(HttpResponse::Ok().json(OriginalOrderView::from(order)))
}

//! The order context's internal API (under `/internal/v1`, served only when
//! `SHOP__PORTS__TOKEN` is set): the [`OrderLookup`] port for a payment
//! context running in another process. Documented in `openapi-internal.yaml`,
//! never in the public document.

use actix_web::{HttpResponse, get, web};
use shared_kernel::Problem;
use shared_kernel::model::ports::OrderLookup;
use shared_kernel::remote::internal::{self, OrderEntry, Service, codes};
use shared_kernel::web::problem::responses::Unavailable;
use utoipa_actix_web::service_config::ServiceConfig;

/// Mounts the internal order routes (under the app's `/internal/v1` scope).
/// The app gives them the lookup as `web::Data<dyn OrderLookup>`.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(order_lookup);
}

/// An order, for the payment context
///
/// Its customer, amount, state and expiry.
#[utoipa::path(
    operation_id = "internalOrderLookup",
    tag = "orders",
    security(("serviceToken" = [])),
    params(("orderId" = String, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The order", body = OrderEntry),
        (status = 401, description = "No or a wrong service token (`unauthorized`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "A wrong service token from a client address that keeps presenting wrong credentials (`too_many_auth_failures`), answered after a delay; `Retry-After` tells when to try again. The right token always passes.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No order has this id (`order_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
#[get("/orders/{orderId}")]
async fn order_lookup(
    _service: Service,
    orders: web::Data<dyn OrderLookup>,
    id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let id = id.into_inner();
    match orders.order(&id).await {
        Ok(Some(order)) => Ok(HttpResponse::Ok().json(OrderEntry::from(&order))),
        Ok(None) => Err(Problem::not_found(
            codes::ORDER_NOT_FOUND,
            format!("No order has the id {id}."),
        )),
        Err(error) => Err(internal::port_problem("order lookup", error)),
    }
}

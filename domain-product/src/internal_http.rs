//! The product context's internal API (under `/internal/v1`, served only
//! when `SHOP__PORTS__TOKEN` is set): the [`Inventory`] port for an order
//! context running in another process. Documented in `openapi-internal.yaml`,
//! never in the public document.

use std::collections::HashSet;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, delete, post, put, web};
use shared_kernel::model::ports::{Inventory, PortError, ReservationLine, ReserveError};
use shared_kernel::remote::internal::{
    self, ProductEntry, ProductsAnswer, ProductsRequest, Refusal, ReserveAnswer, ReserveRequest,
    ReservedEntry, Service, ShortageEntry, codes,
};
use shared_kernel::web::extract::Json;
use shared_kernel::web::problem::responses::{MalformedJson, Unavailable};
use shared_kernel::{FieldViolation, Problem};
use utoipa_actix_web::service_config::ServiceConfig;

/// Mounts the internal inventory routes (under the app's `/internal/v1` scope).
/// The app gives them the inventory as `web::Data<dyn Inventory>`.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(inventory_products)
        .service(reserve)
        .service(release);
}

/// The most product ids one lookup takes.
const MAX_IDS: usize = 1000;
/// The most lines one reservation takes.
const MAX_LINES: usize = 100;
/// The most units one line takes.
const MAX_QUANTITY: i64 = 1_000_000_000;

fn port_problem(error: PortError) -> Problem {
    internal::port_problem("inventory", error)
}

fn reservation_id(raw: &str) -> Result<(), Problem> {
    if (1..=128).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(Problem::validation(vec![FieldViolation::new(
            "reservationId",
            "must be 1 to 128 printable characters",
        )]))
    }
}

/// Products by id
///
/// The products among `productIds` that exist, with their price and stock now.
#[utoipa::path(
    operation_id = "internalInventoryProducts",
    tag = "inventory",
    security(("serviceToken" = [])),
    request_body = ProductsRequest,
    responses(
        (status = 200, description = "The products that exist, in no particular order", body = ProductsAnswer),
        (status = 400, response = MalformedJson),
        (status = 401, description = "No or a wrong service token (`unauthorized`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "A wrong service token from a client address that keeps presenting wrong credentials (`too_many_auth_failures`), answered after a delay; `Retry-After` tells when to try again. The right token always passes.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "More than 1000 ids (`validation_failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
#[post("/inventory/products")]
async fn inventory_products(
    _service: Service,
    inventory: web::Data<dyn Inventory>,
    body: Json<ProductsRequest>,
) -> Result<HttpResponse, Problem> {
    let ids = body.0.product_ids;
    if ids.len() > MAX_IDS {
        return Err(Problem::validation(vec![FieldViolation::new(
            "productIds",
            format!("at most {MAX_IDS} ids"),
        )]));
    }
    let products = inventory.products(&ids).await.map_err(port_problem)?;
    Ok(HttpResponse::Ok().json(ProductsAnswer {
        products: products.iter().map(ProductEntry::from).collect(),
    }))
}

/// Reserve stock
///
/// Reserves every line or none, never letting stock go below zero.
/// Idempotent per reservation id: reserving again answers the first
/// reservation and takes nothing more. A reservation id released before
/// cannot be reserved (`reservation_released`).
#[utoipa::path(
    operation_id = "internalReserve",
    tag = "inventory",
    security(("serviceToken" = [])),
    params(("reservationId" = String, Path, description = "The reservation's id (the order's id)")),
    request_body = ReserveRequest,
    responses(
        (status = 200, description = "Every line is reserved", body = ReserveAnswer),
        (status = 400, response = MalformedJson),
        (status = 401, description = "No or a wrong service token (`unauthorized`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "A wrong service token from a client address that keeps presenting wrong credentials (`too_many_auth_failures`), answered after a delay; `Retry-After` tells when to try again. The right token always passes.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not enough stock (`insufficient_stock`, with `shortages`), or the reservation was released before (`reservation_released`); nothing was reserved", body = Refusal, content_type = "application/problem+json"),
        (status = 422, description = "Some products do not exist (`unknown_products`, with `productIds`), or the request is invalid (`validation_failed`); nothing was reserved", body = Refusal, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
#[put("/inventory/reservations/{reservationId}")]
async fn reserve(
    _service: Service,
    inventory: web::Data<dyn Inventory>,
    id: web::Path<String>,
    body: Json<ReserveRequest>,
) -> Result<HttpResponse, Problem> {
    let id = id.into_inner();
    reservation_id(&id)?;
    let request = body.0;
    let mut errors = Vec::new();
    if request.lines.is_empty() || request.lines.len() > MAX_LINES {
        errors.push(FieldViolation::new(
            "lines",
            format!("must hold 1 to {MAX_LINES} lines"),
        ));
    }
    let mut seen = HashSet::new();
    for (i, line) in request.lines.iter().enumerate() {
        if !(1..=MAX_QUANTITY).contains(&line.quantity) {
            errors.push(FieldViolation::new(
                format!("lines[{i}].quantity"),
                format!("must be 1 to {MAX_QUANTITY}"),
            ));
        }
        if !seen.insert(line.product_id.as_str()) {
            errors.push(FieldViolation::new(
                format!("lines[{i}].productId"),
                "names a product another line names",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(Problem::validation(errors));
    }
    let lines: Vec<ReservationLine> = request
        .lines
        .into_iter()
        .map(|l| ReservationLine {
            product_id: l.product_id,
            quantity: l.quantity,
        })
        .collect();
    match inventory.reserve(&id, &lines, request.hold_until).await {
        Ok(reserved) => Ok(HttpResponse::Ok().json(ReserveAnswer {
            reservation_id: id,
            lines: reserved.iter().map(ReservedEntry::from).collect(),
        })),
        Err(ReserveError::UnknownProducts(ids)) => Ok(Refusal {
            problem: Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                codes::UNKNOWN_PRODUCTS,
                "Unknown products",
            )
            .with_detail(format!("No product has the id {}.", ids.join(", "))),
            product_ids: ids,
            shortages: Vec::new(),
        }
        .response()),
        Err(ReserveError::InsufficientStock(shortages)) => Ok(Refusal {
            problem: Problem::new(
                StatusCode::CONFLICT,
                codes::INSUFFICIENT_STOCK,
                "Insufficient stock",
            )
            .with_detail("Not enough stock; nothing was reserved."),
            product_ids: Vec::new(),
            shortages: shortages.iter().map(ShortageEntry::from).collect(),
        }
        .response()),
        Err(ReserveError::ArchivedProducts(ids)) => Ok(Refusal {
            problem: Problem::new(
                StatusCode::CONFLICT,
                codes::PRODUCT_ARCHIVED,
                "Product archived",
            )
            .with_detail(format!(
                "Archived products are not on sale: {}; nothing was reserved.",
                ids.join(", ")
            )),
            product_ids: ids,
            shortages: Vec::new(),
        }
        .response()),
        Err(ReserveError::AlreadyReleased) => Ok(Refusal {
            problem: Problem::new(
                StatusCode::CONFLICT,
                codes::RESERVATION_RELEASED,
                "Reservation released",
            )
            .with_detail("This reservation was released; it cannot be reserved again."),
            product_ids: Vec::new(),
            shortages: Vec::new(),
        }
        .response()),
        Err(ReserveError::Port(error)) => Err(port_problem(error)),
    }
}

/// Release a reservation
///
/// Gives the reserved stock back. Idempotent; releasing an unknown
/// reservation records it, so that a late reservation with that id takes nothing.
#[utoipa::path(
    operation_id = "internalRelease",
    tag = "inventory",
    security(("serviceToken" = [])),
    params(("reservationId" = String, Path, description = "The reservation's id (the order's id)")),
    responses(
        (status = 204, description = "Released (or released before)"),
        (status = 401, description = "No or a wrong service token (`unauthorized`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "A wrong service token from a client address that keeps presenting wrong credentials (`too_many_auth_failures`), answered after a delay; `Retry-After` tells when to try again. The right token always passes.", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The reservation id is invalid (`validation_failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
#[delete("/inventory/reservations/{reservationId}")]
async fn release(
    _service: Service,
    inventory: web::Data<dyn Inventory>,
    id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let id = id.into_inner();
    reservation_id(&id)?;
    inventory.release(&id).await.map_err(port_problem)?;
    Ok(HttpResponse::NoContent().finish())
}

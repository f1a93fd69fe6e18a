use actix_web::http::StatusCode;
use shared_kernel::model::ports::{PortError, Shortage};
use shared_kernel::storage::db::DbError;
use shared_kernel::{FieldViolation, Problem};

use crate::model::{OrderId, OrderStatus, RequestField, Violation};

/// What can go wrong in the order context's use cases.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("no order {0}")]
    NotFound(OrderId),
    #[error("invalid order request")]
    Invalid(Vec<Violation>),
    /// The lines that name products that do not exist, and those ids.
    #[error("unknown products")]
    UnknownProducts(Vec<(RequestField, String)>),
    #[error("the products are priced in different currencies: {0}")]
    MixedCurrencies(String),
    /// The lines whose quantity is more than the stock, and by how much.
    #[error("not enough stock")]
    InsufficientStock(Vec<(RequestField, Shortage)>),
    /// The lines that name a product staff took off sale.
    #[error("archived products")]
    ArchivedProducts(Vec<(RequestField, String)>),
    #[error("the order is {0:?} and can no longer be cancelled")]
    NotCancellable(OrderStatus),
    #[error("the idempotency key was used with another request")]
    KeyReused,
    #[error(transparent)]
    Port(#[from] PortError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for OrderError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Db(DbError::Query(error))
    }
}

impl OrderError {
    /// The one place where order errors become HTTP problems; `spell`, given
    /// by the HTTP adapter, names a request field in the terms of the body
    /// the route takes (errors know nothing of the routes).
    pub fn into_problem(self, spell: fn(RequestField) -> String) -> Problem {
        let violations = |errors: Vec<Violation>| -> Vec<FieldViolation> {
            errors
                .into_iter()
                .map(|v| FieldViolation::new(spell(v.field), v.message))
                .collect()
        };
        match self {
            OrderError::NotFound(id) => {
                Problem::new(StatusCode::NOT_FOUND, "order_not_found", "Order not found")
                    .with_detail(format!("No order has the id \"{id}\"."))
            }
            OrderError::Invalid(errors) => Problem::validation(violations(errors)),
            OrderError::UnknownProducts(lines) => Problem::new(
                StatusCode::NOT_FOUND,
                "product_not_found",
                "Product not found",
            )
            .with_detail("An order line names a product that does not exist.")
            .with_errors(
                lines
                    .into_iter()
                    .map(|(field, id)| {
                        FieldViolation::new(spell(field), format!("no product has the id {id:?}"))
                    })
                    .collect(),
            ),
            OrderError::ArchivedProducts(lines) => Problem::new(
                StatusCode::CONFLICT,
                "product_archived",
                "Product archived",
            )
            .with_detail(format!(
                "An order line names a product that is no longer on sale ({}); nothing was reserved.",
                lines
                    .iter()
                    .map(|(_, id)| id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .with_errors(
                lines
                    .into_iter()
                    .map(|(field, id)| {
                        FieldViolation::new(spell(field), format!("product {id:?} is archived"))
                    })
                    .collect(),
            ),
            OrderError::MixedCurrencies(message) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "currency_mismatch",
                "Currency mismatch",
            )
            .with_detail("An order is paid in one currency; these products are priced in several.")
            .with_errors(vec![FieldViolation::new(
                spell(RequestField::Items),
                message,
            )]),
            OrderError::InsufficientStock(shortages) => {
                let detail = shortages
                    .iter()
                    .map(|(_, s)| {
                        format!(
                            "product {} has {} in stock, {} requested",
                            s.product_id, s.available, s.requested
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                let errors = shortages
                    .into_iter()
                    .map(|(field, s)| {
                        FieldViolation::new(
                            spell(field),
                            format!("only {} of product {} in stock", s.available, s.product_id),
                        )
                    })
                    .collect();
                Problem::new(
                    StatusCode::CONFLICT,
                    "insufficient_stock",
                    "Insufficient stock",
                )
                .with_detail(format!("Not enough stock: {detail}."))
                .with_errors(errors)
            }
            OrderError::NotCancellable(status) => Problem::new(
                StatusCode::CONFLICT,
                "order_not_cancellable",
                "Order cannot be cancelled",
            )
            .with_detail(format!(
                "The order is {}; only an order pending payment can be cancelled.",
                status.as_str()
            )),
            OrderError::KeyReused => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "Idempotency key reused",
            )
            .with_detail("This Idempotency-Key was already used with a different request body."),
            OrderError::Port(PortError::Unavailable(detail)) => {
                // The database, or another context's process (split mode) is out of reach.
                tracing::warn!(%detail, "a port is unavailable");
                Problem::unavailable(
                    "A service this request needs is unavailable; try again shortly.",
                )
            }
            OrderError::Port(PortError::Unexpected(error)) => Problem::internal(&error),
            OrderError::Db(error) => error.into(),
        }
    }
}

use actix_web::http::StatusCode;
use shared_kernel::storage::db::DbError;
use shared_kernel::web::extract::invalid_query;
use shared_kernel::{FieldViolation, Problem};

use crate::model::ProductId;

/// What can go wrong in the catalog's use cases.
#[derive(Debug, thiserror::Error)]
pub enum ProductError {
    #[error("no product {0}")]
    NotFound(ProductId),
    #[error("invalid product fields")]
    Invalid(Vec<FieldViolation>),
    /// An adjustment would take the stock below zero: it has `available`.
    #[error("not enough stock")]
    InsufficientStock {
        product_id: ProductId,
        available: i64,
        delta: i64,
    },
    /// The product changed since the representation the client's `If-Match` names.
    #[error("the product changed since it was read")]
    PreconditionFailed(ProductId),
    /// A page's cursor names no product (a cursor of another sort's pages
    /// names one too: only a made-up one names none).
    #[error("the cursor names no product")]
    UnknownCursor,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for ProductError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Db(DbError::Query(error))
    }
}

/// The one place where catalog errors become HTTP problems.
impl From<ProductError> for Problem {
    fn from(error: ProductError) -> Self {
        match error {
            ProductError::NotFound(id) => Problem::new(
                StatusCode::NOT_FOUND,
                "product_not_found",
                "Product not found",
            )
            .with_detail(format!("No product has the id \"{id}\".")),
            ProductError::Invalid(errors) => Problem::validation(errors),
            ProductError::InsufficientStock {
                product_id,
                available,
                delta,
            } => Problem::new(
                StatusCode::CONFLICT,
                "insufficient_stock",
                "Insufficient stock",
            )
            .with_detail(format!(
                "Product {product_id} has {available} in stock; an adjustment of {delta} would take it below zero. Nothing changed."
            ))
            .with_errors(vec![FieldViolation::new(
                "delta",
                format!("must be at least -{available}"),
            )]),
            ProductError::PreconditionFailed(id) => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                "Precondition failed",
            )
            .with_detail(format!(
                "Product {id} changed since the representation If-Match names (someone saved first, or its stock moved); read it again. Nothing changed."
            )),
            ProductError::UnknownCursor => invalid_query(vec![FieldViolation::new(
                "cursor",
                "names no product: pass the nextCursor of the previous page",
            )]),
            ProductError::Db(error) => error.into(),
        }
    }
}

//! The catalog's HTTP adapter: request bodies, views, handlers and their
//! OpenAPI descriptions. Bodies become validated domain values in one place
//! (`into_domain`); handlers only translate.

use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest, HttpResponse, get, patch, post, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared_kernel::audit::Actor;
use shared_kernel::model::clock;
use shared_kernel::web::auth::Admin;
use shared_kernel::web::extract::{Json, Query, invalid_query, json_integer};
use shared_kernel::web::pagination::{PageQuery, PageRequest};
use shared_kernel::web::problem::responses::{
    MalformedJson, PayloadTooLarge, TooManyAuthFailures, Unauthorized, Unavailable,
    UnsupportedMediaType,
};
use shared_kernel::{FieldViolation, Problem};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::ProductCatalog;
use crate::cache::CachedProduct;
use crate::error::ProductError;
use crate::model::{
    MAX_STOCK, NewProduct, NewProductFields, Product, ProductFilter, ProductId, ProductPatch,
    ProductSort, ProductStatus, Stock, StockAdjustment, StockMovement, checked, parse_search,
};
use crate::service::Precondition;

/// Mounts the REST routes (under the app's `/api/v1` scope).
pub fn configure_api(cfg: &mut ServiceConfig) {
    cfg.service(list_products)
        .service(create_product)
        .service(get_product_info)
        .service(update_product_stock)
        .service(archive_product)
        .service(restore_product)
        .service(adjust_product_stock)
        .service(list_stock_movements)
        .service(update_product);
}

/// Mounts the original spec's literal paths, thin aliases over the same use cases.
pub fn configure_original_spec(cfg: &mut ServiceConfig) {
    cfg.service(original_get_product_info)
        .service(original_update_product_stock);
}

/// A product in the catalog.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductView {
    /// The product's id.
    #[schema(example = "019b3f2c-7d0e-7f00-b9e6-5c3a0f1d2e4b")]
    pub product_id: String,
    #[schema(example = "iPhone 15")]
    pub name: String,
    #[schema(example = "Apple iPhone 15, 128 GB, black")]
    pub description: String,
    /// Unit price in minor units of `currency` (fen for CNY): 999900 is 9,999.00.
    #[schema(minimum = 0, maximum = 10_000_000_000_i64, example = 999_900)]
    pub price: i64,
    /// ISO 4217 currency code.
    #[schema(example = "CNY", pattern = "^[A-Z]{3}$")]
    pub currency: String,
    /// Units on hand that can still be ordered. (An admin sets at most
    /// 1,000,000,000; units released by cancelled orders come on top.)
    #[schema(minimum = 0, example = 100)]
    pub stock: i64,
    /// `active`: on sale. `archived`: off sale (still read by id; ordering it is 409 `product_archived`).
    #[schema(example = "active")]
    pub status: ProductStatusView,
    /// Below this many units in stock, `product.stock_low` is told once; null: never.
    #[schema(required = true, minimum = 0, example = 10)]
    pub low_stock_threshold: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Whether a product is on sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProductStatusView {
    Active,
    Archived,
}

impl From<ProductStatus> for ProductStatusView {
    fn from(status: ProductStatus) -> Self {
        match status {
            ProductStatus::Active => Self::Active,
            ProductStatus::Archived => Self::Archived,
        }
    }
}

impl From<Product> for ProductView {
    fn from(p: Product) -> Self {
        Self::from(&p)
    }
}

impl From<&Product> for ProductView {
    fn from(p: &Product) -> Self {
        Self {
            product_id: p.id.as_str().to_owned(),
            name: p.name.as_str().to_owned(),
            description: p.description.as_str().to_owned(),
            price: p.price.minor(),
            currency: p.price.currency().to_string(),
            stock: p.stock.units(),
            status: p.status.into(),
            low_stock_threshold: p.low_stock_threshold,
            created_at: clock::to_utc(p.created_at),
            updated_at: clock::to_utc(p.updated_at),
        }
    }
}

/// One page of the catalog, in a stable order.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductList {
    pub items: Vec<ProductView>,
    /// Pass as `cursor` to read the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_cursor: Option<String>,
}

/// A new product.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateProduct {
    /// 1 to 200 characters, no control characters, not blank.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$",
        example = "iPhone 15"
    )]
    pub name: String,
    /// Up to 2000 characters (no NUL); empty when omitted.
    #[serde(default)]
    #[schema(
        max_length = 2000,
        pattern = r"^[^\x00]*$",
        example = "Apple iPhone 15, 128 GB, black"
    )]
    pub description: String,
    /// Unit price in minor units of `currency` (fen for CNY), at least 1: no
    /// payment provider takes a payment of nothing.
    #[schema(minimum = 1, maximum = 10_000_000_000_i64, example = 999_900)]
    #[serde(deserialize_with = "json_integer")]
    pub price: i64,
    /// ISO 4217 currency code.
    #[schema(
        pattern = "^[A-Z]{3}$",
        min_length = 3,
        max_length = 3,
        example = "CNY"
    )]
    pub currency: String,
    /// Units on hand.
    #[schema(minimum = 0, maximum = 1_000_000_000, example = 100)]
    #[serde(deserialize_with = "json_integer")]
    pub stock: i64,
}

impl CreateProduct {
    fn into_domain(self) -> Result<NewProduct, ProductError> {
        NewProduct::parse(NewProductFields {
            name: &self.name,
            description: &self.description,
            price: self.price,
            currency: &self.currency,
            stock: self.stock,
        })
        .map_err(ProductError::Invalid)
    }
}

/// The new number of units on hand (absolute, not a delta).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStock {
    #[schema(minimum = 0, maximum = 1_000_000_000, example = 80)]
    #[serde(deserialize_with = "json_integer")]
    pub new_stock: i64,
}

/// A change of the units on hand by a delta.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdjustStock {
    /// Units to add (a restock, units found or returned) or, negative, to
    /// take away (damaged, lost); not 0, at most 1,000,000,000 either way.
    #[schema(schema_with = delta_schema, example = -3)]
    #[serde(deserialize_with = "json_integer")]
    pub delta: i64,
    /// Why the stock changed.
    #[schema(value_type = ReasonView)]
    pub reason: String,
    /// What staff want to remember of it.
    #[serde(default)]
    #[schema(
        max_length = 500,
        pattern = r"^[^\x00]*$",
        example = "dropped in the warehouse"
    )]
    pub note: Option<String>,
}

/// Why staff changed the units on hand.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // documentation only: `reason` is read as text and checked with the other fields
pub enum ReasonView {
    Restock,
    Damaged,
    Lost,
    Found,
    Returned,
    Correction,
}

/// A delta: an integer from -1,000,000,000 to 1,000,000,000 that is not 0.
fn delta_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    let range = |min: i64, max: i64| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Int64,
            )))
            .minimum(Some(min))
            .maximum(Some(max))
    };
    OneOfBuilder::new()
        .item(range(-MAX_STOCK, -1))
        .item(range(1, MAX_STOCK))
        .description(Some("Not 0; at most 1,000,000,000 either way."))
        .build()
        .into()
}

/// One staff change of a product's stock (a set or an adjustment).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockMovementView {
    #[schema(example = "019b3f2c-7d0e-7f00-b9e6-5c3a0f1d2e4b")]
    pub movement_id: String,
    #[schema(example = "019b3f2c-7d0e-7f00-b9e6-5c3a0f1d2e4b")]
    pub product_id: String,
    /// A staff token's `sub`, or `admin-token`.
    #[schema(example = "admin-token")]
    pub actor: String,
    /// `set` (updateProductStock), or the adjustment's reason.
    #[schema(example = "damaged")]
    pub reason: String,
    #[schema(required = true, example = "dropped in the warehouse")]
    pub note: Option<String>,
    /// The change of the units on hand (for a set: the new stock less the old).
    #[schema(example = -3)]
    pub delta: i64,
    /// The units on hand after it.
    #[schema(minimum = 0, example = 97)]
    pub stock_after: i64,
    /// The id of the request that made it (its `X-Request-Id`).
    #[schema(required = true, example = "7f0c3a52-9d1e-4b8a-a3c2-5e6f7a8b9c0d")]
    pub request_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

impl From<StockMovement> for StockMovementView {
    fn from(m: StockMovement) -> Self {
        Self {
            movement_id: m.id,
            product_id: m.product_id.to_string(),
            actor: m.actor,
            reason: m.reason,
            note: m.note,
            delta: m.delta,
            stock_after: m.stock_after,
            request_id: m.request_id,
            occurred_at: clock::to_utc(m.occurred_at),
        }
    }
}

/// A page of a product's stock movements, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockMovementList {
    pub items: Vec<StockMovementView>,
    /// Pass as `cursor` to read the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_cursor: Option<String>,
}

/// A product's representation, as every product answer carries it.
fn render(product: &Product) -> Result<web::Bytes, Problem> {
    serde_json::to_vec(&ProductView::from(product))
        .map(web::Bytes::from)
        .map_err(|e| Problem::internal(&anyhow::Error::new(e)))
}

/// A strong validator of a representation: FNV-1a (64 bits) of its bytes,
/// quoted. Every change of a product (an edit, its stock, its status)
/// changes its body, and so its tag.
fn etag_of(body: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in body {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{hash:016x}\"")
}

/// The entity tags of an `If-Match` or `If-None-Match` header: `*` (any),
/// or a list of tags, strong (`"..."`) or weak (`W/"..."`).
enum Tags {
    Any,
    List(Vec<String>),
}

impl Tags {
    fn of(req: &HttpRequest, name: header::HeaderName) -> Option<Self> {
        let values: Vec<&str> = req
            .headers()
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.iter().any(|v| v.trim() == "*") {
            return Some(Self::Any);
        }
        let tags: Vec<String> = values
            .iter()
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        // A header that names no tag at all is no precondition.
        (!tags.is_empty()).then_some(Self::List(tags))
    }

    /// Strong comparison (`If-Match`): a weak tag never matches.
    fn match_strong(&self, etag: &str) -> bool {
        match self {
            Self::Any => true,
            Self::List(tags) => tags.iter().any(|t| t == etag),
        }
    }

    /// Weak comparison (`If-None-Match`): `W/` is ignored.
    fn match_weak(&self, etag: &str) -> bool {
        match self {
            Self::Any => true,
            Self::List(tags) => tags
                .iter()
                .any(|t| t.strip_prefix("W/").unwrap_or(t) == etag),
        }
    }
}

/// A product answer: its representation with its `ETag`.
fn product_answer(status: StatusCode, product: &Product) -> Result<HttpResponse, Problem> {
    let body = render(product)?;
    Ok(HttpResponse::build(status)
        .insert_header((header::ETAG, etag_of(&body)))
        .content_type(header::ContentType::json())
        .body(body))
}

/// A product read by id: its JSON body is rendered once per cached entry;
/// a client that holds it already (`If-None-Match`) gets 304.
fn product_response(req: &HttpRequest, product: &CachedProduct) -> Result<HttpResponse, Problem> {
    let body = product.rendered(render)?;
    let etag = etag_of(&body);
    if Tags::of(req, header::IF_NONE_MATCH).is_some_and(|tags| tags.match_weak(&etag)) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish());
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag))
        .content_type(header::ContentType::json())
        .body(body))
}

fn parse_stock(field: &str, units: i64) -> Result<Stock, ProductError> {
    let mut errors: Vec<FieldViolation> = Vec::new();
    checked(field, Stock::new(units), &mut errors).ok_or(ProductError::Invalid(errors))
}

/// Which products `listProducts` lists.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusFilter {
    /// On sale (the default; anyone may list them).
    #[default]
    Active,
    /// Off sale (staff only).
    Archived,
    /// Both (staff only).
    All,
}

/// The order of `listProducts`.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
pub enum SortParam {
    /// Oldest first (the default).
    #[default]
    #[serde(rename = "createdAt")]
    CreatedAt,
    /// Newest first.
    #[serde(rename = "-createdAt")]
    NewestFirst,
    /// Cheapest first.
    #[serde(rename = "price")]
    Price,
    /// Dearest first.
    #[serde(rename = "-price")]
    DearestFirst,
    /// By name, case-insensitively.
    #[serde(rename = "name")]
    Name,
}

impl From<SortParam> for ProductSort {
    fn from(sort: SortParam) -> Self {
        match sort {
            SortParam::CreatedAt => Self::Oldest,
            SortParam::NewestFirst => Self::Newest,
            SortParam::Price => Self::CheapestFirst,
            SortParam::DearestFirst => Self::DearestFirst,
            SortParam::Name => Self::Name,
        }
    }
}

/// The filters and order of `listProducts` beside its page ([`PageQuery`]).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListProductsQuery {
    /// `active` (the default), or, for staff, `archived` or `all`.
    #[param(inline)]
    pub status: Option<StatusFilter>,
    /// Only products whose name contains this text, case-insensitively and
    /// literally (`%` and `_` are plain characters).
    #[param(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00]*$",
        example = "phone"
    )]
    pub q: Option<String>,
    /// The order: `createdAt` (the default: oldest first), `-createdAt`,
    /// `price`, `-price` or `name`. Every order ends with the id, so pages
    /// never repeat or skip a product; keep the same `sort` across pages.
    #[param(inline)]
    pub sort: Option<SortParam>,
}

/// List the catalog
///
/// Products on sale, oldest first unless `sort` says otherwise, a page at a
/// time; `q` finds them by name. Staff may list archived products too
/// (`status=archived` or `all`: 401 without credentials, 403 with a
/// customer's token).
#[utoipa::path(
    operation_id = "listProducts",
    tag = "products",
    security((), ("adminToken" = [])),
    params(ListProductsQuery, PageQuery),
    responses(
        (status = 200, description = "A page of products", body = ProductList),
        (status = 400, description = "An invalid `status`, `q`, `sort`, `limit` or `cursor` (`invalid_query`, `errors` names it)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`status=archived` or `all` without staff credentials", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = TooManyAuthFailures),
        (status = 503, response = Unavailable),
    )
)]
#[get("/products")]
async fn list_products(
    req: HttpRequest,
    catalog: web::Data<ProductCatalog>,
    query: Query<ListProductsQuery>,
    page: Query<PageQuery>,
) -> actix_web::Result<HttpResponse> {
    let ListProductsQuery { status, q, sort } = query.0;
    let status = match status.unwrap_or_default() {
        StatusFilter::Active => Some(ProductStatus::Active),
        staff_only => {
            Admin::extract(&req).await?;
            match staff_only {
                StatusFilter::Archived => Some(ProductStatus::Archived),
                _ => None,
            }
        }
    };
    let name_contains = q
        .map(|q| parse_search(&q))
        .transpose()
        .map_err(|message| invalid_query(vec![FieldViolation::new("q", message)]))?;
    let page = PageRequest::try_from(page.0)?;
    let filter = ProductFilter {
        status,
        name_contains,
    };
    let page = catalog
        .list(filter, sort.unwrap_or_default().into(), page)
        .await
        .map_err(Problem::from)?;
    Ok(HttpResponse::Ok().json(ProductList {
        items: page.products.into_iter().map(ProductView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Add a product (admin)
#[utoipa::path(
    operation_id = "createProduct",
    tag = "products",
    request_body = CreateProduct,
    security(("adminToken" = [])),
    responses(
        (status = 201, description = "The product was added", body = ProductView,
            headers(("Location" = String, description = "The new product's URL"))),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyAuthFailures),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "A field is missing or invalid; `errors` names it", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
#[post("/products")]
async fn create_product(
    admin: Admin,
    catalog: web::Data<ProductCatalog>,
    body: Json<CreateProduct>,
) -> Result<HttpResponse, Problem> {
    let new = body.into_inner().into_domain()?;
    let product = catalog.create(&Actor::from(admin), new).await?;
    tracing::info!(product_id = %product.id, "product created");
    let mut answer = product_answer(StatusCode::CREATED, &product)?;
    answer.headers_mut().insert(
        header::LOCATION,
        header::HeaderValue::try_from(format!("/api/v1/products/{}", product.id))
            .map_err(|e| Problem::internal(&anyhow::Error::new(e)))?,
    );
    Ok(answer)
}

/// Get a product
///
/// Name, description, price, currency and the units in stock.
#[utoipa::path(
    operation_id = "getProductInfo",
    tag = "products",
    security(()),
    params(
        ("productId" = String, Path, description = "The product's id", example = "019b3f2c-7d0e-7f00-b9e6-5c3a0f1d2e4b"),
        ("If-None-Match" = Option<String>, Header, nullable = false, description = "The `ETag` of a representation the client holds: 304 while it is current"),
    ),
    responses(
        (status = 200, description = "The product", body = ProductView,
            headers(("ETag" = String, description = "A strong validator of this representation (it changes with any change of the product, its stock included)"))),
        (status = 304, description = "The representation `If-None-Match` names is current",
            headers(("ETag" = String, description = "The current representation's validator"))),
        (status = 404, description = "No product has this id", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
#[get("/products/{productId}")]
async fn get_product_info(
    req: HttpRequest,
    catalog: web::Data<ProductCatalog>,
    id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let product = catalog.get(ProductId::from(id.into_inner())).await?;
    product_response(&req, &product)
}

/// Why a stock update is refused, on the REST route and its original-spec alias.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only: the handlers answer `Problem`s
enum StockRefusals {
    #[response(status = 400)]
    BadRequest(#[ref_response] MalformedJson),
    #[response(status = 401)]
    Unauthorized(#[ref_response] Unauthorized),
    #[response(
        status = 404,
        description = "No product has this id",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
    #[response(status = 413)]
    TooLarge(#[ref_response] PayloadTooLarge),
    #[response(status = 415)]
    UnsupportedMediaType(#[ref_response] UnsupportedMediaType),
}

/// Set a product's stock (admin)
///
/// Sets the units on hand to `newStock` (absolute, not a delta).
#[utoipa::path(
    operation_id = "updateProductStock",
    tag = "products",
    params(("productId" = String, Path, description = "The product's id", example = "019b3f2c-7d0e-7f00-b9e6-5c3a0f1d2e4b")),
    request_body = UpdateStock,
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The product with its new stock", body = ProductView),
        StockRefusals,
        (status = 429, response = TooManyAuthFailures),
        (status = 422, description = "`newStock` is missing or out of range", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
#[put("/products/{productId}/stock")]
async fn update_product_stock(
    admin: Admin,
    catalog: web::Data<ProductCatalog>,
    id: web::Path<String>,
    body: Json<UpdateStock>,
) -> Result<HttpResponse, Problem> {
    let stock = parse_stock("newStock", body.0.new_stock)?;
    let product = catalog
        .set_stock(&Actor::from(admin), ProductId::from(id.into_inner()), stock)
        .await?;
    tracing::info!(product_id = %product.id, stock = stock.units(), "stock set");
    product_answer(StatusCode::OK, &product)
}

/// The original spec's query for one product.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ProductIdQuery {
    /// The product's id.
    #[param(example = "019b3f2c-7d0e-7f00-b9e6-5c3a0f1d2e4b")]
    pub product_id: String,
}

/// Get a product (original spec path)
///
/// The original spec's `getProductInfo`; same answers as `GET /api/v1/products/{productId}`.
#[utoipa::path(
    operation_id = "originalGetProductInfo",
    tag = "original spec",
    security(()),
    params(ProductIdQuery),
    responses(
        (status = 200, description = "The product", body = ProductView),
        (status = 400, description = "`productId` is missing", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No product has this id", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
#[get("/getProductInfo")]
async fn original_get_product_info(
    req: HttpRequest,
    catalog: web::Data<ProductCatalog>,
    query: Query<ProductIdQuery>,
) -> Result<HttpResponse, Problem> {
    let product = catalog.get(ProductId::from(query.0.product_id)).await?;
    product_response(&req, &product)
}

/// The original spec's stock update.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OriginalUpdateStock {
    #[schema(example = "019b3f2c-7d0e-7f00-b9e6-5c3a0f1d2e4b")]
    pub product_id: String,
    #[schema(minimum = 0, maximum = 1_000_000_000, example = 80)]
    #[serde(deserialize_with = "json_integer")]
    pub new_stock: i64,
}

/// Set a product's stock (original spec path, admin)
///
/// The original spec's `updateProductStock`; same rules as `PUT /api/v1/products/{productId}/stock`.
#[utoipa::path(
    operation_id = "originalUpdateProductStock",
    tag = "original spec",
    request_body = OriginalUpdateStock,
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The product with its new stock", body = ProductView),
        StockRefusals,
        (status = 429, response = TooManyAuthFailures),
        (status = 422, description = "A field is missing or out of range", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
#[post("/updateProductStock")]
async fn original_update_product_stock(
    admin: Admin,
    catalog: web::Data<ProductCatalog>,
    body: Json<OriginalUpdateStock>,
) -> Result<HttpResponse, Problem> {
    let OriginalUpdateStock {
        product_id,
        new_stock,
    } = body.into_inner();
    let stock = parse_stock("newStock", new_stock)?;
    let product = catalog
        .set_stock(&Actor::from(admin), ProductId::from(product_id), stock)
        .await?;
    product_answer(StatusCode::OK, &product)
}

/// Why archiving or restoring a product is refused.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only: the handlers answer `Problem`s
enum StatusRefusals {
    #[response(status = 401)]
    Unauthorized(#[ref_response] Unauthorized),
    #[response(
        status = 404,
        description = "No product has this id (`product_not_found`)",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
    #[response(status = 429)]
    TooMany(#[ref_response] TooManyAuthFailures),
    #[response(status = 503)]
    Unavailable(#[ref_response] Unavailable),
}

/// Archives or restores a product for staff, answering it as it is then.
async fn move_to(
    admin: Admin,
    catalog: &ProductCatalog,
    id: String,
    status: ProductStatus,
) -> Result<HttpResponse, Problem> {
    let product = catalog
        .set_status(&Actor::from(admin), ProductId::from(id), status)
        .await?;
    product_answer(StatusCode::OK, &product)
}

/// Take a product off sale (staff)
///
/// An archived product is no longer listed (unless `status=archived` or
/// `all` is asked for) and no order can reserve it (409
/// `product_archived`, naming the line); it still reads by id, since
/// orders point at it. Idempotent: archiving an archived product answers
/// it as it is. Recorded in the audit log (`product.archived`); tells
/// `product.archived`.
#[utoipa::path(
    operation_id = "archiveProduct",
    tag = "products",
    params(("productId" = String, Path, description = "The product's id", example = "019b3f2c-7d0e-7f00-b9e6-5c3a0f1d2e4b")),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The product, archived", body = ProductView),
        StatusRefusals,
    )
)]
#[post("/products/{productId}/archive")]
async fn archive_product(
    admin: Admin,
    catalog: web::Data<ProductCatalog>,
    id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    move_to(admin, &catalog, id.into_inner(), ProductStatus::Archived).await
}

/// Put an archived product back on sale (staff)
///
/// Idempotent: restoring an active product answers it as it is. Recorded
/// in the audit log (`product.restored`); tells `product.restored`.
#[utoipa::path(
    operation_id = "restoreProduct",
    tag = "products",
    params(("productId" = String, Path, description = "The product's id", example = "019b3f2c-7d0e-7f00-b9e6-5c3a0f1d2e4b")),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The product, on sale", body = ProductView),
        StatusRefusals,
    )
)]
#[post("/products/{productId}/restore")]
async fn restore_product(
    admin: Admin,
    catalog: web::Data<ProductCatalog>,
    id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    move_to(admin, &catalog, id.into_inner(), ProductStatus::Active).await
}

/// Change a product's stock by a delta (staff)
///
/// Adds units (`restock`, `found`, `returned`, a `correction` up) or takes
/// them away (`damaged`, `lost`, a `correction` down). It goes through the
/// same locked path as orders' reservations: adjustments and orders racing
/// on one product never lose an update. Taking more than is on hand is 409
/// `insufficient_stock`, naming what is there, and changes nothing.
/// Recorded as a stock movement and in the audit log
/// (`product.stock_adjusted`).
#[utoipa::path(
    operation_id = "adjustProductStock",
    tag = "products",
    params(("productId" = String, Path, description = "The product's id", example = "019b3f2c-7d0e-7f00-b9e6-5c3a0f1d2e4b")),
    request_body = AdjustStock,
    security(("adminToken" = [])),
    responses(
        (status = 201, description = "The stock movement made, with the units now on hand", body = StockMovementView),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No product has this id (`product_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The delta would take the stock below zero (`insufficient_stock`; the detail says what is on hand); nothing changed", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "A field is missing or invalid; `errors` names it", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = TooManyAuthFailures),
        (status = 503, response = Unavailable),
    )
)]
#[post("/products/{productId}/stock-adjustments")]
async fn adjust_product_stock(
    admin: Admin,
    catalog: web::Data<ProductCatalog>,
    id: web::Path<String>,
    body: Json<AdjustStock>,
) -> Result<HttpResponse, Problem> {
    let AdjustStock {
        delta,
        reason,
        note,
    } = body.into_inner();
    let adjustment =
        StockAdjustment::parse(delta, &reason, note.as_deref()).map_err(ProductError::Invalid)?;
    let moved = catalog
        .adjust_stock(
            &Actor::from(admin),
            ProductId::from(id.into_inner()),
            adjustment,
        )
        .await?;
    tracing::info!(product_id = %moved.product_id, delta = moved.delta, stock = moved.stock_after, "stock adjusted");
    Ok(HttpResponse::Created().json(StockMovementView::from(moved)))
}

/// List a product's stock movements (staff)
///
/// Every staff change of the product's stock, a set (`updateProductStock`)
/// or an adjustment, newest first: who, why, by how much, the units after
/// it, the request and the time. (Orders' reservations are not movements.)
#[utoipa::path(
    operation_id = "listStockMovements",
    tag = "products",
    params(("productId" = String, Path, description = "The product's id", example = "019b3f2c-7d0e-7f00-b9e6-5c3a0f1d2e4b"), PageQuery),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "A page of the product's stock movements, newest first", body = StockMovementList),
        (status = 400, description = "Invalid `limit` or `cursor` (`invalid_query`)", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No product has this id (`product_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = TooManyAuthFailures),
        (status = 503, response = Unavailable),
    )
)]
#[get("/products/{productId}/stock-movements")]
async fn list_stock_movements(
    _admin: Admin,
    catalog: web::Data<ProductCatalog>,
    id: web::Path<String>,
    page: Query<PageQuery>,
) -> Result<HttpResponse, Problem> {
    let page = PageRequest::try_from(page.0)?;
    let page = catalog
        .movements(ProductId::from(id.into_inner()), page)
        .await?;
    Ok(HttpResponse::Ok().json(StockMovementList {
        items: page
            .movements
            .into_iter()
            .map(StockMovementView::from)
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// A staff edit of a product: a JSON Merge Patch (RFC 7396) of these
/// fields; a field left out is left as it is; at least one.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = UpdateProduct)]
#[allow(dead_code)] // documentation only: the body is read as a JSON object and checked field by field
struct UpdateProductFields {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$",
        example = "iPhone 15 (2024)",
        nullable = false
    )]
    name: Option<String>,
    #[schema(
        max_length = 2000,
        pattern = r"^[^\x00]*$",
        example = "Apple iPhone 15, 128 GB, black",
        nullable = false
    )]
    description: Option<String>,
    /// Unit price in minor units of the product's currency after the edit.
    /// New orders pay it; an order keeps the unit prices it was placed at.
    #[schema(
        minimum = 1,
        maximum = 10_000_000_000_i64,
        example = 949_900,
        nullable = false
    )]
    price: Option<i64>,
    /// ISO 4217 currency code.
    #[schema(
        pattern = "^[A-Z]{3}$",
        min_length = 3,
        max_length = 3,
        example = "CNY",
        nullable = false
    )]
    currency: Option<String>,
    /// Below this many units in stock, `product.stock_low` is told once;
    /// null clears it.
    #[schema(minimum = 0, maximum = 1_000_000_000, nullable = true, example = 10)]
    low_stock_threshold: Option<Option<i64>>,
}

/// The document of `updateProduct`'s body: [`UpdateProductFields`] with
/// `minProperties: 1` (utoipa-gen 5.5 writes a `min_properties` attribute
/// as `maxProperties`, so it is set here).
pub struct UpdateProduct;

impl utoipa::PartialSchema for UpdateProduct {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::Schema;
        let mut schema = <UpdateProductFields as utoipa::PartialSchema>::schema();
        if let RefOr::T(Schema::Object(object)) = &mut schema {
            object.min_properties = Some(1);
        }
        schema
    }
}

impl ToSchema for UpdateProduct {}

/// Edit a product (staff)
///
/// A JSON Merge Patch (`application/merge-patch+json`, or
/// `application/json`) of `name`, `description`, `price`, `currency` and
/// `lowStockThreshold` (`null` clears it). Checked as `createProduct`
/// checks (a 422 names each bad field; `stock` and `status` have routes of
/// their own; an empty patch is 422). With `If-Match` (the product's
/// `ETag`), a product that changed since is 412 `precondition_failed` and
/// nothing changes. Recorded in the audit log (`product.updated`, the
/// fields that changed) and told as `product.updated`.
#[utoipa::path(
    operation_id = "updateProduct",
    tag = "products",
    params(
        ("productId" = String, Path, description = "The product's id", example = "019b3f2c-7d0e-7f00-b9e6-5c3a0f1d2e4b"),
        ("If-Match" = Option<String>, Header, nullable = false, description = "The `ETag` of the representation the edit was made from (or `*`): 412 if the product changed since"),
    ),
    request_body(
        content(
            (UpdateProduct = "application/merge-patch+json"),
            (UpdateProduct = "application/json"),
        ),
    ),
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The product as edited", body = ProductView,
            headers(("ETag" = String, description = "The validator of the new representation"))),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No product has this id (`product_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The product changed since the representation `If-Match` names (`precondition_failed`); nothing changed", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, description = "A field is invalid, unknown, or the patch is empty (`validation_failed`, `errors` names each)", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = TooManyAuthFailures),
        (status = 503, response = Unavailable),
    )
)]
#[patch("/products/{productId}")]
async fn update_product(
    req: HttpRequest,
    admin: Admin,
    catalog: web::Data<ProductCatalog>,
    id: web::Path<String>,
    body: Json<serde_json::Value>,
) -> Result<HttpResponse, Problem> {
    let serde_json::Value::Object(document) = body.into_inner() else {
        return Err(Problem::validation(vec![FieldViolation::new(
            "body",
            "must be a JSON object",
        )]));
    };
    let patch = ProductPatch::parse(&document).map_err(ProductError::Invalid)?;
    let current = Tags::of(&req, header::IF_MATCH).map(|tags| -> Precondition {
        Box::new(move |product: &Product| {
            render(product).is_ok_and(|body| tags.match_strong(&etag_of(&body)))
        })
    });
    let product = catalog
        .update(
            &Actor::from(admin),
            ProductId::from(id.into_inner()),
            patch,
            current,
        )
        .await?;
    tracing::info!(product_id = %product.id, "product edited");
    product_answer(StatusCode::OK, &product)
}

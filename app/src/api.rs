//! The HTTP surface as a whole: the OpenAPI document, the routes every
//! context mounts, health checks, and the fallbacks that keep every error a
//! problem+json (unknown routes: 404, known routes with another method: 405).

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{ErrorHandlerResponse, Next};
use actix_web::{HttpRequest, HttpResponse, ResponseError, get, web};
use serde::Serialize;
use shared_kernel::Problem;
use shared_kernel::audit;
use shared_kernel::storage::db::Db;
use shared_kernel::web::problem::PROBLEM_JSON;
use shared_kernel::web::problem::responses::{
    AdminTokenRequired, AmbiguousCredentials, CustomerOnly, CustomerUnauthorized, MalformedJson,
    MethodNotAllowed, NotFound, PayloadTooLarge, RequestTimeout, StaffOnly, TooManyAuthFailures,
    TooManyConnections, Unauthorized, Unavailable, UnsupportedMediaType,
};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_actix_web::{AppExt, UtoipaApp, scope};

use crate::contexts::Contexts;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "shop",
        description = "An e-commerce backend: products and stock, orders, payments.\n\n\
            Money is an integer amount of minor units (fen for CNY) with an ISO 4217 currency. \
            Every error is an RFC 9457 `application/problem+json` body with a stable `code`.\n\n\
            Who may call what: product reads, health checks and these docs are public. \
            Orders and payments belong to a customer: their routes take the customer's token \
            (`customerToken`, `Authorization: Bearer <JWT>` whose `sub` is the user id) and act \
            only as that customer; another customer's order or payment answers 404. \
            Staff routes take a staff member's token (`staffToken`: a JWT verified as customers' \
            are, whose claim `SHOP__AUTH__STAFF_CLAIM` holds the role `SHOP__AUTH__STAFF_ROLE`; \
            the audit log names its `sub`) or the shared admin token (`adminToken`, \
            `SHOP__AUTH__ADMIN_TOKEN`, for automation; the audit log names it `admin-token`); \
            a customer's token there answers 403 `staff_only`. Staff manage the catalog and read \
            every order and payment; a staff member's token on a customer route acts as its \
            `sub`, a customer like any other. `/metrics` takes the admin token only. \
            Payment notifications are authenticated by the provider's signature alone.\n\n\
            Every GET operation answers HEAD as well (the same status and headers, no body). \
            A path this document does not list answers 404 `not_found` \
            (`#/components/responses/NotFound`); a listed path asked with a method it does not \
            list answers 405 `method_not_allowed` with an `Allow` header \
            (`#/components/responses/MethodNotAllowed`). A request whose body does not arrive \
            within the server's request timeout answers 408 `request_timeout` \
            (`#/components/responses/RequestTimeout`); a connection opened while its client \
            address holds the most one address may answers 429 `too_many_connections` \
            (`#/components/responses/TooManyConnections`); both close the connection (behind a \
            trusted reverse proxy, a client past its share of requests in flight gets the same 429, \
            and the proxy's connection stays open). \
            A request with more than one `Authorization` header, to any route that takes \
            credentials, answers 400 `ambiguous_credentials` \
            (`#/components/responses/AmbiguousCredentials`).",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
    ),
    servers(
        (url = "/", description = "The server that serves this document"),
        (url = "http://127.0.0.1:8080", description = "`shop serve` on its default address"),
    ),
    tags(
        (name = "original spec", description = "The original spec's literal paths, thin aliases over the REST routes"),
        (name = "audit", description = "The audit log: every staff write, who made it and what it changed"),
        (name = "operations", description = "Health checks and metrics"),
    ),
    components(
        schemas(Problem),
        responses(
            MalformedJson, Unauthorized, CustomerUnauthorized, CustomerOnly, StaffOnly,
            AdminTokenRequired, TooManyAuthFailures, PayloadTooLarge, UnsupportedMediaType,
            Unavailable, NotFound, MethodNotAllowed, RequestTimeout, TooManyConnections,
            AmbiguousCredentials
        ),
    ),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let customer = bearer(
            "A customer's token from the identity provider (or `shop token --user ID`): \
             a JWT whose `sub` is the customer's user id",
        )
        .bearer_format("JWT");
        components.add_security_scheme("customerToken", SecurityScheme::Http(customer.build()));
        let admin = bearer(
            "The shared admin token (SHOP__AUTH__ADMIN_TOKEN), for automation and first set-up; \
             the audit log names it `admin-token`",
        );
        components.add_security_scheme("adminToken", SecurityScheme::Http(admin.build()));
        let staff = bearer(
            "A staff member's token from the identity provider (or `shop token --user ID --staff`): \
             a JWT verified as customer tokens are, whose claim at SHOP__AUTH__STAFF_CLAIM \
             (default `roles`) holds SHOP__AUTH__STAFF_ROLE (default `shop-staff`); the audit \
             log names its `sub`",
        )
        .bearer_format("JWT");
        components.add_security_scheme("staffToken", SecurityScheme::Http(staff.build()));
    }
}

/// The paths that take the admin token and nothing else: Prometheus scrapes
/// with it, and a staff member's JWT is for people.
const ADMIN_TOKEN_ONLY: &[&str] = &["/metrics"];

/// Staff tokens open whatever the admin token opens (but [`ADMIN_TOKEN_ONLY`]):
/// wherever an operation accepts `adminToken`, it accepts `staffToken` too,
/// and an operation for staff alone (no `customerToken`) says that a
/// customer's token is answered 403 `staff_only`. Run on the collected
/// paths (the routes declare `adminToken` only), so that no route can forget.
struct StaffTokens;

impl Modify for StaffTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let none: [&str; 0] = [];
        let admin = SecurityRequirement::new("adminToken", none);
        let staff = SecurityRequirement::new("staffToken", none);
        let customer = SecurityRequirement::new("customerToken", none);
        for (path, item) in openapi.paths.paths.iter_mut() {
            if ADMIN_TOKEN_ONLY.contains(&path.as_str()) {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let Some(security) = operation.security.as_mut() else {
                    continue;
                };
                let Some(at) = security.iter().position(|r| *r == admin) else {
                    continue;
                };
                if !security.contains(&staff) {
                    security.insert(at, staff.clone());
                }
                if !security.contains(&customer) {
                    operation
                        .responses
                        .responses
                        .entry("403".to_owned())
                        .or_insert_with(|| {
                            utoipa::openapi::Ref::from_response_name("StaffOnly").into()
                        });
                }
            }
        }
    }
}

/// A bearer-token security scheme, described.
fn bearer(description: &str) -> utoipa::openapi::security::HttpBuilder {
    Http::builder()
        .scheme(HttpAuthScheme::Bearer)
        .description(Some(description))
}

/// What an actix app is made of, as `mount` and `mount_internal` extend it.
pub trait Factory:
    actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Error = actix_web::Error,
        InitError = (),
    >
{
}

impl<T> Factory for T where
    T: actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Error = actix_web::Error,
            InitError = (),
        >
{
}

/// Mounts the documented routes of `contexts` (their REST routes and
/// original-spec aliases), and the audit log, health and metrics routes
/// every process serves, on `app`, collecting the OpenAPI document as it goes.
pub fn mount<T: Factory>(app: UtoipaApp<T>, contexts: Contexts) -> UtoipaApp<T> {
    let api = contexts
        .iter()
        .fold(scope::scope("/api/v1"), |scope, context| {
            scope.configure(context.routes.api)
        })
        .configure(audit::http::routes);
    contexts
        .iter()
        .fold(
            app.openapi(document_for(contexts)).service(api),
            |app, context| app.configure(context.routes.original_spec),
        )
        .configure(configure_health)
}

/// The document's heading: the tag of each context, then those of the routes
/// every process serves.
fn document_for(contexts: Contexts) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let own = contexts.iter().map(|context| {
        let (name, description) = context.tag;
        utoipa::openapi::tag::TagBuilder::new()
            .name(name)
            .description(Some(description))
            .build()
    });
    let tags = doc.tags.get_or_insert_with(Vec::new);
    let shared = std::mem::take(tags);
    tags.extend(own.chain(shared));
    doc
}

/// The internal API's document (`openapi-internal.yaml`): the ports other
/// processes call (`/internal/v1`), never listed in the public document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "shop internal API",
        description = "What one shop process serves another when the contexts run in separate \
            processes: the product context's `Inventory` port and the order context's \
            `OrderLookup` port, called by shop's own HTTP adapters \
            (`SHOP__PORTS__PRODUCT_URL`, `SHOP__PORTS__ORDER_URL`).\n\n\
            Served only when `SHOP__PORTS__TOKEN` is set (otherwise every path here answers 404), \
            and only to callers presenting that token (`Authorization: Bearer <token>`); a wrong \
            token from a client address that keeps presenting wrong credentials answers 429 \
            `too_many_auth_failures` (the right token always passes), and more than one \
            `Authorization` header answers 400 `ambiguous_credentials`. \
            Keep these paths off the public network: a reverse proxy in front of shop should \
            not route `/internal/`. `X-Request-Id` is honoured and echoed as on the public routes; \
            callers also send a W3C `traceparent`. Every error is an RFC 9457 \
            `application/problem+json` body with a stable `code`.",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
    ),
    tags(
        (name = "inventory", description = "The product context's stock: lookups, reservations, releases"),
        (name = "orders", description = "The order context's orders, as the payment context needs them"),
    ),
    components(schemas(Problem), responses(MalformedJson, Unavailable)),
    modifiers(&ServiceAuth),
)]
struct InternalDoc;

struct ServiceAuth;

impl Modify for ServiceAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let service = bearer("The service token (SHOP__PORTS__TOKEN), the same in every process");
        components.add_security_scheme("serviceToken", SecurityScheme::Http(service.build()));
    }
}

/// Mounts the internal routes (`/internal/v1`) on `app`: the ports the
/// contexts of `contexts` offer. Only a process given `SHOP__PORTS__TOKEN`
/// serves them.
pub fn mount_internal<T: Factory>(app: UtoipaApp<T>, contexts: Contexts) -> UtoipaApp<T> {
    let internal = contexts
        .iter()
        .filter_map(|context| context.routes.internal)
        .fold(
            scope::scope(shared_kernel::remote::internal::PREFIX),
            |scope, mount| scope.configure(mount),
        );
    app.service(internal)
}

/// The internal API's document.
pub fn internal_openapi() -> utoipa::openapi::OpenApi {
    let app = actix_web::App::new()
        .into_utoipa_app()
        .openapi(InternalDoc::openapi());
    let (_, doc) = mount_internal(app, Contexts::ALL).split_for_parts();
    doc
}

/// The internal document as `shop openapi --internal` prints it and `openapi-internal.yaml` holds it.
pub fn internal_openapi_yaml() -> anyhow::Result<String> {
    Ok(serde_norway::to_string(&internal_openapi())?)
}

/// The OpenAPI document, the same whatever the configuration.
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi_for(Contexts::ALL)
}

/// The document of a process that runs `contexts`: their paths only.
pub fn openapi_for(contexts: Contexts) -> utoipa::openapi::OpenApi {
    let (_, mut doc) = mount(actix_web::App::new().into_utoipa_app(), contexts).split_for_parts();
    StaffTokens.modify(&mut doc);
    doc
}

/// The document as printed: the generated one, plus its links.
pub fn document() -> serde_json::Value {
    document_of(openapi())
}

/// A generated document as served: plus its links (those between its own
/// operations), less the tags none of its operations carries.
pub fn document_of(openapi: utoipa::openapi::OpenApi) -> serde_json::Value {
    let mut doc = serde_json::to_value(openapi).unwrap_or_default();
    add_links(&mut doc);
    drop_unused_tags(&mut doc);
    doc
}

/// Removes the document's tags that no operation carries (in a process
/// that runs some contexts only, those of the others).
fn drop_unused_tags(doc: &mut serde_json::Value) {
    use serde_json::Value;
    let used: std::collections::BTreeSet<String> = doc
        .get("paths")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|paths| paths.values())
        .filter_map(Value::as_object)
        .flat_map(|item| item.values())
        .filter_map(|operation| operation.get("tags").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    if let Some(tags) = doc.get_mut("tags").and_then(Value::as_array_mut) {
        tags.retain(|tag| {
            tag.get("name")
                .and_then(Value::as_str)
                .is_some_and(|name| used.contains(name))
        });
    }
}

/// OpenAPI links: how the answer of one operation feeds the next. They walk
/// a generated client (and schemathesis's stateful phase) through a purchase:
/// createProduct -> getProductInfo -> createOrder -> initiatePayment -> getOrderInfo.
/// (Added to the JSON form: utoipa 5 writes link fields in snake_case.)
fn add_links(doc: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let product = "$response.body#/productId";
    let order = "$response.body#/orderId";
    let payment = "$response.body#/paymentId";
    let parameters = |name: &str, value: &str| json!({ "parameters": { name: value } });
    let body = |value: Value| json!({ "requestBody": value });
    // (from the operation, its status, to the operation, with what it needs)
    #[rustfmt::skip]
    let links: [(&str, &str, &str, Value); 14] = [
        ("createProduct", "201", "getProductInfo", parameters("productId", product)),
        ("createProduct", "201", "updateProductStock", parameters("productId", product)),
        ("createProduct", "201", "createOrder", body(json!({"items": [{"productId": product, "quantity": 1}]}))),
        ("createProduct", "201", "originalGetProductInfo", parameters("productId", product)),
        ("createOrder", "201", "getOrderInfo", parameters("orderId", order)),
        ("createOrder", "201", "listOrders", parameters("userId", "$response.body#/userId")),
        ("createOrder", "201", "initiatePayment", body(json!({"orderId": order, "paymentMethod": "wechat_pay"}))),
        ("createOrder", "201", "cancelOrder", parameters("orderId", order)),
        ("createOrder", "201", "originalGetOrderInfo", parameters("orderId", order)),
        ("originalCreateOrder", "201", "getOrderInfo", parameters("orderId", order)),
        ("initiatePayment", "201", "getPayment", parameters("paymentId", payment)),
        ("initiatePayment", "201", "getOrderInfo", parameters("orderId", order)),
        ("initiatePayment", "200", "getPayment", parameters("paymentId", payment)),
        ("initiatePayment", "201", "paymentResultNotify", body(json!({"paymentId": payment, "paymentStatus": "success",
            "amount": "$response.body#/amount", "currency": "$response.body#/currency"}))),
    ];
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    let operations: std::collections::BTreeSet<String> = paths
        .values()
        .filter_map(Value::as_object)
        .flat_map(|item| item.values())
        .filter_map(|operation| operation.get("operationId").and_then(Value::as_str))
        .map(str::to_owned)
        .collect();
    for (source, status, target, needs) in links {
        // A link to an operation the document does not have (another process's) is left out.
        if !operations.contains(target) {
            continue;
        }
        // Named after its target: `GetProductInfo` for `getProductInfo`.
        let mut chars = target.chars();
        let name: String = chars
            .next()
            .map(|first| first.to_ascii_uppercase())
            .into_iter()
            .chain(chars)
            .collect();
        let mut link = json!({ "operationId": target });
        if let (Some(link), Some(needs)) = (link.as_object_mut(), needs.as_object()) {
            link.extend(needs.clone());
        }
        let response = paths
            .values_mut()
            .filter_map(Value::as_object_mut)
            .flat_map(|item| item.values_mut())
            .find(|operation| operation.get("operationId").and_then(Value::as_str) == Some(source))
            .and_then(|operation| operation.pointer_mut(&format!("/responses/{status}")))
            .and_then(Value::as_object_mut);
        if let Some(response) = response {
            let links = response.entry("links").or_insert_with(|| json!({}));
            if let Some(links) = links.as_object_mut() {
                links.insert(name, link);
            }
        }
    }
}

/// The document as `shop openapi` prints it and `openapi.yaml` holds it.
pub fn openapi_yaml() -> anyhow::Result<String> {
    Ok(serde_norway::to_string(&document())?)
}

fn configure_health(cfg: &mut ServiceConfig) {
    cfg.service(live)
        .service(ready)
        .service(crate::observability::render);
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Liveness
///
/// The process is up and serving HTTP.
#[utoipa::path(
    operation_id = "healthLive",
    tag = "operations",
    security(()),
    responses((status = 200, description = "The process is up", body = Health)),
)]
#[get("/health/live")]
async fn live() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Readiness
///
/// The process can serve requests: its database answers.
#[utoipa::path(
    operation_id = "healthReady",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "Ready to serve", body = Health),
        (status = 503, description = "The database does not answer", body = Problem, content_type = "application/problem+json"),
    ),
)]
#[get("/health/ready")]
async fn ready(db: web::Data<Db>) -> Result<HttpResponse, Problem> {
    db.ping().await?;
    Ok(HttpResponse::Ok().json(Health { status: "ready" }))
}

/// The documented routes, to tell an unknown path (404) from a wrong method (405).
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<(Vec<Segment>, Vec<Method>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
}

impl RouteTable {
    pub fn from_openapi(doc: &utoipa::openapi::OpenApi) -> Self {
        let routes = doc
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let segments = split(path)
                    .map(|s| {
                        if s.starts_with('{') && s.ends_with('}') {
                            Segment::Param
                        } else {
                            Segment::Literal(s.to_owned())
                        }
                    })
                    .collect();
                let mut methods = [
                    (Method::GET, &item.get),
                    (Method::PUT, &item.put),
                    (Method::POST, &item.post),
                    (Method::DELETE, &item.delete),
                    (Method::OPTIONS, &item.options),
                    (Method::HEAD, &item.head),
                    (Method::PATCH, &item.patch),
                    (Method::TRACE, &item.trace),
                ]
                .into_iter()
                .filter_map(|(method, operation)| operation.as_ref().map(|_| method))
                .collect::<Vec<_>>();
                // HEAD is served wherever GET is (see `head_as_get`).
                if methods.contains(&Method::GET) && !methods.contains(&Method::HEAD) {
                    methods.insert(1, Method::HEAD);
                }
                (segments, methods)
            })
            .collect();
        Self { routes }
    }

    /// The methods a path allows, when it is a documented path. When several
    /// templates match, the most specific (most literal segments) wins, as
    /// `/payments/notify` beats `/payments/{paymentId}`.
    pub fn allowed(&self, path: &str) -> Option<Vec<Method>> {
        let parts: Vec<&str> = split(path).collect();
        let matching = self.routes.iter().filter(|(segments, _)| {
            segments.len() == parts.len()
                && segments.iter().zip(&parts).all(|(seg, part)| match seg {
                    Segment::Literal(lit) => lit == part,
                    Segment::Param => !part.is_empty(),
                })
        });
        let literals = |segments: &[Segment]| {
            segments
                .iter()
                .filter(|s| matches!(s, Segment::Literal(_)))
                .count()
        };
        let best = matching
            .clone()
            .map(|(segments, _)| literals(segments))
            .max()?;
        Some(
            matching
                .filter(|(segments, _)| literals(segments) == best)
                .flat_map(|(_, methods)| methods.iter().cloned())
                .collect(),
        )
    }
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.trim_end_matches('/').split('/').skip(1)
}

/// HEAD on every GET route (RFC 9110: a server that serves GET serves HEAD):
/// the request is routed as the GET it stands for. The HTTP/1 codec, which
/// read HEAD off the wire, sends the GET's status and headers,
/// `Content-Length` included, and no body. (actix's route macros match GET
/// only; routing HEAD here keeps one route per operation in the document.)
/// Wrapped innermost, next to the routes: the logs and metrics outside it
/// see the method the client sent.
pub async fn head_as_get(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.method() == Method::HEAD {
        req.head_mut().method = Method::GET;
    }
    next.call(req).await
}

/// What answers when no route matched.
pub async fn fallback(req: HttpRequest, table: web::Data<RouteTable>) -> HttpResponse {
    match table.allowed(req.path()) {
        Some(methods) => {
            let allow = methods
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            let mut response = Problem::for_status(StatusCode::METHOD_NOT_ALLOWED)
                .with_detail(format!(
                    "{} is not allowed here; allowed: {allow}.",
                    req.method()
                ))
                .error_response();
            if let Ok(value) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            response
        }
        None => Problem::for_status(StatusCode::NOT_FOUND)
            .with_detail(format!("Nothing is served at {}.", req.path()))
            .error_response(),
    }
}

/// Turns any error response that is not yet a problem (from actix itself or a
/// library) into one, keeping its status and headers.
pub fn into_problem<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    let caller_format = res
        .response()
        .extensions()
        .contains::<shared_kernel::web::extract::CallerFormat>();
    if is_problem || caller_format {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let (req, res) = res.into_parts();
    // A body that could not be read (a raw-body route's extractor): say why, in the client's words.
    let mut problem = match res.error() {
        Some(error) if error.as_error::<actix_web::error::PayloadError>().is_some() => {
            shared_kernel::web::extract::body_problem(error).error_response()
        }
        _ => Problem::for_status(res.status()).error_response(),
    };
    for (name, value) in res.headers() {
        if name != header::CONTENT_TYPE
            && name != header::CONTENT_LENGTH
            && name != header::CONTENT_ENCODING
        {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    let res: ServiceResponse<EitherBody<B>> =
        ServiceResponse::new(req, problem).map_into_right_body();
    Ok(ErrorHandlerResponse::Response(res))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_link_joins_two_documented_operations() {
        let doc = document();
        let mut operation_ids = Vec::new();
        let mut targets = Vec::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for operation in item
                .as_object()
                .unwrap()
                .values()
                .filter(|o| o.get("operationId").is_some())
            {
                operation_ids.push(operation["operationId"].as_str().unwrap().to_owned());
                for response in operation["responses"].as_object().unwrap().values() {
                    for link in response["links"]
                        .as_object()
                        .into_iter()
                        .flat_map(|l| l.values())
                    {
                        targets.push(link["operationId"].as_str().unwrap().to_owned());
                    }
                }
            }
        }
        assert_eq!(targets.len(), 14, "every link was attached to its response");
        for target in targets {
            assert!(
                operation_ids.contains(&target),
                "a link targets {target}, which is not documented"
            );
        }
    }

    #[test]
    fn staff_tokens_open_whatever_the_admin_token_opens_but_metrics() {
        let doc = document();
        let mut staff_only = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for operation in item.as_object().unwrap().values() {
                let schemes: Vec<&str> = operation["security"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|r| r.as_object().unwrap().keys().map(String::as_str))
                    .collect();
                let id = operation["operationId"].as_str().unwrap();
                if path == "/metrics" {
                    assert_eq!(schemes, ["adminToken"], "{id}");
                    continue;
                }
                assert_eq!(
                    schemes.contains(&"adminToken"),
                    schemes.contains(&"staffToken"),
                    "{id}: {schemes:?}"
                );
                if schemes.contains(&"staffToken") && !schemes.contains(&"customerToken") {
                    assert_eq!(
                        operation["responses"]["403"]["$ref"], "#/components/responses/StaffOnly",
                        "{id}"
                    );
                    staff_only.push(id.to_owned());
                }
            }
        }
        for id in ["createProduct", "updateProductStock", "listAuditEvents"] {
            assert!(staff_only.iter().any(|s| s == id), "{id}: {staff_only:?}");
        }
        assert!(doc["components"]["securitySchemes"]["staffToken"].is_object());
    }

    #[test]
    fn the_route_table_tells_404_from_405() {
        let table = RouteTable::from_openapi(&openapi());
        assert_eq!(table.allowed("/nowhere"), None);
        let methods = table.allowed("/api/v1/products").unwrap();
        assert_eq!(methods, vec![Method::GET, Method::HEAD, Method::POST]);
        assert_eq!(
            table.allowed("/api/v1/products/abc/stock"),
            Some(vec![Method::PUT])
        );
        assert_eq!(table.allowed("/api/v1/products/abc/other"), None);
        assert_eq!(
            table.allowed("/api/v1/payments/notify"),
            Some(vec![Method::POST]),
            "a literal beats a parameter"
        );
        assert_eq!(
            table.allowed("/api/v1/payments/some-id"),
            Some(vec![Method::GET, Method::HEAD])
        );
    }
}

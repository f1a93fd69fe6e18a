//! RFC 9457 problem details: the one shape of every error response.
//!
//! Each context maps its own error enum into a [`Problem`] in one place,
//! choosing the status explicitly; nothing else builds error responses.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error as the client sees it (RFC 9457), with a stable machine-readable `code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "type": "https://shop.example/problems/validation_failed",
    "title": "Validation failed",
    "status": 422,
    "detail": "1 field has an invalid value",
    "code": "validation_failed",
    "errors": [{"field": "price", "message": "must be between 0 and 100000000000"}]
}))]
pub struct Problem {
    /// A URI naming the kind of problem; its last segment is the `code`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong this time, for a human.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub detail: Option<String>,
    /// Stable machine-readable error code, such as `product_not_found`.
    pub code: String,
    /// For validation problems: each offending field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldViolation>,
}

/// Problem responses that many operations share, documented once as OpenAPI
/// `components/responses` (operations reference them: `response = ...`).
pub mod responses {
    use utoipa::ToResponse;

    use super::Problem;

    /// The body is not well-formed JSON (`malformed_json`), or could not be read (`unreadable_body`).
    #[derive(ToResponse)]
    #[response(
        description = "The body is not well-formed JSON (`malformed_json`), or ends early or is not encoded as its `Content-Encoding` says (`unreadable_body`)",
        content_type = "application/problem+json"
    )]
    pub struct MalformedJson(pub Problem);

    /// No staff credentials (`unauthorized`), a wrong admin token
    /// (`unauthorized`), or a JWT that is refused (`invalid_token`).
    #[derive(ToResponse)]
    #[response(
        description = "No credentials, or a token that is neither the admin token nor a JWT (`unauthorized`); or a JWT that is malformed, expired, not yet valid, wrongly signed, of another issuer or audience, or a staff token whose `sub` is `admin-token` (`invalid_token`). Nothing was changed.",
        content_type = "application/problem+json",
        headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"shop admin\"`"))
    )]
    pub struct Unauthorized(pub Problem);

    /// No customer token (`unauthorized`), or one that is malformed, expired,
    /// not yet valid, wrongly signed or not meant for shop (`invalid_token`).
    #[derive(ToResponse)]
    #[response(
        description = "No valid credentials: no token (`unauthorized`), or a token that is malformed, expired, not yet valid, wrongly signed, or of another issuer or audience (`invalid_token`). Nothing was changed.",
        content_type = "application/problem+json",
        headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"shop\"`, with `error=\"invalid_token\"` and an `error_description` when a token was refused"))
    )]
    pub struct CustomerUnauthorized(pub Problem);

    /// The admin token where a customer's token is needed (`customer_token_required`).
    #[derive(ToResponse)]
    #[response(
        description = "The admin token was presented where the route acts for a customer (`customer_token_required`)",
        content_type = "application/problem+json"
    )]
    pub struct CustomerOnly(pub Problem);

    /// A valid token without the staff role on a staff route (`staff_only`).
    #[derive(ToResponse)]
    #[response(
        description = "A valid token that is not a staff token (a customer's: its claims do not hold the staff role) on a route for staff (`staff_only`). Nothing was changed.",
        content_type = "application/problem+json",
        headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"shop admin\", error=\"insufficient_scope\"`"))
    )]
    pub struct StaffOnly(pub Problem);

    /// A valid JWT where only the admin token is taken (`admin_token_required`).
    #[derive(ToResponse)]
    #[response(
        description = "A valid JWT, a staff member's too, on a route that takes the admin token only (`admin_token_required`)",
        content_type = "application/problem+json"
    )]
    pub struct AdminTokenRequired(pub Problem);

    /// More than one `Authorization` header (`ambiguous_credentials`).
    #[derive(ToResponse)]
    #[response(
        description = "What any route that takes credentials answers to a request with more than one `Authorization` header (`ambiguous_credentials`): which one was meant is not guessed. Nothing was changed.",
        content_type = "application/problem+json"
    )]
    pub struct AmbiguousCredentials(pub Problem);

    /// Too many failed authentications from this address (`too_many_auth_failures`).
    #[derive(ToResponse)]
    #[response(
        description = "These credentials are not valid, and too many requests from this client address presented invalid credentials (`too_many_auth_failures`): answered after a delay; retry after `Retry-After` seconds. Valid credentials are never refused this way.",
        content_type = "application/problem+json",
        headers(("Retry-After" = u64, description = "Seconds until this address may try again"))
    )]
    pub struct TooManyAuthFailures(pub Problem);

    /// The body is too large (`payload_too_large`).
    #[derive(ToResponse)]
    #[response(
        description = "The body is too large (`payload_too_large`)",
        content_type = "application/problem+json"
    )]
    pub struct PayloadTooLarge(pub Problem);

    /// The body is not JSON (`unsupported_media_type`).
    #[derive(ToResponse)]
    #[response(
        description = "The body is not JSON (`unsupported_media_type`)",
        content_type = "application/problem+json"
    )]
    pub struct UnsupportedMediaType(pub Problem);

    /// No route serves the path (`not_found`).
    #[derive(ToResponse)]
    #[response(
        description = "What any path this document does not list answers: nothing is served there (`not_found`)",
        content_type = "application/problem+json"
    )]
    pub struct NotFound(pub Problem);

    /// The path is served, but not with this method (`method_not_allowed`).
    #[derive(ToResponse)]
    #[response(
        description = "What a listed path answers to a method it does not list (`method_not_allowed`); `Allow` lists the methods it takes (HEAD wherever GET is)",
        content_type = "application/problem+json",
        headers(("Allow" = String, description = "The methods the path takes, such as `GET, HEAD, POST`"))
    )]
    pub struct MethodNotAllowed(pub Problem);

    /// The body did not arrive in time (`request_timeout`).
    #[derive(ToResponse)]
    #[response(
        description = "What any request answers whose body does not arrive within the server's request timeout (`request_timeout`); the connection is then closed",
        content_type = "application/problem+json"
    )]
    pub struct RequestTimeout(pub Problem);

    /// The client address holds too many connections (`too_many_connections`).
    #[derive(ToResponse)]
    #[response(
        description = "What every request answers on a connection opened while its client address already held the most connections one address may (`too_many_connections`); the connection is then closed. Behind a trusted reverse proxy (`SHOP__SERVER__TRUSTED_PROXIES`), what a request answers while the client the proxy names already has that many requests in flight; that connection stays open",
        content_type = "application/problem+json",
        headers(("Retry-After" = String, description = "Seconds to wait before opening another connection"))
    )]
    pub struct TooManyConnections(pub Problem);

    /// The database is unavailable (`service_unavailable`).
    #[derive(ToResponse)]
    #[response(
        description = "The database is unavailable (`service_unavailable`)",
        content_type = "application/problem+json"
    )]
    pub struct Unavailable(pub Problem);
}

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldViolation {
    /// The field's name as the client sent it (a JSON path such as `items[0].quantity`).
    pub field: String,
    /// Why the value was refused.
    pub message: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl Problem {
    /// A problem of the given status and code; `title` is the summary of that kind.
    pub fn new(status: StatusCode, code: &str, title: &str) -> Self {
        Self {
            kind: format!("https://shop.example/problems/{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: None,
            code: code.to_owned(),
            errors: Vec::new(),
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_errors(mut self, errors: Vec<FieldViolation>) -> Self {
        self.errors = errors;
        self
    }

    /// 422: the request was well-formed but some fields hold invalid values.
    pub fn validation(errors: Vec<FieldViolation>) -> Self {
        let detail = match errors.len() {
            1 => "1 field has an invalid value".to_owned(),
            n => format!("{n} fields have invalid values"),
        };
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "Validation failed",
        )
        .with_detail(detail)
        .with_errors(errors)
    }

    /// 404 for something the client named that does not exist.
    pub fn not_found(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, "Not found").with_detail(detail)
    }

    /// 500: something broke on our side. The cause is logged, never shown.
    pub fn internal(cause: &anyhow::Error) -> Self {
        tracing::error!(error = ?cause, "unexpected error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal server error",
        )
        .with_detail("The server could not complete the request; it has been logged.")
    }

    /// 503: the database is out of reach or every connection is busy.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "Service unavailable",
        )
        .with_detail(detail)
    }

    /// A problem for a bare status, for responses that carried no problem of their own.
    pub fn for_status(status: StatusCode) -> Self {
        let (code, title) = match status {
            StatusCode::BAD_REQUEST => ("bad_request", "Bad request"),
            StatusCode::UNAUTHORIZED => ("unauthorized", "Unauthorized"),
            StatusCode::FORBIDDEN => ("forbidden", "Forbidden"),
            StatusCode::NOT_FOUND => ("not_found", "Not found"),
            StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "Method not allowed"),
            StatusCode::NOT_ACCEPTABLE => ("not_acceptable", "Not acceptable"),
            StatusCode::REQUEST_TIMEOUT => ("request_timeout", "Request timeout"),
            StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "Payload too large"),
            StatusCode::URI_TOO_LONG => ("uri_too_long", "URI too long"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ("unsupported_media_type", "Unsupported media type")
            }
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
                "request_header_fields_too_large",
                "Request header fields too large",
            ),
            StatusCode::SERVICE_UNAVAILABLE => ("service_unavailable", "Service unavailable"),
            s if s.is_client_error() => ("bad_request", "Bad request"),
            _ => ("internal_error", "Internal server error"),
        };
        Self::new(status, code, title)
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.title, self.code)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        Problem::status_code(self)
    }

    fn error_response(&self) -> HttpResponse {
        let body = serde_json::to_vec(self).unwrap_or_default();
        HttpResponse::build(Problem::status_code(self))
            .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)))
            .body(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_problem_names_its_fields() {
        let p = Problem::validation(vec![FieldViolation::new("price", "must not be negative")]);
        assert_eq!(p.status, 422);
        assert_eq!(p.code, "validation_failed");
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(
            json["type"],
            "https://shop.example/problems/validation_failed"
        );
        assert_eq!(json["errors"][0]["field"], "price");
    }

    #[test]
    fn bare_statuses_get_stable_codes() {
        assert_eq!(
            Problem::for_status(StatusCode::METHOD_NOT_ALLOWED).code,
            "method_not_allowed"
        );
        assert_eq!(
            Problem::for_status(StatusCode::IM_A_TEAPOT).code,
            "bad_request"
        );
        assert_eq!(
            Problem::for_status(StatusCode::BAD_GATEWAY).code,
            "internal_error"
        );
    }

    #[test]
    fn error_response_is_problem_json() {
        let resp = Problem::not_found("product_not_found", "no product x").error_response();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            resp.headers().get(header::CONTENT_TYPE).unwrap(),
            PROBLEM_JSON
        );
    }
}

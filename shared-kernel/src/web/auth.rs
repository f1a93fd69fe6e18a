//! Who is calling. Customers present a bearer JWT whose `sub` is their user
//! id; staff present a bearer JWT that also holds the staff role (see
//! [`staff`]), or the shared admin token (automation, first set-up).
//! Handlers say what they need by the extractor they take:
//!
//! - [`Customer`]: a JWT (the route acts as its `sub`; a staff member's JWT
//!   is its `sub`'s customer identity here: staff may shop too);
//! - [`Caller`]: a JWT or the admin token (reads: staff, by a staff JWT or
//!   the admin token, may see every customer's orders and payments);
//! - [`Admin`]: a staff caller, the admin token or a staff JWT, and which
//!   (the actor the audit log records); a customer's JWT is 403 `staff_only`;
//! - [`AdminTokenOnly`]: the admin token and nothing else (`/metrics`: what
//!   Prometheus scrapes with; a JWT, staff or not, is 403 `admin_token_required`).
//!
//! List the extractor first among a handler's arguments, so that a request
//! without credentials is refused (401) before its body is even read. Every
//! refusal is a problem+json, the 401s with `WWW-Authenticate: Bearer`;
//! presented credentials that fail are counted per client address (see
//! [`crate::web::client`]), and the failures of an address that fails too
//! often are answered 429, slowly, for the rest of the minute; valid
//! credentials always pass (a valid token on a route it may not call is a
//! 403, never counted). Two `Authorization` headers are answered 400
//! `ambiguous_credentials`: which one counts is not guessed.

mod limiter;
pub mod staff;
pub mod token;

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use futures_util::future::LocalBoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::web::client::client_address;
use crate::web::problem::Problem;
pub use limiter::FailureLimiter;
pub use staff::StaffClaim;
pub use token::{TokenError, TokenVerifier, Verified};

/// What the audit log calls the admin token. No staff token may have it as
/// its `sub` (such a token is refused: [`TokenError::ReservedSubject`]).
pub const ADMIN_TOKEN_ACTOR: &str = "admin-token";

/// A customer's user id: 1 to 64 letters, digits or `_.:@|-`, starting with
/// a letter or digit. It is the `sub` of the customer's token, as the
/// identity provider issues it (Keycloak: a UUID; Auth0: `auth0|...`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut chars = raw.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.:@|-".contains(c));
        if first_ok && rest_ok && raw.len() <= 64 {
            Ok(Self(raw.to_owned()))
        } else {
            Err("must be 1 to 64 letters, digits or _.:@|- and start with a letter or digit".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A customer, proven by a valid token: routes that act for a customer take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer(pub UserId);

/// Whoever may read orders and payments: their owner, or staff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A customer's JWT (one without the staff role).
    Customer(UserId),
    /// The admin token or a staff JWT: may read every customer's orders and payments.
    Staff,
}

impl Caller {
    /// Whether this caller may see something that belongs to `owner`.
    /// (Whatever it may not see answers 404, exactly as if it did not exist.)
    pub fn may_see(&self, owner: &str) -> bool {
        match self {
            Self::Customer(user) => user.as_str() == owner,
            Self::Staff => true,
        }
    }
}

/// A staff caller, proven: the admin token, or a staff member's JWT (one
/// whose claims hold the staff role). Staff routes take it; it says who
/// acts (`audit::Actor::from(admin)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// The staff member (their token's `sub`); `None` for the admin token.
    member: Option<UserId>,
}

impl Admin {
    /// The admin token.
    pub fn admin_token() -> Self {
        Self { member: None }
    }

    /// The staff member whose JWT this is.
    pub fn staff_member(user: UserId) -> Self {
        Self { member: Some(user) }
    }

    /// The staff member, by their token's `sub`; `None` for the admin token.
    pub fn member(&self) -> Option<&UserId> {
        self.member.as_ref()
    }
}

/// Proof that the request carries the admin token itself (`/metrics`).
#[derive(Debug, Clone, Copy)]
pub struct AdminTokenOnly;

/// The shared admin token (`SHOP__AUTH__ADMIN_TOKEN`): staff routes and `/metrics` take it.
#[derive(Clone)]
pub struct AdminToken(SecretString);

impl AdminToken {
    pub fn new(token: SecretString) -> Self {
        Self(token)
    }

    fn matches(&self, presented: &str) -> bool {
        constant_time_eq(self.0.expose_secret().as_bytes(), presented.as_bytes())
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Everything that checks credentials, shared by every worker (`web::Data`).
pub struct Authenticator {
    admin: AdminToken,
    tokens: Arc<TokenVerifier>,
    failures: FailureLimiter,
}

impl Authenticator {
    pub fn new(admin: AdminToken, tokens: Arc<TokenVerifier>, failures: FailureLimiter) -> Self {
        Self {
            admin,
            tokens,
            failures,
        }
    }

    /// Who presents `credentials` (the `Authorization` header) from `address`.
    async fn identify(
        &self,
        credentials: Option<String>,
        address: IpAddr,
        need: Need,
    ) -> Result<Identity, AuthError> {
        let Some(token) = credentials else {
            return Err(AuthError::missing(need));
        };
        // Valid credentials pass whatever the address did before: only
        // failures are counted, and only failures are refused.
        // (Whether they may do what the route does, its extractor decides.)
        if self.admin.matches(&token) {
            return Ok(Identity::AdminToken);
        }
        match self.tokens.verify(&token).await {
            Ok(verified) => Ok(Identity::Jwt(verified)),
            Err(error) => {
                tracing::debug!(%error, %address, ?need, "refused a token");
                // Where the admin token opens the route, a token that is not
                // even a JWT is taken for a wrong admin token.
                let (kind, refusal) = match (need, &error) {
                    (Need::AdminToken, _) | (Need::Staff, TokenError::Malformed) => {
                        ("admin_token", AuthError::bad_admin_token(need))
                    }
                    (Need::Staff, _) => ("staff_token", AuthError::invalid_token(&error)),
                    (Need::Customer | Need::Reader, _) => {
                        ("customer_token", AuthError::invalid_token(&error))
                    }
                };
                self.failed(address, kind).await?;
                Err(refusal)
            }
        }
    }

    /// Counts a failed authentication of `kind` from `address`: `Err(429)`,
    /// after a delay, once the address is past its limit; `Ok` before (the
    /// caller answers the failure itself).
    pub async fn failed(&self, address: IpAddr, kind: &'static str) -> Result<(), AuthError> {
        metrics::counter!("shop_auth_failures_total", "kind" => kind).increment(1);
        self.failures
            .record_failure(address)
            .await
            .map_err(|retry_after| AuthError::too_many(retry_after.as_secs().max(1)))
    }
}

/// Who presented valid credentials.
enum Identity {
    AdminToken,
    /// A JWT: a customer's, or a staff member's when it holds the staff role.
    Jwt(Verified),
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Customer,
    Reader,
    Staff,
    AdminToken,
}

fn authenticate(
    req: &HttpRequest,
    need: Need,
) -> LocalBoxFuture<'static, Result<Identity, AuthError>> {
    let auth = req.app_data::<web::Data<Authenticator>>().cloned();
    let credentials = bearer(req).map(|token| token.map(str::to_owned));
    let address = client_address(req);
    Box::pin(async move {
        let credentials = credentials?;
        let Some(auth) = auth else {
            tracing::error!("no authenticator is configured; refusing the request");
            return Err(AuthError::missing(need));
        };
        auth.identify(credentials, address, need).await
    })
}

/// The bearer token of the `Authorization` header; `None` without one (or
/// with another scheme, which RFC 6750 treats as no credentials); 400
/// `ambiguous_credentials` with more than one `Authorization` header,
/// whatever their schemes (a proxy and shop could each read a different one).
pub fn bearer(req: &HttpRequest) -> Result<Option<&str>, AuthError> {
    let mut headers = req.headers().get_all(header::AUTHORIZATION);
    let first = headers.next();
    if headers.next().is_some() {
        metrics::counter!("shop_auth_failures_total", "kind" => "ambiguous").increment(1);
        return Err(AuthError::ambiguous());
    }
    Ok(first
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim()))
}

impl FromRequest for Customer {
    type Error = AuthError;
    type Future = LocalBoxFuture<'static, Result<Self, AuthError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let identity = authenticate(req, Need::Customer);
        Box::pin(async move {
            match identity.await? {
                // A staff member's JWT too: staff may shop, as themselves.
                Identity::Jwt(verified) => Ok(Customer(verified.user)),
                Identity::AdminToken => Err(AuthError::customer_only()),
            }
        })
    }
}

impl FromRequest for Caller {
    type Error = AuthError;
    type Future = LocalBoxFuture<'static, Result<Self, AuthError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let identity = authenticate(req, Need::Reader);
        Box::pin(async move {
            Ok(match identity.await? {
                Identity::AdminToken => Caller::Staff,
                Identity::Jwt(Verified { staff: true, .. }) => Caller::Staff,
                Identity::Jwt(Verified { user, .. }) => Caller::Customer(user),
            })
        })
    }
}

impl FromRequest for Admin {
    type Error = AuthError;
    type Future = LocalBoxFuture<'static, Result<Self, AuthError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let identity = authenticate(req, Need::Staff);
        Box::pin(async move {
            match identity.await? {
                Identity::AdminToken => Ok(Admin::admin_token()),
                Identity::Jwt(Verified { user, staff: true }) => Ok(Admin::staff_member(user)),
                Identity::Jwt(Verified { staff: false, .. }) => Err(AuthError::staff_only()),
            }
        })
    }
}

impl FromRequest for AdminTokenOnly {
    type Error = AuthError;
    type Future = LocalBoxFuture<'static, Result<Self, AuthError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let identity = authenticate(req, Need::AdminToken);
        Box::pin(async move {
            match identity.await? {
                Identity::AdminToken => Ok(AdminTokenOnly),
                Identity::Jwt(_) => Err(AuthError::admin_token_required()),
            }
        })
    }
}

/// A refused request: 400, 401 (with `WWW-Authenticate`), 403 or 429 (with `Retry-After`).
#[derive(Debug)]
pub struct AuthError {
    problem: Problem,
    challenge: Option<String>,
    retry_after: Option<u64>,
}

impl AuthError {
    fn missing(need: Need) -> Self {
        let (detail, realm) = match need {
            Need::Customer => (
                "This route needs a customer's token: Authorization: Bearer <JWT>.",
                "shop",
            ),
            Need::Reader => (
                "This route needs a customer's token (Authorization: Bearer <JWT>), a staff token or the admin token.",
                "shop",
            ),
            Need::Staff => (
                "This route is for staff: Authorization: Bearer <a staff member's JWT, or the admin token>.",
                "shop admin",
            ),
            Need::AdminToken => (
                "This route needs the admin token: Authorization: Bearer <token>.",
                "shop admin",
            ),
        };
        Self {
            problem: Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
                .with_detail(detail),
            challenge: Some(format!("Bearer realm=\"{realm}\"")),
            retry_after: None,
        }
    }

    fn invalid_token(error: &TokenError) -> Self {
        let description = error.to_string();
        Self {
            problem: Problem::new(StatusCode::UNAUTHORIZED, "invalid_token", "Invalid token")
                .with_detail(format!("{description}.")),
            challenge: Some(format!(
                "Bearer realm=\"shop\", error=\"invalid_token\", error_description=\"{description}\""
            )),
            retry_after: None,
        }
    }

    fn bad_admin_token(need: Need) -> Self {
        let detail = match need {
            Need::AdminToken => "The admin token is not valid.",
            _ => "The token is not the admin token, nor a JWT.",
        };
        Self {
            problem: Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
                .with_detail(detail),
            challenge: Some("Bearer realm=\"shop admin\", error=\"invalid_token\"".to_owned()),
            retry_after: None,
        }
    }

    fn staff_only() -> Self {
        Self {
            problem: Problem::new(StatusCode::FORBIDDEN, "staff_only", "Staff only").with_detail(
                "This route is for staff: the token is valid, but does not hold the staff role.",
            ),
            challenge: Some("Bearer realm=\"shop admin\", error=\"insufficient_scope\"".to_owned()),
            retry_after: None,
        }
    }

    fn admin_token_required() -> Self {
        Self {
            problem: Problem::new(
                StatusCode::FORBIDDEN,
                "admin_token_required",
                "Admin token required",
            )
            .with_detail(
                "This route takes the admin token only (what Prometheus scrapes with); a JWT, a staff member's too, does not open it.",
            ),
            challenge: None,
            retry_after: None,
        }
    }

    fn customer_only() -> Self {
        Self {
            problem: Problem::new(
                StatusCode::FORBIDDEN,
                "customer_token_required",
                "Customer token required",
            )
            .with_detail(
                "This route acts for a customer: call it with the customer's token, not the admin token.",
            ),
            challenge: None,
            retry_after: None,
        }
    }

    /// 401 `unauthorized` with the challenge of `realm`.
    pub fn unauthorized(detail: &str, realm: &str) -> Self {
        Self {
            problem: Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
                .with_detail(detail),
            challenge: Some(format!("Bearer realm=\"{realm}\"")),
            retry_after: None,
        }
    }

    fn ambiguous() -> Self {
        Self {
            problem: Problem::new(
                StatusCode::BAD_REQUEST,
                "ambiguous_credentials",
                "Ambiguous credentials",
            )
            .with_detail(
                "The request carries more than one Authorization header: send exactly one.",
            ),
            challenge: None,
            retry_after: None,
        }
    }

    fn too_many(retry_after: u64) -> Self {
        Self {
            problem: Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_auth_failures",
                "Too many failed authentications",
            )
            .with_detail(format!(
                "Too many requests from this address presented invalid credentials; try again in {retry_after} s."
            )),
            challenge: None,
            retry_after: Some(retry_after),
        }
    }

    pub fn problem(&self) -> &Problem {
        &self.problem
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.problem.fmt(f)
    }
}

impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::UNAUTHORIZED)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = self.problem.error_response();
        let headers = response.headers_mut();
        if let Some(challenge) = &self.challenge
            && let Ok(value) = HeaderValue::from_str(challenge)
        {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids() {
        assert!(UserId::parse("alice@example.com").is_ok());
        assert!(UserId::parse("auth0|64b0c0ffee").is_ok());
        assert!(UserId::parse("019b3f2d-1a2b-7c3d-8e4f-5a6b7c8d9e0f").is_ok());
        assert!(UserId::parse(&"a".repeat(64)).is_ok());
        assert!(UserId::parse(&"a".repeat(65)).is_err());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("-lead").is_err());
        assert!(UserId::parse("with space").is_err());
        assert!(UserId::parse("nul\0").is_err());
    }

    #[test]
    fn staff_see_everything_customers_their_own() {
        let alice = Caller::Customer(UserId::parse("alice").unwrap());
        assert!(alice.may_see("alice"));
        assert!(!alice.may_see("bob"));
        assert!(!alice.may_see("alice "));
        assert!(Caller::Staff.may_see("bob"));
    }
}

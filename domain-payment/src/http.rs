//! The payment context's HTTP adapter.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared_kernel::Problem;
use shared_kernel::model::clock;
use shared_kernel::model::ports::PaymentChannel;
use shared_kernel::web::auth::{Caller, Customer};
use shared_kernel::web::client::client_address;
use shared_kernel::web::extract::{Json, json_integer, parse_json};
use shared_kernel::web::problem::responses::{
    CustomerOnly, CustomerUnauthorized, MalformedJson, PayloadTooLarge, TooManyAuthFailures,
    Unavailable, UnsupportedMediaType,
};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::model::{Payment, PaymentId, PaymentMethod, PaymentStatus};
use crate::notify::{self, NotifyRoute};
use crate::qr;
use crate::service::{Notification, Notified, NotifiedStatus, Opening, PaymentRef};
use crate::signature::{self, Signed};
use crate::{PaymentError, PaymentService};

/// Mounts the REST routes (under the app's `/api/v1` scope).
pub fn configure_api(cfg: &mut ServiceConfig) {
    cfg.service(initiate_payment)
        .service(payment_result_notify)
        .service(get_payment);
    // Providers' own notification formats.
    cfg.service(crate::providers::alipay::notify::alipay_notify);
    cfg.service(crate::providers::wechat_pay::notify::wechat_pay_notify);
}

/// Mounts the original spec's literal paths.
pub fn configure_original_spec(cfg: &mut ServiceConfig) {
    cfg.service(original_initiate_payment)
        .service(original_payment_result_notify);
}

/// A payment.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    #[schema(example = "019b3f2e-5f6a-7b8c-9d0e-1f2a3b4c5d6e")]
    pub payment_id: String,
    #[schema(example = "019b3f2d-1a2b-7c3d-8e4f-5a6b7c8d9e0f")]
    pub order_id: String,
    pub payment_method: PaymentMethod,
    pub status: PaymentStatus,
    /// The order's amount, in minor units of `currency`.
    #[schema(minimum = 0, example = 999_900)]
    pub amount: i64,
    #[schema(example = "CNY", pattern = "^[A-Z]{3}$")]
    pub currency: String,
    /// Where the customer pays (with the sandbox gateway: its checkout page).
    #[schema(
        example = "http://127.0.0.1:8080/sandbox/checkout/019b3f2e-5f6a-7b8c-9d0e-1f2a3b4c5d6e"
    )]
    pub payment_url: String,
    /// An SVG QR code of `paymentUrl`, for scan-to-pay (WeChat Pay).
    pub qr_code: String,
    /// The payment can be made until the order expires.
    pub expires_at: DateTime<Utc>,
    /// The gateway's transaction id, once it reported an outcome; `null` before.
    #[schema(required = true)]
    pub transaction_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Payment> for PaymentView {
    fn from(p: Payment) -> Self {
        Self {
            qr_code: qr::svg(&p.payment_url).unwrap_or_default(),
            payment_id: p.id.into_string(),
            order_id: p.order_id,
            payment_method: p.method,
            status: p.status,
            amount: p.amount.minor(),
            currency: p.amount.currency().to_string(),
            payment_url: p.payment_url,
            expires_at: clock::to_utc(p.expires_at),
            transaction_id: p.transaction_id,
            created_at: clock::to_utc(p.created_at),
            updated_at: clock::to_utc(p.updated_at),
        }
    }
}

/// A payment to open for an order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitiatePayment {
    #[schema(min_length = 1, example = "019b3f2d-1a2b-7c3d-8e4f-5a6b7c8d9e0f")]
    pub order_id: String,
    pub payment_method: PaymentMethod,
    /// Which of the provider's flows: `page` (a computer's browser), `wap`
    /// (a phone's browser) or `qr` (a code to scan with the provider's app).
    /// By default Alipay's page and WeChat Pay's QR code; the sandbox has one page for all.
    #[serde(default)]
    pub channel: Option<PaymentChannel>,
}

fn payment_response(payment: Payment, created: bool) -> HttpResponse {
    let location = format!("/api/v1/payments/{}", payment.id);
    let mut response = if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::LOCATION, location))
        .json(PaymentView::from(payment))
}

/// Why a payment is not opened, on the REST route and its original-spec alias.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only: the handlers answer `Problem`s
enum InitiationRefusals {
    #[response(status = 400)]
    BadRequest(#[ref_response] MalformedJson),
    #[response(status = 401)]
    Unauthorized(#[ref_response] CustomerUnauthorized),
    #[response(status = 403)]
    Forbidden(#[ref_response] CustomerOnly),
    #[response(
        status = 404,
        description = "No order of the caller has this id (`order_not_found`)",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
    #[response(
        status = 409,
        description = "The order is paid (`order_already_paid`), cancelled (`order_cancelled`) or expired (`order_expired`)",
        content_type = "application/problem+json"
    )]
    Conflict(Problem),
    #[response(status = 413)]
    TooLarge(#[ref_response] PayloadTooLarge),
    #[response(status = 415)]
    UnsupportedMediaType(#[ref_response] UnsupportedMediaType),
    #[response(
        status = 422,
        description = "A field is missing or invalid, such as an unknown `paymentMethod` (`validation_failed`), the method's provider does not take the order's currency (`currency_not_accepted`: Alipay and WeChat Pay take CNY only), or its amount in one payment (`amount_not_accepted`: Alipay 0.01 to 100,000,000.00 CNY, WeChat Pay 0.01 to 21,474,836.47 CNY; the detail names the range)",
        content_type = "application/problem+json"
    )]
    Invalid(Problem),
    #[response(status = 429)]
    TooManyRequests(#[ref_response] TooManyAuthFailures),
    #[response(
        status = 503,
        description = "No payment gateway is configured (`no_payment_gateway`), or the database is unavailable",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem),
}

/// Pay for an order
///
/// Opens a payment for a pending, unexpired order and answers where the
/// customer pays: `paymentUrl` and, for scan-to-pay, `qrCode`. While a
/// payment of the order is open, calling again returns that one (200).
#[utoipa::path(
    operation_id = "initiatePayment",
    tag = "payments",
    security(("customerToken" = [])),
    request_body = InitiatePayment,
    responses(
        (status = 201, description = "A payment was opened", body = PaymentView,
            headers(("Location" = String, description = "The payment's URL"))),
        (status = 200, description = "The order's payment that is still open", body = PaymentView,
            headers(("Location" = String, description = "The payment's URL"))),
        InitiationRefusals,
    )
)]
#[post("/payments")]
async fn initiate_payment(
    req: HttpRequest,
    customer: Customer,
    payments: web::Data<PaymentService>,
    body: Json<InitiatePayment>,
) -> Result<HttpResponse, Problem> {
    initiate(&req, &customer, &payments, body.into_inner()).await
}

async fn initiate(
    req: &HttpRequest,
    customer: &Customer,
    payments: &PaymentService,
    body: InitiatePayment,
) -> Result<HttpResponse, Problem> {
    let opening = Opening {
        order_id: body.order_id,
        method: body.payment_method,
        channel: body.channel,
        // The peer, or the address a trusted proxy forwarded
        // (SHOP__SERVER__TRUSTED_PROXIES), never a header anyone else wrote
        // (WeChat Pay uses it for risk checks only).
        client_ip: Some(client_address(req).to_string()),
    };
    let (payment, created) = payments.initiate(&customer.0, opening).await?;
    Ok(payment_response(payment, created))
}

/// Get a payment
#[utoipa::path(
    operation_id = "getPayment",
    tag = "payments",
    security(("customerToken" = []), ("adminToken" = [])),
    params(("paymentId" = String, Path, description = "The payment's id", example = "019b3f2e-5f6a-7b8c-9d0e-1f2a3b4c5d6e")),
    responses(
        (status = 200, description = "The payment", body = PaymentView),
        (status = 401, response = CustomerUnauthorized),
        (status = 404, description = "No payment of the caller has this id (`payment_not_found`; another customer's payment is not found either)", body = Problem, content_type = "application/problem+json"),
        (status = 429, response = TooManyAuthFailures),
        (status = 503, response = Unavailable),
    )
)]
#[get("/payments/{paymentId}")]
async fn get_payment(
    caller: Caller,
    payments: web::Data<PaymentService>,
    id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let payment = payments
        .get(&caller, PaymentId::from(id.into_inner()))
        .await?;
    Ok(HttpResponse::Ok().json(PaymentView::from(payment)))
}

/// What the gateway reports.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotifiedPaymentStatus {
    Success,
    Failure,
}

impl From<NotifiedPaymentStatus> for NotifiedStatus {
    fn from(status: NotifiedPaymentStatus) -> Self {
        match status {
            NotifiedPaymentStatus::Success => Self::Success,
            NotifiedPaymentStatus::Failure => Self::Failure,
        }
    }
}

/// A gateway's notification of a payment's outcome.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentNotification {
    #[schema(example = "019b3f2e-5f6a-7b8c-9d0e-1f2a3b4c5d6e")]
    pub payment_id: String,
    pub payment_status: NotifiedPaymentStatus,
    /// Must equal the payment's amount (minor units).
    #[serde(deserialize_with = "json_integer")]
    #[schema(minimum = 0, example = 999_900)]
    pub amount: i64,
    /// Must equal the payment's currency.
    #[schema(example = "CNY")]
    pub currency: String,
    /// The gateway's id of the transaction: 1 to 128 visible ASCII
    /// characters (no space or control character).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[\\x21-\\x7e]{1,128}$",
        example = "sandbox-7f3a9c"
    )]
    pub transaction_id: Option<String>,
}

/// The `Shop-Signature` header of notifications.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct SignatureHeader {
    /// `t=<unix seconds>,v1=<hex>`: HMAC-SHA256 under the webhook secret
    /// (`SHOP__PAYMENT__WEBHOOK_SECRET`) of `"<t>.<raw request body>"`.
    /// Missing, malformed, not matching, or more than 5 minutes old: 401.
    #[serde(rename = "Shop-Signature")]
    #[param(
        example = "t=1767225600,v1=5f2b6c0e9a8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b"
    )]
    pub shop_signature: String,
}

/// What a notification did.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationResult {
    pub payment_id: String,
    pub order_id: String,
    /// The status the notification left the payment in: `succeeded` or
    /// `refund_required` after a success (`refund_required` when the order was
    /// cancelled or paid by another payment; `refunded` for a repeat once the
    /// money went back), `failed` (or `closed`, for a payment whose order was
    /// cancelled) after a failure.
    pub payment_status: PaymentStatus,
    /// False when nothing changed: the payment already had this outcome (a
    /// duplicate, or a gateway's retry of the same signed notification).
    pub applied: bool,
}

impl From<Notified> for NotificationResult {
    fn from(n: Notified) -> Self {
        Self {
            payment_id: n.payment.id.into_string(),
            order_id: n.payment.order_id,
            payment_status: n.payment.status,
            applied: n.applied,
        }
    }
}

/// The `Shop-Signature` routes: a JSON body `B` a gateway signed, whose
/// claim (which payment, what outcome) `claim` reads, answered by `answer`.
/// The signature is checked against the raw body before anything is read
/// from it; refusals are problems, counted by their code
/// (`invalid_signature`, `amount_mismatch`, ...).
struct ShopSigned<B, A> {
    claim: fn(B) -> Result<(PaymentRef, Notification), PaymentError>,
    answer: fn(Notified) -> A,
}

impl<B: serde::de::DeserializeOwned, A> NotifyRoute for ShopSigned<B, A> {
    const GATEWAY: Option<&'static str> = None;
    type Verified = (Signed, PaymentRef, Notification);
    type Applied = Notified;
    type Refusal = Problem;
    type Answer = Result<A, Problem>;

    fn verify(
        &self,
        payments: &PaymentService,
        req: &HttpRequest,
        body: &[u8],
    ) -> Result<Self::Verified, Problem> {
        let signature = req
            .headers()
            .get(signature::HEADER)
            .and_then(|v| v.to_str().ok());
        let signed = payments.verify(signature, body)?;
        let (payment, notification) = (self.claim)(parse_json(body)?)?;
        Ok((signed, payment, notification))
    }

    async fn apply(
        &self,
        payments: &PaymentService,
        (signed, payment, notification): Self::Verified,
    ) -> Result<Notified, Problem> {
        Ok(payments
            .apply_notification(signed, payment, notification)
            .await?)
    }

    fn reason(problem: &Problem) -> String {
        problem.code.clone()
    }

    fn answer(&self, outcome: Result<Notified, Problem>) -> Self::Answer {
        outcome.map(self.answer)
    }
}

/// Why a signed notification is refused before it is read, on both notify routes.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only: the handlers answer `Problem`s
enum SignatureRefusals {
    #[response(status = 400)]
    BadRequest(#[ref_response] MalformedJson),
    #[response(
        status = 401,
        description = "`Shop-Signature` is missing, malformed, wrong or stale (`invalid_signature`); nothing changed",
        content_type = "application/problem+json"
    )]
    Unauthorized(Problem),
}

/// Why a signed notification is refused once it is read, on both notify routes (besides what names no payment).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only: the handlers answer `Problem`s
enum NotificationRefusals {
    #[response(status = 413)]
    TooLarge(#[ref_response] PayloadTooLarge),
    #[response(
        status = 422,
        description = "A field is missing or invalid, such as a `transactionId` that is not 1 to 128 visible ASCII characters (`validation_failed`), or the amount or currency does not match the payment (`amount_mismatch`); nothing changed",
        content_type = "application/problem+json"
    )]
    Invalid(Problem),
    #[response(status = 503)]
    Unavailable(#[ref_response] Unavailable),
}

/// Report a payment's outcome (gateways)
///
/// Signed by the gateway with `Shop-Signature`. A notification (the same
/// body signed at the same second) is accepted at most once. Nothing changes,
/// and the answer is 200 with `applied: false`, for another notification of
/// the outcome the payment already has, or for an exact replay of one
/// accepted before while its payment still shows that outcome (a gateway's
/// retry); any other replay is refused (409 `notification_replayed`).
///
/// A success is never refused: it makes the order `paid`, or, when the order
/// was cancelled or paid by another payment, marks the payment
/// `refund_required`, even after a failure. `paymentStatus` answers the
/// status the payment ends in. A failure leaves the order payable until it
/// expires; a failure for a payment that took money is refused.
#[utoipa::path(
    operation_id = "paymentResultNotify",
    tag = "payments",
    security(()),
    params(SignatureHeader),
    request_body = PaymentNotification,
    responses(
        (status = 200, description = "Applied (`applied: true`), or nothing to change (`applied: false`); `paymentStatus` is the payment's status now", body = NotificationResult),
        SignatureRefusals,
        (status = 404, description = "No payment has this id, or no gateway here settles payments by `Shop-Signature` (the sandbox is off: `not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The payment was opened with a provider that has its own channel, Alipay or WeChat Pay, whose notifications and queries alone settle it (`wrong_notification_channel`), a failure for a payment that took money (`payment_already_final`), or a replay of a notification accepted before whose payment has since moved on (`notification_replayed`); nothing changed", body = Problem, content_type = "application/problem+json"),
        NotificationRefusals,
    )
)]
#[post("/payments/notify")]
async fn payment_result_notify(
    req: HttpRequest,
    payments: web::Data<PaymentService>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let route = ShopSigned {
        claim: |n: PaymentNotification| {
            let notification = Notification::new(
                n.payment_status.into(),
                Some(n.amount),
                Some(n.currency),
                n.transaction_id,
            )?;
            Ok((
                PaymentRef::Payment(PaymentId::from(n.payment_id)),
                notification,
            ))
        },
        answer: |notified| HttpResponse::Ok().json(NotificationResult::from(notified)),
    };
    notify::receive(&route, &payments, &req, &body).await
}

/// Pay for an order (original spec path)
///
/// The original spec's `initiatePayment`; same rules as `POST /api/v1/payments`.
#[utoipa::path(
    operation_id = "originalInitiatePayment",
    tag = "original spec",
    security(("customerToken" = [])),
    request_body = InitiatePayment,
    responses(
        (status = 201, description = "A payment was opened", body = PaymentView),
        (status = 200, description = "The order's payment that is still open", body = PaymentView),
        InitiationRefusals,
    )
)]
#[post("/initiatePayment")]
async fn original_initiate_payment(
    req: HttpRequest,
    customer: Customer,
    payments: web::Data<PaymentService>,
    body: Json<InitiatePayment>,
) -> Result<HttpResponse, Problem> {
    initiate(&req, &customer, &payments, body.into_inner()).await
}

/// The original spec's notification: it names the order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OriginalPaymentNotification {
    #[schema(example = "019b3f2d-1a2b-7c3d-8e4f-5a6b7c8d9e0f")]
    pub order_id: String,
    pub payment_status: NotifiedPaymentStatus,
    /// When given, must equal the payment's amount.
    #[serde(default, deserialize_with = "optional_json_integer")]
    #[schema(minimum = 0, example = 999_900)]
    pub amount: Option<i64>,
    /// When given, must equal the payment's currency.
    #[schema(example = "CNY")]
    pub currency: Option<String>,
    /// The gateway's id of the transaction: 1 to 128 visible ASCII
    /// characters (no space or control character).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[\\x21-\\x7e]{1,128}$",
        example = "sandbox-7f3a9c"
    )]
    pub transaction_id: Option<String>,
}

fn optional_json_integer<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrapped(#[serde(deserialize_with = "json_integer")] i64);
    Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|Wrapped(n)| n))
}

/// The original spec's answer to a notification.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OriginalNotificationResult {
    /// Whether shop accepted the notification (applied now, or already applied before).
    pub success: bool,
    #[schema(example = "payment succeeded")]
    pub message: String,
    pub payment_id: String,
    pub order_id: String,
    pub payment_status: PaymentStatus,
}

/// Report a payment's outcome (original spec path)
///
/// The original spec's `paymentResultNotify`: `orderId` names the order's
/// open (or latest) payment. Same signature and rules as
/// `POST /api/v1/payments/notify`, replays included: the same signed bytes
/// are accepted at most once, so a notification accepted for one payment
/// never acts on the order's next one. A notification signed before the
/// order's payment was opened cannot be about it (409
/// `notification_predates_payment`); an order with no payment initiated gets
/// 409 `no_payment_initiated`.
#[utoipa::path(
    operation_id = "originalPaymentResultNotify",
    tag = "original spec",
    security(()),
    params(SignatureHeader),
    request_body = OriginalPaymentNotification,
    responses(
        (status = 200, description = "Accepted: applied, or nothing to change; `paymentStatus` is the payment's status now", body = OriginalNotificationResult),
        SignatureRefusals,
        (status = 404, description = "No order has this id, or no gateway here settles payments by `Shop-Signature` (the sandbox is off: `not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The order's payment was opened with a provider that has its own channel, Alipay or WeChat Pay (`wrong_notification_channel`), the order has no payment (`no_payment_initiated`), its payment was opened after the notification was signed (`notification_predates_payment`), the notification is a failure for a payment that took money (`payment_already_final`), or it replays one accepted before whose payment has since moved on, or that named an earlier payment (`notification_replayed`); nothing changed", body = Problem, content_type = "application/problem+json"),
        NotificationRefusals,
    )
)]
#[post("/paymentResultNotify")]
async fn original_payment_result_notify(
    req: HttpRequest,
    payments: web::Data<PaymentService>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let route = ShopSigned {
        claim: |n: OriginalPaymentNotification| {
            let notification = Notification::new(
                n.payment_status.into(),
                n.amount,
                n.currency,
                n.transaction_id,
            )?;
            Ok((PaymentRef::Order(n.order_id), notification))
        },
        answer: |notified| {
            let message = match (notified.applied, notified.payment.status) {
                (true, status) => format!("payment {}", status.as_str()),
                (false, status) => format!("already applied: the payment is {}", status.as_str()),
            };
            HttpResponse::Ok().json(OriginalNotificationResult {
                success: true,
                message,
                payment_id: notified.payment.id.into_string(),
                order_id: notified.payment.order_id,
                payment_status: notified.payment.status,
            })
        },
    };
    notify::receive(&route, &payments, &req, &body).await
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    use super::*;
    use crate::model::{TRANSACTION_ID_MAX_LEN, TRANSACTION_ID_PATTERN};

    #[test]
    fn the_document_states_the_transaction_id_rule_the_validator_applies() {
        for schema in [
            PaymentNotification::schema(),
            OriginalPaymentNotification::schema(),
        ] {
            let schema = serde_json::to_value(schema).unwrap();
            let field = &schema["properties"]["transactionId"];
            assert_eq!(field["pattern"], TRANSACTION_ID_PATTERN, "{schema}");
            assert_eq!(field["maxLength"], TRANSACTION_ID_MAX_LEN, "{schema}");
            assert_eq!(field["minLength"], 1, "{schema}");
        }
    }
}

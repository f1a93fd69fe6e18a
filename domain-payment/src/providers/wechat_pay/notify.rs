//! WeChat Pay's payment notifications: `POST /api/v1/payments/notify/wechat_pay`.
//!
//! Every notification is believed only once its `Wechatpay-*` headers verify
//! over the raw body (a configured key's serial, less than 300 s old, not a
//! `WECHATPAY/SIGNTEST/` probe), its resource decrypts under the APIv3 key
//! (AES-256-GCM, the associated data authenticated), and the transaction names
//! this merchant (`mchid`), this application (`appid`), a payment of shop's
//! opened with WeChat Pay (`out_trade_no`) and its amount (`amount.total`, in
//! CNY). A success is then applied through [`PaymentService::apply_paid`]:
//! once, however often WeChat Pay sends it. The answer is 204 to accept; a
//! 4xx or 5xx with `{"code": "FAIL", "message": ...}` makes WeChat Pay send it
//! again later; anything refused changes nothing.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use shared_kernel::db::DbError;
use shared_kernel::http::CallerFormat;
use shared_kernel::ports::PortError;
use shared_kernel::problem::responses::PayloadTooLarge;
use utoipa::{IntoParams, ToSchema};

use crate::PaymentError;
use crate::model::PaymentStatus;
use crate::providers::OutTradeNo;
use crate::providers::wechat_pay::gateway::{NAME, WechatPayGateway};
use crate::providers::wechat_pay::{self, NotificationError, SignatureHeaders};
use crate::service::PaymentService;

/// The answer WeChat Pay reads as "send it again later".
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WechatPayFailure {
    /// Always `FAIL`.
    #[schema(example = "FAIL")]
    pub code: String,
    #[schema(example = "the signature does not match: forged or altered")]
    pub message: String,
}

/// The encrypted part of a notification.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct WechatPayResource {
    #[schema(example = "AEAD_AES_256_GCM")]
    pub algorithm: String,
    /// Base64 of the AES-256-GCM ciphertext and its 16-byte tag, under the APIv3 key.
    pub ciphertext: String,
    #[schema(example = "transaction")]
    pub associated_data: Option<String>,
    /// 12 characters.
    pub nonce: String,
    #[schema(example = "transaction")]
    pub original_type: Option<String>,
}

/// A WeChat Pay API v3 notification (documented here; read as raw bytes,
/// since the signature covers them).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct WechatPayNotification {
    #[schema(example = "EV-2018022511223320873")]
    pub id: String,
    #[schema(example = "2025-02-01T00:31:16+08:00")]
    pub create_time: String,
    /// `TRANSACTION.SUCCESS` for a payment; other events are acknowledged
    /// and change nothing.
    #[schema(example = "TRANSACTION.SUCCESS")]
    pub event_type: String,
    #[schema(example = "encrypt-resource")]
    pub resource_type: String,
    pub resource: WechatPayResource,
    pub summary: Option<String>,
}

/// The headers WeChat Pay signs a notification with.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct WechatPayHeaders {
    /// Unix seconds; 300 s or more from shop's clock is refused.
    #[serde(rename = "Wechatpay-Timestamp")]
    #[param(example = "1738341076")]
    pub timestamp: String,
    #[serde(rename = "Wechatpay-Nonce")]
    pub nonce: String,
    /// Base64 SHA256withRSA over `timestamp\nnonce\nbody\n`.
    #[serde(rename = "Wechatpay-Signature")]
    pub signature: String,
    /// Which configured WeChat Pay public key signed (`SHOP__PAYMENT__WECHAT_PAY__PUBLIC_KEY_ID`).
    #[serde(rename = "Wechatpay-Serial")]
    #[param(example = "PUB_KEY_ID_0119000000012025013100000000000001")]
    pub serial: String,
}

/// A refusal, as WeChat Pay reads one.
struct Refused {
    status: StatusCode,
    reason: &'static str,
    message: String,
}

fn refused(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Refused {
    Refused {
        status,
        reason,
        message: message.into(),
    }
}

impl From<PaymentError> for Refused {
    fn from(error: PaymentError) -> Self {
        match error {
            PaymentError::NotFound(_) => refused(
                StatusCode::NOT_FOUND,
                "unknown_trade",
                "no payment has this out_trade_no",
            ),
            PaymentError::AmountMismatch { .. } => refused(
                StatusCode::BAD_REQUEST,
                "amount_mismatch",
                "amount.total is not the payment's",
            ),
            PaymentError::Invalid(_) => refused(
                StatusCode::BAD_REQUEST,
                "invalid",
                "transaction_id is not one shop can keep",
            ),
            PaymentError::AlreadyFinal(status) => refused(
                StatusCode::CONFLICT,
                "payment_already_final",
                format!("the payment is {}", status.as_str()),
            ),
            PaymentError::Db(DbError::Unavailable(_))
            | PaymentError::Port(PortError::Unavailable(_)) => refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "try again later",
            ),
            other => {
                tracing::error!(error = %other, "a WeChat Pay notification could not be applied");
                refused(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "try again later",
                )
            }
        }
    }
}

/// Receive a WeChat Pay notification (WeChat Pay)
///
/// WeChat Pay API v3's payment notification, in its own format: verified
/// from its `Wechatpay-*` headers over the raw body with the configured
/// WeChat Pay public key (less than 300 s old; `WECHATPAY/SIGNTEST/` probes
/// refused), its resource decrypted with the APIv3 key (AES-256-GCM), and its
/// `mchid`, `appid`, `out_trade_no` and `amount.total` checked against the
/// payment. A success is applied once: the order becomes paid, or the money
/// is marked for refund when the order can no longer take it. 204 accepts; any
/// refusal is a `{"code": "FAIL"}` that WeChat Pay sends again later, and
/// changes nothing.
#[utoipa::path(
    operation_id = "wechatPayNotify",
    tag = "payments",
    security(()),
    params(WechatPayHeaders),
    request_body(content = WechatPayNotification, content_type = "application/json"),
    responses(
        (status = 204, description = "Accepted: applied, or nothing to change (a retry of one already applied, or an event that is not a payment's)"),
        (status = 400, description = "Not a notification shop can read, a resource that does not decrypt, or a genuine one about another merchant, application or amount; nothing changed", body = WechatPayFailure),
        (status = 401, description = "The signature is missing, wrong, stale, a probe, or by an unknown key; nothing changed", body = WechatPayFailure),
        (status = 404, description = "No payment opened with WeChat Pay has this `out_trade_no`, or WeChat Pay is not configured here; nothing changed", body = WechatPayFailure),
        (status = 409, description = "The payment can no longer take a success; nothing changed", body = WechatPayFailure),
        (status = 413, response = PayloadTooLarge),
        (status = 500, description = "Shop could not apply it; WeChat Pay sends it again later", body = WechatPayFailure),
        (status = 503, description = "Shop cannot apply it now; WeChat Pay sends it again later", body = WechatPayFailure),
    )
)]
#[post("/payments/notify/wechat_pay")]
pub async fn wechat_pay_notify(
    req: HttpRequest,
    gateway: Option<web::Data<WechatPayGateway>>,
    payments: web::Data<PaymentService>,
    body: web::Bytes,
) -> HttpResponse {
    match receive(
        &req,
        gateway.as_ref().map(|g| g.get_ref()),
        &payments,
        &body,
    )
    .await
    {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(refusal) => {
            metrics::counter!(
                "shop_payment_notifications_rejected_total",
                "reason" => refusal.reason,
                "gateway" => NAME
            )
            .increment(1);
            tracing::warn!(
                status = refusal.status.as_u16(),
                reason = refusal.reason,
                message = %refusal.message,
                "a WeChat Pay notification was refused"
            );
            let mut response = HttpResponse::build(refusal.status).json(WechatPayFailure {
                code: "FAIL".to_owned(),
                message: refusal.message,
            });
            // WeChat Pay's format, not a problem+json.
            response.extensions_mut().insert(CallerFormat);
            response
        }
    }
}

/// The headers every notification is signed with.
const SIGNATURE_HEADERS: [&str; 4] = [
    wechat_pay::HEADER_TIMESTAMP,
    wechat_pay::HEADER_NONCE,
    wechat_pay::HEADER_SIGNATURE,
    wechat_pay::HEADER_SERIAL,
];

async fn receive(
    req: &HttpRequest,
    gateway: Option<&WechatPayGateway>,
    payments: &PaymentService,
    body: &[u8],
) -> Result<(), Refused> {
    // Unsigned is unsigned, whether or not WeChat Pay is configured here.
    if let Some(missing) = SIGNATURE_HEADERS.into_iter().find(|name| {
        req.headers()
            .get(*name)
            .and_then(|v| v.to_str().ok())
            .is_none_or(str::is_empty)
    }) {
        return Err(refused(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            format!("the {missing} header is missing"),
        ));
    }
    let gateway = gateway.ok_or_else(|| {
        refused(
            StatusCode::NOT_FOUND,
            "not_configured",
            "WeChat Pay is not configured here",
        )
    })?;
    let protocol = gateway.protocol();
    let headers =
        SignatureHeaders::from_lookup(|name| req.headers().get(name).and_then(|v| v.to_str().ok()));
    let notification = match protocol.read_transaction_notification(&headers, body, Utc::now()) {
        Ok(notification) => notification,
        // Genuine, about a refund or something else: nothing to do.
        Err(NotificationError::NotATransaction { event_type }) => {
            tracing::info!(%event_type, "a WeChat Pay notification that is not a payment's: acknowledged");
            return Ok(());
        }
        Err(NotificationError::Signature(error)) => {
            return Err(refused(
                StatusCode::UNAUTHORIZED,
                "invalid_signature",
                error.to_string(),
            ));
        }
        Err(NotificationError::Cipher(error)) => {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "undecryptable",
                error.to_string(),
            ));
        }
        Err(NotificationError::Malformed(error)) => {
            return Err(refused(StatusCode::BAD_REQUEST, "malformed", error));
        }
    };
    let transaction = notification.transaction;
    let no = OutTradeNo::parse(&transaction.out_trade_no).ok_or_else(|| {
        refused(
            StatusCode::NOT_FOUND,
            "unknown_trade",
            "no payment has this out_trade_no",
        )
    })?;
    let payment = payments.find(no.payment_id()).await?;
    if payment.gateway != NAME {
        return Err(refused(
            StatusCode::NOT_FOUND,
            "unknown_trade",
            "no payment opened with WeChat Pay has this out_trade_no",
        ));
    }
    if let Err(mismatch) = transaction.check(&protocol.expected(&no, payment.amount.minor())) {
        tracing::error!(payment_id = %payment.id, %mismatch, "a genuine WeChat Pay notification does not match its payment");
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "mismatch",
            format!("{} does not match the payment", mismatch.field),
        ));
    }
    if !transaction.trade_state.is_paid() {
        // Not a success: the lifecycle asks WeChat Pay itself when it matters.
        return Ok(());
    }
    let transaction_id = transaction.transaction_id.as_deref().ok_or_else(|| {
        refused(
            StatusCode::BAD_REQUEST,
            "malformed",
            "a success without transaction_id",
        )
    })?;
    let moved = payments
        .apply_paid(&payment.id, transaction_id, payment.amount.minor())
        .await?;
    if moved.applied {
        tracing::info!(payment_id = %payment.id, notification_id = %notification.id, status = moved.payment.status.as_str(), "WeChat Pay notification applied");
    }
    if moved.payment.status == PaymentStatus::RefundRequired {
        tracing::warn!(payment_id = %payment.id, "paid through WeChat Pay after its order could no longer take it: marked for refund");
    }
    Ok(())
}

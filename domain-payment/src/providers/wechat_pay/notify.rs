//! WeChat Pay's payment notifications: `POST /api/v1/payments/notify/wechat_pay`.
//!
//! Through the one notification pipeline ([`crate::notify`]). Every
//! notification is believed only once its `Wechatpay-*` headers verify over
//! the raw body (a configured key's serial, less than 300 s old, not a
//! `WECHATPAY/SIGNTEST/` probe) and its resource decrypts under the APIv3 key
//! (AES-256-GCM, the associated data authenticated). The transaction is then
//! reported to [`PaymentService::apply_report`], whose rules check that it
//! names this merchant (`mchid`), this application (`appid`), a payment of
//! shop's opened with WeChat Pay (`out_trade_no`) and its amount
//! (`amount.total`, in CNY), and apply a success once, however often WeChat
//! Pay sends it. The answer is 204 to accept; a
//! 4xx or 5xx with `{"code": "FAIL", "message": ...}` makes WeChat Pay send it
//! again later; anything refused changes nothing.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use shared_kernel::model::ports::PortError;
use shared_kernel::storage::db::DbError;
use shared_kernel::web::extract::CallerFormat;
use shared_kernel::web::problem::responses::PayloadTooLarge;
use utoipa::{IntoParams, ToSchema};

use crate::PaymentError;
use crate::model::{
    Party, PaymentStatus, ProviderReport, ReportMismatch, ReportedAmount, TradeOutcome,
};
use crate::notify::{self, NotifyRoute};
use crate::providers::OutTradeNo;
use crate::providers::wechat_pay::gateway::{NAME, WechatPayGateway};
use crate::providers::wechat_pay::{
    self, NotificationError, SignatureHeaders, Transaction, TransactionNotification, WechatPay,
};
use crate::service::{PaymentService, ReportRefused, Reported};

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
    let route = WechatPayRoute(gateway.as_ref().map(|g| g.get_ref()));
    notify::receive(&route, &payments, &req, &body).await
}

/// The headers every notification is signed with.
const SIGNATURE_HEADERS: [&str; 4] = [
    wechat_pay::HEADER_TIMESTAMP,
    wechat_pay::HEADER_NONCE,
    wechat_pay::HEADER_SIGNATURE,
    wechat_pay::HEADER_SERIAL,
];

/// WeChat Pay's steps: headers and body verified, the resource decrypted, its
/// report applied through the service, 204 or a `{"code": "FAIL"}`.
struct WechatPayRoute<'a>(Option<&'a WechatPayGateway>);

impl<'a> NotifyRoute for WechatPayRoute<'a> {
    const GATEWAY: Option<&'static str> = Some(NAME);
    /// `None`: genuine, about a refund or something else; nothing to do.
    type Verified = Option<(&'a WechatPay, TransactionNotification)>;
    type Applied = ();
    type Refusal = Refused;
    type Answer = HttpResponse;

    fn verify(
        &self,
        _: &PaymentService,
        req: &HttpRequest,
        body: &[u8],
    ) -> Result<Self::Verified, Refused> {
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
        let gateway = self.0.ok_or_else(|| {
            refused(
                StatusCode::NOT_FOUND,
                "not_configured",
                "WeChat Pay is not configured here",
            )
        })?;
        let protocol = gateway.protocol();
        let headers = SignatureHeaders::from_lookup(|name| {
            req.headers().get(name).and_then(|v| v.to_str().ok())
        });
        match protocol.read_transaction_notification(&headers, body, Utc::now()) {
            Ok(notification) => Ok(Some((protocol, notification))),
            // Genuine, about a refund or something else: nothing to do.
            Err(NotificationError::NotATransaction { event_type }) => {
                tracing::info!(%event_type, "a WeChat Pay notification that is not a payment's: acknowledged");
                Ok(None)
            }
            Err(NotificationError::Signature(error)) => Err(refused(
                StatusCode::UNAUTHORIZED,
                "invalid_signature",
                error.to_string(),
            )),
            Err(NotificationError::Cipher(error)) => Err(refused(
                StatusCode::BAD_REQUEST,
                "undecryptable",
                error.to_string(),
            )),
            Err(NotificationError::Malformed(error)) => {
                Err(refused(StatusCode::BAD_REQUEST, "malformed", error))
            }
        }
    }

    async fn apply(
        &self,
        payments: &PaymentService,
        verified: Self::Verified,
    ) -> Result<(), Refused> {
        let Some((protocol, notification)) = verified else {
            return Ok(());
        };
        let unknown_trade = || {
            refused(
                StatusCode::NOT_FOUND,
                "unknown_trade",
                "no payment has this out_trade_no",
            )
        };
        let report = report(protocol, &notification.transaction).ok_or_else(unknown_trade)?;
        let payment_id = report.payment_id.clone();
        match payments.apply_report(report).await {
            // Not a success: the lifecycle asks WeChat Pay itself when it matters.
            Ok(Reported::NotPaid(_)) => Ok(()),
            Ok(Reported::Paid(moved)) => {
                if moved.applied {
                    tracing::info!(payment_id = %payment_id, notification_id = %notification.id, status = moved.payment.status.as_str(), "WeChat Pay notification applied");
                }
                if moved.payment.status == PaymentStatus::RefundRequired {
                    tracing::warn!(payment_id = %payment_id, "paid through WeChat Pay after its order could no longer take it: marked for refund");
                }
                Ok(())
            }
            Err(ReportRefused::UnknownTrade) => Err(unknown_trade()),
            Err(ReportRefused::Mismatch(ReportMismatch::OtherGateway)) => Err(refused(
                StatusCode::NOT_FOUND,
                "unknown_trade",
                "no payment opened with WeChat Pay has this out_trade_no",
            )),
            Err(ReportRefused::Mismatch(
                ReportMismatch::Party(mismatch) | ReportMismatch::Amount(mismatch),
            )) => {
                tracing::error!(%payment_id, %mismatch, "a genuine WeChat Pay notification does not match its payment");
                Err(refused(
                    StatusCode::BAD_REQUEST,
                    "mismatch",
                    format!("{} does not match the payment", mismatch.field),
                ))
            }
            Err(ReportRefused::NoTransactionId) => Err(refused(
                StatusCode::BAD_REQUEST,
                "malformed",
                "a success without transaction_id",
            )),
            Err(ReportRefused::Payment(error)) => Err(error.into()),
        }
    }

    fn reason(refusal: &Refused) -> String {
        refusal.reason.to_owned()
    }

    fn answer(&self, outcome: Result<(), Refused>) -> HttpResponse {
        let Err(refusal) = outcome else {
            return HttpResponse::NoContent().finish();
        };
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

/// What a verified transaction reports, for the service's rules; `None`
/// when its `out_trade_no` is none shop sends.
fn report(protocol: &WechatPay, transaction: &Transaction) -> Option<ProviderReport> {
    let out_trade_no = OutTradeNo::parse(&transaction.out_trade_no)?;
    let config = protocol.config();
    let party = |field, configured: &str, reported: &str| Party {
        field,
        configured: configured.to_owned(),
        reported: reported.to_owned(),
    };
    let amount = transaction.amount.as_ref();
    Some(ProviderReport {
        gateway: NAME,
        payment_id: out_trade_no.payment_id(),
        parties: vec![
            party("mchid", &config.mch_id, &transaction.mchid),
            party("appid", &config.app_id, &transaction.appid),
        ],
        amount: ReportedAmount {
            field: "amount.total",
            minor: amount.map(|amount| amount.total),
            currency: amount
                .and_then(|amount| amount.currency.clone())
                .map(|currency| ("amount.currency", currency)),
            written: |fen| fen.to_string(),
        },
        outcome: if transaction.trade_state.is_paid() {
            TradeOutcome::Paid {
                transaction_id: transaction.transaction_id.clone(),
            }
        } else {
            TradeOutcome::NotPaid
        },
    })
}

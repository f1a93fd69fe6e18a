//! Alipay's asynchronous notification (`POST /api/v1/payments/notify/alipay`):
//! a form, verified with the Alipay public key before anything in it is
//! believed, then checked against the payment it names; a success goes
//! through [`PaymentService::apply_paid`], once.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, post, web};
use serde::Deserialize;
use shared_kernel::Problem;
use shared_kernel::problem::responses::{PayloadTooLarge, Unavailable};
use utoipa::ToSchema;

use crate::PaymentService;
use crate::model::PaymentId;
use crate::providers::OutTradeNo;
use crate::providers::alipay::gateway::{self, AlipayGateway};
use crate::providers::alipay::{NOTIFY_ACK, NotificationError};

/// The fields of Alipay's notification shop reads (a form; the others are
/// signed and verified too).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct AlipayNotificationForm {
    /// The same on every retry of one notification.
    #[schema(example = "2025020100222153021012345678")]
    notify_id: String,
    #[schema(example = "trade_status_sync")]
    notify_type: String,
    /// Must be shop's application.
    #[schema(example = "2021000000000001")]
    app_id: String,
    /// Must be the configured seller, when one is configured.
    #[schema(example = "2088000000000002")]
    seller_id: Option<String>,
    /// The payment id as 32 hex digits.
    #[schema(example = "019b3f2e5f6a7b8c9d0e1f2a3b4c5d6e")]
    out_trade_no: String,
    /// Alipay's trade number: the payment's transaction id.
    #[schema(example = "2025020122001412345678901234")]
    trade_no: String,
    /// Only `TRADE_SUCCESS` and `TRADE_FINISHED` mean paid.
    #[schema(example = "TRADE_SUCCESS")]
    trade_status: String,
    /// Yuan with two decimals; must be the payment's amount.
    #[schema(example = "9999.00")]
    total_amount: String,
    #[schema(example = "RSA2")]
    sign_type: String,
    /// SHA256withRSA by the Alipay public key's pair over every other field
    /// but `sign_type`, empty ones dropped, sorted, joined as `k=v` with `&`.
    sign: String,
}

fn problem(status: StatusCode, code: &str, title: &str, detail: String) -> Problem {
    Problem::new(status, code, title).with_detail(detail)
}

/// Why a notification is refused, as a problem.
fn refused(error: NotificationError) -> Problem {
    match error {
        NotificationError::Unsigned
        | NotificationError::BadSignature
        | NotificationError::SignType(_)
        | NotificationError::Charset(_) => problem(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "Invalid signature",
            format!("{error}; nothing changed."),
        ),
        NotificationError::Form(_)
        | NotificationError::Missing(_)
        | NotificationError::Invalid { .. } => problem(
            StatusCode::BAD_REQUEST,
            "invalid_notification",
            "Invalid notification",
            format!("{error}; nothing changed."),
        ),
    }
}

/// Alipay notifies a payment's outcome
///
/// Called by Alipay (its format: a form, whatever the `Content-Type`), when
/// Alipay is configured. The signature is verified with the Alipay public key
/// over the form's fields (`sign` and `sign_type` removed, empty values
/// dropped, sorted, joined); then `app_id`, `out_trade_no`, `total_amount` and,
/// when configured, `seller_id` must be the payment's. Only `TRADE_SUCCESS`
/// and `TRADE_FINISHED` mean paid: the order is paid, or the money is marked
/// for refund when the order can no longer take it; once, however often
/// Alipay repeats it. Any other genuine status changes nothing. The answer
/// Alipay needs is the body `success`; anything else makes it try again.
#[utoipa::path(
    operation_id = "alipayNotify",
    tag = "payments",
    security(()),
    request_body(content = AlipayNotificationForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Accepted, applied or nothing to change: the body is `success`", body = String, content_type = "text/plain", example = "success"),
        (status = 400, description = "Not a notification Alipay sends: a field is missing, given twice or invalid (`invalid_notification`); nothing changed", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unsigned, not RSA2, or the signature does not match (`invalid_signature`); nothing changed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Alipay is not configured here (`provider_not_configured`), or no payment opened with Alipay has this `out_trade_no` (`payment_not_found`); nothing changed", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The payment cannot take a success any more (`payment_already_final`); nothing changed", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = PayloadTooLarge),
        (status = 422, description = "Genuine, but for another application or seller (`notification_mismatch`) or amount (`amount_mismatch`); nothing changed", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    )
)]
#[post("/payments/notify/alipay")]
pub async fn alipay_notify(
    alipay: Option<web::Data<AlipayGateway>>,
    payments: web::Data<PaymentService>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let received = receive(alipay.as_ref().map(|a| a.get_ref()), &payments, &body).await;
    if let Err(problem) = &received {
        metrics::counter!(
            "shop_payment_notifications_rejected_total",
            "reason" => problem.code.clone(),
            "gateway" => gateway::NAME
        )
        .increment(1);
    }
    received?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(NOTIFY_ACK))
}

async fn receive(
    alipay: Option<&AlipayGateway>,
    payments: &PaymentService,
    body: &[u8],
) -> Result<(), Problem> {
    let Some(alipay) = alipay else {
        return Err(problem(
            StatusCode::NOT_FOUND,
            "provider_not_configured",
            "Provider not configured",
            "Alipay is not configured on this server.".into(),
        ));
    };
    let protocol = alipay.protocol();
    let notification = protocol.verify_notification(body).map_err(refused)?;
    let not_found = || {
        problem(
            StatusCode::NOT_FOUND,
            "payment_not_found",
            "Payment not found",
            format!(
                "No payment opened with Alipay has the out_trade_no {:?}; nothing changed.",
                notification.out_trade_no
            ),
        )
    };
    let out_trade_no = OutTradeNo::parse(&notification.out_trade_no).ok_or_else(not_found)?;
    let payment = match payments.find(out_trade_no.payment_id()).await {
        Ok(payment) => payment,
        Err(crate::PaymentError::NotFound(_)) => return Err(not_found()),
        Err(error) => return Err(error.into()),
    };
    if payment.gateway != gateway::NAME {
        return Err(not_found());
    }
    notification
        .check(&protocol.expected(&out_trade_no, payment.amount.minor()))
        .map_err(|mismatch| {
            let code = if mismatch.field == "total_amount" {
                "amount_mismatch"
            } else {
                "notification_mismatch"
            };
            problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                "Notification mismatch",
                format!("{mismatch}; nothing changed."),
            )
        })?;
    if !notification.trade_status.is_paid() {
        // Genuine news that changes nothing here (created, closed, refunded).
        tracing::info!(payment_id = %payment.id, status = ?notification.trade_status, "Alipay notification acknowledged");
        return Ok(());
    }
    let id: PaymentId = payment.id;
    let moved = payments
        .apply_paid(&id, &notification.trade_no, notification.total_amount_fen)
        .await?;
    if moved.applied {
        tracing::info!(payment_id = %id, status = moved.payment.status.as_str(), "Alipay notification applied");
    }
    Ok(())
}

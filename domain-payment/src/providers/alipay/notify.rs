//! Alipay's asynchronous notification (`POST /api/v1/payments/notify/alipay`),
//! through the one notification pipeline ([`crate::notify`]): a form, verified
//! with the Alipay public key before anything in it is believed, then reported
//! to [`PaymentService::apply_report`], whose rules check it against the
//! payment it names and apply a success once.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::Deserialize;
use shared_kernel::Problem;
use shared_kernel::web::problem::responses::{PayloadTooLarge, Unavailable};
use utoipa::ToSchema;

use crate::PaymentService;
use crate::model::{Mismatch, Party, ProviderReport, ReportMismatch, ReportedAmount, TradeOutcome};
use crate::notify::{self, NotifyRoute};
use crate::providers::OutTradeNo;
use crate::providers::alipay::gateway::{self, AlipayGateway};
use crate::providers::alipay::{Alipay, NOTIFY_ACK, Notification, NotificationError, yuan};
use crate::service::{ReportRefused, Reported};

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
    req: HttpRequest,
    alipay: Option<web::Data<AlipayGateway>>,
    payments: web::Data<PaymentService>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let route = AlipayRoute(alipay.as_ref().map(|a| a.get_ref()));
    notify::receive(&route, &payments, &req, &body).await
}

/// Alipay's steps: a form verified with the Alipay public key, its report
/// applied through the service, `success` or a problem.
struct AlipayRoute<'a>(Option<&'a AlipayGateway>);

impl<'a> NotifyRoute for AlipayRoute<'a> {
    const GATEWAY: Option<&'static str> = Some(gateway::NAME);
    type Verified = (&'a Alipay, Notification);
    type Applied = ();
    type Refusal = Problem;
    type Answer = Result<HttpResponse, Problem>;

    fn verify(
        &self,
        _: &PaymentService,
        _: &HttpRequest,
        body: &[u8],
    ) -> Result<Self::Verified, Problem> {
        let Some(alipay) = self.0 else {
            return Err(problem(
                StatusCode::NOT_FOUND,
                "provider_not_configured",
                "Provider not configured",
                "Alipay is not configured on this server.".into(),
            ));
        };
        let protocol = alipay.protocol().as_ref();
        let notification = protocol.verify_notification(body).map_err(refused)?;
        Ok((protocol, notification))
    }

    async fn apply(
        &self,
        payments: &PaymentService,
        (protocol, notification): Self::Verified,
    ) -> Result<(), Problem> {
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
        let report = report(protocol, &notification).ok_or_else(not_found)?;
        match payments.apply_report(report).await {
            Ok(Reported::NotPaid(payment)) => {
                // Genuine news that changes nothing here (created, closed, refunded).
                tracing::info!(payment_id = %payment.id, status = ?notification.trade_status, "Alipay notification acknowledged");
                Ok(())
            }
            Ok(Reported::Paid(moved)) => {
                if moved.applied {
                    tracing::info!(payment_id = %moved.payment.id, status = moved.payment.status.as_str(), "Alipay notification applied");
                }
                Ok(())
            }
            Err(
                ReportRefused::UnknownTrade | ReportRefused::Mismatch(ReportMismatch::OtherGateway),
            ) => Err(not_found()),
            Err(ReportRefused::Mismatch(ReportMismatch::Party(mismatch))) => {
                Err(mismatched("notification_mismatch", &mismatch))
            }
            Err(ReportRefused::Mismatch(ReportMismatch::Amount(mismatch))) => {
                Err(mismatched("amount_mismatch", &mismatch))
            }
            // Alipay's trade number is a required field: never missing here.
            Err(ReportRefused::NoTransactionId) => {
                Err(refused(NotificationError::Missing("trade_no")))
            }
            Err(ReportRefused::Payment(error)) => Err(error.into()),
        }
    }

    fn reason(problem: &Problem) -> String {
        problem.code.clone()
    }

    fn answer(&self, outcome: Result<(), Problem>) -> Self::Answer {
        outcome?;
        Ok(HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(NOTIFY_ACK))
    }
}

/// What a verified notification reports, for the service's rules; `None`
/// when its `out_trade_no` is none shop sends.
fn report(protocol: &Alipay, notification: &Notification) -> Option<ProviderReport> {
    let out_trade_no = OutTradeNo::parse(&notification.out_trade_no)?;
    let config = protocol.config();
    let mut parties = vec![Party {
        field: "app_id",
        configured: config.app_id.clone(),
        reported: notification.app_id.clone(),
    }];
    // Checked only when configured.
    if let Some(seller_id) = &config.seller_id {
        parties.push(Party {
            field: "seller_id",
            configured: seller_id.clone(),
            reported: notification.seller_id.clone().unwrap_or_default(),
        });
    }
    Some(ProviderReport {
        gateway: gateway::NAME,
        payment_id: out_trade_no.payment_id(),
        parties,
        amount: ReportedAmount {
            field: "total_amount",
            minor: Some(notification.total_amount_fen),
            currency: None,
            written: |fen| yuan(fen).unwrap_or_else(|_| fen.to_string()),
        },
        outcome: if notification.trade_status.is_paid() {
            TradeOutcome::Paid {
                transaction_id: Some(notification.trade_no.clone()),
            }
        } else {
            TradeOutcome::NotPaid
        },
    })
}

/// A genuine notification about another application, seller or amount.
fn mismatched(code: &str, mismatch: &Mismatch) -> Problem {
    problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        code,
        "Notification mismatch",
        format!("{mismatch}; nothing changed."),
    )
}

#[cfg(test)]
mod tests {
    use shared_kernel::model::money::{Currency, Money};

    use super::*;
    use crate::model::{Payment, PaymentId};
    use crate::providers::alipay::protocol::tests::{
        alipay, notification_fields, notify, out_trade_no,
    };
    use crate::providers::alipay::{AlipayConfig, PRODUCTION_GATEWAY};
    use crate::providers::keys::fixtures;

    fn payment(id: PaymentId) -> Payment {
        Payment::for_tests(id, gateway::NAME, Money::new(999_900, Currency::CNY))
    }

    #[test]
    fn a_genuine_notification_about_something_else_names_the_field() {
        let alipay = alipay();
        let payment = payment(out_trade_no().payment_id());
        let check = |alipay: &Alipay, fields: &crate::providers::alipay::Params| {
            let report = report(alipay, &notify(fields).unwrap()).unwrap();
            assert_eq!(report.payment_id, payment.id);
            report.check(&payment)
        };
        check(&alipay, &notification_fields()).unwrap();
        for (name, value) in [
            ("app_id", "2021000000000002"),
            ("seller_id", "2088000000000002"),
        ] {
            let mut fields = notification_fields();
            fields.insert(name.into(), value.into());
            let Err(ReportMismatch::Party(mismatch)) = check(&alipay, &fields) else {
                panic!("{name}");
            };
            assert_eq!((mismatch.field, mismatch.actual.as_str()), (name, value));
        }
        let mut fields = notification_fields();
        fields.insert("total_amount".into(), "0.01".into());
        let Err(ReportMismatch::Amount(mismatch)) = check(&alipay, &fields) else {
            panic!("total_amount");
        };
        assert_eq!(
            mismatch.to_string(),
            r#"total_amount is "0.01", expected "9999.00""#
        );
        // Another trade number names another payment.
        let mut fields = notification_fields();
        fields.insert(
            "out_trade_no".into(),
            "0193a5b27c4d7e8f9a0b1c2d3e4f5a6c".into(),
        );
        let other = report(&alipay, &notify(&fields).unwrap()).unwrap();
        assert_ne!(other.payment_id, payment.id);
        // The seller is checked only when one is configured.
        let mut without_seller = notification_fields();
        without_seller.remove("seller_id");
        assert!(matches!(
            check(&alipay, &without_seller),
            Err(ReportMismatch::Party(Mismatch {
                field: "seller_id",
                ..
            }))
        ));
        let unconfigured = Alipay::new(AlipayConfig {
            app_id: alipay.config().app_id.clone(),
            app_private_key: fixtures::alipay_app_private(),
            alipay_public_key: fixtures::alipay_platform_public(),
            gateway_url: PRODUCTION_GATEWAY.into(),
            seller_id: None,
        })
        .unwrap();
        check(&unconfigured, &without_seller).unwrap();
    }
}

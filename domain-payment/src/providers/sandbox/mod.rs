//! The sandbox gateway: a stand-in payment provider for trying shop out.
//! Its payment URL opens a checkout page served by the app, where a person
//! clicks Pay or Fail; the sandbox then sends the notification to the notify
//! route over HTTP, signed exactly as a provider would. It lets anyone pay
//! for free, so production switches it off (`SHOP__PAYMENT__SANDBOX=false`).
//!
//! The page acts only for whoever holds its URL: the URL carries a token, an
//! HMAC of the payment id under a key derived from the webhook secret, and
//! the page refuses (403) without it.

use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, web};
use async_trait::async_trait;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;
use shared_kernel::Problem;
use shared_kernel::model::ports::{
    Closed, GatewayPayment, GatewayPaymentRequest, PaymentGateway, PortError, RefundRequest,
    RefundState, Trade, TradeState,
};
use shared_kernel::web::auth::constant_time_eq;

use crate::PaymentService;
use crate::model::{Payment, PaymentId, PaymentStatus};
use crate::signature;

/// The tokens that make a checkout URL work: HMAC-SHA256 of the payment id
/// under a key of their own (derived from the webhook secret), 128 bits in hex.
#[derive(Clone)]
pub struct CheckoutLinks {
    key: [u8; 32],
}

impl CheckoutLinks {
    pub fn new(webhook_secret: &SecretString) -> Self {
        Self {
            key: hmac_sha256(
                webhook_secret.expose_secret().as_bytes(),
                b"shop sandbox checkout links",
            ),
        }
    }

    /// The token of a payment's checkout URL.
    pub fn token(&self, payment_id: &str) -> String {
        hex::encode(&hmac_sha256(&self.key, payment_id.as_bytes())[..16])
    }

    fn verify(&self, payment_id: &str, token: Option<&str>) -> bool {
        token.is_some_and(|t| constant_time_eq(self.token(payment_id).as_bytes(), t.as_bytes()))
    }
}

impl std::fmt::Debug for CheckoutLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckoutLinks(***)")
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The sandbox's side of its trades: what its checkout page was told, kept
/// in this process (the sandbox is a stand-in for trying shop out; a second
/// instance knows only the trades paid through its own page). Payments it
/// never saw are unpaid.
#[derive(Debug, Clone, Default)]
pub struct SandboxTrades {
    trades: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, TradeState>>>,
}

impl SandboxTrades {
    fn get(&self, payment_id: &str) -> TradeState {
        self.lock()
            .get(payment_id)
            .cloned()
            .unwrap_or(TradeState::Unpaid)
    }

    fn set(&self, payment_id: &str, state: TradeState) {
        self.lock().insert(payment_id.to_owned(), state);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, TradeState>> {
        self.trades
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Opens payments whose URL is the app's own checkout page.
#[derive(Debug, Clone)]
pub struct SandboxGateway {
    public_url: String,
    links: CheckoutLinks,
    trades: SandboxTrades,
}

impl SandboxGateway {
    /// `public_url`: where customers reach this server, such as `http://127.0.0.1:8080`.
    pub fn new(public_url: impl Into<String>, links: CheckoutLinks, trades: SandboxTrades) -> Self {
        Self {
            public_url: public_url.into().trim_end_matches('/').to_owned(),
            links,
            trades,
        }
    }
}

#[async_trait]
impl PaymentGateway for SandboxGateway {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    /// Its checkout page sends a `Shop-Signature` notification.
    fn signs_with_shop_signature(&self) -> bool {
        true
    }

    async fn create_payment(
        &self,
        request: &GatewayPaymentRequest,
    ) -> Result<GatewayPayment, PortError> {
        Ok(GatewayPayment {
            payment_url: format!(
                "{}/sandbox/checkout/{}?token={}",
                self.public_url,
                request.payment_id,
                self.links.token(&request.payment_id)
            ),
        })
    }

    async fn query(&self, trade: &Trade) -> Result<TradeState, PortError> {
        Ok(self.trades.get(&trade.payment_id))
    }

    /// A trade paid on the checkout page is too late to close; any other is
    /// closed (and the page, which reads the payment, takes no payment for it).
    async fn close(&self, trade: &Trade) -> Result<Closed, PortError> {
        match self.trades.get(&trade.payment_id) {
            TradeState::Paid { transaction_id, .. } => Ok(Closed::AlreadyPaid { transaction_id }),
            TradeState::Unpaid | TradeState::Closed => {
                self.trades.set(&trade.payment_id, TradeState::Closed);
                Ok(Closed::Closed)
            }
        }
    }

    /// No money moved through the sandbox: there is nothing to send back,
    /// and the refund is done as soon as it is asked for.
    async fn refund(&self, _refund: &RefundRequest) -> Result<RefundState, PortError> {
        Ok(RefundState::Refunded)
    }
}

/// Where the sandbox delivers its notifications, and how.
#[derive(Debug, Clone)]
pub struct SandboxCheckout {
    notify_url: String,
    client: reqwest::Client,
    links: CheckoutLinks,
    trades: SandboxTrades,
}

impl SandboxCheckout {
    /// `internal_url`: where this server itself is reachable, such as `http://127.0.0.1:8080`.
    pub fn new(internal_url: &str, links: CheckoutLinks, trades: SandboxTrades) -> Self {
        Self {
            links,
            trades,
            notify_url: format!(
                "{}/api/v1/payments/notify",
                internal_url.trim_end_matches('/')
            ),
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }
}

/// Mounts the checkout page (plain HTML; not part of the API document).
pub fn configure_checkout(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/sandbox/checkout/{paymentId}",
        web::get().to(checkout_page),
    )
    .route("/sandbox/checkout/{paymentId}", web::post().to(complete));
}

/// The `?token=` of a checkout URL.
#[derive(Debug, Deserialize)]
struct LinkToken {
    token: Option<String>,
}

/// The payment a checkout URL names, if the URL carries its token.
async fn linked_payment(
    payments: &PaymentService,
    checkout: &SandboxCheckout,
    id: String,
    token: Option<&str>,
) -> Result<Result<Payment, HttpResponse>, Problem> {
    if !checkout.links.verify(&id, token) {
        let mut refused = page(
            "Sandbox checkout",
            "<p id=\"result\">This checkout link is not valid: open the <code>paymentUrl</code> that initiating the payment answered, whole.</p>",
        );
        *refused.status_mut() = StatusCode::FORBIDDEN;
        return Ok(Err(refused));
    }
    Ok(Ok(payments.find(PaymentId::from(id)).await?))
}

async fn checkout_page(
    payments: web::Data<PaymentService>,
    checkout: web::Data<SandboxCheckout>,
    id: web::Path<String>,
    link: web::Query<LinkToken>,
) -> Result<HttpResponse, Problem> {
    let payment =
        match linked_payment(&payments, &checkout, id.into_inner(), link.token.as_deref()).await? {
            Ok(payment) => payment,
            Err(refused) => return Ok(refused),
        };
    let body = if payment.status == PaymentStatus::Pending {
        format!(
            r#"<p>Pay <strong>{amount}</strong> for order <code>{order}</code> with {method}?</p>
<form method="post"><input type="hidden" name="outcome" value="success"><button id="pay" type="submit">Pay</button></form>
<form method="post"><input type="hidden" name="outcome" value="failure"><button id="fail" type="submit" class="secondary">Fail</button></form>
<form method="post"><input type="hidden" name="outcome" value="success_unnotified"><button id="pay-silently" type="submit" class="secondary">Pay, and lose the notification</button></form>
<p><small>The last one pays without telling shop, as when a provider's notification never arrives: shop finds out by asking the provider as the payment's deadline nears.</small></p>"#,
            amount = escape(&payment.amount.to_string()),
            order = escape(&payment.order_id),
            method = method_name(&payment),
        )
    } else {
        format!(
            "<p>This payment is already <strong>{}</strong>.</p>",
            payment.status.as_str()
        )
    };
    Ok(page("Sandbox checkout", &body))
}

#[derive(Debug, Deserialize)]
struct CompleteForm {
    outcome: Outcome,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Success,
    Failure,
    /// Paid, but the notification is never sent: shop must ask.
    SuccessUnnotified,
}

/// The person clicked Pay or Fail: notify shop as the provider would.
async fn complete(
    payments: web::Data<PaymentService>,
    checkout: web::Data<SandboxCheckout>,
    id: web::Path<String>,
    link: web::Query<LinkToken>,
    form: web::Form<CompleteForm>,
) -> Result<HttpResponse, Problem> {
    let payment =
        match linked_payment(&payments, &checkout, id.into_inner(), link.token.as_deref()).await? {
            Ok(payment) => payment,
            Err(refused) => return Ok(refused),
        };
    // As at a real provider, a closed trade cannot be paid any more.
    if matches!(
        payment.status,
        PaymentStatus::Closed | PaymentStatus::Refunded
    ) || checkout.trades.get(payment.id.as_str()) == TradeState::Closed
    {
        let mut refused = page(
            "Sandbox checkout",
            &format!(
                "<p id=\"result\">This payment is {}: it can no longer be paid.</p>",
                payment.status.as_str()
            ),
        );
        *refused.status_mut() = StatusCode::CONFLICT;
        return Ok(refused);
    }
    let transaction_id = format!("sandbox-{}", uuid::Uuid::now_v7().simple());
    let status = match form.outcome {
        Outcome::Success | Outcome::SuccessUnnotified => {
            checkout.trades.set(
                payment.id.as_str(),
                TradeState::Paid {
                    transaction_id: transaction_id.clone(),
                    amount: payment.amount.minor(),
                },
            );
            "success"
        }
        Outcome::Failure => "failure",
    };
    if let Outcome::SuccessUnnotified = form.outcome {
        return Ok(page(
            "Sandbox checkout",
            "<p id=\"result\">Paid. No notification was sent: shop learns of it when it asks the sandbox, as the payment's deadline nears.</p>",
        ));
    }
    let notification = serde_json::json!({
        "paymentId": payment.id.as_str(),
        "paymentStatus": status,
        "amount": payment.amount.minor(),
        "currency": payment.amount.currency().as_str(),
        "transactionId": transaction_id,
    });
    let body = serde_json::to_vec(&notification).unwrap_or_default();
    let sent = checkout
        .client
        .post(&checkout.notify_url)
        .header(signature::HEADER, payments.sign(&body))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await;
    let message = match sent {
        Ok(response) if response.status().is_success() => match form.outcome {
            Outcome::Success | Outcome::SuccessUnnotified => format!(
                r#"<p id="result">Payment succeeded. The order will show as paid in a moment: <a href="/api/v1/orders/{0}">order {0}</a>.</p>"#,
                escape(&payment.order_id)
            ),
            Outcome::Failure => {
                "<p id=\"result\">Payment failed. The order stays payable until it expires.</p>"
                    .to_owned()
            }
        },
        Ok(response) => {
            let status = response.status();
            let detail = response.text().await.unwrap_or_default();
            format!(
                r#"<p id="result">shop refused the notification ({status}): <code>{}</code></p>"#,
                escape(&detail)
            )
        }
        Err(error) => {
            tracing::warn!(%error, "the sandbox could not deliver its notification");
            format!(
                r#"<p id="result">The notification could not be delivered: {}</p>"#,
                escape(&error.to_string())
            )
        }
    };
    Ok(page("Sandbox checkout", &message))
}

fn method_name(payment: &Payment) -> &'static str {
    match payment.method {
        crate::model::PaymentMethod::Alipay => "Alipay",
        crate::model::PaymentMethod::WechatPay => "WeChat Pay",
    }
}

fn page(title: &str, body: &str) -> HttpResponse {
    HttpResponse::Ok().content_type(ContentType::html()).body(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; max-width: 32rem; margin: 3rem auto; padding: 0 1rem; color: #222; }}
.banner {{ background: #fff3cd; border: 1px solid #e0c36c; padding: .5rem .75rem; border-radius: .25rem; }}
form {{ display: inline-block; margin: 1rem 1rem 0 0; }}
button {{ font-size: 1.1rem; padding: .5rem 1.5rem; border-radius: .25rem; border: 0; background: #1a7f37; color: #fff; cursor: pointer; }}
button.secondary {{ background: #b42318; }}
</style></head>
<body><h1>{title}</h1>
<p class="banner">Sandbox gateway: no money moves. Switch it off in production (<code>SHOP__PAYMENT__SANDBOX=false</code>).</p>
{body}
</body></html>"#
    ))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}

//! The one pipeline of every notification route (the `Shop-Signature` ones in
//! [`crate::http`], Alipay's and WeChat Pay's in their provider's folder):
//! read and verify -> apply through the service -> answer in the caller's
//! format. A route says only its own steps ([`NotifyRoute`]); whether a
//! verified notification is about its payment is the service's rules, not the
//! route's. Refusals are counted here
//! (`shop_payment_notifications_rejected_total`, by reason, and by gateway for
//! a provider's own route).

use actix_web::HttpRequest;

use crate::PaymentService;

/// One notification route's own steps.
pub(crate) trait NotifyRoute {
    /// The provider whose own route this is; `None` for the `Shop-Signature`
    /// routes, which any gateway holding the webhook secret calls.
    const GATEWAY: Option<&'static str>;
    /// A notification, read and believed.
    type Verified;
    /// What applying it did.
    type Applied;
    /// Why it was refused; nothing changed.
    type Refusal;
    /// What the route answers.
    type Answer;

    /// Reads the raw notification and verifies it, in the provider's order:
    /// nothing in it is believed before its signature is.
    fn verify(
        &self,
        payments: &PaymentService,
        req: &HttpRequest,
        body: &[u8],
    ) -> Result<Self::Verified, Self::Refusal>;

    /// Applies it through the service.
    async fn apply(
        &self,
        payments: &PaymentService,
        verified: Self::Verified,
    ) -> Result<Self::Applied, Self::Refusal>;

    /// A refusal's reason, as counted.
    fn reason(refusal: &Self::Refusal) -> String;

    /// The answer, in the caller's format.
    fn answer(&self, outcome: Result<Self::Applied, Self::Refusal>) -> Self::Answer;
}

/// Receives one notification by `route`.
pub(crate) async fn receive<R: NotifyRoute>(
    route: &R,
    payments: &PaymentService,
    req: &HttpRequest,
    body: &[u8],
) -> R::Answer {
    let outcome = match route.verify(payments, req, body) {
        Ok(verified) => route.apply(payments, verified).await,
        Err(refusal) => Err(refusal),
    };
    if let Err(refusal) = &outcome {
        let reason = R::reason(refusal);
        match R::GATEWAY {
            Some(gateway) => metrics::counter!(
                "shop_payment_notifications_rejected_total",
                "reason" => reason,
                "gateway" => gateway
            )
            .increment(1),
            None => {
                metrics::counter!("shop_payment_notifications_rejected_total", "reason" => reason)
                    .increment(1)
            }
        }
    }
    route.answer(outcome)
}

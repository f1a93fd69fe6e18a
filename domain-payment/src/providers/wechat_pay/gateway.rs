//! The WeChat Pay adapter behind the [`PaymentGateway`] port: API v3 over
//! HTTPS with `reqwest`, every message built, signed and verified by
//! [`super::protocol`]. Native (`code_url`, the QR code) by default and for
//! `page`; H5 (`h5_url`) for `wap`. CNY only.
//!
//! Errors: a transport failure or a 5xx is [`PortError::Unavailable`] (the
//! lifecycle asks again later); anything else not believed (a bad or missing
//! signature, an answer about another trade, a refusal) is
//! [`PortError::Unexpected`], also retried, and logged.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::Utc;
use shared_kernel::model::ports::{
    Closed, GatewayPayment, GatewayPaymentRequest, PaymentChannel, PaymentGateway, PortError,
    RefundRequest, RefundState, Trade, TradeState,
};

use super::{
    Answer, ApiRequest, CURRENCY, CodeUrl, H5Url, HttpMethod, Refund, RefundStatus, Refusal,
    ResponseError, SignatureHeaders, Trade as WechatTrade, TradeState as WechatTradeState,
    Transaction, WechatPay, new_nonce,
};
use crate::model::PaymentId;
use crate::providers::{OutTradeNo, RefundNo};

/// The gateway's stable name, stored with each payment it opens.
pub const NAME: &str = "wechat_pay";
/// The path of the notify route, appended to shop's public URL.
pub const NOTIFY_PATH: &str = "/api/v1/payments/notify/wechat_pay";
/// How long one call may take, connection included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// WeChat Pay for one merchant.
#[derive(Debug, Clone)]
pub struct WechatPayGateway {
    protocol: Arc<WechatPay>,
    http: reqwest::Client,
    notify_url: String,
}

/// An answer as read off the wire.
struct Received {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn answer(&self) -> Answer<'_> {
        let header =
            |name: &'static str| self.headers.get(name).and_then(|value| value.to_str().ok());
        Answer {
            status: self.status,
            headers: SignatureHeaders::from_lookup(header),
            body: &self.body,
        }
    }
}

impl WechatPayGateway {
    /// The adapter for `protocol`, whose notifications come to
    /// `public_url` + [`NOTIFY_PATH`].
    pub fn new(protocol: Arc<WechatPay>, public_url: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("shop/", env!("CARGO_PKG_VERSION")))
            .build()
            // Only a TLS backend that cannot start fails here; the default
            // client has the same timeouts per call below.
            .unwrap_or_default();
        Self {
            protocol,
            http,
            notify_url: format!("{}{NOTIFY_PATH}", public_url.trim_end_matches('/')),
        }
    }

    /// The protocol (the notify route verifies and decrypts with it).
    pub fn protocol(&self) -> &WechatPay {
        &self.protocol
    }

    pub fn notify_url(&self) -> &str {
        &self.notify_url
    }

    /// Signs and sends `request`; a transport failure is `Unavailable`.
    async fn call(&self, request: &ApiRequest) -> Result<Received, PortError> {
        let nonce = new_nonce().map_err(|_| anyhow!("no randomness for a nonce"))?;
        let authorization = self
            .protocol
            .authorization(request, Utc::now().timestamp(), &nonce)
            .map_err(|_| anyhow!("the merchant private key could not sign"))?;
        let url = request.url(&self.protocol.config().base_url);
        let builder = match request.method {
            HttpMethod::Get => self.http.get(url).timeout(CALL_TIMEOUT),
            HttpMethod::Post => self
                .http
                .post(url)
                .timeout(CALL_TIMEOUT)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(request.body.clone()),
        };
        let response = builder
            .header(reqwest::header::AUTHORIZATION, authorization)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| PortError::Unavailable(format!("WeChat Pay: {error}")))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|error| PortError::Unavailable(format!("WeChat Pay: {error}")))?
            .to_vec();
        if status >= 500 {
            return Err(PortError::Unavailable(format!(
                "WeChat Pay answered HTTP {status}"
            )));
        }
        Ok(Received {
            status,
            headers,
            body,
        })
    }

    fn out_trade_no(payment_id: &str) -> Result<OutTradeNo, PortError> {
        OutTradeNo::from_payment_id(&PaymentId::from(payment_id.to_owned()))
            .map_err(|error| PortError::Unexpected(error.into()))
    }

    /// Where the trade stands; `None` when WeChat Pay says (signed) that it
    /// does not know it.
    async fn transaction(&self, trade: &Trade) -> Result<Option<Transaction>, PortError> {
        let no = Self::out_trade_no(&trade.payment_id)?;
        let received = self.call(&self.protocol.query(&no)).await?;
        match self.protocol.read_query(&received.answer(), Utc::now()) {
            Ok(transaction) => {
                // A genuine answer about another trade or merchant is not an
                // answer. Another amount is reported as it is: shop refuses it.
                let expected = self.protocol.expected(&no, trade.amount.minor());
                if let Err(mismatch) = transaction.check(&expected)
                    && !mismatch.field.starts_with("amount.")
                {
                    return Err(unexpected("query", mismatch));
                }
                Ok(Some(transaction))
            }
            Err(ResponseError::Refused(refusal)) if refusal.is_order_not_exist() => Ok(None),
            Err(error) => Err(unexpected("query", error)),
        }
    }
}

fn unexpected(operation: &str, error: impl std::fmt::Display) -> PortError {
    PortError::Unexpected(anyhow!("WeChat Pay {operation}: {error}"))
}

fn trade_state(transaction: &Transaction) -> Result<TradeState, PortError> {
    match transaction.trade_state {
        WechatTradeState::Success => {
            let transaction_id = transaction
                .transaction_id
                .clone()
                .filter(|id| !id.is_empty())
                .ok_or_else(|| unexpected("query", "a paid trade without transaction_id"))?;
            let amount = transaction
                .amount
                .as_ref()
                .map(|amount| amount.total)
                .ok_or_else(|| unexpected("query", "a paid trade without amount"))?;
            Ok(TradeState::Paid {
                transaction_id,
                amount,
            })
        }
        WechatTradeState::Notpay | WechatTradeState::Userpaying => Ok(TradeState::Unpaid),
        WechatTradeState::Closed | WechatTradeState::Revoked | WechatTradeState::Payerror => {
            Ok(TradeState::Closed)
        }
        // Paid, then refunded by someone else: a person must look.
        WechatTradeState::Refund => Err(unexpected(
            "query",
            "the trade was paid and refunded outside shop",
        )),
    }
}

#[async_trait]
impl PaymentGateway for WechatPayGateway {
    fn name(&self) -> &'static str {
        NAME
    }

    fn accepts(&self, currency: shared_kernel::model::money::Currency) -> bool {
        currency.as_str() == CURRENCY
    }

    /// `amount.total`: a positive 32-bit integer of fen.
    fn amounts(&self) -> std::ops::RangeInclusive<i64> {
        1..=i64::from(i32::MAX)
    }

    async fn create_payment(
        &self,
        request: &GatewayPaymentRequest,
    ) -> Result<GatewayPayment, PortError> {
        if request.amount.currency().as_str() != CURRENCY {
            return Err(unexpected("create", "WeChat Pay takes CNY only"));
        }
        let no = Self::out_trade_no(&request.payment_id)?;
        // WeChat Pay takes up to 127 characters.
        let description: String = request.subject.chars().take(127).collect();
        let trade = WechatTrade {
            out_trade_no: &no,
            amount_fen: request.amount.minor(),
            description: &description,
            time_expire: request.expires_at,
            notify_url: &self.notify_url,
        };
        let h5 = request.channel == Some(PaymentChannel::Wap);
        let api_request = if h5 {
            let ip: IpAddr = request
                .client_ip
                .as_deref()
                .and_then(|ip| ip.parse().ok())
                .ok_or_else(|| {
                    PortError::Unavailable(
                        "WeChat Pay's H5 needs the customer's IP address".to_owned(),
                    )
                })?;
            self.protocol.h5(&trade, ip)
        } else {
            self.protocol.native(&trade)
        }
        .map_err(|error| unexpected("create", error))?;
        let received = self.call(&api_request).await?;
        let answer = received.answer();
        let payment_url = if h5 {
            self.protocol
                .read_h5(&answer, Utc::now())
                .map(|H5Url { h5_url }| h5_url)
        } else {
            self.protocol
                .read_native(&answer, Utc::now())
                .map(|CodeUrl { code_url }| code_url)
        };
        // The customer cannot pay through WeChat Pay now, whatever the reason:
        // a 503 to try again, never a 500.
        payment_url
            .map(|payment_url| GatewayPayment { payment_url })
            .map_err(|error| {
                metrics::counter!(
                    "shop_payment_provider_calls_total",
                    "gateway" => NAME,
                    "operation" => "create",
                    "outcome" => "error"
                )
                .increment(1);
                tracing::error!(%error, "WeChat Pay did not open the payment");
                PortError::Unavailable(format!("WeChat Pay did not open the payment: {error}"))
            })
    }

    async fn query(&self, trade: &Trade) -> Result<TradeState, PortError> {
        match self.transaction(trade).await? {
            Some(transaction) => trade_state(&transaction),
            // Unknown until the buyer opens the payment.
            None => Ok(TradeState::Unpaid),
        }
    }

    async fn close(&self, trade: &Trade) -> Result<Closed, PortError> {
        // A paid trade must be refunded, not closed: ask first.
        match self.transaction(trade).await? {
            None => return Ok(Closed::Closed),
            Some(transaction) => match trade_state(&transaction)? {
                TradeState::Paid { transaction_id, .. } => {
                    return Ok(Closed::AlreadyPaid { transaction_id });
                }
                TradeState::Closed => return Ok(Closed::Closed),
                TradeState::Unpaid => {}
            },
        }
        let no = Self::out_trade_no(&trade.payment_id)?;
        let request = self
            .protocol
            .close(&no)
            .map_err(|error| unexpected("close", error))?;
        let received = self.call(&request).await?;
        match self
            .protocol
            .read_empty_answer(&received.answer(), Utc::now())
        {
            Ok(()) => Ok(Closed::Closed),
            Err(ResponseError::Refused(refusal)) if refusal.is_order_not_exist() => {
                Ok(Closed::Closed)
            }
            // Refused (paid in between, say): what the trade is now decides.
            Err(ResponseError::Refused(refusal)) => self.after_refused_close(trade, refusal).await,
            Err(error) => Err(unexpected("close", error)),
        }
    }

    async fn refund(&self, refund: &RefundRequest) -> Result<RefundState, PortError> {
        let no = Self::out_trade_no(&refund.trade.payment_id)?;
        let refund_no =
            RefundNo::new(&refund.refund_id).map_err(|error| unexpected("refund", error))?;
        let amount = refund.trade.amount.minor();
        let request = self
            .protocol
            .refund(&no, &refund_no, amount, amount)
            .map_err(|error| unexpected("refund", error))?;
        let received = self.call(&request).await?;
        let answer: Refund = self
            .protocol
            .read_refund(&received.answer(), Utc::now())
            .map_err(|error| unexpected("refund", error))?;
        if answer.out_refund_no != refund_no.as_str() {
            return Err(unexpected("refund", "the answer is about another refund"));
        }
        match answer.status {
            RefundStatus::Success => Ok(RefundState::Refunded),
            RefundStatus::Processing => Ok(RefundState::Processing),
            RefundStatus::Closed | RefundStatus::Abnormal => {
                tracing::error!(refund_id = %refund.refund_id, status = ?answer.status, "WeChat Pay did not refund: a person must look");
                Err(unexpected(
                    "refund",
                    format!("the refund is {:?}", answer.status),
                ))
            }
        }
    }
}

impl WechatPayGateway {
    async fn after_refused_close(
        &self,
        trade: &Trade,
        refusal: Refusal,
    ) -> Result<Closed, PortError> {
        match self.transaction(trade).await? {
            None => Ok(Closed::Closed),
            Some(transaction) => match trade_state(&transaction)? {
                TradeState::Paid { transaction_id, .. } => {
                    Ok(Closed::AlreadyPaid { transaction_id })
                }
                TradeState::Closed => Ok(Closed::Closed),
                TradeState::Unpaid => Err(unexpected("close", refusal)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::wechat_pay::TransactionAmount;

    fn transaction(state: WechatTradeState, transaction_id: Option<&str>) -> Transaction {
        Transaction {
            appid: "wxd678efh567hg6787".into(),
            mchid: "1900000001".into(),
            out_trade_no: "0193a5b27c4d7e8f9a0b1c2d3e4f5a6b".into(),
            transaction_id: transaction_id.map(str::to_owned),
            trade_type: Some("NATIVE".into()),
            trade_state: state,
            trade_state_desc: None,
            success_time: None,
            amount: Some(TransactionAmount {
                total: 999_900,
                payer_total: None,
                currency: Some("CNY".into()),
                payer_currency: None,
            }),
        }
    }

    #[test]
    fn every_trade_state_maps_as_the_port_expects() {
        use WechatTradeState as W;
        assert_eq!(
            trade_state(&transaction(W::Success, Some("4200"))).unwrap(),
            TradeState::Paid {
                transaction_id: "4200".into(),
                amount: 999_900
            }
        );
        for state in [W::Notpay, W::Userpaying] {
            assert_eq!(
                trade_state(&transaction(state, None)).unwrap(),
                TradeState::Unpaid
            );
        }
        for state in [W::Closed, W::Revoked, W::Payerror] {
            assert_eq!(
                trade_state(&transaction(state, None)).unwrap(),
                TradeState::Closed
            );
        }
        // Paid without a transaction id, or refunded behind shop's back: a person looks.
        assert!(trade_state(&transaction(W::Success, None)).is_err());
        assert!(trade_state(&transaction(W::Refund, Some("4200"))).is_err());
    }
}

//! The Alipay adapter behind the `PaymentGateway` port: [`super::protocol`]'s
//! signed requests sent over HTTP, its verified answers read back as the
//! port's facts.
//!
//! - Opening: the page and wap flows need no server call (the signed URL is
//!   the payment link); the QR flow calls `alipay.trade.precreate` and answers
//!   its `qr_code`. The deadline sent (`time_expire`) is the order's.
//! - Query: `ACQ.TRADE_NOT_EXIST` (signed) is a trade nobody opened yet: unpaid.
//! - Close: `ACQ.TRADE_NOT_EXIST` is closed (nobody can pay it);
//!   `ACQ.TRADE_STATUS_ERROR` is a paid trade, queried for its trade number.
//! - Refund: `out_request_no` is the payment's refund id, so a retry refunds
//!   once. Done when the call moved money (`fund_change=Y`), or when it did
//!   not because an earlier call with the same number already refunded the
//!   whole amount (`refund_fee` covers it); else still processing.
//!
//! Transport failures, 5xx and Alipay's unsigned or system-busy refusals are
//! [`PortError::Unavailable`] (the lifecycle asks again later); an answer that
//! is forged, malformed or about another trade is [`PortError::Unexpected`].
//! An unsigned refusal is never believed as a fact about the trade.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use shared_kernel::model::money::Currency;
use shared_kernel::model::ports::{
    Closed, GatewayPayment, GatewayPaymentRequest, PaymentChannel, PaymentGateway, PortError,
    RefundRequest, RefundState, Trade, TradeState,
};

use crate::model::PaymentId;
use crate::providers::alipay::{
    self, Alipay, Callbacks, FORM_CONTENT_TYPE, QueriedTrade, RequestError, ResponseError,
    SignedRequest, TradeStatus,
};
use crate::providers::{self, OutTradeNo, RefundNo};

/// The name stored with every payment this gateway opens.
pub const NAME: &str = "alipay";

/// How long one call to Alipay may take, connection included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to Alipay may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The Alipay gateway of one application.
#[derive(Debug, Clone)]
pub struct AlipayGateway {
    protocol: Arc<Alipay>,
    http: reqwest::Client,
    notify_url: String,
}

impl AlipayGateway {
    /// A gateway that has Alipay notify `notify_url` (shop's
    /// `/api/v1/payments/notify/alipay`: https, or http on loopback for tests).
    pub fn new(protocol: Arc<Alipay>, notify_url: String) -> Result<Self, PortError> {
        if !providers::is_callback_url(&notify_url) {
            return Err(PortError::Unexpected(anyhow::anyhow!(
                "the Alipay notify URL {notify_url:?} must be https without a query string"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| PortError::Unexpected(error.into()))?;
        Ok(Self {
            protocol,
            http,
            notify_url,
        })
    }

    /// The protocol (the notify route verifies notifications with it).
    pub fn protocol(&self) -> &Arc<Alipay> {
        &self.protocol
    }

    /// Sends a server call and answers the raw bytes of Alipay's answer.
    async fn call(&self, request: &SignedRequest) -> Result<Vec<u8>, PortError> {
        let method = request.method();
        let response = self
            .http
            .post(&self.protocol.config().gateway_url)
            .header(reqwest::header::CONTENT_TYPE, FORM_CONTENT_TYPE)
            .body(request.form_body())
            .send()
            .await
            .map_err(|error| PortError::Unavailable(format!("Alipay {method}: {error}")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| PortError::Unavailable(format!("Alipay {method}: {error}")))?;
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(PortError::Unavailable(format!(
                "Alipay {method} answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(PortError::Unexpected(anyhow::anyhow!(
                "Alipay {method} answered {status}"
            )));
        }
        Ok(body.to_vec())
    }

    /// Where the trade stands, with Alipay's signed refusals kept apart.
    async fn query_trade(
        &self,
        out_trade_no: &OutTradeNo,
    ) -> Result<Result<QueriedTrade, ResponseError>, PortError> {
        let request = self
            .protocol
            .query(out_trade_no, chrono::Utc::now())
            .map_err(unexpected)?;
        let body = self.call(&request).await?;
        let answer = self.protocol.read_query(&body);
        if let Ok(trade) = &answer
            && trade.out_trade_no != out_trade_no.as_str()
        {
            return Err(PortError::Unexpected(anyhow::anyhow!(
                "Alipay answered a query of {out_trade_no} about {}",
                trade.out_trade_no
            )));
        }
        Ok(answer)
    }
}

fn unexpected(error: RequestError) -> PortError {
    PortError::Unexpected(error.into())
}

/// An answer that is not a fact about the trade, as a port error: refusals
/// nobody signed and Alipay's "system busy" are worth asking again.
fn not_a_fact(method: alipay::Method, error: ResponseError) -> PortError {
    match &error {
        ResponseError::UnsignedRefusal(_) => {
            PortError::Unavailable(format!("Alipay {method}: {error}"))
        }
        ResponseError::Refused(refusal)
            if refusal.code == "20000"
                || refusal.sub_code.as_deref() == Some("ACQ.SYSTEM_ERROR") =>
        {
            PortError::Unavailable(format!("Alipay {method}: {error}"))
        }
        _ => PortError::Unexpected(anyhow::anyhow!("Alipay {method}: {error}")),
    }
}

fn out_trade_no(payment_id: &str) -> Result<OutTradeNo, PortError> {
    OutTradeNo::from_payment_id(&PaymentId::from(payment_id.to_owned()))
        .map_err(|error| PortError::Unexpected(error.into()))
}

#[async_trait]
impl PaymentGateway for AlipayGateway {
    fn name(&self) -> &'static str {
        NAME
    }

    fn accepts(&self, currency: Currency) -> bool {
        currency == Currency::CNY
    }

    /// `total_amount`: 0.01 to 100,000,000.00 yuan.
    fn amounts(&self) -> std::ops::RangeInclusive<i64> {
        1..=10_000_000_000
    }

    async fn create_payment(
        &self,
        request: &GatewayPaymentRequest,
    ) -> Result<GatewayPayment, PortError> {
        if !self.accepts(request.amount.currency()) {
            return Err(PortError::Unexpected(anyhow::anyhow!(
                "Alipay takes CNY only, not {}",
                request.amount.currency()
            )));
        }
        let out_trade_no = out_trade_no(&request.payment_id)?;
        let trade = alipay::Trade {
            out_trade_no: &out_trade_no,
            amount_fen: request.amount.minor(),
            subject: &request.subject,
            time_expire: request.expires_at,
        };
        let callbacks = Callbacks {
            notify_url: &self.notify_url,
            return_url: None,
        };
        let now = chrono::Utc::now();
        let payment_url = match request.channel.unwrap_or(PaymentChannel::Page) {
            PaymentChannel::Page => self
                .protocol
                .page_pay_url(&trade, &callbacks, now)
                .map_err(unexpected)?,
            PaymentChannel::Wap => self
                .protocol
                .wap_pay_url(&trade, &callbacks, now)
                .map_err(unexpected)?,
            PaymentChannel::Qr => {
                let call = self
                    .protocol
                    .precreate(&trade, &self.notify_url, now)
                    .map_err(unexpected)?;
                let body = self.call(&call).await?;
                let precreated = self
                    .protocol
                    .read_precreate(&body)
                    .map_err(|error| not_a_fact(alipay::Method::Precreate, error))?;
                if precreated.out_trade_no != out_trade_no.as_str() || precreated.qr_code.is_empty()
                {
                    return Err(PortError::Unexpected(anyhow::anyhow!(
                        "Alipay precreated {} for {out_trade_no}",
                        precreated.out_trade_no
                    )));
                }
                precreated.qr_code
            }
        };
        Ok(GatewayPayment { payment_url })
    }

    async fn query(&self, trade: &Trade) -> Result<TradeState, PortError> {
        let out_trade_no = out_trade_no(&trade.payment_id)?;
        match self.query_trade(&out_trade_no).await? {
            Ok(queried) => Ok(match queried.trade_status {
                status if status.is_paid() => TradeState::Paid {
                    transaction_id: queried.trade_no,
                    amount: queried.total_amount_fen,
                },
                TradeStatus::TradeClosed => TradeState::Closed,
                _ => TradeState::Unpaid,
            }),
            // Nobody opened the page or scanned the code yet.
            Err(ResponseError::Refused(refusal)) if refusal.is_trade_not_exist() => {
                Ok(TradeState::Unpaid)
            }
            Err(error) => Err(not_a_fact(alipay::Method::Query, error)),
        }
    }

    async fn close(&self, trade: &Trade) -> Result<Closed, PortError> {
        let out_trade_no = out_trade_no(&trade.payment_id)?;
        let request = self
            .protocol
            .close(&out_trade_no, chrono::Utc::now())
            .map_err(unexpected)?;
        let body = self.call(&request).await?;
        match self.protocol.read_close(&body) {
            Ok(_) => Ok(Closed::Closed),
            // Never created at Alipay: nobody can pay it now.
            Err(ResponseError::Refused(refusal)) if refusal.is_trade_not_exist() => {
                Ok(Closed::Closed)
            }
            // Paid (or already closed): the query says which, and the trade number.
            Err(ResponseError::Refused(refusal)) if refusal.is_trade_status_error() => {
                match self.query_trade(&out_trade_no).await? {
                    Ok(queried) if queried.trade_status.is_paid() => Ok(Closed::AlreadyPaid {
                        transaction_id: queried.trade_no,
                    }),
                    Ok(queried) if queried.trade_status == TradeStatus::TradeClosed => {
                        Ok(Closed::Closed)
                    }
                    Ok(queried) => Err(PortError::Unavailable(format!(
                        "Alipay refused to close {out_trade_no}, which is {:?}",
                        queried.trade_status
                    ))),
                    Err(ResponseError::Refused(refusal)) if refusal.is_trade_not_exist() => {
                        Ok(Closed::Closed)
                    }
                    Err(error) => Err(not_a_fact(alipay::Method::Query, error)),
                }
            }
            Err(error) => Err(not_a_fact(alipay::Method::Close, error)),
        }
    }

    async fn refund(&self, refund: &RefundRequest) -> Result<RefundState, PortError> {
        let out_trade_no = out_trade_no(&refund.trade.payment_id)?;
        let out_request_no = RefundNo::new(&refund.refund_id)
            .map_err(|error| PortError::Unexpected(error.into()))?;
        let amount = refund.trade.amount.minor();
        let request = self
            .protocol
            .refund(&out_trade_no, amount, &out_request_no, chrono::Utc::now())
            .map_err(unexpected)?;
        let body = self.call(&request).await?;
        let refunded = self
            .protocol
            .read_refund(&body)
            .map_err(|error| not_a_fact(alipay::Method::Refund, error))?;
        if refunded.out_trade_no != out_trade_no.as_str() {
            return Err(PortError::Unexpected(anyhow::anyhow!(
                "Alipay answered a refund of {out_trade_no} about {}",
                refunded.out_trade_no
            )));
        }
        Ok(refund_state(
            refunded.fund_change,
            refunded.refund_fee_fen,
            amount,
        ))
    }
}

/// Whether a refund answer means the money went back: this call moved it,
/// or an earlier call with the same `out_request_no` did (the trade's
/// refunded total covers the whole payment).
fn refund_state(fund_change: bool, refunded_fen: i64, amount_fen: i64) -> RefundState {
    if fund_change || refunded_fen >= amount_fen {
        RefundState::Refunded
    } else {
        RefundState::Processing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refund_is_done_when_money_moved_now_or_before() {
        assert_eq!(refund_state(true, 500, 500), RefundState::Refunded);
        assert_eq!(refund_state(false, 500, 500), RefundState::Refunded);
        assert_eq!(refund_state(false, 0, 500), RefundState::Processing);
        assert_eq!(refund_state(false, 499, 500), RefundState::Processing);
    }

    #[test]
    fn unsigned_refusals_and_system_errors_are_asked_again_others_are_errors() {
        let refusal = |code: &str, sub_code: Option<&str>| alipay::Refusal {
            code: code.into(),
            msg: "x".into(),
            sub_code: sub_code.map(str::to_owned),
            sub_msg: None,
        };
        let query = alipay::Method::Query;
        assert!(matches!(
            not_a_fact(
                query,
                ResponseError::UnsignedRefusal(refusal("40004", Some("ACQ.TRADE_NOT_EXIST")))
            ),
            PortError::Unavailable(_)
        ));
        assert!(matches!(
            not_a_fact(query, ResponseError::Refused(refusal("20000", None))),
            PortError::Unavailable(_)
        ));
        assert!(matches!(
            not_a_fact(query, ResponseError::BadSignature),
            PortError::Unexpected(_)
        ));
        assert!(matches!(
            not_a_fact(query, ResponseError::Unsigned),
            PortError::Unexpected(_)
        ));
        assert!(matches!(
            not_a_fact(
                query,
                ResponseError::Refused(refusal("40004", Some("ACQ.INVALID_PARAMETER")))
            ),
            PortError::Unexpected(_)
        ));
    }
}

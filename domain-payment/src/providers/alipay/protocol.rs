//! Alipay OpenAPI v2 (the gateway at `gateway.do`), with `RSA2` signatures.
//!
//! Every request is a set of parameters: the common ones (`app_id`, `method`,
//! `format`, `charset`, `sign_type`, `timestamp`, `version`, `notify_url`,
//! `return_url`) and `biz_content`, the call's own fields as one JSON string.
//! They are signed as one string ([`sign_content`]) with the app's private key,
//! then every value, `sign` included, is URL-encoded once for transport: as a
//! URL for the pay pages (the customer's browser opens it), as a form body for
//! server calls.
//!
//! Answers are JSON: `{"<method with _ for .>_response": {...}, "sign": "..."}`,
//! signed over the exact bytes of the `*_response` value. Notifications are
//! forms, signed over their sorted fields. Both are verified with the Alipay
//! public key before anything in them is believed.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::providers::keys::{PrivateKey, PublicKey, SignError, SignatureError};
use crate::providers::{OutTradeNo, RefundNo, beijing, is_callback_url};

/// Alipay's production gateway.
pub const PRODUCTION_GATEWAY: &str = "https://openapi.alipay.com/gateway.do";
/// The gateway of Alipay's sandbox (open.alipay.com, "沙箱环境").
pub const SANDBOX_GATEWAY: &str = "https://openapi-sandbox.dl.alipaydev.com/gateway.do";
/// The `Content-Type` of a server call's body.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded;charset=utf-8";
/// The body of the reply that acknowledges a notification. Anything else
/// makes Alipay send it again (8 times over about 25 hours).
pub const NOTIFY_ACK: &str = "success";
/// The `code` of a successful answer.
pub const SUCCESS_CODE: &str = "10000";
/// `sub_code` of a query for a trade Alipay does not know: one nobody has
/// scanned or opened yet. Unpaid, not a failure.
pub const TRADE_NOT_EXIST: &str = "ACQ.TRADE_NOT_EXIST";
/// `sub_code` of a close refused because the trade is already paid.
pub const TRADE_STATUS_ERROR: &str = "ACQ.TRADE_STATUS_ERROR";

/// The smallest amount Alipay takes: 0.01 yuan.
pub const MIN_FEN: i64 = 1;
/// The largest amount Alipay takes: 100,000,000.00 yuan.
pub const MAX_FEN: i64 = 10_000_000_000;

/// Request or notification parameters, kept in byte order of their names
/// (the order they are signed in).
pub type Params = BTreeMap<String, String>;

/// What shop needs to talk to Alipay as one application.
#[derive(Debug)]
pub struct AlipayConfig {
    /// The application's id (`app_id`), 16 digits.
    pub app_id: String,
    /// The application's private key: it signs every request.
    pub app_private_key: PrivateKey,
    /// The Alipay public key (not the application's): it signs every answer
    /// and notification.
    pub alipay_public_key: PublicKey,
    /// [`PRODUCTION_GATEWAY`], [`SANDBOX_GATEWAY`] or a fake's.
    pub gateway_url: String,
    /// The merchant's Alipay user id (`2088...`); when set, notifications must
    /// name it.
    pub seller_id: Option<String>,
}

/// A setting Alipay would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("the Alipay app id must be digits")]
    AppId,
    #[error("the Alipay gateway URL must be http(s) with no query string")]
    GatewayUrl,
    #[error("the Alipay seller id must be digits")]
    SellerId,
}

/// The Alipay protocol for one application: builds signed requests, verifies
/// answers and notifications.
#[derive(Debug)]
pub struct Alipay {
    config: AlipayConfig,
}

/// The API methods shop calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `alipay.trade.page.pay`: a payment page for a computer's browser.
    PagePay,
    /// `alipay.trade.wap.pay`: a payment page for a phone's browser.
    WapPay,
    /// `alipay.trade.precreate`: a QR code to scan with the Alipay app.
    Precreate,
    /// `alipay.trade.query`: where a trade stands.
    Query,
    /// `alipay.trade.close`: no payment any more.
    Close,
    /// `alipay.trade.refund`: money back.
    Refund,
}

impl Method {
    pub const ALL: [Method; 6] = [
        Method::PagePay,
        Method::WapPay,
        Method::Precreate,
        Method::Query,
        Method::Close,
        Method::Refund,
    ];

    /// The `method` parameter.
    pub const fn name(self) -> &'static str {
        match self {
            Method::PagePay => "alipay.trade.page.pay",
            Method::WapPay => "alipay.trade.wap.pay",
            Method::Precreate => "alipay.trade.precreate",
            Method::Query => "alipay.trade.query",
            Method::Close => "alipay.trade.close",
            Method::Refund => "alipay.trade.refund",
        }
    }

    /// The method named `name`, if shop calls it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|method| method.name() == name)
    }

    /// The answer's member holding the signed response:
    /// `alipay_trade_query_response` for `alipay.trade.query`.
    pub fn response_key(self) -> String {
        format!("{}_response", self.name().replace('.', "_"))
    }

    /// The `product_code` of a payment made through this method, if it takes one.
    const fn product_code(self) -> Option<&'static str> {
        match self {
            Method::PagePay => Some("FAST_INSTANT_TRADE_PAY"),
            Method::WapPay => Some("QUICK_WAP_WAY"),
            _ => None,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An amount Alipay does not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("{0} fen is outside 0.01 to 100000000.00 yuan")]
    OutOfRange(i64),
    #[error("not an amount in yuan with at most two decimals")]
    Malformed,
}

/// An amount in fen as Alipay writes it: yuan with exactly two decimals
/// (`999900` is `"9999.00"`), built from the integer, never through a float.
pub fn yuan(fen: i64) -> Result<String, AmountError> {
    if !(MIN_FEN..=MAX_FEN).contains(&fen) {
        return Err(AmountError::OutOfRange(fen));
    }
    Ok(format!("{}.{:02}", fen / 100, fen % 100))
}

/// An amount in yuan as Alipay writes it (`"9999.00"`; one or no decimal
/// digit is read too), back to fen, exactly. Signs, exponents, spaces and a
/// third decimal are refused.
pub fn fen(yuan: &str) -> Result<i64, AmountError> {
    let (whole, cents) = match yuan.split_once('.') {
        Some((whole, decimals)) => (whole, decimals),
        None => (yuan, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let well_formed = (1..=9).contains(&whole.len())
        && digits(whole)
        && (cents.len() <= 2 && digits(cents))
        && !(yuan.contains('.') && cents.is_empty());
    if !well_formed {
        return Err(AmountError::Malformed);
    }
    let whole: i64 = whole.parse().map_err(|_| AmountError::Malformed)?;
    let cents: i64 = format!("{cents:0<2}")
        .parse()
        .map_err(|_| AmountError::Malformed)?;
    let fen = whole * 100 + cents;
    if !(MIN_FEN..=MAX_FEN).contains(&fen) {
        return Err(AmountError::OutOfRange(fen));
    }
    Ok(fen)
}

/// Alipay's local time format, `yyyy-MM-dd HH:mm:ss` in Beijing time.
const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// An instant as Alipay writes it: `2025-02-01 00:30:00` (Beijing time).
pub fn format_time(at: DateTime<Utc>) -> String {
    beijing(at).format(TIME_FORMAT).to_string()
}

/// An Alipay local time (Beijing) back to an instant.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let local = NaiveDateTime::parse_from_str(text, TIME_FORMAT).ok()?;
    local
        .and_local_timezone(crate::providers::BEIJING)
        .single()
        .map(|at| at.with_timezone(&Utc))
}

/// The string Alipay signs: every parameter but those `excluded` (`sign` for a
/// request or an answer; `sign` and `sign_type` for a notification), empty
/// values dropped, sorted by name in byte order, joined as `k=v` with `&`,
/// values raw (not URL-encoded).
pub fn sign_content<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
    excluded: &[&str],
) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .into_iter()
        .filter(|(name, value)| !value.is_empty() && !excluded.contains(name))
        .collect();
    pairs.sort_unstable();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Signs `params` as a request (all but `sign`), for shop and for the fake
/// Alipay's notifications alike: the base64 `sign`.
pub fn sign_params(key: &PrivateKey, params: &Params) -> Result<String, SignError> {
    key.sign_base64(sign_content(iter_params(params), &["sign"]).as_bytes())
}

/// Checks the `sign` of a request's parameters (what the fake Alipay does with
/// shop's requests): all but `sign` are signed.
pub fn verify_request(key: &PublicKey, params: &Params) -> Result<(), SignatureError> {
    let sign = params.get("sign").ok_or(SignatureError::Mismatch)?;
    key.verify_base64(
        sign_content(iter_params(params), &["sign"]).as_bytes(),
        sign,
    )
}

fn iter_params(params: &Params) -> impl Iterator<Item = (&str, &str)> {
    params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

/// Parameters as a form (`application/x-www-form-urlencoded`), every value
/// encoded once: a space is `+`, `+` is `%2B`, `%` is `%25`.
pub fn encode_form(params: &Params) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// A form, decoded once, into parameters. A name given twice is refused: the
/// signature could cover one value and shop read the other.
pub fn decode_form(body: &[u8]) -> Result<Params, FormError> {
    let mut params = Params::new();
    for (name, value) in form_urlencoded::parse(body) {
        if params
            .insert(name.to_string(), value.into_owned())
            .is_some()
        {
            return Err(FormError::Duplicate(name.into_owned()));
        }
    }
    Ok(params)
}

/// A form shop cannot read unambiguously.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the form names {0:?} twice")]
    Duplicate(String),
}

/// A request signed and ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    method: Method,
    params: Params,
}

impl SignedRequest {
    pub fn method(&self) -> Method {
        self.method
    }

    /// Every parameter, `sign` included, decoded.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The body of a server call (POST to the gateway with
    /// [`FORM_CONTENT_TYPE`]).
    pub fn form_body(&self) -> String {
        encode_form(&self.params)
    }

    /// The gateway URL with every parameter in its query string: what the
    /// customer's browser opens for the pay pages.
    pub fn url(&self, gateway_url: &str) -> String {
        format!("{gateway_url}?{}", self.form_body())
    }
}

/// A trade to pay: the payment as Alipay sees it.
#[derive(Debug, Clone, Copy)]
pub struct Trade<'a> {
    pub out_trade_no: &'a OutTradeNo,
    /// In fen; Alipay settles in CNY only.
    pub amount_fen: i64,
    /// What the customer sees on the payment page (at most 256 characters).
    pub subject: &'a str,
    /// When the trade stops taking payment: the order's deadline.
    pub time_expire: DateTime<Utc>,
}

/// Where Alipay sends the customer and the notification.
#[derive(Debug, Clone, Copy)]
pub struct Callbacks<'a> {
    /// The notify route (`https`, no query string).
    pub notify_url: &'a str,
    /// Where the customer's browser goes after paying (pay pages only).
    pub return_url: Option<&'a str>,
}

/// A request shop cannot build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("total_amount: {0}")]
    Amount(#[from] AmountError),
    #[error("the subject must be 1 to 256 characters")]
    Subject,
    #[error("{0} must be an https URL without a query string")]
    CallbackUrl(&'static str),
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error("biz_content could not be written: {0}")]
    BizContent(String),
}

/// `biz_content` of a payment (page, wap, precreate).
#[derive(Serialize)]
struct PayContent<'a> {
    out_trade_no: &'a str,
    total_amount: String,
    subject: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    product_code: Option<&'static str>,
    time_expire: String,
}

/// `biz_content` of a query or a close.
#[derive(Serialize)]
struct TradeContent<'a> {
    out_trade_no: &'a str,
}

/// `biz_content` of a refund.
#[derive(Serialize)]
struct RefundContent<'a> {
    out_trade_no: &'a str,
    refund_amount: String,
    out_request_no: &'a str,
}

impl Alipay {
    /// The protocol for one application, once its settings are checked.
    pub fn new(config: AlipayConfig) -> Result<Self, ConfigError> {
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(&config.app_id) {
            return Err(ConfigError::AppId);
        }
        if config.seller_id.as_deref().is_some_and(|id| !digits(id)) {
            return Err(ConfigError::SellerId);
        }
        let url = &config.gateway_url;
        let http = url.starts_with("https://") || url.starts_with("http://");
        if !http || url.contains(['?', '#']) || !url.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::GatewayUrl);
        }
        Ok(Self { config })
    }

    pub fn config(&self) -> &AlipayConfig {
        &self.config
    }

    /// The URL of a payment page for a computer's browser
    /// (`alipay.trade.page.pay`, `FAST_INSTANT_TRADE_PAY`). No server call:
    /// the signed URL is the payment link.
    pub fn page_pay_url(
        &self,
        trade: &Trade<'_>,
        callbacks: &Callbacks<'_>,
        now: DateTime<Utc>,
    ) -> Result<String, RequestError> {
        let request = self.pay_request(Method::PagePay, trade, callbacks, now)?;
        Ok(request.url(&self.config.gateway_url))
    }

    /// The URL of a payment page for a phone's browser
    /// (`alipay.trade.wap.pay`, `QUICK_WAP_WAY`); it opens the Alipay app
    /// when installed.
    pub fn wap_pay_url(
        &self,
        trade: &Trade<'_>,
        callbacks: &Callbacks<'_>,
        now: DateTime<Utc>,
    ) -> Result<String, RequestError> {
        let request = self.pay_request(Method::WapPay, trade, callbacks, now)?;
        Ok(request.url(&self.config.gateway_url))
    }

    /// `alipay.trade.precreate`: a server call answering the QR code's content
    /// (read it with [`read_precreate`](Self::read_precreate)).
    pub fn precreate(
        &self,
        trade: &Trade<'_>,
        notify_url: &str,
        now: DateTime<Utc>,
    ) -> Result<SignedRequest, RequestError> {
        let callbacks = Callbacks {
            notify_url,
            return_url: None,
        };
        self.pay_request(Method::Precreate, trade, &callbacks, now)
    }

    /// `alipay.trade.query` of one trade.
    pub fn query(
        &self,
        out_trade_no: &OutTradeNo,
        now: DateTime<Utc>,
    ) -> Result<SignedRequest, RequestError> {
        let content = TradeContent {
            out_trade_no: out_trade_no.as_str(),
        };
        self.request(Method::Query, &content, None, now)
    }

    /// `alipay.trade.close` of one trade.
    pub fn close(
        &self,
        out_trade_no: &OutTradeNo,
        now: DateTime<Utc>,
    ) -> Result<SignedRequest, RequestError> {
        let content = TradeContent {
            out_trade_no: out_trade_no.as_str(),
        };
        self.request(Method::Close, &content, None, now)
    }

    /// `alipay.trade.refund` of `refund_fen` of one trade. `out_request_no`
    /// makes it idempotent: a retry with the same number refunds once.
    pub fn refund(
        &self,
        out_trade_no: &OutTradeNo,
        refund_fen: i64,
        out_request_no: &RefundNo,
        now: DateTime<Utc>,
    ) -> Result<SignedRequest, RequestError> {
        let content = RefundContent {
            out_trade_no: out_trade_no.as_str(),
            refund_amount: yuan(refund_fen)?,
            out_request_no: out_request_no.as_str(),
        };
        self.request(Method::Refund, &content, None, now)
    }

    fn pay_request(
        &self,
        method: Method,
        trade: &Trade<'_>,
        callbacks: &Callbacks<'_>,
        now: DateTime<Utc>,
    ) -> Result<SignedRequest, RequestError> {
        let subject_chars = trade.subject.chars().count();
        if !(1..=256).contains(&subject_chars) {
            return Err(RequestError::Subject);
        }
        let content = PayContent {
            out_trade_no: trade.out_trade_no.as_str(),
            total_amount: yuan(trade.amount_fen)?,
            subject: trade.subject,
            product_code: method.product_code(),
            time_expire: format_time(trade.time_expire),
        };
        self.request(method, &content, Some(callbacks), now)
    }

    /// The common parameters around `biz_content`, signed.
    fn request(
        &self,
        method: Method,
        biz_content: &impl Serialize,
        callbacks: Option<&Callbacks<'_>>,
        now: DateTime<Utc>,
    ) -> Result<SignedRequest, RequestError> {
        let biz_content = serde_json::to_string(biz_content)
            .map_err(|error| RequestError::BizContent(error.to_string()))?;
        let mut params: Params = [
            ("app_id", self.config.app_id.as_str()),
            ("method", method.name()),
            ("format", "JSON"),
            ("charset", "utf-8"),
            ("sign_type", "RSA2"),
            ("version", "1.0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        params.insert("timestamp".into(), format_time(now));
        params.insert("biz_content".into(), biz_content);
        if let Some(callbacks) = callbacks {
            if !is_callback_url(callbacks.notify_url) {
                return Err(RequestError::CallbackUrl("notify_url"));
            }
            params.insert("notify_url".into(), callbacks.notify_url.to_owned());
            if let Some(return_url) = callbacks.return_url {
                if !is_callback_url(return_url) {
                    return Err(RequestError::CallbackUrl("return_url"));
                }
                params.insert("return_url".into(), return_url.to_owned());
            }
        }
        let sign = sign_params(&self.config.app_private_key, &params)?;
        params.insert("sign".into(), sign);
        Ok(SignedRequest { method, params })
    }
}

/// A business refusal from Alipay: `code` other than `10000`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Refusal {
    pub code: String,
    #[serde(default)]
    pub msg: String,
    pub sub_code: Option<String>,
    pub sub_msg: Option<String>,
}

impl Refusal {
    /// The trade does not exist: a query before the buyer scanned or opened
    /// the page (unpaid), a close of a trade Alipay never saw (closed).
    pub fn is_trade_not_exist(&self) -> bool {
        self.sub_code.as_deref() == Some(TRADE_NOT_EXIST)
    }

    /// The trade is in a state that forbids the call: a close of a paid trade.
    pub fn is_trade_status_error(&self) -> bool {
        self.sub_code.as_deref() == Some(TRADE_STATUS_ERROR)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.msg)?;
        if let Some(sub_code) = &self.sub_code {
            write!(f, " ({sub_code}")?;
            if let Some(sub_msg) = &self.sub_msg {
                write!(f, ": {sub_msg}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// What is wrong with an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("the answer is not what Alipay sends: {0}")]
    Malformed(String),
    #[error("the answer's signature does not match: forged or altered")]
    BadSignature,
    #[error("a successful answer without a signature: forged")]
    Unsigned,
    /// A verified refusal: believe it.
    #[error("Alipay refused: {0}")]
    Refused(Refusal),
    /// A refusal nobody signed (Alipay leaves some errors unsigned): it may be
    /// a proxy's or a forger's. An error, never a fact about the trade.
    #[error("Alipay refused (unsigned): {0}")]
    UnsignedRefusal(Refusal),
}

impl ResponseError {
    fn malformed(what: impl fmt::Display) -> Self {
        Self::Malformed(what.to_string())
    }
}

/// Where a trade stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TradeStatus {
    /// Created (the buyer scanned or opened it), not paid.
    WaitBuyerPay,
    /// Paid; refunds still possible.
    TradeSuccess,
    /// Paid; no refund possible any more.
    TradeFinished,
    /// Closed unpaid, or fully refunded.
    TradeClosed,
}

impl TradeStatus {
    /// Only `TRADE_SUCCESS` and `TRADE_FINISHED` mean the money arrived.
    pub fn is_paid(self) -> bool {
        matches!(self, TradeStatus::TradeSuccess | TradeStatus::TradeFinished)
    }
}

/// The answer to `alipay.trade.precreate`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Precreated {
    pub out_trade_no: String,
    /// The content of the QR code to show (a URL).
    pub qr_code: String,
}

/// The answer to `alipay.trade.query`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct QueriedTrade {
    /// Alipay's trade number: the transaction id.
    pub trade_no: String,
    pub out_trade_no: String,
    pub trade_status: TradeStatus,
    #[serde(rename = "total_amount", deserialize_with = "de_fen")]
    pub total_amount_fen: i64,
}

/// The answer to `alipay.trade.close`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Closed {
    pub trade_no: Option<String>,
    pub out_trade_no: Option<String>,
}

/// The answer to `alipay.trade.refund`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Refunded {
    pub trade_no: String,
    pub out_trade_no: String,
    /// `fund_change=Y`: this call moved money back. `N` on a retry of a refund
    /// already made (the same `out_request_no`): done before.
    #[serde(deserialize_with = "de_yes_no")]
    pub fund_change: bool,
    /// All refunded on this trade so far.
    #[serde(rename = "refund_fee", deserialize_with = "de_fen")]
    pub refund_fee_fen: i64,
}

fn de_fen<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let text = String::deserialize(deserializer)?;
    fen(&text).map_err(de::Error::custom)
}

fn de_yes_no<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    match String::deserialize(deserializer)?.as_str() {
        "Y" => Ok(true),
        "N" => Ok(false),
        other => Err(de::Error::invalid_value(
            de::Unexpected::Str(other),
            &"Y or N",
        )),
    }
}

impl Alipay {
    /// The answer to [`precreate`](Self::precreate).
    pub fn read_precreate(&self, body: &[u8]) -> Result<Precreated, ResponseError> {
        self.read_response(Method::Precreate, body)
    }

    /// The answer to [`query`](Self::query). A trade nobody opened yet is
    /// `Err(Refused(r))` with `r.is_trade_not_exist()`.
    pub fn read_query(&self, body: &[u8]) -> Result<QueriedTrade, ResponseError> {
        self.read_response(Method::Query, body)
    }

    /// The answer to [`close`](Self::close). A paid trade is
    /// `Err(Refused(r))` with `r.is_trade_status_error()`.
    pub fn read_close(&self, body: &[u8]) -> Result<Closed, ResponseError> {
        self.read_response(Method::Close, body)
    }

    /// The answer to [`refund`](Self::refund).
    pub fn read_refund(&self, body: &[u8]) -> Result<Refunded, ResponseError> {
        self.read_response(Method::Refund, body)
    }

    /// An answer to `method`, verified over the raw bytes of its
    /// `*_response` value, then read as `T`.
    pub fn read_response<T: DeserializeOwned>(
        &self,
        method: Method,
        body: &[u8],
    ) -> Result<T, ResponseError> {
        let signed = SignedAnswer::parse(body, method)?;
        let status: Refusal =
            serde_json::from_str(signed.content).map_err(ResponseError::malformed)?;
        match signed.sign {
            Some(sign) => self
                .config
                .alipay_public_key
                .verify_base64(signed.content.as_bytes(), &sign)
                .map_err(|_| ResponseError::BadSignature)?,
            None if status.code == SUCCESS_CODE => return Err(ResponseError::Unsigned),
            None => return Err(ResponseError::UnsignedRefusal(status)),
        }
        if status.code != SUCCESS_CODE {
            return Err(ResponseError::Refused(status));
        }
        serde_json::from_str(signed.content).map_err(ResponseError::malformed)
    }
}

/// The signed part of an answer: the raw text of its `*_response` value (or
/// of `error_response`, Alipay's answer to a request it could not route) and
/// the `sign` beside it.
struct SignedAnswer<'a> {
    content: &'a str,
    sign: Option<String>,
}

impl<'a> SignedAnswer<'a> {
    fn parse(body: &'a [u8], method: Method) -> Result<Self, ResponseError> {
        let text = std::str::from_utf8(body).map_err(|_| ResponseError::malformed("not UTF-8"))?;
        let Members(members) = serde_json::from_str(text).map_err(ResponseError::malformed)?;
        let find = |name: &str| -> Result<Option<&'a RawValue>, ResponseError> {
            let mut found = members.iter().filter(|(key, _)| key == name);
            match (found.next(), found.next()) {
                (Some(_), Some(_)) => Err(ResponseError::Malformed(format!("{name} given twice"))),
                (first, _) => Ok(first.map(|(_, value)| *value)),
            }
        };
        let key = method.response_key();
        let content = match find(&key)? {
            Some(content) => content,
            None => find("error_response")?.ok_or(ResponseError::Malformed(format!("no {key}")))?,
        };
        let sign = match find("sign")? {
            Some(sign) => serde_json::from_str::<String>(sign.get())
                .map_err(|_| ResponseError::malformed("sign is not a string"))?,
            None => String::new(),
        };
        Ok(Self {
            content: content.get(),
            sign: Some(sign).filter(|sign| !sign.is_empty()),
        })
    }
}

/// The members of a JSON object in order, each value as its raw text. A map
/// would silently keep one of two members with the same name.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// Builds the signed answer the real Alipay would send (for the fake Alipay
/// of the tests): `content` is the `*_response` value's exact text, which the
/// signature covers byte for byte.
pub fn signed_response(
    key: &PrivateKey,
    method: Method,
    content: &str,
) -> Result<String, SignError> {
    let sign = key.sign_base64(content.as_bytes())?;
    Ok(format!(
        r#"{{"{}":{content},"sign":"{sign}"}}"#,
        method.response_key()
    ))
}

/// A payment notification (`notify_type=trade_status_sync`), verified.
/// Refunds and closes arrive as notifications too: only
/// [`TradeStatus::is_paid`] means paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The same on every retry of one notification.
    pub notify_id: String,
    pub notify_type: Option<String>,
    pub app_id: String,
    pub seller_id: Option<String>,
    pub out_trade_no: String,
    /// Alipay's trade number: the transaction id.
    pub trade_no: String,
    pub trade_status: TradeStatus,
    pub total_amount_fen: i64,
    pub gmt_payment: Option<DateTime<Utc>>,
    /// Set on a refund's notification: all refunded so far.
    pub refund_fee_fen: Option<i64>,
}

/// Why a notification is not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    #[error(transparent)]
    Form(#[from] FormError),
    #[error("the notification carries no sign")]
    Unsigned,
    #[error("sign_type {0:?} is not RSA2")]
    SignType(String),
    #[error("charset {0:?} is not utf-8")]
    Charset(String),
    #[error("the notification's signature does not match: forged or altered")]
    BadSignature,
    #[error("the notification has no {0}")]
    Missing(&'static str),
    #[error("{field} {value:?} is not valid")]
    Invalid { field: &'static str, value: String },
}

impl Alipay {
    /// A notification's body (a form, whatever its `Content-Type` said),
    /// decoded once and verified: `sign` and `sign_type` removed, empty values
    /// dropped, the rest sorted and joined, checked with the Alipay public key.
    /// Only then is it read.
    pub fn verify_notification(&self, body: &[u8]) -> Result<Notification, NotificationError> {
        let params = decode_form(body)?;
        let sign = params
            .get("sign")
            .filter(|sign| !sign.is_empty())
            .ok_or(NotificationError::Unsigned)?;
        if let Some(sign_type) = params.get("sign_type").filter(|t| *t != "RSA2") {
            return Err(NotificationError::SignType(sign_type.clone()));
        }
        if let Some(charset) = params
            .get("charset")
            .filter(|c| !c.eq_ignore_ascii_case("utf-8"))
        {
            return Err(NotificationError::Charset(charset.clone()));
        }
        let content = sign_content(iter_params(&params), &["sign", "sign_type"]);
        self.config
            .alipay_public_key
            .verify_base64(content.as_bytes(), sign)
            .map_err(|_| NotificationError::BadSignature)?;
        Notification::read(&params)
    }
}

impl Notification {
    fn read(params: &Params) -> Result<Self, NotificationError> {
        let optional = |name: &str| params.get(name).filter(|v| !v.is_empty()).cloned();
        let required = |name: &'static str| optional(name).ok_or(NotificationError::Missing(name));
        let invalid = |field: &'static str, value: &str| NotificationError::Invalid {
            field,
            value: value.to_owned(),
        };
        let amount =
            |field: &'static str, value: &str| fen(value).map_err(|_| invalid(field, value));

        let trade_status = required("trade_status")?;
        let total_amount = required("total_amount")?;
        Ok(Self {
            notify_id: required("notify_id")?,
            notify_type: optional("notify_type"),
            app_id: required("app_id")?,
            seller_id: optional("seller_id"),
            out_trade_no: required("out_trade_no")?,
            trade_no: required("trade_no")?,
            trade_status: serde_json::from_value(serde_json::Value::String(trade_status.clone()))
                .map_err(|_| invalid("trade_status", &trade_status))?,
            total_amount_fen: amount("total_amount", &total_amount)?,
            gmt_payment: optional("gmt_payment")
                .map(|at| parse_time(&at).ok_or_else(|| invalid("gmt_payment", &at)))
                .transpose()?,
            refund_fee_fen: optional("refund_fee")
                .map(|fee| amount("refund_fee", &fee))
                .transpose()?,
        })
    }
}

/// Builds a notification's body signed as the real Alipay signs it (for the
/// fake Alipay of the tests): `sign_type=RSA2` added, `sign` over the rest.
pub fn signed_notification(key: &PrivateKey, fields: &Params) -> Result<String, SignError> {
    let mut params = fields.clone();
    params.remove("sign");
    params.remove("sign_type");
    let sign = key.sign_base64(sign_content(iter_params(&params), &[]).as_bytes())?;
    params.insert("sign_type".into(), "RSA2".into());
    params.insert("sign".into(), sign);
    Ok(encode_form(&params))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::model::PaymentId;
    use crate::providers::keys::fixtures;

    // Golden vectors, made independently of this code by `openssl` over the
    // fixture keys (tests/fixtures/providers/): the string to sign written
    // out by hand, then
    //   printf '%s' "$CONTENT" | openssl dgst -sha256 -sign KEY.pem | base64 -w0
    // and the URL and the form body encoded by Python's urllib.parse.urlencode.

    /// `alipay.trade.page.pay` of 9999.00 yuan, signed with alipay_app_private_pkcs8.pem
    /// (timestamp 2025-02-01 00:30:00, deadline 00:45:00, Beijing time).
    const PAGE_PAY_CONTENT: &str = r#"app_id=2021000000000001&biz_content={"out_trade_no":"0193a5b27c4d7e8f9a0b1c2d3e4f5a6b","total_amount":"9999.00","subject":"iPhone 15 订单 a+b 100%","product_code":"FAST_INSTANT_TRADE_PAY","time_expire":"2025-02-01 00:45:00"}&charset=utf-8&format=JSON&method=alipay.trade.page.pay&notify_url=https://shop.example.com/api/v1/payments/notify/alipay&return_url=https://shop.example.com/paid&sign_type=RSA2&timestamp=2025-02-01 00:30:00&version=1.0"#;
    const PAGE_PAY_SIGN: &str = r#"aAbTSeV2WhZZqLOjtGNYTU089pzZTlodW/i+s2eciZhOKU36AapqmrL/vRClK0mdMm1CKEbJlvE1GlPbQOia/s01ADq3EsZDJmqXCqinXBMgYtnPkRR9721eK2UIQkQsSES7G4hR3fuNrR6sLLAoMkl/xku9fYV13ANNjzntTaOCsZgch/lpoMxiHM/f1EkyEwrIi7/FpUplX6+/+Kq4N3YZUZDDrFkiZOUkPMgoMm3BBZvCSxV/lsbr9bof8rkbSHc3VG5qxt4Tm0kWP2+x9FLirgR2i8TPf6I3QbUUrHQzU3QzPPn9kwQFMgXljbKLFY+3OaM6RDfRYdZHNILgaA=="#;
    const PAGE_PAY_URL: &str = r#"https://openapi.alipay.com/gateway.do?app_id=2021000000000001&biz_content=%7B%22out_trade_no%22%3A%220193a5b27c4d7e8f9a0b1c2d3e4f5a6b%22%2C%22total_amount%22%3A%229999.00%22%2C%22subject%22%3A%22iPhone+15+%E8%AE%A2%E5%8D%95+a%2Bb+100%25%22%2C%22product_code%22%3A%22FAST_INSTANT_TRADE_PAY%22%2C%22time_expire%22%3A%222025-02-01+00%3A45%3A00%22%7D&charset=utf-8&format=JSON&method=alipay.trade.page.pay&notify_url=https%3A%2F%2Fshop.example.com%2Fapi%2Fv1%2Fpayments%2Fnotify%2Falipay&return_url=https%3A%2F%2Fshop.example.com%2Fpaid&sign=aAbTSeV2WhZZqLOjtGNYTU089pzZTlodW%2Fi%2Bs2eciZhOKU36AapqmrL%2FvRClK0mdMm1CKEbJlvE1GlPbQOia%2Fs01ADq3EsZDJmqXCqinXBMgYtnPkRR9721eK2UIQkQsSES7G4hR3fuNrR6sLLAoMkl%2Fxku9fYV13ANNjzntTaOCsZgch%2FlpoMxiHM%2Ff1EkyEwrIi7%2FFpUplX6%2B%2F%2BKq4N3YZUZDDrFkiZOUkPMgoMm3BBZvCSxV%2Flsbr9bof8rkbSHc3VG5qxt4Tm0kWP2%2Bx9FLirgR2i8TPf6I3QbUUrHQzU3QzPPn9kwQFMgXljbKLFY%2B3OaM6RDfRYdZHNILgaA%3D%3D&sign_type=RSA2&timestamp=2025-02-01+00%3A30%3A00&version=1.0"#;

    /// A payment notification as Alipay posts it (fields in Alipay's own order,
    /// `subject` holding `a+b c%20`, `fund_bill_list` HTML-escaped as Alipay
    /// sends it, `body` empty), signed with alipay_platform_private_pkcs8.pem.
    const NOTIFY_CONTENT: &str = r#"app_id=2021000000000001&auth_app_id=2021000000000001&buyer_id=2088102000000000&buyer_pay_amount=9999.00&charset=utf-8&fund_bill_list=[{&quot;amount&quot;:&quot;9999.00&quot;,&quot;fundChannel&quot;:&quot;ALIPAYACCOUNT&quot;}]&gmt_create=2025-02-01 00:31:10&gmt_payment=2025-02-01 00:31:15&invoice_amount=9999.00&notify_id=2025020100222003115000000000000001&notify_time=2025-02-01 00:31:20&notify_type=trade_status_sync&out_trade_no=0193a5b27c4d7e8f9a0b1c2d3e4f5a6b&point_amount=0.00&receipt_amount=9999.00&seller_email=shop@example.com&seller_id=2088000000000001&subject=a+b c%20&total_amount=9999.00&trade_no=2025020122001400000000000001&trade_status=TRADE_SUCCESS&version=1.0"#;
    const NOTIFY_SIGN: &str = r#"M0otiUpO9rjqC/ncQ/h90gIaLnK4CCJDUUdtAR6rbPXjaDzKGP/7f0w9NNH0mAV3XQSMJ7mWJ768sZv4StJECw3X6L9GCwyfcxtmqFe+vLpUhG9Ldb6Z55BQ2eCTUaPFHSJaRHq7K5IyBVT7zRBlpIlsgqnBr/qiD6Se1OlD5XHQJq5owZlUdHd17AOKxCNOJGvyGcA1L6Ys1Fk/QlO/d9IH/5BHG2Ap91JwR/h5CndYWUtV04JLHbHvBjx5zXYzr1z2y+u2gii7lxEeRutOAWaHMlHzqltFq34uz8HBSxXshmx1J4Zj0bqPsa8scW3Pes1NMry0QIJuHj6wS8O/Rw=="#;
    const NOTIFY_BODY: &str = r#"gmt_create=2025-02-01+00%3A31%3A10&charset=utf-8&seller_email=shop%40example.com&subject=a%2Bb+c%2520&sign_type=RSA2&buyer_id=2088102000000000&invoice_amount=9999.00&notify_id=2025020100222003115000000000000001&fund_bill_list=%5B%7B%26quot%3Bamount%26quot%3B%3A%26quot%3B9999.00%26quot%3B%2C%26quot%3BfundChannel%26quot%3B%3A%26quot%3BALIPAYACCOUNT%26quot%3B%7D%5D&notify_type=trade_status_sync&trade_status=TRADE_SUCCESS&receipt_amount=9999.00&app_id=2021000000000001&buyer_pay_amount=9999.00&body=&gmt_payment=2025-02-01+00%3A31%3A15&notify_time=2025-02-01+00%3A31%3A20&version=1.0&out_trade_no=0193a5b27c4d7e8f9a0b1c2d3e4f5a6b&total_amount=9999.00&trade_no=2025020122001400000000000001&auth_app_id=2021000000000001&point_amount=0.00&seller_id=2088000000000001&sign=M0otiUpO9rjqC%2FncQ%2Fh90gIaLnK4CCJDUUdtAR6rbPXjaDzKGP%2F7f0w9NNH0mAV3XQSMJ7mWJ768sZv4StJECw3X6L9GCwyfcxtmqFe%2BvLpUhG9Ldb6Z55BQ2eCTUaPFHSJaRHq7K5IyBVT7zRBlpIlsgqnBr%2FqiD6Se1OlD5XHQJq5owZlUdHd17AOKxCNOJGvyGcA1L6Ys1Fk%2FQlO%2Fd9IH%2F5BHG2Ap91JwR%2Fh5CndYWUtV04JLHbHvBjx5zXYzr1z2y%2Bu2gii7lxEeRutOAWaHMlHzqltFq34uz8HBSxXshmx1J4Zj0bqPsa8scW3Pes1NMry0QIJuHj6wS8O%2FRw%3D%3D"#;

    /// An `alipay_trade_query_response` value holding a `\uXXXX` escape, raw
    /// non-ASCII and `\/`, signed over exactly these bytes with
    /// alipay_platform_private_pkcs8.pem.
    const QUERY_CONTENT: &str = r#"{"code":"10000","msg":"Success","buyer_logon_id":"abc***@example.com","buyer_pay_amount":"0.00","out_trade_no":"0193a5b27c4d7e8f9a0b1c2d3e4f5a6b","point_amount":"0.00","receipt_amount":"0.00","total_amount":"9999.00","trade_no":"2025020122001400000000000001","trade_status":"TRADE_SUCCESS","buyer_user_name":"\u5f20\u4e09","store_name":"杭州 店\/1号"}"#;
    const QUERY_SIGN: &str = r#"KkaiPNXOd/NoU/3EacfJhFb+WWLznZw8fXmxbLfwvR63kYp/ZAUo+1on7BkFdeDUBk/ihl85NG0RB02wn8denPyU0JTpBeN3l1RMvjJ/iGEK4eXjnHvlg3pzTq+ua1WcZI3jKByZ7dsLbhJBuLssgMWW0/hNjIrfto5PoPMNRXcjCNQpYIAPqfQLeFgGcS+GM3SO5fg5hTxyrFs2oW73aQ8cLrH5MEjcVEet24JcgyAI10yqz6qO+7ucnpjXF5qe+ByGgahzvqldQ/fOj1G6HODd2q3TQHzjiz5sVtimWqSsrpm5q1K3zG5z6FMf799PSk7wLr0dMrj0sgyD/ZcNFQ=="#;

    const APP_ID: &str = "2021000000000001";
    const SELLER_ID: &str = "2088000000000001";
    const TRADE_NO: &str = "0193a5b27c4d7e8f9a0b1c2d3e4f5a6b";
    const NOTIFY_URL: &str = "https://shop.example.com/api/v1/payments/notify/alipay";

    pub(in crate::providers::alipay) fn alipay() -> Alipay {
        Alipay::new(AlipayConfig {
            app_id: APP_ID.into(),
            app_private_key: fixtures::alipay_app_private(),
            alipay_public_key: fixtures::alipay_platform_public(),
            gateway_url: PRODUCTION_GATEWAY.into(),
            seller_id: Some(SELLER_ID.into()),
        })
        .unwrap()
    }

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
    }

    pub(in crate::providers::alipay) fn out_trade_no() -> OutTradeNo {
        OutTradeNo::from_payment_id(&PaymentId::from(
            "0193a5b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b".to_owned(),
        ))
        .unwrap()
    }

    fn trade(no: &OutTradeNo) -> Trade<'_> {
        Trade {
            out_trade_no: no,
            amount_fen: 999_900,
            subject: "iPhone 15 订单 a+b 100%",
            time_expire: at("2025-01-31T16:45:00Z"),
        }
    }

    fn now() -> DateTime<Utc> {
        at("2025-01-31T16:30:00Z")
    }

    fn callbacks() -> Callbacks<'static> {
        Callbacks {
            notify_url: NOTIFY_URL,
            return_url: Some("https://shop.example.com/paid"),
        }
    }

    fn biz_content(request: &SignedRequest) -> &str {
        &request.params()["biz_content"]
    }

    #[test]
    fn amounts_are_yuan_with_two_decimals_built_from_integer_fen() {
        assert_eq!(yuan(1).unwrap(), "0.01");
        assert_eq!(yuan(10).unwrap(), "0.10");
        assert_eq!(yuan(999_900).unwrap(), "9999.00");
        assert_eq!(yuan(MAX_FEN).unwrap(), "100000000.00");
        for out_of_range in [0, -1, MAX_FEN + 1, i64::MIN, i64::MAX] {
            assert_eq!(
                yuan(out_of_range),
                Err(AmountError::OutOfRange(out_of_range))
            );
        }
    }

    #[test]
    fn amounts_in_yuan_read_back_to_fen_exactly() {
        for (text, expected) in [
            ("0.01", 1),
            ("0.29", 29),
            ("9999.00", 999_900),
            ("9999.9", 999_990),
            ("9999", 999_900),
            ("100000000.00", MAX_FEN),
        ] {
            assert_eq!(fen(text), Ok(expected), "{text}");
        }
        for malformed in [
            "",
            ".5",
            "1.",
            "1.001",
            "-1.00",
            "+1.00",
            "1e3",
            " 1.00",
            "1.00 ",
            "1,00",
            "1..0",
            "0x10",
            "1234567890.00",
            "１.00",
        ] {
            assert_eq!(fen(malformed), Err(AmountError::Malformed), "{malformed:?}");
        }
        assert_eq!(fen("0.00"), Err(AmountError::OutOfRange(0)));
        assert_eq!(
            fen("100000000.01"),
            Err(AmountError::OutOfRange(MAX_FEN + 1))
        );
    }

    #[test]
    fn times_are_beijing_local_time() {
        assert_eq!(format_time(now()), "2025-02-01 00:30:00");
        assert_eq!(parse_time("2025-02-01 00:30:00"), Some(now()));
        assert_eq!(parse_time("2025-02-01T00:30:00"), None);
    }

    #[test]
    fn golden_page_pay_url() {
        let no = out_trade_no();
        let request = alipay()
            .pay_request(Method::PagePay, &trade(&no), &callbacks(), now())
            .unwrap();
        let content = sign_content(iter_params(request.params()), &["sign"]);
        assert_eq!(content, PAGE_PAY_CONTENT);
        assert_eq!(request.params()["sign"], PAGE_PAY_SIGN);
        assert_eq!(
            alipay()
                .page_pay_url(&trade(&no), &callbacks(), now())
                .unwrap(),
            PAGE_PAY_URL
        );
    }

    #[test]
    fn a_pay_url_decodes_back_to_the_signed_parameters() {
        let no = out_trade_no();
        let url = alipay()
            .page_pay_url(&trade(&no), &callbacks(), now())
            .unwrap();
        let query = url
            .strip_prefix("https://openapi.alipay.com/gateway.do?")
            .unwrap();
        let params = decode_form(query.as_bytes()).unwrap();
        verify_request(&fixtures::alipay_app_private().public_key(), &params).unwrap();
        assert!(params["biz_content"].contains(r#""subject":"iPhone 15 订单 a+b 100%""#));
    }

    #[test]
    fn the_wap_page_is_quick_wap_way() {
        let no = out_trade_no();
        let request = alipay()
            .pay_request(Method::WapPay, &trade(&no), &callbacks(), now())
            .unwrap();
        assert_eq!(request.params()["method"], "alipay.trade.wap.pay");
        assert!(biz_content(&request).contains(r#""product_code":"QUICK_WAP_WAY""#));
        let url = alipay()
            .wap_pay_url(&trade(&no), &callbacks(), now())
            .unwrap();
        assert!(url.starts_with("https://openapi.alipay.com/gateway.do?app_id="));
        assert!(url.contains("method=alipay.trade.wap.pay"));
    }

    #[test]
    fn server_calls_are_signed_forms_with_their_biz_content() {
        let alipay = alipay();
        let no = out_trade_no();
        let refund_no = RefundNo::new("0193a5b27c4d7e8f9a0b1c2d3e4f5a6b-r1").unwrap();
        let precreate = alipay.precreate(&trade(&no), NOTIFY_URL, now()).unwrap();
        let cases = [
            (
                &precreate,
                "alipay.trade.precreate",
                r#"{"out_trade_no":"0193a5b27c4d7e8f9a0b1c2d3e4f5a6b","total_amount":"9999.00","subject":"iPhone 15 订单 a+b 100%","time_expire":"2025-02-01 00:45:00"}"#,
            ),
            (
                &alipay.query(&no, now()).unwrap(),
                "alipay.trade.query",
                r#"{"out_trade_no":"0193a5b27c4d7e8f9a0b1c2d3e4f5a6b"}"#,
            ),
            (
                &alipay.close(&no, now()).unwrap(),
                "alipay.trade.close",
                r#"{"out_trade_no":"0193a5b27c4d7e8f9a0b1c2d3e4f5a6b"}"#,
            ),
            (
                &alipay.refund(&no, 999_900, &refund_no, now()).unwrap(),
                "alipay.trade.refund",
                r#"{"out_trade_no":"0193a5b27c4d7e8f9a0b1c2d3e4f5a6b","refund_amount":"9999.00","out_request_no":"0193a5b27c4d7e8f9a0b1c2d3e4f5a6b-r1"}"#,
            ),
        ];
        let app_public_key = fixtures::alipay_app_private().public_key();
        for (request, method, content) in cases {
            assert_eq!(request.params()["method"], method);
            assert_eq!(request.method().name(), method);
            assert_eq!(biz_content(request), content);
            for (name, value) in [
                ("app_id", APP_ID),
                ("format", "JSON"),
                ("charset", "utf-8"),
                ("sign_type", "RSA2"),
                ("version", "1.0"),
                ("timestamp", "2025-02-01 00:30:00"),
            ] {
                assert_eq!(request.params()[name], value, "{method} {name}");
            }
            let decoded = decode_form(request.form_body().as_bytes()).unwrap();
            assert_eq!(&decoded, request.params());
            verify_request(&app_public_key, &decoded).unwrap();
        }
        assert_eq!(precreate.params()["notify_url"], NOTIFY_URL);
        assert!(!precreate.params().contains_key("return_url"));
        assert!(!cases[1].0.params().contains_key("notify_url"));
    }

    #[test]
    fn a_request_that_alipay_would_refuse_is_not_built() {
        let alipay = alipay();
        let no = out_trade_no();
        let mut bad = trade(&no);
        bad.amount_fen = 0;
        assert_eq!(
            alipay.page_pay_url(&bad, &callbacks(), now()),
            Err(RequestError::Amount(AmountError::OutOfRange(0)))
        );
        bad = trade(&no);
        bad.subject = "";
        assert_eq!(
            alipay.page_pay_url(&bad, &callbacks(), now()),
            Err(RequestError::Subject)
        );
        let long = "订".repeat(257);
        bad.subject = &long;
        assert_eq!(
            alipay.page_pay_url(&bad, &callbacks(), now()),
            Err(RequestError::Subject)
        );
        let with_query = Callbacks {
            notify_url: "https://shop.example.com/notify?payment=1",
            return_url: None,
        };
        assert_eq!(
            alipay.page_pay_url(&trade(&no), &with_query, now()),
            Err(RequestError::CallbackUrl("notify_url"))
        );
        let plain_http = Callbacks {
            notify_url: NOTIFY_URL,
            return_url: Some("http://shop.example.com/paid"),
        };
        assert_eq!(
            alipay.page_pay_url(&trade(&no), &plain_http, now()),
            Err(RequestError::CallbackUrl("return_url"))
        );
        let refund_no = RefundNo::new("r1").unwrap();
        assert!(matches!(
            alipay.refund(&no, MAX_FEN + 1, &refund_no, now()),
            Err(RequestError::Amount(_))
        ));
    }

    #[test]
    fn the_sign_content_drops_empty_values_and_sorts_by_bytes() {
        let params = [
            ("b", "2"),
            ("a", "1"),
            ("B", "3"),
            ("sign", "x"),
            ("empty", ""),
            ("a_b", "4"),
        ];
        assert_eq!(sign_content(params, &["sign"]), "B=3&a=1&a_b=4&b=2");
    }

    #[test]
    fn methods_name_their_response_member() {
        assert_eq!(Method::Query.response_key(), "alipay_trade_query_response");
        assert_eq!(
            Method::PagePay.response_key(),
            "alipay_trade_page_pay_response"
        );
        for method in Method::ALL {
            assert_eq!(Method::from_name(method.name()), Some(method));
        }
        assert_eq!(Method::from_name("alipay.trade.pay"), None);
    }

    fn query_answer(content: &str, sign: &str) -> String {
        format!(r#"{{"alipay_trade_query_response":{content},"sign":"{sign}"}}"#)
    }

    #[test]
    fn golden_query_answer_verifies_over_its_raw_bytes() {
        let answer = alipay()
            .read_query(query_answer(QUERY_CONTENT, QUERY_SIGN).as_bytes())
            .unwrap();
        assert_eq!(
            answer,
            QueriedTrade {
                trade_no: "2025020122001400000000000001".into(),
                out_trade_no: TRADE_NO.into(),
                trade_status: TradeStatus::TradeSuccess,
                total_amount_fen: 999_900,
            }
        );
        // Members around the signed value may come in any order and spacing.
        let reordered = format!(
            "{{ \"sign\" : \"{QUERY_SIGN}\",\n  \"alipay_trade_query_response\" : {QUERY_CONTENT} }}"
        );
        alipay().read_query(reordered.as_bytes()).unwrap();
    }

    #[test]
    fn a_re_serialised_answer_does_not_verify() {
        // The same JSON value written differently: `\/` unescaped, `\u5f20`
        // decoded. A verifier that re-serialises would see these bytes.
        let value: serde_json::Value = serde_json::from_str(QUERY_CONTENT).unwrap();
        let reserialised = serde_json::to_string(&value).unwrap();
        assert_ne!(reserialised, QUERY_CONTENT);
        assert_eq!(
            alipay().read_query(query_answer(&reserialised, QUERY_SIGN).as_bytes()),
            Err(ResponseError::BadSignature)
        );
        let tampered = QUERY_CONTENT.replace("9999.00", "0.01");
        assert_eq!(
            alipay().read_query(query_answer(&tampered, QUERY_SIGN).as_bytes()),
            Err(ResponseError::BadSignature)
        );
    }

    #[test]
    fn a_sign_written_with_escaped_slashes_is_read_as_json() {
        let escaped = QUERY_SIGN.replace('/', "\\/");
        assert_ne!(escaped, QUERY_SIGN);
        alipay()
            .read_query(query_answer(QUERY_CONTENT, &escaped).as_bytes())
            .unwrap();
    }

    fn signed(method: Method, content: &str) -> String {
        signed_response(&fixtures::alipay_platform_private(), method, content).unwrap()
    }

    const NOT_EXIST: &str = r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_NOT_EXIST","sub_msg":"交易不存在","out_trade_no":"0193a5b27c4d7e8f9a0b1c2d3e4f5a6b"}"#;

    #[test]
    fn a_query_of_a_trade_nobody_opened_is_a_distinguishable_refusal() {
        let Err(ResponseError::Refused(refusal)) =
            alipay().read_query(signed(Method::Query, NOT_EXIST).as_bytes())
        else {
            panic!("expected a verified refusal");
        };
        assert!(refusal.is_trade_not_exist());
        assert!(!refusal.is_trade_status_error());
        assert_eq!(
            refusal.to_string(),
            "40004 Business Failed (ACQ.TRADE_NOT_EXIST: 交易不存在)"
        );
    }

    #[test]
    fn a_close_of_a_paid_trade_is_a_distinguishable_refusal() {
        let content = r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_STATUS_ERROR","sub_msg":"交易状态不合法"}"#;
        let Err(ResponseError::Refused(refusal)) =
            alipay().read_close(signed(Method::Close, content).as_bytes())
        else {
            panic!("expected a verified refusal");
        };
        assert!(refusal.is_trade_status_error());
    }

    #[test]
    fn unsigned_answers_are_never_believed() {
        let unsigned_error = format!(r#"{{"alipay_trade_query_response":{NOT_EXIST}}}"#);
        let Err(ResponseError::UnsignedRefusal(refusal)) =
            alipay().read_query(unsigned_error.as_bytes())
        else {
            panic!("expected an unsigned refusal");
        };
        assert!(refusal.is_trade_not_exist());
        let unsigned_success = format!(r#"{{"alipay_trade_query_response":{QUERY_CONTENT}}}"#);
        assert_eq!(
            alipay().read_query(unsigned_success.as_bytes()),
            Err(ResponseError::Unsigned)
        );
        assert_eq!(
            alipay().read_query(query_answer(QUERY_CONTENT, "").as_bytes()),
            Err(ResponseError::Unsigned)
        );
    }

    #[test]
    fn an_answer_signed_by_another_key_is_forged() {
        let forged = signed_response(
            &fixtures::alipay_app_private(),
            Method::Query,
            QUERY_CONTENT,
        )
        .unwrap();
        assert_eq!(
            alipay().read_query(forged.as_bytes()),
            Err(ResponseError::BadSignature)
        );
    }

    #[test]
    fn an_error_response_member_is_read_when_alipay_could_not_route_the_call() {
        let content = r#"{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-app-id","sub_msg":"无效的AppID参数"}"#;
        let sign = fixtures::alipay_platform_private()
            .sign_base64(content.as_bytes())
            .unwrap();
        let body = format!(r#"{{"error_response":{content},"sign":"{sign}"}}"#);
        let Err(ResponseError::Refused(refusal)) = alipay().read_query(body.as_bytes()) else {
            panic!("expected a verified refusal");
        };
        assert_eq!(refusal.sub_code.as_deref(), Some("isv.invalid-app-id"));
    }

    #[test]
    fn answers_that_are_not_alipay_s_are_malformed() {
        let twice = format!(
            r#"{{"alipay_trade_query_response":{NOT_EXIST},"alipay_trade_query_response":{QUERY_CONTENT},"sign":"{QUERY_SIGN}"}}"#
        );
        for body in [
            "".to_owned(),
            "<html>502</html>".to_owned(),
            "[]".to_owned(),
            format!(r#"{{"alipay_trade_close_response":{QUERY_CONTENT},"sign":"{QUERY_SIGN}"}}"#),
            format!(r#"{{"alipay_trade_query_response":{QUERY_CONTENT},"sign":7}}"#),
            twice,
        ] {
            assert!(
                matches!(
                    alipay().read_query(body.as_bytes()),
                    Err(ResponseError::Malformed(_))
                ),
                "{body}"
            );
        }
        assert!(matches!(
            alipay().read_query(&[0xff, 0xfe]),
            Err(ResponseError::Malformed(_))
        ));
    }

    #[test]
    fn typed_answers_for_precreate_and_refund() {
        let precreated = alipay()
            .read_precreate(
                signed(
                    Method::Precreate,
                    r#"{"code":"10000","msg":"Success","out_trade_no":"0193a5b27c4d7e8f9a0b1c2d3e4f5a6b","qr_code":"https:\/\/qr.alipay.com\/bax03431ljhokirwl38f00a7"}"#,
                )
                .as_bytes(),
            )
            .unwrap();
        assert_eq!(
            precreated.qr_code,
            "https://qr.alipay.com/bax03431ljhokirwl38f00a7"
        );
        let refunded = alipay()
            .read_refund(
                signed(
                    Method::Refund,
                    r#"{"code":"10000","msg":"Success","buyer_logon_id":"abc***@example.com","fund_change":"Y","gmt_refund_pay":"2025-02-01 01:00:00","out_trade_no":"0193a5b27c4d7e8f9a0b1c2d3e4f5a6b","refund_fee":"9999.00","send_back_fee":"9999.00","trade_no":"2025020122001400000000000001"}"#,
                )
                .as_bytes(),
            )
            .unwrap();
        assert!(refunded.fund_change);
        assert_eq!(refunded.refund_fee_fen, 999_900);
        let closed = alipay()
            .read_close(
                signed(
                    Method::Close,
                    r#"{"code":"10000","msg":"Success","out_trade_no":"0193a5b27c4d7e8f9a0b1c2d3e4f5a6b","trade_no":"2025020122001400000000000001"}"#,
                )
                .as_bytes(),
            )
            .unwrap();
        assert_eq!(closed.out_trade_no.as_deref(), Some(TRADE_NO));
        let odd_amount = r#"{"code":"10000","msg":"Success","trade_no":"1","out_trade_no":"0193a5b27c4d7e8f9a0b1c2d3e4f5a6b","trade_status":"TRADE_SUCCESS","total_amount":"9999.001"}"#;
        assert!(matches!(
            alipay().read_query(signed(Method::Query, odd_amount).as_bytes()),
            Err(ResponseError::Malformed(_))
        ));
    }

    #[test]
    fn golden_notification_verifies_decoded_once() {
        let params = decode_form(NOTIFY_BODY.as_bytes()).unwrap();
        assert_eq!(params["subject"], "a+b c%20");
        assert_eq!(
            sign_content(iter_params(&params), &["sign", "sign_type"]),
            NOTIFY_CONTENT
        );
        assert_eq!(params["sign"], NOTIFY_SIGN);
        let notification = alipay()
            .verify_notification(NOTIFY_BODY.as_bytes())
            .unwrap();
        assert_eq!(
            notification,
            Notification {
                notify_id: "2025020100222003115000000000000001".into(),
                notify_type: Some("trade_status_sync".into()),
                app_id: APP_ID.into(),
                seller_id: Some(SELLER_ID.into()),
                out_trade_no: TRADE_NO.into(),
                trade_no: "2025020122001400000000000001".into(),
                trade_status: TradeStatus::TradeSuccess,
                total_amount_fen: 999_900,
                gmt_payment: Some(at("2025-01-31T16:31:15Z")),
                refund_fee_fen: None,
            }
        );
    }

    #[test]
    fn a_notification_decoded_twice_or_tampered_does_not_verify() {
        // `%2520` decoded twice would be a space; the signature covers `%20`.
        let altered_subject = NOTIFY_BODY.replace("c%2520", "c%20");
        let tampered_amount = NOTIFY_BODY.replace("total_amount=9999.00", "total_amount=0.01");
        let wrong_app = NOTIFY_BODY.replace("app_id=2021000000000001", "app_id=2021000000000002");
        for body in [altered_subject, tampered_amount, wrong_app] {
            assert_ne!(body, NOTIFY_BODY);
            assert_eq!(
                alipay().verify_notification(body.as_bytes()),
                Err(NotificationError::BadSignature)
            );
        }
    }

    #[test]
    fn an_unsigned_or_oddly_signed_notification_is_refused() {
        let unsigned = NOTIFY_BODY
            .split('&')
            .filter(|f| !f.starts_with("sign="))
            .collect::<Vec<_>>()
            .join("&");
        assert_eq!(
            alipay().verify_notification(unsigned.as_bytes()),
            Err(NotificationError::Unsigned)
        );
        let rsa1 = NOTIFY_BODY.replace("sign_type=RSA2", "sign_type=RSA");
        assert_eq!(
            alipay().verify_notification(rsa1.as_bytes()),
            Err(NotificationError::SignType("RSA".into()))
        );
        let gbk = NOTIFY_BODY.replace("charset=utf-8", "charset=GBK");
        assert_eq!(
            alipay().verify_notification(gbk.as_bytes()),
            Err(NotificationError::Charset("GBK".into()))
        );
        let twice = format!("{NOTIFY_BODY}&total_amount=0.01");
        assert_eq!(
            alipay().verify_notification(twice.as_bytes()),
            Err(NotificationError::Form(FormError::Duplicate(
                "total_amount".into()
            )))
        );
        // The sign_type is not signed: it may be absent.
        let no_type = NOTIFY_BODY.replace("sign_type=RSA2&", "");
        alipay().verify_notification(no_type.as_bytes()).unwrap();
    }

    pub(in crate::providers::alipay) fn notification_fields() -> Params {
        decode_form(NOTIFY_BODY.as_bytes()).unwrap()
    }

    pub(in crate::providers::alipay) fn notify(
        fields: &Params,
    ) -> Result<Notification, NotificationError> {
        let body = signed_notification(&fixtures::alipay_platform_private(), fields).unwrap();
        alipay().verify_notification(body.as_bytes())
    }

    #[test]
    fn the_fake_s_notifications_are_signed_as_alipay_signs() {
        assert_eq!(
            notify(&notification_fields()).unwrap().total_amount_fen,
            999_900
        );
        let by_the_app =
            signed_notification(&fixtures::alipay_app_private(), &notification_fields()).unwrap();
        assert_eq!(
            alipay().verify_notification(by_the_app.as_bytes()),
            Err(NotificationError::BadSignature)
        );
    }

    #[test]
    fn only_trade_success_and_trade_finished_mean_paid() {
        for (status, paid) in [
            ("WAIT_BUYER_PAY", false),
            ("TRADE_SUCCESS", true),
            ("TRADE_FINISHED", true),
            ("TRADE_CLOSED", false),
        ] {
            let mut fields = notification_fields();
            fields.insert("trade_status".into(), status.into());
            assert_eq!(
                notify(&fields).unwrap().trade_status.is_paid(),
                paid,
                "{status}"
            );
        }
        let mut fields = notification_fields();
        fields.insert("trade_status".into(), "TRADE_PENDING".into());
        assert_eq!(
            notify(&fields),
            Err(NotificationError::Invalid {
                field: "trade_status",
                value: "TRADE_PENDING".into()
            })
        );
    }

    #[test]
    fn refund_notifications_are_read_and_missing_fields_named() {
        let mut fields = notification_fields();
        fields.insert("refund_fee".into(), "9999.00".into());
        fields.insert("trade_status".into(), "TRADE_CLOSED".into());
        let notification = notify(&fields).unwrap();
        assert_eq!(notification.refund_fee_fen, Some(999_900));
        assert!(!notification.trade_status.is_paid());
        for required in [
            "notify_id",
            "app_id",
            "out_trade_no",
            "trade_no",
            "trade_status",
            "total_amount",
        ] {
            let mut fields = notification_fields();
            fields.remove(required);
            assert_eq!(notify(&fields), Err(NotificationError::Missing(required)));
        }
        let mut fields = notification_fields();
        fields.insert("total_amount".into(), "9,999.00".into());
        assert!(matches!(
            notify(&fields),
            Err(NotificationError::Invalid {
                field: "total_amount",
                ..
            })
        ));
    }

    #[test]
    fn settings_alipay_would_refuse_are_refused() {
        let config = |app_id: &str, gateway_url: &str, seller_id: Option<&str>| AlipayConfig {
            app_id: app_id.into(),
            app_private_key: fixtures::alipay_app_private(),
            alipay_public_key: fixtures::alipay_platform_public(),
            gateway_url: gateway_url.into(),
            seller_id: seller_id.map(Into::into),
        };
        assert_eq!(
            Alipay::new(config("", PRODUCTION_GATEWAY, None)).unwrap_err(),
            ConfigError::AppId
        );
        assert_eq!(
            Alipay::new(config("app 1", PRODUCTION_GATEWAY, None)).unwrap_err(),
            ConfigError::AppId
        );
        assert_eq!(
            Alipay::new(config(
                APP_ID,
                "https://openapi.alipay.com/gateway.do?charset=utf-8",
                None
            ))
            .unwrap_err(),
            ConfigError::GatewayUrl
        );
        assert_eq!(
            Alipay::new(config(APP_ID, "openapi.alipay.com", None)).unwrap_err(),
            ConfigError::GatewayUrl
        );
        assert_eq!(
            Alipay::new(config(APP_ID, SANDBOX_GATEWAY, Some("seller"))).unwrap_err(),
            ConfigError::SellerId
        );
        Alipay::new(config(APP_ID, "http://127.0.0.1:9/gateway.do", None)).unwrap();
    }

    #[test]
    fn debug_shows_no_key() {
        let text = format!("{:?}", alipay());
        assert!(text.contains("PrivateKey(2048-bit RSA)"), "{text}");
        assert!(!text.contains("MII"), "{text}");
    }
}

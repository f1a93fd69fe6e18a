//! WeChat Pay API v3: JSON over HTTPS, each request signed by the merchant
//! (`Authorization: WECHATPAY2-SHA256-RSA2048 ...`), each answer and
//! notification signed by WeChat Pay (`Wechatpay-*` headers), and each
//! notification's content encrypted with the merchant's APIv3 key
//! (AES-256-GCM).
//!
//! Signatures are SHA256withRSA in base64. A request's covers
//! `METHOD\nPATH_AND_QUERY\ntimestamp\nnonce\nbody\n` (the query string is
//! part of the path; the body is `""` for a GET); an answer's or a
//! notification's covers `timestamp\nnonce\nbody\n` over the raw body bytes.

use std::fmt;
use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::providers::keys::{PrivateKey, PublicKey, SignError, SignatureError};
use crate::providers::{Mismatch, OutTradeNo, RefundNo, beijing, expect_field, is_callback_url};

/// WeChat Pay's API host.
pub const PRODUCTION_BASE_URL: &str = "https://api.mch.weixin.qq.com";
/// The scheme of the `Authorization` header.
pub const AUTHORIZATION_SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";
pub const HEADER_TIMESTAMP: &str = "Wechatpay-Timestamp";
pub const HEADER_NONCE: &str = "Wechatpay-Nonce";
pub const HEADER_SIGNATURE: &str = "Wechatpay-Signature";
pub const HEADER_SERIAL: &str = "Wechatpay-Serial";
/// WeChat Pay sends signatures starting with this to check that merchants
/// verify them: such a signature must fail.
pub const SIGNTEST_PREFIX: &str = "WECHATPAY/SIGNTEST/";
/// A signed timestamp this far (seconds) from now, or farther, is refused.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;
/// The only currency of a domestic merchant.
pub const CURRENCY: &str = "CNY";
/// The one algorithm of notification resources.
pub const RESOURCE_ALGORITHM: &str = "AEAD_AES_256_GCM";
/// The most fen one trade can hold (the API's `int`).
pub const MAX_FEN: i64 = i32::MAX as i64;

/// The APIv3 key: 32 bytes set in the merchant platform, used as they are
/// (their ASCII) as the AES-256 key. Its `Debug` shows nothing.
#[derive(Clone)]
pub struct ApiV3Key([u8; 32]);

/// An APIv3 key that is not 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the APIv3 key must be exactly 32 bytes (it has {0})")]
pub struct ApiV3KeyLength(pub usize);

impl ApiV3Key {
    pub fn new(key: &str) -> Result<Self, ApiV3KeyLength> {
        <[u8; 32]>::try_from(key.as_bytes())
            .map(Self)
            .map_err(|_| ApiV3KeyLength(key.len()))
    }
}

impl fmt::Debug for ApiV3Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiV3Key(..)")
    }
}

/// A public key WeChat Pay signs with, and the id its `Wechatpay-Serial`
/// names it by: a WeChat Pay public key id (`PUB_KEY_ID_...`) or a platform
/// certificate's serial number. Both may be configured during a migration.
#[derive(Debug, Clone)]
pub struct PlatformKey {
    pub id: String,
    pub key: PublicKey,
}

/// What shop needs to talk to WeChat Pay as one merchant.
#[derive(Debug)]
pub struct WechatPayConfig {
    /// The merchant id (`mchid`), digits.
    pub mch_id: String,
    /// The application (official account, mini program, app) id: `wx...`.
    pub app_id: String,
    /// The serial number of the merchant's API certificate, which names the
    /// merchant private key to WeChat Pay.
    pub merchant_serial_no: String,
    /// `apiclient_key.pem`: it signs every request.
    pub merchant_private_key: PrivateKey,
    pub apiv3_key: ApiV3Key,
    /// The keys answers and notifications may be signed with.
    pub platform_keys: Vec<PlatformKey>,
    /// [`PRODUCTION_BASE_URL`] or a fake's.
    pub base_url: String,
}

/// A setting WeChat Pay would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("the WeChat Pay merchant id must be digits")]
    MchId,
    #[error("the WeChat Pay app id must be letters and digits")]
    AppId,
    #[error("the merchant serial number must be letters and digits")]
    MerchantSerialNo,
    #[error("a WeChat Pay public key id must be letters, digits and underscores")]
    PlatformKeyId,
    #[error("no WeChat Pay public key is configured")]
    NoPlatformKey,
    #[error("the WeChat Pay base URL must be http(s), with no path or query string")]
    BaseUrl,
}

/// The WeChat Pay protocol for one merchant: builds and signs requests,
/// verifies answers and notifications, decrypts notifications.
#[derive(Debug)]
pub struct WechatPay {
    config: WechatPayConfig,
}

fn is_token(text: &str, extra: &[u8]) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

impl WechatPay {
    /// The protocol for one merchant, once its settings are checked (every
    /// value that goes into the `Authorization` header is a plain token).
    pub fn new(config: WechatPayConfig) -> Result<Self, ConfigError> {
        if !is_token(&config.mch_id, b"") || !config.mch_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConfigError::MchId);
        }
        if !is_token(&config.app_id, b"_") {
            return Err(ConfigError::AppId);
        }
        if !is_token(&config.merchant_serial_no, b"") {
            return Err(ConfigError::MerchantSerialNo);
        }
        if config.platform_keys.is_empty() {
            return Err(ConfigError::NoPlatformKey);
        }
        if !config.platform_keys.iter().all(|k| is_token(&k.id, b"_")) {
            return Err(ConfigError::PlatformKeyId);
        }
        let url = config.base_url.trim_end_matches('/');
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        let plain_host = rest.is_some_and(|host| {
            !host.is_empty()
                && !host.contains(['/', '?', '#'])
                && host.bytes().all(|b| b.is_ascii_graphic())
        });
        if !plain_host {
            return Err(ConfigError::BaseUrl);
        }
        Ok(Self { config })
    }

    pub fn config(&self) -> &WechatPayConfig {
        &self.config
    }
}

/// The HTTP methods of the calls shop makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
}

impl HttpMethod {
    pub const fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
        }
    }
}

/// A call to make: sign it with [`WechatPay::authorization`] just before
/// sending, and send `body` byte for byte (JSON, `Content-Type:
/// application/json`; nothing for a GET).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRequest {
    pub method: HttpMethod,
    /// The path with its query string: both are signed.
    pub path_and_query: String,
    pub body: String,
}

impl ApiRequest {
    pub fn url(&self, base_url: &str) -> String {
        format!("{}{}", base_url.trim_end_matches('/'), self.path_and_query)
    }
}

/// A trade to pay: the payment as WeChat Pay sees it.
#[derive(Debug, Clone, Copy)]
pub struct Trade<'a> {
    pub out_trade_no: &'a OutTradeNo,
    /// In fen; the currency is always CNY.
    pub amount_fen: i64,
    /// What the buyer sees (1 to 127 characters).
    pub description: &'a str,
    /// When the trade stops taking payment: the order's deadline.
    pub time_expire: DateTime<Utc>,
    /// The notify route (`https`, no query string).
    pub notify_url: &'a str,
}

/// A request shop cannot build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the description must be 1 to 127 characters")]
    Description,
    #[error("{field} of {fen} fen is outside 1 to {max}")]
    Amount {
        field: &'static str,
        fen: i64,
        max: i64,
    },
    #[error("notify_url must be an https URL without a query string")]
    NotifyUrl,
    #[error("the body could not be written: {0}")]
    Body(String),
}

#[derive(Serialize)]
struct CreateBody<'a> {
    appid: &'a str,
    mchid: &'a str,
    description: &'a str,
    out_trade_no: &'a str,
    time_expire: String,
    notify_url: &'a str,
    amount: CreateAmount,
    #[serde(skip_serializing_if = "Option::is_none")]
    scene_info: Option<SceneInfo>,
}

#[derive(Serialize)]
struct CreateAmount {
    total: i64,
    currency: &'static str,
}

#[derive(Serialize)]
struct SceneInfo {
    payer_client_ip: String,
    h5_info: H5Info,
}

#[derive(Serialize)]
struct H5Info {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct CloseBody<'a> {
    mchid: &'a str,
}

#[derive(Serialize)]
struct RefundBody<'a> {
    out_trade_no: &'a str,
    out_refund_no: &'a str,
    amount: RefundBodyAmount,
}

#[derive(Serialize)]
struct RefundBodyAmount {
    refund: i64,
    total: i64,
    currency: &'static str,
}

/// `time_expire` as WeChat Pay takes it: RFC 3339 in Beijing time,
/// `2025-02-01T00:45:00+08:00`.
pub fn format_time(at: DateTime<Utc>) -> String {
    beijing(at).to_rfc3339_opts(SecondsFormat::Secs, false)
}

fn check_amount(field: &'static str, fen: i64, max: i64) -> Result<(), RequestError> {
    if (1..=max).contains(&fen) {
        Ok(())
    } else {
        Err(RequestError::Amount { field, fen, max })
    }
}

fn to_json(body: &impl Serialize) -> Result<String, RequestError> {
    serde_json::to_string(body).map_err(|error| RequestError::Body(error.to_string()))
}

impl WechatPay {
    /// `POST /v3/pay/transactions/native`: a QR code (answers `code_url`).
    pub fn native(&self, trade: &Trade<'_>) -> Result<ApiRequest, RequestError> {
        self.create("/v3/pay/transactions/native", trade, None)
    }

    /// `POST /v3/pay/transactions/h5`: a page for a phone's browser outside
    /// WeChat (answers `h5_url`). WeChat Pay wants the buyer's IP address.
    pub fn h5(
        &self,
        trade: &Trade<'_>,
        payer_client_ip: IpAddr,
    ) -> Result<ApiRequest, RequestError> {
        let scene = SceneInfo {
            payer_client_ip: payer_client_ip.to_string(),
            h5_info: H5Info { kind: "Wap" },
        };
        self.create("/v3/pay/transactions/h5", trade, Some(scene))
    }

    fn create(
        &self,
        path: &str,
        trade: &Trade<'_>,
        scene_info: Option<SceneInfo>,
    ) -> Result<ApiRequest, RequestError> {
        if !(1..=127).contains(&trade.description.chars().count()) {
            return Err(RequestError::Description);
        }
        check_amount("amount.total", trade.amount_fen, MAX_FEN)?;
        if !is_callback_url(trade.notify_url) {
            return Err(RequestError::NotifyUrl);
        }
        let body = CreateBody {
            appid: &self.config.app_id,
            mchid: &self.config.mch_id,
            description: trade.description,
            out_trade_no: trade.out_trade_no.as_str(),
            time_expire: format_time(trade.time_expire),
            notify_url: trade.notify_url,
            amount: CreateAmount {
                total: trade.amount_fen,
                currency: CURRENCY,
            },
            scene_info,
        };
        Ok(ApiRequest {
            method: HttpMethod::Post,
            path_and_query: path.to_owned(),
            body: to_json(&body)?,
        })
    }

    /// `GET /v3/pay/transactions/out-trade-no/{no}?mchid=...`: where a trade
    /// stands (answers a [`Transaction`]; an unknown trade is a 404
    /// `ORDER_NOT_EXIST`).
    pub fn query(&self, out_trade_no: &OutTradeNo) -> ApiRequest {
        ApiRequest {
            method: HttpMethod::Get,
            path_and_query: format!(
                "/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={}",
                self.config.mch_id
            ),
            body: String::new(),
        }
    }

    /// `POST /v3/pay/transactions/out-trade-no/{no}/close`: answers 204.
    pub fn close(&self, out_trade_no: &OutTradeNo) -> Result<ApiRequest, RequestError> {
        Ok(ApiRequest {
            method: HttpMethod::Post,
            path_and_query: format!("/v3/pay/transactions/out-trade-no/{out_trade_no}/close"),
            body: to_json(&CloseBody {
                mchid: &self.config.mch_id,
            })?,
        })
    }

    /// `POST /v3/refund/domestic/refunds`: `refund_fen` of a trade of
    /// `total_fen`. `out_refund_no` refunds at most once, however often sent.
    pub fn refund(
        &self,
        out_trade_no: &OutTradeNo,
        out_refund_no: &RefundNo,
        refund_fen: i64,
        total_fen: i64,
    ) -> Result<ApiRequest, RequestError> {
        check_amount("amount.total", total_fen, MAX_FEN)?;
        check_amount("amount.refund", refund_fen, total_fen)?;
        let body = RefundBody {
            out_trade_no: out_trade_no.as_str(),
            out_refund_no: out_refund_no.as_str(),
            amount: RefundBodyAmount {
                refund: refund_fen,
                total: total_fen,
                currency: CURRENCY,
            },
        };
        Ok(ApiRequest {
            method: HttpMethod::Post,
            path_and_query: "/v3/refund/domestic/refunds".to_owned(),
            body: to_json(&body)?,
        })
    }

    /// The `Authorization` header of `request`, signed now (`timestamp` in
    /// Unix seconds) with a fresh `nonce` ([`new_nonce`]).
    pub fn authorization(
        &self,
        request: &ApiRequest,
        timestamp: i64,
        nonce: &str,
    ) -> Result<String, SignError> {
        let message = request_message(
            request.method.as_str(),
            &request.path_and_query,
            &timestamp.to_string(),
            nonce,
            &request.body,
        );
        let signature = self
            .config
            .merchant_private_key
            .sign_base64(message.as_bytes())?;
        Ok(Authorization {
            mchid: self.config.mch_id.clone(),
            nonce_str: nonce.to_owned(),
            timestamp: timestamp.to_string(),
            serial_no: self.config.merchant_serial_no.clone(),
            signature,
        }
        .to_string())
    }
}

/// The string a request's signature covers:
/// `METHOD\nPATH_AND_QUERY\ntimestamp\nnonce\nbody\n`.
pub fn request_message(
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &str,
) -> String {
    format!("{method}\n{path_and_query}\n{timestamp}\n{nonce}\n{body}\n")
}

/// The bytes an answer's or a notification's signature covers:
/// `timestamp\nnonce\nbody\n`, the body raw (an empty one gives
/// `timestamp\nnonce\n\n`).
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut message = format!("{timestamp}\n{nonce}\n").into_bytes();
    message.extend_from_slice(body);
    message.push(b'\n');
    message
}

/// A fresh request nonce: 32 random uppercase hex digits.
pub fn new_nonce() -> Result<String, SignError> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SignError)?;
    Ok(bytes.iter().map(|b| format!("{b:02X}")).collect())
}

/// The fields of an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub mchid: String,
    pub nonce_str: String,
    pub timestamp: String,
    pub serial_no: String,
    pub signature: String,
}

impl fmt::Display for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            r#"{AUTHORIZATION_SCHEME} mchid="{}",nonce_str="{}",timestamp="{}",serial_no="{}",signature="{}""#,
            self.mchid, self.nonce_str, self.timestamp, self.serial_no, self.signature
        )
    }
}

impl Authorization {
    /// Reads an `Authorization` header (what the fake WeChat Pay does with
    /// shop's requests): the scheme, then `name="value"` pairs in any order.
    pub fn parse(header: &str) -> Option<Self> {
        let params = header
            .strip_prefix(AUTHORIZATION_SCHEME)?
            .strip_prefix(' ')?;
        let mut fields: [Option<String>; 5] = Default::default();
        const NAMES: [&str; 5] = ["mchid", "nonce_str", "timestamp", "serial_no", "signature"];
        for pair in params.split(',') {
            let (name, value) = pair.trim().split_once('=')?;
            let value = value.strip_prefix('"')?.strip_suffix('"')?;
            let index = NAMES.iter().position(|n| *n == name)?;
            if fields[index].replace(value.to_owned()).is_some() {
                return None;
            }
        }
        let [mchid, nonce_str, timestamp, serial_no, signature] = fields;
        Some(Self {
            mchid: mchid?,
            nonce_str: nonce_str?,
            timestamp: timestamp?,
            serial_no: serial_no?,
            signature: signature?,
        })
    }

    /// Checks this header's signature over the request it came with.
    pub fn verify(
        &self,
        merchant_public_key: &PublicKey,
        method: &str,
        path_and_query: &str,
        body: &str,
    ) -> Result<(), SignatureError> {
        let message = request_message(
            method,
            path_and_query,
            &self.timestamp,
            &self.nonce_str,
            body,
        );
        merchant_public_key.verify_base64(message.as_bytes(), &self.signature)
    }
}

/// The `Wechatpay-*` headers of an answer or a notification, as received
/// (`None` when absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignatureHeaders<'a> {
    pub timestamp: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub serial: Option<&'a str>,
}

impl<'a> SignatureHeaders<'a> {
    /// The headers found by `lookup` (a header map's `get`, by name).
    pub fn from_lookup(lookup: impl Fn(&'static str) -> Option<&'a str>) -> Self {
        Self {
            timestamp: lookup(HEADER_TIMESTAMP),
            nonce: lookup(HEADER_NONCE),
            signature: lookup(HEADER_SIGNATURE),
            serial: lookup(HEADER_SERIAL),
        }
    }

    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// `Wechatpay-*` headers made by a signer (the fake WeChat Pay of the tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
    pub serial: String,
}

impl SignedHeaders {
    /// Signs `body` as WeChat Pay signs an answer or a notification.
    pub fn sign(
        key: &PrivateKey,
        serial: &str,
        timestamp: i64,
        nonce: &str,
        body: &[u8],
    ) -> Result<Self, SignError> {
        let timestamp = timestamp.to_string();
        let signature = key.sign_base64(&response_message(&timestamp, nonce, body))?;
        Ok(Self {
            timestamp,
            nonce: nonce.to_owned(),
            signature,
            serial: serial.to_owned(),
        })
    }

    /// Name and value of each header, to set on a response or request.
    pub fn pairs(&self) -> [(&'static str, &str); 4] {
        [
            (HEADER_TIMESTAMP, &self.timestamp),
            (HEADER_NONCE, &self.nonce),
            (HEADER_SIGNATURE, &self.signature),
            (HEADER_SERIAL, &self.serial),
        ]
    }

    pub fn as_headers(&self) -> SignatureHeaders<'_> {
        SignatureHeaders {
            timestamp: Some(&self.timestamp),
            nonce: Some(&self.nonce),
            signature: Some(&self.signature),
            serial: Some(&self.serial),
        }
    }
}

/// Why a signed answer or notification is not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("Wechatpay-Timestamp is not a number of seconds")]
    BadTimestamp,
    #[error("Wechatpay-Timestamp is {skew_secs} s from now (the limit is 300 s)")]
    Stale { skew_secs: i64 },
    #[error("Wechatpay-Serial {0:?} names no configured WeChat Pay key")]
    UnknownSerial(String),
    #[error("a WECHATPAY/SIGNTEST/ probe signature, which must fail")]
    SignTest,
    #[error("the signature does not match: forged or altered")]
    BadSignature,
}

impl WechatPay {
    /// Verifies an answer or a notification: every `Wechatpay-*` header
    /// present (an unsigned message is forged), its timestamp less than
    /// 300 s from `now`, not a `WECHATPAY/SIGNTEST/` probe, its serial one of
    /// the configured keys, and the signature over
    /// `timestamp\nnonce\nbody\n` (the raw body) good.
    pub fn verify(
        &self,
        headers: &SignatureHeaders<'_>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), VerifyError> {
        let timestamp = present(headers.timestamp, HEADER_TIMESTAMP)?;
        let nonce = present(headers.nonce, HEADER_NONCE)?;
        let signature = present(headers.signature, HEADER_SIGNATURE)?;
        let serial = present(headers.serial, HEADER_SERIAL)?;
        if signature.starts_with(SIGNTEST_PREFIX) {
            return Err(VerifyError::SignTest);
        }
        let signed_at: i64 = timestamp
            .parse()
            .ok()
            .filter(|_| timestamp.bytes().all(|b| b.is_ascii_digit()))
            .ok_or(VerifyError::BadTimestamp)?;
        let skew_secs = now.timestamp().saturating_sub(signed_at);
        if skew_secs.saturating_abs() >= MAX_CLOCK_SKEW_SECS {
            return Err(VerifyError::Stale { skew_secs });
        }
        let key = self
            .config
            .platform_keys
            .iter()
            .find(|key| key.id == serial)
            .ok_or_else(|| VerifyError::UnknownSerial(serial.to_owned()))?;
        key.key
            .verify_base64(&response_message(timestamp, nonce, body), signature)
            .map_err(|_| VerifyError::BadSignature)
    }
}

/// A header's value, present and not blank.
fn present<'h>(value: Option<&'h str>, name: &'static str) -> Result<&'h str, VerifyError> {
    value
        .filter(|value| !value.trim().is_empty())
        .ok_or(VerifyError::MissingHeader(name))
}

/// An answer as received.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub status: u16,
    pub headers: SignatureHeaders<'a>,
    pub body: &'a [u8],
}

/// An error answer: `{"code": "...", "message": "..."}` with a 4xx or 5xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// The `code` of a query or close of a trade WeChat Pay does not know.
pub const ORDER_NOT_EXIST: &str = "ORDER_NOT_EXIST";

impl Refusal {
    /// The trade does not exist (404 `ORDER_NOT_EXIST`).
    pub fn is_order_not_exist(&self) -> bool {
        self.code == ORDER_NOT_EXIST
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {} {} {}", self.status, self.code, self.message)
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// What is wrong with an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error(transparent)]
    Signature(#[from] VerifyError),
    /// A verified refusal: believe it.
    #[error("WeChat Pay refused: {0}")]
    Refused(Refusal),
    /// A refusal nobody signed (a proxy's, a forger's, or one of WeChat Pay's
    /// own unsigned errors): an error, never a fact about the trade.
    #[error("WeChat Pay refused (unsigned): {0}")]
    UnsignedRefusal(Refusal),
    #[error("the answer is not what WeChat Pay sends: {0}")]
    Malformed(String),
}

/// The answer to a Native create.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CodeUrl {
    /// The content of the QR code to show (`weixin://wxpay/...`).
    pub code_url: String,
}

/// The answer to an H5 create.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct H5Url {
    /// Where to send the buyer's browser.
    pub h5_url: String,
}

/// Where a trade stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TradeState {
    /// Paid.
    Success,
    /// Paid, then (partly) refunded.
    Refund,
    /// Not paid (yet).
    Notpay,
    /// Closed unpaid.
    Closed,
    /// Revoked (payment-code trades).
    Revoked,
    /// The buyer is entering a password.
    Userpaying,
    /// The payment failed (bank refused, etc.).
    Payerror,
}

impl TradeState {
    /// `SUCCESS`: the money arrived (and no refund has begun).
    pub fn is_paid(self) -> bool {
        self == TradeState::Success
    }
}

/// A trade: the answer to a query, and the decrypted content of a payment
/// notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub appid: String,
    pub mchid: String,
    pub out_trade_no: String,
    /// WeChat Pay's number of the trade, once the buyer paid.
    pub transaction_id: Option<String>,
    pub trade_type: Option<String>,
    pub trade_state: TradeState,
    pub trade_state_desc: Option<String>,
    pub success_time: Option<DateTime<Utc>>,
    pub amount: Option<TransactionAmount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionAmount {
    /// What the trade was for, in fen.
    pub total: i64,
    pub payer_total: Option<i64>,
    pub currency: Option<String>,
    pub payer_currency: Option<String>,
}

/// What a trade must say to concern a payment.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub mchid: &'a str,
    pub appid: &'a str,
    pub out_trade_no: &'a OutTradeNo,
    pub total_fen: i64,
}

impl Transaction {
    /// Whether this genuine trade is the payment `expected` describes: same
    /// merchant, application, trade and amount (in CNY). The error names the
    /// first field that differs.
    pub fn check(&self, expected: &Expected<'_>) -> Result<(), Mismatch> {
        expect_field("mchid", expected.mchid, self.mchid.as_str())?;
        expect_field("appid", expected.appid, self.appid.as_str())?;
        expect_field(
            "out_trade_no",
            expected.out_trade_no.as_str(),
            self.out_trade_no.as_str(),
        )?;
        let total = self.amount.as_ref().map(|amount| amount.total);
        if total != Some(expected.total_fen) {
            return Err(Mismatch {
                field: "amount.total",
                expected: expected.total_fen.to_string(),
                actual: total.map(|total| total.to_string()).unwrap_or_default(),
            });
        }
        let currency = self.amount.as_ref().and_then(|a| a.currency.as_deref());
        expect_field("amount.currency", CURRENCY, currency.unwrap_or(CURRENCY))
    }
}

/// A refund's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefundStatus {
    /// Money returned.
    Success,
    /// Under way: ask again later.
    Processing,
    /// Closed without refunding.
    Closed,
    /// Stuck (the buyer's account is gone, say): needs a person.
    Abnormal,
}

/// The answer to a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub refund_id: String,
    pub out_refund_no: String,
    pub transaction_id: Option<String>,
    pub out_trade_no: Option<String>,
    pub status: RefundStatus,
    pub amount: Option<RefundAmount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundAmount {
    pub refund: i64,
    pub total: i64,
    pub currency: Option<String>,
}

impl WechatPay {
    /// The expected trade for [`Transaction::check`], with this merchant's
    /// ids.
    pub fn expected<'a>(&'a self, out_trade_no: &'a OutTradeNo, total_fen: i64) -> Expected<'a> {
        Expected {
            mchid: &self.config.mch_id,
            appid: &self.config.app_id,
            out_trade_no,
            total_fen,
        }
    }

    /// A 2xx answer, verified, read as `T`. An error answer is a
    /// [`ResponseError::Refused`] when signed and verified, an
    /// [`ResponseError::UnsignedRefusal`] when it carries no signature at all.
    pub fn read_answer<T: DeserializeOwned>(
        &self,
        answer: &Answer<'_>,
        now: DateTime<Utc>,
    ) -> Result<T, ResponseError> {
        self.verify_answer(answer, now)?;
        serde_json::from_slice(answer.body)
            .map_err(|error| ResponseError::Malformed(error.to_string()))
    }

    /// A 2xx answer with nothing to read (a close's 204), verified.
    pub fn read_empty_answer(
        &self,
        answer: &Answer<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), ResponseError> {
        self.verify_answer(answer, now)
    }

    pub fn read_native(
        &self,
        answer: &Answer<'_>,
        now: DateTime<Utc>,
    ) -> Result<CodeUrl, ResponseError> {
        self.read_answer(answer, now)
    }

    pub fn read_h5(&self, answer: &Answer<'_>, now: DateTime<Utc>) -> Result<H5Url, ResponseError> {
        self.read_answer(answer, now)
    }

    /// The answer to [`query`](Self::query). A trade WeChat Pay does not
    /// know is `Err(Refused(r))` with `r.is_order_not_exist()`.
    pub fn read_query(
        &self,
        answer: &Answer<'_>,
        now: DateTime<Utc>,
    ) -> Result<Transaction, ResponseError> {
        self.read_answer(answer, now)
    }

    pub fn read_refund(
        &self,
        answer: &Answer<'_>,
        now: DateTime<Utc>,
    ) -> Result<Refund, ResponseError> {
        self.read_answer(answer, now)
    }

    fn verify_answer(&self, answer: &Answer<'_>, now: DateTime<Utc>) -> Result<(), ResponseError> {
        if (200..300).contains(&answer.status) {
            return Ok(self.verify(&answer.headers, answer.body, now)?);
        }
        let body: Option<ErrorBody> = serde_json::from_slice(answer.body).ok();
        let refusal = Refusal {
            status: answer.status,
            code: body.as_ref().map(|b| b.code.clone()).unwrap_or_default(),
            message: body.map(|b| b.message).unwrap_or_default(),
        };
        if answer.headers.is_empty() {
            return Err(ResponseError::UnsignedRefusal(refusal));
        }
        self.verify(&answer.headers, answer.body, now)?;
        Err(ResponseError::Refused(refusal))
    }
}

/// A notification's envelope: `{id, create_time, event_type, resource_type,
/// resource, summary}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The same on every retry of one notification.
    pub id: String,
    pub create_time: String,
    /// `TRANSACTION.SUCCESS` for a payment; `REFUND.*` for refunds.
    pub event_type: String,
    pub resource_type: String,
    pub resource: EncryptedResource,
    #[serde(default)]
    pub summary: String,
}

/// The encrypted part of a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedResource {
    /// Always [`RESOURCE_ALGORITHM`].
    pub algorithm: String,
    /// Base64 of the ciphertext followed by the 16-byte GCM tag.
    pub ciphertext: String,
    /// Authenticated, not encrypted (`transaction`, say); may be empty.
    #[serde(default)]
    pub associated_data: String,
    /// 12 ASCII characters, used as the 12-byte GCM nonce.
    pub nonce: String,
    /// What the plaintext is: `transaction` or `refund`.
    #[serde(default)]
    pub original_type: String,
}

/// Why a resource could not be decrypted (or encrypted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error("resource algorithm {0:?} is not AEAD_AES_256_GCM")]
    Algorithm(String),
    #[error("the nonce must be 12 bytes")]
    Nonce,
    #[error("the ciphertext is not base64")]
    NotBase64,
    /// Wrong APIv3 key, or the ciphertext, tag or associated data altered.
    #[error("the resource does not decrypt: wrong APIv3 key, or altered")]
    Open,
    #[error("encryption failed")]
    Seal,
}

fn aead_key(key: &ApiV3Key) -> Result<LessSafeKey, CipherError> {
    UnboundKey::new(&AES_256_GCM, &key.0)
        .map(LessSafeKey::new)
        .map_err(|_| CipherError::Seal)
}

fn aead_nonce(nonce: &str) -> Result<Nonce, CipherError> {
    let bytes: [u8; NONCE_LEN] = nonce
        .as_bytes()
        .try_into()
        .map_err(|_| CipherError::Nonce)?;
    Ok(Nonce::assume_unique_for_key(bytes))
}

/// Decrypts a notification's resource with the APIv3 key (its 32 bytes as the
/// AES-256 key), the resource's nonce, and its associated data as AAD.
pub fn decrypt_resource(
    key: &ApiV3Key,
    resource: &EncryptedResource,
) -> Result<Vec<u8>, CipherError> {
    if resource.algorithm != RESOURCE_ALGORITHM {
        return Err(CipherError::Algorithm(resource.algorithm.clone()));
    }
    let nonce = aead_nonce(&resource.nonce)?;
    let mut sealed = STANDARD
        .decode(&resource.ciphertext)
        .map_err(|_| CipherError::NotBase64)?;
    let plaintext = aead_key(key)?
        .open_in_place(
            nonce,
            Aad::from(resource.associated_data.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| CipherError::Open)?;
    Ok(plaintext.to_vec())
}

/// Encrypts `plaintext` as WeChat Pay encrypts a notification's resource (for
/// the fake WeChat Pay of the tests). `nonce` is 12 ASCII characters, never
/// reused with the same key.
pub fn encrypt_resource(
    key: &ApiV3Key,
    nonce: &str,
    associated_data: &str,
    original_type: &str,
    plaintext: &[u8],
) -> Result<EncryptedResource, CipherError> {
    let mut sealed = plaintext.to_vec();
    aead_key(key)?
        .seal_in_place_append_tag(
            aead_nonce(nonce)?,
            Aad::from(associated_data.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| CipherError::Seal)?;
    Ok(EncryptedResource {
        algorithm: RESOURCE_ALGORITHM.to_owned(),
        ciphertext: STANDARD.encode(sealed),
        associated_data: associated_data.to_owned(),
        nonce: nonce.to_owned(),
        original_type: original_type.to_owned(),
    })
}

/// Why a notification is not believed or not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    #[error(transparent)]
    Signature(#[from] VerifyError),
    #[error("the notification is not what WeChat Pay sends: {0}")]
    Malformed(String),
    /// A genuine notification about something else (a refund): acknowledge
    /// it, it changes no payment.
    #[error("a {event_type} notification, not a payment's")]
    NotATransaction { event_type: String },
    #[error(transparent)]
    Cipher(#[from] CipherError),
}

/// A verified, decrypted payment notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionNotification {
    /// The notification's id: the same on every retry.
    pub id: String,
    pub event_type: String,
    pub transaction: Transaction,
}

impl WechatPay {
    /// A notification, verified (see [`verify`](Self::verify)) and parsed,
    /// still encrypted.
    pub fn verify_notification(
        &self,
        headers: &SignatureHeaders<'_>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Notification, NotificationError> {
        self.verify(headers, body, now)?;
        serde_json::from_slice(body)
            .map_err(|error| NotificationError::Malformed(error.to_string()))
    }

    /// A notification's resource, decrypted with this merchant's APIv3 key.
    pub fn decrypt(&self, resource: &EncryptedResource) -> Result<Vec<u8>, CipherError> {
        decrypt_resource(&self.config.apiv3_key, resource)
    }

    /// A payment notification verified, decrypted and read. Check the
    /// transaction against the payment with [`Transaction::check`].
    pub fn read_transaction_notification(
        &self,
        headers: &SignatureHeaders<'_>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<TransactionNotification, NotificationError> {
        let notification = self.verify_notification(headers, body, now)?;
        if !notification.event_type.starts_with("TRANSACTION.") {
            return Err(NotificationError::NotATransaction {
                event_type: notification.event_type,
            });
        }
        let plaintext = self.decrypt(&notification.resource)?;
        let transaction = serde_json::from_slice(&plaintext)
            .map_err(|error| NotificationError::Malformed(format!("resource: {error}")))?;
        Ok(TransactionNotification {
            id: notification.id,
            event_type: notification.event_type,
            transaction,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PaymentId;
    use crate::providers::keys::fixtures;

    /// A change made to a value, to see what refuses it.
    type Edit<T> = fn(&mut T);

    // Golden vectors, made independently of this code: the message written
    // out by hand, then
    //   printf '%s' "$MESSAGE" | openssl dgst -sha256 -sign KEY.pem | base64 -w0
    // over the fixture keys (tests/fixtures/providers/), and the ciphertext
    // with Python's `cryptography` (AESGCM(key).encrypt(nonce, plaintext, aad)).

    /// 2025-01-31T16:30:00Z.
    const TIMESTAMP: i64 = 1_738_341_000;
    const NONCE: &str = "593BEC0C930BF1AFEB40B4A08C8FB242";
    /// The Native create of 9999.00 yuan, and its signature by
    /// wechat_merchant_private_pkcs8.pem over
    /// `POST\n/v3/pay/transactions/native\n1738341000\n593BEC...\n{body}\n`.
    const NATIVE_BODY: &str = r#"{"appid":"wxd678efh567hg6787","mchid":"1900000001","description":"iPhone 15 订单","out_trade_no":"0193a5b27c4d7e8f9a0b1c2d3e4f5a6b","time_expire":"2025-02-01T00:45:00+08:00","notify_url":"https://shop.example.com/api/v1/payments/notify/wechat_pay","amount":{"total":999900,"currency":"CNY"}}"#;
    const NATIVE_SIGNATURE: &str = r#"fd0EeDIBD+SPYFYB1FmOxf5JsYAydQ0yiijkJ0mkHQOpoplfT3Rh3dCycwrGddQC1eMcnD1zCnkNDN3cgm7ZooEXVwanvP7Q8nm/6SxuJLLQeUT5JTzXG3hGYK0XZOhC1yEQxg5KjjW6ZVe6tLOc3vvTBU/x+7tJsMo6xGIwVU9OTn/c2kCIpD1i/oKNoGSek3e8ZBUOaxAA7OHTZKXsglN44XFeBN9+xtvrguKq0y7/G+kryL6E2mtweNIPhENy8eCZc6RjtNURPvJ4LpCDi2l4P0L5Kt4OuJB588JTZUvR+uzoFk3nfgHW9JQY5m7Vf3WY0YZSX5iFuP67a1nkYQ=="#;
    /// The query's signature by wechat_merchant_private_pkcs8.pem over
    /// `GET\n/v3/pay/transactions/out-trade-no/0193...?mchid=1900000001\n1738341000\n593BEC...\n\n`.
    const QUERY_SIGNATURE: &str = r#"ycWBq1qFMJRMnRJvZxainitAoKZiVFwliO5vkOnx9B5EXRAIk7oftHrx1XAbdsZZ3r3ruRzlIwHRK6duxJJmWSykUX4FdTBAYWDpYkoMYNbAEevGVMzzpaI4fApiNpuk/pOcxwz4+cA7N2ky2E3MdL7ZTEMi9oRAgBjHWgQyj7lPrszeYiO+R4CKcqQcKGCfe5qHpkuNLmPgmiNBFnms/eqg+z9kbYQ0k3diGnndCjJiXGKC+vWEsRA4K1hRlGxuNuapblWy3KuvbuXuPIoFDGl/Wb0p3KiH1FKtHg+0PNqOchmDy7pqqXIDh4Wj3W6MQm5uiBTUl5b7gqiUVmixCQ=="#;

    /// An answer signed by wechat_platform_private_pkcs8.pem at 1738341001,
    /// nonce c5ac7061fccab6bf3e254dcf98995b8c, over
    /// `1738341001\nc5ac...\n{"code_url":"weixin://wxpay/bizpayurl?pr=p4lpSuKzz"}\n`,
    /// and over the empty body of a 204: `1738341001\nc5ac...\n\n`.
    const ANSWER_TIMESTAMP: &str = "1738341001";
    const ANSWER_NONCE: &str = "c5ac7061fccab6bf3e254dcf98995b8c";
    const ANSWER_BODY: &str = r#"{"code_url":"weixin://wxpay/bizpayurl?pr=p4lpSuKzz"}"#;
    const ANSWER_SIGNATURE: &str = r#"WR9ZlAHnSonQNV3P4D2lIdbUvW5a831Gbac8dBXqfJDUKKPPN+iizI/SZ34a6k+06jS1LpwzMtXIZmucIhoKNmki5bZn91AgzSN0I2TNzhtHbz52Eg4dZh93Ufb40aigJqfk7fN6UygX/J+Hr5NEcBmxRxkPQ9PMMQIvUk7rwzvi2kzV3vdyeobkboDwoGXkeH2O/1bKTmvtajEl1Nz88RgzJcGvrQyz7+a6hQDEOVPjhzu814+Ech1hwExOwoIyqcpgKX2YEgNUgrJzk9395810gMUIqsED/yqViNeuomgPp/5AzhRrAXlH2gac0LYrP09TBj9dlGvCkvOO09w4+A=="#;
    const EMPTY_ANSWER_SIGNATURE: &str = r#"NTiMLomnJ0xWLEW7ELX3GKbCLkohVJVRCmOHcXWs0aN4sGN25+pxA+YQfvNKmGG0mF61xiysqw3ykSYgTy+04lR0cLuCSKcIem0RknsUsktyfI8Jny4iXkOeN2r+Q/vOCnjJlY56oipg9TWUXKghbiIwhwmHHUInrNKjZTyABmKx2GmG2irzyByuNHwVkdxXalgsAoG5Px46hF6I6q3SswA636GdAZx5q545wWHLsJacfkmHkVGPHfOQJ391I819H8x9JEQGCG3vPVPpCgDluiApSlC7yE3GPyadZJ3/xjK2+O5URz1EL3gF5KKUMeozHoxSIjjLp28+OVoDW/RQkg=="#;

    /// AES-256-GCM under the APIv3 key below, nonce `fdasflkja484`, associated
    /// data `transaction`.
    const APIV3_KEY: &str = "0123456789abcdefghijABCDEFGHIJ01";
    const PLAINTEXT: &str = r#"{"appid":"wxd678efh567hg6787","mchid":"1900000001","out_trade_no":"0193a5b27c4d7e8f9a0b1c2d3e4f5a6b","transaction_id":"4200000000202502010000000001","trade_type":"NATIVE","trade_state":"SUCCESS","trade_state_desc":"支付成功","bank_type":"OTHERS","attach":"","success_time":"2025-02-01T00:31:15+08:00","payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},"amount":{"total":999900,"payer_total":999900,"currency":"CNY","payer_currency":"CNY"}}"#;
    const CIPHERTEXT: &str = r#"vW8pji/rX9F7VOGk5i0iq7G8FstHPm/urVlf87xJTDIz84Hm4B+yyasg32lx7galOlESnuOe+5unxsshILVqt6JzyLPLlK1l5edp7tVQt8ojuzmAchf1UJOEqP/2rgWxQRHWwoRGDnaF7Ok1BIrNYdFafPV4eT7XV3FI0EfjY+wYrpK7gUfdIZLN+XnfoJyYjnGeHoH6EImIJQu1hxhj9j+wfTm1x8oHI9hB/DPAjpapVOP4aHTreNAQvpefxLJ3XYyYBdBZfRApIJMuR/eE5vT75+hbycne68iDVyQOZBKM7Us2eRaoAV32ReN7Vdb3h/MbYTCt9zcUqn+nRvbPL6ngrR1j04Ct4FOKLIQT1aEqCL6zh6mpA0ENBUoO0RM2UXsK8ieKxjH8nX4fsrSNCubiI+Q84dGQkQxwJ5pCbWi6N6FShO7pYVCG3Q+2iAOfKhD2IzBpNcnjpdNof1C5fVby+96jl3nCsZLrk2Iq+JyGvpq42suh/PqP9/oFGvHindZpLRC1XIkvBzf0BIrv135o1y6cYjz3BMuIZ9NGrbIDWkiHPeGGvaFv8qAb5m01xnO4CusHtQaTFPHQg54LqkLYSWb2VK4Qv7g="#;

    /// The payment notification carrying that ciphertext, signed by
    /// wechat_platform_private_pkcs8.pem at 1738341076, nonce
    /// `fdasfjihihihlkja484`, over `1738341076\nfdasfjihihihlkja484\n{body}\n`.
    const NOTIFY_BODY: &str = r#"{"id":"EV-2018022511223320873","create_time":"2025-02-01T00:31:16+08:00","resource_type":"encrypt-resource","event_type":"TRANSACTION.SUCCESS","summary":"支付成功","resource":{"original_type":"transaction","algorithm":"AEAD_AES_256_GCM","ciphertext":"vW8pji/rX9F7VOGk5i0iq7G8FstHPm/urVlf87xJTDIz84Hm4B+yyasg32lx7galOlESnuOe+5unxsshILVqt6JzyLPLlK1l5edp7tVQt8ojuzmAchf1UJOEqP/2rgWxQRHWwoRGDnaF7Ok1BIrNYdFafPV4eT7XV3FI0EfjY+wYrpK7gUfdIZLN+XnfoJyYjnGeHoH6EImIJQu1hxhj9j+wfTm1x8oHI9hB/DPAjpapVOP4aHTreNAQvpefxLJ3XYyYBdBZfRApIJMuR/eE5vT75+hbycne68iDVyQOZBKM7Us2eRaoAV32ReN7Vdb3h/MbYTCt9zcUqn+nRvbPL6ngrR1j04Ct4FOKLIQT1aEqCL6zh6mpA0ENBUoO0RM2UXsK8ieKxjH8nX4fsrSNCubiI+Q84dGQkQxwJ5pCbWi6N6FShO7pYVCG3Q+2iAOfKhD2IzBpNcnjpdNof1C5fVby+96jl3nCsZLrk2Iq+JyGvpq42suh/PqP9/oFGvHindZpLRC1XIkvBzf0BIrv135o1y6cYjz3BMuIZ9NGrbIDWkiHPeGGvaFv8qAb5m01xnO4CusHtQaTFPHQg54LqkLYSWb2VK4Qv7g=","associated_data":"transaction","nonce":"fdasflkja484"}}"#;
    const NOTIFY_TIMESTAMP: &str = "1738341076";
    const NOTIFY_NONCE: &str = "fdasfjihihihlkja484";
    const NOTIFY_SIGNATURE: &str = r#"eqROkrZM7ORX8sEON3fBXIi7+FB+tJsdCv55gsmRiID208ZfLERNGn/h6YbKjAMQzrr6yrjAgIAJS9jl2iUGBeL2YiVibs/rpNRqWdO5B9O14kf7OFChjgxprnZQWsStN8eMZUM+EtbF1HrLHDImJuJXUQjYERbBfy8vNSnSZxXhlOP+uyQMYWckkrVSIuGcFyamlNTJ3vFOnxC7VCckzLG3QhMCMRGqIREZJ3xvp+TCEpPUAwJf+EnPhwov0LtdZKgpqUQP584C1ORADP35FasDxIvO9l8niiKlKmi0ICaSSvuK5N1Yn8SZbNG2cK0/6oJP4nQ6EICyhG1fuDjAUw=="#;

    const MCH_ID: &str = "1900000001";
    const APP_ID: &str = "wxd678efh567hg6787";
    const MERCHANT_SERIAL: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";
    const PUBLIC_KEY_ID: &str = "PUB_KEY_ID_0119000000012025013100000000000001";
    const NOTIFY_URL: &str = "https://shop.example.com/api/v1/payments/notify/wechat_pay";

    fn wechat_pay() -> WechatPay {
        WechatPay::new(WechatPayConfig {
            mch_id: MCH_ID.into(),
            app_id: APP_ID.into(),
            merchant_serial_no: MERCHANT_SERIAL.into(),
            merchant_private_key: fixtures::wechat_merchant_private(),
            apiv3_key: ApiV3Key::new(APIV3_KEY).unwrap(),
            platform_keys: vec![PlatformKey {
                id: PUBLIC_KEY_ID.into(),
                key: fixtures::wechat_platform_public(),
            }],
            base_url: PRODUCTION_BASE_URL.into(),
        })
        .unwrap()
    }

    fn at_unix(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    fn out_trade_no() -> OutTradeNo {
        OutTradeNo::from_payment_id(&PaymentId::from(
            "0193a5b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b".to_owned(),
        ))
        .unwrap()
    }

    fn trade(no: &OutTradeNo) -> Trade<'_> {
        Trade {
            out_trade_no: no,
            amount_fen: 999_900,
            description: "iPhone 15 订单",
            time_expire: at_unix(TIMESTAMP + 900),
            notify_url: NOTIFY_URL,
        }
    }

    fn authorization(signature: &str) -> String {
        format!(
            r#"WECHATPAY2-SHA256-RSA2048 mchid="{MCH_ID}",nonce_str="{NONCE}",timestamp="{TIMESTAMP}",serial_no="{MERCHANT_SERIAL}",signature="{signature}""#
        )
    }

    #[test]
    fn golden_native_request_and_its_authorization() {
        let wechat_pay = wechat_pay();
        let no = out_trade_no();
        let request = wechat_pay.native(&trade(&no)).unwrap();
        assert_eq!(request.method, HttpMethod::Post);
        assert_eq!(request.path_and_query, "/v3/pay/transactions/native");
        assert_eq!(
            request.url(PRODUCTION_BASE_URL),
            "https://api.mch.weixin.qq.com/v3/pay/transactions/native"
        );
        assert_eq!(request.body, NATIVE_BODY);
        assert_eq!(
            request_message(
                "POST",
                &request.path_and_query,
                &TIMESTAMP.to_string(),
                NONCE,
                &request.body
            ),
            format!("POST\n/v3/pay/transactions/native\n1738341000\n{NONCE}\n{NATIVE_BODY}\n")
        );
        assert_eq!(
            wechat_pay
                .authorization(&request, TIMESTAMP, NONCE)
                .unwrap(),
            authorization(NATIVE_SIGNATURE)
        );
    }

    #[test]
    fn golden_query_signs_its_query_string() {
        let wechat_pay = wechat_pay();
        let request = wechat_pay.query(&out_trade_no());
        assert_eq!(request.method, HttpMethod::Get);
        assert_eq!(
            request.path_and_query,
            "/v3/pay/transactions/out-trade-no/0193a5b27c4d7e8f9a0b1c2d3e4f5a6b?mchid=1900000001"
        );
        assert_eq!(request.body, "");
        let header = wechat_pay
            .authorization(&request, TIMESTAMP, NONCE)
            .unwrap();
        assert_eq!(header, authorization(QUERY_SIGNATURE));
        // A server that dropped the query string from the signed URL would
        // find the signature wrong.
        let parsed = Authorization::parse(&header).unwrap();
        let merchant = fixtures::wechat_merchant_public();
        parsed
            .verify(&merchant, "GET", &request.path_and_query, "")
            .unwrap();
        assert_eq!(
            parsed.verify(
                &merchant,
                "GET",
                "/v3/pay/transactions/out-trade-no/0193a5b27c4d7e8f9a0b1c2d3e4f5a6b",
                ""
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn an_authorization_header_parses_back_and_verifies_only_its_request() {
        let wechat_pay = wechat_pay();
        let no = out_trade_no();
        let request = wechat_pay.native(&trade(&no)).unwrap();
        let header = wechat_pay
            .authorization(&request, TIMESTAMP, NONCE)
            .unwrap();
        let parsed = Authorization::parse(&header).unwrap();
        assert_eq!(parsed.mchid, MCH_ID);
        assert_eq!(parsed.serial_no, MERCHANT_SERIAL);
        assert_eq!(parsed.timestamp, "1738341000");
        assert_eq!(parsed.to_string(), header);
        let merchant = fixtures::wechat_merchant_public();
        parsed
            .verify(&merchant, "POST", &request.path_and_query, &request.body)
            .unwrap();
        let tampered = request.body.replace("999900", "1");
        assert_eq!(
            parsed.verify(&merchant, "POST", &request.path_and_query, &tampered),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            parsed.verify(
                &fixtures::wechat_platform_public(),
                "POST",
                &request.path_and_query,
                &request.body
            ),
            Err(SignatureError::Mismatch)
        );
        for bad in [
            "",
            "Bearer x",
            r#"WECHATPAY2-SHA256-RSA2048 mchid="1""#,
            &header.replace("mchid=", "merchant="),
            &format!(r#"{header},mchid="2""#),
            &header.replace("signature=\"", "signature="),
        ] {
            assert_eq!(Authorization::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn nonces_are_fresh_32_hex_digits() {
        let first = new_nonce().unwrap();
        assert_eq!(first.len(), 32);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(first, new_nonce().unwrap());
    }

    #[test]
    fn h5_close_and_refund_requests() {
        let wechat_pay = wechat_pay();
        let no = out_trade_no();
        let h5 = wechat_pay
            .h5(&trade(&no), "203.0.113.7".parse().unwrap())
            .unwrap();
        assert_eq!(h5.path_and_query, "/v3/pay/transactions/h5");
        assert!(
            h5.body.ends_with(r#""amount":{"total":999900,"currency":"CNY"},"scene_info":{"payer_client_ip":"203.0.113.7","h5_info":{"type":"Wap"}}}"#),
            "{}",
            h5.body
        );
        let close = wechat_pay.close(&no).unwrap();
        assert_eq!(close.method, HttpMethod::Post);
        assert_eq!(
            close.path_and_query,
            "/v3/pay/transactions/out-trade-no/0193a5b27c4d7e8f9a0b1c2d3e4f5a6b/close"
        );
        assert_eq!(close.body, r#"{"mchid":"1900000001"}"#);
        let refund_no = RefundNo::new("0193a5b27c4d7e8f9a0b1c2d3e4f5a6b-r1").unwrap();
        let refund = wechat_pay
            .refund(&no, &refund_no, 999_900, 999_900)
            .unwrap();
        assert_eq!(refund.path_and_query, "/v3/refund/domestic/refunds");
        assert_eq!(
            refund.body,
            r#"{"out_trade_no":"0193a5b27c4d7e8f9a0b1c2d3e4f5a6b","out_refund_no":"0193a5b27c4d7e8f9a0b1c2d3e4f5a6b-r1","amount":{"refund":999900,"total":999900,"currency":"CNY"}}"#
        );
        assert_eq!(
            wechat_pay.refund(&no, &refund_no, 999_901, 999_900),
            Err(RequestError::Amount {
                field: "amount.refund",
                fen: 999_901,
                max: 999_900
            })
        );
        assert!(wechat_pay.refund(&no, &refund_no, 0, 999_900).is_err());
    }

    #[test]
    fn a_create_wechat_pay_would_refuse_is_not_built() {
        let wechat_pay = wechat_pay();
        let no = out_trade_no();
        let mut bad = trade(&no);
        bad.notify_url = "https://shop.example.com/notify?payment=1";
        assert_eq!(wechat_pay.native(&bad), Err(RequestError::NotifyUrl));
        bad.notify_url = "http://shop.example.com/notify";
        assert_eq!(wechat_pay.native(&bad), Err(RequestError::NotifyUrl));
        bad = trade(&no);
        bad.description = "";
        assert_eq!(wechat_pay.native(&bad), Err(RequestError::Description));
        let long = "订".repeat(128);
        bad.description = &long;
        assert_eq!(wechat_pay.native(&bad), Err(RequestError::Description));
        bad = trade(&no);
        for fen in [0, -1, MAX_FEN + 1] {
            bad.amount_fen = fen;
            assert!(
                matches!(wechat_pay.native(&bad), Err(RequestError::Amount { .. })),
                "{fen}"
            );
        }
    }

    #[test]
    fn time_expire_is_rfc3339_in_beijing_time() {
        assert_eq!(
            format_time(at_unix(TIMESTAMP + 900)),
            "2025-02-01T00:45:00+08:00"
        );
    }

    fn answer_headers(signature: &str) -> SignatureHeaders<'_> {
        SignatureHeaders {
            timestamp: Some(ANSWER_TIMESTAMP),
            nonce: Some(ANSWER_NONCE),
            signature: Some(signature),
            serial: Some(PUBLIC_KEY_ID),
        }
    }

    fn answer<'a>(status: u16, headers: SignatureHeaders<'a>, body: &'a str) -> Answer<'a> {
        Answer {
            status,
            headers,
            body: body.as_bytes(),
        }
    }

    fn now() -> DateTime<Utc> {
        at_unix(TIMESTAMP + 10)
    }

    #[test]
    fn golden_answer_verifies() {
        let wechat_pay = wechat_pay();
        assert_eq!(
            response_message(ANSWER_TIMESTAMP, ANSWER_NONCE, ANSWER_BODY.as_bytes()),
            format!("{ANSWER_TIMESTAMP}\n{ANSWER_NONCE}\n{ANSWER_BODY}\n").into_bytes()
        );
        let code_url = wechat_pay
            .read_native(
                &answer(200, answer_headers(ANSWER_SIGNATURE), ANSWER_BODY),
                now(),
            )
            .unwrap();
        assert_eq!(code_url.code_url, "weixin://wxpay/bizpayurl?pr=p4lpSuKzz");
    }

    #[test]
    fn golden_empty_answer_verifies_over_timestamp_nonce_and_an_empty_line() {
        assert_eq!(
            response_message(ANSWER_TIMESTAMP, ANSWER_NONCE, b""),
            b"1738341001\nc5ac7061fccab6bf3e254dcf98995b8c\n\n".to_vec()
        );
        let wechat_pay = wechat_pay();
        wechat_pay
            .read_empty_answer(
                &answer(204, answer_headers(EMPTY_ANSWER_SIGNATURE), ""),
                now(),
            )
            .unwrap();
        assert_eq!(
            wechat_pay.read_empty_answer(&answer(204, answer_headers(ANSWER_SIGNATURE), ""), now()),
            Err(ResponseError::Signature(VerifyError::BadSignature))
        );
    }

    #[test]
    fn a_signed_timestamp_300_seconds_or_more_away_is_stale() {
        let wechat_pay = wechat_pay();
        let signed_at = ANSWER_TIMESTAMP.parse::<i64>().unwrap();
        let verify = |now: i64| {
            wechat_pay.verify(
                &answer_headers(ANSWER_SIGNATURE),
                ANSWER_BODY.as_bytes(),
                at_unix(now),
            )
        };
        verify(signed_at + 299).unwrap();
        verify(signed_at - 299).unwrap();
        assert_eq!(
            verify(signed_at + 300),
            Err(VerifyError::Stale { skew_secs: 300 })
        );
        assert_eq!(
            verify(signed_at - 300),
            Err(VerifyError::Stale { skew_secs: -300 })
        );
    }

    #[test]
    fn forged_or_odd_signatures_are_refused() {
        let wechat_pay = wechat_pay();
        let verify = |headers: SignatureHeaders<'_>, body: &str| {
            wechat_pay.verify(&headers, body.as_bytes(), now())
        };
        let good = answer_headers(ANSWER_SIGNATURE);
        verify(good, ANSWER_BODY).unwrap();
        assert_eq!(
            verify(good, &ANSWER_BODY.replace("p4lp", "evil")),
            Err(VerifyError::BadSignature)
        );
        let other_serial = SignatureHeaders {
            serial: Some("PUB_KEY_ID_0119000000012025013100000000000002"),
            ..good
        };
        assert_eq!(
            verify(other_serial, ANSWER_BODY),
            Err(VerifyError::UnknownSerial(
                "PUB_KEY_ID_0119000000012025013100000000000002".into()
            ))
        );
        let probe = format!("{SIGNTEST_PREFIX}{ANSWER_SIGNATURE}");
        assert_eq!(
            verify(answer_headers(&probe), ANSWER_BODY),
            Err(VerifyError::SignTest)
        );
        let not_a_number = SignatureHeaders {
            timestamp: Some("1738341001.0"),
            ..good
        };
        assert_eq!(
            verify(not_a_number, ANSWER_BODY),
            Err(VerifyError::BadTimestamp)
        );
        let negative = SignatureHeaders {
            timestamp: Some("-1738341001"),
            ..good
        };
        assert_eq!(
            verify(negative, ANSWER_BODY),
            Err(VerifyError::BadTimestamp)
        );
        for (missing, name) in [
            (
                SignatureHeaders {
                    timestamp: None,
                    ..good
                },
                HEADER_TIMESTAMP,
            ),
            (
                SignatureHeaders {
                    nonce: None,
                    ..good
                },
                HEADER_NONCE,
            ),
            (
                SignatureHeaders {
                    signature: Some(" "),
                    ..good
                },
                HEADER_SIGNATURE,
            ),
            (
                SignatureHeaders {
                    serial: None,
                    ..good
                },
                HEADER_SERIAL,
            ),
        ] {
            assert_eq!(
                verify(missing, ANSWER_BODY),
                Err(VerifyError::MissingHeader(name))
            );
        }
    }

    #[test]
    fn headers_are_found_by_name() {
        let signed = SignedHeaders::sign(
            &fixtures::wechat_platform_private(),
            PUBLIC_KEY_ID,
            TIMESTAMP,
            ANSWER_NONCE,
            ANSWER_BODY.as_bytes(),
        )
        .unwrap();
        let pairs = signed.pairs();
        let headers = SignatureHeaders::from_lookup(|name| {
            pairs
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        });
        assert_eq!(headers, signed.as_headers());
        wechat_pay()
            .verify(&headers, ANSWER_BODY.as_bytes(), now())
            .unwrap();
    }

    #[test]
    fn an_unsigned_success_is_forged_and_an_unsigned_error_is_not_believed() {
        let wechat_pay = wechat_pay();
        assert_eq!(
            wechat_pay.read_native(
                &answer(200, SignatureHeaders::default(), ANSWER_BODY),
                now()
            ),
            Err(ResponseError::Signature(VerifyError::MissingHeader(
                HEADER_TIMESTAMP
            )))
        );
        let error = r#"{"code":"ORDER_NOT_EXIST","message":"订单不存在"}"#;
        let Err(ResponseError::UnsignedRefusal(refusal)) =
            wechat_pay.read_query(&answer(404, SignatureHeaders::default(), error), now())
        else {
            panic!("expected an unsigned refusal");
        };
        assert!(refusal.is_order_not_exist());
        let Err(ResponseError::UnsignedRefusal(refusal)) = wechat_pay.read_query(
            &answer(502, SignatureHeaders::default(), "<html>Bad Gateway</html>"),
            now(),
        ) else {
            panic!("expected an unsigned refusal");
        };
        assert_eq!((refusal.status, refusal.code.as_str()), (502, ""));
    }

    #[test]
    fn a_signed_error_is_a_verified_refusal() {
        let wechat_pay = wechat_pay();
        let error = r#"{"code":"ORDER_NOT_EXIST","message":"订单不存在"}"#;
        let signed = SignedHeaders::sign(
            &fixtures::wechat_platform_private(),
            PUBLIC_KEY_ID,
            TIMESTAMP,
            "n1",
            error.as_bytes(),
        )
        .unwrap();
        let Err(ResponseError::Refused(refusal)) =
            wechat_pay.read_query(&answer(404, signed.as_headers(), error), now())
        else {
            panic!("expected a verified refusal");
        };
        assert!(refusal.is_order_not_exist());
        assert_eq!(refusal.to_string(), "HTTP 404 ORDER_NOT_EXIST 订单不存在");
        let forged = error.replace("ORDER_NOT_EXIST", "ORDERPAID");
        assert_eq!(
            wechat_pay.read_query(&answer(400, signed.as_headers(), &forged), now()),
            Err(ResponseError::Signature(VerifyError::BadSignature))
        );
    }

    fn signed_answer<T: DeserializeOwned>(body: &str) -> Result<T, ResponseError> {
        let signed = SignedHeaders::sign(
            &fixtures::wechat_platform_private(),
            PUBLIC_KEY_ID,
            TIMESTAMP,
            "n2",
            body.as_bytes(),
        )
        .unwrap();
        wechat_pay().read_answer(&answer(200, signed.as_headers(), body), now())
    }

    #[test]
    fn typed_answers_for_query_h5_and_refund() {
        let unpaid: Transaction = signed_answer(
            r#"{"amount":{"payer_currency":"CNY","total":999900},"appid":"wxd678efh567hg6787","mchid":"1900000001","out_trade_no":"0193a5b27c4d7e8f9a0b1c2d3e4f5a6b","promotion_detail":[],"scene_info":{"device_id":""},"trade_state":"NOTPAY","trade_state_desc":"订单未支付"}"#,
        )
        .unwrap();
        assert_eq!(unpaid.trade_state, TradeState::Notpay);
        assert!(!unpaid.trade_state.is_paid());
        assert_eq!(unpaid.transaction_id, None);
        let no = out_trade_no();
        unpaid.check(&wechat_pay().expected(&no, 999_900)).unwrap();
        let h5: H5Url = signed_answer(
            r#"{"h5_url":"https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=wx1"}"#,
        )
        .unwrap();
        assert!(h5.h5_url.starts_with("https://wx.tenpay.com/"));
        let refund: Refund = signed_answer(
            r#"{"refund_id":"50000000382019052709732678859","out_refund_no":"0193a5b27c4d7e8f9a0b1c2d3e4f5a6b-r1","transaction_id":"4200000000202502010000000001","out_trade_no":"0193a5b27c4d7e8f9a0b1c2d3e4f5a6b","channel":"ORIGINAL","user_received_account":"招商银行信用卡0403","create_time":"2025-02-01T01:00:00+08:00","status":"PROCESSING","funds_account":"AVAILABLE","amount":{"total":999900,"refund":999900,"payer_total":999900,"payer_refund":999900,"settlement_refund":999900,"settlement_total":999900,"discount_refund":0,"currency":"CNY"}}"#,
        )
        .unwrap();
        assert_eq!(refund.status, RefundStatus::Processing);
        assert_eq!(refund.amount.map(|a| a.refund), Some(999_900));
        for (text, status) in [
            ("SUCCESS", RefundStatus::Success),
            ("PROCESSING", RefundStatus::Processing),
            ("CLOSED", RefundStatus::Closed),
            ("ABNORMAL", RefundStatus::Abnormal),
        ] {
            assert_eq!(
                serde_json::from_str::<RefundStatus>(&format!("\"{text}\"")).unwrap(),
                status
            );
        }
        assert!(matches!(
            signed_answer::<CodeUrl>(r#"{"h5_url":"x"}"#),
            Err(ResponseError::Malformed(_))
        ));
    }

    #[test]
    fn every_trade_state_reads_and_only_success_is_paid() {
        for (text, state) in [
            ("SUCCESS", TradeState::Success),
            ("REFUND", TradeState::Refund),
            ("NOTPAY", TradeState::Notpay),
            ("CLOSED", TradeState::Closed),
            ("REVOKED", TradeState::Revoked),
            ("USERPAYING", TradeState::Userpaying),
            ("PAYERROR", TradeState::Payerror),
        ] {
            let read: TradeState = serde_json::from_str(&format!("\"{text}\"")).unwrap();
            assert_eq!(read, state);
            assert_eq!(read.is_paid(), text == "SUCCESS");
        }
    }

    fn golden_resource() -> EncryptedResource {
        EncryptedResource {
            algorithm: RESOURCE_ALGORITHM.into(),
            ciphertext: CIPHERTEXT.into(),
            associated_data: "transaction".into(),
            nonce: "fdasflkja484".into(),
            original_type: "transaction".into(),
        }
    }

    fn key() -> ApiV3Key {
        ApiV3Key::new(APIV3_KEY).unwrap()
    }

    #[test]
    fn golden_resource_decrypts() {
        let plaintext = decrypt_resource(&key(), &golden_resource()).unwrap();
        assert_eq!(String::from_utf8(plaintext).unwrap(), PLAINTEXT);
    }

    #[test]
    fn encryption_round_trips_and_matches_the_independent_vector() {
        let sealed = encrypt_resource(
            &key(),
            "fdasflkja484",
            "transaction",
            "transaction",
            PLAINTEXT.as_bytes(),
        )
        .unwrap();
        assert_eq!(sealed, golden_resource());
        let empty_aad = encrypt_resource(&key(), "0123456789ab", "", "transaction", b"{}").unwrap();
        assert_eq!(decrypt_resource(&key(), &empty_aad).unwrap(), b"{}");
    }

    #[test]
    fn a_bad_tag_associated_data_key_or_nonce_does_not_decrypt() {
        let mut sealed = STANDARD.decode(CIPHERTEXT).unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        let bad_tag = EncryptedResource {
            ciphertext: STANDARD.encode(&sealed),
            ..golden_resource()
        };
        let bad_aad = EncryptedResource {
            associated_data: "refund".into(),
            ..golden_resource()
        };
        let other_nonce = EncryptedResource {
            nonce: "fdasflkja485".into(),
            ..golden_resource()
        };
        let truncated = EncryptedResource {
            ciphertext: STANDARD.encode(&sealed[..10]),
            ..golden_resource()
        };
        for resource in [bad_tag, bad_aad, other_nonce, truncated] {
            assert_eq!(decrypt_resource(&key(), &resource), Err(CipherError::Open));
        }
        let other_key = ApiV3Key::new("0123456789abcdefghijABCDEFGHIJ02").unwrap();
        assert_eq!(
            decrypt_resource(&other_key, &golden_resource()),
            Err(CipherError::Open)
        );
        let short_nonce = EncryptedResource {
            nonce: "fdasflkja48".into(),
            ..golden_resource()
        };
        assert_eq!(
            decrypt_resource(&key(), &short_nonce),
            Err(CipherError::Nonce)
        );
        let algorithm = EncryptedResource {
            algorithm: "AEAD_SM4_GCM".into(),
            ..golden_resource()
        };
        assert_eq!(
            decrypt_resource(&key(), &algorithm),
            Err(CipherError::Algorithm("AEAD_SM4_GCM".into()))
        );
        let not_base64 = EncryptedResource {
            ciphertext: "***".into(),
            ..golden_resource()
        };
        assert_eq!(
            decrypt_resource(&key(), &not_base64),
            Err(CipherError::NotBase64)
        );
    }

    #[test]
    fn the_apiv3_key_is_32_bytes_and_never_shown() {
        assert_eq!(ApiV3Key::new("short").unwrap_err(), ApiV3KeyLength(5));
        assert_eq!(
            ApiV3Key::new(&"k".repeat(33)).unwrap_err(),
            ApiV3KeyLength(33)
        );
        assert_eq!(format!("{:?}", key()), "ApiV3Key(..)");
        let config = format!("{:?}", wechat_pay());
        assert!(
            !config.contains(APIV3_KEY) && !config.contains("MII"),
            "{config}"
        );
    }

    fn notify_headers(signature: &str) -> SignatureHeaders<'_> {
        SignatureHeaders {
            timestamp: Some(NOTIFY_TIMESTAMP),
            nonce: Some(NOTIFY_NONCE),
            signature: Some(signature),
            serial: Some(PUBLIC_KEY_ID),
        }
    }

    #[test]
    fn golden_notification_verifies_decrypts_and_checks() {
        let wechat_pay = wechat_pay();
        let notification = wechat_pay
            .read_transaction_notification(
                &notify_headers(NOTIFY_SIGNATURE),
                NOTIFY_BODY.as_bytes(),
                now(),
            )
            .unwrap();
        assert_eq!(notification.id, "EV-2018022511223320873");
        assert_eq!(notification.event_type, "TRANSACTION.SUCCESS");
        let transaction = &notification.transaction;
        assert_eq!(transaction.trade_state, TradeState::Success);
        assert_eq!(
            transaction.transaction_id.as_deref(),
            Some("4200000000202502010000000001")
        );
        assert_eq!(
            transaction.success_time,
            Some(
                DateTime::parse_from_rfc3339("2025-01-31T16:31:15Z")
                    .unwrap()
                    .with_timezone(&Utc)
            )
        );
        let no = out_trade_no();
        transaction
            .check(&wechat_pay.expected(&no, 999_900))
            .unwrap();
    }

    #[test]
    fn a_tampered_or_stale_notification_is_refused_before_decryption() {
        let wechat_pay = wechat_pay();
        let tampered = NOTIFY_BODY.replace("EV-2018022511223320873", "EV-2018022511223320874");
        assert_eq!(
            wechat_pay.read_transaction_notification(
                &notify_headers(NOTIFY_SIGNATURE),
                tampered.as_bytes(),
                now()
            ),
            Err(NotificationError::Signature(VerifyError::BadSignature))
        );
        let later = at_unix(NOTIFY_TIMESTAMP.parse::<i64>().unwrap() + 300);
        assert_eq!(
            wechat_pay.read_transaction_notification(
                &notify_headers(NOTIFY_SIGNATURE),
                NOTIFY_BODY.as_bytes(),
                later
            ),
            Err(NotificationError::Signature(VerifyError::Stale {
                skew_secs: 300
            }))
        );
    }

    /// A notification signed and encrypted as WeChat Pay does, around `transaction`.
    fn notification(event_type: &str, resource: &EncryptedResource) -> (SignedHeaders, String) {
        let body = serde_json::to_string(&Notification {
            id: "EV-1".into(),
            create_time: "2025-02-01T00:31:16+08:00".into(),
            event_type: event_type.into(),
            resource_type: "encrypt-resource".into(),
            resource: resource.clone(),
            summary: "支付成功".into(),
        })
        .unwrap();
        let headers = SignedHeaders::sign(
            &fixtures::wechat_platform_private(),
            PUBLIC_KEY_ID,
            TIMESTAMP,
            "n3",
            body.as_bytes(),
        )
        .unwrap();
        (headers, body)
    }

    fn sealed(transaction: &Transaction) -> EncryptedResource {
        let plaintext = serde_json::to_vec(transaction).unwrap();
        encrypt_resource(
            &key(),
            "0123456789ab",
            "transaction",
            "transaction",
            &plaintext,
        )
        .unwrap()
    }

    fn golden_transaction() -> Transaction {
        serde_json::from_str(PLAINTEXT).unwrap()
    }

    #[test]
    fn a_genuine_notification_about_something_else_names_the_field() {
        let wechat_pay = wechat_pay();
        let no = out_trade_no();
        let expected = wechat_pay.expected(&no, 999_900);
        let edits: [(&str, Edit<Transaction>); 5] = [
            ("mchid", |t| t.mchid = "1900000002".into()),
            ("appid", |t| t.appid = "wx0000000000000000".into()),
            ("out_trade_no", |t| {
                t.out_trade_no = "0193a5b27c4d7e8f9a0b1c2d3e4f5a6c".into()
            }),
            ("amount.total", |t| {
                if let Some(amount) = t.amount.as_mut() {
                    amount.total = 1;
                }
            }),
            ("amount.currency", |t| {
                if let Some(amount) = t.amount.as_mut() {
                    amount.currency = Some("USD".into());
                }
            }),
        ];
        for (field, edit) in edits {
            let mut transaction = golden_transaction();
            edit(&mut transaction);
            let (headers, body) = notification("TRANSACTION.SUCCESS", &sealed(&transaction));
            let read = wechat_pay
                .read_transaction_notification(&headers.as_headers(), body.as_bytes(), now())
                .unwrap();
            assert_eq!(read.transaction.check(&expected).unwrap_err().field, field);
        }
        let mut no_amount = golden_transaction();
        no_amount.amount = None;
        assert_eq!(
            no_amount.check(&expected).unwrap_err().field,
            "amount.total"
        );
    }

    #[test]
    fn a_notification_with_a_bad_resource_is_refused() {
        let wechat_pay = wechat_pay();
        let mut bad_aad = sealed(&golden_transaction());
        bad_aad.associated_data = "refund".into();
        let (headers, body) = notification("TRANSACTION.SUCCESS", &bad_aad);
        assert_eq!(
            wechat_pay.read_transaction_notification(&headers.as_headers(), body.as_bytes(), now()),
            Err(NotificationError::Cipher(CipherError::Open))
        );
        let not_a_transaction =
            encrypt_resource(&key(), "0123456789ab", "transaction", "transaction", b"{}").unwrap();
        let (headers, body) = notification("TRANSACTION.SUCCESS", &not_a_transaction);
        assert!(matches!(
            wechat_pay.read_transaction_notification(&headers.as_headers(), body.as_bytes(), now()),
            Err(NotificationError::Malformed(_))
        ));
        let (headers, body) = notification("REFUND.SUCCESS", &sealed(&golden_transaction()));
        assert_eq!(
            wechat_pay.read_transaction_notification(&headers.as_headers(), body.as_bytes(), now()),
            Err(NotificationError::NotATransaction {
                event_type: "REFUND.SUCCESS".into()
            })
        );
        let headers = SignedHeaders::sign(
            &fixtures::wechat_platform_private(),
            PUBLIC_KEY_ID,
            TIMESTAMP,
            "n4",
            b"[]",
        )
        .unwrap();
        assert!(matches!(
            wechat_pay.read_transaction_notification(&headers.as_headers(), b"[]", now()),
            Err(NotificationError::Malformed(_))
        ));
    }

    #[test]
    fn either_of_two_configured_keys_verifies_during_a_migration() {
        let mut config = WechatPayConfig {
            platform_keys: vec![
                PlatformKey {
                    id: "3775B6A45ACD588826D15E583A95F5DD00000000".into(),
                    key: fixtures::alipay_platform_public(),
                },
                PlatformKey {
                    id: PUBLIC_KEY_ID.into(),
                    key: fixtures::wechat_platform_public(),
                },
            ],
            ..test_config()
        };
        let wechat_pay = WechatPay::new(config).unwrap();
        wechat_pay
            .verify(
                &answer_headers(ANSWER_SIGNATURE),
                ANSWER_BODY.as_bytes(),
                now(),
            )
            .unwrap();
        config = test_config();
        config.platform_keys.clear();
        assert_eq!(
            WechatPay::new(config).unwrap_err(),
            ConfigError::NoPlatformKey
        );
    }

    fn test_config() -> WechatPayConfig {
        WechatPayConfig {
            mch_id: MCH_ID.into(),
            app_id: APP_ID.into(),
            merchant_serial_no: MERCHANT_SERIAL.into(),
            merchant_private_key: fixtures::wechat_merchant_private(),
            apiv3_key: key(),
            platform_keys: vec![PlatformKey {
                id: PUBLIC_KEY_ID.into(),
                key: fixtures::wechat_platform_public(),
            }],
            base_url: PRODUCTION_BASE_URL.into(),
        }
    }

    #[test]
    fn settings_that_would_break_the_authorization_header_are_refused() {
        let cases: [(Edit<WechatPayConfig>, ConfigError); 6] = [
            (|c| c.mch_id = "19000000a1".into(), ConfigError::MchId),
            (|c| c.app_id = "wx\"1".into(), ConfigError::AppId),
            (
                |c| c.merchant_serial_no = "5157 F09E".into(),
                ConfigError::MerchantSerialNo,
            ),
            (
                |c| c.platform_keys[0].id = "PUB_KEY_ID\",x".into(),
                ConfigError::PlatformKeyId,
            ),
            (
                |c| c.base_url = "https://api.mch.weixin.qq.com/v3".into(),
                ConfigError::BaseUrl,
            ),
            (
                |c| c.base_url = "api.mch.weixin.qq.com".into(),
                ConfigError::BaseUrl,
            ),
        ];
        for (edit, error) in cases {
            let mut config = test_config();
            edit(&mut config);
            assert_eq!(WechatPay::new(config).unwrap_err(), error);
        }
        let mut trailing_slash = test_config();
        trailing_slash.base_url = "http://127.0.0.1:9/".into();
        WechatPay::new(trailing_slash).unwrap();
    }
}

//! A fake WeChat Pay (API v3) on loopback, with the test-only fixture keys,
//! written from WeChat Pay's side of `PAYMENT_GATEWAYS.md` with no code of
//! shop's: it reads shop's `Authorization` header and verifies its signature
//! with the merchant's public key, refuses what WeChat Pay refuses (below),
//! keeps trade state (`NOTPAY` after a create, `SUCCESS` once the buyer pays,
//! `CLOSED`, `REFUND`; a close of a paid trade refused; one `out_refund_no`
//! refunding once), signs every answer over its raw bytes with the platform
//! key (`Wechatpay-Timestamp`, `-Nonce`, `-Signature`, `-Serial`), and sends
//! notifications encrypted (AEAD_AES_256_GCM under the APIv3 key) and signed
//! exactly as WeChat Pay does.
//!
//! What it checks of every call, in this order, with WeChat Pay's errors
//! (`{"code", "message"}`):
//! - a `User-Agent` (WeChat Pay refuses requests without one) and `Accept:
//!   application/json`, and `Content-Type: application/json` on a POST:
//!   else 400 `PARAM_ERROR` (the status table's "protocol or parameter
//!   invalid");
//! - `Authorization: WECHATPAY2-SHA256-RSA2048 mchid="..",nonce_str="..",
//!   timestamp="..",serial_no="..",signature=".."` naming this merchant and
//!   its certificate serial, a timestamp less than 300 s from now, and a
//!   SHA256withRSA signature under the merchant's public key of
//!   `METHOD\nPATH_AND_QUERY\ntimestamp\nnonce\nbody\n`: else 401 `SIGN_ERROR`;
//! - a POST's body is a JSON object; each call's fields, else 400
//!   `PARAM_ERROR`: `appid`, `mchid` (this merchant's, as in the
//!   `Authorization`), `description` (1 to 127 characters), `out_trade_no`
//!   (6 to 32 of `[0-9A-Za-z_-|*]`, in the path too), `time_expire` when
//!   given (RFC 3339, not past), `notify_url` (https, or http on loopback
//!   for the tests, no query string), `amount{total >= 1, currency "CNY"}`,
//!   for H5 `scene_info{payer_client_ip, h5_info{type}}`; a query's
//!   `?mchid=`; a refund's `out_refund_no` (1 to 64 of `[0-9A-Za-z_-|*@]`)
//!   and `amount{refund, total, currency "CNY"}`.
//!
//! Test controls: [`FakeWechatPay::pay`] (the buyer pays, with or without the
//! notification), [`FakeWechatPay::fail_next`] (the next N calls of an
//! operation answer 500), [`FakeWechatPay::calls`] (calls per operation),
//! [`FakeWechatPay::refusals`] (every call refused, and why), and the pieces
//! to build notifications shop must refuse.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};

use actix_web::{App, HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, FixedOffset, Utc};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use super::fixture;
use super::read_fixture;
use super::rsa2::{PrivateKey, PublicKey};

pub const MCH_ID: &str = "1900000001";
pub const APP_ID: &str = "wxd678efh567hg6787";
pub const MERCHANT_SERIAL_NO: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";
pub const PUBLIC_KEY_ID: &str = "PUB_KEY_ID_0119000000012025013100000000000001";
pub const APIV3_KEY: &str = "0123456789abcdefghijABCDEFGHIJ01";
/// The scheme of the `Authorization` header.
pub const AUTH_SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";
/// A request signed this many seconds or more away from now is refused.
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 300;

/// What shop asks of WeChat Pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Create,
    Query,
    Close,
    Refund,
}

/// Where a trade stands (`trade_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TradeState {
    Success,
    Refund,
    Notpay,
    Closed,
    Revoked,
    Userpaying,
    Payerror,
}

impl TradeState {
    fn description(self) -> &'static str {
        match self {
            TradeState::Success => "支付成功",
            TradeState::Refund => "转入退款",
            TradeState::Notpay => "未支付",
            TradeState::Closed => "已关闭",
            TradeState::Revoked => "已撤销",
            TradeState::Userpaying => "用户支付中",
            TradeState::Payerror => "支付失败",
        }
    }
}

/// A transaction as WeChat Pay describes it (a query's answer, a payment
/// notification's plaintext).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub appid: String,
    pub mchid: String,
    pub out_trade_no: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trade_type: Option<String>,
    pub trade_state: TradeState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trade_state_desc: Option<String>,
    /// RFC 3339, Beijing time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<TransactionAmount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionAmount {
    pub total: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payer_total: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payer_currency: Option<String>,
}

/// A notification's `resource`: the plaintext sealed with AEAD_AES_256_GCM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedResource {
    pub algorithm: String,
    /// Base64 of the ciphertext followed by the 16-byte tag.
    pub ciphertext: String,
    pub associated_data: String,
    pub original_type: String,
    /// 12 ASCII characters: the GCM nonce's 12 bytes.
    pub nonce: String,
}

/// A notification's envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: String,
    pub create_time: String,
    pub event_type: String,
    pub resource_type: String,
    pub resource: EncryptedResource,
    pub summary: String,
}

/// `plaintext` sealed as WeChat Pay seals a notification's resource: AES-256
/// in GCM under the APIv3 key (its 32 ASCII bytes), the 12-byte `nonce`,
/// `associated_data` authenticated; the ciphertext and its 16-byte tag in
/// standard base64.
pub fn encrypt_resource(
    apiv3_key: &str,
    nonce: &str,
    associated_data: &str,
    original_type: &str,
    plaintext: &[u8],
) -> EncryptedResource {
    let key = UnboundKey::new(&AES_256_GCM, apiv3_key.as_bytes()).expect("a 32-byte APIv3 key");
    let key = LessSafeKey::new(key);
    let gcm_nonce =
        Nonce::try_assume_unique_for_key(nonce.as_bytes()).expect("a 12-character nonce");
    let mut sealed = plaintext.to_vec();
    key.seal_in_place_append_tag(
        gcm_nonce,
        Aad::from(associated_data.as_bytes()),
        &mut sealed,
    )
    .expect("sealed");
    EncryptedResource {
        algorithm: "AEAD_AES_256_GCM".into(),
        ciphertext: STANDARD.encode(sealed),
        associated_data: associated_data.into(),
        original_type: original_type.into(),
        nonce: nonce.into(),
    }
}

/// The `Wechatpay-*` headers WeChat Pay signs an answer or a notification with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
    pub serial: String,
}

impl SignedHeaders {
    /// Signs `body` at `timestamp` with `key`: SHA256withRSA over
    /// `timestamp\nnonce\nbody\n`, named by `serial`.
    pub fn sign(key: &PrivateKey, serial: &str, timestamp: i64, nonce: &str, body: &[u8]) -> Self {
        let mut message = format!("{timestamp}\n{nonce}\n").into_bytes();
        message.extend_from_slice(body);
        message.push(b'\n');
        Self {
            timestamp: timestamp.to_string(),
            nonce: nonce.to_owned(),
            signature: key.sign(&message),
            serial: serial.to_owned(),
        }
    }

    /// Name and value of each header.
    pub fn pairs(&self) -> [(&'static str, &str); 4] {
        [
            ("Wechatpay-Timestamp", &self.timestamp),
            ("Wechatpay-Nonce", &self.nonce),
            ("Wechatpay-Signature", &self.signature),
            ("Wechatpay-Serial", &self.serial),
        ]
    }
}

/// The fields of an `Authorization: WECHATPAY2-SHA256-RSA2048 k="v",...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub mchid: String,
    pub nonce_str: String,
    pub timestamp: String,
    pub serial_no: String,
    pub signature: String,
}

impl Authorization {
    /// Reads the header: the scheme, then `key="value"` pairs separated by
    /// commas, in any order, each once.
    pub fn parse(header: &str) -> Result<Self, String> {
        let pairs = header
            .strip_prefix(AUTH_SCHEME)
            .filter(|rest| rest.starts_with(' '))
            .ok_or_else(|| format!("the scheme is not {AUTH_SCHEME}"))?;
        let mut fields: HashMap<&str, &str> = HashMap::new();
        for pair in pairs.split(',') {
            let (key, value) = pair
                .trim()
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not key=\"value\""))?;
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or_else(|| format!("{key}'s value is not quoted"))?;
            if fields.insert(key, value).is_some() {
                return Err(format!("{key} given twice"));
            }
        }
        let mut field = |key: &str| {
            fields
                .remove(key)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| format!("{key} is missing"))
        };
        Ok(Self {
            mchid: field("mchid")?,
            nonce_str: field("nonce_str")?,
            timestamp: field("timestamp")?,
            serial_no: field("serial_no")?,
            signature: field("signature")?,
        })
    }

    /// The message a merchant signs: `METHOD\nPATH_AND_QUERY\ntimestamp\nnonce\nbody\n`.
    pub fn message(&self, method: &str, path_and_query: &str, body: &[u8]) -> Vec<u8> {
        let mut message = format!(
            "{method}\n{path_and_query}\n{}\n{}\n",
            self.timestamp, self.nonce_str
        )
        .into_bytes();
        message.extend_from_slice(body);
        message.push(b'\n');
        message
    }
}

/// Where the fixture keys are.
fn merchant_public_key() -> PublicKey {
    PublicKey::from_spki_pem(&read_fixture("wechat_merchant_public_spki.pem"))
}

/// The key WeChat Pay signs with (its "public key id" [`PUBLIC_KEY_ID`]).
pub fn platform_private_key() -> PrivateKey {
    PrivateKey::from_pkcs8_pem(&read_fixture("wechat_platform_private_pkcs8.pem"))
}

/// The merchant's private key (shop's), for tests that sign requests as a
/// merchant would.
pub fn merchant_private_key() -> PrivateKey {
    PrivateKey::from_pkcs8_pem(&read_fixture("wechat_merchant_private_pkcs8.pem"))
}

/// The time as WeChat Pay writes it: RFC 3339, Beijing time.
pub fn beijing_time(at: DateTime<Utc>) -> String {
    let beijing = FixedOffset::east_opt(8 * 3600).expect("UTC+8");
    at.with_timezone(&beijing)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

#[derive(Debug, Clone)]
pub struct FakeTrade {
    pub out_trade_no: String,
    pub total: i64,
    pub description: String,
    pub time_expire: String,
    pub notify_url: String,
    /// `NATIVE` or `MWEB`.
    pub trade_type: String,
    pub payer_client_ip: Option<String>,
    pub state: TradeState,
    pub transaction_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct FakeRefund {
    pub refund_id: String,
    pub out_trade_no: String,
    pub amount: i64,
}

#[derive(Default)]
struct State {
    trades: HashMap<String, FakeTrade>,
    refunds: HashMap<String, FakeRefund>,
    /// Money sent back, per `out_refund_no` (more than 1 is a double refund).
    refunds_made: HashMap<String, usize>,
    calls: HashMap<Op, usize>,
    fail_next: HashMap<Op, usize>,
    unsigned_next: HashMap<Op, usize>,
    forged_not_found_next: HashMap<Op, usize>,
    /// Answers still to give `PROCESSING` for a refund just made.
    processing_answers: usize,
    processing: HashMap<String, usize>,
    /// Calls refused for their headers, signature or fields, and why.
    refusals: Vec<String>,
    bad_signatures: usize,
    counter: u64,
}

struct Shared {
    state: Mutex<State>,
    merchant_public: PublicKey,
    platform_private: PrivateKey,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fake WeChat Pay.
pub struct FakeWechatPay {
    pub base_url: String,
    shared: Arc<Shared>,
    server: actix_web::dev::ServerHandle,
    client: reqwest::Client,
}

impl Drop for FakeWechatPay {
    fn drop(&mut self) {
        let server = self.server.clone();
        drop(tokio::spawn(async move { server.stop(false).await }));
    }
}

fn now() -> i64 {
    Utc::now().timestamp()
}

impl FakeWechatPay {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            merchant_public: merchant_public_key(),
            platform_private: platform_private_key(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("address"));
        let data = web::Data::from(shared.clone());
        let server = actix_web::HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(handle))
        })
        .workers(1)
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            base_url,
            shared,
            server: handle,
            client: reqwest::Client::new(),
        }
    }

    /// The settings that point shop at this fake.
    pub fn settings(&self) -> Vec<(String, String)> {
        [
            ("MCH_ID", MCH_ID.to_owned()),
            ("APP_ID", APP_ID.to_owned()),
            ("MERCHANT_SERIAL_NO", MERCHANT_SERIAL_NO.to_owned()),
            (
                "PRIVATE_KEY_PATH",
                fixture("wechat_merchant_private_pkcs8.pem"),
            ),
            ("APIV3_KEY", APIV3_KEY.to_owned()),
            (
                "PUBLIC_KEY_PATH",
                fixture("wechat_platform_public_spki.pem"),
            ),
            ("PUBLIC_KEY_ID", PUBLIC_KEY_ID.to_owned()),
            ("BASE_URL", self.base_url.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("SHOP__PAYMENT__WECHAT_PAY__{k}"), v))
        .collect()
    }

    /// How many calls of `op` arrived (failed ones included).
    pub fn calls(&self, op: Op) -> usize {
        self.shared.state().calls.get(&op).copied().unwrap_or(0)
    }

    /// The next `n` calls of `op` answer 500 and change nothing.
    pub fn fail_next(&self, op: Op, n: usize) {
        self.shared.state().fail_next.insert(op, n);
    }

    /// The next `n` answers to `op` carry no signature (as a proxy's would).
    pub fn answer_unsigned_next(&self, op: Op, n: usize) {
        self.shared.state().unsigned_next.insert(op, n);
    }

    /// The next `n` calls of `op` get an unsigned 404 `ORDER_NOT_EXIST` (what
    /// a forger in the middle would answer) and change nothing.
    pub fn forge_not_found_next(&self, op: Op, n: usize) {
        self.shared.state().forged_not_found_next.insert(op, n);
    }

    /// The next refund made answers `PROCESSING` to its first `n` asks
    /// (the money goes back once, when it is made), then `SUCCESS`.
    pub fn refunds_process_for(&self, n: usize) {
        self.shared.state().processing_answers = n;
    }

    /// Requests whose `Authorization` did not verify.
    pub fn bad_signatures(&self) -> usize {
        self.shared.state().bad_signatures
    }

    /// Every call refused for its headers, its signature or its fields (not
    /// for the state of a trade), and why.
    pub fn refusals(&self) -> Vec<String> {
        self.shared.state().refusals.clone()
    }

    pub fn trade(&self, payment_id: &str) -> Option<FakeTrade> {
        let no = out_trade_no(payment_id);
        self.shared.state().trades.get(&no).cloned()
    }

    /// How often money went back for `out_refund_no`.
    pub fn refunds_made(&self, out_refund_no: &str) -> usize {
        self.shared
            .state()
            .refunds_made
            .get(out_refund_no)
            .copied()
            .unwrap_or(0)
    }

    /// Every refund made, by `out_refund_no`.
    pub fn refunds(&self) -> HashMap<String, FakeRefund> {
        self.shared.state().refunds.clone()
    }

    /// The buyer pays the trade of `payment_id` (which must be open):
    /// `SUCCESS`, with a transaction id. Without `notify`, WeChat Pay's
    /// notification is lost; with it, it is sent, and shop's answer returned.
    pub async fn pay(&self, payment_id: &str, notify: bool) -> Option<(u16, String)> {
        let transaction = {
            let mut state = self.shared.state();
            state.counter += 1;
            let transaction_id = format!("42000000002025{:014}", state.counter);
            let no = out_trade_no(payment_id);
            let trade = state.trades.get_mut(&no).expect("the trade was created");
            assert_eq!(
                trade.state,
                TradeState::Notpay,
                "only an open trade is paid"
            );
            trade.state = TradeState::Success;
            trade.transaction_id = Some(transaction_id);
            transaction_of(trade)
        };
        if !notify {
            return None;
        }
        let notification = self.notification(&transaction);
        let url = self.trade(payment_id).expect("trade").notify_url;
        Some(self.deliver(&url, &notification).await)
    }

    /// The trade of `payment_id` becomes paid whatever its state (a payment
    /// WeChat Pay took as its close arrived).
    pub fn force_paid(&self, payment_id: &str) {
        let mut state = self.shared.state();
        state.counter += 1;
        let transaction_id = format!("42000000002025{:014}", state.counter);
        let no = out_trade_no(payment_id);
        let trade = state.trades.get_mut(&no).expect("the trade was created");
        trade.state = TradeState::Success;
        trade.transaction_id = Some(transaction_id);
    }

    /// The transaction as WeChat Pay describes the trade of `payment_id` now.
    pub fn transaction(&self, payment_id: &str) -> Transaction {
        let no = out_trade_no(payment_id);
        transaction_of(self.shared.state().trades.get(&no).expect("trade"))
    }

    /// A notification of `transaction`, encrypted and signed now as WeChat Pay does.
    pub fn notification(&self, transaction: &Transaction) -> SignedNotification {
        let resource = self.seal(transaction, "transaction");
        self.sign_notification(&resource, now())
    }

    /// `transaction` encrypted under the APIv3 key with `associated_data`.
    pub fn seal(&self, transaction: &Transaction, associated_data: &str) -> EncryptedResource {
        let nonce = {
            let mut state = self.shared.state();
            state.counter += 1;
            format!("n{:011}", state.counter)
        };
        let plaintext = serde_json::to_vec(transaction).expect("transaction");
        encrypt_resource(
            APIV3_KEY,
            &nonce,
            associated_data,
            "transaction",
            &plaintext,
        )
    }

    /// The notification around `resource`, signed at `timestamp`.
    pub fn sign_notification(
        &self,
        resource: &EncryptedResource,
        timestamp: i64,
    ) -> SignedNotification {
        let id = {
            let mut state = self.shared.state();
            state.counter += 1;
            format!("EV-{:020}", state.counter)
        };
        let body = serde_json::to_string(&Notification {
            id,
            create_time: beijing_time(Utc::now()),
            event_type: "TRANSACTION.SUCCESS".into(),
            resource_type: "encrypt-resource".into(),
            resource: resource.clone(),
            summary: "支付成功".into(),
        })
        .expect("notification");
        self.sign_body(body, timestamp)
    }

    /// `body` signed at `timestamp` with the platform key, as WeChat Pay signs.
    pub fn sign_body(&self, body: String, timestamp: i64) -> SignedNotification {
        let nonce = format!("{:032X}", uuid::Uuid::now_v7().as_u128());
        let headers = SignedHeaders::sign(
            &self.shared.platform_private,
            PUBLIC_KEY_ID,
            timestamp,
            &nonce,
            body.as_bytes(),
        );
        SignedNotification { body, headers }
    }

    /// Sends a notification to shop and returns its answer.
    pub async fn deliver(&self, url: &str, notification: &SignedNotification) -> (u16, String) {
        let mut request = self
            .client
            .post(url)
            .header("Content-Type", "application/json")
            .header("User-Agent", "Mozilla/4.0")
            .body(notification.body.clone());
        for (name, value) in notification.headers.pairs() {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("shop answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }
}

/// A notification as sent: the exact body and its `Wechatpay-*` headers.
#[derive(Debug, Clone)]
pub struct SignedNotification {
    pub body: String,
    pub headers: SignedHeaders,
}

/// The `out_trade_no` of a payment: its id (a UUID) as 32 hex digits.
pub fn out_trade_no(payment_id: &str) -> String {
    uuid::Uuid::try_parse(payment_id)
        .expect("a payment id is a UUID")
        .simple()
        .to_string()
}

fn transaction_of(trade: &FakeTrade) -> Transaction {
    let paid = trade.state == TradeState::Success;
    Transaction {
        appid: APP_ID.into(),
        mchid: MCH_ID.into(),
        out_trade_no: trade.out_trade_no.clone(),
        transaction_id: trade.transaction_id.clone(),
        trade_type: Some(trade.trade_type.clone()),
        trade_state: trade.state,
        trade_state_desc: Some(trade.state.description().into()),
        success_time: paid.then(|| beijing_time(Utc::now())),
        amount: Some(TransactionAmount {
            total: trade.total,
            payer_total: paid.then_some(trade.total),
            currency: Some("CNY".into()),
            payer_currency: Some("CNY".into()),
        }),
    }
}

/// An answer, signed over its exact bytes unless `signed` is false.
fn answer(shared: &Shared, status: u16, body: Option<Value>, signed: bool) -> HttpResponse {
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let mut response =
        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status"));
    response.insert_header(("Request-ID", uuid::Uuid::now_v7().simple().to_string()));
    if signed {
        let nonce = format!("{:032x}", uuid::Uuid::now_v7().as_u128());
        let headers = SignedHeaders::sign(
            &shared.platform_private,
            PUBLIC_KEY_ID,
            now(),
            &nonce,
            bytes.as_bytes(),
        );
        for (name, value) in headers.pairs() {
            response.insert_header((name, value.to_owned()));
        }
    }
    if bytes.is_empty() {
        response.finish()
    } else {
        response.content_type("application/json").body(bytes)
    }
}

fn error(code: &str, message: &str) -> Option<Value> {
    Some(json!({"code": code, "message": message}))
}

/// Why WeChat Pay refuses a call: the status, the code and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn param(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            code: "PARAM_ERROR",
            message: message.into(),
        }
    }

    fn sign(message: impl Into<String>) -> Self {
        Self {
            status: 401,
            code: "SIGN_ERROR",
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

/// Whether a header's media type is `application/json` (parameters such as
/// `charset` aside).
fn is_json_media_type(value: Option<&str>) -> bool {
    value
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// What WeChat Pay checks of every call before its business (module docs):
/// the headers and the signature. Answers the body as JSON (`Null` for a GET).
pub fn check_request(
    method: &str,
    path_and_query: &str,
    header: impl Fn(&str) -> Option<String>,
    body: &[u8],
    merchant_public: &PublicKey,
    now: i64,
) -> Result<Value, Refusal> {
    if header("User-Agent").is_none_or(|ua| ua.trim().is_empty()) {
        return Err(Refusal::param(
            "HTTP头缺少User-Agent: WeChat Pay refuses requests without one",
        ));
    }
    let accept = header("Accept");
    if !is_json_media_type(accept.as_deref()) {
        return Err(Refusal::param(format!(
            "Accept must be application/json, not {accept:?}"
        )));
    }
    if method == "POST" {
        let content_type = header("Content-Type");
        if !is_json_media_type(content_type.as_deref()) {
            return Err(Refusal::param(format!(
                "Content-Type must be application/json, not {content_type:?}"
            )));
        }
    }
    let authorization = header("Authorization")
        .ok_or_else(|| Refusal::sign("the Authorization header is missing"))?;
    let authorization = Authorization::parse(&authorization).map_err(Refusal::sign)?;
    if authorization.mchid != MCH_ID {
        return Err(Refusal::sign(format!(
            "mchid {} is not this merchant",
            authorization.mchid
        )));
    }
    if authorization.serial_no != MERCHANT_SERIAL_NO {
        return Err(Refusal::sign(format!(
            "serial_no {} is not the merchant's certificate",
            authorization.serial_no
        )));
    }
    let timestamp = authorization
        .timestamp
        .parse::<i64>()
        .map_err(|_| Refusal::sign("timestamp is not unix seconds"))?;
    if (now - timestamp).abs() >= TIMESTAMP_TOLERANCE_SECS {
        return Err(Refusal::sign(format!(
            "timestamp {timestamp} is {}s from now",
            now - timestamp
        )));
    }
    let message = authorization.message(method, path_and_query, body);
    if !merchant_public.verifies(&message, &authorization.signature) {
        return Err(Refusal::sign(format!(
            "the signature does not verify over {:?}",
            String::from_utf8_lossy(&message)
        )));
    }
    if method == "GET" {
        return Ok(Value::Null);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(json @ Value::Object(_)) => Ok(json),
        _ => Err(Refusal::param("the body is not a JSON object")),
    }
}

/// An `out_trade_no` WeChat Pay takes: 6 to 32 of `[0-9A-Za-z_-|*]`.
pub fn is_out_trade_no(text: &str) -> bool {
    (6..=32).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-|*".contains(&b))
}

/// An `out_refund_no` WeChat Pay takes: 1 to 64 of `[0-9A-Za-z_-|*@]`.
pub fn is_out_refund_no(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-|*@".contains(&b))
}

/// A `notify_url` WeChat Pay calls: https (http on loopback, for the tests
/// only), a host, no query string, at most 256 characters.
fn is_notify_url(url: &str) -> bool {
    let rest = url.strip_prefix("https://").or_else(|| {
        url.strip_prefix("http://")
            .filter(|r| r.starts_with("127.0.0.1") || r.starts_with("localhost"))
    });
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
        && url.len() <= 256
        && !url.contains(['?', '#'])
}

async fn handle(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let method = req.method().as_str().to_owned();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let path = req.uri().path().to_owned();
    let op = match (method.as_str(), path.as_str()) {
        ("POST", "/v3/pay/transactions/native" | "/v3/pay/transactions/h5") => Op::Create,
        ("GET", p) if p.starts_with("/v3/pay/transactions/out-trade-no/") => Op::Query,
        ("POST", p)
            if p.starts_with("/v3/pay/transactions/out-trade-no/") && p.ends_with("/close") =>
        {
            Op::Close
        }
        ("POST", "/v3/refund/domestic/refunds") => Op::Refund,
        _ => return answer(&shared, 404, error("NOT_FOUND", "no such API"), true),
    };
    let (fail, forged) = {
        let mut state = shared.state();
        *state.calls.entry(op).or_default() += 1;
        let fail = take(&mut state.fail_next, op);
        let forged = take(&mut state.forged_not_found_next, op);
        (fail, forged)
    };
    // Whether this answer goes unsigned is decided once it is written, after
    // the trade was read: a test that asks for unsigned answers and then
    // pays gets no signed success from a call that arrived in between.
    let signed = || !take(&mut shared.state().unsigned_next, op);
    if forged {
        return answer(&shared, 404, error("ORDER_NOT_EXIST", "订单不存在"), false);
    }
    if fail {
        return answer(&shared, 500, error("SYSTEM_ERROR", "系统错误"), signed());
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let checked = check_request(
        &method,
        &path_and_query,
        header,
        &body,
        &shared.merchant_public,
        now(),
    )
    .and_then(|json| {
        let fields = match op {
            Op::Create => check_create(&path, &json),
            Op::Query => check_query(&path, req.query_string()),
            Op::Close => check_close(&path, &json),
            Op::Refund => check_refund(&json),
        };
        fields.map(|()| json)
    });
    let json = match checked {
        Ok(json) => json,
        Err(refusal) => {
            let mut state = shared.state();
            if refusal.code == "SIGN_ERROR" {
                state.bad_signatures += 1;
            }
            let refused = format!("{method} {path}: {refusal}");
            eprintln!("the fake WeChat Pay refused {refused}");
            state.refusals.push(refused);
            drop(state);
            return answer(
                &shared,
                refusal.status,
                error(refusal.code, &refusal.message),
                signed(),
            );
        }
    };
    let (status, body) = match op {
        Op::Create => create(&shared, &path, &json),
        Op::Query => query(&shared, &path),
        Op::Close => close(&shared, &path),
        Op::Refund => refund(&shared, &json),
    };
    answer(&shared, status, body, signed())
}

fn take(counts: &mut HashMap<Op, usize>, op: Op) -> bool {
    match counts.get_mut(&op) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
}

fn trade_no_in(path: &str) -> String {
    path.trim_start_matches("/v3/pay/transactions/out-trade-no/")
        .trim_end_matches("/close")
        .to_owned()
}

/// The string field `name` of `body` (`None` when absent or not a string).
fn text<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body[name].as_str()
}

fn check_merchant(body: &Value) -> Result<(), Refusal> {
    if text(body, "mchid") != Some(MCH_ID) {
        return Err(Refusal::param(format!(
            "mchid {} is not the signing merchant's",
            body["mchid"]
        )));
    }
    Ok(())
}

/// A create's fields (module docs).
fn check_create(path: &str, body: &Value) -> Result<(), Refusal> {
    check_merchant(body)?;
    if text(body, "appid") != Some(APP_ID) {
        return Err(Refusal::param(format!(
            "appid {} is not bound to the merchant",
            body["appid"]
        )));
    }
    let description = text(body, "description").unwrap_or_default();
    if !(1..=127).contains(&description.chars().count()) {
        return Err(Refusal::param(format!(
            "description {description:?}: 1 to 127 characters"
        )));
    }
    let out_trade_no = text(body, "out_trade_no").unwrap_or_default();
    if !is_out_trade_no(out_trade_no) {
        return Err(Refusal::param(format!(
            "out_trade_no {out_trade_no:?}: 6 to 32 of [0-9A-Za-z_-|*]"
        )));
    }
    if let Some(time_expire) = body.get("time_expire") {
        let at = time_expire
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .ok_or_else(|| Refusal::param(format!("time_expire {time_expire} is not RFC 3339")))?;
        if at < Utc::now() {
            return Err(Refusal::param(format!("time_expire {time_expire} is past")));
        }
    }
    let notify_url = text(body, "notify_url").unwrap_or_default();
    if !is_notify_url(notify_url) {
        return Err(Refusal::param(format!(
            "notify_url {notify_url:?}: https, without a query string"
        )));
    }
    let amount = &body["amount"];
    if amount["total"].as_i64().is_none_or(|t| t < 1) {
        return Err(Refusal::param(format!(
            "amount.total {}: an integer number of fen, at least 1",
            amount["total"]
        )));
    }
    if amount.get("currency").is_some_and(|c| c != "CNY") {
        return Err(Refusal::param(format!(
            "amount.currency {}: CNY",
            amount["currency"]
        )));
    }
    if path.ends_with("/h5") {
        let scene = &body["scene_info"];
        if text(scene, "payer_client_ip").is_none_or(str::is_empty) {
            return Err(Refusal::param("scene_info.payer_client_ip is missing"));
        }
        if text(&scene["h5_info"], "type").is_none_or(str::is_empty) {
            return Err(Refusal::param("scene_info.h5_info.type is missing"));
        }
    }
    Ok(())
}

/// A query's: the trade number in the path, `?mchid=` this merchant.
fn check_query(path: &str, query: &str) -> Result<(), Refusal> {
    let no = trade_no_in(path);
    if !is_out_trade_no(&no) {
        return Err(Refusal::param(format!("out_trade_no {no:?} in the path")));
    }
    let mchid: Vec<_> = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "mchid")
        .map(|(_, v)| v.into_owned())
        .collect();
    if mchid != [MCH_ID] {
        return Err(Refusal::param(format!(
            "the query string {query:?} must name mchid={MCH_ID}"
        )));
    }
    Ok(())
}

/// A close's: the trade number in the path, `{mchid}` in the body.
fn check_close(path: &str, body: &Value) -> Result<(), Refusal> {
    let no = trade_no_in(path);
    if !is_out_trade_no(&no) {
        return Err(Refusal::param(format!("out_trade_no {no:?} in the path")));
    }
    check_merchant(body)
}

/// A refund's fields (module docs).
fn check_refund(body: &Value) -> Result<(), Refusal> {
    let out_trade_no = text(body, "out_trade_no");
    if !out_trade_no.is_some_and(is_out_trade_no) && text(body, "transaction_id").is_none() {
        return Err(Refusal::param(format!(
            "out_trade_no {:?}: 6 to 32 of [0-9A-Za-z_-|*]",
            body["out_trade_no"]
        )));
    }
    let out_refund_no = text(body, "out_refund_no").unwrap_or_default();
    if !is_out_refund_no(out_refund_no) {
        return Err(Refusal::param(format!(
            "out_refund_no {out_refund_no:?}: 1 to 64 of [0-9A-Za-z_-|*@]"
        )));
    }
    if let Some(url) = body.get("notify_url")
        && !url.as_str().is_some_and(is_notify_url)
    {
        return Err(Refusal::param(format!("notify_url {url}")));
    }
    let amount = &body["amount"];
    let fen = |name: &str| amount[name].as_i64().filter(|n| *n >= 1);
    if fen("refund").is_none() || fen("total").is_none() || amount["currency"] != "CNY" {
        return Err(Refusal::param(format!(
            "amount {amount}: refund and total in fen, currency CNY"
        )));
    }
    Ok(())
}

fn create(shared: &Shared, path: &str, body: &Value) -> (u16, Option<Value>) {
    let field = |name: &str| text(body, name).unwrap_or_default().to_owned();
    let h5 = path.ends_with("/h5");
    let out_trade_no = field("out_trade_no");
    let total = body["amount"]["total"].as_i64().unwrap_or(0);
    let payer_client_ip = text(&body["scene_info"], "payer_client_ip").map(str::to_owned);
    let mut state = shared.state();
    let trade = state
        .trades
        .entry(out_trade_no.clone())
        .or_insert_with(|| FakeTrade {
            out_trade_no: out_trade_no.clone(),
            total,
            description: field("description"),
            time_expire: field("time_expire"),
            notify_url: field("notify_url"),
            trade_type: if h5 { "MWEB" } else { "NATIVE" }.into(),
            payer_client_ip,
            state: TradeState::Notpay,
            transaction_id: None,
        });
    if trade.state != TradeState::Notpay {
        return (400, error("ORDER_CLOSED", "订单已关闭"));
    }
    if h5 {
        let url = format!(
            "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=wx{out_trade_no}&package=1"
        );
        (200, Some(json!({"h5_url": url})))
    } else {
        let url = format!("weixin://wxpay/bizpayurl?pr={out_trade_no}");
        (200, Some(json!({"code_url": url})))
    }
}

fn query(shared: &Shared, path: &str) -> (u16, Option<Value>) {
    let state = shared.state();
    match state.trades.get(&trade_no_in(path)) {
        Some(trade) => (
            200,
            Some(serde_json::to_value(transaction_of(trade)).expect("json")),
        ),
        None => (404, error("ORDER_NOT_EXIST", "订单不存在")),
    }
}

fn close(shared: &Shared, path: &str) -> (u16, Option<Value>) {
    let mut state = shared.state();
    let Some(trade) = state.trades.get_mut(&trade_no_in(path)) else {
        return (404, error("ORDER_NOT_EXIST", "订单不存在"));
    };
    match trade.state {
        TradeState::Notpay | TradeState::Closed => {
            trade.state = TradeState::Closed;
            (204, None)
        }
        _ => (400, error("ORDERPAID", "订单已支付")),
    }
}

fn refund(shared: &Shared, body: &Value) -> (u16, Option<Value>) {
    let out_trade_no = text(body, "out_trade_no").unwrap_or_default().to_owned();
    let out_refund_no = text(body, "out_refund_no").unwrap_or_default().to_owned();
    let amount = body["amount"]["refund"].as_i64().unwrap_or(0);
    let total = body["amount"]["total"].as_i64().unwrap_or(0);
    let mut state = shared.state();
    let answer = |refund: &FakeRefund, transaction_id: Option<String>, status: &str| {
        json!({
            "refund_id": refund.refund_id,
            "out_refund_no": out_refund_no,
            "transaction_id": transaction_id,
            "out_trade_no": refund.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": beijing_time(Utc::now()),
            "status": status,
            "funds_account": "AVAILABLE",
            "amount": {"total": total, "refund": refund.amount, "payer_total": total,
                "payer_refund": refund.amount, "settlement_refund": refund.amount,
                "settlement_total": total, "discount_refund": 0, "currency": "CNY"}
        })
    };
    // One out_refund_no refunds once: asked again, the same refund answers.
    if let Some(refund) = state.refunds.get(&out_refund_no).cloned() {
        let transaction_id = state
            .trades
            .get(&refund.out_trade_no)
            .and_then(|t| t.transaction_id.clone());
        let status = processing(&mut state, &out_refund_no);
        return (200, Some(answer(&refund, transaction_id, status)));
    }
    let Some(trade) = state.trades.get_mut(&out_trade_no) else {
        return (404, error("RESOURCE_NOT_EXISTS", "订单不存在"));
    };
    if trade.state != TradeState::Success {
        return (403, error("NOT_ENOUGH", "交易未支付"));
    }
    if total != trade.total || amount > trade.total {
        return (400, error("INVALID_REQUEST", "金额错误"));
    }
    trade.state = TradeState::Refund;
    let transaction_id = trade.transaction_id.clone();
    state.counter += 1;
    let refund = FakeRefund {
        refund_id: format!("50000000{:020}", state.counter),
        out_trade_no,
        amount,
    };
    state.refunds.insert(out_refund_no.clone(), refund.clone());
    *state.refunds_made.entry(out_refund_no.clone()).or_default() += 1;
    let answers = std::mem::take(&mut state.processing_answers);
    state.processing.insert(out_refund_no.clone(), answers);
    let status = processing(&mut state, &out_refund_no);
    (200, Some(answer(&refund, transaction_id, status)))
}

/// `PROCESSING` while the refund still has such answers to give, then `SUCCESS`.
fn processing(state: &mut State, out_refund_no: &str) -> &'static str {
    match state.processing.get_mut(out_refund_no) {
        Some(n) if *n > 0 => {
            *n -= 1;
            "PROCESSING"
        }
        _ => "SUCCESS",
    }
}

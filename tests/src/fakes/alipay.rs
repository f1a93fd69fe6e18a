//! A fake Alipay gateway (OpenAPI v2) on loopback, with its own key pair (the
//! committed test-only fixtures), written from the gateway's side of
//! `PAYMENT_GATEWAYS.md` with no code of shop's: it reads shop's form POSTs,
//! refuses what Alipay refuses (below), keeps its trades, answers signed with
//! the "Alipay" private key over the exact bytes it sends (escaped slashes
//! and Chinese text included, as the real one writes them), and sends
//! notifications signed as the real one does.
//!
//! What it checks of every call, and of a page or wap pay URL when the buyer
//! opens it, in the gateway's order, with Alipay's public error codes
//! (`40001 Missing Required Arguments`, `40002 Invalid Arguments`):
//! - the parameters come as a form (`application/x-www-form-urlencoded`; a
//!   body of another type is not read), each once;
//! - `method` (`isv.missing-method`, `isv.invalid-method`), `app_id`
//!   (`isv.missing-app-id`, `isv.invalid-app-id`), `format` absent or `JSON`
//!   (`isv.invalid-format`), `charset` `utf-8` (`isv.invalid-charset`),
//!   `sign_type` `RSA2` (`isv.missing-signature-type`,
//!   `isv.invalid-signature-type`), `sign` (`isv.missing-signature`),
//!   `timestamp` as `yyyy-MM-dd HH:mm:ss` in Beijing time within
//!   [`TIMESTAMP_TOLERANCE`] of now (`isv.missing-timestamp`,
//!   `isv.invalid-timestamp`), `version` `1.0` (`isv.missing-version`,
//!   `isv.invalid-parameter`);
//! - the signature (`isv.invalid-signature`): SHA256withRSA under the
//!   application's public key over every parameter but `sign` (`sign_type`
//!   included), empty ones dropped, sorted by key, `k=v` joined with `&`,
//!   raw values;
//! - `biz_content`, a JSON object, with each method's fields
//!   (`40004 ACQ.INVALID_PARAMETER`, `ACQ.TOTAL_FEE_EXCEED` above the
//!   maximum): `out_trade_no` (1 to 64 letters, digits, `_`); for a payment
//!   `total_amount` (yuan with exactly two decimals, 0.01 to 100000000),
//!   `subject` (1 to 256 characters, none of `/ = &`), `product_code`
//!   (`FAST_INSTANT_TRADE_PAY` for page pay, `QUICK_WAP_WAY` for wap pay,
//!   absent or `FACE_TO_FACE_PAYMENT` for precreate), `time_expire` when
//!   given (`yyyy-MM-dd HH:mm:ss`, Beijing time, not past); for a refund
//!   `refund_amount` (as `total_amount`) and `out_request_no` (1 to 64
//!   characters); a `notify_url` without a query string.
//!
//! Trades: unknown until the buyer pays (a precreated QR code is not a trade
//! yet: `ACQ.TRADE_NOT_EXIST`, as before a real scan); paid; closed (a close
//! of a paid trade is refused with `ACQ.TRADE_STATUS_ERROR`); refunded (an
//! `out_request_no` refunds once: a retry answers `fund_change=N`).
//!
//! Test controls: [`FakeAlipay::pay`] (the buyer pays, with or without the
//! notification), [`FakeAlipay::fail_next`] (503s), [`FakeAlipay::unsigned_next`]
//! (unsigned refusals), [`FakeAlipay::forge_next`] (answers signed with the
//! wrong key), counters of calls per method and of refunds, and
//! [`FakeAlipay::refusals`] (every call refused, and why).

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};
use serde_json::{Value, json};

pub use super::fixture;
use super::read_fixture;
use super::rsa2::{PrivateKey, PublicKey};

/// The application id shop is configured with.
pub const APP_ID: &str = "2021000000000001";
/// The merchant (seller) the fake's notifications name.
pub const SELLER_ID: &str = "2088000000000002";
/// How far a request's `timestamp` may be from the gateway's clock. The
/// providers' notes give no figure; a gateway must allow for clock drift,
/// and what this must catch is a time that is not Beijing's (8 hours off
/// from UTC) or a request signed long ago.
pub const TIMESTAMP_TOLERANCE: chrono::Duration = chrono::Duration::minutes(10);
/// The largest amount Alipay takes, in fen (100000000 yuan).
pub const MAX_AMOUNT_FEN: i64 = 10_000_000_000;

/// Parameters by name (a form, a notification's fields).
pub type Params = BTreeMap<String, String>;

/// The Alipay API methods shop calls (or links to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    PagePay,
    WapPay,
    Precreate,
    Query,
    Close,
    Refund,
}

impl Method {
    const ALL: [Method; 6] = [
        Method::PagePay,
        Method::WapPay,
        Method::Precreate,
        Method::Query,
        Method::Close,
        Method::Refund,
    ];

    /// The `method` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Method::PagePay => "alipay.trade.page.pay",
            Method::WapPay => "alipay.trade.wap.pay",
            Method::Precreate => "alipay.trade.precreate",
            Method::Query => "alipay.trade.query",
            Method::Close => "alipay.trade.close",
            Method::Refund => "alipay.trade.refund",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The key of the answer's content: the method with `_` for `.`, and `_response`.
    pub fn response_key(self) -> String {
        format!("{}_response", self.name().replace('.', "_"))
    }
}

/// The time as Alipay writes it: `yyyy-MM-dd HH:mm:ss`, Beijing time.
pub fn beijing_time(at: DateTime<Utc>) -> String {
    at.with_timezone(&beijing())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8")
}

/// A time Alipay reads: exactly `yyyy-MM-dd HH:mm:ss`, Beijing time.
fn parse_beijing_time(text: &str) -> Option<DateTime<Utc>> {
    if text.len() != "yyyy-MM-dd HH:mm:ss".len() {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").ok()?;
    Some(beijing().from_local_datetime(&naive).single()?.to_utc())
}

/// Fen as Alipay's yuan: two decimals, from integers (never a float).
pub fn yuan(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// Yuan as Alipay reads them (`\d+\.\d{2}`, no sign, no superfluous leading
/// zero), in fen; `None` for any other shape.
pub fn fen(yuan: &str) -> Option<i64> {
    let (whole, cents) = yuan.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || cents.len() != 2 || !digits(cents) {
        return None;
    }
    if whole.len() > 1 && whole.starts_with('0') || whole.len() > 12 {
        return None;
    }
    Some(whole.parse::<i64>().ok()? * 100 + cents.parse::<i64>().ok()?)
}

/// A form decoded once (`+` is a space, `%XX` a byte), refusing a name
/// given twice.
pub fn decode_form(bytes: &[u8]) -> Result<Params, String> {
    let mut params = Params::new();
    for (name, value) in form_urlencoded::parse(bytes) {
        if params
            .insert(name.clone().into_owned(), value.into_owned())
            .is_some()
        {
            return Err(format!("{name} given twice"));
        }
    }
    Ok(params)
}

/// Parameters as a form, every value URL-encoded.
pub fn form(params: &Params) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// What Alipay signs and verifies: the parameters but those in `leave_out`,
/// empty values dropped, sorted by key (byte order), `k=v` joined with `&`,
/// with the raw (decoded) values.
pub fn sign_content(params: &Params, leave_out: &[&str]) -> String {
    // A BTreeMap of Strings iterates in byte order of its keys.
    params
        .iter()
        .filter(|(k, v)| !v.is_empty() && !leave_out.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A notification's body signed with `key` as Alipay signs it: `sign_type`
/// `RSA2`, the signature over every field but `sign` and `sign_type`, all
/// form-encoded.
pub fn signed_notification(key: &PrivateKey, fields: &Params) -> String {
    let mut params = fields.clone();
    params.remove("sign");
    params.remove("sign_type");
    let signature = key.sign(sign_content(&params, &[]).as_bytes());
    params.insert("sign_type".into(), "RSA2".into());
    params.insert("sign".into(), signature);
    form(&params)
}

/// An answer as Alipay writes it: `{"<method>_response":<content>,"sign":".."}`,
/// the signature over the exact bytes of `content`.
fn signed_answer(key: &PrivateKey, method: Method, content: &str) -> String {
    format!(
        r#"{{"{}":{content},"sign":"{}"}}"#,
        method.response_key(),
        key.sign(content.as_bytes())
    )
}

/// The key the fake signs answers and notifications with ("Alipay's").
pub fn platform_private_key() -> PrivateKey {
    PrivateKey::from_pkcs8_pem(&read_fixture("alipay_platform_private_pkcs8.pem"))
}

/// The application's private key (shop's): what a forger who stole nothing
/// of Alipay's might sign with.
pub fn app_private_key() -> PrivateKey {
    PrivateKey::from_pkcs8_pem(&read_fixture("alipay_app_private_pkcs8.pem"))
}

/// The application's public key (what Alipay holds to verify shop).
fn app_public_key() -> PublicKey {
    PublicKey::from_spki_pem(&read_fixture("alipay_app_public_spki.pem"))
}

/// Where a trade stands at the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeTradeStatus {
    Paid,
    Closed,
    /// Fully refunded (Alipay then reports the trade `TRADE_CLOSED`).
    Refunded,
}

#[derive(Debug, Clone)]
struct FakeTrade {
    total_fen: i64,
    subject: String,
    notify_url: Option<String>,
    status: FakeTradeStatus,
    trade_no: Option<String>,
    refunded_fen: i64,
}

/// A payment the buyer has not paid yet: what a pay URL or a QR code opens.
#[derive(Debug, Clone)]
struct Offer {
    out_trade_no: String,
    total_fen: i64,
    subject: String,
    notify_url: Option<String>,
}

/// Alipay's refusal of a call: `code`, `msg`, `sub_code`, `sub_msg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub sub_code: &'static str,
    pub sub_msg: String,
}

impl Refusal {
    fn missing(sub_code: &'static str, sub_msg: &str) -> Self {
        Self {
            code: "40001",
            sub_code,
            sub_msg: sub_msg.to_owned(),
        }
    }

    fn invalid(sub_code: &'static str, sub_msg: impl Into<String>) -> Self {
        Self {
            code: "40002",
            sub_code,
            sub_msg: sub_msg.into(),
        }
    }

    fn business(sub_code: &'static str, sub_msg: impl Into<String>) -> Self {
        Self {
            code: "40004",
            sub_code,
            sub_msg: sub_msg.into(),
        }
    }

    fn msg(&self) -> &'static str {
        match self.code {
            "40001" => "Missing Required Arguments",
            "40002" => "Invalid Arguments",
            _ => "Business Failed",
        }
    }

    /// The `*_response` content.
    fn content(&self) -> String {
        json!({"code": self.code, "msg": self.msg(), "sub_code": self.sub_code,
               "sub_msg": self.sub_msg})
        .to_string()
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.sub_code, self.sub_msg)
    }
}

/// What the gateway checks of every request, before its method's business:
/// the common parameters and the signature (module docs). Answers the
/// method and the decoded `biz_content`.
pub fn check_common(
    params: &Params,
    app_public_key: &PublicKey,
    now: DateTime<Utc>,
) -> Result<(Method, serde_json::Map<String, Value>), Refusal> {
    let get = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let method = get("method").ok_or(Refusal::missing("isv.missing-method", "缺少方法名参数"))?;
    let method = Method::from_name(method)
        .ok_or_else(|| Refusal::invalid("isv.invalid-method", "不存在的方法名"))?;
    let app_id = get("app_id").ok_or(Refusal::missing("isv.missing-app-id", "缺少AppID参数"))?;
    if app_id != APP_ID {
        return Err(Refusal::invalid("isv.invalid-app-id", "无效的AppID参数"));
    }
    if get("format").is_some_and(|f| !f.eq_ignore_ascii_case("JSON")) {
        return Err(Refusal::invalid("isv.invalid-format", "无效的数据格式"));
    }
    if !get("charset").is_some_and(|c| c.eq_ignore_ascii_case("utf-8")) {
        return Err(Refusal::invalid("isv.invalid-charset", "字符集错误"));
    }
    let sign_type = get("sign_type").ok_or(Refusal::missing(
        "isv.missing-signature-type",
        "缺少签名类型参数",
    ))?;
    if sign_type != "RSA2" {
        return Err(Refusal::invalid(
            "isv.invalid-signature-type",
            "无效的签名类型",
        ));
    }
    let sign = get("sign").ok_or(Refusal::missing("isv.missing-signature", "缺少签名参数"))?;
    let timestamp =
        get("timestamp").ok_or(Refusal::missing("isv.missing-timestamp", "缺少时间戳参数"))?;
    let sent = parse_beijing_time(timestamp).ok_or_else(|| {
        Refusal::invalid(
            "isv.invalid-timestamp",
            format!("非法的时间戳参数: {timestamp:?} is not yyyy-MM-dd HH:mm:ss"),
        )
    })?;
    if (sent - now).abs() > TIMESTAMP_TOLERANCE {
        return Err(Refusal::invalid(
            "isv.invalid-timestamp",
            format!(
                "非法的时间戳参数: {timestamp} is {}s from Beijing time {}",
                (sent - now).num_seconds(),
                beijing_time(now)
            ),
        ));
    }
    let version = get("version").ok_or(Refusal::missing("isv.missing-version", "缺少版本参数"))?;
    if version != "1.0" {
        return Err(Refusal::invalid(
            "isv.invalid-parameter",
            format!("参数无效: version {version}"),
        ));
    }
    if !app_public_key.verifies(sign_content(params, &["sign"]).as_bytes(), sign) {
        return Err(Refusal::invalid(
            "isv.invalid-signature",
            "验签出错，建议检查签名字符串或签名私钥与应用公钥证书是否匹配",
        ));
    }
    if let Some(url) = get("notify_url")
        && (!(url.starts_with("https://") || url.starts_with("http://")) || url.contains('?'))
    {
        return Err(Refusal::business(
            "ACQ.INVALID_PARAMETER",
            format!("参数无效: notify_url {url}"),
        ));
    }
    let biz = get("biz_content")
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
        .and_then(|b| match b {
            Value::Object(map) => Some(map),
            _ => None,
        })
        .ok_or_else(|| {
            Refusal::business(
                "ACQ.INVALID_PARAMETER",
                "参数无效: biz_content is no JSON object",
            )
        })?;
    check_biz(method, &biz, now)?;
    Ok((method, biz))
}

/// The fields of `biz_content` each method needs (module docs).
fn check_biz(
    method: Method,
    biz: &serde_json::Map<String, Value>,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    let invalid =
        |what: String| Refusal::business("ACQ.INVALID_PARAMETER", format!("参数无效: {what}"));
    // Every field is a JSON string.
    let text = |name: &str| -> Result<Option<&str>, Refusal> {
        match biz.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(invalid(format!("{name} {other} is not a string"))),
        }
    };
    let required = |name: &str| -> Result<&str, Refusal> {
        text(name)?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| invalid(format!("{name} is missing")))
    };
    let amount = |name: &str| -> Result<i64, Refusal> {
        let value = required(name)?;
        let fen = fen(value)
            .ok_or_else(|| invalid(format!("{name} {value:?} is not yuan with two decimals")))?;
        if fen < 1 {
            return Err(invalid(format!("{name} {value} is below 0.01")));
        }
        if fen > MAX_AMOUNT_FEN {
            return Err(Refusal::business(
                "ACQ.TOTAL_FEE_EXCEED",
                format!("订单金额超过限额: {name} {value}"),
            ));
        }
        Ok(fen)
    };
    let out_trade_no = required("out_trade_no")?;
    if out_trade_no.len() > 64
        || !out_trade_no
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(invalid(format!(
            "out_trade_no {out_trade_no:?}: 1 to 64 letters, digits or _"
        )));
    }
    match method {
        Method::PagePay | Method::WapPay | Method::Precreate => {
            amount("total_amount")?;
            let subject = required("subject")?;
            if subject.chars().count() > 256 || subject.contains(['/', '=', '&']) {
                return Err(invalid(format!(
                    "subject {subject:?}: at most 256 characters, none of / = &"
                )));
            }
            let product_code = text("product_code")?;
            let expected = match method {
                Method::PagePay => Some("FAST_INSTANT_TRADE_PAY"),
                Method::WapPay => Some("QUICK_WAP_WAY"),
                _ => product_code.map(|_| "FACE_TO_FACE_PAYMENT"),
            };
            if product_code != expected {
                return Err(invalid(format!(
                    "product_code {product_code:?} for {}, not {expected:?}",
                    method.name()
                )));
            }
            if let Some(time_expire) = text("time_expire")? {
                let at = parse_beijing_time(time_expire).ok_or_else(|| {
                    invalid(format!(
                        "time_expire {time_expire:?} is not yyyy-MM-dd HH:mm:ss"
                    ))
                })?;
                if at < now {
                    return Err(invalid(format!(
                        "time_expire {time_expire} is past (Beijing time is {})",
                        beijing_time(now)
                    )));
                }
            }
        }
        Method::Refund => {
            amount("refund_amount")?;
            let request_no = required("out_request_no")?;
            if request_no.chars().count() > 64 {
                return Err(invalid(format!(
                    "out_request_no {request_no:?}: at most 64"
                )));
            }
        }
        Method::Query | Method::Close => {}
    }
    Ok(())
}

#[derive(Default)]
struct State {
    trades: HashMap<String, FakeTrade>,
    /// Precreated QR codes, by content.
    codes: HashMap<String, Offer>,
    calls: HashMap<&'static str, u32>,
    failing: HashMap<&'static str, u32>,
    unsigned: HashMap<&'static str, u32>,
    forged: HashMap<&'static str, u32>,
    /// Successful refunds (money moved) per `out_request_no`.
    refunds: HashMap<String, u32>,
    /// Calls refused before their method's business, and why.
    refusals: Vec<String>,
    /// The last request of each method (its decoded parameters).
    last: HashMap<&'static str, Params>,
}

/// The fake gateway; stopped when dropped.
pub struct FakeAlipay {
    /// The gateway URL to configure (`SHOP__PAYMENT__ALIPAY__GATEWAY_URL`).
    pub gateway_url: String,
    state: Arc<Mutex<State>>,
    server: actix_web::dev::ServerHandle,
    client: reqwest::Client,
}

impl Drop for FakeAlipay {
    fn drop(&mut self) {
        drop(self.server.stop(false));
    }
}

struct Shared {
    state: Arc<Mutex<State>>,
    app_public_key: PublicKey,
    platform_key: PrivateKey,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FakeAlipay {
    /// Starts the fake on a random loopback port.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = web::Data::new(Shared {
            state: state.clone(),
            app_public_key: app_public_key(),
            platform_key: platform_private_key(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("fake Alipay port");
        let port = listener.local_addr().expect("address").port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .app_data(web::PayloadConfig::new(1 << 20))
                .route("/gateway.do", web::post().to(gateway))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("fake Alipay listens")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            gateway_url: format!("http://127.0.0.1:{port}/gateway.do"),
            state,
            server: handle,
            client: reqwest::Client::new(),
        }
    }

    /// The settings that point shop at this fake (with `seller_id` when given).
    pub fn settings(&self, seller_id: Option<&str>) -> Vec<(String, String)> {
        let mut settings = vec![
            (
                "SHOP__PAYMENT__ALIPAY__APP_ID".to_owned(),
                APP_ID.to_owned(),
            ),
            (
                "SHOP__PAYMENT__ALIPAY__PRIVATE_KEY_PATH".to_owned(),
                fixture("alipay_app_private_pkcs1.b64"),
            ),
            (
                "SHOP__PAYMENT__ALIPAY__ALIPAY_PUBLIC_KEY_PATH".to_owned(),
                fixture("alipay_platform_public_spki.b64"),
            ),
            (
                "SHOP__PAYMENT__ALIPAY__GATEWAY_URL".to_owned(),
                self.gateway_url.clone(),
            ),
        ];
        if let Some(seller_id) = seller_id {
            settings.push((
                "SHOP__PAYMENT__ALIPAY__SELLER_ID".to_owned(),
                seller_id.to_owned(),
            ));
        }
        settings
    }

    /// How many calls of `method` reached the fake (failed ones included).
    pub fn calls(&self, method: Method) -> u32 {
        lock(&self.state)
            .calls
            .get(method.name())
            .copied()
            .unwrap_or(0)
    }

    /// How many refunds with this `out_request_no` moved money.
    pub fn refunds(&self, out_request_no: &str) -> u32 {
        lock(&self.state)
            .refunds
            .get(out_request_no)
            .copied()
            .unwrap_or(0)
    }

    /// Every call refused for its common parameters, its signature or its
    /// `biz_content` (not for the state of a trade), and why.
    pub fn refusals(&self) -> Vec<String> {
        lock(&self.state).refusals.clone()
    }

    /// How many calls were refused (see [`FakeAlipay::refusals`]).
    pub fn refused_requests(&self) -> usize {
        lock(&self.state).refusals.len()
    }

    /// The last request of `method`, decoded.
    pub fn last_request(&self, method: Method) -> Option<Params> {
        lock(&self.state).last.get(method.name()).cloned()
    }

    /// Where the trade stands, if the fake knows it.
    pub fn trade_status(&self, out_trade_no: &str) -> Option<FakeTradeStatus> {
        lock(&self.state)
            .trades
            .get(out_trade_no)
            .map(|t| t.status.clone())
    }

    /// The next `n` calls of `method` answer 503 and do nothing.
    pub fn fail_next(&self, method: Method, n: u32) {
        lock(&self.state).failing.insert(method.name(), n);
    }

    /// The next `n` calls of `method` answer an unsigned refusal saying the
    /// trade does not exist (a proxy's or a forger's answer) and do nothing.
    pub fn unsigned_next(&self, method: Method, n: u32) {
        lock(&self.state).unsigned.insert(method.name(), n);
    }

    /// The next `n` calls of `method` answer a success that says the trade
    /// was paid, signed with the application's key instead of Alipay's (a
    /// forger's answer), and do nothing.
    pub fn forge_next(&self, method: Method, n: u32) {
        lock(&self.state).forged.insert(method.name(), n);
    }

    /// The buyer pays what `payment_url` offers (a page or wap URL, checked
    /// as the real gateway checks it when the buyer opens it, or a
    /// precreated QR code). With `notify`, the fake then sends the
    /// notification and answers shop's reply. Answers the trade number and
    /// that reply. Panics when the offer cannot be paid (a URL the gateway
    /// refuses, an unknown code, a trade closed or paid).
    pub async fn pay(&self, payment_url: &str, notify: bool) -> (String, Option<(u16, String)>) {
        let offer = self
            .offer(payment_url)
            .unwrap_or_else(|refusal| panic!("the buyer cannot pay {payment_url}: {refusal}"));
        let trade_no = {
            let mut state = lock(&self.state);
            if let Some(trade) = state.trades.get(&offer.out_trade_no) {
                panic!(
                    "trade {} cannot be paid: it is {:?}",
                    offer.out_trade_no, trade.status
                );
            }
            let trade_no = format!("2026{}", &uuid::Uuid::now_v7().as_u128().to_string()[..24]);
            state.trades.insert(
                offer.out_trade_no.clone(),
                FakeTrade {
                    total_fen: offer.total_fen,
                    subject: offer.subject.clone(),
                    notify_url: offer.notify_url.clone(),
                    status: FakeTradeStatus::Paid,
                    trade_no: Some(trade_no.clone()),
                    refunded_fen: 0,
                },
            );
            trade_no
        };
        let reply = if notify {
            Some(self.notify(&offer.out_trade_no, |_| {}).await)
        } else {
            None
        };
        (trade_no, reply)
    }

    /// Whether the buyer could pay `payment_url` (its trade is not closed or paid).
    pub fn can_pay(&self, payment_url: &str) -> bool {
        self.offer(payment_url)
            .is_ok_and(|offer| !lock(&self.state).trades.contains_key(&offer.out_trade_no))
    }

    /// What `payment_url` offers the buyer, or why the gateway refuses it.
    fn offer(&self, payment_url: &str) -> Result<Offer, String> {
        if let Some(offer) = lock(&self.state).codes.get(payment_url) {
            return Ok(offer.clone());
        }
        let query = payment_url
            .strip_prefix(&format!("{}?", self.gateway_url))
            .ok_or("neither a precreated code nor a URL of this gateway")?;
        let params = decode_form(query.as_bytes())?;
        let (method, biz) = check_common(&params, &app_public_key(), Utc::now()).map_err(|r| {
            eprintln!("the fake Alipay refused a pay URL: {r}");
            lock(&self.state).refusals.push(format!("pay URL: {r}"));
            r.to_string()
        })?;
        if method != Method::PagePay && method != Method::WapPay {
            return Err(format!("{} is not a pay URL's method", method.name()));
        }
        let field = |name: &str| biz[name].as_str().unwrap_or_default().to_owned();
        Ok(Offer {
            out_trade_no: field("out_trade_no"),
            total_fen: fen(&field("total_amount")).unwrap_or_default(),
            subject: field("subject"),
            notify_url: params.get("notify_url").cloned(),
        })
    }

    /// The fields of the notification of a paid trade, as the real one sends
    /// them (before `sign_type` and `sign`), changed by `edit`.
    pub fn notification_fields(
        &self,
        out_trade_no: &str,
        edit: impl FnOnce(&mut Params),
    ) -> Params {
        let trade = lock(&self.state)
            .trades
            .get(out_trade_no)
            .cloned()
            .expect("a trade the fake knows");
        let now = beijing_time(Utc::now());
        let amount = yuan(trade.total_fen);
        let mut fields: Params = [
            ("notify_time", now.clone()),
            ("notify_type", "trade_status_sync".to_owned()),
            (
                "notify_id",
                format!("2026{}", uuid::Uuid::now_v7().simple()),
            ),
            ("charset", "utf-8".to_owned()),
            ("version", "1.0".to_owned()),
            ("app_id", APP_ID.to_owned()),
            ("seller_id", SELLER_ID.to_owned()),
            ("buyer_id", "2088102177846880".to_owned()),
            ("out_trade_no", out_trade_no.to_owned()),
            ("trade_no", trade.trade_no.clone().unwrap_or_default()),
            ("trade_status", "TRADE_SUCCESS".to_owned()),
            ("total_amount", amount.clone()),
            ("receipt_amount", amount.clone()),
            ("buyer_pay_amount", amount),
            ("subject", trade.subject.clone()),
            ("gmt_create", now.clone()),
            ("gmt_payment", now),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        edit(&mut fields);
        fields
    }

    /// A notification's body signed as the real Alipay signs it.
    pub fn sign_notification(&self, fields: &Params) -> String {
        signed_notification(&platform_private_key(), fields)
    }

    /// Sends the notification of a paid trade (changed by `edit`) to the
    /// notify URL shop gave; answers shop's reply.
    pub async fn notify(
        &self,
        out_trade_no: &str,
        edit: impl FnOnce(&mut Params),
    ) -> (u16, String) {
        let body = self.sign_notification(&self.notification_fields(out_trade_no, edit));
        self.post_notification(out_trade_no, body).await
    }

    /// Posts `body` to the notify URL of the trade (a test's own bytes:
    /// forged, tampered, replayed).
    pub async fn post_notification(&self, out_trade_no: &str, body: String) -> (u16, String) {
        let url = lock(&self.state)
            .trades
            .get(out_trade_no)
            .and_then(|t| t.notify_url.clone())
            .expect("the trade's notify URL");
        let response = self
            .client
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(body)
            .send()
            .await
            .expect("notification sent");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }
}

/// The parameters of a call: its query string, and its body when that is a
/// form (the gateway reads a body of any other type as no parameters).
fn call_params(req: &HttpRequest, body: &[u8]) -> Result<Params, String> {
    let mut params = decode_form(req.query_string().as_bytes())?;
    let is_form = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if is_form {
        for (name, value) in decode_form(body)? {
            if params.insert(name.clone(), value).is_some() {
                return Err(format!("{name} given twice"));
            }
        }
    }
    Ok(params)
}

/// `POST /gateway.do`: one server call.
async fn gateway(req: HttpRequest, shared: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let json_answer = |text: String| {
        HttpResponse::Ok()
            .content_type("application/json;charset=utf-8")
            .body(text)
    };
    let params = call_params(&req, &body);
    let method = params
        .as_ref()
        .ok()
        .and_then(|p| p.get("method"))
        .and_then(|m| Method::from_name(m));
    let mut state = lock(&shared.state);
    if let (Ok(params), Some(method)) = (&params, method) {
        *state.calls.entry(method.name()).or_default() += 1;
        state.last.insert(method.name(), params.clone());
        if let Some(left) = state.failing.get_mut(method.name())
            && *left > 0
        {
            *left -= 1;
            return HttpResponse::ServiceUnavailable().body("busy");
        }
        if let Some(left) = state.unsigned.get_mut(method.name())
            && *left > 0
        {
            *left -= 1;
            let content = Refusal::business("ACQ.TRADE_NOT_EXIST", "交易不存在").content();
            return json_answer(format!(r#"{{"{}":{content}}}"#, method.response_key()));
        }
        if let Some(left) = state.forged.get_mut(method.name())
            && *left > 0
        {
            *left -= 1;
            let out_trade_no = params
                .get("biz_content")
                .and_then(|b| serde_json::from_str::<Value>(b).ok())
                .and_then(|b| b["out_trade_no"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let content = format!(
                r#"{{"code":"10000","msg":"Success","trade_no":"2026forged","out_trade_no":"{out_trade_no}","trade_status":"TRADE_SUCCESS","total_amount":"246.90","fund_change":"Y","refund_fee":"246.90"}}"#
            );
            return json_answer(signed_answer(&app_private_key(), method, &content));
        }
    }
    let checked = match params {
        Ok(params) => check_common(&params, &shared.app_public_key, Utc::now())
            .map(|(method, biz)| (params, method, biz)),
        Err(duplicate) => Err(Refusal::invalid(
            "isv.invalid-parameter",
            format!("参数无效: {duplicate}"),
        )),
    };
    let (content, method) = match checked {
        Ok((params, method, biz)) => (answer(&mut state, method, &biz, &params), Some(method)),
        Err(refusal) => {
            let refused = format!("{}: {refusal}", method.map_or("(no method)", Method::name));
            eprintln!("the fake Alipay refused {refused}");
            state.refusals.push(refused);
            (refusal.content(), method)
        }
    };
    drop(state);
    match method {
        Some(method) => json_answer(signed_answer(&shared.platform_key, method, &content)),
        // No method to answer for: Alipay's `error_response`, unsigned.
        None => json_answer(format!(r#"{{"error_response":{content}}}"#)),
    }
}

fn refusal(sub_code: &'static str, sub_msg: &str) -> String {
    Refusal::business(sub_code, sub_msg).content()
}

/// The `*_response` value's text for a call the gateway accepted. Written by
/// hand where the real Alipay escapes `/` as `\/` and writes Chinese as is:
/// shop must verify these bytes, not a re-serialisation.
fn answer(
    state: &mut State,
    method: Method,
    biz: &serde_json::Map<String, Value>,
    params: &Params,
) -> String {
    let field = |name: &str| biz.get(name).and_then(Value::as_str).unwrap_or_default();
    let out_trade_no = field("out_trade_no").to_owned();
    let not_exist = || refusal("ACQ.TRADE_NOT_EXIST", "交易不存在");
    match method {
        Method::Precreate => {
            let code = format!("https://qr.alipay.com/bax{out_trade_no}");
            state.codes.insert(
                code.clone(),
                Offer {
                    out_trade_no: out_trade_no.clone(),
                    total_fen: fen(field("total_amount")).unwrap_or_default(),
                    subject: field("subject").to_owned(),
                    notify_url: params.get("notify_url").cloned(),
                },
            );
            format!(
                r#"{{"code":"10000","msg":"Success","out_trade_no":"{out_trade_no}","qr_code":"{}"}}"#,
                code.replace('/', "\\/")
            )
        }
        Method::Query => match state.trades.get(&out_trade_no) {
            Some(trade) if trade.trade_no.is_some() => {
                let status = match trade.status {
                    FakeTradeStatus::Paid => "TRADE_SUCCESS",
                    FakeTradeStatus::Closed | FakeTradeStatus::Refunded => "TRADE_CLOSED",
                };
                format!(
                    r#"{{"code":"10000","msg":"Success","trade_no":"{}","out_trade_no":"{out_trade_no}","buyer_logon_id":"159****5620","trade_status":"{status}","total_amount":"{}","store_name":"测试店\/一号"}}"#,
                    trade.trade_no.clone().unwrap_or_default(),
                    yuan(trade.total_fen)
                )
            }
            _ => not_exist(),
        },
        Method::Close => match state.trades.get(&out_trade_no) {
            // Paid (or refunded since): too late to close.
            Some(trade) if trade.trade_no.is_some() => {
                refusal("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
            }
            _ => {
                // Never paid: whatever offered it can no longer be paid.
                state
                    .trades
                    .entry(out_trade_no.clone())
                    .or_insert(FakeTrade {
                        total_fen: 0,
                        subject: String::new(),
                        notify_url: None,
                        status: FakeTradeStatus::Closed,
                        trade_no: None,
                        refunded_fen: 0,
                    });
                let precreated = state.codes.values().any(|o| o.out_trade_no == out_trade_no);
                if precreated {
                    format!(r#"{{"code":"10000","msg":"Success","out_trade_no":"{out_trade_no}"}}"#)
                } else {
                    not_exist()
                }
            }
        },
        Method::Refund => {
            let request_no = field("out_request_no").to_owned();
            let amount = fen(field("refund_amount")).unwrap_or_default();
            let done_before = state.refunds.contains_key(&request_no);
            let Some(trade) = state.trades.get_mut(&out_trade_no) else {
                return not_exist();
            };
            let Some(trade_no) = trade.trade_no.clone() else {
                return not_exist();
            };
            let fund_change = if done_before {
                "N"
            } else if trade.refunded_fen + amount > trade.total_fen {
                return refusal("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限");
            } else {
                trade.refunded_fen += amount;
                if trade.refunded_fen == trade.total_fen {
                    trade.status = FakeTradeStatus::Refunded;
                }
                "Y"
            };
            let refunded = trade.refunded_fen;
            if fund_change == "Y" {
                *state.refunds.entry(request_no).or_default() += 1;
            }
            format!(
                r#"{{"code":"10000","msg":"Success","trade_no":"{trade_no}","out_trade_no":"{out_trade_no}","buyer_logon_id":"159****5620","fund_change":"{fund_change}","refund_fee":"{}","gmt_refund_pay":"{}"}}"#,
                yuan(refunded),
                beijing_time(Utc::now())
            )
        }
        // Not server calls: the buyer's browser opens these.
        Method::PagePay | Method::WapPay => refusal("ACQ.INVALID_PARAMETER", "参数无效"),
    }
}

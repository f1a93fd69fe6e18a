//! A fake Alipay gateway on loopback, with its own key pair (the committed
//! test-only fixtures): it verifies shop's request signatures with the
//! application's public key, keeps its trades, answers signed with the
//! "Alipay" private key over the exact bytes it sends (escaped slashes and
//! Chinese text included, as the real one writes them), and sends
//! notifications signed as the real one does.
//!
//! Trades: unknown until the buyer pays (a precreated QR code is not a trade
//! yet: `ACQ.TRADE_NOT_EXIST`, as before a real scan); paid; closed (a close
//! of a paid trade is refused with `ACQ.TRADE_STATUS_ERROR`); refunded (an
//! `out_request_no` refunds once: a retry answers `fund_change=N`).
//!
//! Test controls: [`FakeAlipay::pay`] (the buyer pays, with or without the
//! notification), [`FakeAlipay::fail_next`] (503s), [`FakeAlipay::unsigned_next`]
//! (unsigned refusals), [`FakeAlipay::forge_next`] (answers signed with the
//! wrong key), and counters of calls per method and of refunds.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};

use actix_web::{App, HttpResponse, HttpServer, web};
use domain_payment::providers::alipay::{
    self, Method, Params, decode_form, encode_form, format_time, signed_notification,
    signed_response, verify_request, yuan,
};
use domain_payment::providers::keys::{PrivateKey, PublicKey};
use serde_json::{Value, json};

/// The application id shop is configured with.
pub const APP_ID: &str = "2021000000000001";
/// The merchant (seller) the fake's notifications name.
pub const SELLER_ID: &str = "2088000000000002";

/// A committed test-only key or fixture file.
pub fn fixture(name: &str) -> String {
    format!(
        "{}/../domain-payment/tests/fixtures/providers/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn read_fixture(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The key the fake signs answers and notifications with ("Alipay's").
pub fn platform_private_key() -> PrivateKey {
    PrivateKey::parse(&read_fixture("alipay_platform_private_pkcs8.pem")).expect("platform key")
}

/// The application's private key (shop's): what a forger who stole nothing
/// of Alipay's might sign with.
pub fn app_private_key() -> PrivateKey {
    PrivateKey::parse(&read_fixture("alipay_app_private_pkcs8.pem")).expect("app key")
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
    /// Requests whose signature or app id was wrong.
    refused_requests: u32,
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
            app_public_key: PublicKey::parse(&read_fixture("alipay_app_public_spki.pem"))
                .expect("app public key"),
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

    /// Requests refused for their signature or app id.
    pub fn refused_requests(&self) -> u32 {
        lock(&self.state).refused_requests
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

    /// The buyer pays what `payment_url` offers (a page or wap URL, verified
    /// as the real gateway verifies it, or a precreated QR code). With
    /// `notify`, the fake then sends the notification and answers shop's
    /// reply. Answers the trade number and that reply. Panics when the
    /// offer cannot be paid (a bad signature, an unknown code, a trade
    /// closed or paid).
    pub async fn pay(&self, payment_url: &str, notify: bool) -> (String, Option<(u16, String)>) {
        let offer = self.offer(payment_url).expect("an offer the buyer can pay");
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
            .is_some_and(|offer| !lock(&self.state).trades.contains_key(&offer.out_trade_no))
    }

    fn offer(&self, payment_url: &str) -> Option<Offer> {
        if let Some(offer) = lock(&self.state).codes.get(payment_url) {
            return Some(offer.clone());
        }
        let query = payment_url.strip_prefix(&format!("{}?", self.gateway_url))?;
        let params = decode_form(query.as_bytes()).ok()?;
        let app_public_key =
            PublicKey::parse(&read_fixture("alipay_app_public_spki.pem")).expect("app public key");
        verify_request(&app_public_key, &params).ok()?;
        let method = params.get("method")?;
        if method != Method::PagePay.name() && method != Method::WapPay.name() {
            return None;
        }
        let biz: Value = serde_json::from_str(params.get("biz_content")?).ok()?;
        Some(Offer {
            out_trade_no: biz["out_trade_no"].as_str()?.to_owned(),
            total_fen: alipay::fen(biz["total_amount"].as_str()?).ok()?,
            subject: biz["subject"].as_str()?.to_owned(),
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
        let now = chrono::Utc::now();
        let amount = yuan(trade.total_fen).expect("amount");
        let mut fields: Params = [
            ("notify_time", format_time(now)),
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
            ("gmt_create", format_time(now)),
            ("gmt_payment", format_time(now)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        edit(&mut fields);
        fields
    }

    /// A notification's body signed as the real Alipay signs it.
    pub fn sign_notification(&self, fields: &Params) -> String {
        signed_notification(&platform_private_key(), fields).expect("signed")
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

/// `POST /gateway.do`: one server call.
async fn gateway(shared: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let Ok(params) = decode_form(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    let Some(method) = params.get("method").and_then(|m| Method::from_name(m)) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut state = lock(&shared.state);
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
        let content = r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_NOT_EXIST","sub_msg":"交易不存在"}"#;
        return HttpResponse::Ok()
            .content_type("application/json;charset=utf-8")
            .body(format!(r#"{{"{}":{content}}}"#, method.response_key()));
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
        let response = signed_response(&app_private_key(), method, &content).expect("forged");
        return HttpResponse::Ok()
            .content_type("application/json;charset=utf-8")
            .body(response);
    }
    let signed = verify_request(&shared.app_public_key, &params).is_ok()
        && params.get("app_id").map(String::as_str) == Some(APP_ID)
        && params.get("sign_type").map(String::as_str) == Some("RSA2")
        && params.get("charset").map(String::as_str) == Some("utf-8");
    let content = if signed {
        let biz: Value = params
            .get("biz_content")
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        answer(&mut state, method, &biz, &params)
    } else {
        state.refused_requests += 1;
        r#"{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature","sub_msg":"验签出错"}"#.to_owned()
    };
    drop(state);
    let response = signed_response(&shared.platform_key, method, &content).expect("signed answer");
    HttpResponse::Ok()
        .content_type("application/json;charset=utf-8")
        .body(response)
}

fn refusal(sub_code: &str, sub_msg: &str) -> String {
    json!({"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg})
        .to_string()
}

/// The `*_response` value's text for a verified call. Written by hand where
/// the real Alipay escapes `/` as `\/` and writes Chinese as is: shop must
/// verify these bytes, not a re-serialisation.
fn answer(state: &mut State, method: Method, biz: &Value, params: &Params) -> String {
    let out_trade_no = biz["out_trade_no"].as_str().unwrap_or_default().to_owned();
    let not_exist = || refusal("ACQ.TRADE_NOT_EXIST", "交易不存在");
    match method {
        Method::Precreate => {
            let code = format!("https://qr.alipay.com/bax{out_trade_no}");
            let total_fen = biz["total_amount"]
                .as_str()
                .and_then(|a| alipay::fen(a).ok())
                .unwrap_or(0);
            state.codes.insert(
                code.clone(),
                Offer {
                    out_trade_no: out_trade_no.clone(),
                    total_fen,
                    subject: biz["subject"].as_str().unwrap_or_default().to_owned(),
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
                    yuan(trade.total_fen).unwrap_or_default()
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
            let request_no = biz["out_request_no"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let amount = biz["refund_amount"]
                .as_str()
                .and_then(|a| alipay::fen(a).ok())
                .unwrap_or(0);
            let done_before = state.refunds.contains_key(&request_no);
            let Some(trade) = state.trades.get_mut(&out_trade_no) else {
                return not_exist();
            };
            let Some(trade_no) = trade.trade_no.clone() else {
                return not_exist();
            };
            let fund_change = if done_before {
                "N"
            } else if amount <= 0 || trade.refunded_fen + amount > trade.total_fen {
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
                yuan(refunded).unwrap_or_default(),
                format_time(chrono::Utc::now())
            )
        }
        Method::PagePay | Method::WapPay => refusal("ACQ.INVALID_PARAMETER", "参数无效"),
    }
}

/// Encodes parameters as a form (for tests that forge bodies by hand).
pub fn form(params: &Params) -> String {
    encode_form(params)
}

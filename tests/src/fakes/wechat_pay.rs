//! A fake WeChat Pay (API v3) on loopback, with the test-only fixture keys
//! (`domain-payment/tests/fixtures/providers/`): it verifies shop's request
//! signatures with the merchant's public key, keeps trade state (`NOTPAY`
//! after a create, `SUCCESS` once the buyer pays, `CLOSED`, `REFUND`; a close
//! of a paid trade refused; one `out_refund_no` refunding once), signs every
//! answer over its raw bytes with the platform key, and sends notifications
//! signed and encrypted (AES-256-GCM under the APIv3 key) exactly as WeChat Pay does.
//!
//! Test controls: [`FakeWechatPay::pay`] (the buyer pays, with or without the
//! notification), [`FakeWechatPay::fail_next`] (the next N calls of an
//! operation answer 500), [`FakeWechatPay::calls`] (calls per operation), and
//! the pieces to build notifications shop must refuse.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};

use actix_web::{App, HttpRequest, HttpResponse, web};
use domain_payment::model::PaymentId;
use domain_payment::providers::OutTradeNo;
use domain_payment::providers::keys::{PrivateKey, PublicKey};
use domain_payment::providers::wechat_pay::{
    ApiV3Key, Authorization, EncryptedResource, Notification, SignedHeaders, TradeState,
    Transaction, TransactionAmount, encrypt_resource,
};
use serde_json::{Value, json};

pub const MCH_ID: &str = "1900000001";
pub const APP_ID: &str = "wxd678efh567hg6787";
pub const MERCHANT_SERIAL_NO: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";
pub const PUBLIC_KEY_ID: &str = "PUB_KEY_ID_0119000000012025013100000000000001";
pub const APIV3_KEY: &str = "0123456789abcdefghijABCDEFGHIJ01";

/// Where the fixture keys are.
pub fn fixture(file: &str) -> String {
    format!(
        "{}/../domain-payment/tests/fixtures/providers/{file}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn read_fixture(file: &str) -> String {
    std::fs::read_to_string(fixture(file)).expect("fixture key")
}

/// What shop asks of WeChat Pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Create,
    Query,
    Close,
    Refund,
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
    chrono::Utc::now().timestamp()
}

impl FakeWechatPay {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            merchant_public: PublicKey::parse(&read_fixture("wechat_merchant_public_spki.pem"))
                .expect("merchant public key"),
            platform_private: PrivateKey::parse(&read_fixture("wechat_platform_private_pkcs8.pem"))
                .expect("platform private key"),
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
            format!("{:012}", state.counter)
        };
        let key = ApiV3Key::new(APIV3_KEY).expect("APIv3 key");
        let plaintext = serde_json::to_vec(transaction).expect("transaction");
        encrypt_resource(&key, &nonce, associated_data, "transaction", &plaintext).expect("encrypt")
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
            create_time: chrono::Utc::now().to_rfc3339(),
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
        )
        .expect("sign");
        SignedNotification { body, headers }
    }

    /// Sends a notification to shop and returns its answer.
    pub async fn deliver(&self, url: &str, notification: &SignedNotification) -> (u16, String) {
        let mut request = self
            .client
            .post(url)
            .header("Content-Type", "application/json")
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

pub fn out_trade_no(payment_id: &str) -> String {
    OutTradeNo::from_payment_id(&PaymentId::from(payment_id.to_owned()))
        .expect("a payment id")
        .to_string()
}

fn transaction_of(trade: &FakeTrade) -> Transaction {
    Transaction {
        appid: APP_ID.into(),
        mchid: MCH_ID.into(),
        out_trade_no: trade.out_trade_no.clone(),
        transaction_id: trade.transaction_id.clone(),
        trade_type: Some(trade.trade_type.clone()),
        trade_state: trade.state,
        trade_state_desc: None,
        success_time: (trade.state == TradeState::Success).then(chrono::Utc::now),
        amount: Some(TransactionAmount {
            total: trade.total,
            payer_total: Some(trade.total),
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
    if signed {
        let nonce = format!("{:032x}", uuid::Uuid::now_v7().as_u128());
        let headers = SignedHeaders::sign(
            &shared.platform_private,
            PUBLIC_KEY_ID,
            now(),
            &nonce,
            bytes.as_bytes(),
        )
        .expect("sign");
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
    let (fail, signed, forged) = {
        let mut state = shared.state();
        *state.calls.entry(op).or_default() += 1;
        let fail = take(&mut state.fail_next, op);
        let forged = take(&mut state.forged_not_found_next, op);
        let unsigned = forged || take(&mut state.unsigned_next, op);
        (fail, !unsigned, forged)
    };
    if forged {
        return answer(&shared, 404, error("ORDER_NOT_EXIST", "订单不存在"), false);
    }
    if fail {
        return answer(&shared, 500, error("SYSTEM_ERROR", "系统错误"), signed);
    }
    // shop's signature, over the method, the path with its query, and the body.
    let body_text = String::from_utf8_lossy(&body).into_owned();
    let authorization = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(Authorization::parse);
    let verified = authorization.as_ref().is_some_and(|a| {
        a.mchid == MCH_ID
            && a.serial_no == MERCHANT_SERIAL_NO
            && a.timestamp
                .parse::<i64>()
                .is_ok_and(|t| (now() - t).abs() < 300)
            && a.verify(
                &shared.merchant_public,
                &method,
                &path_and_query,
                &body_text,
            )
            .is_ok()
    });
    if !verified {
        shared.state().bad_signatures += 1;
        return answer(&shared, 401, error("SIGN_ERROR", "签名错误"), signed);
    }
    let json: Value = serde_json::from_str(&body_text).unwrap_or(Value::Null);
    let (status, body) = match op {
        Op::Create => create(&shared, &path, &json),
        Op::Query => query(&shared, &path, req.query_string()),
        Op::Close => close(&shared, &path, &json),
        Op::Refund => refund(&shared, &json),
    };
    answer(&shared, status, body, signed)
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

fn create(shared: &Shared, path: &str, body: &Value) -> (u16, Option<Value>) {
    let text = |field: &str| body[field].as_str().unwrap_or_default().to_owned();
    let h5 = path.ends_with("/h5");
    if text("mchid") != MCH_ID || text("appid") != APP_ID {
        return (400, error("PARAM_ERROR", "mchid/appid"));
    }
    let out_trade_no = text("out_trade_no");
    let total = body["amount"]["total"].as_i64().unwrap_or(0);
    let notify_url = text("notify_url");
    let time_expire = text("time_expire");
    if out_trade_no.len() < 6
        || total < 1
        || body["amount"]["currency"] != "CNY"
        || notify_url.contains('?')
        || chrono::DateTime::parse_from_rfc3339(&time_expire).is_err()
    {
        return (400, error("PARAM_ERROR", "参数错误"));
    }
    let payer_client_ip = body["scene_info"]["payer_client_ip"]
        .as_str()
        .map(str::to_owned);
    if h5 && payer_client_ip.is_none() {
        return (400, error("PARAM_ERROR", "scene_info.payer_client_ip"));
    }
    let mut state = shared.state();
    let trade = state
        .trades
        .entry(out_trade_no.clone())
        .or_insert_with(|| FakeTrade {
            out_trade_no: out_trade_no.clone(),
            total,
            description: text("description"),
            time_expire,
            notify_url,
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

fn query(shared: &Shared, path: &str, query: &str) -> (u16, Option<Value>) {
    if query != format!("mchid={MCH_ID}") {
        return (400, error("PARAM_ERROR", "mchid"));
    }
    let state = shared.state();
    match state.trades.get(&trade_no_in(path)) {
        Some(trade) => (
            200,
            Some(serde_json::to_value(transaction_of(trade)).expect("json")),
        ),
        None => (404, error("ORDER_NOT_EXIST", "订单不存在")),
    }
}

fn close(shared: &Shared, path: &str, body: &Value) -> (u16, Option<Value>) {
    if body["mchid"] != MCH_ID {
        return (400, error("PARAM_ERROR", "mchid"));
    }
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
    let out_trade_no = body["out_trade_no"].as_str().unwrap_or_default().to_owned();
    let out_refund_no = body["out_refund_no"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
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
            "create_time": chrono::Utc::now().to_rfc3339(),
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
    if total != trade.total || amount < 1 || amount > trade.total {
        return (400, error("PARAM_ERROR", "金额错误"));
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

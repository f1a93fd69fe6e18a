//! WeChat Pay end to end, on SQLite and PostgreSQL: shop talks to a fake
//! WeChat Pay on loopback (`shop_tests::fakes::wechat_pay`) exactly as it
//! would to the real one: purchases by QR code and H5, reconciliation when a
//! notification is lost, closing, refunds, and every notification shop must
//! refuse.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use shop_tests::fakes::wechat_pay::{
    self as fake, FakeWechatPay, Op, SignedNotification, TradeState, Transaction, TransactionAmount,
};
use shop_tests::{Backend, StatusCode, TestApp, Value, eventually, holds_for};

shop_tests::on_each_backend!(
    a_purchase_by_qr_code_through_wechat_pay,
    the_wap_channel_opens_an_h5_payment,
    a_lost_notification_is_paid_through_reconciliation,
    a_cancelled_order_has_its_trade_closed,
    a_late_success_is_refunded_once_despite_failures,
    a_refund_still_processing_is_asked_again_with_the_same_id,
    forged_stale_and_mismatched_notifications_change_nothing,
    a_replayed_notification_applies_once,
    an_unsigned_answer_is_never_believed,
    an_order_in_another_currency_is_refused,
    an_amount_wechat_pay_cannot_take_is_refused,
);

const PAYER: &str = "wechat-payer";

/// Asks about pending payments at once, every second.
const RECONCILE_NOW: &[(&str, &str)] = &[
    ("SHOP__PAYMENT__RECONCILE_WINDOW_SECS", "86400"),
    ("SHOP__PAYMENT__QUERY_INTERVAL_SECS", "1"),
];

/// A fake WeChat Pay, and shop configured to use it (the sandbox off).
async fn spawn(backend: Backend, extra: &[(&str, &str)]) -> (FakeWechatPay, TestApp) {
    let fake = FakeWechatPay::start().await;
    let mut settings = fake.settings();
    settings.push(("SHOP__PAYMENT__SANDBOX".into(), "false".into()));
    settings.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let settings: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let app = TestApp::spawn_with(backend, &settings).await;
    (fake, app)
}

/// The fake refused nothing shop sent (a refused call shows why).
fn no_refusals(fake: &FakeWechatPay) {
    assert_eq!(
        fake.refusals(),
        Vec::<String>::new(),
        "WeChat Pay refused shop"
    );
    assert_eq!(fake.bad_signatures(), 0);
}

fn id(payment: &Value) -> &str {
    payment["paymentId"].as_str().unwrap()
}

async fn a_purchase_by_qr_code_through_wechat_pay(backend: Backend) {
    let (fake, app) = spawn(backend, &[]).await;
    let (order, opened) = app
        .open_payment(PAYER, 999_900, 1, "wechat_pay", None)
        .await;
    let trade = fake
        .trade(id(&opened))
        .expect("the trade was created at WeChat Pay");
    // The QR code holds WeChat Pay's code_url.
    assert_eq!(
        opened["paymentUrl"],
        format!("weixin://wxpay/bizpayurl?pr={}", trade.out_trade_no)
    );
    assert!(opened["qrCode"].as_str().unwrap().contains("<svg"));
    assert_eq!(trade.out_trade_no, id(&opened).replace('-', ""));
    assert_eq!(trade.trade_type, "NATIVE");
    assert_eq!(trade.total, 999_900);
    assert_eq!(
        trade.notify_url,
        app.url("/api/v1/payments/notify/wechat_pay")
    );
    // The deadline sent is the order's, in Beijing time.
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(order.json["expiresAt"].clone()).unwrap();
    let sent = chrono::DateTime::parse_from_rfc3339(&trade.time_expire).unwrap();
    assert_eq!(sent.timestamp(), expires.timestamp());
    assert!(
        trade.time_expire.ends_with("+08:00"),
        "{}",
        trade.time_expire
    );
    no_refusals(&fake);

    let (status, body) = fake.pay(id(&opened), true).await.unwrap();
    assert_eq!(status, 204, "{body}");
    assert!(body.is_empty(), "{body}");
    eventually("the order is paid", || async {
        app.order_status(PAYER, &order.order).await == "paid"
    })
    .await;
    let paid = app.payment(PAYER, id(&opened)).await;
    assert_eq!(paid["status"], "succeeded");
    assert_eq!(
        paid["transactionId"].as_str(),
        fake.trade(id(&opened)).unwrap().transaction_id.as_deref()
    );

    // `page` is a QR code too.
    let order = app.order_new_product(PAYER, 999_900, "CNY", 10, 1).await;
    let page = app
        .initiate(PAYER, &order.order, "wechat_pay", Some("page"))
        .await;
    assert_eq!(page.status, StatusCode::CREATED, "{}", page.body);
    assert!(
        page.json["paymentUrl"]
            .as_str()
            .unwrap()
            .starts_with("weixin://")
    );
    no_refusals(&fake);
}

async fn the_wap_channel_opens_an_h5_payment(backend: Backend) {
    let (fake, app) = spawn(backend, &[]).await;
    let order = app.order_new_product(PAYER, 999_900, "CNY", 10, 1).await;
    let opened = app
        .initiate(PAYER, &order.order, "wechat_pay", Some("wap"))
        .await;
    assert_eq!(opened.status, StatusCode::CREATED, "{}", opened.body);
    let trade = fake.trade(id(&opened.json)).unwrap();
    assert_eq!(trade.trade_type, "MWEB");
    assert_eq!(trade.payer_client_ip.as_deref(), Some("127.0.0.1"));
    let url = opened.json["paymentUrl"].as_str().unwrap();
    assert!(url.starts_with("https://wx.tenpay.com/"), "{url}");
    let (status, _) = fake.pay(id(&opened.json), true).await.unwrap();
    assert_eq!(status, 204);
    eventually("the order is paid", || async {
        app.order_status(PAYER, &order.order).await == "paid"
    })
    .await;
    no_refusals(&fake);
}

async fn a_lost_notification_is_paid_through_reconciliation(backend: Backend) {
    let (fake, app) = spawn(backend, RECONCILE_NOW).await;
    let (order, opened) = app
        .open_payment(PAYER, 999_900, 1, "wechat_pay", None)
        .await;
    assert!(fake.pay(id(&opened), false).await.is_none());
    eventually("the order is paid by asking WeChat Pay", || async {
        app.order_status(PAYER, &order.order).await == "paid"
    })
    .await;
    assert!(fake.calls(Op::Query) >= 1);
    let paid = app.payment(PAYER, id(&opened)).await;
    assert_eq!(paid["status"], "succeeded");
    assert_eq!(
        paid["transactionId"].as_str(),
        fake.trade(id(&opened)).unwrap().transaction_id.as_deref()
    );
    no_refusals(&fake);
}

async fn a_cancelled_order_has_its_trade_closed(backend: Backend) {
    let (fake, app) = spawn(backend, &[]).await;
    let (order, opened) = app
        .open_payment(PAYER, 999_900, 1, "wechat_pay", None)
        .await;
    app.cancel(PAYER, &order.order)
        .await
        .assert_status(StatusCode::OK);
    eventually("the trade is closed at WeChat Pay", || async {
        fake.trade(id(&opened)).unwrap().state == TradeState::Closed
    })
    .await;
    assert_eq!(fake.calls(Op::Close), 1);
    assert_eq!(app.payment(PAYER, id(&opened)).await["status"], "closed");
    no_refusals(&fake);
}

async fn a_late_success_is_refunded_once_despite_failures(backend: Backend) {
    let (fake, app) = spawn(backend, &[]).await;
    let (order, opened) = app
        .open_payment(PAYER, 999_900, 1, "wechat_pay", None)
        .await;
    // The buyer pays; the notification is lost; then the order is cancelled.
    fake.pay(id(&opened), false).await;
    fake.fail_next(Op::Refund, 2);
    app.cancel(PAYER, &order.order)
        .await
        .assert_status(StatusCode::OK);
    eventually("the payment is refunded", || async {
        app.payment(PAYER, id(&opened)).await["status"] == "refunded"
    })
    .await;
    assert_eq!(app.order_status(PAYER, &order.order).await, "cancelled");
    // The close found the trade paid, and did not close it.
    assert_eq!(fake.calls(Op::Close), 0);
    assert_eq!(fake.calls(Op::Refund), 3, "two failures, then the refund");
    let refunds = fake.refunds();
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    let (refund_no, refund) = refunds.iter().next().unwrap();
    assert_eq!(refund.amount, 999_900);
    assert_eq!(fake.refunds_made(refund_no), 1);
    holds_for(
        "the money went back once",
        Duration::from_secs(1),
        || async { fake.refunds_made(refund_no) == 1 && fake.calls(Op::Refund) == 3 },
    )
    .await;
    no_refusals(&fake);
}

async fn a_refund_still_processing_is_asked_again_with_the_same_id(backend: Backend) {
    let (fake, app) = spawn(backend, &[]).await;
    let (order, opened) = app
        .open_payment(PAYER, 999_900, 1, "wechat_pay", None)
        .await;
    app.cancel(PAYER, &order.order)
        .await
        .assert_status(StatusCode::OK);
    eventually("the trade is closed at WeChat Pay", || async {
        fake.trade(id(&opened)).unwrap().state == TradeState::Closed
    })
    .await;
    // Paid anyway (a close that came too late, as WeChat Pay may report):
    // the notification arrives after the order was cancelled.
    fake.refunds_process_for(2);
    fake.force_paid(id(&opened));
    let late = fake.transaction(id(&opened));
    refused_not(&fake, &app, &fake.notification(&late)).await;
    eventually("the payment is refunded", || async {
        app.payment(PAYER, id(&opened)).await["status"] == "refunded"
    })
    .await;
    assert_eq!(fake.calls(Op::Refund), 3, "PROCESSING twice, then SUCCESS");
    let refunds = fake.refunds();
    let (refund_no, _) = refunds.iter().next().unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refund_no, &format!("r{}", id(&opened).replace('-', "")));
    assert_eq!(fake.refunds_made(refund_no), 1);
    no_refusals(&fake);
}

/// Asserts shop refused `notification` with a `FAIL` of `status`.
async fn refused(
    fake: &FakeWechatPay,
    app: &TestApp,
    notification: &SignedNotification,
    status: u16,
    what: &str,
) {
    let (answer, body) = fake
        .deliver(&app.url("/api/v1/payments/notify/wechat_pay"), notification)
        .await;
    assert_eq!(answer, status, "{what}: {body}");
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert_eq!(body["code"], "FAIL", "{what}: {body}");
}

async fn forged_stale_and_mismatched_notifications_change_nothing(backend: Backend) {
    let (fake, app) = spawn(backend, &[]).await;
    let (order, opened) = app
        .open_payment(PAYER, 999_900, 1, "wechat_pay", None)
        .await;
    let before = app.payment(PAYER, id(&opened)).await;
    // Paid at WeChat Pay (its own notification lost), so that only what shop
    // checks stands between these forgeries and the order.
    fake.pay(id(&opened), false).await;
    let genuine = fake.transaction(id(&opened));

    let mut cases: Vec<(&str, SignedNotification, u16)> = Vec::new();
    for (what, edit) in [
        (
            "a tampered amount",
            (|t| {
                if let Some(amount) = t.amount.as_mut() {
                    amount.total += 1;
                }
            }) as fn(&mut Transaction),
        ),
        ("another merchant", |t| t.mchid = "1900000002".into()),
        ("another app", |t| t.appid = "wx0000000000000000".into()),
    ] {
        let mut transaction = genuine.clone();
        edit(&mut transaction);
        cases.push((what, fake.notification(&transaction), 400));
    }
    let stale = fake.sign_notification(
        &fake.seal(&genuine, "transaction"),
        chrono::Utc::now().timestamp() - 300,
    );
    cases.push(("a stale timestamp", stale, 401));
    let mut unknown_key = fake.notification(&genuine);
    unknown_key.headers.serial = "PUB_KEY_ID_0119000000012025013100000000000099".into();
    cases.push(("an unknown key id", unknown_key, 401));
    let mut probe = fake.notification(&genuine);
    probe.headers.signature = format!("WECHATPAY/SIGNTEST/{}", probe.headers.signature);
    cases.push(("the SIGNTEST probe", probe, 401));
    let mut altered = fake.notification(&genuine);
    altered.body = altered
        .body
        .replace("TRANSACTION.SUCCESS", "TRANSACTION.SUCCESS ");
    cases.push(("a body altered after signing", altered, 401));
    let mut bad_tag = fake.seal(&genuine, "transaction");
    let mut sealed = STANDARD.decode(&bad_tag.ciphertext).unwrap();
    *sealed.last_mut().unwrap() ^= 1;
    bad_tag.ciphertext = STANDARD.encode(sealed);
    cases.push((
        "a bad GCM tag",
        fake.sign_notification(&bad_tag, chrono::Utc::now().timestamp()),
        400,
    ));
    let mut other_aad = fake.seal(&genuine, "transaction");
    other_aad.associated_data = "refund".into();
    cases.push((
        "other associated data",
        fake.sign_notification(&other_aad, chrono::Utc::now().timestamp()),
        400,
    ));
    let mut unknown_trade = genuine.clone();
    unknown_trade.out_trade_no = uuid::Uuid::now_v7().simple().to_string();
    cases.push(("an unknown trade", fake.notification(&unknown_trade), 404));

    for (what, notification, status) in &cases {
        refused(&fake, &app, notification, *status, what).await;
    }
    // Unsigned.
    let unsigned = app
        .client
        .post(app.url("/api/v1/payments/notify/wechat_pay"))
        .header("Content-Type", "application/json")
        .body(fake.notification(&genuine).body)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);

    assert_eq!(
        app.payment(PAYER, id(&opened)).await,
        before,
        "nothing changed"
    );
    assert_eq!(
        app.order_status(PAYER, &order.order).await,
        "pending_payment"
    );
    // The genuine one is still taken.
    refused_not(&fake, &app, &fake.notification(&genuine)).await;
    eventually("the order is paid", || async {
        app.order_status(PAYER, &order.order).await == "paid"
    })
    .await;
}

/// Asserts shop accepted `notification` (204, no body).
async fn refused_not(fake: &FakeWechatPay, app: &TestApp, notification: &SignedNotification) {
    let (status, body) = fake
        .deliver(&app.url("/api/v1/payments/notify/wechat_pay"), notification)
        .await;
    assert_eq!(status, 204, "{body}");
}

async fn a_replayed_notification_applies_once(backend: Backend) {
    let (fake, app) = spawn(backend, &[]).await;
    let (order, opened) = app
        .open_payment(PAYER, 999_900, 1, "wechat_pay", None)
        .await;
    fake.pay(id(&opened), false).await;
    let notification = fake.notification(&fake.transaction(id(&opened)));
    refused_not(&fake, &app, &notification).await;
    eventually("the order is paid", || async {
        app.order_status(PAYER, &order.order).await == "paid"
    })
    .await;
    let paid = app.payment(PAYER, id(&opened)).await;
    // WeChat Pay sends it again (as it does until it reads a 204): accepted, nothing moves.
    refused_not(&fake, &app, &notification).await;
    refused_not(&fake, &app, &notification).await;
    assert_eq!(app.payment(PAYER, id(&opened)).await, paid);
    let events = shop_tests::count(
        &app.database_url,
        "SELECT COUNT(*) AS n FROM outbox_events WHERE event_type = 'payment.succeeded'",
    );
    assert_eq!(events, 1, "one success published");
}

async fn an_unsigned_answer_is_never_believed(backend: Backend) {
    let (fake, app) = spawn(backend, &[]).await;
    let (order, opened) = app
        .open_payment(PAYER, 999_900, 1, "wechat_pay", None)
        .await;
    // A forger answers the close's query "no such trade", unsigned: were it
    // believed, the trade would count as closed and stay payable at WeChat Pay.
    fake.forge_not_found_next(Op::Query, 1);
    app.cancel(PAYER, &order.order)
        .await
        .assert_status(StatusCode::OK);
    eventually("the trade is closed at WeChat Pay", || async {
        fake.trade(id(&opened)).unwrap().state == TradeState::Closed
    })
    .await;
    assert!(
        fake.calls(Op::Query) >= 2,
        "asked again after the forged answer"
    );
    assert_eq!(fake.calls(Op::Close), 1);

    // An unsigned success is forged too: a lost notification is learned only
    // from a signed answer.
    let (fake, app) = spawn(backend, RECONCILE_NOW).await;
    let (order, opened) = app
        .open_payment(PAYER, 999_900, 1, "wechat_pay", None)
        .await;
    fake.answer_unsigned_next(Op::Query, 2);
    fake.pay(id(&opened), false).await;
    eventually("the order is paid by asking WeChat Pay", || async {
        app.order_status(PAYER, &order.order).await == "paid"
    })
    .await;
    assert!(
        fake.calls(Op::Query) >= 3,
        "the two unsigned answers were not believed"
    );
    no_refusals(&fake);
}

/// Without WeChat Pay configured, its notify route takes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notify_route_refuses_everything_when_wechat_pay_is_not_configured() {
    let fake = FakeWechatPay::start().await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (order, opened) = {
        let order = app.order_new_product(PAYER, 999_900, "CNY", 10, 1).await;
        let opened = app.initiate(PAYER, &order.order, "wechat_pay", None).await;
        assert_eq!(opened.status, StatusCode::CREATED, "{}", opened.body);
        (order, opened.json)
    };
    // A notification genuinely signed with the fixture keys, for a sandbox payment.
    let mut transaction = Transaction {
        appid: fake::APP_ID.into(),
        mchid: fake::MCH_ID.into(),
        out_trade_no: id(&opened).replace('-', ""),
        transaction_id: Some("4200000000202500000000000001".into()),
        trade_type: Some("NATIVE".into()),
        trade_state: TradeState::Success,
        trade_state_desc: None,
        success_time: None,
        amount: None,
    };
    transaction.amount = Some(TransactionAmount {
        total: 999_900,
        payer_total: None,
        currency: Some("CNY".into()),
        payer_currency: None,
    });
    refused(
        &fake,
        &app,
        &fake.notification(&transaction),
        404,
        "not configured",
    )
    .await;
    // Unsigned is refused as unsigned first, configured or not.
    let unsigned = app
        .client
        .post(app.url("/api/v1/payments/notify/wechat_pay"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    assert!(unsigned.text().await.unwrap().contains("header is missing"));
    assert_eq!(
        app.order_status(PAYER, &order.order).await,
        "pending_payment"
    );
}

async fn an_order_in_another_currency_is_refused(backend: Backend) {
    let (fake, app) = spawn(backend, &[]).await;
    let order = app.order_new_product(PAYER, 999_900, "USD", 10, 1).await;
    let refused = app.initiate(PAYER, &order.order, "wechat_pay", None).await;
    refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "currency_not_accepted");
    assert_eq!(fake.calls(Op::Create), 0);
    assert_eq!(
        app.order_status(PAYER, &order.order).await,
        "pending_payment"
    );
}

/// WeChat Pay's `amount.total` is a 32-bit integer of fen: an order above
/// 2,147,483,647 fen is refused with 422 `amount_not_accepted` naming the
/// range, before WeChat Pay is called; the top of the range is opened.
async fn an_amount_wechat_pay_cannot_take_is_refused(backend: Backend) {
    let (fake, app) = spawn(backend, &[]).await;
    let above = app
        .order_new_product(PAYER, i64::from(i32::MAX) + 1, "CNY", 10, 1)
        .await;
    let refused = app.initiate(PAYER, &above.order, "wechat_pay", None).await;
    refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "amount_not_accepted");
    let detail = refused.json["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("0.01 CNY to 21474836.47 CNY"),
        "the detail names WeChat Pay's range: {detail}"
    );
    assert_eq!(fake.calls(Op::Create), 0);
    assert_eq!(
        app.order_status(PAYER, &above.order).await,
        "pending_payment"
    );

    let top = app
        .order_new_product(PAYER, i64::from(i32::MAX), "CNY", 10, 1)
        .await;
    let opened = app.initiate(PAYER, &top.order, "wechat_pay", None).await;
    assert_eq!(opened.status, StatusCode::CREATED, "{}", opened.body);
    assert_eq!(fake.calls(Op::Create), 1);
}

/// The fake refuses what WeChat Pay refuses, with its errors: each call below
/// is well-formed and signed as a merchant signs but for one thing. Were shop
/// to send any of these, its end-to-end tests above would fail at the fake.
mod the_fake {
    use super::*;
    use shop_tests::fakes::rsa2::PrivateKey;
    use shop_tests::json;

    /// A request as a merchant sends it; each field can be spoilt.
    #[derive(Clone)]
    struct Call {
        method: &'static str,
        path_and_query: String,
        /// What was signed as the path and query (unless the same).
        signed_path: Option<String>,
        body: String,
        /// What was signed as the body (unless the same).
        signed_body: Option<String>,
        timestamp: i64,
        mchid: &'static str,
        serial: &'static str,
        key: PrivateKey,
        user_agent: Option<&'static str>,
        accept: Option<&'static str>,
        content_type: Option<&'static str>,
        authorization: bool,
    }

    impl Call {
        fn post(path: &str, body: Value) -> Self {
            Self {
                method: "POST",
                path_and_query: path.to_owned(),
                signed_path: None,
                body: body.to_string(),
                signed_body: None,
                timestamp: chrono::Utc::now().timestamp(),
                mchid: fake::MCH_ID,
                serial: fake::MERCHANT_SERIAL_NO,
                key: fake::merchant_private_key(),
                user_agent: Some("shop-test/1"),
                accept: Some("application/json"),
                content_type: Some("application/json"),
                authorization: true,
            }
        }

        fn get(path_and_query: &str) -> Self {
            Self {
                method: "GET",
                body: String::new(),
                content_type: None,
                ..Self::post(path_and_query, Value::Null)
            }
        }

        fn with(mut self, edit: impl FnOnce(&mut Self)) -> Self {
            edit(&mut self);
            self
        }

        async fn send(&self, fake: &FakeWechatPay) -> (u16, Value) {
            let nonce = "593BEC0C930BF1AFEB40B4A08C8FB242";
            let message = format!(
                "{}\n{}\n{}\n{nonce}\n{}\n",
                self.method,
                self.signed_path.as_deref().unwrap_or(&self.path_and_query),
                self.timestamp,
                self.signed_body.as_deref().unwrap_or(&self.body),
            );
            let signature = self.key.sign(message.as_bytes());
            let url = format!("{}{}", fake.base_url, self.path_and_query);
            let client = reqwest::Client::new();
            let mut request = if self.method == "GET" {
                client.get(url)
            } else {
                client.post(url).body(self.body.clone())
            };
            if self.authorization {
                request = request.header(
                    "Authorization",
                    format!(
                        r#"WECHATPAY2-SHA256-RSA2048 mchid="{}",nonce_str="{nonce}",timestamp="{}",serial_no="{}",signature="{signature}""#,
                        self.mchid, self.timestamp, self.serial
                    ),
                );
            }
            for (name, value) in [
                ("User-Agent", self.user_agent),
                ("Accept", self.accept),
                ("Content-Type", self.content_type),
            ] {
                if let Some(value) = value {
                    request = request.header(name, value);
                }
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        }
    }

    fn create_body(out_trade_no: &str) -> Value {
        json!({
            "appid": fake::APP_ID, "mchid": fake::MCH_ID, "description": "Order 1",
            "out_trade_no": out_trade_no,
            "time_expire": fake::beijing_time(chrono::Utc::now() + chrono::Duration::minutes(15)),
            "notify_url": "https://shop.example.com/api/v1/payments/notify/wechat_pay",
            "amount": {"total": 999_900, "currency": "CNY"},
        })
    }

    const NATIVE: &str = "/v3/pay/transactions/native";
    const H5: &str = "/v3/pay/transactions/h5";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refuses_what_wechat_pay_refuses() {
        let fake = FakeWechatPay::start().await;
        let no = "0193a5b27c4d7e8f9a0b1c2d3e4f5a6b";
        let create = Call::post(NATIVE, create_body(no));
        // The well-formed calls succeed.
        let (status, body) = create.send(&fake).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["code_url"].as_str().unwrap().starts_with("weixin://"));
        let query = Call::get(&format!(
            "/v3/pay/transactions/out-trade-no/{no}?mchid={}",
            fake::MCH_ID
        ));
        assert_eq!(query.send(&fake).await.0, 200);
        let mut h5_body = create_body("shop_-|*1");
        h5_body["scene_info"] =
            json!({"payer_client_ip": "203.0.113.7", "h5_info": {"type": "Wap"}});
        assert_eq!(Call::post(H5, h5_body.clone()).send(&fake).await.0, 200);
        assert!(fake.refusals().is_empty(), "{:?}", fake.refusals());

        let body_with = |path: &[&str], value: Value| {
            let mut body = create_body("0193a5b27c4d7e8f9a0b1c2d3e4f5a6c");
            let (last, parents) = path.split_last().unwrap();
            let mut at = &mut body;
            for p in parents {
                at = &mut at[*p];
            }
            if value.is_null() {
                at.as_object_mut().unwrap().remove(*last);
            } else {
                at[*last] = value;
            }
            body
        };
        let other_key = fake::platform_private_key();
        let cases: Vec<(&str, Call, u16, &str)> = vec![
            (
                "no User-Agent",
                create.clone().with(|c| c.user_agent = None),
                400,
                "PARAM_ERROR",
            ),
            (
                "Accept */*",
                create.clone().with(|c| c.accept = Some("*/*")),
                400,
                "PARAM_ERROR",
            ),
            (
                "no Accept",
                create.clone().with(|c| c.accept = None),
                400,
                "PARAM_ERROR",
            ),
            (
                "a form Content-Type",
                create
                    .clone()
                    .with(|c| c.content_type = Some("application/x-www-form-urlencoded")),
                400,
                "PARAM_ERROR",
            ),
            (
                "no Authorization",
                create.clone().with(|c| c.authorization = false),
                401,
                "SIGN_ERROR",
            ),
            (
                "another merchant in the Authorization",
                create.clone().with(|c| c.mchid = "1900000002"),
                401,
                "SIGN_ERROR",
            ),
            (
                "another certificate serial",
                create
                    .clone()
                    .with(|c| c.serial = "5157F09EFDC096DE15EBE81A47057A7232F1B8E2"),
                401,
                "SIGN_ERROR",
            ),
            (
                "a timestamp 300 s old",
                create
                    .clone()
                    .with(|c| c.timestamp -= fake::TIMESTAMP_TOLERANCE_SECS),
                401,
                "SIGN_ERROR",
            ),
            (
                "a timestamp in milliseconds",
                create.clone().with(|c| c.timestamp *= 1000),
                401,
                "SIGN_ERROR",
            ),
            (
                "signed with another key",
                create.clone().with(|c| c.key = other_key.clone()),
                401,
                "SIGN_ERROR",
            ),
            (
                "a body other than the one signed",
                create.clone().with(|c| {
                    c.signed_body = Some(c.body.replace("999900", "1"));
                }),
                401,
                "SIGN_ERROR",
            ),
            (
                "a query signed without its query string",
                query.clone().with(|c| {
                    c.signed_path = Some(c.path_and_query.split('?').next().unwrap().to_owned());
                }),
                401,
                "SIGN_ERROR",
            ),
            (
                "an out_trade_no of 5 characters",
                Call::post(NATIVE, body_with(&["out_trade_no"], json!("abcde"))),
                400,
                "PARAM_ERROR",
            ),
            (
                "an out_trade_no of 33 characters",
                Call::post(NATIVE, body_with(&["out_trade_no"], json!("a".repeat(33)))),
                400,
                "PARAM_ERROR",
            ),
            (
                "an out_trade_no with a dot",
                Call::post(NATIVE, body_with(&["out_trade_no"], json!("abc.def"))),
                400,
                "PARAM_ERROR",
            ),
            (
                "an out_trade_no with a non-ASCII digit",
                Call::post(NATIVE, body_with(&["out_trade_no"], json!("abcdef١"))),
                400,
                "PARAM_ERROR",
            ),
            (
                "another app",
                Call::post(NATIVE, body_with(&["appid"], json!("wx0000000000000000"))),
                400,
                "PARAM_ERROR",
            ),
            (
                "no description",
                Call::post(NATIVE, body_with(&["description"], Value::Null)),
                400,
                "PARAM_ERROR",
            ),
            (
                "a notify_url with a query string",
                Call::post(
                    NATIVE,
                    body_with(&["notify_url"], json!("https://shop.example.com/n?a=1")),
                ),
                400,
                "PARAM_ERROR",
            ),
            (
                "a plain-http notify_url",
                Call::post(
                    NATIVE,
                    body_with(&["notify_url"], json!("http://shop.example.com/n")),
                ),
                400,
                "PARAM_ERROR",
            ),
            (
                "a time_expire without an offset",
                Call::post(
                    NATIVE,
                    body_with(&["time_expire"], json!("2099-01-01T00:00:00")),
                ),
                400,
                "PARAM_ERROR",
            ),
            (
                "an amount in yuan",
                Call::post(NATIVE, body_with(&["amount", "total"], json!(9999.0))),
                400,
                "PARAM_ERROR",
            ),
            (
                "an amount in USD",
                Call::post(NATIVE, body_with(&["amount", "currency"], json!("USD"))),
                400,
                "PARAM_ERROR",
            ),
            (
                "H5 without scene_info",
                Call::post(H5, body_with(&["scene_info"], Value::Null)),
                400,
                "PARAM_ERROR",
            ),
            (
                "H5 without h5_info.type",
                Call::post(H5, {
                    let mut body = h5_body.clone();
                    body["scene_info"]["h5_info"] = json!({});
                    body
                }),
                400,
                "PARAM_ERROR",
            ),
            (
                "a query without mchid",
                Call::get(&format!("/v3/pay/transactions/out-trade-no/{no}")),
                400,
                "PARAM_ERROR",
            ),
            (
                "a close without mchid",
                Call::post(
                    &format!("/v3/pay/transactions/out-trade-no/{no}/close"),
                    json!({}),
                ),
                400,
                "PARAM_ERROR",
            ),
            (
                "a refund numbered with #",
                Call::post(
                    "/v3/refund/domestic/refunds",
                    json!({"out_trade_no": no, "out_refund_no": "r#1",
                           "amount": {"refund": 1, "total": 999_900, "currency": "CNY"}}),
                ),
                400,
                "PARAM_ERROR",
            ),
            (
                "a refund without currency",
                Call::post(
                    "/v3/refund/domestic/refunds",
                    json!({"out_trade_no": no, "out_refund_no": "r1",
                           "amount": {"refund": 1, "total": 999_900}}),
                ),
                400,
                "PARAM_ERROR",
            ),
        ];
        let count = cases.len();
        for (what, call, status, code) in cases {
            let (got, body) = call.send(&fake).await;
            assert_eq!(
                (got, body["code"].as_str()),
                (status, Some(code)),
                "{what}: {body}"
            );
        }
        assert_eq!(fake.refusals().len(), count, "{:#?}", fake.refusals());
    }

    #[test]
    fn the_authorization_header_is_read_as_wechat_pay_reads_it() {
        let parsed = fake::Authorization::parse(
            r#"WECHATPAY2-SHA256-RSA2048 mchid="1900000001",nonce_str="n",signature="s=",timestamp="1",serial_no="AB""#,
        )
        .unwrap();
        assert_eq!(
            (
                parsed.mchid.as_str(),
                parsed.signature.as_str(),
                parsed.serial_no.as_str()
            ),
            ("1900000001", "s=", "AB")
        );
        for bad in [
            r#"WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="n",timestamp="1",serial_no="AB""#,
            r#"WECHATPAY2-SHA256-RSA mchid="1",nonce_str="n",signature="s",timestamp="1",serial_no="AB""#,
            r#"WECHATPAY2-SHA256-RSA2048 mchid=1,nonce_str="n",signature="s",timestamp="1",serial_no="AB""#,
            r#"WECHATPAY2-SHA256-RSA2048 mchid="1",mchid="2",nonce_str="n",signature="s",timestamp="1",serial_no="AB""#,
        ] {
            assert!(fake::Authorization::parse(bad).is_err(), "{bad}");
        }
        assert!(fake::is_out_trade_no("0193a5b27c4d7e8f9a0b1c2d3e4f5a6b"));
        assert!(fake::is_out_trade_no("ab_-|*"));
        assert!(!fake::is_out_trade_no(
            "0193a5b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b"
        ));
        assert!(fake::is_out_refund_no("r@1"));
    }

    #[test]
    fn a_resource_is_sealed_as_wechat_pay_seals_it() {
        // The GCM specification's test case 14 (AES-256, zero key, zero
        // 96-bit nonce, one zero block, no associated data): the ciphertext,
        // then the 16-byte tag.
        let zeros = |n: usize| "\0".repeat(n);
        let sealed = fake::encrypt_resource(&zeros(32), &zeros(12), "", "transaction", &[0; 16]);
        assert_eq!(
            sealed.ciphertext,
            "zqdAPU1ga24HTsXTuvOdGNDRyKeZmWvwJluYtdSKuRk="
        );
        assert_eq!(sealed.algorithm, "AEAD_AES_256_GCM");
        // The associated data is authenticated: the same plaintext, another tag.
        let with_aad = fake::encrypt_resource(
            &zeros(32),
            &zeros(12),
            "transaction",
            "transaction",
            &[0; 16],
        );
        let (a, b) = (
            STANDARD.decode(&sealed.ciphertext).unwrap(),
            STANDARD.decode(&with_aad.ciphertext).unwrap(),
        );
        assert_eq!(a[..16], b[..16]);
        assert_ne!(a[16..], b[16..]);
    }
}

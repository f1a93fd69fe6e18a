//! Payments through Alipay (issue 13), against the fake Alipay of the tests
//! crate, on SQLite and PostgreSQL: a whole purchase on each channel, a
//! notification that never came, a cancelled order's trade closed, a late
//! success refunded once despite failures, and every notification that must
//! change nothing.

use shop_tests::fakes::alipay::{self as fake, FakeAlipay, FakeTradeStatus, Method, Params};
use shop_tests::{Backend, StatusCode, TestApp, Value, count, eventually, holds_for, json};

const PAYER: &str = "alipay-payer";

/// Settings under which a payment is asked about at once and every second.
const ASK_AT_ONCE: &[(&str, &str)] = &[
    ("SHOP__PAYMENT__RECONCILE_WINDOW_SECS", "86400"),
    ("SHOP__PAYMENT__QUERY_INTERVAL_SECS", "1"),
];

shop_tests::on_each_backend!(
    a_purchase_through_alipay_page_pay,
    the_wap_and_qr_channels_pay_too,
    a_lost_notification_is_paid_through_reconciliation,
    a_cancelled_orders_trade_is_closed_at_alipay,
    a_late_success_is_refunded_once_despite_failures,
    unsigned_answers_are_never_believed,
    a_forged_answer_pays_nothing,
    forged_and_mismatched_notifications_change_nothing,
    an_order_in_another_currency_is_refused,
    an_amount_alipay_cannot_take_is_refused,
    a_shop_signed_notification_never_settles_an_alipay_payment,
);

/// The fake and an app pointed at it (the sandbox serves WeChat Pay).
async fn spawn(
    backend: Backend,
    extra: &[(&str, &str)],
    seller: Option<&str>,
) -> (TestApp, FakeAlipay) {
    let alipay = FakeAlipay::start().await;
    let mut settings = alipay.settings(seller);
    settings.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let pairs: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    (TestApp::spawn_with(backend, &pairs).await, alipay)
}

fn trade_no_of(payment: &Value) -> String {
    payment["paymentId"].as_str().unwrap().replace('-', "")
}

fn events(app: &TestApp, event_type: &str) -> i64 {
    count(
        &app.database_url,
        &format!("SELECT COUNT(*) AS n FROM outbox_events WHERE event_type = '{event_type}'"),
    )
}

/// The fake refused nothing shop sent (a refused call shows why).
fn no_refusals(alipay: &FakeAlipay) {
    assert_eq!(
        alipay.refusals(),
        Vec::<String>::new(),
        "the gateway refused shop"
    );
}

fn biz_content(params: &Params) -> Value {
    serde_json::from_str(&params["biz_content"]).unwrap()
}

async fn a_purchase_through_alipay_page_pay(backend: Backend) {
    let (app, alipay) = spawn(backend, &[], None).await;
    let (purchase, opened) = app.open_payment(PAYER, 12_345, 2, "alipay", None).await;
    let id = opened["paymentId"].as_str().unwrap().to_owned();
    assert_eq!(opened["paymentMethod"], "alipay");
    assert_eq!(opened["amount"], purchase.amount);
    let url = opened["paymentUrl"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("{}?", alipay.gateway_url)),
        "the page pay URL is the gateway's: {url}"
    );
    assert!(url.contains("method=alipay.trade.page.pay"), "{url}");
    assert!(opened["qrCode"].as_str().unwrap().contains("<svg"));
    // Nothing was called: the signed URL is the link. The deadline is the order's.
    assert_eq!(alipay.calls(Method::Precreate), 0);
    let params = fake::decode_form(url.split_once('?').unwrap().1.as_bytes()).unwrap();
    let biz = biz_content(&params);
    assert_eq!(biz["out_trade_no"], trade_no_of(&opened));
    assert_eq!(biz["total_amount"], "246.90");
    assert_eq!(biz["product_code"], "FAST_INSTANT_TRADE_PAY");
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(opened["expiresAt"].clone()).unwrap();
    assert_eq!(biz["time_expire"], fake::beijing_time(expires));
    assert_eq!(
        params["notify_url"],
        format!("{}/api/v1/payments/notify/alipay", app.address)
    );

    let (trade_no, reply) = alipay.pay(&url, true).await;
    assert_eq!(reply, Some((200, "success".to_owned())));
    let paid = app.payment(PAYER, &id).await;
    assert_eq!(paid["status"], "succeeded", "{paid}");
    assert_eq!(paid["transactionId"], trade_no.as_str());
    eventually("the order is paid", || async {
        app.order_status(PAYER, &purchase.order).await == "paid"
    })
    .await;
    // Alipay repeats its notification (a new notify_id, the same news): once.
    for _ in 0..2 {
        assert_eq!(
            alipay.notify(&trade_no_of(&opened), |_| {}).await,
            (200, "success".to_owned())
        );
    }
    assert_eq!(app.payment_status(PAYER, &id).await, "succeeded");
    assert_eq!(events(&app, "payment.succeeded"), 1);
    no_refusals(&alipay);
}

async fn the_wap_and_qr_channels_pay_too(backend: Backend) {
    let (app, alipay) = spawn(backend, &[], None).await;
    let (_, wap) = app
        .open_payment(PAYER, 12_345, 2, "alipay", Some("wap"))
        .await;
    let url = wap["paymentUrl"].as_str().unwrap();
    assert!(url.contains("method=alipay.trade.wap.pay"), "{url}");
    assert!(url.contains("QUICK_WAP_WAY"), "{url}");
    alipay.pay(url, true).await;
    assert_eq!(
        app.payment_status(PAYER, wap["paymentId"].as_str().unwrap())
            .await,
        "succeeded"
    );

    let (purchase, qr) = app
        .open_payment(PAYER, 12_345, 2, "alipay", Some("qr"))
        .await;
    let code = qr["paymentUrl"].as_str().unwrap();
    assert_eq!(
        code,
        format!("https://qr.alipay.com/bax{}", trade_no_of(&qr)),
        "the QR code holds precreate's qr_code"
    );
    assert_eq!(alipay.calls(Method::Precreate), 1);
    let sent = alipay.last_request(Method::Precreate).unwrap();
    assert_eq!(biz_content(&sent)["total_amount"], "246.90");
    let (trade_no, reply) = alipay.pay(code, true).await;
    assert_eq!(reply, Some((200, "success".to_owned())));
    let paid = app.payment(PAYER, qr["paymentId"].as_str().unwrap()).await;
    assert_eq!(
        (paid["status"].as_str(), paid["transactionId"].as_str()),
        (Some("succeeded"), Some(trade_no.as_str()))
    );
    eventually("the order is paid", || async {
        app.order_status(PAYER, &purchase.order).await == "paid"
    })
    .await;
    no_refusals(&alipay);
}

async fn a_lost_notification_is_paid_through_reconciliation(backend: Backend) {
    let (app, alipay) = spawn(backend, ASK_AT_ONCE, None).await;
    let (purchase, opened) = app.open_payment(PAYER, 12_345, 2, "alipay", None).await;
    let id = opened["paymentId"].as_str().unwrap().to_owned();
    // Asked about before the buyer pays: Alipay does not know the trade yet.
    eventually("Alipay was asked about the trade", || async {
        alipay.calls(Method::Query) >= 1
    })
    .await;
    assert_eq!(app.payment_status(PAYER, &id).await, "pending");
    let (trade_no, reply) = alipay
        .pay(opened["paymentUrl"].as_str().unwrap(), false)
        .await;
    assert_eq!(reply, None);
    eventually("the payment is learned by asking", || async {
        app.payment_status(PAYER, &id).await == "succeeded"
    })
    .await;
    assert_eq!(
        app.payment(PAYER, &id).await["transactionId"],
        trade_no.as_str()
    );
    eventually("the order is paid", || async {
        app.order_status(PAYER, &purchase.order).await == "paid"
    })
    .await;
    no_refusals(&alipay);
}

async fn a_cancelled_orders_trade_is_closed_at_alipay(backend: Backend) {
    let (app, alipay) = spawn(backend, &[], None).await;
    let (purchase, opened) = app
        .open_payment(PAYER, 12_345, 2, "alipay", Some("qr"))
        .await;
    let id = opened["paymentId"].as_str().unwrap().to_owned();
    let code = opened["paymentUrl"].as_str().unwrap().to_owned();
    assert!(alipay.can_pay(&code));
    app.cancel(PAYER, &purchase.order)
        .await
        .assert_status(StatusCode::OK);
    eventually("the trade is closed at Alipay", || async {
        alipay.trade_status(&trade_no_of(&opened)) == Some(FakeTradeStatus::Closed)
    })
    .await;
    assert!(!alipay.can_pay(&code), "the buyer can no longer pay it");
    assert_eq!(app.payment_status(PAYER, &id).await, "closed");
    let url = app.database_url.clone();
    eventually("nothing more is owed to Alipay", || async {
        count(
            &url,
            &format!(
                "SELECT COUNT(*) AS n FROM payments WHERE id = '{id}' AND provider_due_at IS NULL"
            ),
        ) == 1
    })
    .await;
    assert_eq!(alipay.calls(Method::Close), 1);
    no_refusals(&alipay);
}

async fn a_late_success_is_refunded_once_despite_failures(backend: Backend) {
    let (app, alipay) = spawn(backend, &[], None).await;
    let (purchase, opened) = app.open_payment(PAYER, 12_345, 2, "alipay", None).await;
    let id = opened["paymentId"].as_str().unwrap().to_owned();
    let out_trade_no = trade_no_of(&opened);
    // The buyer pays just as the order is cancelled; the notification comes late.
    alipay
        .pay(opened["paymentUrl"].as_str().unwrap(), false)
        .await;
    alipay.fail_next(Method::Refund, 2);
    app.cancel(PAYER, &purchase.order)
        .await
        .assert_status(StatusCode::OK);
    let (code, body) = alipay.notify(&out_trade_no, |_| {}).await;
    assert_eq!((code, body.as_str()), (200, "success"));
    eventually("the money went back", || async {
        app.payment_status(PAYER, &id).await == "refunded"
    })
    .await;
    let refund_id = format!("r{out_trade_no}");
    assert_eq!(alipay.refunds(&refund_id), 1, "one refund moved money");
    assert!(alipay.calls(Method::Refund) >= 3, "two failed, then one");
    assert_eq!(
        alipay.trade_status(&out_trade_no),
        Some(FakeTradeStatus::Refunded)
    );
    // Alipay repeats the success: nothing moves again.
    assert_eq!(
        alipay.notify(&out_trade_no, |_| {}).await,
        (200, "success".to_owned())
    );
    holds_for(
        "refunded once",
        std::time::Duration::from_millis(500),
        || async {
            app.payment_status(PAYER, &id).await == "refunded" && alipay.refunds(&refund_id) == 1
        },
    )
    .await;
    assert_eq!(events(&app, "payment.refunded"), 1);
    assert_eq!(app.order_status(PAYER, &purchase.order).await, "cancelled");
    no_refusals(&alipay);
}

/// An unsigned refusal (a proxy's, or a forger's) says nothing about the
/// trade: a close answered "no such trade" unsigned does not close it, and
/// the money the buyer paid is found and refunded once Alipay answers.
async fn unsigned_answers_are_never_believed(backend: Backend) {
    let (app, alipay) = spawn(backend, &[], None).await;
    let (purchase, opened) = app.open_payment(PAYER, 12_345, 2, "alipay", None).await;
    let id = opened["paymentId"].as_str().unwrap().to_owned();
    let out_trade_no = trade_no_of(&opened);
    alipay
        .pay(opened["paymentUrl"].as_str().unwrap(), false)
        .await;
    alipay.unsigned_next(Method::Close, 2);
    app.cancel(PAYER, &purchase.order)
        .await
        .assert_status(StatusCode::OK);
    eventually("the paid trade is found and refunded", || async {
        app.payment_status(PAYER, &id).await == "refunded"
    })
    .await;
    assert!(alipay.calls(Method::Close) >= 3, "two unsigned, then one");
    assert_eq!(alipay.refunds(&format!("r{out_trade_no}")), 1);
    no_refusals(&alipay);
}

/// An answer to a query that says "paid" but is not signed by Alipay's key
/// pays nothing; the buyer's real payment is learned once Alipay answers.
async fn a_forged_answer_pays_nothing(backend: Backend) {
    let (app, alipay) = spawn(backend, ASK_AT_ONCE, None).await;
    let (purchase, opened) = app.open_payment(PAYER, 12_345, 2, "alipay", None).await;
    let id = opened["paymentId"].as_str().unwrap().to_owned();
    alipay.forge_next(Method::Query, 1);
    // Asked again after the forged answer: that one was read, and believed or not.
    eventually("Alipay was asked again after the forged answer", || async {
        alipay.calls(Method::Query) >= 2
    })
    .await;
    let forged = app.payment(PAYER, &id).await;
    assert_eq!(forged["status"], "pending", "{forged}");
    assert_eq!(events(&app, "payment.succeeded"), 0);
    let (trade_no, _) = alipay
        .pay(opened["paymentUrl"].as_str().unwrap(), false)
        .await;
    eventually("the real payment is learned", || async {
        app.payment_status(PAYER, &id).await == "succeeded"
    })
    .await;
    assert_eq!(
        app.payment(PAYER, &id).await["transactionId"],
        trade_no.as_str()
    );
    eventually("the order is paid", || async {
        app.order_status(PAYER, &purchase.order).await == "paid"
    })
    .await;
    no_refusals(&alipay);
}

/// Every notification that is forged, altered, about something else or not
/// a success changes nothing; the genuine one (with `%`, `+` and spaces in
/// its values) is applied once.
async fn forged_and_mismatched_notifications_change_nothing(backend: Backend) {
    let (app, alipay) = spawn(backend, &[], Some(fake::SELLER_ID)).await;
    let (purchase, opened) = app.open_payment(PAYER, 12_345, 2, "alipay", None).await;
    let id = opened["paymentId"].as_str().unwrap().to_owned();
    let out_trade_no = trade_no_of(&opened);
    alipay
        .pay(opened["paymentUrl"].as_str().unwrap(), false)
        .await;

    let tricky = |fields: &mut Params| {
        fields.insert("subject".into(), "100% cotton + wool & more".into());
        fields.insert("body".into(), "a=b&c=d %2B".into());
    };
    let genuine = alipay.notification_fields(&out_trade_no, tricky);
    let signed = alipay.sign_notification(&genuine);
    let edited = |edit: &dyn Fn(&mut Params)| {
        let mut fields = genuine.clone();
        edit(&mut fields);
        alipay.sign_notification(&fields)
    };
    let decoded = |body: &str| fake::decode_form(body.as_bytes()).unwrap();
    let tampered_amount = {
        let mut params = decoded(&signed);
        params.insert("total_amount".into(), "0.01".into());
        fake::form(&params)
    };
    let forged = fake::signed_notification(&fake::app_private_key(), &genuine);
    let unsigned = {
        let mut params = decoded(&signed);
        params.remove("sign");
        fake::form(&params)
    };
    let rsa1 = {
        let mut params = decoded(&signed);
        params.insert("sign_type".into(), "RSA".into());
        fake::form(&params)
    };
    let sandbox_trade = edited(&|f| {
        f.insert(
            "out_trade_no".into(),
            "0123456789abcdef0123456789abcdef".into(),
        );
    });
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "a tampered amount",
            tampered_amount,
            401,
            "invalid_signature",
        ),
        (
            "signed with shop's own key",
            forged,
            401,
            "invalid_signature",
        ),
        ("unsigned", unsigned, 401, "invalid_signature"),
        ("sign_type RSA", rsa1, 401, "invalid_signature"),
        (
            "a signed, other amount",
            edited(&|f| {
                f.insert("total_amount".into(), "246.89".into());
            }),
            422,
            "amount_mismatch",
        ),
        (
            "another app_id",
            edited(&|f| {
                f.insert("app_id".into(), "2021000000000009".into());
            }),
            422,
            "notification_mismatch",
        ),
        (
            "another seller_id",
            edited(&|f| {
                f.insert("seller_id".into(), "2088000000000009".into());
            }),
            422,
            "notification_mismatch",
        ),
        (
            "no seller_id",
            edited(&|f| {
                f.remove("seller_id");
            }),
            422,
            "notification_mismatch",
        ),
        ("an unknown trade", sandbox_trade, 404, "payment_not_found"),
        (
            "a trade number shop never sent",
            edited(&|f| {
                f.insert("out_trade_no".into(), "order-1".into());
            }),
            404,
            "payment_not_found",
        ),
        (
            "no trade_no",
            edited(&|f| {
                f.remove("trade_no");
            }),
            400,
            "invalid_notification",
        ),
        (
            "a field given twice",
            format!("{signed}&total_amount=0.01"),
            400,
            "invalid_notification",
        ),
    ];
    for (what, body, code, problem) in cases {
        let (status_code, reply) = alipay.post_notification(&out_trade_no, body).await;
        assert_eq!(status_code, code, "{what}: {reply}");
        let reply: Value =
            serde_json::from_str(&reply).unwrap_or_else(|_| panic!("{what}: {reply}"));
        assert_eq!(reply["code"], problem, "{what}: {reply}");
        assert_eq!(
            app.payment_status(PAYER, &id).await,
            "pending",
            "{what} changed the payment"
        );
    }
    // Genuine news that is not a payment changes nothing, and is acknowledged.
    for trade_status in ["WAIT_BUYER_PAY", "TRADE_CLOSED"] {
        let body = edited(&|f| {
            f.insert("trade_status".into(), trade_status.into());
        });
        assert_eq!(
            alipay.post_notification(&out_trade_no, body).await,
            (200, "success".to_owned()),
            "{trade_status}"
        );
        assert_eq!(
            app.payment_status(PAYER, &id).await,
            "pending",
            "{trade_status}"
        );
    }
    assert_eq!(events(&app, "payment.succeeded"), 0);

    // The genuine one, and its replay: applied once.
    for _ in 0..2 {
        assert_eq!(
            alipay
                .post_notification(&out_trade_no, signed.clone())
                .await,
            (200, "success".to_owned())
        );
    }
    assert_eq!(app.payment_status(PAYER, &id).await, "succeeded");
    assert_eq!(events(&app, "payment.succeeded"), 1);
    eventually("the order is paid", || async {
        app.order_status(PAYER, &purchase.order).await == "paid"
    })
    .await;
}

async fn an_order_in_another_currency_is_refused(backend: Backend) {
    let (app, alipay) = spawn(backend, &[], None).await;
    let purchase = app.order_new_product(PAYER, 12_345, "USD", 10, 2).await;
    for channel in [None, Some("qr")] {
        app.initiate(PAYER, &purchase.order, "alipay", channel)
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "currency_not_accepted");
    }
    assert_eq!(alipay.calls(Method::Precreate), 0);
    // The sandbox, which serves WeChat Pay here, takes it.
    let sandbox = app
        .as_user(PAYER)
        .post_json(
            "/api/v1/payments",
            &json!({"orderId": purchase.order, "paymentMethod": "wechat_pay"}),
        )
        .await;
    assert_eq!(sandbox.status, StatusCode::CREATED, "{}", sandbox.body);
    // A notification for a payment Alipay did not open is not Alipay's to report.
    let app_without_alipay = TestApp::spawn(backend).await;
    let reply = app_without_alipay
        .client
        .post(app_without_alipay.url("/api/v1/payments/notify/alipay"))
        .body("a=b")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::NOT_FOUND);
}

/// Alipay takes 0.01 to 100,000,000.00 yuan in one payment: an order above
/// that is refused with 422 `amount_not_accepted` naming the range, before
/// Alipay is called, and stays payable by a method that takes it; the top
/// of the range is opened.
async fn an_amount_alipay_cannot_take_is_refused(backend: Backend) {
    let (app, alipay) = spawn(backend, &[], None).await;
    let above = app
        .order_new_product(PAYER, 10_000_000_000, "CNY", 10, 2)
        .await;
    let refused = app
        .initiate(PAYER, &above.order, "alipay", Some("qr"))
        .await;
    refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "amount_not_accepted");
    let detail = refused.json["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("0.01 CNY to 100000000.00 CNY"),
        "the detail names Alipay's range: {detail}"
    );
    assert_eq!(alipay.calls(Method::Precreate), 0);
    assert_eq!(
        app.order_status(PAYER, &above.order).await,
        "pending_payment"
    );

    let top = app
        .order_new_product(PAYER, 10_000_000_000, "CNY", 10, 1)
        .await;
    let opened = app.initiate(PAYER, &top.order, "alipay", Some("qr")).await;
    assert_eq!(opened.status, StatusCode::CREATED, "{}", opened.body);
    assert_eq!(alipay.calls(Method::Precreate), 1);
}

/// Alipay's settings are checked when shop starts: a bad key or a missing
/// setting stops it with a message naming the setting (and showing nothing
/// of any key); a notify URL Alipay could not call stops it too; a good
/// configuration starts with Alipay serving `alipay`, no key in the log.
#[test]
fn alipay_settings_are_checked_at_start_and_keys_never_shown() {
    use std::time::Duration;
    let database = shop_tests::TestDatabase::create(Backend::Sqlite);
    let url = database.url();
    let private = fake::fixture("alipay_app_private_pkcs8.pem");
    let public = fake::fixture("alipay_platform_public_spki.pem");
    let key_text = std::fs::read_to_string(&private).unwrap();
    let key_line = key_text.lines().nth(1).unwrap().to_owned();
    let base = [
        ("DATABASE_URL", url.as_str()),
        ("SHOP__PAYMENT__ALIPAY__APP_ID", fake::APP_ID),
        ("SHOP__PAYMENT__ALIPAY__PRIVATE_KEY_PATH", private.as_str()),
        (
            "SHOP__PAYMENT__ALIPAY__ALIPAY_PUBLIC_KEY_PATH",
            public.as_str(),
        ),
    ];
    fn with<'a>(
        base: &[(&'a str, &'a str)],
        variable: &'a str,
        value: &'a str,
    ) -> Vec<(&'a str, &'a str)> {
        let mut env: Vec<(&str, &str)> = base
            .iter()
            .filter(|(k, _)| *k != variable)
            .copied()
            .collect();
        env.push((variable, value));
        env
    }
    for (variable, value, named) in [
        // A public key where the private key belongs.
        (
            "SHOP__PAYMENT__ALIPAY__PRIVATE_KEY_PATH",
            public.as_str(),
            "SHOP__PAYMENT__ALIPAY__PRIVATE_KEY_PATH",
        ),
        (
            "SHOP__PAYMENT__ALIPAY__APP_ID",
            "",
            "SHOP__PAYMENT__ALIPAY__APP_ID",
        ),
        (
            "SHOP__PAYMENT__PUBLIC_URL",
            "http://shop.example.com",
            "SHOP__PAYMENT__PUBLIC_URL",
        ),
    ] {
        let (exited, output) = crate::startup::run(
            &["serve"],
            &with(&base, variable, value),
            Duration::from_secs(10),
        );
        assert!(exited, "{variable}={value:?} was accepted: {output}");
        assert!(output.contains(named), "{variable}={value:?}: {output}");
        assert!(!output.contains(&key_line), "a key was shown: {output}");
    }
    let (exited, output) = crate::startup::run(&["serve"], &base, Duration::from_secs(5));
    assert!(!exited, "shop stopped: {output}");
    assert!(
        output.contains(r#"{\"alipay\": \"alipay\""#),
        "Alipay serves alipay: {output}"
    );
    assert!(!output.contains(&key_line), "a key was shown: {output}");
}

/// Issue 24 item 3: the generic `Shop-Signature` routes settle the sandbox's
/// payments only. A success signed with the webhook secret (which anyone
/// holding it could send) about an Alipay payment is refused on both routes,
/// and the payment and its order stay as they were, while Alipay's own
/// notification still pays it.
async fn a_shop_signed_notification_never_settles_an_alipay_payment(backend: Backend) {
    let (app, alipay) = spawn(backend, &[], None).await;
    let (purchase, opened) = app.open_payment(PAYER, 12_345, 1, "alipay", None).await;
    let id = opened["paymentId"].as_str().unwrap().to_owned();
    let rest = app
        .notify(
            "/api/v1/payments/notify",
            &json!({"paymentId": id, "paymentStatus": "success", "amount": purchase.amount,
                    "currency": "CNY", "transactionId": "forged-1"}),
        )
        .await;
    rest.assert_problem(StatusCode::CONFLICT, "wrong_notification_channel");
    let original = app
        .notify(
            "/paymentResultNotify",
            &json!({"orderId": purchase.order, "paymentStatus": "success"}),
        )
        .await;
    original.assert_problem(StatusCode::CONFLICT, "wrong_notification_channel");
    assert_eq!(app.payment_status(PAYER, &id).await, "pending");
    assert_eq!(
        app.order_status(PAYER, &purchase.order).await,
        "pending_payment"
    );
    assert_eq!(events(&app, "payment.succeeded"), 0);
    // Its own channel settles it.
    let url = opened["paymentUrl"].as_str().unwrap().to_owned();
    let (_, reply) = alipay.pay(&url, true).await;
    assert_eq!(reply, Some((200, "success".to_owned())));
    assert_eq!(app.payment_status(PAYER, &id).await, "succeeded");
}

/// The fake gateway refuses what Alipay refuses, with Alipay's codes: each
/// call below is a well-formed, well-signed `alipay.trade.precreate` (or
/// refund, or pay URL) but for one thing. Were shop to send any of these,
/// its end-to-end tests above would fail at the fake.
mod the_fake {
    use super::*;
    use shop_tests::fakes::rsa2::PrivateKey;

    const NOTIFY_URL: &str = "https://shop.example.com/api/v1/payments/notify/alipay";

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }

    fn precreate_biz() -> Value {
        json!({"out_trade_no": "0193a5b27c4d7e8f9a0b1c2d3e4f5a6b", "total_amount": "246.90",
               "subject": "Order 0193a5b2", "time_expire": fake::beijing_time(now() + chrono::Duration::minutes(15))})
    }

    /// A call as a merchant signs it: the common parameters, `biz`, changed
    /// by `edit`, then signed with `key` over every parameter but `sign`.
    fn call(method: &str, biz: &Value, key: &PrivateKey, edit: impl FnOnce(&mut Params)) -> Params {
        let mut params: Params = [
            ("app_id", fake::APP_ID.to_owned()),
            ("method", method.to_owned()),
            ("format", "JSON".to_owned()),
            ("charset", "utf-8".to_owned()),
            ("sign_type", "RSA2".to_owned()),
            ("timestamp", fake::beijing_time(now())),
            ("version", "1.0".to_owned()),
            ("notify_url", NOTIFY_URL.to_owned()),
            ("biz_content", biz.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        edit(&mut params);
        let content = fake::sign_content(&params, &["sign"]);
        params.insert("sign".into(), key.sign(content.as_bytes()));
        params
    }

    /// Posts `body` to the fake; answers the answer's `*_response` content.
    async fn post(alipay: &FakeAlipay, content_type: &str, body: String) -> Value {
        let answer: Value = reqwest::Client::new()
            .post(&alipay.gateway_url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let (_, content) = answer
            .as_object()
            .unwrap()
            .iter()
            .find(|(k, _)| k.ends_with("_response"))
            .unwrap_or_else(|| panic!("no *_response: {answer}"));
        content.clone()
    }

    async fn send(alipay: &FakeAlipay, params: &Params) -> Value {
        post(
            alipay,
            "application/x-www-form-urlencoded;charset=utf-8",
            fake::form(params),
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refuses_what_alipay_refuses() {
        let alipay = FakeAlipay::start().await;
        let app_key = fake::app_private_key();
        let precreate = Method::Precreate.name();
        // The well-formed call succeeds.
        let answer = send(
            &alipay,
            &call(precreate, &precreate_biz(), &app_key, |_| {}),
        )
        .await;
        assert_eq!(answer["code"], "10000", "{answer}");
        assert!(alipay.refusals().is_empty());

        let set = |name: &'static str, value: &str| {
            let value = value.to_owned();
            move |p: &mut Params| {
                p.insert(name.to_owned(), value);
            }
        };
        let remove = |name: &'static str| move |p: &mut Params| drop(p.remove(name));
        let biz_with = |name: &str, value: Value| {
            let mut biz = precreate_biz();
            biz[name] = value;
            biz
        };
        let biz_without = |name: &str| {
            let mut biz = precreate_biz();
            biz.as_object_mut().unwrap().remove(name);
            biz
        };
        let utc = now().format("%Y-%m-%d %H:%M:%S").to_string();
        let stale = fake::beijing_time(now() - chrono::Duration::minutes(20));
        let ahead = fake::beijing_time(now() + chrono::Duration::minutes(20));
        let platform_key = fake::platform_private_key();
        let biz = precreate_biz();
        #[allow(clippy::type_complexity)]
        let cases: Vec<(&str, Params, &str, &str)> = vec![
            (
                "no method",
                call(precreate, &biz, &app_key, remove("method")),
                "40001",
                "isv.missing-method",
            ),
            (
                "an unknown method",
                call(
                    precreate,
                    &biz,
                    &app_key,
                    set("method", "alipay.trade.pay2"),
                ),
                "40002",
                "isv.invalid-method",
            ),
            (
                "another app_id",
                call(precreate, &biz, &app_key, set("app_id", "2021000000000009")),
                "40002",
                "isv.invalid-app-id",
            ),
            (
                "format XML",
                call(precreate, &biz, &app_key, set("format", "XML")),
                "40002",
                "isv.invalid-format",
            ),
            (
                "charset GBK",
                call(precreate, &biz, &app_key, set("charset", "GBK")),
                "40002",
                "isv.invalid-charset",
            ),
            (
                "no charset",
                call(precreate, &biz, &app_key, remove("charset")),
                "40002",
                "isv.invalid-charset",
            ),
            (
                "no sign_type",
                call(precreate, &biz, &app_key, remove("sign_type")),
                "40001",
                "isv.missing-signature-type",
            ),
            (
                "sign_type RSA",
                call(precreate, &biz, &app_key, set("sign_type", "RSA")),
                "40002",
                "isv.invalid-signature-type",
            ),
            (
                "no timestamp",
                call(precreate, &biz, &app_key, remove("timestamp")),
                "40001",
                "isv.missing-timestamp",
            ),
            (
                "a timestamp in UTC",
                call(precreate, &biz, &app_key, set("timestamp", &utc)),
                "40002",
                "isv.invalid-timestamp",
            ),
            (
                "a timestamp 20 minutes old",
                call(precreate, &biz, &app_key, set("timestamp", &stale)),
                "40002",
                "isv.invalid-timestamp",
            ),
            (
                "a timestamp 20 minutes ahead",
                call(precreate, &biz, &app_key, set("timestamp", &ahead)),
                "40002",
                "isv.invalid-timestamp",
            ),
            (
                "an RFC 3339 timestamp",
                call(
                    precreate,
                    &biz,
                    &app_key,
                    set("timestamp", &now().to_rfc3339()),
                ),
                "40002",
                "isv.invalid-timestamp",
            ),
            (
                "no version",
                call(precreate, &biz, &app_key, remove("version")),
                "40001",
                "isv.missing-version",
            ),
            (
                "version 2.0",
                call(precreate, &biz, &app_key, set("version", "2.0")),
                "40002",
                "isv.invalid-parameter",
            ),
            (
                "signed with Alipay's key, not the application's",
                call(precreate, &biz, &platform_key, |_| {}),
                "40002",
                "isv.invalid-signature",
            ),
            (
                "a notify_url with a query string",
                call(
                    precreate,
                    &biz,
                    &app_key,
                    set("notify_url", &format!("{NOTIFY_URL}?a=1")),
                ),
                "40004",
                "ACQ.INVALID_PARAMETER",
            ),
            (
                "biz_content not JSON",
                call(
                    precreate,
                    &biz,
                    &app_key,
                    set("biz_content", "out_trade_no=1"),
                ),
                "40004",
                "ACQ.INVALID_PARAMETER",
            ),
            (
                "no out_trade_no",
                call(precreate, &biz_without("out_trade_no"), &app_key, |_| {}),
                "40004",
                "ACQ.INVALID_PARAMETER",
            ),
            (
                "an out_trade_no with a hyphen",
                call(
                    precreate,
                    &biz_with("out_trade_no", json!("0193a5b2-7c4d-7e8f")),
                    &app_key,
                    |_| {},
                ),
                "40004",
                "ACQ.INVALID_PARAMETER",
            ),
            (
                "an out_trade_no of 65 characters",
                call(
                    precreate,
                    &biz_with("out_trade_no", json!("a".repeat(65))),
                    &app_key,
                    |_| {},
                ),
                "40004",
                "ACQ.INVALID_PARAMETER",
            ),
            (
                "total_amount with one decimal",
                call(
                    precreate,
                    &biz_with("total_amount", json!("246.9")),
                    &app_key,
                    |_| {},
                ),
                "40004",
                "ACQ.INVALID_PARAMETER",
            ),
            (
                "total_amount without decimals",
                call(
                    precreate,
                    &biz_with("total_amount", json!("246")),
                    &app_key,
                    |_| {},
                ),
                "40004",
                "ACQ.INVALID_PARAMETER",
            ),
            (
                "total_amount as a JSON number",
                call(
                    precreate,
                    &biz_with("total_amount", json!(246.9)),
                    &app_key,
                    |_| {},
                ),
                "40004",
                "ACQ.INVALID_PARAMETER",
            ),
            (
                "total_amount in fen",
                call(
                    precreate,
                    &biz_with("total_amount", json!("24690")),
                    &app_key,
                    |_| {},
                ),
                "40004",
                "ACQ.INVALID_PARAMETER",
            ),
            (
                "total_amount 0.00",
                call(
                    precreate,
                    &biz_with("total_amount", json!("0.00")),
                    &app_key,
                    |_| {},
                ),
                "40004",
                "ACQ.INVALID_PARAMETER",
            ),
            (
                "total_amount above 100000000",
                call(
                    precreate,
                    &biz_with("total_amount", json!("100000000.01")),
                    &app_key,
                    |_| {},
                ),
                "40004",
                "ACQ.TOTAL_FEE_EXCEED",
            ),
            (
                "no subject",
                call(precreate, &biz_without("subject"), &app_key, |_| {}),
                "40004",
                "ACQ.INVALID_PARAMETER",
            ),
            (
                "a subject with /",
                call(
                    precreate,
                    &biz_with("subject", json!("a/b")),
                    &app_key,
                    |_| {},
                ),
                "40004",
                "ACQ.INVALID_PARAMETER",
            ),
            (
                "precreate with the wap product_code",
                call(
                    precreate,
                    &biz_with("product_code", json!("QUICK_WAP_WAY")),
                    &app_key,
                    |_| {},
                ),
                "40004",
                "ACQ.INVALID_PARAMETER",
            ),
            (
                "a time_expire in UTC, already past in Beijing",
                call(
                    precreate,
                    &biz_with(
                        "time_expire",
                        json!(
                            (now() - chrono::Duration::minutes(1))
                                .format("%Y-%m-%d %H:%M:%S")
                                .to_string()
                        ),
                    ),
                    &app_key,
                    |_| {},
                ),
                "40004",
                "ACQ.INVALID_PARAMETER",
            ),
            (
                "a refund without out_request_no",
                call(
                    Method::Refund.name(),
                    &json!({"out_trade_no": "0193a5b27c4d7e8f9a0b1c2d3e4f5a6b", "refund_amount": "1.00"}),
                    &app_key,
                    |_| {},
                ),
                "40004",
                "ACQ.INVALID_PARAMETER",
            ),
            (
                "a refund_amount with three decimals",
                call(
                    Method::Refund.name(),
                    &json!({"out_trade_no": "0193a5b27c4d7e8f9a0b1c2d3e4f5a6b",
                            "refund_amount": "1.000", "out_request_no": "r1"}),
                    &app_key,
                    |_| {},
                ),
                "40004",
                "ACQ.INVALID_PARAMETER",
            ),
        ];
        let count = cases.len();
        for (what, params, code, sub_code) in cases {
            let answer = send(&alipay, &params).await;
            assert_eq!(
                (answer["code"].as_str(), answer["sub_code"].as_str()),
                (Some(code), Some(sub_code)),
                "{what}: {answer}"
            );
        }
        assert_eq!(alipay.refusals().len(), count, "{:#?}", alipay.refusals());
        // A body that is not a form is not read: no method at all.
        let params = call(precreate, &biz, &app_key, |_| {});
        let answer = post(&alipay, "application/json", fake::form(&params)).await;
        assert_eq!(answer["sub_code"], "isv.missing-method", "{answer}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pay_url_is_checked_when_the_buyer_opens_it() {
        let alipay = FakeAlipay::start().await;
        let app_key = fake::app_private_key();
        let url = |method: Method, product_code: &str, edit: &dyn Fn(&mut Params)| {
            let mut biz = precreate_biz();
            biz["product_code"] = json!(product_code);
            let params = call(method.name(), &biz, &app_key, edit);
            format!("{}?{}", alipay.gateway_url, fake::form(&params))
        };
        assert!(alipay.can_pay(&url(Method::PagePay, "FAST_INSTANT_TRADE_PAY", &|_| {})));
        assert!(alipay.can_pay(&url(Method::WapPay, "QUICK_WAP_WAY", &|_| {})));
        assert!(alipay.refusals().is_empty());
        for (what, refused) in [
            (
                "page pay with the wap product_code",
                url(Method::PagePay, "QUICK_WAP_WAY", &|_| {}),
            ),
            (
                "wap pay with the page product_code",
                url(Method::WapPay, "FAST_INSTANT_TRADE_PAY", &|_| {}),
            ),
            (
                "a stale timestamp",
                url(Method::PagePay, "FAST_INSTANT_TRADE_PAY", &|p| {
                    p.insert(
                        "timestamp".into(),
                        fake::beijing_time(now() - chrono::Duration::hours(8)),
                    );
                }),
            ),
        ] {
            assert!(!alipay.can_pay(&refused), "{what}");
        }
        // A URL altered after signing.
        let tampered =
            url(Method::PagePay, "FAST_INSTANT_TRADE_PAY", &|_| {}).replace("246.90", "0.01");
        assert!(!alipay.can_pay(&tampered));
        assert_eq!(alipay.refusals().len(), 4, "{:#?}", alipay.refusals());
    }

    #[test]
    fn amounts_and_times_are_written_as_alipay_writes_them() {
        assert_eq!(fake::yuan(24_690), "246.90");
        assert_eq!(fake::yuan(1), "0.01");
        assert_eq!(fake::fen("246.90"), Some(24_690));
        assert_eq!(fake::fen("0.01"), Some(1));
        for bad in [
            "246.9", "246", "246.900", "-1.00", "01.00", "1,00", ".50", "1.5O", "",
        ] {
            assert_eq!(fake::fen(bad), None, "{bad}");
        }
        let at = chrono::DateTime::parse_from_rfc3339("2025-01-31T16:45:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(fake::beijing_time(at), "2025-02-01 00:45:00");
        // Sorted by key, empty values dropped, raw values, `sign` left out.
        let params: Params = [
            ("b", "2 +%"),
            ("a", "1"),
            ("sign", "x"),
            ("c", ""),
            ("sign_type", "RSA2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            fake::sign_content(&params, &["sign"]),
            "a=1&b=2 +%&sign_type=RSA2"
        );
        assert_eq!(
            fake::form(&params),
            "a=1&b=2+%2B%25&c=&sign=x&sign_type=RSA2"
        );
        assert_eq!(fake::decode_form(b"a=1&b=2+%2B%25").unwrap()["b"], "2 +%");
        assert!(fake::decode_form(b"a=1&a=2").is_err());
    }
}

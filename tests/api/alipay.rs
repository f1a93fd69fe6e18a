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
    assert_eq!(alipay.refused_requests(), 0);
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

//! Payments on SQLite and PostgreSQL: the whole purchase, signed
//! notifications (and every way to forge one), duplicates, refunds.

use std::sync::Arc;

use diesel::RunQueryDsl;
use domain_payment::signature::TOLERANCE_SECS;
use shop_tests::purchase::success;
use shop_tests::{
    Backend, StatusCode, TestApp, Value, count, eventually, json, on_every_backend, signer,
};

on_every_backend!(
    a_purchase_from_order_to_paid,
    a_failed_payment_leaves_the_order_payable,
    forged_stale_and_altered_notifications_change_nothing,
    a_mismatched_amount_changes_nothing,
    concurrent_duplicate_notifications_apply_once,
    money_for_a_cancelled_order_is_marked_for_refund,
    payments_are_refused_for_orders_that_cannot_be_paid,
    original_spec_aliases_initiate_and_notify,
    a_replayed_failure_never_acts_on_the_next_payment,
    an_order_notification_signed_before_its_payment_was_opened_is_refused,
    an_exact_replay_answers_as_before_only_while_nothing_moved,
    a_success_after_a_failure_is_never_dropped,
    transaction_ids_are_short_visible_ascii_on_both_routes,
    notification_records_are_pruned_once_they_cannot_be_replayed,
    cancelling_an_order_closes_its_payments,
    a_payment_racing_its_orders_cancellation_is_closed,
    concurrent_initiations_of_one_order_answer_its_one_payment,
    money_that_cannot_be_kept_is_refunded_once,
);

/// The customer who places and pays every order here.
const PAYER: &str = "payer";

async fn a_purchase_from_order_to_paid(app: TestApp) {
    let purchase = app.order_new_product(PAYER, 999_900, "CNY", 10, 2).await;
    let opened = app
        .initiate(PAYER, &purchase.order, "wechat_pay", None)
        .await;
    assert_eq!(opened.status, StatusCode::CREATED, "{}", opened.body);
    let payment = opened.json.clone();
    let id = payment["paymentId"].as_str().unwrap();
    assert_eq!(payment["status"], "pending");
    assert_eq!(payment["amount"], purchase.amount);
    assert_eq!(payment["currency"], "CNY");
    assert_eq!(payment["paymentMethod"], "wechat_pay");
    let payment_url = payment["paymentUrl"].as_str().unwrap();
    let checkout = payment_url
        .strip_prefix(&app.address)
        .expect("the checkout page is served by the app");
    assert!(
        checkout.starts_with(&format!("/sandbox/checkout/{id}?token=")),
        "{payment_url}"
    );
    assert!(payment["qrCode"].as_str().unwrap().contains("<svg"));
    let order = app
        .as_user(PAYER)
        .get(&format!("/api/v1/orders/{}", purchase.order))
        .await
        .json;
    assert_eq!(payment["expiresAt"], order["expiresAt"]);

    let again = app.initiate(PAYER, &purchase.order, "alipay", None).await;
    assert_eq!(again.status, StatusCode::OK, "the open payment is returned");
    assert_eq!(again.json["paymentId"], payment["paymentId"]);

    // The sandbox checkout page is served for it, and asks for the order's
    // total (two units at 9999.00), not the unit price.
    let page = app.get(checkout).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(purchase.amount, 1_999_800);
    assert!(
        page.body.contains("<strong>19998.00 CNY</strong>"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("9999.00 CNY"), "{}", page.body);
    assert!(page.body.contains(&purchase.order), "{}", page.body);

    let notified = app
        .notify(
            "/api/v1/payments/notify",
            &success(&payment, purchase.amount, "tx-1"),
        )
        .await;
    assert_eq!(notified.status, StatusCode::OK, "{}", notified.body);
    assert_eq!(notified.json["applied"], true);
    assert_eq!(notified.json["paymentStatus"], "succeeded");
    let fetched = app
        .as_user(PAYER)
        .get(&format!("/api/v1/payments/{id}"))
        .await
        .json;
    assert_eq!(fetched["status"], "succeeded");
    assert_eq!(fetched["transactionId"], "tx-1");

    eventually("the order is paid", || async {
        app.order_status(PAYER, &purchase.order).await == "paid"
    })
    .await;
    let paid = app
        .as_user(PAYER)
        .get(&format!("/api/v1/orders/{}", purchase.order))
        .await
        .json;
    assert!(paid["paidAt"].is_string());
    assert_eq!(
        app.stock(&purchase.product).await,
        8,
        "the stock stays sold"
    );
    app.cancel(PAYER, &purchase.order)
        .await
        .assert_problem(StatusCode::CONFLICT, "order_not_cancellable");
    app.initiate(PAYER, &purchase.order, "alipay", None)
        .await
        .assert_problem(StatusCode::CONFLICT, "order_already_paid");
    app.as_user(PAYER)
        .get("/api/v1/payments/nope")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "payment_not_found");
}

async fn a_failed_payment_leaves_the_order_payable(app: TestApp) {
    // A failure keeps the order payable: a new payment can be opened and succeed.
    // (That the stock comes back once such an order expires: `expiry_after_failure`.)
    let (purchase, first) = app.open_payment(PAYER, 999_900, 1, "alipay", None).await;
    let failure = json!({"paymentId": first["paymentId"], "paymentStatus": "failure", "amount": purchase.amount, "currency": "CNY"});
    let failed = app.notify("/api/v1/payments/notify", &failure).await;
    assert_eq!(
        (failed.status, failed.json["paymentStatus"].as_str()),
        (StatusCode::OK, Some("failed"))
    );
    assert_eq!(
        app.order_status(PAYER, &purchase.order).await,
        "pending_payment"
    );
    // (A success for the failed payment is still taken: `a_success_after_a_failure_is_never_dropped`.)

    let second = app.initiate(PAYER, &purchase.order, "alipay", None).await;
    assert_eq!(
        second.status,
        StatusCode::CREATED,
        "a new payment after a failed one"
    );
    assert_ne!(second.json["paymentId"], first["paymentId"]);
    app.notify(
        "/api/v1/payments/notify",
        &success(&second.json, purchase.amount, "tx-1"),
    )
    .await;
    eventually("the order is paid", || async {
        app.order_status(PAYER, &purchase.order).await == "paid"
    })
    .await;
}

async fn forged_stale_and_altered_notifications_change_nothing(app: TestApp) {
    let (purchase, payment) = app.open_payment(PAYER, 999_900, 1, "alipay", None).await;
    let body = success(&payment, purchase.amount, "tx-1");
    let raw = serde_json::to_vec(&body).unwrap();
    let now = chrono::Utc::now().timestamp();
    let post = |signature: Option<String>, raw: Vec<u8>| {
        let mut request = app
            .client
            .post(app.url("/api/v1/payments/notify"))
            .header("content-type", "application/json")
            .body(raw);
        if let Some(signature) = signature {
            request = request.header("Shop-Signature", signature);
        }
        app.send(request)
    };
    let forged = domain_payment::signature::ShopSignature::new("not the secret".to_owned().into())
        .sign(now, &raw);
    let genuine = signer().sign(now, &raw);
    let altered = serde_json::to_vec(&json!({"paymentId": payment["paymentId"], "paymentStatus": "success", "amount": 1, "currency": "CNY"})).unwrap();
    let cases = [
        ("unsigned", None, raw.clone()),
        ("forged", Some(forged), raw.clone()),
        ("stale", Some(signer().sign(now - 301, &raw)), raw.clone()),
        (
            "from the future",
            Some(signer().sign(now + 301, &raw)),
            raw.clone(),
        ),
        ("malformed", Some("v1=deadbeef".to_owned()), raw.clone()),
        (
            "replayed with an altered body",
            Some(genuine.clone()),
            altered,
        ),
    ];
    for (what, signature, raw) in cases {
        let response = post(signature, raw).await;
        assert_eq!(
            response.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            response.body
        );
        response.assert_problem(StatusCode::UNAUTHORIZED, "invalid_signature");
    }
    let alias = app
        .send(
            app.client
                .post(app.url("/paymentResultNotify"))
                .json(&json!({"orderId": purchase.order, "paymentStatus": "success"})),
        )
        .await;
    alias.assert_problem(StatusCode::UNAUTHORIZED, "invalid_signature");

    let id = payment["paymentId"].as_str().unwrap();
    assert_eq!(
        app.as_user(PAYER)
            .get(&format!("/api/v1/payments/{id}"))
            .await
            .json["status"],
        "pending",
        "nothing changed"
    );
    assert_eq!(
        app.order_status(PAYER, &purchase.order).await,
        "pending_payment"
    );
    // The genuine one still works.
    assert_eq!(post(Some(genuine), raw).await.status, StatusCode::OK);
}

async fn a_mismatched_amount_changes_nothing(app: TestApp) {
    let (purchase, payment) = app.open_payment(PAYER, 999_900, 1, "alipay", None).await;
    let cheaper = json!({"paymentId": payment["paymentId"], "paymentStatus": "success", "amount": purchase.amount - 1, "currency": "CNY"});
    let refused = app.notify("/api/v1/payments/notify", &cheaper).await;
    refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "amount_mismatch");
    assert_eq!(
        refused.json["detail"],
        "The payment is for 9999.00 CNY (999900 in minor units); the notification says 9998.99 CNY (999899 in minor units).",
        "amounts in words a person reads"
    );
    let dollars = json!({"paymentId": payment["paymentId"], "paymentStatus": "success", "amount": purchase.amount, "currency": "USD"});
    app.notify("/api/v1/payments/notify", &dollars)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "amount_mismatch");
    let unknown =
        json!({"paymentId": "nope", "paymentStatus": "success", "amount": 1, "currency": "CNY"});
    app.notify("/api/v1/payments/notify", &unknown)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "payment_not_found");
    let bad_status = json!({"paymentId": payment["paymentId"], "paymentStatus": "maybe", "amount": 1, "currency": "CNY"});
    let invalid = app.notify("/api/v1/payments/notify", &bad_status).await;
    invalid.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(invalid.problem_fields(), ["paymentStatus"]);
    let id = payment["paymentId"].as_str().unwrap();
    assert_eq!(
        app.as_user(PAYER)
            .get(&format!("/api/v1/payments/{id}"))
            .await
            .json["status"],
        "pending"
    );
}

async fn concurrent_duplicate_notifications_apply_once(app: TestApp) {
    let (purchase, payment) = app.open_payment(PAYER, 999_900, 1, "alipay", None).await;
    let body = success(&payment, purchase.amount, "tx-1");
    let app = Arc::new(app);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (app, body) = (app.clone(), body.clone());
            tokio::spawn(async move { app.notify("/api/v1/payments/notify", &body).await })
        })
        .collect();
    let mut applied = 0;
    for task in tasks {
        let response = task.await.unwrap();
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        assert_eq!(response.json["paymentStatus"], "succeeded");
        if response.json["applied"] == true {
            applied += 1;
        }
    }
    assert_eq!(applied, 1, "exactly one transition");
    eventually("the order is paid", || async {
        app.order_status(PAYER, &purchase.order).await == "paid"
    })
    .await;
    let events =
        |kind: &str| format!("SELECT COUNT(*) AS n FROM outbox_events WHERE event_type = '{kind}'");
    let url = database_url(&app);
    assert_eq!(count(&url, &events("payment.succeeded")), 1);
    eventually("every delivery is handled", || async {
        count(
            &url,
            "SELECT COUNT(*) AS n FROM event_deliveries WHERE handled_at IS NULL",
        ) == 0
    })
    .await;
    assert_eq!(count(&url, &events("order.paid")), 1);
}

/// Signed notification bytes, as a gateway sent them (or an eavesdropper recorded them).
struct Recorded {
    raw: Vec<u8>,
    signature: String,
}

impl Recorded {
    fn signed_at(body: &Value, timestamp: i64) -> Self {
        let raw = serde_json::to_vec(body).unwrap();
        let signature = signer().sign(timestamp, &raw);
        Self { raw, signature }
    }

    fn now(body: &Value) -> Self {
        Self::signed_at(body, chrono::Utc::now().timestamp())
    }

    /// Sends these exact bytes, with their signature, to `path`.
    async fn send(&self, app: &TestApp, path: &str) -> shop_tests::Response {
        app.send(
            app.client
                .post(app.url(path))
                .header("Shop-Signature", &self.signature)
                .header("content-type", "application/json")
                .body(self.raw.clone()),
        )
        .await
    }
}

/// Issue 12, item 1: a genuine failure by order id was recorded; the
/// customer opened a second payment; the recorded bytes, replayed within the
/// five minutes, must not touch it, and its genuine success must pay the order.
async fn a_replayed_failure_never_acts_on_the_next_payment(app: TestApp) {
    let (purchase, first) = app.open_payment(PAYER, 999_900, 1, "alipay", None).await;
    let first = first["paymentId"].as_str().unwrap().to_owned();
    let recorded = Recorded::now(&json!({"orderId": purchase.order, "paymentStatus": "failure"}));
    let failed = recorded.send(&app, "/paymentResultNotify").await;
    assert_eq!(failed.status, StatusCode::OK, "{}", failed.body);
    assert_eq!(failed.json["paymentId"], first.as_str());
    assert_eq!(failed.json["paymentStatus"], "failed");

    let second = app.initiate(PAYER, &purchase.order, "alipay", None).await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
    let second = second.json;
    let id = second["paymentId"].as_str().unwrap().to_owned();
    assert_ne!(id, first);

    for path in ["/paymentResultNotify", "/api/v1/payments/notify"] {
        let replayed = recorded.send(&app, path).await;
        let expected = if path == "/paymentResultNotify" {
            (StatusCode::CONFLICT, "notification_replayed")
        } else {
            // The same bytes on the REST route name no payment at all.
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
        };
        replayed.assert_problem(expected.0, expected.1);
        assert_eq!(
            app.payment_status(PAYER, &id).await,
            "pending",
            "{path}: nothing changed"
        );
    }
    assert_eq!(app.payment_status(PAYER, &first).await, "failed");

    // The gateway's genuine success for the second payment is taken.
    let paid = app
        .notify(
            "/api/v1/payments/notify",
            &success(&second, purchase.amount, "tx-1"),
        )
        .await;
    assert_eq!(
        (paid.status, paid.json["paymentStatus"].as_str()),
        (StatusCode::OK, Some("succeeded")),
        "{}",
        paid.body
    );
    eventually("the order is paid", || async {
        app.order_status(PAYER, &purchase.order).await == "paid"
    })
    .await;
}

/// A notification by order id that was never accepted (so no record of it
/// exists) still cannot act on a payment opened after it was signed.
async fn an_order_notification_signed_before_its_payment_was_opened_is_refused(app: TestApp) {
    let (purchase, payment) = app.open_payment(PAYER, 999_900, 1, "alipay", None).await;
    let id = payment["paymentId"].as_str().unwrap();
    let earlier = chrono::Utc::now().timestamp() - 60;
    for status in ["failure", "success"] {
        let body = json!({"orderId": purchase.order, "paymentStatus": status});
        app.notify_at("/paymentResultNotify", &body, earlier)
            .await
            .assert_problem(StatusCode::CONFLICT, "notification_predates_payment");
    }
    assert_eq!(app.payment_status(PAYER, id).await, "pending");
    assert_eq!(
        app.order_status(PAYER, &purchase.order).await,
        "pending_payment"
    );
    // Signed now, the same notification is about this payment.
    let body = json!({"orderId": purchase.order, "paymentStatus": "failure"});
    let failed = app.notify("/paymentResultNotify", &body).await;
    assert_eq!(failed.json["paymentStatus"], "failed", "{}", failed.body);
}

async fn an_exact_replay_answers_as_before_only_while_nothing_moved(app: TestApp) {
    // A gateway that retries the very bytes of a success it saw applied gets a
    // 2xx (else it would retry for ever), and nothing changes.
    let (purchase, payment) = app.open_payment(PAYER, 999_900, 1, "alipay", None).await;
    let id = payment["paymentId"].as_str().unwrap().to_owned();
    let recorded = Recorded::now(&success(&payment, purchase.amount, "tx-1"));
    let first = recorded.send(&app, "/api/v1/payments/notify").await;
    assert_eq!(
        (first.status, first.json["applied"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{}",
        first.body
    );
    eventually("the order is paid", || async {
        app.order_status(PAYER, &purchase.order).await == "paid"
    })
    .await;
    let again = recorded.send(&app, "/api/v1/payments/notify").await;
    assert_eq!(
        (
            again.status,
            again.json["applied"].as_bool(),
            again.json["paymentStatus"].as_str()
        ),
        (StatusCode::OK, Some(false), Some("succeeded")),
        "{}",
        again.body
    );
    let url = database_url(&app);
    let events = "SELECT COUNT(*) AS n FROM outbox_events WHERE event_type = 'payment.succeeded'";
    assert_eq!(count(&url, events), 1, "one success, published once");

    // A failure's bytes, replayed once the payment took money, are refused as a replay.
    let (purchase, payment) = app.open_payment(PAYER, 999_900, 1, "alipay", None).await;
    let id2 = payment["paymentId"].as_str().unwrap().to_owned();
    let failure = Recorded::now(
        &json!({"paymentId": id2, "paymentStatus": "failure", "amount": purchase.amount, "currency": "CNY", "transactionId": "tx-failed"}),
    );
    assert_eq!(
        failure.send(&app, "/api/v1/payments/notify").await.json["paymentStatus"],
        "failed"
    );
    let taken = app
        .notify(
            "/api/v1/payments/notify",
            &success(&payment, purchase.amount, "tx-1"),
        )
        .await;
    assert_eq!(taken.json["paymentStatus"], "succeeded", "{}", taken.body);
    failure
        .send(&app, "/api/v1/payments/notify")
        .await
        .assert_problem(StatusCode::CONFLICT, "notification_replayed");
    assert_eq!(app.payment_status(PAYER, &id2).await, "succeeded");
    assert_eq!(app.payment_status(PAYER, &id).await, "succeeded");
}

/// Money the gateway reports taken ends `succeeded` or `refund_required`,
/// whatever the payment said before, and the answer says which.
async fn a_success_after_a_failure_is_never_dropped(app: TestApp) {
    let notify = |body: Value| {
        let app = &app;
        async move { app.notify("/api/v1/payments/notify", &body).await }
    };
    let failure = |payment: &Value, amount: i64| json!({"paymentId": payment["paymentId"], "paymentStatus": "failure", "amount": amount, "currency": "CNY"});

    // The order can still take it: the payment succeeds and pays it.
    let (purchase, payment) = app.open_payment(PAYER, 999_900, 1, "alipay", None).await;
    assert_eq!(
        notify(failure(&payment, purchase.amount)).await.json["paymentStatus"],
        "failed"
    );
    let late = notify(success(&payment, purchase.amount, "tx-1")).await;
    assert_eq!(
        (
            late.status,
            late.json["paymentStatus"].as_str(),
            late.json["applied"].as_bool()
        ),
        (StatusCode::OK, Some("succeeded"), Some(true)),
        "{}",
        late.body
    );
    eventually("the order is paid", || async {
        app.order_status(PAYER, &purchase.order).await == "paid"
    })
    .await;

    // Another payment paid the order meanwhile: this one's money goes back.
    let (purchase, first) = app.open_payment(PAYER, 999_900, 1, "alipay", None).await;
    notify(failure(&first, purchase.amount)).await;
    let second = app
        .initiate(PAYER, &purchase.order, "wechat_pay", None)
        .await
        .json;
    assert_eq!(
        notify(success(&second, purchase.amount, "tx-1")).await.json["paymentStatus"],
        "succeeded"
    );
    eventually("the order is paid", || async {
        app.order_status(PAYER, &purchase.order).await == "paid"
    })
    .await;
    let late = notify(success(&first, purchase.amount, "tx-1")).await;
    assert_eq!(
        (late.status, late.json["paymentStatus"].as_str()),
        (StatusCode::OK, Some("refund_required")),
        "{}",
        late.body
    );
    money_goes_back(&app, first["paymentId"].as_str().unwrap()).await;
    assert_eq!(
        app.payment_status(PAYER, second["paymentId"].as_str().unwrap())
            .await,
        "succeeded"
    );

    // The order was cancelled after the failure: the money goes back, and the
    // original-spec route says so too.
    let (purchase, payment) = app.open_payment(PAYER, 999_900, 1, "alipay", None).await;
    notify(failure(&payment, purchase.amount)).await;
    assert_eq!(
        app.cancel(PAYER, &purchase.order).await.status,
        StatusCode::OK
    );
    let late = app
        .notify(
            "/paymentResultNotify",
            &json!({"orderId": purchase.order, "paymentStatus": "success", "transactionId": "tx-late"}),
        )
        .await;
    assert_eq!(
        (late.status, late.json["paymentStatus"].as_str()),
        (StatusCode::OK, Some("refund_required")),
        "{}",
        late.body
    );
    assert_eq!(app.order_status(PAYER, &purchase.order).await, "cancelled");
    // A failure for money already taken is the one thing refused (other
    // bytes than the first failure's, which would be refused as a replay).
    let mut contradiction = failure(&payment, purchase.amount);
    contradiction["transactionId"] = json!("tx-failed-again");
    notify(contradiction)
        .await
        .assert_problem(StatusCode::CONFLICT, "payment_already_final");
    money_goes_back(&app, payment["paymentId"].as_str().unwrap()).await;
}

/// Money a payment must give back: marked for refund at once, then refunded
/// through its provider (the sandbox confirms at once) by the background work.
async fn money_goes_back(app: &TestApp, payment: &str) {
    let now = app.payment_status(PAYER, payment).await;
    assert!(
        now == "refund_required" || now == "refunded",
        "marked for refund at once: {now}"
    );
    eventually("the money went back", || async {
        app.payment_status(PAYER, payment).await == "refunded"
    })
    .await;
}

/// Issue 12, item 3: a transaction id PostgreSQL cannot store (NUL) was a
/// 500 there and a 200 on SQLite; every backend now answers 422 before
/// anything is read or written.
async fn transaction_ids_are_short_visible_ascii_on_both_routes(app: TestApp) {
    let (purchase, payment) = app.open_payment(PAYER, 999_900, 1, "alipay", None).await;
    let id = payment["paymentId"].as_str().unwrap();
    let overlong = "x".repeat(129);
    for bad in ["tx\u{0}", "", "tx 1", "tx\n", overlong.as_str()] {
        let rest = json!({"paymentId": id, "paymentStatus": "success", "amount": purchase.amount, "currency": "CNY", "transactionId": bad});
        let original =
            json!({"orderId": purchase.order, "paymentStatus": "success", "transactionId": bad});
        for (path, body) in [
            ("/api/v1/payments/notify", rest),
            ("/paymentResultNotify", original),
        ] {
            let refused = app.notify(path, &body).await;
            refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
            assert_eq!(
                refused.problem_fields(),
                ["transactionId"],
                "{path} {bad:?}"
            );
        }
    }
    assert_eq!(
        app.payment_status(PAYER, id).await,
        "pending",
        "nothing changed"
    );
    assert_eq!(
        app.order_status(PAYER, &purchase.order).await,
        "pending_payment"
    );
    let longest = "x".repeat(128);
    let fine =
        json!({"orderId": purchase.order, "paymentStatus": "success", "transactionId": longest});
    let taken = app.notify("/paymentResultNotify", &fine).await;
    assert_eq!(taken.json["paymentStatus"], "succeeded", "{}", taken.body);
    let fetched = app
        .as_user(PAYER)
        .get(&format!("/api/v1/payments/{id}"))
        .await;
    assert_eq!(fetched.json["transactionId"], longest.as_str());
}

/// The record of accepted notifications keeps only what could still be replayed.
async fn notification_records_are_pruned_once_they_cannot_be_replayed(app: TestApp) {
    let (purchase, payment) = app.open_payment(PAYER, 999_900, 1, "alipay", None).await;
    let notified = app
        .notify(
            "/api/v1/payments/notify",
            &success(&payment, purchase.amount, "tx-1"),
        )
        .await;
    assert_eq!(notified.status, StatusCode::OK, "{}", notified.body);
    let url = database_url(&app);
    let rows = "SELECT COUNT(*) AS n FROM payment_notifications";
    assert_eq!(
        count(&url, rows),
        1,
        "the accepted notification is recorded"
    );
    let long_ago = chrono::Utc::now().timestamp() - 2 * TOLERANCE_SECS - 1;
    {
        let mut conn = app.modules.db.get_blocking().unwrap();
        diesel::sql_query(format!(
            "INSERT INTO payment_notifications (digest, payment_id, signed_at, received_at) \
             VALUES ('old', 'p', {long_ago}, '2026-01-01 00:00:00')"
        ))
        .execute(&mut *conn)
        .unwrap();
    }
    assert_eq!(count(&url, rows), 2);
    assert_eq!(
        app.modules
            .facade::<domain_payment::PaymentService>()
            .expect("payment context")
            .prune_notifications()
            .await
            .unwrap(),
        1
    );
    assert_eq!(count(&url, rows), 1, "the fresh record stays");
}

fn database_url(app: &TestApp) -> String {
    app.database_url.clone()
}

async fn money_for_a_cancelled_order_is_marked_for_refund(app: TestApp) {
    let (purchase, payment) = app.open_payment(PAYER, 999_900, 1, "alipay", None).await;
    let cancelled = app.cancel(PAYER, &purchase.order).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    let late = app
        .notify(
            "/api/v1/payments/notify",
            &success(&payment, purchase.amount, "tx-1"),
        )
        .await;
    assert_eq!(
        late.status,
        StatusCode::OK,
        "the gateway's news is accepted: the money did move"
    );
    assert_eq!(
        (
            late.json["paymentStatus"].as_str(),
            late.json["applied"].as_bool()
        ),
        (Some("refund_required"), Some(true)),
        "the answer is the state the payment ends in: {}",
        late.body
    );
    let id = payment["paymentId"].as_str().unwrap().to_owned();
    money_goes_back(&app, &id).await;
    assert_eq!(
        app.order_status(PAYER, &purchase.order).await,
        "cancelled",
        "the order stays cancelled"
    );
    eventually("the stock is back", || async {
        app.stock(&purchase.product).await == 10
    })
    .await;
    // A repeat of the success is a duplicate, not a contradiction.
    let repeat = app
        .notify(
            "/api/v1/payments/notify",
            &success(&payment, purchase.amount, "tx-1"),
        )
        .await;
    assert_eq!(
        (repeat.status, repeat.json["applied"].as_bool()),
        (StatusCode::OK, Some(false))
    );
}

async fn payments_are_refused_for_orders_that_cannot_be_paid(app: TestApp) {
    app.initiate(PAYER, "no-such-order", "alipay", None)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "order_not_found");
    let purchase = app.order_new_product(PAYER, 999_900, "CNY", 10, 1).await;
    let bad_method = app.initiate(PAYER, &purchase.order, "paypal", None).await;
    bad_method.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(bad_method.problem_fields(), ["paymentMethod"]);
    let cancelled = app.cancel(PAYER, &purchase.order).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    app.initiate(PAYER, &purchase.order, "alipay", None)
        .await
        .assert_problem(StatusCode::CONFLICT, "order_cancelled");
}

async fn original_spec_aliases_initiate_and_notify(app: TestApp) {
    let purchase = app.order_new_product(PAYER, 999_900, "CNY", 10, 1).await;
    app.notify(
        "/paymentResultNotify",
        &json!({"orderId": purchase.order, "paymentStatus": "success"}),
    )
    .await
    .assert_problem(StatusCode::CONFLICT, "no_payment_initiated");
    app.notify(
        "/paymentResultNotify",
        &json!({"orderId": "no-such-order", "paymentStatus": "success"}),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "order_not_found");

    let opened = app
        .as_user(PAYER)
        .post_json(
            "/initiatePayment",
            &json!({"orderId": purchase.order, "paymentMethod": "alipay"}),
        )
        .await;
    assert_eq!(opened.status, StatusCode::CREATED, "{}", opened.body);
    assert!(
        opened.json["paymentUrl"]
            .as_str()
            .unwrap()
            .contains("/sandbox/checkout/")
    );

    // Amount and currency are optional here; each one given must match.
    let wrong = json!({"orderId": purchase.order, "paymentStatus": "success", "amount": purchase.amount + 1});
    app.notify("/paymentResultNotify", &wrong)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "amount_mismatch");
    let dollars = json!({"orderId": purchase.order, "paymentStatus": "success", "currency": "USD"});
    app.notify("/paymentResultNotify", &dollars)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "amount_mismatch");
    let notified = app
        .notify(
            "/paymentResultNotify",
            &json!({"orderId": purchase.order, "paymentStatus": "success"}),
        )
        .await;
    assert_eq!(notified.status, StatusCode::OK, "{}", notified.body);
    assert_eq!(notified.json["success"], true);
    assert_eq!(notified.json["paymentStatus"], "succeeded");
    let again = app
        .notify(
            "/paymentResultNotify",
            &json!({"orderId": purchase.order, "paymentStatus": "success"}),
        )
        .await;
    assert_eq!(
        (again.status, again.json["success"].as_bool()),
        (StatusCode::OK, Some(true)),
        "a duplicate is accepted"
    );
    eventually("the order is paid", || async {
        app.order_status(PAYER, &purchase.order).await == "paid"
    })
    .await;
}

mod expiry_after_failure {
    use super::*;

    async fn a_failed_payment_then_expiry_releases_the_stock(backend: Backend) {
        // Long enough that the payment and its failure land before the expiry on a loaded machine.
        let settings = [
            ("SHOP__ORDER__PAYMENT_TIMEOUT_SECS", "5"),
            ("SHOP__ORDER__EXPIRY_SWEEP_MS", "100"),
        ];
        let app = TestApp::spawn_with(backend, &settings).await;
        let purchase = app.order_new_product(PAYER, 999_900, "CNY", 10, 3).await;
        let payment = app
            .initiate(PAYER, &purchase.order, "wechat_pay", None)
            .await
            .json;
        let failure = json!({"paymentId": payment["paymentId"], "paymentStatus": "failure", "amount": purchase.amount, "currency": "CNY"});
        assert_eq!(
            app.notify("/api/v1/payments/notify", &failure).await.status,
            StatusCode::OK
        );
        assert_eq!(
            app.order_status(PAYER, &purchase.order).await,
            "pending_payment",
            "still payable"
        );
        assert_eq!(app.stock(&purchase.product).await, 7);
        eventually("the order expires", || async {
            app.order_status(PAYER, &purchase.order).await == "cancelled"
        })
        .await;
        eventually("the stock is released", || async {
            app.stock(&purchase.product).await == 10
        })
        .await;
        app.initiate(PAYER, &purchase.order, "alipay", None)
            .await
            .assert_problem(StatusCode::CONFLICT, "order_cancelled");
    }

    shop_tests::on_each_backend!(a_failed_payment_then_expiry_releases_the_stock);
}

mod sandbox_off {
    use super::*;

    async fn without_the_sandbox_no_gateway_is_configured(backend: Backend) {
        let app = TestApp::spawn_with(backend, &[("SHOP__PAYMENT__SANDBOX", "false")]).await;
        let purchase = app.order_new_product(PAYER, 999_900, "CNY", 10, 1).await;
        app.initiate(PAYER, &purchase.order, "alipay", None)
            .await
            .assert_problem(StatusCode::SERVICE_UNAVAILABLE, "no_payment_gateway");
        app.get("/sandbox/checkout/anything")
            .await
            .assert_problem(StatusCode::NOT_FOUND, "not_found");
        // No gateway settles payments by `Shop-Signature`: its routes serve nothing.
        let signed = json!({"paymentId": "01a21a60-79fb-7725-877b-4612200d19ee",
                            "paymentStatus": "success", "amount": 1, "currency": "CNY"});
        app.notify("/api/v1/payments/notify", &signed)
            .await
            .assert_problem(StatusCode::NOT_FOUND, "not_found");
        app.notify(
            "/paymentResultNotify",
            &json!({"orderId": purchase.order, "paymentStatus": "success"}),
        )
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not_found");
    }

    shop_tests::on_each_backend!(without_the_sandbox_no_gateway_is_configured);
}

/// Issue 13: a cancelled order's payments stop taking money. They close at
/// once (the checkout offers no Pay, and refuses one with 409), and their
/// trades are closed at the provider.
async fn cancelling_an_order_closes_its_payments(app: TestApp) {
    let (purchase, payment) = app.open_payment(PAYER, 999_900, 1, "alipay", None).await;
    let id = payment["paymentId"].as_str().unwrap().to_owned();
    let url = payment["paymentUrl"].as_str().unwrap().to_owned();
    assert_eq!(
        app.cancel(PAYER, &purchase.order).await.status,
        StatusCode::OK
    );
    eventually("the payment is closed", || async {
        app.payment_status(PAYER, &id).await == "closed"
    })
    .await;
    let page = app
        .client
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("closed") && !page.contains("id=\"pay\""),
        "{page}"
    );
    let pay = app
        .client
        .post(&url)
        .form(&[("outcome", "success")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        pay.status(),
        StatusCode::CONFLICT,
        "a closed trade takes no money"
    );
    let url_db = database_url(&app);
    eventually("the trade was closed at the provider", || async {
        count(
            &url_db,
            &format!(
                "SELECT COUNT(*) AS n FROM payments WHERE id = '{id}' AND provider_due_at IS NULL"
            ),
        ) == 1
    })
    .await;
    assert_eq!(app.payment_status(PAYER, &id).await, "closed");
}

/// `initiatePayment` and `cancelOrder` sent together, on many orders: a
/// payment opened while its order was being cancelled is closed at once (the
/// cancellation's reaction may have run before the payment was committed, so
/// the initiation asks about the order again after its commit). None of the
/// orders is left with a pending payment; an initiation that lost the race
/// answers 409 `order_cancelled`.
async fn a_payment_racing_its_orders_cancellation_is_closed(app: TestApp) {
    const ORDERS: usize = 60;
    let product = app.create_product("Raced", 100, ORDERS as i64).await;
    let product = product["productId"].as_str().unwrap().to_owned();
    let mut orders = Vec::new();
    for _ in 0..ORDERS {
        orders.push(app.place_order(PAYER, &product, 1).await.order);
    }
    // Every request is started before any is awaited.
    let app = Arc::new(app);
    let mut initiations = Vec::new();
    let mut cancellations = Vec::new();
    for order in &orders {
        let (a, o) = (app.clone(), order.clone());
        initiations.push(tokio::spawn(async move {
            a.initiate(PAYER, &o, "wechat_pay", None).await
        }));
        let (a, o) = (app.clone(), order.clone());
        cancellations.push(tokio::spawn(async move { a.cancel(PAYER, &o).await }));
    }
    let mut cancelled_all = Vec::new();
    for task in cancellations {
        cancelled_all.push(task.await.unwrap());
    }
    let mut initiated_all = Vec::new();
    for task in initiations {
        initiated_all.push(task.await.unwrap());
    }
    let (initiations, cancellations) = (initiated_all, cancelled_all);
    for cancelled in &cancellations {
        assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    }
    for initiated in &initiations {
        assert!(
            matches!(initiated.status, StatusCode::CREATED | StatusCode::OK)
                || initiated.json["code"] == "order_cancelled",
            "{} {}",
            initiated.status,
            initiated.body
        );
    }
    let url = database_url(&app);
    let listed = orders
        .iter()
        .map(|order| format!("'{order}'"))
        .collect::<Vec<_>>()
        .join(",");
    let opened = count(
        &url,
        &format!("SELECT COUNT(*) AS n FROM payments WHERE order_id IN ({listed})"),
    );
    assert!(opened > 0, "no payment was opened: nothing raced");
    eventually("no cancelled order keeps a pending payment", || async {
        count(
            &url,
            &format!(
                "SELECT COUNT(*) AS n FROM payments WHERE order_id IN ({listed}) AND status = 'pending'"
            ),
        ) == 0
    })
    .await;
    assert_eq!(
        count(
            &url,
            &format!(
                "SELECT COUNT(*) AS n FROM payments WHERE order_id IN ({listed}) AND status = 'closed'"
            ),
        ),
        opened,
        "every payment opened is closed"
    );
}

/// Initiations of one order sent together: one opens the payment (201),
/// every other answers that open payment (200), as a retry sent after it
/// would; none is refused by the one-open-payment index.
async fn concurrent_initiations_of_one_order_answer_its_one_payment(app: TestApp) {
    const ORDERS: usize = 10;
    const TOGETHER: usize = 12;
    let product = app.create_product("Wanted", 100, ORDERS as i64).await;
    let product = product["productId"].as_str().unwrap().to_owned();
    let app = Arc::new(app);
    for _ in 0..ORDERS {
        let order = app.place_order(PAYER, &product, 1).await.order;
        // Every request is started before any is awaited.
        let tasks: Vec<_> = (0..TOGETHER)
            .map(|_| {
                let (app, order) = (app.clone(), order.clone());
                tokio::spawn(async move { app.initiate(PAYER, &order, "wechat_pay", None).await })
            })
            .collect();
        let mut opened = 0;
        let mut ids = std::collections::BTreeSet::new();
        for task in tasks {
            let answer = task.await.unwrap();
            match answer.status {
                StatusCode::CREATED => opened += 1,
                StatusCode::OK => {}
                _ => panic!("{} {}", answer.status, answer.body),
            }
            ids.insert(answer.json["paymentId"].as_str().unwrap().to_owned());
        }
        assert_eq!(opened, 1, "one initiation opened the payment");
        assert_eq!(ids.len(), 1, "every initiation answered the same payment");
    }
}

/// Money that arrives for an order that can no longer take it goes back
/// through the provider, once: one `payment.refunded` event however many
/// times the success is repeated. (The metrics of test apps are the test
/// process's, shared by every test, so the calls are counted in the event.)
async fn money_that_cannot_be_kept_is_refunded_once(app: TestApp) {
    let (purchase, payment) = app
        .open_payment(PAYER, 999_900, 1, "wechat_pay", None)
        .await;
    let id = payment["paymentId"].as_str().unwrap().to_owned();
    assert_eq!(
        app.cancel(PAYER, &purchase.order).await.status,
        StatusCode::OK
    );
    let late = app
        .notify(
            "/api/v1/payments/notify",
            &success(&payment, purchase.amount, "tx-1"),
        )
        .await;
    assert_eq!(
        late.json["paymentStatus"], "refund_required",
        "{}",
        late.body
    );
    money_goes_back(&app, &id).await;
    // The gateway repeats its news (new bytes each time): nothing moves again.
    for attempt in 0..3 {
        let mut again = success(&payment, purchase.amount, "tx-1");
        again["transactionId"] = json!(format!("tx-repeat-{attempt}"));
        let repeat = app.notify("/api/v1/payments/notify", &again).await;
        assert_eq!(
            (
                repeat.status,
                repeat.json["paymentStatus"].as_str(),
                repeat.json["applied"].as_bool()
            ),
            (StatusCode::OK, Some("refunded"), Some(false)),
            "{}",
            repeat.body
        );
    }
    let url = database_url(&app);
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) AS n FROM outbox_events WHERE event_type = 'payment.refunded'"
        ),
        1
    );
}

/// Settings under which a payment is asked about at once and every second
/// (its deadline stays the default 15 minutes away).
const ASK_AT_ONCE: &[(&str, &str)] = &[
    ("SHOP__PAYMENT__RECONCILE_WINDOW_SECS", "86400"),
    ("SHOP__PAYMENT__QUERY_INTERVAL_SECS", "1"),
];

/// A test on every backend with settings of its own.
macro_rules! on_both_with {
    ($settings:expr, $($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(shop_tests::TestApp::spawn_with(shop_tests::Backend::Sqlite, $settings).await).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(shop_postgres), ignore = "set SHOP_TEST_POSTGRES_URL to run the PostgreSQL tests")]
                async fn postgres() {
                    super::$name(shop_tests::TestApp::spawn_with(shop_tests::Backend::Postgres, $settings).await).await;
                }
                #[cfg(feature = "mysql")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(shop_mysql), ignore = "set SHOP_TEST_MYSQL_URL to run the MariaDB tests")]
                async fn mariadb() {
                    super::$name(shop_tests::TestApp::spawn_with(shop_tests::Backend::Mysql, $settings).await).await;
                }
            }
        )*
    };
}

on_both_with!(
    super::ASK_AT_ONCE,
    a_success_whose_notification_never_came_is_learned_by_asking
);
on_both_with!(
    &[
        ("SHOP__ORDER__PAYMENT_TIMEOUT_SECS", "3"),
        ("SHOP__ORDER__EXPIRY_SWEEP_MS", "100"),
        ("SHOP__PAYMENT__QUERY_INTERVAL_SECS", "1")
    ],
    an_unpaid_trade_is_closed_at_its_deadline
);
on_both_with!(&[], a_trade_paid_before_it_was_closed_is_refunded);

/// Pays on the sandbox's checkout page without the notification (its "Pay,
/// and lose the notification" button).
async fn pay_silently(app: &TestApp, payment: &Value) {
    let url = payment["paymentUrl"].as_str().unwrap();
    let paid = app
        .client
        .post(url)
        .form(&[("outcome", "success_unnotified")])
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), StatusCode::OK);
    assert!(
        paid.text()
            .await
            .unwrap()
            .contains("No notification was sent")
    );
}

/// Issue 13: a notification is never trusted to come. The payment is asked
/// about at its provider, and the success learned so pays the order.
async fn a_success_whose_notification_never_came_is_learned_by_asking(app: TestApp) {
    let (purchase, payment) = app
        .open_payment(PAYER, 999_900, 1, "wechat_pay", None)
        .await;
    let id = payment["paymentId"].as_str().unwrap().to_owned();
    pay_silently(&app, &payment).await;
    eventually("the order is paid without a notification", || async {
        app.order_status(PAYER, &purchase.order).await == "paid"
    })
    .await;
    assert_eq!(app.payment_status(PAYER, &id).await, "succeeded");
    let url = database_url(&app);
    assert_eq!(
        count(&url, "SELECT COUNT(*) AS n FROM payment_notifications"),
        0,
        "no notification came"
    );
    assert_eq!(
        count(
            &url,
            &format!(
                "SELECT COUNT(*) AS n FROM payments WHERE id = '{id}' AND provider_due_at IS NULL"
            )
        ),
        1,
        "nothing more to ask"
    );
}

/// A trade nobody paid is closed once its order expires: the payment ends
/// `closed` and nothing is owed to the provider.
async fn an_unpaid_trade_is_closed_at_its_deadline(app: TestApp) {
    let (purchase, payment) = app.open_payment(PAYER, 999_900, 1, "alipay", None).await;
    let id = payment["paymentId"].as_str().unwrap().to_owned();
    let url = database_url(&app);
    shop_tests::wait_until(
        "the expired order's trade is closed",
        std::time::Duration::from_secs(20),
        || async {
            count(&url, &format!("SELECT COUNT(*) AS n FROM payments WHERE id = '{id}' AND status = 'closed' AND provider_due_at IS NULL")) == 1
        },
    )
    .await;
    assert_eq!(app.order_status(PAYER, &purchase.order).await, "cancelled");
    let pay = app
        .client
        .post(payment["paymentUrl"].as_str().unwrap())
        .form(&[("outcome", "success")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        pay.status(),
        StatusCode::CONFLICT,
        "a closed trade takes no money"
    );
}

/// The customer paid (the notification lost) just before the order was
/// cancelled: the close finds the trade paid, and the money goes back once.
async fn a_trade_paid_before_it_was_closed_is_refunded(app: TestApp) {
    let (purchase, payment) = app.open_payment(PAYER, 999_900, 1, "alipay", None).await;
    let id = payment["paymentId"].as_str().unwrap().to_owned();
    pay_silently(&app, &payment).await;
    assert_eq!(
        app.cancel(PAYER, &purchase.order).await.status,
        StatusCode::OK
    );
    eventually("the money went back", || async {
        app.payment_status(PAYER, &id).await == "refunded"
    })
    .await;
    assert_eq!(app.order_status(PAYER, &purchase.order).await, "cancelled");
    let url = database_url(&app);
    assert_eq!(
        count(
            &url,
            &format!(
                "SELECT COUNT(*) AS n FROM outbox_events WHERE event_type = 'payment.refunded' AND payload LIKE '%{id}%'"
            )
        ),
        1
    );
}

//! Payments on SQLite and PostgreSQL: the whole purchase, signed
//! notifications (and every way to forge one), duplicates, refunds.

use std::sync::Arc;

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
);

/// The customer who places and pays every order here.
const PAYER: &str = "payer";

struct Purchase {
    product: String,
    order: String,
    amount: i64,
}

async fn place_order(app: &TestApp, stock: i64, quantity: i64) -> Purchase {
    let product = app.create_product("Phone", 999_900, stock).await["productId"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({"userId": PAYER, "items": [{"productId": product, "quantity": quantity}]});
    let order = app.as_user(PAYER).post_json("/api/v1/orders", &body).await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
    Purchase {
        product,
        order: order.json["orderId"].as_str().unwrap().to_owned(),
        amount: order.json["amount"].as_i64().unwrap(),
    }
}

async fn initiate(app: &TestApp, order: &str, method: &str) -> shop_tests::Response {
    app.as_user(PAYER)
        .post_json(
            "/api/v1/payments",
            &json!({"orderId": order, "paymentMethod": method}),
        )
        .await
}

/// The payer cancels the order (no body).
async fn cancel(app: &TestApp, order: &str) -> shop_tests::Response {
    let payer = app.as_user(PAYER);
    payer
        .send(payer.request(
            reqwest::Method::POST,
            &format!("/api/v1/orders/{order}/cancel"),
        ))
        .await
}

fn success(payment: &Value, amount: i64) -> Value {
    json!({"paymentId": payment["paymentId"], "paymentStatus": "success", "amount": amount, "currency": "CNY", "transactionId": "tx-1"})
}

async fn order_status(app: &TestApp, order: &str) -> Value {
    app.as_user(PAYER)
        .get(&format!("/api/v1/orders/{order}"))
        .await
        .json["status"]
        .clone()
}

async fn a_purchase_from_order_to_paid(app: TestApp) {
    let purchase = place_order(&app, 10, 2).await;
    let opened = initiate(&app, &purchase.order, "wechat_pay").await;
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

    let again = initiate(&app, &purchase.order, "alipay").await;
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
            &success(&payment, purchase.amount),
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
        order_status(&app, &purchase.order).await == "paid"
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
    cancel(&app, &purchase.order)
        .await
        .assert_problem(StatusCode::CONFLICT, "order_not_cancellable");
    initiate(&app, &purchase.order, "alipay")
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
    let purchase = place_order(&app, 10, 1).await;
    let first = initiate(&app, &purchase.order, "alipay").await.json;
    let failure = json!({"paymentId": first["paymentId"], "paymentStatus": "failure", "amount": purchase.amount, "currency": "CNY"});
    let failed = app.notify("/api/v1/payments/notify", &failure).await;
    assert_eq!(
        (failed.status, failed.json["paymentStatus"].as_str()),
        (StatusCode::OK, Some("failed"))
    );
    assert_eq!(order_status(&app, &purchase.order).await, "pending_payment");
    // A success for the failed payment contradicts it.
    let late = app
        .notify("/api/v1/payments/notify", &success(&first, purchase.amount))
        .await;
    late.assert_problem(StatusCode::CONFLICT, "payment_already_final");

    let second = initiate(&app, &purchase.order, "alipay").await;
    assert_eq!(
        second.status,
        StatusCode::CREATED,
        "a new payment after a failed one"
    );
    assert_ne!(second.json["paymentId"], first["paymentId"]);
    app.notify(
        "/api/v1/payments/notify",
        &success(&second.json, purchase.amount),
    )
    .await;
    eventually("the order is paid", || async {
        order_status(&app, &purchase.order).await == "paid"
    })
    .await;
}

async fn forged_stale_and_altered_notifications_change_nothing(app: TestApp) {
    let purchase = place_order(&app, 10, 1).await;
    let payment = initiate(&app, &purchase.order, "alipay").await.json;
    let body = success(&payment, purchase.amount);
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
    assert_eq!(order_status(&app, &purchase.order).await, "pending_payment");
    // The genuine one still works.
    assert_eq!(post(Some(genuine), raw).await.status, StatusCode::OK);
}

async fn a_mismatched_amount_changes_nothing(app: TestApp) {
    let purchase = place_order(&app, 10, 1).await;
    let payment = initiate(&app, &purchase.order, "alipay").await.json;
    let cheaper = json!({"paymentId": payment["paymentId"], "paymentStatus": "success", "amount": purchase.amount - 1, "currency": "CNY"});
    app.notify("/api/v1/payments/notify", &cheaper)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "amount_mismatch");
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
    let purchase = place_order(&app, 10, 1).await;
    let payment = initiate(&app, &purchase.order, "alipay").await.json;
    let body = success(&payment, purchase.amount);
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
        order_status(&app, &purchase.order).await == "paid"
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

fn database_url(app: &TestApp) -> String {
    app.database_url.clone()
}

async fn money_for_a_cancelled_order_is_marked_for_refund(app: TestApp) {
    let purchase = place_order(&app, 10, 1).await;
    let payment = initiate(&app, &purchase.order, "alipay").await.json;
    let cancelled = cancel(&app, &purchase.order).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    let late = app
        .notify(
            "/api/v1/payments/notify",
            &success(&payment, purchase.amount),
        )
        .await;
    assert_eq!(
        late.status,
        StatusCode::OK,
        "the gateway's news is accepted: the money did move"
    );
    let id = payment["paymentId"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/payments/{id}");
    eventually("the payment is marked for refund", || async {
        app.as_user(PAYER).get(&path).await.json["status"] == "refund_required"
    })
    .await;
    assert_eq!(
        order_status(&app, &purchase.order).await,
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
            &success(&payment, purchase.amount),
        )
        .await;
    assert_eq!(
        (repeat.status, repeat.json["applied"].as_bool()),
        (StatusCode::OK, Some(false))
    );
}

async fn payments_are_refused_for_orders_that_cannot_be_paid(app: TestApp) {
    initiate(&app, "no-such-order", "alipay")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "order_not_found");
    let purchase = place_order(&app, 10, 1).await;
    let bad_method = initiate(&app, &purchase.order, "paypal").await;
    bad_method.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(bad_method.problem_fields(), ["paymentMethod"]);
    let cancelled = cancel(&app, &purchase.order).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    initiate(&app, &purchase.order, "alipay")
        .await
        .assert_problem(StatusCode::CONFLICT, "order_cancelled");
}

async fn original_spec_aliases_initiate_and_notify(app: TestApp) {
    let purchase = place_order(&app, 10, 1).await;
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
        order_status(&app, &purchase.order).await == "paid"
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
        let purchase = place_order(&app, 10, 3).await;
        let payment = initiate(&app, &purchase.order, "wechat_pay").await.json;
        let failure = json!({"paymentId": payment["paymentId"], "paymentStatus": "failure", "amount": purchase.amount, "currency": "CNY"});
        assert_eq!(
            app.notify("/api/v1/payments/notify", &failure).await.status,
            StatusCode::OK
        );
        assert_eq!(
            order_status(&app, &purchase.order).await,
            "pending_payment",
            "still payable"
        );
        assert_eq!(app.stock(&purchase.product).await, 7);
        eventually("the order expires", || async {
            order_status(&app, &purchase.order).await == "cancelled"
        })
        .await;
        eventually("the stock is released", || async {
            app.stock(&purchase.product).await == 10
        })
        .await;
        initiate(&app, &purchase.order, "alipay")
            .await
            .assert_problem(StatusCode::CONFLICT, "order_cancelled");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        a_failed_payment_then_expiry_releases_the_stock(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        not(shop_postgres),
        ignore = "set SHOP_TEST_POSTGRES_URL to run the PostgreSQL tests"
    )]
    async fn postgres() {
        a_failed_payment_then_expiry_releases_the_stock(Backend::Postgres).await;
    }
}

mod sandbox_off {
    use super::*;

    async fn without_the_sandbox_no_gateway_is_configured(backend: Backend) {
        let app = TestApp::spawn_with(backend, &[("SHOP__PAYMENT__SANDBOX", "false")]).await;
        let purchase = place_order(&app, 10, 1).await;
        initiate(&app, &purchase.order, "alipay")
            .await
            .assert_problem(StatusCode::SERVICE_UNAVAILABLE, "no_payment_gateway");
        app.get("/sandbox/checkout/anything")
            .await
            .assert_problem(StatusCode::NOT_FOUND, "not_found");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        without_the_sandbox_no_gateway_is_configured(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        not(shop_postgres),
        ignore = "set SHOP_TEST_POSTGRES_URL to run the PostgreSQL tests"
    )]
    async fn postgres() {
        without_the_sandbox_no_gateway_is_configured(Backend::Postgres).await;
    }
}

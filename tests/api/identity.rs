//! Customer identity: every order and payment belongs to the customer whose
//! token made it. Tokens are made here with `jsonwebtoken` directly (HS256
//! under the test secret, or RS256/ES256/EdDSA with the keys in
//! `tests/fixtures/jwt`, served as a JWKS by a local HTTP server).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};
use shop_tests::{
    ADMIN_TOKEN, Backend, Response, StatusCode, TEST_JWT_SECRET, TestApp, UserClient,
    on_every_backend, wait_until,
};

const RSA_A: &str = include_str!("../fixtures/jwt/rsa-a.pem");
const RSA_B: &str = include_str!("../fixtures/jwt/rsa-b.pem");
const EC_P256: &str = include_str!("../fixtures/jwt/ec-p256.pem");
const ED25519: &str = include_str!("../fixtures/jwt/ed25519.pem");

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn sign(header: Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&header, claims, key).expect("a token")
}

fn hs256(claims: &Value, secret: &str) -> String {
    sign(
        Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

/// Claims that are valid now, for `user`.
fn claims(user: &str) -> Value {
    json!({"sub": user, "iat": now(), "exp": now() + 600})
}

fn assert_invalid_token(response: &Response, why: &str) {
    response.assert_problem(StatusCode::UNAUTHORIZED, "invalid_token");
    let challenge = response.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""),
        "{why}: {challenge}"
    );
}

/// Every refused token is a 401 `invalid_token`, and changes nothing: the
/// order it tries to place is not placed, the stock stays whole.
async fn tokens_that_are_refused(backend: Backend) {
    // (More failures than the default limit: the limiter has its own test.)
    let app = TestApp::spawn_with(backend, &[("SHOP__AUTH__FAILURES_PER_MINUTE", "1000")]).await;
    let product = app.create_product("Phone", 999_900, 5).await["productId"]
        .as_str()
        .unwrap()
        .to_owned();
    let order = json!({"items": [{"productId": product, "quantity": 1}]});
    let rsa = EncodingKey::from_rsa_pem(RSA_A.as_bytes()).unwrap();
    let mut rs256 = Header::new(Algorithm::RS256);
    rs256.kid = Some("a".into());
    let without = |claim: &str| {
        let mut c = claims("alice");
        c.as_object_mut().unwrap().remove(claim);
        c
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "expired beyond the leeway",
            hs256(
                &json!({"sub": "alice", "exp": now() - 120}),
                TEST_JWT_SECRET,
            ),
        ),
        (
            "not valid yet",
            hs256(
                &json!({"sub": "alice", "exp": now() + 600, "nbf": now() + 300}),
                TEST_JWT_SECRET,
            ),
        ),
        (
            "signed with another key",
            hs256(&claims("alice"), "not-the-test-secret-0123456789abcdef"),
        ),
        (
            "HS384, not the pinned HS256",
            sign(
                Header::new(Algorithm::HS384),
                &claims("alice"),
                &EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
            ),
        ),
        (
            "RS256 with no JWKS configured",
            sign(rs256, &claims("alice"), &rsa),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(r#"{"alg":"none","typ":"JWT"}"#),
                b64(&claims("alice").to_string())
            ),
        ),
        ("no sub", hs256(&without("sub"), TEST_JWT_SECRET)),
        ("no exp", hs256(&without("exp"), TEST_JWT_SECRET)),
        (
            "a sub that is no user id",
            hs256(&claims("alice smith"), TEST_JWT_SECRET),
        ),
        ("not a JWT", "opaque-token".to_owned()),
        ("a tampered payload", {
            let good = hs256(&claims("alice"), TEST_JWT_SECRET);
            let parts: Vec<&str> = good.split('.').collect();
            format!(
                "{}.{}.{}",
                parts[0],
                b64(&claims("mallory").to_string()),
                parts[2]
            )
        }),
    ];
    for (why, token) in &cases {
        let response = app
            .send_as(token, Method::POST, "/api/v1/orders", Some(&order))
            .await;
        assert_invalid_token(&response, why);
        let response = app
            .send_as(token, Method::GET, "/api/v1/orders", None)
            .await;
        assert_invalid_token(&response, why);
    }
    assert_eq!(
        app.stock(&product).await,
        5,
        "no refused token reserved stock"
    );
    let listed = app.admin_get("/api/v1/orders?userId=alice").await;
    assert_eq!(
        listed.json["items"],
        json!([]),
        "no refused token placed an order"
    );

    // Within the leeway (30 s by default) a just-expired token still works.
    let late = hs256(&json!({"sub": "alice", "exp": now() - 5}), TEST_JWT_SECRET);
    let placed = app
        .send_as(&late, Method::POST, "/api/v1/orders", Some(&order))
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    assert_eq!(
        placed.json["userId"], "alice",
        "the order is the token's subject's"
    );
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// No customer route answers anything but 401 without a valid token: every
/// operation the document says takes `customerToken`, with no token and with
/// a wrongly signed one.
async fn every_customer_route_needs_a_token(app: TestApp) {
    let document = app.get("/api-docs/openapi.json").await.json;
    let forged = hs256(&claims("alice"), "not-the-test-secret-0123456789abcdef");
    let mut checked = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let schemes: Vec<&str> = operation["security"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path} declares its security"))
                .iter()
                .flat_map(|r| r.as_object().unwrap().keys().map(String::as_str))
                .collect();
            if !schemes.contains(&"customerToken") {
                continue;
            }
            let concrete = path
                .replace("{orderId}", "019b3f2d-1a2b-7c3d-8e4f-5a6b7c8d9e0f")
                .replace("{paymentId}", "019b3f2e-5f6a-7b8c-9d0e-1f2a3b4c5d6e");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body = json!({"items": [], "orderId": "x", "paymentMethod": "alipay"});
            let bare = app
                .send(
                    app.client
                        .request(method.clone(), app.url(&concrete))
                        .json(&body),
                )
                .await;
            bare.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
            assert!(
                bare.headers["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Bearer realm="),
                "{method} {concrete}"
            );
            let forged = app
                .send_as(&forged, method.clone(), &concrete, Some(&body))
                .await;
            assert_invalid_token(&forged, &format!("{method} {concrete}"));
            checked.push(operation["operationId"].as_str().unwrap().to_owned());
        }
    }
    checked.sort();
    assert_eq!(
        checked,
        [
            "cancelOrder",
            "createOrder",
            "getOrderInfo",
            "getPayment",
            "initiatePayment",
            "listOrders",
            "originalCreateOrder",
            "originalGetOrderInfo",
            "originalInitiatePayment"
        ]
    );
}

/// Another customer's order and payment are not found, on every route and
/// alias, exactly as an id that does not exist; and nothing changes.
async fn another_customers_order_and_payment_are_not_found(app: TestApp) {
    let product = app.create_product("Phone", 999_900, 5).await["productId"]
        .as_str()
        .unwrap()
        .to_owned();
    let alice = app.as_user("alice");
    let bob = app.as_user("bob");
    let placed = alice
        .post_json(
            "/api/v1/orders",
            &json!({"items": [{"productId": product, "quantity": 2}]}),
        )
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    assert_eq!(placed.json["userId"], "alice");
    let order = placed.json["orderId"].as_str().unwrap().to_owned();
    let paying = alice
        .post_json(
            "/api/v1/payments",
            &json!({"orderId": order, "paymentMethod": "alipay"}),
        )
        .await;
    assert_eq!(paying.status, StatusCode::CREATED, "{}", paying.body);
    let payment = paying.json["paymentId"].as_str().unwrap().to_owned();
    let unknown_order = "019b3f2d-1a2b-7c3d-8e4f-5a6b7c8d9e0f";

    // Bob's view of alice's order is the view of an order that does not exist.
    for id in [order.as_str(), unknown_order] {
        bob.get(&format!("/api/v1/orders/{id}"))
            .await
            .assert_problem(StatusCode::NOT_FOUND, "order_not_found");
        bob.get(&format!("/getOrderInfo?orderId={id}"))
            .await
            .assert_problem(StatusCode::NOT_FOUND, "order_not_found");
        bob.send(bob.request(Method::POST, &format!("/api/v1/orders/{id}/cancel")))
            .await
            .assert_problem(StatusCode::NOT_FOUND, "order_not_found");
        for path in ["/api/v1/payments", "/initiatePayment"] {
            bob.post_json(path, &json!({"orderId": id, "paymentMethod": "wechat_pay"}))
                .await
                .assert_problem(StatusCode::NOT_FOUND, "order_not_found");
        }
    }
    bob.get(&format!("/api/v1/payments/{payment}"))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "payment_not_found");
    let bobs = bob.get("/api/v1/orders").await;
    assert_eq!(bobs.status, StatusCode::OK);
    assert_eq!(bobs.json["items"], json!([]), "bob has no orders");
    bob.get("/api/v1/orders?userId=alice")
        .await
        .assert_problem(StatusCode::FORBIDDEN, "user_mismatch");

    // Nothing bob did changed alice's order or payment.
    let mine = alice.get(&format!("/api/v1/orders/{order}")).await;
    assert_eq!(mine.json["status"], "pending_payment");
    let mine = alice.get(&format!("/api/v1/payments/{payment}")).await;
    assert_eq!(mine.json["status"], "pending");
    assert_eq!(
        mine.json["paymentMethod"], "alipay",
        "bob's wechat_pay opened nothing"
    );
    let listed = alice.get("/api/v1/orders").await;
    assert_eq!(listed.json["items"].as_array().unwrap().len(), 1);
    assert_eq!(app.stock(&product).await, 3);

    // Support staff read every customer's orders and payments, but act for none.
    let staff = |path: String| {
        let app = &app;
        async move { app.send_as(ADMIN_TOKEN, Method::GET, &path, None).await }
    };
    assert_eq!(
        staff(format!("/api/v1/orders/{order}")).await.json["userId"],
        "alice"
    );
    assert_eq!(
        staff(format!("/getOrderInfo?orderId={order}")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        staff(format!("/api/v1/payments/{payment}")).await.json["status"],
        "pending"
    );
    let page = staff("/api/v1/orders?userId=alice".into()).await;
    assert_eq!(page.json["items"][0]["orderId"], order.as_str());
    // Without userId, staff list every customer's orders.
    let all = staff("/api/v1/orders".into()).await;
    assert_eq!(all.json["items"][0]["orderId"], order.as_str());
    app.send_as(
        ADMIN_TOKEN,
        Method::POST,
        &format!("/api/v1/orders/{order}/cancel"),
        None,
    )
    .await
    .assert_problem(StatusCode::FORBIDDEN, "customer_token_required");
    app.send_as(
        ADMIN_TOKEN,
        Method::POST,
        "/api/v1/orders",
        Some(&json!({"userId": "alice", "items": [{"productId": product, "quantity": 1}]})),
    )
    .await
    .assert_problem(StatusCode::FORBIDDEN, "customer_token_required");
    assert_eq!(
        app.stock(&product).await,
        3,
        "the admin token placed nothing"
    );

    // The owner may still do everything.
    let cancelled = alice
        .send(alice.request(Method::POST, &format!("/api/v1/orders/{order}/cancel")))
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
}

/// A body that names another user is refused, and places nothing; naming
/// oneself (or no one) is fine.
async fn a_body_naming_another_user_is_refused(app: TestApp) {
    let product = app.create_product("Phone", 999_900, 5).await["productId"]
        .as_str()
        .unwrap()
        .to_owned();
    let alice = app.as_user("alice");
    let as_bob = json!({"userId": "bob", "items": [{"productId": product, "quantity": 1}]});
    let refused = alice.post_json("/api/v1/orders", &as_bob).await;
    refused.assert_problem(StatusCode::FORBIDDEN, "user_mismatch");
    assert_eq!(refused.problem_fields(), ["userId"]);
    alice
        .post_json(
            "/createOrder",
            &json!({"userId": "bob", "productId": product, "quantity": 1}),
        )
        .await
        .assert_problem(StatusCode::FORBIDDEN, "user_mismatch");
    assert_eq!(app.stock(&product).await, 5, "nothing was reserved");
    let bobs = app.admin_get("/api/v1/orders?userId=bob").await;
    assert_eq!(bobs.json["items"], json!([]));

    let named = alice
        .post_json(
            "/api/v1/orders",
            &json!({"userId": "alice", "items": [{"productId": product, "quantity": 1}]}),
        )
        .await;
    assert_eq!(named.status, StatusCode::CREATED, "{}", named.body);
    let original = alice
        .post_json(
            "/createOrder",
            &json!({"productId": product, "quantity": 1}),
        )
        .await;
    assert_eq!(original.status, StatusCode::CREATED, "{}", original.body);
    assert_eq!(original.json["userId"], "alice");
}

/// `user` orders one unit of `product` and opens an Alipay payment for it: the payment.
async fn order_and_open_payment(user: &UserClient<'_>, product: &str) -> Value {
    let order = user
        .post_json(
            "/api/v1/orders",
            &json!({"items": [{"productId": product, "quantity": 1}]}),
        )
        .await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
    let payment = user
        .post_json(
            "/api/v1/payments",
            &json!({"orderId": order.json["orderId"], "paymentMethod": "alipay"}),
        )
        .await;
    assert_eq!(payment.status, StatusCode::CREATED, "{}", payment.body);
    payment.json
}

/// The sandbox checkout page acts only for whoever holds its whole URL.
async fn the_checkout_page_needs_its_token(app: TestApp) {
    let product = app.create_product("Phone", 999_900, 5).await["productId"]
        .as_str()
        .unwrap()
        .to_owned();
    let alice = app.as_user("alice");
    let opened = order_and_open_payment(&alice, &product).await;
    let id = opened["paymentId"].as_str().unwrap().to_owned();
    let url = opened["paymentUrl"].as_str().unwrap().to_owned();
    let path = url.strip_prefix(&app.address).unwrap().to_owned();
    let token = path.split_once("?token=").unwrap().1.to_owned();
    assert!(token.len() >= 32, "the token is unguessable: {token}");
    assert_eq!(app.get(&path).await.status, StatusCode::OK);

    // A second payment's token does not open the first one.
    let other = order_and_open_payment(&app.as_user("bob"), &product).await;
    let other_token = other["paymentUrl"]
        .as_str()
        .unwrap()
        .split_once("?token=")
        .unwrap()
        .1
        .to_owned();

    for bad in [
        format!("/sandbox/checkout/{id}"),
        format!("/sandbox/checkout/{id}?token="),
        format!("/sandbox/checkout/{id}?token={}", "0".repeat(32)),
        format!("/sandbox/checkout/{id}?token={other_token}"),
    ] {
        let page = app.get(&bad).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{bad}");
        assert!(
            !page.body.contains("id=\"pay\""),
            "{bad} offers no Pay button"
        );
        let pay = app
            .send(
                app.client
                    .post(app.url(&bad))
                    .form(&[("outcome", "failure")]),
            )
            .await;
        assert_eq!(pay.status, StatusCode::FORBIDDEN, "{bad}");
    }
    let payment = alice.get(&format!("/api/v1/payments/{id}")).await;
    assert_eq!(
        payment.json["status"], "pending",
        "no refused click changed the payment"
    );

    let clicked = app
        .send(
            app.client
                .post(app.url(&path))
                .form(&[("outcome", "failure")]),
        )
        .await;
    assert_eq!(clicked.status, StatusCode::OK, "{}", clicked.body);
    let payment = alice.get(&format!("/api/v1/payments/{id}")).await;
    assert_eq!(
        payment.json["status"], "failed",
        "the page with its token acts"
    );
}

shop_tests::on_each_backend!(tokens_that_are_refused);

on_every_backend!(
    every_customer_route_needs_a_token,
    another_customers_order_and_payment_are_not_found,
    a_body_naming_another_user_is_refused,
    the_checkout_page_needs_its_token,
);

/// Failed credentials are counted per client address: past the limit, the
/// address's failures are answered 429 with `Retry-After` (after a delay),
/// while valid credentials from it still pass: many clients may share an
/// address, and one of them guessing must not lock out the others.
async fn repeated_failures_are_rate_limited(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("SHOP__AUTH__FAILURES_PER_MINUTE", "3")]).await;
    let alice = app.as_user("alice");
    for _ in 0..20 {
        assert_eq!(alice.get("/api/v1/orders").await.status, StatusCode::OK);
    }
    // No credentials at all is not a failure: nothing was guessed.
    for _ in 0..5 {
        app.get("/api/v1/orders")
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let forged = hs256(&claims("alice"), "not-the-test-secret-0123456789abcdef");
    for _ in 0..2 {
        let refused = app
            .send_as(&forged, Method::GET, "/api/v1/orders", None)
            .await;
        assert_invalid_token(&refused, "forged");
    }
    app.send_as("wrong-admin", Method::GET, "/api/v1/products", None)
        .await;
    app.send_as(
        "wrong-admin",
        Method::POST,
        "/api/v1/products",
        Some(&json!({})),
    )
    .await
    .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    for (token, path) in [
        (forged.as_str(), "/api/v1/orders?userId=alice"),
        ("wrong-admin", "/metrics"),
    ] {
        let started = std::time::Instant::now();
        let limited = app.send_as(token, Method::GET, path, None).await;
        limited.assert_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_auth_failures");
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "a failure past the limit is slowed"
        );
        let retry: u64 = limited.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
    }
    // Valid credentials from the same address still pass, at once.
    for (token, path) in [
        (alice.token.as_str(), "/api/v1/orders?userId=alice"),
        (ADMIN_TOKEN, "/api/v1/orders?userId=alice"),
        (ADMIN_TOKEN, "/metrics"),
    ] {
        let passed = app.send_as(token, Method::GET, path, None).await;
        assert_eq!(passed.status, StatusCode::OK, "{path}: {}", passed.body);
    }
    // Public routes are not affected.
    assert_eq!(app.get("/api/v1/products").await.status, StatusCode::OK);
}

/// With `SHOP__SERVER__TRUSTED_PROXIES`, the client of a request from a
/// trusted proxy is the right-most address of `X-Forwarded-For` that is no
/// trusted proxy: one client's failures limit that client only. From any
/// other peer the header is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_names_the_client_that_failed() {
    let garbage = "not-a-token";
    let from = |app: &TestApp, forwarded: &str| {
        app.request_as(garbage, Method::GET, "/api/v1/orders")
            .header("X-Forwarded-For", forwarded)
    };
    let behind = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("SHOP__AUTH__FAILURES_PER_MINUTE", "2"),
            ("SHOP__SERVER__TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1"),
        ],
    )
    .await;
    for _ in 0..2 {
        assert_invalid_token(&behind.send(from(&behind, "198.51.100.1")).await, "garbage");
    }
    behind
        .send(from(&behind, "198.51.100.1"))
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_auth_failures");
    // A client that writes the limited address into its own header: the
    // proxy appends the real one, which is what counts.
    assert_invalid_token(
        &behind
            .send(from(&behind, "198.51.100.1, 198.51.100.2"))
            .await,
        "another client",
    );
    // Through a second trusted hop, the client is still the one before it.
    behind
        .send(from(&behind, "198.51.100.1, 10.1.2.3"))
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_auth_failures");
    let valid = behind
        .send(
            behind
                .as_user("alice")
                .request(Method::GET, "/api/v1/orders")
                .header("X-Forwarded-For", "198.51.100.1"),
        )
        .await;
    assert_eq!(valid.status, StatusCode::OK, "{}", valid.body);

    // Without trusted proxies the header is anyone's to write: ignored.
    let direct =
        TestApp::spawn_with(Backend::Sqlite, &[("SHOP__AUTH__FAILURES_PER_MINUTE", "2")]).await;
    for client in ["198.51.100.1", "198.51.100.2"] {
        assert_invalid_token(&direct.send(from(&direct, client)).await, "garbage");
    }
    direct
        .send(from(&direct, "198.51.100.3"))
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_auth_failures");
}

/// A bad `SHOP__SERVER__TRUSTED_PROXIES` stops start-up, naming the setting.
#[test]
fn trusted_proxies_must_be_addresses_or_networks() {
    let error = shop::config::Settings::load_from(
        None,
        vec![(
            "SHOP__SERVER__TRUSTED_PROXIES".to_owned(),
            "10.0.0.0/8, nginx".to_owned(),
        )],
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("SHOP__SERVER__TRUSTED_PROXIES") && error.contains("nginx"),
        "{error}"
    );
}

/// Two `Authorization` headers are answered 400 `ambiguous_credentials`,
/// whichever they hold: the server does not pick one (a proxy might have
/// read the other).
async fn two_authorization_headers_are_refused(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("SHOP__PORTS__TOKEN", SERVICE_TOKEN)]).await;
    let alice = app.token("alice");
    let twice = |method: Method, path: &str, first: &str, second: &str| {
        app.client
            .request(method, app.url(path))
            .header("Authorization", format!("Bearer {first}"))
            .header("Authorization", format!("Bearer {second}"))
    };
    for request in [
        twice(Method::GET, "/api/v1/orders", &alice, &alice),
        twice(Method::GET, "/api/v1/orders", &alice, "garbage"),
        twice(Method::GET, "/api/v1/orders", "garbage", &alice),
        twice(Method::GET, "/metrics", ADMIN_TOKEN, ADMIN_TOKEN),
        twice(Method::POST, "/api/v1/products", ADMIN_TOKEN, &alice).json(&json!({})),
        twice(
            Method::GET,
            "/internal/v1/orders/no-such-order",
            SERVICE_TOKEN,
            SERVICE_TOKEN,
        ),
    ] {
        app.send(request)
            .await
            .assert_problem(StatusCode::BAD_REQUEST, "ambiguous_credentials");
    }
    // One header is fine; a public route ignores credentials altogether.
    let one = app
        .send_as(&alice, Method::GET, "/api/v1/orders", None)
        .await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.body);
    let public = app
        .send(twice(Method::GET, "/api/v1/products", &alice, "garbage"))
        .await;
    assert_eq!(public.status, StatusCode::OK, "{}", public.body);
}

shop_tests::on_each_backend!(two_authorization_headers_are_refused);

const SERVICE_TOKEN: &str = "a-service-token-of-at-least-32-chars";

/// Wrong service tokens on the internal routes are limited like every other
/// failed credential, and the right token still passes from that address.
async fn wrong_service_tokens_are_limited(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("SHOP__PORTS__TOKEN", SERVICE_TOKEN),
            ("SHOP__AUTH__FAILURES_PER_MINUTE", "2"),
        ],
    )
    .await;
    let call = |token: &str| {
        app.client
            .get(app.url("/internal/v1/orders/no-such-order"))
            .bearer_auth(token)
    };
    for _ in 0..2 {
        app.send(call("wrong-service-token"))
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let limited = app.send(call("wrong-service-token")).await;
    limited.assert_problem(StatusCode::TOO_MANY_REQUESTS, "too_many_auth_failures");
    assert!(limited.headers.contains_key("retry-after"));
    app.send(call(SERVICE_TOKEN))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "order_not_found");
}

shop_tests::on_each_backend!(wrong_service_tokens_are_limited);

shop_tests::on_each_backend!(repeated_failures_are_rate_limited);

/// A JWKS the test serves, and can change while the app runs.
struct KeyServer {
    keys: Arc<Mutex<JwkSet>>,
    address: String,
    server: actix_web::dev::ServerHandle,
}

impl KeyServer {
    fn start(keys: JwkSet) -> Self {
        let keys = Arc::new(Mutex::new(keys));
        let shared = keys.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let server = actix_web::HttpServer::new(move || {
            let keys = shared.clone();
            actix_web::App::new().route(
                "/jwks.json",
                actix_web::web::get().to(move || {
                    let body = serde_json::to_string(&*keys.lock().unwrap()).unwrap();
                    async move {
                        actix_web::HttpResponse::Ok()
                            .content_type("application/json")
                            .body(body)
                    }
                }),
            )
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            keys,
            address,
            server: handle,
        }
    }

    fn url(&self) -> String {
        format!("{}/jwks.json", self.address)
    }

    fn serve(&self, keys: JwkSet) {
        *self.keys.lock().unwrap() = keys;
    }
}

impl Drop for KeyServer {
    fn drop(&mut self) {
        drop(self.server.stop(false));
    }
}

/// A signing key of the identity provider.
struct ProviderKey {
    kid: &'static str,
    alg: Algorithm,
    key: EncodingKey,
}

impl ProviderKey {
    fn new(kid: &'static str, alg: Algorithm, pem: &str) -> Self {
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
            _ => EncodingKey::from_ed_pem(pem.as_bytes()),
        }
        .unwrap();
        Self { kid, alg, key }
    }

    fn public(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.to_owned());
        jwk
    }

    fn token(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.to_owned());
        sign(header, claims, &self.key)
    }
}

fn set(keys: &[&ProviderKey]) -> JwkSet {
    JwkSet {
        keys: keys.iter().map(|k| k.public()).collect(),
    }
}

/// With a JWKS, tokens of each published key are accepted under that key's
/// algorithm only; a key published later is picked up when a token names it,
/// and a key withdrawn stops working at the next refresh: no restart.
async fn keys_from_a_jwks_rotate_without_restart(backend: Backend) {
    let a = ProviderKey::new("rsa-a", Algorithm::RS256, RSA_A);
    let b = ProviderKey::new("rsa-b", Algorithm::RS256, RSA_B);
    let ec = ProviderKey::new("ec", Algorithm::ES256, EC_P256);
    let ed = ProviderKey::new("ed", Algorithm::EdDSA, ED25519);
    let provider = KeyServer::start(set(&[&a, &ec, &ed]));
    let issuer = "https://id.example/realms/shop";
    let app = TestApp::spawn_with(
        backend,
        &[
            ("SHOP__AUTH__JWT_SECRET", ""),
            ("SHOP__AUTH__JWKS_URL", &provider.url()),
            ("SHOP__AUTH__JWT_ISSUER", issuer),
            ("SHOP__AUTH__JWT_AUDIENCE", "shop"),
            ("SHOP__AUTH__JWKS_REFRESH_SECS", "10"),
            ("SHOP__AUTH__FAILURES_PER_MINUTE", "1000"),
        ],
    )
    .await;
    let good = |user: &str| json!({"sub": user, "iss": issuer, "aud": "shop", "iat": now(), "exp": now() + 600});
    let status = |token: String| {
        let app = &app;
        async move {
            app.send_as(&token, Method::GET, "/api/v1/orders", None)
                .await
        }
    };
    for key in [&a, &ec, &ed] {
        let response = status(key.token(&good("alice"))).await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "{} {}",
            key.kid,
            response.body
        );
    }

    // Refused: another issuer or audience, a key's token under another
    // algorithm, HS256 (no secret is configured; signing with the public key
    // as an HMAC secret is the classic confusion), a key never published.
    let mut wrong_iss = good("alice");
    wrong_iss["iss"] = "https://evil.example".into();
    assert_invalid_token(&status(a.token(&wrong_iss)).await, "issuer");
    let mut wrong_aud = good("alice");
    wrong_aud["aud"] = "billing".into();
    assert_invalid_token(&status(a.token(&wrong_aud)).await, "audience");
    let mut no_iss = good("alice");
    no_iss.as_object_mut().unwrap().remove("iss");
    assert_invalid_token(&status(a.token(&no_iss)).await, "no issuer");
    let mut mislabelled = Header::new(Algorithm::RS256);
    mislabelled.kid = Some("ec".into());
    assert_invalid_token(
        &status(sign(mislabelled, &good("alice"), &a.key)).await,
        "RS256 under an EC key's kid",
    );
    let public_pem = serde_json::to_string(&a.public()).unwrap();
    let mut confused = Header::new(Algorithm::HS256);
    confused.kid = Some("rsa-a".into());
    let confusion = sign(
        confused,
        &good("alice"),
        &EncodingKey::from_secret(public_pem.as_bytes()),
    );
    assert_invalid_token(&status(confusion).await, "HS256 signed with the public key");
    assert_invalid_token(
        &status(hs256(&good("alice"), TEST_JWT_SECRET)).await,
        "HS256 without a secret",
    );
    let unknown = status(b.token(&good("alice"))).await;
    assert_invalid_token(&unknown, "a key not published yet");

    // The provider withdraws a key: it stops working at the next periodic
    // refresh (every 10 s here), with no token naming an unknown key.
    provider.serve(set(&[&a, &ec]));
    wait_until(
        "the withdrawn key stops working at the next refresh",
        Duration::from_secs(30),
        || async { status(ed.token(&good("alice"))).await.status == StatusCode::UNAUTHORIZED },
    )
    .await;
    // It publishes a new key: a token naming it fetches the set again (at
    // most once a second, whatever the tokens say), so it works within a second.
    provider.serve(set(&[&a, &b, &ec]));
    wait_until(
        "a token of the new key is accepted",
        Duration::from_secs(5),
        || async { status(b.token(&good("alice"))).await.status == StatusCode::OK },
    )
    .await;
    for key in [&a, &ec] {
        let still = status(key.token(&good("alice"))).await;
        assert_eq!(still.status, StatusCode::OK, "{} still works", key.kid);
    }
}

shop_tests::on_each_backend!(keys_from_a_jwks_rotate_without_restart);

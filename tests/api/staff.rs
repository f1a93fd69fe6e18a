//! Staff identity: a bearer JWT, verified exactly as a customer's, is a
//! staff token when its claim at `SHOP__AUTH__STAFF_CLAIM` holds
//! `SHOP__AUTH__STAFF_ROLE`. Staff routes take it or the admin token; a
//! customer's token there is 403 `staff_only`, no token 401. The audit log
//! names a staff token's `sub`, and the admin token `admin-token`. Tokens
//! are made here with `jsonwebtoken` directly, not with shop's code (but
//! for the one `shop token --staff` prints).

use std::process::Command;

use reqwest::Method;
use shop_tests::{
    Backend, Response, StatusCode, TEST_JWT_SECRET, TestApp, Value, json, on_each_backend,
    on_every_backend,
};

const SHOP: &str = env!("CARGO_BIN_EXE_shop-e2e");

on_every_backend!(
    each_kind_of_caller_on_staff_routes,
    staff_read_every_order_and_the_audit_log_names_them,
);

on_each_backend!(
    each_identity_providers_claim_is_understood,
    every_catalog_route_for_staff_takes_each_kind_of_staff_and_no_one_else,
);

/// An HS256 token under `secret` for `sub`, valid for an hour, with `extra` claims.
fn token(secret: &str, sub: &str, extra: Value) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({"sub": sub, "iat": now, "exp": now + 3600});
    if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        claims.extend(extra.clone());
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("a token")
}

/// A staff token for `sub` under the default settings (`roles` holds `shop-staff`).
fn staff(app: &TestApp, sub: &str) -> String {
    token(&app.jwt_secret, sub, json!({"roles": ["shop-staff"]}))
}

async fn set_stock(app: &TestApp, token: Option<&str>, product: &str, stock: i64) -> Response {
    let path = format!("/api/v1/products/{product}/stock");
    let body = json!({"newStock": stock});
    match token {
        Some(token) => app.send_as(token, Method::PUT, &path, Some(&body)).await,
        None => app.send(app.client.put(app.url(&path)).json(&body)).await,
    }
}

async fn audit_events(app: &TestApp, token: Option<&str>, query: &str) -> Response {
    let path = format!("/api/v1/audit-events{query}");
    match token {
        Some(token) => app.send_as(token, Method::GET, &path, None).await,
        None => app.get(&path).await,
    }
}

/// No token: 401; a customer's: 403 `staff_only` (never counted as a failed
/// authentication: it is valid); a staff JWT and the admin token: 200.
/// A wrongly signed staff token, or one whose `sub` would pass for the admin
/// token in the audit log, is 401 `invalid_token`. `/metrics` stays the admin
/// token's; a staff JWT on a customer route is its `sub`, a customer.
async fn each_kind_of_caller_on_staff_routes(app: TestApp) {
    let product = app.create_product("Lamp", 12_900, 5).await["productId"]
        .as_str()
        .unwrap()
        .to_owned();
    let customer = app.token("carol");
    let sam = staff(&app, "sam");

    set_stock(&app, None, &product, 1)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    audit_events(&app, None, "")
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    // More customer-token calls than the failure limit (20 a minute): all 403, none 429.
    for _ in 0..12 {
        let refused = set_stock(&app, Some(&customer), &product, 1).await;
        refused.assert_problem(StatusCode::FORBIDDEN, "staff_only");
        assert!(
            refused.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("insufficient_scope")
        );
        audit_events(&app, Some(&customer), "")
            .await
            .assert_problem(StatusCode::FORBIDDEN, "staff_only");
    }
    assert_eq!(app.stock(&product).await, 5, "no customer set the stock");

    let by_staff = set_stock(&app, Some(&sam), &product, 7).await;
    assert_eq!(by_staff.status, StatusCode::OK, "{}", by_staff.body);
    assert_eq!(by_staff.json["stock"], 7);
    let by_admin = set_stock(&app, Some(&app.admin_token), &product, 8).await;
    assert_eq!(by_admin.status, StatusCode::OK, "{}", by_admin.body);
    for token in [sam.as_str(), app.admin_token.as_str()] {
        let listed = audit_events(&app, Some(token), "").await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    }
    // The original spec's alias is a staff route too.
    let alias = app
        .send_as(
            &sam,
            Method::POST,
            "/updateProductStock",
            Some(&json!({"productId": product, "newStock": 9})),
        )
        .await;
    assert_eq!(alias.status, StatusCode::OK, "{}", alias.body);

    // Refused tokens: 401 invalid_token, nothing changes.
    let forged = token(
        "not-the-test-secret-0123456789abcdef",
        "sam",
        json!({"roles": ["shop-staff"]}),
    );
    let impostor = staff(&app, "admin-token");
    for (why, refused) in [("forged", &forged), ("sub admin-token", &impostor)] {
        let response = set_stock(&app, Some(refused), &product, 0).await;
        response.assert_problem(StatusCode::UNAUTHORIZED, "invalid_token");
        assert!(
            response.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("error=\"invalid_token\""),
            "{why}"
        );
    }
    let said = set_stock(&app, Some(&impostor), &product, 0).await;
    assert!(
        said.json["detail"]
            .as_str()
            .unwrap()
            .contains("admin-token"),
        "the refusal says why: {}",
        said.body
    );
    // A customer named admin-token is only a customer: no staff role, no log entry.
    set_stock(&app, Some(&app.token("admin-token")), &product, 0)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "staff_only");
    assert_eq!(app.stock(&product).await, 9);

    // Scraping takes the admin token only; a valid JWT there is 403.
    for token in [sam.as_str(), customer.as_str()] {
        app.send_as(token, Method::GET, "/metrics", None)
            .await
            .assert_problem(StatusCode::FORBIDDEN, "admin_token_required");
    }
    assert_eq!(app.admin_get("/metrics").await.status, StatusCode::OK);

    // On a customer route a staff token is its `sub`'s own customer identity.
    let order = app
        .send_as(
            &sam,
            Method::POST,
            "/api/v1/orders",
            Some(&json!({"items": [{"productId": product, "quantity": 1}]})),
        )
        .await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
    assert_eq!(order.json["userId"], "sam");
}

/// A staff JWT reads any customer's order and payment as the admin token
/// does, and its writes are logged under its `sub`.
async fn staff_read_every_order_and_the_audit_log_names_them(app: TestApp) {
    let product = app.create_product("Lamp", 12_900, 5).await["productId"]
        .as_str()
        .unwrap()
        .to_owned();
    let alice = app.as_user("alice");
    let placed = alice
        .post_json(
            "/api/v1/orders",
            &json!({"items": [{"productId": product, "quantity": 1}]}),
        )
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    let order = placed.json["orderId"].as_str().unwrap().to_owned();
    let paying = alice
        .post_json(
            "/api/v1/payments",
            &json!({"orderId": order, "paymentMethod": "alipay"}),
        )
        .await;
    assert_eq!(paying.status, StatusCode::CREATED, "{}", paying.body);
    let payment = paying.json["paymentId"].as_str().unwrap().to_owned();

    let sam = staff(&app, "sam");
    let read = |path: String| {
        let (app, sam) = (&app, &sam);
        async move { app.send_as(sam, Method::GET, &path, None).await }
    };
    let seen = read(format!("/api/v1/orders/{order}")).await;
    assert_eq!(seen.status, StatusCode::OK, "{}", seen.body);
    assert_eq!(seen.json["userId"], "alice");
    let alias = read(format!("/getOrderInfo?orderId={order}")).await;
    assert_eq!(alias.status, StatusCode::OK, "{}", alias.body);
    let paid = read(format!("/api/v1/payments/{payment}")).await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    assert_eq!(paid.json["orderId"], order.as_str());
    let listed = read("/api/v1/orders?userId=alice".into()).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert_eq!(listed.json["items"][0]["orderId"], order.as_str());
    // The same staff member's token without the role is a customer: sam's own orders only.
    let as_customer = app.token("sam");
    app.send_as(
        &as_customer,
        Method::GET,
        &format!("/api/v1/orders/{order}"),
        None,
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "order_not_found");

    // The audit log names who set the stock.
    let set = set_stock(&app, Some(&sam), &product, 40).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let set = set_stock(&app, Some(&app.admin_token), &product, 41).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let log = audit_events(&app, Some(&sam), "?action=product.stock_set").await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    let actors: Vec<(&str, &Value)> = log.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), &e["after"]))
        .collect();
    assert_eq!(
        actors,
        [
            ("admin-token", &json!({"stock": 41})),
            ("sam", &json!({"stock": 40}))
        ],
        "newest first"
    );
    let mine = audit_events(&app, Some(&app.admin_token), "?actor=sam").await;
    assert_eq!(mine.json["items"].as_array().unwrap().len(), 1);
}

/// Where each identity provider puts roles, set as it would be: a staff
/// token is one whose claim holds the role; the same claim without it, or
/// the role elsewhere, is a customer's token (403).
async fn each_identity_providers_claim_is_understood(backend: Backend) {
    let zitadel = "urn:zitadel:iam:org:project:roles";
    let auth0 = "https://shop.example/roles";
    let cases = [
        (
            "Keycloak realm roles",
            "realm_access.roles",
            json!({"realm_access": {"roles": ["offline_access", "shop-staff"]}}),
            json!({"realm_access": {"roles": ["offline_access"]}, "roles": ["shop-staff"]}),
        ),
        (
            "a space-separated scope",
            "scope",
            json!({"scope": "openid profile shop-staff"}),
            json!({"scope": "openid profile shop-staffer"}),
        ),
        (
            "Zitadel project roles (an object keyed by role)",
            zitadel,
            json!({zitadel: {"shop-staff": {"312909075211944344": "shop.example"}}}),
            json!({zitadel: {"shop-reader": {"312909075211944344": "shop.example"}}}),
        ),
        (
            "an Auth0 namespaced claim (a URL, dots and all)",
            auth0,
            json!({auth0: ["shop-staff"]}),
            json!({auth0: [], "https://shop": {"example/other": ["shop-staff"]}}),
        ),
    ];
    for (what, claim, holds, lacks) in cases {
        let app = TestApp::spawn_with(backend, &[("SHOP__AUTH__STAFF_CLAIM", claim)]).await;
        let listed = audit_events(&app, Some(&token(TEST_JWT_SECRET, "sam", holds)), "").await;
        assert_eq!(listed.status, StatusCode::OK, "{what}: {}", listed.body);
        audit_events(&app, Some(&token(TEST_JWT_SECRET, "sam", lacks)), "")
            .await
            .assert_problem(StatusCode::FORBIDDEN, "staff_only");
        // The default claim means nothing under another setting.
        audit_events(
            &app,
            Some(&token(
                TEST_JWT_SECRET,
                "sam",
                json!({"roles": ["shop-staff"]}),
            )),
            "",
        )
        .await
        .assert_problem(StatusCode::FORBIDDEN, "staff_only");
    }
    // Another role name.
    let app = TestApp::spawn_with(backend, &[("SHOP__AUTH__STAFF_ROLE", "support")]).await;
    let support = token(TEST_JWT_SECRET, "sam", json!({"roles": ["support"]}));
    assert_eq!(
        audit_events(&app, Some(&support), "").await.status,
        StatusCode::OK
    );
    audit_events(&app, Some(&staff(&app, "sam")), "")
        .await
        .assert_problem(StatusCode::FORBIDDEN, "staff_only");
}

/// `shop token --user NAME --staff` prints what the server takes for a
/// staff token under the same settings; without `--staff`, a customer's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_token_staff_mints_a_staff_token() {
    let mint = |args: &[&str], claim: &str| {
        let output = Command::new(SHOP)
            .arg("token")
            .args(args)
            .env("SHOP__AUTH__JWT_SECRET", TEST_JWT_SECRET)
            .env("SHOP__AUTH__STAFF_CLAIM", claim)
            .env_remove("SHOP__AUTH__ADMIN_TOKEN")
            .output()
            .expect("run shop token");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        (output.status.success(), stdout.trim().to_owned(), stderr)
    };
    for claim in ["roles", "realm_access.roles"] {
        let app = TestApp::spawn_with(Backend::Sqlite, &[("SHOP__AUTH__STAFF_CLAIM", claim)]).await;
        let product = app.create_product("Lamp", 12_900, 5).await["productId"]
            .as_str()
            .unwrap()
            .to_owned();
        let (ok, staff, stderr) = mint(&["--user", "sam", "--staff", "--ttl", "10m"], claim);
        assert!(ok, "{stderr}");
        let set = set_stock(&app, Some(&staff), &product, 3).await;
        assert_eq!(set.status, StatusCode::OK, "{claim}: {}", set.body);
        let log = audit_events(&app, Some(&staff), "?action=product.stock_set").await;
        assert_eq!(log.json["items"][0]["actor"], "sam", "{}", log.body);
        let (ok, customer, stderr) = mint(&["--user", "sam"], claim);
        assert!(ok, "{stderr}");
        set_stock(&app, Some(&customer), &product, 4)
            .await
            .assert_problem(StatusCode::FORBIDDEN, "staff_only");
    }
    // The CLI refuses to mint a staff token that would pass for the admin token.
    let (ok, _, stderr) = mint(&["--user", "admin-token", "--staff"], "roles");
    assert!(!ok && stderr.contains("admin-token"), "{stderr}");
}

/// Every staff route of the catalog and the audit log, for each caller: no
/// token 401, a customer's 403 `staff_only`, and a 2xx for the admin token,
/// a staff JWT, and a staff JWT whose role sits at a nested claim path
/// (Keycloak's `realm_access.roles`, configured so).
async fn every_catalog_route_for_staff_takes_each_kind_of_staff_and_no_one_else(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[("SHOP__AUTH__STAFF_CLAIM", "realm_access.roles")],
    )
    .await;
    let product = app.create_product("Lamp", 12_900, 500).await["productId"]
        .as_str()
        .unwrap()
        .to_owned();
    let customer = app.token("carol");
    let keycloak = token(
        &app.jwt_secret,
        "kim",
        json!({"realm_access": {"roles": ["offline_access", "shop-staff"]}}),
    );
    // Under this setting a role at the default path makes no staff token.
    let wrong_path = staff(&app, "sam");
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::PATCH,
            format!("/api/v1/products/{product}"),
            Some(json!({"description": "warm"})),
        ),
        (
            Method::POST,
            format!("/api/v1/products/{product}/archive"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/api/v1/products/{product}/restore"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/api/v1/products/{product}/stock-adjustments"),
            Some(json!({"delta": 1, "reason": "found"})),
        ),
        (
            Method::GET,
            format!("/api/v1/products/{product}/stock-movements"),
            None,
        ),
        (Method::GET, "/api/v1/products?status=all".to_owned(), None),
        (Method::GET, "/api/v1/audit-events".to_owned(), None),
        (Method::GET, "/api/v1/orders?status=paid".to_owned(), None),
    ];
    for (method, path, body) in &routes {
        let send = |bearer: Option<String>| {
            let mut request = app.client.request(method.clone(), app.url(path));
            if let Some(bearer) = bearer {
                request = request.bearer_auth(bearer);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            app.send(request)
        };
        let anonymous = send(None).await;
        assert_eq!(
            anonymous.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {}",
            anonymous.body
        );
        if path.starts_with("/api/v1/orders") {
            // listOrders serves customers too: their own orders, filtered.
            assert_eq!(send(Some(customer.clone())).await.status, StatusCode::OK);
        } else {
            send(Some(customer.clone()))
                .await
                .assert_problem(StatusCode::FORBIDDEN, "staff_only");
            send(Some(wrong_path.clone()))
                .await
                .assert_problem(StatusCode::FORBIDDEN, "staff_only");
        }
        // Kim first: the admin token then repeats idempotent changes, recording nothing.
        for (who, bearer) in [
            ("kim", keycloak.clone()),
            ("the admin token", app.admin_token.clone()),
        ] {
            let answer = send(Some(bearer)).await;
            assert!(
                answer.status.is_success(),
                "{method} {path} as {who}: {} {}",
                answer.status,
                answer.body
            );
        }
    }
    // The audit log names each: kim's edits as kim.
    let log = app
        .admin_get(&format!(
            "/api/v1/audit-events?actor=kim&targetId={product}"
        ))
        .await;
    let actions: Vec<&str> = log.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "product.stock_adjusted",
            "product.restored",
            "product.archived",
            "product.updated"
        ]
    );
}

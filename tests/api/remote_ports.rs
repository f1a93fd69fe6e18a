//! Ports over HTTP (split mode, in progress): two apps on their own
//! databases, A calling B's internal API for what B's contexts implement.
//! (Events do not cross processes yet: B never hears of A's orders.)

use std::time::{Duration, Instant};

use shop_tests::{
    ADMIN_TOKEN, Backend, DEADLINE, Response, ShopProcess, StatusCode, TestApp, TestDatabase,
    Value, eventually, json, mint, parse_metrics, wait_until,
};

const SHOP: &str = env!("CARGO_BIN_EXE_shop-e2e");
const TOKEN: &str = "test-service-token-0123456789";

shop_tests::on_each_backend!(
    orders_placed_on_a_reserve_the_stock_of_b,
    a_flash_sale_through_a_never_oversells_b,
    the_internal_api_answers_only_to_the_service_token,
    payments_on_a_read_the_orders_of_b,
    a_answers_503_when_b_is_down_and_the_breaker_fails_fast_then_recovers,
);

/// A client for a process or app at `address`.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .expect("client")
}

async fn send(request: reqwest::RequestBuilder) -> Response {
    Response::read(request.send().await.expect("request")).await
}

async fn create_product_at(address: &str, price: i64, stock: i64) -> String {
    let response = send(
        client()
            .post(format!("{address}/api/v1/products"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"name": "remote stock", "description": "held by B", "price": price, "currency": "CNY", "stock": stock})),
    )
    .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    response.json["productId"].as_str().expect("id").to_owned()
}

async fn stock_at(address: &str, product: &str) -> i64 {
    let response = send(client().get(format!("{address}/api/v1/products/{product}"))).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    response.json["stock"].as_i64().expect("stock")
}

async fn order_at(address: &str, user: &str, product: &str, quantity: i64) -> Response {
    send(
        client()
            .post(format!("{address}/api/v1/orders"))
            .bearer_auth(mint(user))
            .json(&json!({"items": [{"productId": product, "quantity": quantity}]})),
    )
    .await
}

async fn metrics_at(address: &str) -> std::collections::HashMap<String, f64> {
    let response = send(
        client()
            .get(format!("{address}/metrics"))
            .bearer_auth(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK);
    parse_metrics(&response.body)
}

fn port_calls(metrics: &std::collections::HashMap<String, f64>, outcome: &str) -> f64 {
    metrics
        .iter()
        .filter(|(series, _)| {
            series.starts_with("shop_port_calls_total{")
                && series.contains("port=\"inventory\"")
                && series.contains(&format!("outcome=\"{outcome}\""))
        })
        .map(|(_, value)| value)
        .sum()
}

async fn orders_placed_on_a_reserve_the_stock_of_b(backend: Backend) {
    // B: a real process, so that its log (JSON lines) shows what reached it.
    let b_database = TestDatabase::create(backend);
    let b = ShopProcess::start(SHOP, &b_database.url(), &[("SHOP__PORTS__TOKEN", TOKEN)]);
    let product = create_product_at(&b.address, 500, 10).await;
    let a = TestApp::spawn_with(
        backend,
        &[
            ("SHOP__PORTS__PRODUCT_URL", b.address.as_str()),
            ("SHOP__PORTS__TOKEN", TOKEN),
        ],
    )
    .await;

    let request_id = uuid::Uuid::now_v7().to_string();
    let placed = a
        .send(
            a.as_user("buyer")
                .request(reqwest::Method::POST, "/api/v1/orders")
                .header("x-request-id", &request_id)
                .json(&json!({"items": [{"productId": product, "quantity": 3}]})),
        )
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    assert_eq!(placed.json["amount"], 1500);
    assert_eq!(placed.json["items"][0]["unitPrice"], 500);
    assert_eq!(placed.json["status"], "pending_payment");
    // B's stock moved; A has no such product, and its catalog did not move.
    assert_eq!(stock_at(&b.address, &product).await, 7);
    a.get(&format!("/api/v1/products/{product}"))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "product_not_found");
    let a_products = a.get("/api/v1/products").await;
    assert_eq!(
        a_products.json["items"].as_array().map(Vec::len),
        Some(0),
        "{}",
        a_products.body
    );

    // B's refusals reach A's client as the monolith's problems, and take nothing.
    a.as_user("buyer")
        .post_json(
            "/api/v1/orders",
            &json!({"items": [{"productId": product, "quantity": 8}]}),
        )
        .await
        .assert_problem(StatusCode::CONFLICT, "insufficient_stock");
    a.as_user("buyer")
        .post_json(
            "/api/v1/orders",
            &json!({"items": [{"productId": "no-such-product", "quantity": 1}]}),
        )
        .await
        .assert_problem(StatusCode::NOT_FOUND, "product_not_found");
    assert_eq!(stock_at(&b.address, &product).await, 7);
    // A product B's staff archived is refused as in one process, naming the line.
    let archived = send(
        client()
            .post(format!("{}/api/v1/products/{product}/archive", b.address))
            .bearer_auth(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(archived.status, StatusCode::OK, "{}", archived.body);
    let refused = a
        .as_user("buyer")
        .post_json(
            "/api/v1/orders",
            &json!({"items": [{"productId": product, "quantity": 1}]}),
        )
        .await;
    refused.assert_problem(StatusCode::CONFLICT, "product_archived");
    assert_eq!(refused.problem_fields(), ["items[0].productId"]);
    assert_eq!(stock_at(&b.address, &product).await, 7);

    // The request id A was given reached B, on its internal route, with a
    // traceparent whose trace id is that request id's.
    let trace_id = request_id.replace('-', "");
    eventually("B logs the internal call under A's request id", || {
        let log = b.log();
        let (request_id, trace_id) = (request_id.clone(), trace_id.clone());
        async move {
            log.iter().any(|line| {
                line.contains(&format!("\"request_id\":\"{request_id}\""))
                    && line.contains(&format!("\"trace_id\":\"{trace_id}\""))
                    && line.contains("/internal/v1/inventory/reservations/")
            })
        }
    })
    .await;
    let metrics = metrics_at(&a.address).await;
    assert!(port_calls(&metrics, "ok") >= 1.0, "{metrics:?}");
}

async fn a_flash_sale_through_a_never_oversells_b(backend: Backend) {
    let b = TestApp::spawn_with(backend, &[("SHOP__PORTS__TOKEN", TOKEN)]).await;
    let product = b.create_product("flash", 100, 20).await["productId"]
        .as_str()
        .expect("id")
        .to_owned();
    let a = TestApp::spawn_with(
        backend,
        &[
            ("SHOP__PORTS__PRODUCT_URL", b.address.as_str()),
            ("SHOP__PORTS__TOKEN", TOKEN),
            // A loaded 2-core machine: the budget is not what this test is about.
            ("SHOP__PORTS__TIMEOUT_MS", "20000"),
        ],
    )
    .await;
    let address = a.address.clone();
    // Every buyer is started before any is awaited.
    let buyers: Vec<_> = (0..60)
        .map(|i| {
            let (address, product) = (address.clone(), product.clone());
            tokio::spawn(
                async move { order_at(&address, &format!("buyer-{i}"), &product, 1).await },
            )
        })
        .collect();
    let (mut placed, mut refused) = (0, 0);
    for buyer in buyers {
        let response = buyer.await.expect("buyer");
        match response.status {
            StatusCode::CREATED => placed += 1,
            StatusCode::CONFLICT => {
                response.assert_problem(StatusCode::CONFLICT, "insufficient_stock");
                refused += 1;
            }
            other => panic!("a buyer got {other}: {}", response.body),
        }
    }
    assert_eq!((placed, refused), (20, 40));
    assert_eq!(b.stock(&product).await, 0);
}

async fn the_internal_api_answers_only_to_the_service_token(backend: Backend) {
    let b = TestApp::spawn_with(backend, &[("SHOP__PORTS__TOKEN", TOKEN)]).await;
    let product = b.create_product("guarded", 250, 5).await["productId"]
        .as_str()
        .expect("id")
        .to_owned();
    let lookup = json!({"productIds": [product, "no-such-product"]});
    let post = |token: Option<&str>| {
        let mut request = b
            .client
            .post(b.url("/internal/v1/inventory/products"))
            .json(&lookup);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
    };
    for token in [
        None,
        Some("wrong-token"),
        Some(ADMIN_TOKEN),
        Some(&b.token("user-1")),
    ] {
        let refused = b.send(post(token.map(str::to_owned).as_deref())).await;
        refused.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
        assert!(refused.headers.contains_key("www-authenticate"));
    }
    let found = b.send(post(Some(TOKEN))).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    assert_eq!(
        found.json["products"],
        json!([{"productId": product, "name": "guarded", "price": 250, "currency": "CNY", "stock": 5}])
    );
    // The request id is honoured as on the public routes.
    let echoed = b
        .send(post(Some(TOKEN)).header("x-request-id", "internal-call-1"))
        .await;
    assert_eq!(echoed.headers["x-request-id"], "internal-call-1");

    // Reservations: idempotent per id, all or nothing, refusals with stable codes.
    let reserve = |id: &str, body: Value| {
        b.client
            .put(b.url(&format!("/internal/v1/inventory/reservations/{id}")))
            .bearer_auth(TOKEN)
            .json(&body)
    };
    let hold = (chrono::Utc::now() + chrono::Duration::minutes(15)).to_rfc3339();
    let two = json!({"lines": [{"productId": product, "quantity": 2}], "holdUntil": hold});
    for _ in 0..2 {
        let reserved = b.send(reserve("r-1", two.clone())).await;
        assert_eq!(reserved.status, StatusCode::OK, "{}", reserved.body);
        assert_eq!(
            reserved.json,
            json!({"reservationId": "r-1", "lines": [{"productId": product, "quantity": 2, "unitPrice": 250, "currency": "CNY"}]})
        );
    }
    assert_eq!(
        b.stock(&product).await,
        3,
        "the second reserve took nothing"
    );
    let short = b
        .send(reserve(
            "r-2",
            json!({"lines": [{"productId": product, "quantity": 4}], "holdUntil": hold}),
        ))
        .await;
    short.assert_problem(StatusCode::CONFLICT, "insufficient_stock");
    assert_eq!(
        short.json["shortages"],
        json!([{"productId": product, "requested": 4, "available": 3}])
    );
    let unknown = b
        .send(reserve(
            "r-3",
            json!({"lines": [{"productId": product, "quantity": 1}, {"productId": "nope", "quantity": 1}], "holdUntil": hold}),
        ))
        .await;
    unknown.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "unknown_products");
    assert_eq!(unknown.json["productIds"], json!(["nope"]));
    b.send(reserve(
        "r-4",
        json!({"lines": [{"productId": product, "quantity": 0}], "holdUntil": hold}),
    ))
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(b.stock(&product).await, 3, "refusals took nothing");
    for _ in 0..2 {
        let released = b
            .send(
                b.client
                    .delete(b.url("/internal/v1/inventory/reservations/r-1"))
                    .bearer_auth(TOKEN),
            )
            .await;
        assert_eq!(released.status, StatusCode::NO_CONTENT, "{}", released.body);
    }
    assert_eq!(b.stock(&product).await, 5, "released once");
    b.send(reserve("r-1", two.clone()))
        .await
        .assert_problem(StatusCode::CONFLICT, "reservation_released");
    assert_eq!(b.stock(&product).await, 5);

    // Without a service token, the internal routes are not served at all.
    let plain = TestApp::spawn(backend).await;
    for token in [None, Some(TOKEN)] {
        let mut request = plain
            .client
            .post(plain.url("/internal/v1/inventory/products"))
            .json(&lookup);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        plain
            .send(request)
            .await
            .assert_problem(StatusCode::NOT_FOUND, "not_found");
    }
    plain
        .send(
            plain
                .client
                .get(plain.url("/internal/v1/orders/any"))
                .bearer_auth(TOKEN),
        )
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not_found");
}

async fn payments_on_a_read_the_orders_of_b(backend: Backend) {
    let b = TestApp::spawn_with(backend, &[("SHOP__PORTS__TOKEN", TOKEN)]).await;
    let product = b.create_product("paid remotely", 700, 5).await["productId"]
        .as_str()
        .expect("id")
        .to_owned();
    let order = b
        .as_user("payer")
        .post_json(
            "/api/v1/orders",
            &json!({"items": [{"productId": product, "quantity": 2}]}),
        )
        .await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
    let order_id = order.json["orderId"].as_str().expect("id").to_owned();
    let a = TestApp::spawn_with(
        backend,
        &[
            ("SHOP__PORTS__ORDER_URL", b.address.as_str()),
            ("SHOP__PORTS__TOKEN", TOKEN),
        ],
    )
    .await;
    let payment = a
        .as_user("payer")
        .post_json(
            "/api/v1/payments",
            &json!({"orderId": order_id, "paymentMethod": "alipay"}),
        )
        .await;
    assert_eq!(payment.status, StatusCode::CREATED, "{}", payment.body);
    assert_eq!(payment.json["amount"], 1400);
    assert_eq!(payment.json["currency"], "CNY");
    // Another customer's order, and an order B does not have: 404, as in one process.
    a.as_user("someone-else")
        .post_json(
            "/api/v1/payments",
            &json!({"orderId": order_id, "paymentMethod": "alipay"}),
        )
        .await
        .assert_problem(StatusCode::NOT_FOUND, "order_not_found");
    a.as_user("payer")
        .post_json(
            "/api/v1/payments",
            &json!({"orderId": "no-such-order", "paymentMethod": "alipay"}),
        )
        .await
        .assert_problem(StatusCode::NOT_FOUND, "order_not_found");
}

/// Accepts connections on `listener` and never answers.
fn silent(listener: std::net::TcpListener) -> tokio::task::JoinHandle<()> {
    listener.set_nonblocking(true).expect("nonblocking");
    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    })
}

async fn a_answers_503_when_b_is_down_and_the_breaker_fails_fast_then_recovers(backend: Backend) {
    // B's address, held by a listener that accepts and never answers.
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let b_address = format!("http://{}", held.local_addr().expect("address"));
    let black_hole = silent(held);
    // A: a process of its own, so that its metrics are its alone.
    let a_database = TestDatabase::create(backend);
    let a = ShopProcess::start(
        SHOP,
        &a_database.url(),
        &[
            ("SHOP__PORTS__PRODUCT_URL", b_address.as_str()),
            ("SHOP__PORTS__TOKEN", TOKEN),
            ("SHOP__PORTS__TIMEOUT_MS", "500"),
        ],
    );
    let budget = Duration::from_millis(500);
    // Five calls time out, each within the budget: each is a 503 problem.
    for _ in 0..5 {
        let started = Instant::now();
        let refused = order_at(&a.address, "buyer", "some-product", 1).await;
        let took = started.elapsed();
        refused.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
        // Generous slack for a loaded machine; without a budget it would hang.
        assert!(
            took < budget + Duration::from_secs(3),
            "the 503 took {took:?}"
        );
    }
    let metrics = metrics_at(&a.address).await;
    assert_eq!(port_calls(&metrics, "timeout"), 5.0, "{metrics:?}");
    assert_eq!(port_calls(&metrics, "short_circuited"), 0.0);
    // The breaker is open: the next calls fail at once, without calling B.
    for _ in 0..5 {
        order_at(&a.address, "buyer", "some-product", 1)
            .await
            .assert_problem(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    }
    let metrics = metrics_at(&a.address).await;
    assert!(
        port_calls(&metrics, "short_circuited") >= 5.0,
        "{metrics:?}"
    );
    assert_eq!(
        port_calls(&metrics, "timeout"),
        5.0,
        "an open breaker let a call through to B before its open period passed"
    );

    // B comes back on its address; once the open period has passed, a trial
    // call goes through and orders are placed again.
    black_hole.abort();
    let _ = black_hole.await;
    let b_database = TestDatabase::create(backend);
    let bind = b_address.trim_start_matches("http://").to_owned();
    let b = ShopProcess::start(
        SHOP,
        &b_database.url(),
        &[
            ("SHOP__PORTS__TOKEN", TOKEN),
            ("SHOP__SERVER__BIND", bind.as_str()),
        ],
    );
    assert_eq!(b.address, b_address);
    let product = create_product_at(&b.address, 300, 4).await;
    wait_until("an order through A is placed again", DEADLINE, || {
        let (address, product) = (a.address.clone(), product.clone());
        async move {
            let response = order_at(&address, "buyer", &product, 1).await;
            match response.status {
                StatusCode::CREATED => true,
                StatusCode::SERVICE_UNAVAILABLE => false,
                other => panic!("{other}: {}", response.body),
            }
        }
    })
    .await;
    assert_eq!(stock_at(&b.address, &product).await, 3);
    let metrics = metrics_at(&a.address).await;
    assert!(port_calls(&metrics, "ok") >= 1.0, "{metrics:?}");
}

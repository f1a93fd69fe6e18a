//! What operators rely on: metrics that move, JSON logs that carry request
//! ids and no secrets, a dashboard built on real metric names, and a
//! graceful shutdown that loses no request in flight.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use shop_tests::{
    ADMIN_TOKEN, Backend, ShopProcess, StatusCode, TestApp, TestDatabase, Value, WEBHOOK_SECRET,
    count, eventually, json,
};

const SHOP: &str = env!("CARGO_BIN_EXE_shop-e2e");

/// `name{labels} value` lines of a Prometheus text exposition.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    let response = app.get("/metrics").await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(response.content_type().starts_with("text/plain"));
    parse_metrics(&response.body)
}

/// A purchase, a cancellation and a forged notification, through the API.
async fn business(app: &TestApp) {
    let product = app.create_product("Metered", 1000, 10).await["productId"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({"userId": "metrics", "items": [{"productId": product, "quantity": 1}]});
    let order = app.post_json("/api/v1/orders", &body).await.json;
    let payment = app
        .post_json(
            "/api/v1/payments",
            &json!({"orderId": order["orderId"], "paymentMethod": "alipay"}),
        )
        .await
        .json;
    let forged = app
        .send(
            app.client
                .post(app.url("/api/v1/payments/notify"))
                .header("Shop-Signature", "t=1,v1=00")
                .json(&json!({})),
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let success = json!({"paymentId": payment["paymentId"], "paymentStatus": "success", "amount": 1000, "currency": "CNY"});
    assert_eq!(
        app.notify("/api/v1/payments/notify", &success).await.status,
        StatusCode::OK
    );
    let order_path = format!("/api/v1/orders/{}", order["orderId"].as_str().unwrap());
    eventually("the order is paid", || async {
        app.get(&order_path).await.json["status"] == "paid"
    })
    .await;
    let other = app.post_json("/api/v1/orders", &body).await.json;
    let cancel = app.url(&format!(
        "/api/v1/orders/{}/cancel",
        other["orderId"].as_str().unwrap()
    ));
    assert_eq!(
        app.send(app.client.post(cancel)).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_after_a_purchase() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let before = scrape(&app).await;
    business(&app).await;
    let after = scrape(&app).await;
    // Other tests share this process's counters: they only ever add.
    let moved = |series: &str, by: f64| {
        let delta =
            after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0);
        assert!(
            delta >= by,
            "{series} moved by {delta}, expected at least {by}"
        );
    };
    moved("shop_orders_created_total", 2.0);
    moved("shop_orders_paid_total", 1.0);
    moved(
        r#"shop_orders_cancelled_total{reason="cancelled_by_user"}"#,
        1.0,
    );
    moved(r#"shop_payments_initiated_total{method="alipay"}"#, 1.0);
    moved(
        r#"shop_payments_completed_total{method="alipay",outcome="succeeded"}"#,
        1.0,
    );
    moved(
        r#"shop_payment_notifications_rejected_total{reason="invalid_signature"}"#,
        1.0,
    );
    moved(
        r#"shop_http_requests_total{route="/api/v1/orders",method="POST",status="201"}"#,
        2.0,
    );
    moved(
        r#"shop_http_requests_total{route="/api/v1/orders/{orderId}",method="GET",status="200"}"#,
        1.0,
    );
    moved(
        r#"shop_outbox_deliveries_total{event_type="payment.succeeded",result="handled"}"#,
        1.0,
    );
    moved("shop_outbox_dispatch_lag_seconds_count", 1.0);
    moved(
        r#"shop_http_request_duration_seconds_count{route="/api/v1/orders",method="POST"}"#,
        2.0,
    );
    assert!(after.contains_key(r#"shop_db_pool_connections{state="idle"}"#));
    assert!(after.contains_key("shop_outbox_pending"));
    assert!(
        !after
            .keys()
            .any(|series| series.contains("route=\"/api/v1/orders/0")),
        "routes are templates, not raw paths"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_exported() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/grafana-dashboard.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut queried = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("shop_") {
                    queried.push(word.to_owned());
                }
            }
        }
    }
    assert!(queried.len() >= 10, "{queried:?}");
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    business(&app).await;
    let exported = app.get("/metrics").await.body;
    let names: Vec<&str> = exported
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for metric in queried {
        assert!(
            names.contains(&metric.as_str()),
            "the dashboard queries {metric}, which shop does not export"
        );
    }
    let scrape: String = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/prometheus.yml"
    ))
    .unwrap();
    assert!(scrape.contains("metrics_path: /metrics"));
}

#[test]
fn the_example_configuration_is_valid_and_complete() {
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/shop.toml"));
    let settings =
        shop::config::Settings::load_from(Some(path), Vec::new()).expect("deploy/shop.toml loads");
    assert!(
        !settings.payment.sandbox,
        "the production example switches the sandbox off"
    );
    let example = std::fs::read_to_string(path).unwrap();
    // Every setting of the built-in defaults is documented in the example.
    for line in shop::config::DEFAULTS.lines() {
        if let Some((key, _)) = line.split_once(" = ") {
            assert!(
                example.contains(&format!("{key} = ")),
                "deploy/shop.toml does not document {key}"
            );
        } else if line.starts_with('[') {
            assert!(
                example.contains(line),
                "deploy/shop.toml has no {line} section"
            );
        }
    }
    for secret in ["admin_token", "webhook_secret", "public_url"] {
        assert!(
            example.contains(secret),
            "deploy/shop.toml does not mention {secret}"
        );
    }
}

async fn json_logs_carry_request_ids_and_no_secrets(backend: Backend) {
    let Some(database) = TestDatabase::create(backend) else {
        return;
    };
    let shop = ShopProcess::start(SHOP, &database.url(), &[]);
    let client = reqwest::Client::new();
    let product = client
        .post(format!("{}/api/v1/products", shop.address))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "Logged", "price": 100, "currency": "CNY", "stock": 5}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let response = client
        .post(format!("{}/api/v1/orders", shop.address))
        .header("X-Request-Id", "log-test-7")
        .json(&json!({"userId": "logger", "items": [{"productId": product["productId"], "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["x-request-id"],
        "log-test-7",
        "the id is echoed"
    );
    let generated = client
        .get(format!("{}/health/live", shop.address))
        .send()
        .await
        .unwrap();
    assert!(
        generated.headers()["x-request-id"].to_str().unwrap().len() >= 32,
        "an id is generated when none is sent"
    );

    let of_request = |lines: &[Value], message: &str| {
        lines
            .iter()
            .any(|l| l["span"]["request_id"] == "log-test-7" && l["message"] == message)
    };
    eventually("the order's event was handled", || async {
        let lines: Vec<Value> = shop
            .log()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        lines
            .iter()
            .any(|l| l["span"]["name"] == "event" && l["span"]["request_id"] == "log-test-7")
    })
    .await;
    let log = shop.log();
    let lines: Vec<Value> = log
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        of_request(&lines, "order placed"),
        "the use case's line carries the request id"
    );
    assert!(
        lines.iter().any(|l| l["span"]["name"] == "request"
            && l["span"]["request_id"] == "log-test-7"
            && l["span"]["status"] == 201),
        "the request's closing line carries its status and id"
    );
    for line in &log {
        assert!(
            !line.contains(ADMIN_TOKEN) && !line.contains(WEBHOOK_SECRET),
            "a secret was logged: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_sqlite() {
    json_logs_carry_request_ids_and_no_secrets(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_postgres() {
    json_logs_carry_request_ids_and_no_secrets(Backend::Postgres).await;
}

/// A request whose body is still arriving when SIGTERM comes completes, and
/// its product is stored; then shop exits cleanly.
async fn sigterm_finishes_requests_in_flight(backend: Backend) {
    let Some(database) = TestDatabase::create(backend) else {
        return;
    };
    let url = database.url();
    let mut shop = ShopProcess::start(SHOP, &url, &[]);
    let address = shop.address.trim_start_matches("http://").to_owned();
    let body = serde_json::to_vec(
        &json!({"name": "In flight", "price": 100, "currency": "CNY", "stock": 1}),
    )
    .unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "POST /api/v1/products HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(first).unwrap();
    stream.flush().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    shop.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream.write_all(rest).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 201"),
        "the request in flight completed: {response}"
    );
    assert!(
        shop.wait_exit(Duration::from_secs(20)),
        "shop exits cleanly after SIGTERM"
    );
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) AS n FROM products WHERE name = 'In flight'"
        ),
        1
    );
    let log = shop.log();
    assert!(
        log.iter().any(|l| l.contains("event dispatcher stopped")),
        "the dispatcher stopped cleanly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_sqlite() {
    sigterm_finishes_requests_in_flight(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_postgres() {
    sigterm_finishes_requests_in_flight(Backend::Postgres).await;
}

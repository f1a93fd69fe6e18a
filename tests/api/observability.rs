//! What operators rely on: metrics that move, JSON logs that carry request
//! ids and no secrets, a dashboard built on real metric names, and a
//! graceful shutdown that loses no request in flight.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

use shop_tests::{
    ADMIN_TOKEN, Backend, Response, ShopProcess, StatusCode, TEST_JWT_SECRET, TestApp,
    TestDatabase, Value, WEBHOOK_SECRET, count, eventually, json, mint, parse_metrics, signer, sum,
};

const SHOP: &str = env!("CARGO_BIN_EXE_shop-e2e");

/// A shop reached over HTTP: an app of this process, or a process of its own.
struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    fn new(base: &str) -> Self {
        Self {
            client: reqwest::Client::new(),
            base: base.to_owned(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Response {
        Response::read(request.send().await.expect("request")).await
    }

    /// A GET as a customer (`token` from [`mint`]).
    async fn get_as(&self, path: &str, token: &str) -> Response {
        self.send(
            self.client
                .get(format!("{}{path}", self.base))
                .bearer_auth(token),
        )
        .await
    }

    /// A POST as a customer (`token` from [`mint`]).
    async fn post_as(&self, path: &str, body: &Value, token: &str) -> Response {
        self.send(
            self.client
                .post(format!("{}{path}", self.base))
                .bearer_auth(token)
                .json(body),
        )
        .await
    }

    async fn notify(&self, body: &Value) -> Response {
        let raw = serde_json::to_vec(body).expect("json");
        let signature = signer().sign(chrono::Utc::now().timestamp(), &raw);
        let request = self
            .client
            .post(format!("{}/api/v1/payments/notify", self.base))
            .header("Shop-Signature", signature)
            .header("content-type", "application/json")
            .body(raw);
        self.send(request).await
    }

    async fn scrape(&self) -> HashMap<String, f64> {
        let response = self.get_as("/metrics", ADMIN_TOKEN).await;
        assert_eq!(response.status, StatusCode::OK);
        assert!(response.content_type().starts_with("text/plain"));
        parse_metrics(&response.body)
    }
}

/// A purchase, a cancellation and a forged notification, through the API.
/// Returns how many times the paid order was read while waiting for it.
async fn business(api: &Api) -> usize {
    let created = api
        .send(
            api.client
                .post(format!("{}/api/v1/products", api.base))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({"name": "Metered", "description": "", "price": 1000, "currency": "CNY", "stock": 10})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let product = created.json["productId"].as_str().unwrap().to_owned();
    let body = json!({"userId": "metrics", "items": [{"productId": product, "quantity": 1}]});
    let customer = mint("metrics");
    let order = api.post_as("/api/v1/orders", &body, &customer).await.json;
    let payment = api
        .post_as(
            "/api/v1/payments",
            &json!({"orderId": order["orderId"], "paymentMethod": "alipay"}),
            &customer,
        )
        .await
        .json;
    let forged = api
        .send(
            api.client
                .post(format!("{}/api/v1/payments/notify", api.base))
                .header("Shop-Signature", "t=1,v1=00")
                .json(&json!({})),
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let success = json!({"paymentId": payment["paymentId"], "paymentStatus": "success", "amount": 1000, "currency": "CNY"});
    assert_eq!(api.notify(&success).await.status, StatusCode::OK);
    let order_path = format!("/api/v1/orders/{}", order["orderId"].as_str().unwrap());
    let reads = Cell::new(0);
    eventually("the order is paid", || async {
        reads.set(reads.get() + 1);
        api.get_as(&order_path, &customer).await.json["status"] == "paid"
    })
    .await;
    let other = api.post_as("/api/v1/orders", &body, &customer).await.json;
    let cancel = format!(
        "/api/v1/orders/{}/cancel",
        other["orderId"].as_str().unwrap()
    );
    assert_eq!(
        api.post_as(&cancel, &Value::Null, &customer).await.status,
        StatusCode::OK
    );
    reads.get()
}

const UNHANDLED: &str = "SELECT COUNT(*) AS n FROM event_deliveries WHERE handled_at IS NULL";
const DELIVERIES: &str = "SELECT COUNT(*) AS n FROM event_deliveries";

/// The purchase runs on a shop process of its own: the metrics recorder is
/// per process, so nothing else moves these counters, and each must move by
/// exactly what the purchase did (the outbox's, by what the database shows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_after_a_purchase() {
    let database = TestDatabase::create(Backend::Sqlite);
    let url = database.url();
    let shop = ShopProcess::start(SHOP, &url, &[]);
    let api = Api::new(&shop.address);
    let before = api.scrape().await;
    let reads = business(&api).await;
    // Handlers commit, then count: wait until the counters caught up with the database.
    eventually("every delivery is handled and counted", || async {
        count(&url, UNHANDLED) == 0
            && api
                .scrape()
                .await
                .get("shop_outbox_dispatch_lag_seconds_count")
                .copied()
                .unwrap_or(0.0)
                == count(&url, DELIVERIES) as f64
    })
    .await;
    let after = api.scrape().await;
    let moved = |series: &str, by: f64| {
        let delta =
            after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0);
        assert_eq!(
            delta, by,
            "{series} moved by {delta}, expected exactly {by}"
        );
    };
    moved("shop_orders_created_total", 2.0);
    moved("shop_orders_paid_total", 1.0);
    moved(
        r#"shop_orders_cancelled_total{reason="cancelled_by_user"}"#,
        1.0,
    );
    moved(r#"shop_orders_cancelled_total{reason="expired"}"#, 0.0);
    moved(r#"shop_payments_initiated_total{method="alipay"}"#, 1.0);
    moved(r#"shop_payments_initiated_total{method="wechat_pay"}"#, 0.0);
    moved(
        r#"shop_payments_completed_total{method="alipay",outcome="succeeded"}"#,
        1.0,
    );
    moved(
        r#"shop_payments_completed_total{method="alipay",outcome="failed"}"#,
        0.0,
    );
    moved(
        r#"shop_payment_notifications_rejected_total{reason="invalid_signature"}"#,
        1.0,
    );
    moved("shop_payment_notifications_duplicate_total", 0.0);
    moved(
        r#"shop_http_requests_total{route="/api/v1/orders",method="POST",status="201"}"#,
        2.0,
    );
    moved(
        r#"shop_http_requests_total{route="/api/v1/orders/{orderId}",method="GET",status="200"}"#,
        reads as f64,
    );
    moved(
        r#"shop_http_request_duration_seconds_count{route="/api/v1/orders",method="POST"}"#,
        2.0,
    );
    let deliveries = count(&url, DELIVERIES) as f64;
    let of_payment = count(
        &url,
        "SELECT COUNT(*) AS n FROM event_deliveries d JOIN outbox_events e ON e.id = d.event_id \
         WHERE e.event_type = 'payment.succeeded'",
    ) as f64;
    assert!(of_payment >= 1.0);
    moved(
        r#"shop_outbox_deliveries_total{event_type="payment.succeeded",result="handled"}"#,
        of_payment,
    );
    moved("shop_outbox_dispatch_lag_seconds_count", deliveries);
    assert_eq!(
        sum(
            &after,
            "shop_outbox_deliveries_total",
            r#"result="handled""#
        ),
        deliveries,
        "one handled delivery counted per delivery row"
    );
    assert_eq!(
        sum(&after, "shop_outbox_deliveries_total", r#"result="failed""#),
        0.0
    );
    assert!(after.contains_key(r#"shop_db_pool_connections{state="idle"}"#));
    assert_eq!(after.get("shop_outbox_pending"), Some(&0.0));
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
    let app = TestApp::spawn(Backend::Sqlite).await;
    business(&Api::new(&app.address)).await;
    let exported = app.admin_get("/metrics").await.body;
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
    let database = TestDatabase::create(backend);
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
    let customer = mint("logger");
    let response = client
        .post(format!("{}/api/v1/orders", shop.address))
        .bearer_auth(&customer)
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
            !line.contains(ADMIN_TOKEN)
                && !line.contains(WEBHOOK_SECRET)
                && !line.contains(TEST_JWT_SECRET)
                && !line.contains(&customer),
            "a secret was logged: {line}"
        );
    }
}

shop_tests::on_each_backend!(json_logs_carry_request_ids_and_no_secrets);

/// A request whose body is still arriving when SIGTERM comes completes, and
/// its product is stored; then shop exits cleanly. The request is provably
/// in flight before the signal (its head was read: shop answered
/// `100 Continue`), and the rest of its body is sent only once shop has
/// begun to shut down (it logged that it stopped accepting connections).
async fn sigterm_finishes_requests_in_flight(backend: Backend) {
    let database = TestDatabase::create(backend);
    let url = database.url();
    let mut shop = ShopProcess::start(SHOP, &url, &[]);
    let address = shop.address.trim_start_matches("http://").to_owned();
    let body = serde_json::to_vec(
        &json!({"name": "In flight", "price": 100, "currency": "CNY", "stock": 1}),
    )
    .unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let head = format!(
        "POST /api/v1/products HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut interim = String::new();
    while interim != "\r\n" {
        interim.clear();
        reader.read_line(&mut interim).unwrap();
        if interim.starts_with("HTTP/") {
            assert!(
                interim.starts_with("HTTP/1.1 100"),
                "shop read the request's head and waits for its body: {interim}"
            );
        }
        assert!(!interim.is_empty(), "the connection closed");
    }
    stream.write_all(first).unwrap();
    stream.flush().unwrap();

    shop.terminate();
    eventually("shop stops accepting connections", || async {
        shop.log()
            .iter()
            .any(|l| l.contains("accept thread stopped"))
    })
    .await;
    stream.write_all(rest).unwrap();
    let mut response = String::new();
    reader.read_to_string(&mut response).unwrap();
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

shop_tests::on_each_backend!(sigterm_finishes_requests_in_flight);

//! Several instances of shop on one database, each running the background
//! work: every event is handled once per subscriber, every order expires
//! once, and each instance does some of the work.

use std::collections::HashMap;

use shop_tests::{
    ADMIN_TOKEN, Backend, ShopProcess, StatusCode, TestApp, TestDatabase, Value, count, eventually,
    json, mint, parse_metrics, sum,
};

const SHOP: &str = env!("CARGO_BIN_EXE_shop-e2e");

/// One instance, a process of its own: its /metrics count its own work only.
struct Instance {
    process: ShopProcess,
    client: reqwest::Client,
}

impl Instance {
    fn start(url: &str, settings: &[(&str, &str)]) -> Self {
        Self {
            process: ShopProcess::start(SHOP, url, settings),
            client: reqwest::Client::new(),
        }
    }

    /// A POST with a bearer token: [`ADMIN_TOKEN`] or a customer's ([`mint`]).
    async fn post(&self, path: &str, body: &Value, token: &str) -> (StatusCode, Value) {
        let request = self
            .client
            .post(format!("{}{path}", self.process.address))
            .bearer_auth(token)
            .json(body);
        let response = request.send().await.expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.process.address))
            .send()
            .await
            .expect("request")
    }

    async fn stock(&self, product: &str) -> i64 {
        let product: Value = self
            .get(&format!("/api/v1/products/{product}"))
            .await
            .json()
            .await
            .expect("json");
        product["stock"].as_i64().expect("stock")
    }

    async fn metrics(&self) -> HashMap<String, f64> {
        let scrape = self
            .client
            .get(format!("{}/metrics", self.process.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request");
        parse_metrics(&scrape.text().await.expect("metrics"))
    }
}

async fn two_instances_share_the_work_without_doing_it_twice(backend: Backend) {
    let database = TestDatabase::create(backend);
    let url = database.url();
    // The timeout is long enough that each order is cancelled before it could expire, on a loaded machine too.
    let settings = [
        ("SHOP__ORDER__PAYMENT_TIMEOUT_SECS", "5"),
        ("SHOP__ORDER__EXPIRY_SWEEP_MS", "20"),
        ("SHOP__WORKER__POLL_MS", "20"),
    ];
    let first = Instance::start(&url, &settings);
    let second = Instance::start(&url, &settings);
    let (status, product) = first
        .post(
            "/api/v1/products",
            &json!({"name": "Shared", "price": 100, "currency": "CNY", "stock": 100}),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{product}");
    let product = product["productId"].as_str().unwrap().to_owned();
    let instances = [&first, &second];
    let mut cancelled_by_user = 0;
    for i in 0..40 {
        let app = instances[i % 2];
        let user = format!("multi-{i}");
        let token = mint(&user);
        let body = json!({"userId": user, "items": [{"productId": product, "quantity": 2}]});
        let (status, order) = app.post("/api/v1/orders", &body, &token).await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        if i % 4 == 0 {
            let id = order["orderId"].as_str().unwrap();
            // Cancelled through the other instance.
            let other = instances[(i + 1) % 2];
            let (status, body) = other
                .post(&format!("/api/v1/orders/{id}/cancel"), &Value::Null, &token)
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            cancelled_by_user += 1;
        }
    }
    eventually("every order is cancelled", || async {
        count(
            &url,
            "SELECT COUNT(*) AS n FROM orders WHERE status <> 'cancelled'",
        ) == 0
    })
    .await;
    eventually("every delivery is handled", || async {
        count(
            &url,
            "SELECT COUNT(*) AS n FROM event_deliveries WHERE handled_at IS NULL",
        ) == 0
    })
    .await;
    eventually("all stock is back", || async {
        first.stock(&product).await == 100
    })
    .await;
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) AS n FROM outbox_events WHERE event_type = 'order.cancelled'"
        ),
        40,
        "one cancellation each"
    );
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) AS n FROM orders WHERE cancel_reason = 'expired'"
        ),
        40 - cancelled_by_user,
        "expired once each, whichever instance swept"
    );
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) AS n FROM event_deliveries WHERE attempts <> 1"
        ),
        0,
        "each delivery handled once"
    );
    assert_eq!(second.stock(&product).await, 100);

    // Each instance did part of the work, and together they did it exactly
    // once: one handled delivery counted per delivery row, one expiry counted
    // per expired order. (Work commits, then counts: wait until the counters caught up.)
    let deliveries = count(&url, "SELECT COUNT(*) AS n FROM event_deliveries") as f64;
    let expired_orders = (40 - cancelled_by_user) as f64;
    let handled =
        |m: &HashMap<String, f64>| sum(m, "shop_outbox_deliveries_total", r#"result="handled""#);
    let expired =
        |m: &HashMap<String, f64>| sum(m, "shop_orders_cancelled_total", r#"reason="expired""#);
    eventually(
        "both instances' counters add up to the work done",
        || async {
            let (one, two) = (first.metrics().await, second.metrics().await);
            handled(&one) + handled(&two) == deliveries
                && expired(&one) + expired(&two) == expired_orders
        },
    )
    .await;
    let (one, two) = (first.metrics().await, second.metrics().await);
    eprintln!(
        "{backend:?}: deliveries handled {} + {}, orders expired {} + {}",
        handled(&one),
        handled(&two),
        expired(&one),
        expired(&two),
    );
    assert!(
        handled(&one) > 0.0 && handled(&two) > 0.0,
        "both instances handled deliveries: {} and {}",
        handled(&one),
        handled(&two)
    );
    assert_eq!(handled(&one) + handled(&two), deliveries, "none twice");
    assert_eq!(expired(&one) + expired(&two), expired_orders, "none twice");
}

shop_tests::on_each_backend!(two_instances_share_the_work_without_doing_it_twice);

/// The outbox keeps what is pending and forgets what every subscriber handled.
async fn the_outbox_prunes_delivered_events_only(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("SHOP__WORKER__ENABLED", "false")]).await;
    let product = app.create_product("Pruned", 100, 10).await["productId"]
        .as_str()
        .unwrap()
        .to_owned();
    let order = json!({"userId": "pruner", "items": [{"productId": product, "quantity": 1}]});
    assert_eq!(
        app.as_user("pruner")
            .post_json("/api/v1/orders", &order)
            .await
            .status,
        StatusCode::CREATED
    );
    let url = app.database_url.clone();
    let events = "SELECT COUNT(*) AS n FROM outbox_events";
    assert_eq!(
        app.modules
            .dispatcher
            .prune(std::time::Duration::ZERO)
            .await
            .unwrap(),
        0,
        "pending: kept"
    );
    assert_eq!(count(&url, events), 1);
    assert_eq!(app.modules.dispatcher.drain().await.unwrap(), 1);
    let week = std::time::Duration::from_secs(7 * 24 * 3600);
    assert_eq!(
        app.modules.dispatcher.prune(week).await.unwrap(),
        0,
        "handled but recent: kept"
    );
    assert_eq!(
        app.modules
            .dispatcher
            .prune(std::time::Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    assert_eq!(count(&url, events), 0);
    assert_eq!(count(&url, "SELECT COUNT(*) AS n FROM event_deliveries"), 0);
}

shop_tests::on_each_backend!(the_outbox_prunes_delivered_events_only);

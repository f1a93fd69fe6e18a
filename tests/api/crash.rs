//! Crash safety: the real binary is killed with SIGKILL at awkward moments;
//! after a restart every committed change's events are delivered, and each
//! is applied exactly once.

use std::time::Duration;

use shop_tests::{
    ADMIN_TOKEN, Backend, DEADLINE, ShopProcess, StatusCode, TestDatabase, Value, count,
    eventually, holds_for, json, mint, signer,
};

const SHOP: &str = env!("CARGO_BIN_EXE_shop-e2e");

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(process: &ShopProcess) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: process.address.clone(),
        }
    }

    /// A POST with a bearer token: [`ADMIN_TOKEN`] or a customer's ([`mint`]).
    async fn post(&self, path: &str, body: Value, token: &str) -> (StatusCode, Value) {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body);
        let response = request.send().await.expect("request");
        (
            response.status(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// A request that may die with the server: no answer is `None`.
    async fn try_post(&self, path: &str, body: Value, token: &str) -> Option<(StatusCode, Value)> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .ok()?;
        let status = response.status();
        let body = response.json().await.ok()?;
        Some((status, body))
    }

    /// A gateway notification, signed now.
    async fn notify(&self, body: Value) -> StatusCode {
        let raw = serde_json::to_vec(&body).expect("json");
        let signature = signer().sign(chrono::Utc::now().timestamp(), &raw);
        let request = self
            .http
            .post(format!("{}/api/v1/payments/notify", self.base))
            .header("Shop-Signature", signature)
            .header("content-type", "application/json")
            .body(raw);
        request.send().await.expect("request").status()
    }

    /// A GET with a customer's token.
    async fn get(&self, path: &str, token: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        response.json().await.expect("json")
    }

    async fn stock(&self, product: &str) -> i64 {
        let response = self
            .http
            .get(format!("{}/api/v1/products/{product}", self.base))
            .send()
            .await
            .expect("request");
        response.json::<Value>().await.expect("json")["stock"]
            .as_i64()
            .expect("stock")
    }
}

const UNHANDLED: &str = "SELECT COUNT(*) AS n FROM event_deliveries WHERE handled_at IS NULL";

/// How long "nothing more happens" is watched for, once the awaited thing happened:
/// ten expiry sweeps at the 100 ms these tests set, and many dispatcher polls.
const QUIET: Duration = Duration::from_secs(1);

/// Orders are committed while no worker runs; the process dies before any of
/// their events is handled. After a restart the events are delivered, once.
async fn events_committed_before_a_crash_are_handled_once_after_restart(backend: Backend) {
    let database = TestDatabase::create(backend);
    let url = database.url();

    let first = ShopProcess::start(SHOP, &url, &[("SHOP__WORKER__ENABLED", "false")]);
    let client = Client::new(&first);
    let (_, product) = client
        .post(
            "/api/v1/products",
            json!({"name": "Crash", "price": 100, "currency": "CNY", "stock": 10}),
            ADMIN_TOKEN,
        )
        .await;
    let product = product["productId"]
        .as_str()
        .expect("product id")
        .to_owned();
    let order = |quantity: i64| json!({"userId": "crash", "items": [{"productId": product, "quantity": quantity}]});
    let crash = mint("crash");
    let (status, kept) = client.post("/api/v1/orders", order(2), &crash).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, cancelled) = client.post("/api/v1/orders", order(3), &crash).await;
    let cancelled_id = cancelled["orderId"].as_str().expect("order id");
    let (status, _) = client
        .post(
            &format!("/api/v1/orders/{cancelled_id}/cancel"),
            Value::Null,
            &crash,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        client.stock(&product).await,
        5,
        "both orders hold stock; the cancel's release waits for its event"
    );
    assert_eq!(
        count(&url, UNHANDLED),
        4,
        "two OrderPlaced and one OrderCancelled (for the stock and for the payments) wait in the outbox"
    );

    first.kill();

    let second = ShopProcess::start(SHOP, &url, &[]);
    let client = Client::new(&second);
    eventually("the cancelled order's stock comes back", || async {
        client.stock(&product).await == 8
    })
    .await;
    eventually("every delivery is handled", || async {
        count(&url, UNHANDLED) == 0
    })
    .await;
    // A second release would come from a repeated delivery: none comes over a second.
    holds_for(
        "released once, not twice (stock stays 8)",
        QUIET,
        || async { client.stock(&product).await == 8 },
    )
    .await;
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) AS n FROM event_deliveries WHERE attempts <> 1"
        ),
        0,
        "each applied once"
    );
    let kept_id = kept["orderId"].as_str().expect("order id");
    let status_of = |id: &str| {
        format!("SELECT COUNT(*) AS n FROM stock_reservations WHERE id = '{id}' AND status = ")
    };
    assert_eq!(
        count(&url, &format!("{}'confirmed'", status_of(kept_id))),
        1
    );
    assert_eq!(
        count(&url, &format!("{}'released'", status_of(cancelled_id))),
        1
    );
    let mut second = second;
    second.terminate();
    assert!(
        second.wait_exit(Duration::from_secs(20)),
        "SIGTERM stops shop cleanly"
    );
}

/// The process dies in the middle of a burst of orders, wherever it is:
/// between a reservation and its order, between an order and its events.
/// It is killed once some orders were answered while others are still in
/// flight (both counted at the kill). Every acknowledged order survives the
/// crash, whole; once everything has expired, every unit is back: nothing
/// leaked, nothing was released twice.
async fn a_crash_mid_burst_loses_no_stock(backend: Backend) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // At most 100 requests, so at most 100 reservations can be orphaned: the
    // sweep at start-up releases abandoned reservations 100 at a time, and the
    // next sweep is a minute later (on PostgreSQL, a burst of 400 left up to
    // 160 orphans, which then took over a minute to come back).
    const BURST: usize = 100;
    /// Answers to wait for before the kill.
    const ANSWERED_FIRST: usize = 10;
    let database = TestDatabase::create(backend);
    let url = database.url();
    let settings = [
        ("SHOP__ORDER__PAYMENT_TIMEOUT_SECS", "1"),
        ("SHOP__ORDER__EXPIRY_SWEEP_MS", "100"),
        ("SHOP__WORKER__ABANDONED_RESERVATION_GRACE_SECS", "0"),
    ];
    let first = ShopProcess::start(SHOP, &url, &settings);
    let client = std::sync::Arc::new(Client::new(&first));
    let (_, product) = client
        .post(
            "/api/v1/products",
            json!({"name": "Burst", "price": 100, "currency": "CNY", "stock": 1000}),
            ADMIN_TOKEN,
        )
        .await;
    let product = product["productId"]
        .as_str()
        .expect("product id")
        .to_owned();
    let sent = std::sync::Arc::new(AtomicUsize::new(0));
    let answered = std::sync::Arc::new(AtomicUsize::new(0));
    let burst: Vec<_> = (0..BURST)
        .map(|i| {
            let (client, product) = (client.clone(), product.clone());
            let (sent, answered) = (sent.clone(), answered.clone());
            let quantity = 1 + i as i64 % 3;
            let user = format!("burst-{i}");
            let token = mint(&user);
            tokio::spawn(async move {
                let body = json!({"userId": user, "items": [{"productId": product, "quantity": quantity}]});
                sent.fetch_add(1, Ordering::SeqCst);
                let answer = client.try_post("/api/v1/orders", body, &token).await;
                if answer.is_some() {
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                (quantity, answer)
            })
        })
        .collect();
    // Kill once every request is sent and a few are answered: the burst is under way.
    let deadline = std::time::Instant::now() + DEADLINE;
    let (sent_at_kill, answered_at_kill) = loop {
        let (s, a) = (sent.load(Ordering::SeqCst), answered.load(Ordering::SeqCst));
        if s == BURST && a >= ANSWERED_FIRST {
            break (s, a);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the burst never got under way: {s} sent, {a} answered"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    first.kill();
    assert!(
        answered_at_kill < sent_at_kill,
        "the kill came mid-burst: {answered_at_kill} of {sent_at_kill} answered"
    );
    let mut acknowledged = Vec::new();
    let mut cut_off = 0;
    for request in burst {
        match request.await.expect("task") {
            (quantity, Some((StatusCode::CREATED, order))) => {
                let id = order["orderId"].as_str().expect("order id").to_owned();
                acknowledged.push((id, quantity));
            }
            (_, Some((status, body))) => {
                assert_eq!(status, StatusCode::CONFLICT, "{body}");
            }
            (_, None) => cut_off += 1,
        }
    }
    let answered = BURST - cut_off;
    assert!(
        answered >= answered_at_kill && cut_off > 0,
        "{answered} answered, {cut_off} cut off by the kill"
    );
    eprintln!(
        "{backend:?}: at the kill {answered_at_kill} of {sent_at_kill} were answered; \
         in all {answered} were answered ({} created), {cut_off} cut off",
        acknowledged.len()
    );

    // Nothing acknowledged was lost: each order is there with its lines and its reservation.
    let ids = acknowledged
        .iter()
        .map(|(id, _)| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    let units: i64 = acknowledged.iter().map(|(_, q)| q).sum();
    let acknowledged_count = acknowledged.len() as i64;
    if !acknowledged.is_empty() {
        assert_eq!(
            count(
                &url,
                &format!("SELECT COUNT(*) AS n FROM orders WHERE id IN ({ids})")
            ),
            acknowledged_count,
            "every acknowledged order was committed"
        );
        assert_eq!(
            count(
                &url,
                &format!(
                    "SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) AS n FROM order_lines WHERE order_id IN ({ids})"
                )
            ),
            units,
            "with its lines"
        );
        assert_eq!(
            count(
                &url,
                &format!(
                    "SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) AS n FROM stock_reservation_lines WHERE reservation_id IN ({ids})"
                )
            ),
            units,
            "and the units it reserved"
        );
    }

    // Let every hold end, so that reservations orphaned by the kill are due
    // when the next process sweeps them (at its start).
    eventually("every hold has ended", || async {
        let now = chrono::Utc::now()
            .naive_utc()
            .format("%Y-%m-%d %H:%M:%S%.6f");
        count(
            &url,
            &format!("SELECT COUNT(*) AS n FROM stock_reservations WHERE status = 'held' AND hold_until >= '{now}'"),
        ) == 0
    })
    .await;
    let second = ShopProcess::start(SHOP, &url, &settings);
    let client = Client::new(&second);
    eventually("every order has expired", || async {
        count(
            &url,
            "SELECT COUNT(*) AS n FROM orders WHERE status = 'pending_payment'",
        ) == 0
    })
    .await;
    eventually("all stock is back", || async {
        client.stock(&product).await == 1000
    })
    .await;
    eventually("every delivery is handled", || async {
        count(&url, UNHANDLED) == 0
    })
    .await;
    holds_for(
        "nothing released twice (stock stays 1000)",
        QUIET,
        || async { client.stock(&product).await == 1000 },
    )
    .await;
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) AS n FROM stock_reservations WHERE status IN ('held', 'confirmed')"
        ),
        0
    );
    // Counted now: PostgreSQL may still commit a transaction whose COMMIT was sent before the kill.
    let placed = count(&url, "SELECT COUNT(*) AS n FROM orders");
    assert!(placed >= acknowledged_count);
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) AS n FROM orders WHERE cancel_reason = 'expired'"
        ),
        placed,
        "every committed order expired"
    );
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) AS n FROM outbox_events WHERE event_type = 'order.cancelled'"
        ),
        placed,
        "once each"
    );
}

/// The payment commits (a signed notification to the sandbox's route), then
/// the process dies before the order reacts to `PaymentSucceeded`. After a
/// restart the order becomes paid, exactly once.
async fn a_payment_committed_before_a_crash_pays_its_order_once(backend: Backend) {
    a_provider_notification_committed_before_a_crash_pays_its_order_once(
        backend,
        "alipay",
        Vec::new(),
        async |client, payment_id, _| {
            let notification = json!({"paymentId": payment_id, "paymentStatus": "success", "amount": 10_000, "currency": "CNY"});
            let status = client.notify(notification).await;
            (status.as_u16(), String::new())
        },
    )
    .await;
}

shop_tests::on_each_backend!(
    events_committed_before_a_crash_are_handled_once_after_restart,
    a_crash_mid_burst_loses_no_stock,
    a_payment_committed_before_a_crash_pays_its_order_once,
    an_alipay_notification_committed_before_a_crash_pays_its_order_once,
    a_wechat_pay_notification_committed_before_a_crash_pays_its_order_once
);

/// A payment's genuine notification (the sandbox's signed one, or a real
/// provider's) was applied and answered, then the process died (SIGKILL)
/// before the order context reacted: after a restart the order is paid,
/// once, its stock stays sold, and nothing was delivered twice.
async fn a_provider_notification_committed_before_a_crash_pays_its_order_once(
    backend: Backend,
    method: &str,
    settings: Vec<(String, String)>,
    pay: impl AsyncFnOnce(&Client, &str, &str) -> (u16, String),
) {
    let database = TestDatabase::create(backend);
    let url = database.url();
    let mut first_settings: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let all_settings = first_settings.clone();
    // No event delivery here: the order cannot react before the kill.
    first_settings.push(("SHOP__WORKER__ENABLED", "false"));
    let first = ShopProcess::start(SHOP, &url, &first_settings);
    let client = Client::new(&first);
    let (_, product) = client
        .post(
            "/api/v1/products",
            json!({"name": "Paid", "price": 2500, "currency": "CNY", "stock": 10}),
            ADMIN_TOKEN,
        )
        .await;
    let product = product["productId"]
        .as_str()
        .expect("product id")
        .to_owned();
    let crash = mint("crash");
    let (_, order) = client
        .post(
            "/api/v1/orders",
            json!({"userId": "crash", "items": [{"productId": product, "quantity": 4}]}),
            &crash,
        )
        .await;
    let order_id = order["orderId"].as_str().expect("order id").to_owned();
    let (status, payment) = client
        .post(
            "/api/v1/payments",
            json!({"orderId": order_id, "paymentMethod": method}),
            &crash,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{payment}");
    let payment_id = payment["paymentId"]
        .as_str()
        .expect("payment id")
        .to_owned();
    let payment_url = payment["paymentUrl"]
        .as_str()
        .expect("payment url")
        .to_owned();
    let (answer, body) = pay(&client, &payment_id, &payment_url).await;
    assert!(
        (200..300).contains(&answer),
        "the provider's notification was accepted: {answer} {body}"
    );
    let paid = client
        .get(&format!("/api/v1/payments/{payment_id}"), &crash)
        .await;
    assert_eq!(paid["status"], "succeeded", "{paid}");
    assert_eq!(
        client
            .get(&format!("/api/v1/orders/{order_id}"), &crash)
            .await["status"],
        "pending_payment",
        "the order has not reacted yet"
    );

    first.kill();

    let second = ShopProcess::start(SHOP, &url, &all_settings);
    let client = Client::new(&second);
    let path = format!("/api/v1/orders/{order_id}");
    eventually("the order is paid", || async {
        client.get(&path, &crash).await["status"] == "paid"
    })
    .await;
    eventually("every delivery is handled", || async {
        count(&url, UNHANDLED) == 0
    })
    .await;
    for (event, times) in [("payment.succeeded", 1), ("order.paid", 1)] {
        assert_eq!(
            count(
                &url,
                &format!("SELECT COUNT(*) AS n FROM outbox_events WHERE event_type = '{event}'")
            ),
            times,
            "{event} once"
        );
    }
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) AS n FROM event_deliveries WHERE attempts <> 1"
        ),
        0,
        "each delivery handled at its first attempt"
    );
    assert_eq!(client.stock(&product).await, 6, "the four units stay sold");
    assert_eq!(
        count(
            &url,
            &format!(
                "SELECT COUNT(*) AS n FROM stock_reservations WHERE id = '{order_id}' AND status = 'sold'"
            )
        ),
        1
    );
}

async fn an_alipay_notification_committed_before_a_crash_pays_its_order_once(backend: Backend) {
    let alipay = shop_tests::fakes::alipay::FakeAlipay::start().await;
    let settings = alipay.settings(None);
    a_provider_notification_committed_before_a_crash_pays_its_order_once(
        backend,
        "alipay",
        settings,
        async |_, _, payment_url| {
            let (_, reply) = alipay.pay(payment_url, true).await;
            reply.expect("the fake notified shop")
        },
    )
    .await;
}

async fn a_wechat_pay_notification_committed_before_a_crash_pays_its_order_once(backend: Backend) {
    let wechat_pay = shop_tests::fakes::wechat_pay::FakeWechatPay::start().await;
    let settings = wechat_pay.settings();
    a_provider_notification_committed_before_a_crash_pays_its_order_once(
        backend,
        "wechat_pay",
        settings,
        async |_, payment_id, _| {
            wechat_pay
                .pay(payment_id, true)
                .await
                .expect("the fake notified shop")
        },
    )
    .await;
}

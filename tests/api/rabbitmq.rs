//! Events over RabbitMQ (`SHOP__BUS__KIND=rabbitmq`), on this machine's
//! broker: the outbox's relay publishes every committed event with publisher
//! confirms and marks it sent only once confirmed; each context consumes its
//! own queue, applies an event in a transaction that records it in the inbox
//! (a redelivery changes nothing) and acknowledges after the commit; a message
//! that keeps failing, or is no event at all, goes to the dead-letter queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable};
use shared_kernel::messaging::outbox::{
    DispatchOptions, Dispatcher, EventBusBuilder, EventHandler, Outbox, Publisher,
};
use shared_kernel::messaging::rabbitmq::{RabbitMq, RabbitSettings};
use shared_kernel::model::events::{EventEnvelope, IntegrationEvent};
use shared_kernel::storage::db::AnyConnection;
use shop_tests::broker::{self, Broker, TcpProxy};
use shop_tests::events::{Pinged, Recorder};
use shop_tests::{
    Backend, DEADLINE, StatusCode, TestApp, TestDatabase, count, eventually, json, parse_metrics,
    sum, wait_until,
};
use tokio_util::sync::CancellationToken;

shop_tests::on_each_backend_with_broker!(
    a_purchase_and_a_cancellation_travel_through_the_broker,
    an_event_is_marked_sent_only_once_the_broker_confirmed_it,
    an_event_whose_confirm_is_lost_stays_unsent_until_the_broker_confirms_it,
    an_event_the_broker_refuses_stays_unsent_until_it_is_accepted,
    a_redelivered_event_is_applied_once,
    an_event_that_keeps_failing_is_dead_lettered_after_its_attempts,
);

/// An app whose events travel over the broker, on an exchange of its own.
async fn app_on_broker(backend: Backend, exchange: &str, rabbitmq_url: &str) -> TestApp {
    let mut settings = broker::settings(exchange);
    settings.retain(|(key, _)| *key != "SHOP__BUS__RABBITMQ_URL");
    settings.push(("SHOP__BUS__RABBITMQ_URL", rabbitmq_url.to_owned()));
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestApp::spawn_with(backend, &settings).await
}

async fn order_of(app: &TestApp, user: &str, product: &str, quantity: i64) -> (String, i64) {
    let placed = app
        .as_user(user)
        .post_json(
            "/api/v1/orders",
            &json!({"items": [{"productId": product, "quantity": quantity}]}),
        )
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    (
        placed.json["orderId"].as_str().expect("id").to_owned(),
        placed.json["amount"].as_i64().expect("amount"),
    )
}

fn reservation_is(app: &TestApp, order: &str, status: &str) -> bool {
    count(
        &app.database_url,
        &format!(
            "SELECT COUNT(*) AS n FROM stock_reservations WHERE id = '{order}' AND status = '{status}'"
        ),
    ) == 1
}

async fn a_purchase_and_a_cancellation_travel_through_the_broker(backend: Backend) {
    let exchange = broker::fresh_exchange();
    let app = app_on_broker(backend, &exchange, &broker::url()).await;
    let product = app.create_product("Phone", 999_900, 10).await["productId"]
        .as_str()
        .expect("id")
        .to_owned();

    // Paid: payment.succeeded reaches the order context, order.paid the product context.
    let (paid, amount) = order_of(&app, "buyer", &product, 2).await;
    let opened = app
        .as_user("buyer")
        .post_json(
            "/api/v1/payments",
            &json!({"orderId": paid, "paymentMethod": "alipay"}),
        )
        .await;
    assert_eq!(opened.status, StatusCode::CREATED, "{}", opened.body);
    let notified = app
        .notify(
            "/api/v1/payments/notify",
            &json!({"paymentId": opened.json["paymentId"], "paymentStatus": "success", "amount": amount, "currency": "CNY", "transactionId": "tx-broker-1"}),
        )
        .await;
    assert_eq!(notified.status, StatusCode::OK, "{}", notified.body);
    eventually("the order is paid", || async {
        app.as_user("buyer")
            .get(&format!("/api/v1/orders/{paid}"))
            .await
            .json["status"]
            == "paid"
    })
    .await;
    eventually("the product context sold the reservation", || async {
        reservation_is(&app, &paid, "sold")
    })
    .await;

    // Cancelled: order.cancelled gives the stock back in the product context.
    let (cancelled, _) = order_of(&app, "buyer", &product, 3).await;
    assert_eq!(app.stock(&product).await, 5);
    let buyer = app.as_user("buyer");
    let cancel = buyer
        .send(buyer.request(
            reqwest::Method::POST,
            &format!("/api/v1/orders/{cancelled}/cancel"),
        ))
        .await;
    assert_eq!(cancel.status, StatusCode::OK, "{}", cancel.body);
    eventually("the cancelled order's stock is back", || async {
        app.stock(&product).await == 8 && reservation_is(&app, &cancelled, "released")
    })
    .await;

    // They went through the broker: the outbox wrote deliveries for the relay
    // alone, and each subscriber recorded what it took in the inbox.
    let url = &app.database_url;
    assert_eq!(
        count(
            url,
            "SELECT COUNT(*) AS n FROM event_deliveries WHERE subscriber <> 'bus.relay'"
        ),
        0,
        "no delivery is written for a subscriber that consumes from the broker"
    );
    eventually("the relay sent every event", || async {
        count(
            url,
            "SELECT COUNT(*) AS n FROM event_deliveries WHERE handled_at IS NULL",
        ) == 0
    })
    .await;
    let inbox = |subscriber: &str| {
        count(
            url,
            &format!("SELECT COUNT(*) AS n FROM event_inbox WHERE subscriber = '{subscriber}'"),
        )
    };
    eventually("each subscriber recorded its events", || async {
        // order.placed twice, order.paid, order.cancelled; payment.succeeded; order.cancelled
        // (five events published: two order.placed, payment.succeeded, order.paid, order.cancelled).
        inbox("product.stock-reservations") == 4
            && inbox("order.payment-outcomes") == 1
            && inbox("payment.trade-closing") == 1
    })
    .await;
    let metrics = parse_metrics(&app.admin_get("/metrics").await.body);
    assert!(
        sum(&metrics, "shop_bus_published_total", "result=\"confirmed\"") >= 5.0,
        "{metrics:?}"
    );
    Broker::connect().await.remove(&exchange).await;
}

async fn an_event_is_marked_sent_only_once_the_broker_confirmed_it(backend: Backend) {
    let exchange = broker::fresh_exchange();
    let proxy = TcpProxy::start(&broker::address()).await;
    let app = app_on_broker(backend, &exchange, &broker::url_via(proxy.port())).await;
    let product = app.create_product("Phone", 999_900, 10).await["productId"]
        .as_str()
        .expect("id")
        .to_owned();
    eventually("the product's queue is consumed", || async {
        count(
            &app.database_url,
            "SELECT COUNT(*) AS n FROM event_deliveries WHERE handled_at IS NULL",
        ) == 0
    })
    .await;

    // The broker is gone: the order commits, its event waits in the outbox.
    proxy.cut();
    let (order, _) = order_of(&app, "buyer", &product, 1).await;
    let relay_of = |condition: &str| {
        count(
            &app.database_url,
            &format!(
                "SELECT COUNT(*) AS n FROM event_deliveries d JOIN outbox_events e ON e.id = d.event_id \
                 WHERE d.subscriber = 'bus.relay' AND e.event_type = 'order.placed' AND {condition}"
            ),
        )
    };
    wait_until(
        "the relay tried to publish the order's event and failed",
        DEADLINE,
        || async {
            relay_of("d.handled_at IS NULL AND d.attempts > 1 AND d.last_error IS NOT NULL") == 1
        },
    )
    .await;
    assert_eq!(
        relay_of("d.handled_at IS NOT NULL"),
        0,
        "not marked sent without a confirm"
    );
    assert!(
        reservation_is(&app, &order, "held"),
        "the product context has not heard of it"
    );

    // The broker is back: the relay publishes it, the product context applies it.
    proxy.resume().await;
    eventually(
        "the relay sent the event once the broker confirmed it",
        || async { relay_of("d.handled_at IS NOT NULL") == 1 },
    )
    .await;
    eventually("the product context confirmed the reservation", || async {
        reservation_is(&app, &order, "confirmed")
    })
    .await;
    drop(app);
    Broker::connect().await.remove(&exchange).await;
}

/// How long the relay waits for a confirm (shared-kernel's
/// `messaging::rabbitmq::CONFIRM_TIMEOUT`, 10 s), and a margin.
const CONFIRM_WAIT: Duration = Duration::from_secs(15);

/// The relay's delivery of the `order.placed` of `order` (one row) where `condition` holds.
fn relay_of_placed(app: &TestApp, order: &str, condition: &str) -> i64 {
    count(
        &app.database_url,
        &format!(
            "SELECT COUNT(*) AS n FROM event_deliveries d JOIN outbox_events e ON e.id = d.event_id \
             WHERE d.subscriber = 'bus.relay' AND e.event_type = 'order.placed' \
             AND e.payload LIKE '%{order}%' AND {condition}"
        ),
    )
}

/// How many times the product context applied the `order.placed` of `order` (its inbox).
fn applied_placed(app: &TestApp, order: &str) -> i64 {
    count(
        &app.database_url,
        &format!(
            "SELECT COUNT(*) AS n FROM event_inbox i JOIN outbox_events e ON e.id = i.event_id \
             WHERE i.subscriber = 'product.stock-reservations' AND e.event_type = 'order.placed' \
             AND e.payload LIKE '%{order}%'"
        ),
    )
}

/// Waits until the relay sent everything there is (the product's creation, if anything).
async fn relay_idle(app: &TestApp) {
    eventually("the relay sent every event", || async {
        count(
            &app.database_url,
            "SELECT COUNT(*) AS n FROM event_deliveries WHERE handled_at IS NULL",
        ) == 0
    })
    .await;
}

/// The publication reaches the broker (a queue of the test's own takes a
/// copy), but the broker's confirm never comes back to shop: the relay does
/// not mark the event sent however long it waits, and once the path is whole
/// again it publishes it anew and marks it sent; the product context applies
/// it once, though the broker had it twice.
async fn an_event_whose_confirm_is_lost_stays_unsent_until_the_broker_confirms_it(
    backend: Backend,
) {
    let exchange = broker::fresh_exchange();
    let proxy = TcpProxy::start(&broker::address()).await;
    let app = app_on_broker(backend, &exchange, &broker::url_via(proxy.port())).await;
    let product = app.create_product("Phone", 999_900, 10).await["productId"]
        .as_str()
        .expect("id")
        .to_owned();
    relay_idle(&app).await;
    let broker = Broker::connect().await;
    let copies = format!("{exchange}.test");
    broker
        .bind_queue(&copies, &exchange, "order.placed", FieldTable::default())
        .await;

    // What the broker sends back to shop is held from now on.
    proxy.hold_replies();
    let (order, _) = order_of(&app, "buyer", &product, 1).await;
    eventually("the relay's publication reached the broker", || async {
        broker.ready(&copies).await == Some(1)
    })
    .await;
    shop_tests::holds_for(
        "the event is not marked sent without its confirm",
        CONFIRM_WAIT,
        || async { relay_of_placed(&app, &order, "d.handled_at IS NULL") == 1 },
    )
    .await;

    // The relay gives up on the confirm (and on the link it was waiting on):
    // the attempt is recorded as failed, the event still unsent.
    eventually("the relay gave up waiting for the confirm", || async {
        relay_of_placed(
            &app,
            &order,
            "d.handled_at IS NULL AND d.last_error LIKE '%did not confirm%'",
        ) == 1
    })
    .await;

    // The path is whole again: the relay gave up on that confirm, publishes
    // the event anew, and marks it sent once confirmed.
    proxy.release_replies();
    eventually("the relay sent the event once confirmed", || async {
        relay_of_placed(&app, &order, "d.handled_at IS NOT NULL") == 1
    })
    .await;
    assert_eq!(
        relay_of_placed(&app, &order, "d.attempts >= 2"),
        1,
        "a failed attempt (the lost confirm) came before the one confirmed"
    );
    assert!(
        broker.ready(&copies).await >= Some(2),
        "the broker had the event twice: the unconfirmed publication and the confirmed one"
    );
    eventually("the product context confirmed the reservation", || async {
        reservation_is(&app, &order, "confirmed")
    })
    .await;
    eventually("the product queue is drained", || async {
        broker.ready(&format!("{exchange}.product")).await == Some(0)
    })
    .await;
    assert_eq!(applied_placed(&app, &order), 1, "applied once");
    drop(app);
    broker.remove(&exchange).await;
}

/// The broker refuses the publication (a nack: a queue the event is routed
/// to is full and rejects what is published to it): the relay does not mark
/// the event sent and tries again; once the broker accepts it, it is marked
/// sent, and the product context (whose queue took a copy each time) applied it once.
async fn an_event_the_broker_refuses_stays_unsent_until_it_is_accepted(backend: Backend) {
    let exchange = broker::fresh_exchange();
    let app = app_on_broker(backend, &exchange, &broker::url()).await;
    let product = app.create_product("Phone", 999_900, 10).await["productId"]
        .as_str()
        .expect("id")
        .to_owned();
    relay_idle(&app).await;
    // A queue of the test's own that takes every order.placed and has room
    // for none: with `reject-publish`, the broker nacks what it cannot enqueue.
    let broker = Broker::connect().await;
    let refusing = format!("{exchange}.test");
    let mut full = FieldTable::default();
    full.insert("x-max-length".into(), AMQPValue::LongLongInt(0));
    full.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    broker
        .bind_queue(&refusing, &exchange, "order.placed", full)
        .await;

    let (order, _) = order_of(&app, "buyer", &product, 1).await;
    wait_until(
        "the broker refused the order's event, twice",
        DEADLINE,
        || async {
            relay_of_placed(
                &app,
                &order,
                "d.handled_at IS NULL AND d.attempts >= 2 AND d.last_error LIKE '%nack%'",
            ) == 1
        },
    )
    .await;
    let metrics = parse_metrics(&app.admin_get("/metrics").await.body);
    assert!(
        sum(&metrics, "shop_bus_published_total", "result=\"failed\"") >= 2.0,
        "{metrics:?}"
    );

    // The broker accepts it again: sent, and marked sent.
    broker.delete_queue(&refusing).await;
    eventually("the relay sent the event once accepted", || async {
        relay_of_placed(
            &app,
            &order,
            "d.handled_at IS NOT NULL AND d.last_error IS NULL",
        ) == 1
    })
    .await;
    eventually("the product context confirmed the reservation", || async {
        reservation_is(&app, &order, "confirmed")
    })
    .await;
    eventually("the product queue is drained", || async {
        broker.ready(&format!("{exchange}.product")).await == Some(0)
    })
    .await;
    assert_eq!(applied_placed(&app, &order), 1, "applied once");
    assert_eq!(
        broker.ready(&format!("{exchange}.dead-letter")).await,
        Some(0)
    );
    drop(app);
    broker.remove(&exchange).await;
}

/// Fails every time, counting the events it was handed one by one.
#[derive(Default)]
struct Failing(AtomicU32);

impl EventHandler for Failing {
    fn handle(&self, _conn: &mut AnyConnection, _event: &EventEnvelope) -> anyhow::Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        anyhow::bail!("this handler always fails")
    }

    fn handle_batch(
        &self,
        _conn: &mut AnyConnection,
        _events: &[EventEnvelope],
    ) -> anyhow::Result<()> {
        anyhow::bail!("this handler always fails")
    }
}

/// A migrated database, a dispatcher with one subscriber `test.subscriber`
/// taking `test.pinged`, a broker link on a fresh exchange, and that
/// subscriber consuming its queue (`<exchange>.test`), declared before this returns.
struct Consuming {
    url: String,
    exchange: String,
    bus: Arc<RabbitMq>,
    broker: Broker,
    stop: CancellationToken,
    consumer: tokio::task::JoinHandle<()>,
    _database: TestDatabase,
}

impl Consuming {
    async fn start(backend: Backend, handler: Arc<dyn EventHandler>, max_attempts: u32) -> Self {
        let database = TestDatabase::create(backend);
        let url = database.url();
        let db = database.open_migrated();
        let dispatcher: Dispatcher = EventBusBuilder::default()
            .subscribe("test.subscriber", &[Pinged::TYPE], handler)
            .build(db, DispatchOptions::default(), &Outbox::new());
        let exchange = broker::fresh_exchange();
        let bus = RabbitMq::connect(
            RabbitSettings {
                url: broker::url().into(),
                exchange: exchange.clone(),
                max_attempts,
                prefetch: 16,
            },
            &[("test.subscriber", &[Pinged::TYPE])],
        )
        .await
        .expect("the broker");
        let stop = CancellationToken::new();
        let consumer = bus.consume("test", vec!["test.subscriber"], dispatcher, stop.clone());
        let broker = Broker::connect().await;
        assert_eq!(
            broker.ready(&format!("{exchange}.test")).await,
            Some(0),
            "the queue is declared before anything is published"
        );
        Self {
            url,
            exchange,
            bus,
            broker,
            stop,
            consumer,
            _database: database,
        }
    }

    async fn publish(&self, events: &[EventEnvelope]) {
        for result in self.bus.publish(events).await {
            result.expect("the broker confirmed the message");
        }
    }

    fn inbox(&self) -> i64 {
        count(&self.url, "SELECT COUNT(*) AS n FROM event_inbox")
    }

    /// Stops consuming (what it holds unacknowledged would go back to the
    /// queue) and returns the messages left in the queue and in the dead letters.
    async fn stop(self) -> (u32, u32) {
        self.stop.cancel();
        tokio::time::timeout(DEADLINE, self.consumer)
            .await
            .expect("the consumer stops")
            .expect("the consumer did not panic");
        let queue = self
            .broker
            .ready(&format!("{}.test", self.exchange))
            .await
            .expect("queue");
        let dead = self
            .broker
            .ready(&format!("{}.dead-letter", self.exchange))
            .await
            .expect("dead-letter queue");
        self.broker.remove(&self.exchange).await;
        (queue, dead)
    }
}

async fn a_redelivered_event_is_applied_once(backend: Backend) {
    let recorder = Arc::new(Recorder::default());
    let consuming = Consuming::start(backend, recorder.clone(), 3).await;
    let event = EventEnvelope::new(&Pinged { n: 1 }, None).expect("event");
    // Twice in one publication (one batch), then again later: as a relay
    // that died between the broker's confirm and its mark would send it.
    consuming.publish(&[event.clone(), event.clone()]).await;
    eventually("the event is applied", || async {
        recorder.seen() == [1] && consuming.inbox() == 1
    })
    .await;
    consuming.publish(std::slice::from_ref(&event)).await;
    let marker = EventEnvelope::new(&Pinged { n: 2 }, None).expect("event");
    consuming.publish(&[marker]).await;
    // One queue, one consumer: once the marker is applied, the copy before it was taken.
    eventually("the later event is applied", || async {
        recorder.seen().contains(&2)
    })
    .await;
    assert_eq!(recorder.seen(), [1, 2], "the copies changed nothing");
    assert_eq!(consuming.inbox(), 2);
    let (left, dead) = consuming.stop().await;
    assert_eq!((left, dead), (0, 0), "every copy was acknowledged");
}

async fn an_event_that_keeps_failing_is_dead_lettered_after_its_attempts(backend: Backend) {
    let failing = Arc::new(Failing::default());
    let consuming = Consuming::start(backend, failing.clone(), 3).await;
    consuming
        .publish(&[EventEnvelope::new(&Pinged { n: 7 }, None).expect("event")])
        .await;
    let dead_letters = format!("{}.dead-letter", consuming.exchange);
    wait_until(
        "the failing event reaches the dead letters",
        DEADLINE,
        || async { consuming.broker.ready(&dead_letters).await == Some(1) },
    )
    .await;
    assert_eq!(
        failing.0.load(Ordering::SeqCst),
        3,
        "three attempts, no more"
    );
    assert_eq!(consuming.inbox(), 0, "a failed attempt records nothing");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        failing.0.load(Ordering::SeqCst),
        3,
        "not tried again once dead-lettered"
    );
    let (left, dead) = consuming.stop().await;
    assert_eq!((left, dead), (0, 1));
}

/// A message on the exchange that is not one of shop's events (no event id)
/// is dead-lettered at once, and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(shop_rabbitmq),
    ignore = "set SHOP_TEST_RABBITMQ_URL to run the RabbitMQ tests"
)]
async fn a_message_that_is_not_an_event_is_dead_lettered_and_counted() {
    let exchange = broker::fresh_exchange();
    let app = app_on_broker(Backend::Sqlite, &exchange, &broker::url()).await;
    let broker = Broker::connect().await;
    let queue = format!("{exchange}.product");
    broker
        .publish(
            &exchange,
            "order.paid",
            b"{\"orderId\": \"o-1\"}",
            lapin::BasicProperties::default(),
        )
        .await;
    let dead_letters = format!("{exchange}.dead-letter");
    wait_until("the message reaches the dead letters", DEADLINE, || async {
        broker.ready(&dead_letters).await == Some(1)
    })
    .await;
    let metrics = parse_metrics(&app.admin_get("/metrics").await.body);
    assert_eq!(
        sum(
            &metrics,
            "shop_bus_dead_letters_total",
            "event_type=\"order.paid\""
        ),
        1.0,
        "{metrics:?}"
    );
    assert_eq!(broker.ready(&queue).await, Some(0));
    broker.remove(&exchange).await;
}

/// A `shop` process (SQLite) on the broker through a proxy the test can
/// cut, with a product on sale and every consumer consuming.
struct ProxiedShop {
    exchange: String,
    proxy: TcpProxy,
    database: TestDatabase,
    shop: shop_tests::ShopProcess,
    client: reqwest::Client,
    product: String,
}

impl ProxiedShop {
    async fn start() -> Self {
        const SHOP: &str = env!("CARGO_BIN_EXE_shop-e2e");
        let exchange = broker::fresh_exchange();
        let proxy = TcpProxy::start(&broker::address()).await;
        let database = TestDatabase::create(Backend::Sqlite);
        let via_proxy = broker::url_via(proxy.port());
        let shop = shop_tests::ShopProcess::start(
            SHOP,
            &database.url(),
            &[
                ("SHOP__BUS__KIND", "rabbitmq"),
                ("SHOP__BUS__RABBITMQ_URL", via_proxy.as_str()),
                ("SHOP__BUS__EXCHANGE", exchange.as_str()),
            ],
        );
        let client = reqwest::Client::new();
        let created = client
            .post(format!("{}/api/v1/products", shop.address))
            .bearer_auth(shop_tests::ADMIN_TOKEN)
            .json(&json!({"name": "Phone", "description": "", "price": 100, "currency": "CNY", "stock": 50}))
            .send()
            .await
            .expect("created");
        assert_eq!(created.status(), 201);
        let product = created.json::<serde_json::Value>().await.expect("product")["productId"]
            .as_str()
            .expect("id")
            .to_owned();
        wait_until("every consumer is consuming", DEADLINE, || async {
            consuming(&shop.log()) >= 3
        })
        .await;
        Self {
            exchange,
            proxy,
            database,
            shop,
            client,
            product,
        }
    }
}

/// A customer's order of one unit of `product`.
fn place_one(
    client: &reqwest::Client,
    shop: &shop_tests::ShopProcess,
    product: &str,
) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> {
    client
        .post(format!("{}/api/v1/orders", shop.address))
        .bearer_auth(shop_tests::mint("buyer"))
        .json(&json!({"items": [{"productId": product, "quantity": 1}]}))
        .send()
}

/// How many times a process's log says a consumer started consuming.
fn consuming(log: &[String]) -> usize {
    log.iter()
        .filter(|line| line.contains("consuming events from the broker"))
        .count()
}

/// A cut of the way to the broker is logged once per link when it goes down
/// and once when it comes back, whatever its length: lapin's own errors and
/// each reconnection attempt are counted (`shop_broker_link_failures_total`),
/// not written. The process logs through its real subscriber (JSON lines on
/// stderr, `RUST_LOG=info` as in production), which only a process of its
/// own has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(shop_rabbitmq),
    ignore = "set SHOP_TEST_RABBITMQ_URL to run the RabbitMQ tests"
)]
async fn a_cut_to_the_broker_is_logged_once_down_and_once_up() {
    let ProxiedShop {
        exchange,
        proxy,
        database,
        shop,
        client,
        product,
    } = ProxiedShop::start().await;
    // Each order's `order.placed` goes out through the relay's publisher.
    let order = || place_one(&client, &shop, &product);
    assert_eq!(order().await.expect("placed").status(), 201);
    eventually("the relay sent what there was", || async {
        count(&database.url(), UNSENT) == 0 && count(&database.url(), SENT) >= 1
    })
    .await;
    let before = shop.log().len();

    // Cut for a few seconds, with events waiting to be published meanwhile.
    proxy.cut();
    for _ in 0..3 {
        assert_eq!(order().await.expect("placed").status(), 201);
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    proxy.resume().await;
    eventually("the relay sent what waited", || async {
        count(&database.url(), UNSENT) == 0 && count(&database.url(), SENT) >= 4
    })
    .await;
    wait_until("every consumer is back", DEADLINE, || async {
        consuming(&shop.log()[before..]) >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let written: Vec<String> = shop.log()[before..].to_vec();
    let level = |line: &String| {
        serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|entry| entry["level"].as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let loud: Vec<&String> = written
        .iter()
        .filter(|line| matches!(level(line).as_str(), "WARN" | "ERROR"))
        .collect();
    let lapin = written
        .iter()
        .filter(|line| line.contains("\"target\":\"lapin"))
        .count();
    // Four links (the publisher, three consumers): one line down each.
    assert!(
        loud.len() <= 8 && lapin == 0,
        "{} warnings and errors ({lapin} of lapin's) for one cut of {} lines:\n{}",
        loud.len(),
        written.len(),
        loud.iter()
            .take(20)
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let down = written
        .iter()
        .filter(|line| line.contains("lost the message broker"))
        .count();
    let back = written
        .iter()
        .filter(|line| line.contains("the message broker is back"))
        .count();
    assert_eq!(
        (down, back),
        (4, 4),
        "one line down and one back for each link:\n{}",
        written.join("\n")
    );
    // Everything written, the requests' own lines included: a handful a link.
    assert!(
        written.len() <= 40,
        "{} lines for one cut:\n{}",
        written.len(),
        written
            .iter()
            .take(40)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let metrics = client
        .get(format!("{}/metrics", shop.address))
        .bearer_auth(shop_tests::ADMIN_TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(
        sum(
            &parse_metrics(&metrics),
            "shop_broker_link_failures_total",
            ""
        ) >= 4.0,
        "each link's failures are counted: {metrics}"
    );
    drop(shop);
    Broker::connect().await.remove(&exchange).await;
}

const SENT: &str = "SELECT COUNT(*) AS n FROM event_deliveries WHERE subscriber = 'bus.relay' AND handled_at IS NOT NULL";
const UNSENT: &str = "SELECT COUNT(*) AS n FROM event_deliveries WHERE subscriber = 'bus.relay' AND handled_at IS NULL";

/// A broker that accepts a connection, opens it and then goes silent (a
/// proxy passes its handshake and nothing more) must not hang a reconnect:
/// each link gives up on a set-up that takes longer than 30 s and connects
/// again, so once the broker answers again every consumer is back and the
/// events placed meanwhile are published and applied. (With the old set-up,
/// with no bound after the connect, the links waited on the silent
/// connections for ever.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(shop_rabbitmq),
    ignore = "set SHOP_TEST_RABBITMQ_URL to run the RabbitMQ tests"
)]
async fn a_broker_that_goes_silent_after_the_handshake_does_not_hang_a_reconnect() {
    let ProxiedShop {
        exchange,
        proxy,
        database,
        shop,
        client,
        product,
    } = ProxiedShop::start().await;
    let before = shop.log().len();

    // Every link loses its connection; the new ones open and then hear nothing.
    proxy.silent_after_handshake(true);
    let cut_at = std::time::Instant::now();
    proxy.cut();
    proxy.resume().await;
    let placed = place_one(&client, &shop, &product).await.expect("placed");
    assert_eq!(placed.status(), 201);
    // The consumers lost the broker and reconnect into the silence (the
    // relay finds out when its publication's confirm does not come)...
    wait_until("every consumer lost the broker", DEADLINE, || async {
        shop.log()[before..]
            .iter()
            .filter(|line| line.contains("lost the message broker"))
            .count()
            >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // ...and once the broker answers again, they are back within the set-up bound.
    proxy.silent_after_handshake(false);
    wait_until(
        "every consumer is back after a silent set-up",
        Duration::from_secs(90),
        || async { consuming(&shop.log()[before..]) >= 3 },
    )
    .await;
    let back_after = cut_at.elapsed();
    eventually("the order placed meanwhile was published", || async {
        count(&database.url(), UNSENT) == 0 && count(&database.url(), SENT) >= 1
    })
    .await;
    // They came back only once their silent set-ups ran out of time: the
    // silence landed on them (a link whose new connection had answered
    // would have been back in a second or two).
    assert!(
        back_after >= Duration::from_secs(20),
        "back after {back_after:?}, before a silent set-up could have run out"
    );
    drop(shop);
    drop(proxy);
    let broker = Broker::connect().await;
    broker.remove(&exchange).await;
}

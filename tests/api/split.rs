//! Split mode: the same binary as three services — `--contexts product`,
//! `--contexts order`, `--contexts payment` — each on a database of its own,
//! calling each other's ports over HTTP and telling each other what happened
//! over RabbitMQ. The whole purchase, expiry, a refund and a flash sale work
//! across them; each can be killed (SIGKILL) in the middle of a burst and
//! restarted: nothing is lost, nothing is applied twice, the stock is exact.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shop_tests::broker::{self, Broker, TcpProxy};
use shop_tests::purchase::{Caller, notification, success};
use shop_tests::{
    ADMIN_TOKEN, Backend, DEADLINE, ShopProcess, StatusCode, TestDatabase, Value, count,
    eventually, free_port, mint,
};

const SHOP: &str = env!("CARGO_BIN_EXE_shop-e2e");
const TOKEN: &str = "split-service-token-0123456789";

shop_tests::on_each_backend_with_broker!(
    a_purchase_an_expiry_and_a_refund_cross_three_services,
    a_flash_sale_across_services_never_oversells,
    killing_each_service_mid_burst_loses_nothing_and_applies_nothing_twice,
    a_product_service_cut_off_from_the_broker_keeps_the_stock_of_paid_orders,
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Product,
    Order,
    Payment,
}

use Service::{Order, Payment, Product};

impl Service {
    fn context(self) -> &'static str {
        match self {
            Product => "product",
            Order => "order",
            Payment => "payment",
        }
    }

    fn at(self) -> usize {
        self as usize
    }
}

/// Three `shop` processes, one per context, each on its own database.
struct Split {
    exchange: String,
    databases: Vec<TestDatabase>,
    /// Each service's port, chosen before any starts: every service is told
    /// every other's URL at start (the product service asks the order
    /// service's `OrderLookup` too), and a restarted one comes back there.
    ports: [u16; 3],
    processes: [Option<ShopProcess>; 3],
    /// Settings of every service.
    extra: Vec<(String, String)>,
    /// Settings of one service only (its broker URL through a proxy, say).
    own: [Vec<(String, String)>; 3],
}

impl Split {
    /// Starts product, order (reserving at product) and payment (reading orders at order).
    fn start(backend: Backend, extra: &[(&str, &str)]) -> Self {
        let mut split = Self::new(backend, extra);
        split.launch_all();
        split
    }

    /// The three services' databases and ports, none started yet.
    fn new(backend: Backend, extra: &[(&str, &str)]) -> Self {
        Self {
            exchange: broker::fresh_exchange(),
            databases: (0..3).map(|_| TestDatabase::create(backend)).collect(),
            ports: [free_port(), free_port(), free_port()],
            processes: [None, None, None],
            extra: extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            own: [Vec::new(), Vec::new(), Vec::new()],
        }
    }

    /// A setting of `service` alone (before it is launched).
    fn set(&mut self, service: Service, key: &str, value: &str) {
        self.own[service.at()].push((key.to_owned(), value.to_owned()));
    }

    fn launch_all(&mut self) {
        for service in [Product, Order, Payment] {
            self.launch(service);
        }
    }

    fn launch(&mut self, service: Service) {
        let mut settings: Vec<(String, String)> = vec![
            ("SHOP__CONTEXTS".into(), service.context().into()),
            ("SHOP__PORTS__TOKEN".into(), TOKEN.into()),
            ("SHOP__WORKER__POLL_MS".into(), "100".into()),
            ("SHOP__DATABASE__POOL_SIZE".into(), "8".into()),
            (
                "SHOP__SERVER__BIND".into(),
                format!("127.0.0.1:{}", self.ports[service.at()]),
            ),
        ];
        settings.extend(
            broker::settings(&self.exchange)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v)),
        );
        match service {
            // The abandoned-reservation job asks whether a reservation's order exists.
            Product => settings.push(("SHOP__PORTS__ORDER_URL".into(), self.address(Order))),
            Order => settings.push(("SHOP__PORTS__PRODUCT_URL".into(), self.address(Product))),
            Payment => settings.push(("SHOP__PORTS__ORDER_URL".into(), self.address(Order))),
        }
        settings.extend(self.extra.iter().cloned());
        settings.extend(self.own[service.at()].iter().cloned());
        let settings: Vec<(&str, &str)> = settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let process = ShopProcess::start(SHOP, &self.database(service), &settings);
        assert_eq!(
            process.address,
            self.address(service),
            "{service:?} listens where the others call it"
        );
        self.processes[service.at()] = Some(process);
    }

    fn address(&self, service: Service) -> String {
        format!("http://127.0.0.1:{}", self.ports[service.at()])
    }

    fn database(&self, service: Service) -> String {
        self.databases[service.at()].url()
    }

    /// SIGKILL.
    fn kill(&mut self, service: Service) {
        if let Some(process) = self.processes[service.at()].take() {
            process.kill();
        }
    }

    /// Stops every process and removes the exchange's queues.
    async fn finish(mut self) {
        for service in [Payment, Order, Product] {
            self.kill(service);
        }
        Broker::connect().await.remove(&self.exchange).await;
    }

    async fn create_product(&self, stock: i64) -> String {
        let http = client();
        let admin = Caller::new(&http, ADMIN_TOKEN);
        let response = admin
            .create_product(&self.address(Product), "Split", 100, "CNY", stock)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.expect("json");
        body["productId"].as_str().expect("id").to_owned()
    }

    /// A GET sent and read as JSON.
    async fn read(request: reqwest::RequestBuilder) -> Value {
        let response = request.send().await.expect("request");
        response.json().await.expect("json")
    }

    async fn stock(&self, product: &str) -> i64 {
        let url = format!("{}/api/v1/products/{product}", self.address(Product));
        let product = Self::read(client().get(url)).await;
        product["stock"].as_i64().expect("stock")
    }

    async fn order_status(&self, user: &str, order: &str) -> String {
        let (http, token) = (client(), mint(user));
        let customer = Caller::new(&http, &token);
        let order = Self::read(customer.order(&self.address(Order), order)).await;
        order["status"].as_str().unwrap_or_default().to_owned()
    }

    async fn payment_status(&self, user: &str, payment: &str) -> String {
        let (http, token) = (client(), mint(user));
        let customer = Caller::new(&http, &token);
        let payment = Self::read(customer.payment(&self.address(Payment), payment)).await;
        payment["status"].as_str().unwrap_or_default().to_owned()
    }

    fn count(&self, service: Service, sql: &str) -> i64 {
        count(&self.database(service), sql)
    }

    /// The reservations at the product service in `status`.
    fn reservations(&self, status: &str) -> i64 {
        self.count(
            Product,
            &format!("SELECT COUNT(*) AS n FROM stock_reservations WHERE status = '{status}'"),
        )
    }

    /// The log of `service`'s running process (JSON lines).
    fn log(&self, service: Service) -> Vec<Value> {
        self.processes[service.at()]
            .as_ref()
            .map(ShopProcess::log)
            .unwrap_or_default()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// What is still on its way: each service's unsent events and each
    /// queue's ready messages (all zeros once everything settled).
    async fn in_flight(&self) -> Vec<i64> {
        let mut counts = Vec::new();
        for service in [Product, Order, Payment] {
            counts.push(self.count(
                service,
                "SELECT COUNT(*) AS n FROM event_deliveries WHERE handled_at IS NULL",
            ));
        }
        let broker = Broker::connect().await;
        for queue in ["product", "order", "payment", "dead-letter"] {
            let ready = broker.ready(&format!("{}.{queue}", self.exchange)).await;
            counts.push(ready.map_or(-1, i64::from));
        }
        counts
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Sends until a service answers other than "unavailable": a connection
/// refused or reset (the service is down or restarting), a 503 (the service it
/// calls is), or no answer within the client's timeout, are tried again until
/// `deadline`.
async fn answered(
    deadline: Instant,
    request: impl Fn() -> reqwest::RequestBuilder,
) -> (StatusCode, Value) {
    watched(&Kill::default(), deadline, request).await
}

/// What a test's requests saw of one kill: those sent to the victim before
/// it was killed, and those of them that no answer ever came to (cut off by
/// the kill: they were in flight at the killed service).
#[derive(Default)]
struct Kill {
    /// The victim's port (0 while there is none).
    victim: AtomicU16,
    killed: AtomicBool,
    /// Requests at the victim now.
    in_flight: AtomicUsize,
    cut_off: AtomicUsize,
}

impl Kill {
    fn of(victim: u16) -> Arc<Self> {
        let kill = Self::default();
        kill.victim.store(victim, Ordering::SeqCst);
        Arc::new(kill)
    }
}

/// Opens a connection to the service on `port` and sends half a request
/// (its headers and part of its body): the service is receiving it from
/// then on, until the rest comes (it never does).
async fn half_sent_request(port: u16) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the victim accepts a connection");
    socket
        .write_all(
            b"POST /api/v1/products HTTP/1.1\r\nHost: 127.0.0.1\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"na",
        )
        .await
        .expect("half a request is sent");
    socket
}

/// Whether the connection ends (closed or reset) without a byte of answer.
async fn never_answered(socket: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 64];
    match tokio::time::timeout(DEADLINE, socket.read(&mut buffer)).await {
        Ok(Ok(0) | Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

/// [`answered`], counting in `kill` the requests sent to its victim before
/// the kill that got no answer (a connection refused is not one: that
/// request never reached it).
async fn watched(
    kill: &Kill,
    deadline: Instant,
    request: impl Fn() -> reqwest::RequestBuilder,
) -> (StatusCode, Value) {
    loop {
        let (http, built) = request().build_split();
        let built = built.expect("a request");
        let victim = kill.victim.load(Ordering::SeqCst);
        let at_victim = victim != 0
            && built.url().port() == Some(victim)
            && !kill.killed.load(Ordering::SeqCst);
        if at_victim {
            kill.in_flight.fetch_add(1, Ordering::SeqCst);
        }
        let sent = http.execute(built).await;
        if at_victim {
            kill.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        match sent {
            Ok(response) => {
                let status = response.status();
                if let Ok(body) = response.json::<Value>().await
                    && status != StatusCode::SERVICE_UNAVAILABLE
                {
                    return (status, body);
                }
            }
            Err(error) => {
                if at_victim && !error.is_connect() && kill.killed.load(Ordering::SeqCst) {
                    kill.cut_off.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no service answered before the deadline"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The gateway's signed report, sent to the payment service at `base`, that
/// `payment` succeeded (signed anew each time it is sent).
fn paid(
    http: &reqwest::Client,
    base: &str,
    payment: &Value,
    amount: i64,
    transaction: &str,
) -> reqwest::RequestBuilder {
    notification(
        http,
        &format!("{base}/api/v1/payments/notify"),
        &success(payment, amount, transaction),
        chrono::Utc::now().timestamp(),
    )
}

/// What one customer's purchase came to.
#[derive(Debug)]
enum Purchase {
    Paid {
        user: String,
        order: String,
        quantity: i64,
    },
    /// The customer opened a payment, then cancelled the order.
    Cancelled {
        user: String,
        order: String,
    },
    OutOfStock,
}

/// A customer buys `quantity`: places the order (with an idempotency key, so
/// that a retry after a lost answer is the same order), opens a payment, and
/// the gateway reports it paid. Each step is retried while a service is down.
async fn purchase(
    addresses: [String; 3],
    product: String,
    user: String,
    quantity: i64,
    deadline: Instant,
) -> Purchase {
    shop(
        addresses,
        product,
        user,
        quantity,
        deadline,
        false,
        Arc::default(),
    )
    .await
}

/// [`purchase`], watching `kill`: the customer first looks at the product
/// (at the product service), and when `cancels`, cancels the order once its
/// payment is open instead of paying.
async fn shop(
    addresses: [String; 3],
    product: String,
    user: String,
    quantity: i64,
    deadline: Instant,
    cancels: bool,
    kill: Arc<Kill>,
) -> Purchase {
    let http = client();
    let token = mint(&user);
    let customer = Caller::new(&http, &token);
    // The customer looks at the product before each step (at the product
    // service: so that it too has requests of the burst in flight).
    let look = || async {
        let (status, shown) = watched(&kill, deadline, || {
            http.get(format!(
                "{}/api/v1/products/{product}",
                addresses[Product.at()]
            ))
        })
        .await;
        assert_eq!(status, StatusCode::OK, "{shown}");
    };
    look().await;
    let (status, order) = watched(&kill, deadline, || {
        customer
            .place_order(&addresses[Order.at()], &product, quantity)
            .header("Idempotency-Key", format!("key-{user}"))
    })
    .await;
    if status == StatusCode::CONFLICT && order["code"] == "insufficient_stock" {
        return Purchase::OutOfStock;
    }
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let order_id = order["orderId"].as_str().expect("id").to_owned();
    let amount = order["amount"].as_i64().expect("amount");
    look().await;
    let (status, payment) = watched(&kill, deadline, || {
        customer.initiate(&addresses[Payment.at()], &order_id, "alipay", None)
    })
    .await;
    look().await;
    assert!(
        status == StatusCode::CREATED || status == StatusCode::OK,
        "{status} {payment}"
    );
    if cancels {
        let (status, cancelled) = watched(&kill, deadline, || {
            customer.cancel(&addresses[Order.at()], &order_id)
        })
        .await;
        // A retry after a lost answer finds it cancelled already.
        assert!(
            status == StatusCode::OK
                || (status == StatusCode::CONFLICT && cancelled["code"] == "order_not_cancellable"),
            "{status} {cancelled}"
        );
        return Purchase::Cancelled {
            user,
            order: order_id,
        };
    }
    let (status, notified) = watched(&kill, deadline, || {
        paid(
            &http,
            &addresses[Payment.at()],
            &payment,
            amount,
            &format!("tx-{user}"),
        )
    })
    .await;
    assert_eq!(status, StatusCode::OK, "{notified}");
    assert_eq!(notified["paymentStatus"], "succeeded", "{notified}");
    Purchase::Paid {
        user,
        order: order_id,
        quantity,
    }
}

fn addresses(split: &Split) -> [String; 3] {
    [
        split.address(Product),
        split.address(Order),
        split.address(Payment),
    ]
}

async fn a_purchase_an_expiry_and_a_refund_cross_three_services(backend: Backend) {
    // Unpaid orders expire after 8 s: long enough for the purchase, short enough to watch one expire.
    let split = Split::start(
        backend,
        &[
            ("SHOP__ORDER__PAYMENT_TIMEOUT_SECS", "8"),
            ("SHOP__ORDER__EXPIRY_SWEEP_MS", "100"),
        ],
    );
    let product = split.create_product(10).await;
    let deadline = Instant::now() + DEADLINE;

    // The purchase: the order reserves at product over HTTP, the payment
    // reads the order over HTTP, and the events go over the broker.
    let Purchase::Paid { user, order, .. } = purchase(
        addresses(&split),
        product.clone(),
        "alice".into(),
        2,
        deadline,
    )
    .await
    else {
        panic!("in stock");
    };
    eventually("the order service hears the payment succeeded", || async {
        split.order_status(&user, &order).await == "paid"
    })
    .await;
    eventually("the product service hears the order was paid", || async {
        split.count(
            Product,
            &format!("SELECT COUNT(*) AS n FROM stock_reservations WHERE id = '{order}' AND status = 'sold'"),
        ) == 1
    })
    .await;
    assert_eq!(split.stock(&product).await, 8);

    // Expiry: an order nobody pays is cancelled by the order service, and the
    // product service gives its stock back.
    let http = client();
    let (bob, carol) = (mint("bob"), mint("carol"));
    let (bob, carol) = (Caller::new(&http, &bob), Caller::new(&http, &carol));
    let (status, unpaid) = answered(deadline, || {
        bob.place_order(&split.address(Order), &product, 3)
    })
    .await;
    assert_eq!(status, StatusCode::CREATED, "{unpaid}");
    let unpaid = unpaid["orderId"].as_str().expect("id").to_owned();
    assert_eq!(split.stock(&product).await, 5);
    // Also a payment for it, which the payment service closes when it hears of the expiry.
    let (status, payment) = answered(deadline, || {
        bob.initiate(&split.address(Payment), &unpaid, "wechat_pay", None)
    })
    .await;
    assert_eq!(status, StatusCode::CREATED, "{payment}");
    let payment_id = payment["paymentId"].as_str().expect("id").to_owned();
    wait_long(
        "the unpaid order expires and its stock comes back",
        || async {
            split.order_status("bob", &unpaid).await == "cancelled"
                && split.stock(&product).await == 8
        },
    )
    .await;
    wait_long(
        "the payment service closes the expired order's payment",
        || async { split.payment_status("bob", &payment_id).await == "closed" },
    )
    .await;

    // A refund: the gateway reports money taken for an order the customer
    // cancelled meanwhile; the payment service gives it back.
    let (status, cancelled) = answered(deadline, || {
        carol.place_order(&split.address(Order), &product, 1)
    })
    .await;
    assert_eq!(status, StatusCode::CREATED, "{cancelled}");
    let amount = cancelled["amount"].as_i64().expect("amount");
    let cancelled = cancelled["orderId"].as_str().expect("id").to_owned();
    let (_, payment) = answered(deadline, || {
        carol.initiate(&split.address(Payment), &cancelled, "alipay", None)
    })
    .await;
    let (status, _) = answered(deadline, || carol.cancel(&split.address(Order), &cancelled)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, late) = answered(deadline, || {
        paid(&http, &split.address(Payment), &payment, amount, "tx-late")
    })
    .await;
    assert_eq!(status, StatusCode::OK, "{late}");
    let refunded = payment["paymentId"].as_str().expect("id").to_owned();
    eventually("the money of the cancelled order goes back", || async {
        split.payment_status("carol", &refunded).await == "refunded"
    })
    .await;
    eventually("the cancelled order's stock is back", || async {
        split.stock(&product).await == 8
    })
    .await;
    // Each service's database holds its own context's tables, none of another's.
    assert_eq!(split.count(Order, "SELECT COUNT(*) AS n FROM orders"), 3);
    assert_eq!(
        split.count(Payment, "SELECT COUNT(*) AS n FROM payments"),
        3
    );
    assert_eq!(
        split.count(Product, "SELECT COUNT(*) AS n FROM stock_reservations"),
        3
    );
    split.finish().await;
}

/// Waits up to twice [`DEADLINE`] (an expiry takes its timeout first).
async fn wait_long<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    shop_tests::wait_until(what, DEADLINE * 2, check).await;
}

async fn a_flash_sale_across_services_never_oversells(backend: Backend) {
    const STOCK: i64 = 10;
    const BUYERS: usize = 40;
    let split = Split::start(backend, &[]);
    let product = split.create_product(STOCK).await;
    let deadline = Instant::now() + DEADLINE * 2;
    // Every buyer's request is under way before any answer is awaited.
    let buyers: Vec<_> = (0..BUYERS)
        .map(|i| {
            tokio::spawn(purchase(
                addresses(&split),
                product.clone(),
                format!("fan-{i}"),
                1,
                deadline,
            ))
        })
        .collect();
    let mut paid = Vec::new();
    for buyer in buyers {
        if let Purchase::Paid { user, order, .. } = buyer.await.expect("buyer") {
            paid.push((user, order));
        }
    }
    assert_eq!(paid.len() as i64, STOCK, "exactly the stock is sold");
    assert_eq!(split.stock(&product).await, 0);
    for (user, order) in &paid {
        eventually("every sold order is paid", || async {
            split.order_status(user, order).await == "paid"
        })
        .await;
    }
    eventually("the product service sold exactly the stock", || async {
        split.count(
            Product,
            "SELECT COUNT(*) AS n FROM stock_reservations WHERE status = 'sold'",
        ) == STOCK
    })
    .await;
    split.finish().await;
}

async fn killing_each_service_mid_burst_loses_nothing_and_applies_nothing_twice(backend: Backend) {
    const STOCK: i64 = 1_000;
    const BURST: usize = 24;
    /// Purchases to see completed before the kill: the burst is under way.
    const DONE_FIRST: usize = 4;
    const STAGGER: Duration = Duration::from_millis(40);
    /// A reservation's hold ends with its order's payment deadline: short
    /// enough to see an orphan (a reservation whose order never committed)
    /// go back within the test, long enough to pay through the restarts.
    const HOLD: Duration = Duration::from_secs(30);
    let hold = HOLD.as_secs().to_string();
    let split_settings = [
        ("SHOP__WORKER__ABANDONED_RESERVATION_GRACE_SECS", "0"),
        ("SHOP__ORDER__PAYMENT_TIMEOUT_SECS", hold.as_str()),
    ];
    let mut split = Split::start(backend, &split_settings);
    let product = split.create_product(STOCK).await;
    let mut paid: Vec<(String, String, i64)> = Vec::new();
    let mut cancelled: Vec<(String, String)> = Vec::new();
    for (round, victim) in [Product, Order, Payment].into_iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(90);
        let done = Arc::new(AtomicUsize::new(0));
        let kill = Kill::of(split.ports[victim.at()]);
        // Every purchase is spawned before any is awaited, each starting
        // 40 ms after the one before, so that every service has requests of
        // the burst in flight while the first purchases complete; one in four cancels.
        let burst: Vec<_> = (0..BURST)
            .map(|i| {
                let done = done.clone();
                let start = tokio::time::Instant::now() + STAGGER * i as u32;
                let purchase = shop(
                    addresses(&split),
                    product.clone(),
                    format!("round-{round}-{i}"),
                    1 + i as i64 % 3,
                    deadline,
                    i % 4 == 3,
                    kill.clone(),
                );
                tokio::spawn(async move {
                    tokio::time::sleep_until(start).await;
                    let outcome = purchase.await;
                    done.fetch_add(1, Ordering::SeqCst);
                    outcome
                })
            })
            .collect();
        // Killed once a few purchases completed and requests are at the victim.
        let started = Instant::now();
        while done.load(Ordering::SeqCst) < DONE_FIRST || kill.in_flight.load(Ordering::SeqCst) == 0
        {
            assert!(
                started.elapsed() < DEADLINE,
                "the burst never got under way at {victim:?}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // A request the victim is in the middle of receiving when it dies:
        // proof that the kill lands on a process at work, whatever the
        // burst's own (fast) requests happen to be doing at that instant.
        let mut probe = half_sent_request(split.ports[victim.at()]).await;
        let done_at_kill = done.load(Ordering::SeqCst);
        kill.killed.store(true, Ordering::SeqCst);
        split.kill(victim);
        if victim == Product {
            // The order service answers for the port it cannot reach: a 503 problem, at once or within its budget.
            let asked = Instant::now();
            let (http, token) = (client(), mint("while-product-is-down"));
            let customer = Caller::new(&http, &token);
            let response = customer
                .place_order(&split.address(Order), &product, 1)
                .send()
                .await
                .expect("the order service answers");
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(
                asked.elapsed() < Duration::from_secs(5),
                "within the port's budget"
            );
        }
        assert!(
            done_at_kill < BURST,
            "{victim:?} was killed in the middle of the burst ({done_at_kill} of {BURST} done)"
        );
        split.launch(victim);
        for purchase in burst {
            match purchase.await.expect("purchase") {
                Purchase::Paid {
                    user,
                    order,
                    quantity,
                } => paid.push((user, order, quantity)),
                Purchase::Cancelled { user, order } => cancelled.push((user, order)),
                Purchase::OutOfStock => panic!("the stock is ample"),
            }
        }
        let cut_off = kill.cut_off.load(Ordering::SeqCst);
        eprintln!(
            "{backend:?}: {victim:?} killed with {done_at_kill} of {BURST} purchases done; {cut_off} of the burst's requests cut off"
        );
        assert!(
            never_answered(&mut probe).await,
            "a request was in flight at {victim:?} when it was killed, and got no answer"
        );
    }

    // Everything settles: every paid order is paid, its stock sold, once;
    // every cancelled order is cancelled, its stock back.
    for (user, order, _) in &paid {
        eventually("every order is paid", || async {
            split.order_status(user, order).await == "paid"
        })
        .await;
    }
    for (user, order) in &cancelled {
        eventually("every cancelled order is cancelled", || async {
            split.order_status(user, order).await == "cancelled"
        })
        .await;
    }
    let orders = paid.len() as i64;
    let cancellations = cancelled.len() as i64;
    let sold: i64 = paid.iter().map(|(_, _, quantity)| quantity).sum();
    eventually(
        "the product service sold every paid order's stock",
        || async { split.reservations("sold") == orders },
    )
    .await;
    let settled = Instant::now() + DEADLINE;
    loop {
        let in_flight = split.in_flight().await;
        if in_flight.iter().all(|n| *n == 0) {
            break;
        }
        assert!(
            Instant::now() < settled,
            "still on its way (unsent in product, order, payment; ready in their queues, dead letters): {in_flight:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        split.count(
            Order,
            "SELECT COUNT(*) AS n FROM orders WHERE status = 'paid'"
        ),
        orders
    );
    assert_eq!(
        split.count(Order, "SELECT COUNT(*) AS n FROM orders"),
        orders + cancellations,
        "no order but the customers' (none expired)"
    );
    assert_eq!(
        split.count(
            Payment,
            "SELECT COUNT(*) AS n FROM payments WHERE status = 'succeeded'"
        ),
        orders,
        "one payment succeeded per order, none refused as a second"
    );
    assert_eq!(
        split.count(
            Payment,
            "SELECT COUNT(*) AS n FROM payments WHERE status IN ('refund_required', 'refunded')"
        ),
        0
    );
    // The stock is exact: what is sold is what was paid for, and every other
    // unit is back on the shelf, a reservation whose order never committed
    // (the service died between the two) too, once its hold ended and the
    // abandoned-reservation job heard from the order service that its order
    // does not exist.
    let sold_units = split.count(
        Product,
        "SELECT CAST(COALESCE(SUM(l.quantity), 0) AS BIGINT) AS n FROM stock_reservation_lines l \
         JOIN stock_reservations r ON r.id = l.reservation_id WHERE r.status = 'sold'",
    );
    assert_eq!(sold_units, sold);
    shop_tests::wait_until(
        "no reservation is held or confirmed any more",
        HOLD + JOB_INTERVAL * 2 + DEADLINE,
        || async { split.reservations("held") + split.reservations("confirmed") == 0 },
    )
    .await;
    eventually("every unit not sold is back on the shelf", || async {
        split.stock(&product).await + sold_units == STOCK
    })
    .await;
    // Nothing applied twice: each subscriber took each event once.
    let inbox = |service: Service, subscriber: &str| {
        split.count(
            service,
            &format!("SELECT COUNT(*) AS n FROM event_inbox WHERE subscriber = '{subscriber}'"),
        )
    };
    assert_eq!(
        inbox(Product, "product.stock-reservations"),
        // order.placed of every order, order.paid or order.cancelled of each
        2 * (orders + cancellations),
    );
    assert_eq!(
        inbox(Order, "order.payment-outcomes"),
        // payment.succeeded of every paid order
        orders,
    );
    assert_eq!(
        inbox(Payment, "payment.trade-closing"),
        // order.cancelled of every cancelled order
        cancellations,
    );
    split.finish().await;
}

/// How often the product service's abandoned-reservation job runs (at start,
/// then every minute: `domain-product`'s `context.rs`).
const JOB_INTERVAL: Duration = Duration::from_secs(60);

/// What the job logs of each reservation past its hold (`domain-product`'s
/// `Reservations::release_abandoned`).
const JUDGEMENTS: [&str; 3] = [
    "a held reservation's order exists: kept until its events arrive",
    "cannot tell whether a held reservation's order exists: kept",
    "releasing a reservation whose order never arrived",
];

/// The product service is cut off from the broker: orders are placed and
/// paid, but their `order.placed` and `order.paid` wait in its queue, so
/// their reservations stay `held` past their hold. The abandoned-reservation
/// job asks the order service, hears that the orders exist, and keeps them:
/// no new buyer gets those units. Once the broker is back, every paid order's
/// stock is sold, none was sold twice.
async fn a_product_service_cut_off_from_the_broker_keeps_the_stock_of_paid_orders(
    backend: Backend,
) {
    const STOCK: i64 = 3;
    // A reservation's hold ends with its order's payment deadline: short
    // here, yet long enough to pay on a busy machine.
    const HOLD_SECS: &str = "15";
    let proxy = TcpProxy::start(&broker::address()).await;
    let mut split = Split::new(
        backend,
        &[
            ("SHOP__ORDER__PAYMENT_TIMEOUT_SECS", HOLD_SECS),
            ("SHOP__WORKER__ABANDONED_RESERVATION_GRACE_SECS", "0"),
        ],
    );
    split.set(
        Product,
        "SHOP__BUS__RABBITMQ_URL",
        &broker::url_via(proxy.port()),
    );
    split.launch_all();
    let product = split.create_product(STOCK).await;

    // The product service's path to the broker is cut; the others' is not.
    proxy.cut();
    eventually("the product service lost the broker", || async {
        split.log(Product).iter().any(|entry| {
            entry["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("lost the message broker"))
        })
    })
    .await;
    let deadline = Instant::now() + DEADLINE;
    let buyers: Vec<_> = (0..STOCK)
        .map(|i| {
            tokio::spawn(purchase(
                addresses(&split),
                product.clone(),
                format!("cut-off-{i}"),
                1,
                deadline,
            ))
        })
        .collect();
    let mut paid = Vec::new();
    for buyer in buyers {
        match buyer.await.expect("buyer") {
            Purchase::Paid { user, order, .. } => paid.push((user, order)),
            Purchase::Cancelled { .. } | Purchase::OutOfStock => {
                panic!("the stock is there for every buyer, who pays")
            }
        }
    }
    for (user, order) in &paid {
        eventually("the order service hears the payment succeeded", || async {
            split.order_status(user, order).await == "paid"
        })
        .await;
    }
    // The fault is where the test says: the orders' events reached the
    // product service's queue, and the product service never took them.
    let queue = format!("{}.product", split.exchange);
    let broker = Broker::connect().await;
    eventually(
        "order.placed and order.paid of every order wait in the product queue",
        || async { broker.ready(&queue).await == Some(2 * STOCK as u32) },
    )
    .await;
    assert_eq!(split.reservations("held"), STOCK, "never confirmed");
    assert_eq!(split.stock(&product).await, 0);

    // Their holds end; the job looks at them (only once a hold has ended)
    // and says what it did with each.
    let judged = |order: &str| -> Option<String> {
        split
            .log(Product)
            .into_iter()
            .filter(|entry| entry["reservation_id"] == order)
            .filter_map(|entry| entry["message"].as_str().map(str::to_owned))
            .find(|message| JUDGEMENTS.contains(&message.as_str()))
    };
    shop_tests::wait_until(
        "the abandoned-reservation job looked at every reservation past its hold",
        JOB_INTERVAL * 2 + DEADLINE,
        || async { paid.iter().all(|(_, order)| judged(order).is_some()) },
    )
    .await;
    for (_, order) in &paid {
        assert_eq!(
            judged(order).as_deref(),
            Some("a held reservation's order exists: kept until its events arrive"),
            "the reservation of the paid order {order}"
        );
    }
    assert_eq!(
        split.reservations("held"),
        STOCK,
        "no reservation of an existing order was released"
    );
    assert_eq!(split.stock(&product).await, 0);
    let (http, token) = (client(), mint("latecomer"));
    let latecomer = Caller::new(&http, &token);
    let (status, refused) = answered(Instant::now() + DEADLINE, || {
        latecomer.place_order(&split.address(Order), &product, 1)
    })
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["code"], "insufficient_stock", "{refused}");

    // The broker is back: the product service takes the events, and every
    // paid order's stock is sold, exactly the stock.
    proxy.resume().await;
    eventually(
        "the product service sold every paid order's stock",
        || async { split.reservations("sold") == STOCK },
    )
    .await;
    eventually("the product queue is drained", || async {
        broker.ready(&queue).await == Some(0)
    })
    .await;
    assert_eq!(split.stock(&product).await, 0);
    assert_eq!(split.reservations("held"), 0);
    assert_eq!(split.reservations("released"), 0);
    let log = split.log(Product);
    assert!(
        !log.iter().any(|entry| entry["message"]
            == "a paid order's stock was not reserved; check the stock of its products"),
        "{log:#?}"
    );
    split.finish().await;
}

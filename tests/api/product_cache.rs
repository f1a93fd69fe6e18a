//! The product read cache, on two instances sharing one database: whatever
//! changes a product (an admin on one instance, an order, a statement typed
//! at a SQL prompt) reaches every instance's cache, and the instance that
//! wrote reads its own write at once.
//!
//! The invalidators aim at 100 ms (they poll every 10 or 20 ms); the time
//! each change took is printed. The test holds them to a generous deadline
//! instead, which a loaded CI machine cannot miss: the cache has no expiry,
//! so without the invalidation a stale entry would be served forever.

use std::time::{Duration, Instant};

use diesel::RunQueryDsl;
use domain_product::ProductCatalog;
use reqwest::Method;
use shop_tests::{Backend, StatusCode, TestApp, TestDatabase, eventually, json};

/// Every instance forgets a changed product within this, however busy the machine.
const DEADLINE: Duration = Duration::from_secs(10);

/// Reads `product` on `app` until it shows `stock`; fails when a read begun
/// `DEADLINE` or more after `since` still shows something else. Returns when
/// the first read that showed `stock` began.
async fn seen_within_deadline(
    app: &TestApp,
    product: &str,
    stock: i64,
    since: Instant,
) -> Duration {
    loop {
        let began = since.elapsed();
        let seen = app.stock(product).await;
        if seen == stock {
            return began;
        }
        assert!(
            began < DEADLINE,
            "a read begun {began:?} after the change still showed {seen} instead of {stock}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Reads `product` on `app` until it is cached with `stock` (up to 10 s: on
/// SQLite the invalidator may still be emptying the cache for a commit made
/// just before, such as the product's creation, which it hears of within 20 ms).
async fn cache_holds(app: &TestApp, product: &str, stock: i64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        assert_eq!(app.stock(product).await, stock);
        let cached = app
            .modules
            .facade::<ProductCatalog>()
            .expect("product context")
            .cache()
            .peek(product);
        if cached.as_ref().map(|p| p.product().stock.units()) == Some(stock) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the product is not served from the cache: {:?}",
            cached.map(|p| p.product().stock.units())
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn writes_reach_every_instance_cache(backend: Backend) {
    let database = TestDatabase::create(backend);
    let a = TestApp::spawn_on(&database, backend, &[]).await;
    let b = TestApp::spawn_on(&database, backend, &[]).await;
    eventually("both caches hear of changes", || async {
        a.modules
            .facade::<ProductCatalog>()
            .expect("product context")
            .cache()
            .is_live()
            && b.modules
                .facade::<ProductCatalog>()
                .expect("product context")
                .cache()
                .is_live()
    })
    .await;
    let product = a.create_product("Cached", 100, 10).await["productId"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/products/{product}/stock");

    // An admin sets the stock on A, while both instances hold the product.
    cache_holds(&a, &product, 10).await;
    cache_holds(&b, &product, 10).await;
    let set = a
        .admin_send(Method::PUT, &path, &json!({"newStock": 7}))
        .await;
    let written = Instant::now();
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(a.stock(&product).await, 7, "A reads its own write at once");
    let admin_latency = seen_within_deadline(&b, &product, 7, written).await;

    // An order on A reserves stock.
    cache_holds(&a, &product, 7).await;
    cache_holds(&b, &product, 7).await;
    let order = json!({"userId": "cached", "items": [{"productId": product, "quantity": 2}]});
    let placed = a
        .as_user("cached")
        .post_json("/api/v1/orders", &order)
        .await;
    let written = Instant::now();
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    assert_eq!(
        a.stock(&product).await,
        5,
        "A reads its own reservation at once"
    );
    let order_latency = seen_within_deadline(&b, &product, 5, written).await;

    // An admin on B, seen by A.
    let set = b
        .admin_send(Method::PUT, &path, &json!({"newStock": 9}))
        .await;
    let written = Instant::now();
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(b.stock(&product).await, 9, "B reads its own write at once");
    seen_within_deadline(&a, &product, 9, written).await;

    // A change made outside the app, at a SQL prompt.
    cache_holds(&a, &product, 9).await;
    cache_holds(&b, &product, 9).await;
    let updated = sql(
        &database.url(),
        &format!("UPDATE products SET stock = 3 WHERE id = '{product}'"),
    );
    assert_eq!(updated, 1);
    let written = Instant::now();
    let sql_latency = seen_within_deadline(&a, &product, 3, written).await;
    seen_within_deadline(&b, &product, 3, written).await;
    eprintln!(
        "{backend:?}: seen by the other instance after {admin_latency:?} (admin), {order_latency:?} (order); after {sql_latency:?} (SQL prompt)"
    );

    if backend == Backend::Postgres {
        // An operator's way to empty every instance's cache at once.
        cache_holds(&b, &product, 3).await;
        sql(&database.url(), "NOTIFY shop_products");
        let sent = Instant::now();
        while b
            .modules
            .facade::<ProductCatalog>()
            .expect("product context")
            .cache()
            .peek(&product)
            .is_some()
        {
            assert!(
                sent.elapsed() < DEADLINE,
                "NOTIFY shop_products empties the cache"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    let metrics = b.admin_get("/metrics").await.body;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("shop_product_cache_total{result=\"hit\"}")),
        "hits are counted"
    );
}

/// Runs one statement on the database, as an operator would; returns the rows it changed.
fn sql(database_url: &str, statement: &str) -> usize {
    let url = shared_kernel::storage::db::DatabaseUrl::parse(database_url).unwrap();
    let options = shared_kernel::storage::db::PoolOptions {
        max_size: 1,
        ..Default::default()
    };
    let db = shared_kernel::storage::db::Db::connect(&url, &options).unwrap();
    let mut conn = db.get_blocking().unwrap();
    diesel::sql_query(statement).execute(&mut *conn).unwrap()
}

shop_tests::on_each_backend!(writes_reach_every_instance_cache);

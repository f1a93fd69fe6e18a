//! Split mode, the contexts: a process runs any of product, order and
//! payment (`SHOP__CONTEXTS`, `shop serve --contexts`), serves their routes
//! only, and migrates their tables only, so that each context can live in a
//! database of its own. (Events do not cross databases yet: payment -> order
//! effects are not tested here.)

use std::collections::BTreeSet;
use std::path::Path;

use diesel::RunQueryDsl;
use diesel_migrations::{FileBasedMigrations, MigrationHarness};
use shared_kernel::storage::db::{AnyConnection, DatabaseUrl, Db, PoolOptions};
use shop_tests::{ADMIN_TOKEN, Backend, StatusCode, TestApp, TestDatabase, Value, json, mint};

const SHOP: &str = env!("CARGO_BIN_EXE_shop-e2e");
const TOKEN: &str = "test-service-token-contexts-0123";

shop_tests::on_each_backend!(
    a_product_process_serves_and_stores_the_product_context_only,
    order_or_payment_without_what_they_need_refuse_to_start,
    three_processes_on_three_databases_place_and_pay_an_order,
    a_database_migrated_in_one_folder_has_nothing_pending,
);

/// The folder of a backend's migrations.
fn migrations_dir(backend: Backend) -> std::path::PathBuf {
    let name = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
        #[cfg(feature = "mysql")]
        Backend::Mysql => "mysql",
    };
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(name)
}

/// The tables the migrations of `groups` create on `backend` (read from their `up.sql`).
fn tables_of(backend: Backend, groups: &[&str]) -> BTreeSet<String> {
    let mut tables = BTreeSet::new();
    for group in groups {
        let dir = migrations_dir(backend).join(group);
        for entry in std::fs::read_dir(&dir).expect("migrations folder") {
            let sql = std::fs::read_to_string(entry.expect("entry").path().join("up.sql"))
                .expect("up.sql");
            let words: Vec<String> = sql
                .lines()
                .map(|line| line.split("--").next().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(" ")
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            for window in words.windows(3) {
                if window[0].eq_ignore_ascii_case("CREATE")
                    && window[1].eq_ignore_ascii_case("TABLE")
                {
                    tables.insert(window[2].trim_end_matches('(').to_owned());
                }
            }
        }
    }
    tables
}

/// The tables a database holds, diesel's bookkeeping aside.
fn tables_in(database_url: &str) -> BTreeSet<String> {
    #[derive(diesel::QueryableByName)]
    struct Table {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let url = DatabaseUrl::parse(database_url).expect("url");
    let db = Db::connect(
        &url,
        &PoolOptions {
            max_size: 1,
            ..Default::default()
        },
    )
    .expect("connect");
    let sql = match db.backend() {
        shared_kernel::storage::db::Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        }
        shared_kernel::storage::db::Backend::Postgres => {
            "SELECT table_name::text AS name FROM information_schema.tables WHERE table_schema = 'public'"
        }
        shared_kernel::storage::db::Backend::Mysql => {
            "SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
        }
    };
    let mut conn = db.get_blocking().expect("connection");
    diesel::sql_query(sql)
        .load::<Table>(&mut *conn)
        .expect("tables")
        .into_iter()
        .map(|t| t.name)
        .filter(|name| name != "__diesel_schema_migrations")
        .collect()
}

/// Asserts that the database of `app` holds exactly the bus's tables and those of `context`.
fn assert_holds_only(app: &TestApp, context: &str, own: &[&str]) {
    let expected = tables_of(app.backend, &["bus", "audit", context]);
    for table in own
        .iter()
        .chain(&["outbox_events", "event_deliveries", "event_subscriptions"])
    {
        assert!(
            expected.contains(*table),
            "{context}: {table} in {expected:?}"
        );
    }
    let others: Vec<&str> = ["product", "order", "payment"]
        .into_iter()
        .filter(|c| *c != context)
        .collect();
    let foreign = tables_of(app.backend, &others);
    assert!(foreign.len() >= 4, "{foreign:?}");
    let held = tables_in(&app.database_url);
    assert_eq!(
        held, expected,
        "the {context} process's database holds other tables than the bus's and its own"
    );
    assert!(held.is_disjoint(&foreign), "{held:?}");
}

/// The paths of the served OpenAPI document.
async fn served_paths(app: &TestApp) -> Vec<String> {
    let document = app.get("/api-docs/openapi.json").await;
    assert_eq!(document.status, StatusCode::OK);
    document.json["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect()
}

async fn a_product_process_serves_and_stores_the_product_context_only(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("SHOP__CONTEXTS", "product")]).await;
    assert!(app.modules.contexts.runs("product"));
    assert!(!app.modules.contexts.runs("order") && !app.modules.contexts.runs("payment"));

    // The product context's routes, and its original-spec alias, work.
    let product = app.create_product("alone", 300, 7).await["productId"]
        .as_str()
        .expect("id")
        .to_owned();
    let listed = app.get("/api/v1/products").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert_eq!(listed.json["items"][0]["productId"], product.as_str());
    let info = app
        .get(&format!("/getProductInfo?productId={product}"))
        .await;
    assert_eq!(info.status, StatusCode::OK, "{}", info.body);
    assert_eq!(app.stock(&product).await, 7);
    // Health, metrics and docs too.
    assert_eq!(app.get("/health/ready").await.status, StatusCode::OK);
    assert_eq!(app.admin_get("/metrics").await.status, StatusCode::OK);
    assert_eq!(app.get("/swagger-ui/").await.status, StatusCode::OK);

    // The other contexts' routes and aliases are unknown paths: 404, whatever the method.
    let customer = app.as_user("buyer");
    let order = json!({"items": [{"productId": product, "quantity": 1}]});
    for (method, path, body) in [
        ("POST", "/api/v1/orders", order.clone()),
        ("GET", "/api/v1/orders?userId=buyer", Value::Null),
        ("GET", "/api/v1/orders/some-order", Value::Null),
        ("POST", "/api/v1/orders/some-order/cancel", Value::Null),
        (
            "POST",
            "/createOrder",
            json!({"productId": product, "quantity": 1, "userId": "buyer"}),
        ),
        ("GET", "/getOrderInfo?orderId=some-order", Value::Null),
        (
            "POST",
            "/api/v1/payments",
            json!({"orderId": "some-order", "paymentMethod": "alipay"}),
        ),
        ("GET", "/api/v1/payments/some-payment", Value::Null),
        ("POST", "/api/v1/payments/notify", json!({})),
        ("POST", "/api/v1/payments/notify/alipay", json!({})),
        ("POST", "/api/v1/payments/notify/wechat_pay", json!({})),
        (
            "POST",
            "/initiatePayment",
            json!({"orderId": "some-order", "paymentMethod": "alipay"}),
        ),
        ("POST", "/paymentResultNotify", json!({})),
        ("GET", "/sandbox/checkout/some-payment", Value::Null),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = customer.request(method, path);
        if !body.is_null() {
            request = request.json(&body);
        }
        customer
            .send(request)
            .await
            .assert_problem(StatusCode::NOT_FOUND, "not_found");
    }
    assert_eq!(app.stock(&product).await, 7, "nothing was reserved");

    // The served document lists the product context's paths and every
    // process's own, and nothing of the others.
    let paths = served_paths(&app).await;
    for path in [
        "/api/v1/products",
        "/api/v1/products/{productId}",
        "/getProductInfo",
        "/health/ready",
        "/metrics",
    ] {
        assert!(paths.iter().any(|p| p == path), "{path} not in {paths:?}");
    }
    for path in &paths {
        assert!(
            !["order", "Order", "payment", "Payment"]
                .iter()
                .any(|word| path.contains(word)),
            "the product process documents {path}"
        );
    }
    let document = app.get("/api-docs/openapi.json").await;
    let tags: Vec<&str> = document.json["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        tags.contains(&"products") && !tags.contains(&"orders") && !tags.contains(&"payments"),
        "{tags:?}"
    );
    // Links only between the operations it has.
    assert!(
        !document.body.contains("\"createOrder\""),
        "{}",
        document.body
    );

    assert_holds_only(&app, "product", &["products", "stock_reservations"]);
}

async fn order_or_payment_without_what_they_need_refuse_to_start(backend: Backend) {
    for (flag, variable, missing) in [
        (Some("order"), None, "SHOP__PORTS__PRODUCT_URL"),
        (None, Some("order,payment"), "SHOP__PORTS__PRODUCT_URL"),
        (Some("payment"), None, "SHOP__PORTS__ORDER_URL"),
        (None, Some("payment,product"), "SHOP__PORTS__ORDER_URL"),
    ] {
        let database = TestDatabase::create(backend);
        let mut command = std::process::Command::new(SHOP);
        command.arg("serve");
        if let Some(flag) = flag {
            command.args(["--contexts", flag]);
        }
        if let Some(variable) = variable {
            command.env("SHOP__CONTEXTS", variable);
        }
        let output = command
            .env("DATABASE_URL", database.url())
            .env("SHOP__SERVER__BIND", "127.0.0.1:0")
            .env("SHOP__AUTH__ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SHOP__PORTS__TOKEN", TOKEN)
            .env("SHOP__LOG__FORMAT", "json")
            .stdout(std::process::Stdio::null())
            .output()
            .expect("run shop");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{flag:?} {variable:?} started: {stderr}"
        );
        assert!(
            stderr.contains(missing) && stderr.contains("needs the"),
            "{flag:?} {variable:?}: {stderr}"
        );
        // Refused before the database was touched.
        let url = database.url();
        match url.strip_prefix("sqlite://") {
            Some(file) => assert!(!Path::new(file).exists(), "{file} was made"),
            None => assert!(tables_in(&url).is_empty(), "{url} was migrated"),
        }
    }
}

async fn three_processes_on_three_databases_place_and_pay_an_order(backend: Backend) {
    let product = TestApp::spawn_with(
        backend,
        &[("SHOP__CONTEXTS", "product"), ("SHOP__PORTS__TOKEN", TOKEN)],
    )
    .await;
    let order = TestApp::spawn_with(
        backend,
        &[
            ("SHOP__CONTEXTS", "order"),
            ("SHOP__PORTS__PRODUCT_URL", product.address.as_str()),
            ("SHOP__PORTS__TOKEN", TOKEN),
        ],
    )
    .await;
    let payment = TestApp::spawn_with(
        backend,
        &[
            ("SHOP__CONTEXTS", "payment"),
            ("SHOP__PORTS__ORDER_URL", order.address.as_str()),
            ("SHOP__PORTS__TOKEN", TOKEN),
        ],
    )
    .await;
    let databases: BTreeSet<&str> = [&product, &order, &payment]
        .iter()
        .map(|app| app.database_url.as_str())
        .collect();
    assert_eq!(databases.len(), 3, "each process has its own database");

    let product_id = product.create_product("split", 450, 10).await["productId"]
        .as_str()
        .expect("id")
        .to_owned();
    // The order process serves no catalog of its own.
    order
        .get(&format!("/api/v1/products/{product_id}"))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not_found");

    // An order on the order process reserves the stock of the product process, over HTTP.
    let placed = order
        .as_user("buyer")
        .post_json(
            "/api/v1/orders",
            &json!({"items": [{"productId": product_id, "quantity": 3}]}),
        )
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    assert_eq!(placed.json["amount"], 1350);
    assert_eq!(placed.json["items"][0]["unitPrice"], 450);
    assert_eq!(product.stock(&product_id).await, 7);
    let order_id = placed.json["orderId"].as_str().expect("id").to_owned();
    let read = order
        .as_user("buyer")
        .get(&format!("/api/v1/orders/{order_id}"))
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    // The original spec's alias of the order context, on the order process.
    let alias = order
        .send(
            order
                .client
                .post(order.url("/createOrder"))
                .bearer_auth(mint("buyer"))
                .json(&json!({"productId": product_id, "quantity": 1})),
        )
        .await;
    assert_eq!(alias.status, StatusCode::CREATED, "{}", alias.body);
    assert_eq!(product.stock(&product_id).await, 6);

    // A payment on the payment process reads the order from the order process, over HTTP.
    let initiated = payment
        .as_user("buyer")
        .post_json(
            "/api/v1/payments",
            &json!({"orderId": order_id, "paymentMethod": "alipay"}),
        )
        .await;
    assert_eq!(initiated.status, StatusCode::CREATED, "{}", initiated.body);
    assert_eq!(initiated.json["amount"], 1350);
    assert_eq!(initiated.json["currency"], "CNY");
    assert_eq!(initiated.json["status"], "pending");
    // Its sandbox checkout page is the payment process's.
    let url = initiated.json["paymentUrl"].as_str().expect("url");
    assert!(url.starts_with(&payment.address), "{url}");
    let page = payment.send(payment.client.get(url)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    // Another customer's order is not found, as in one process.
    payment
        .as_user("someone-else")
        .post_json(
            "/api/v1/payments",
            &json!({"orderId": order_id, "paymentMethod": "alipay"}),
        )
        .await
        .assert_problem(StatusCode::NOT_FOUND, "order_not_found");

    // The internal API serves only the ports of the contexts run here.
    for (app, path, method) in [
        (
            &product,
            "/internal/v1/orders/{order}",
            reqwest::Method::GET,
        ),
        (
            &order,
            "/internal/v1/inventory/products",
            reqwest::Method::POST,
        ),
        (
            &payment,
            "/internal/v1/orders/{order}",
            reqwest::Method::GET,
        ),
        (
            &payment,
            "/internal/v1/inventory/products",
            reqwest::Method::POST,
        ),
    ] {
        let path = path.replace("{order}", &order_id);
        app.send(
            app.client
                .request(method, app.url(&path))
                .bearer_auth(TOKEN)
                .json(&json!({"productIds": [product_id]})),
        )
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not_found");
    }
    let looked_up = order
        .send(
            order
                .client
                .get(order.url(&format!("/internal/v1/orders/{order_id}")))
                .bearer_auth(TOKEN),
        )
        .await;
    assert_eq!(looked_up.status, StatusCode::OK, "{}", looked_up.body);

    // Each database holds only the bus's tables and its context's: none of
    // the three could have read another's.
    assert_holds_only(&product, "product", &["products", "stock_reservations"]);
    assert_holds_only(&order, "order", &["orders", "order_lines"]);
    assert_holds_only(&payment, "payment", &["payments", "payment_notifications"]);
    for (app, own) in [
        (&product, "/api/v1/products"),
        (&order, "/api/v1/orders"),
        (&payment, "/api/v1/payments"),
    ] {
        let paths = served_paths(app).await;
        // Beside its context's, every process serves the audit log of its own database.
        let public: Vec<&String> = paths
            .iter()
            .filter(|p| p.starts_with("/api/v1/") && *p != "/api/v1/audit-events")
            .collect();
        assert!(
            public.iter().all(|p| p.starts_with(own)),
            "{own}: {public:?}"
        );
        assert!(
            paths.iter().any(|p| p == "/api/v1/audit-events"),
            "{paths:?}"
        );
    }
}

/// A database migrated before the migrations were split into groups (every
/// version in one folder per backend, as the files were) has nothing left
/// to apply, whichever contexts a process runs.
async fn a_database_migrated_in_one_folder_has_nothing_pending(backend: Backend) {
    // The layout before the split: every group's folders side by side.
    let old = std::env::temp_dir().join(format!("shop-old-layout-{}", uuid::Uuid::now_v7()));
    let mut versions = 0;
    for group in std::fs::read_dir(migrations_dir(backend)).expect("groups") {
        for migration in std::fs::read_dir(group.expect("group").path()).expect("group") {
            let migration = migration.expect("migration").path();
            let to = old.join(migration.file_name().expect("name"));
            std::fs::create_dir_all(&to).expect("folder");
            for file in ["up.sql", "down.sql"] {
                std::fs::copy(migration.join(file), to.join(file)).expect("copy");
            }
            versions += 1;
        }
    }
    assert!(versions >= 9, "{versions}");
    let database = TestDatabase::create(backend);
    let url = DatabaseUrl::parse(&database.url()).expect("url");
    let db = Db::connect(
        &url,
        &PoolOptions {
            max_size: 1,
            ..Default::default()
        },
    )
    .expect("connect");
    let mut conn = db.get_blocking().expect("connection");
    let source = FileBasedMigrations::from_path(&old).expect("the old layout");
    let applied = match &mut *conn {
        AnyConnection::Sqlite(c) => c.run_pending_migrations(source).map(|v| v.len()),
        AnyConnection::Postgres(c) => c.run_pending_migrations(source).map(|v| v.len()),
        #[cfg(feature = "mysql")]
        AnyConnection::Mysql(c) => c.run_pending_migrations(source).map(|v| v.len()),
    }
    .expect("the old layout migrates");
    assert_eq!(applied, versions);
    let _ = std::fs::remove_dir_all(&old);
    let before = tables_in(&database.url());

    for contexts in ["product", "order", "payment", "product,order,payment"] {
        let contexts = contexts.parse().expect("contexts");
        let pending = shared_kernel::storage::db::run_migrations(
            &mut conn,
            shop::startup::migrations_for(contexts),
        )
        .expect("migrations");
        assert!(pending.is_empty(), "{contexts}: {pending:?} ran again");
    }
    let pending =
        shared_kernel::storage::db::run_migrations(&mut conn, shop::startup::migrations())
            .expect("migrations");
    assert!(pending.is_empty(), "{pending:?}");
    drop(conn);
    assert_eq!(tables_in(&database.url()), before);
    // And a fresh database migrated by the new layout ends the same.
    let fresh = TestDatabase::create(backend);
    let fresh_db = Db::connect(
        &DatabaseUrl::parse(&fresh.url()).expect("url"),
        &Default::default(),
    )
    .expect("connect");
    let applied = shared_kernel::storage::db::run_migrations(
        &mut fresh_db.get_blocking().expect("connection"),
        shop::startup::migrations(),
    )
    .expect("migrations");
    assert_eq!(applied.len(), versions);
    assert_eq!(tables_in(&fresh.url()), before);
}

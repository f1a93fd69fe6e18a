//! The end-to-end harness: every test gets its own fresh database (an SQLite
//! file, or a new PostgreSQL database) and its own real `shop` server on a
//! random loopback port, so tests run in parallel and share nothing.
//!
//! PostgreSQL tests run when `SHOP_TEST_POSTGRES_URL` names a server
//! (any database on it; each test creates and drops its own). Without it they
//! are compiled as ignored (`build.rs` sets `cfg(shop_postgres)` only when the
//! variable is set), so the summary counts them as ignored, never as passed;
//! `SHOP_TEST_REQUIRE_POSTGRES=1` compiles them to run anyway, so that a
//! missing server fails them (CI sets both). A PostgreSQL test that runs
//! without a server (`--include-ignored`) fails: it never passes untested.
//!
//! MariaDB (or MySQL) tests exist only when the crate is built with its
//! `mysql` feature, and then follow the same rules with
//! `SHOP_TEST_MYSQL_URL` (e.g. `mysql://root@127.0.0.1:3306/test`; each test
//! creates and drops its own `shop_test_<uuid>` database on that server) and
//! `SHOP_TEST_REQUIRE_MYSQL=1` (`cfg(shop_mysql)`). The `shop` binary the
//! process tests start (`shop-e2e`, built by this crate) is built with the
//! same features, so with `--features mysql` it speaks MySQL too.

use std::path::PathBuf;

#[cfg(feature = "mysql")]
use diesel::mysql::MysqlConnection;
use diesel::{Connection, RunQueryDsl, pg::PgConnection};
use secrecy::SecretString;
use shop::config::Settings;
use shop::modules::{Modules, Secrets};
use shop::startup::{self, Application};

pub mod broker;
pub mod events;
pub mod fakes;
pub mod purchase;

pub use reqwest::StatusCode;
pub use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// MariaDB or MySQL (the tests are named `mariadb`: CI runs MariaDB).
    #[cfg(feature = "mysql")]
    Mysql,
}

/// A database that exists for one test only.
pub enum TestDatabase {
    Sqlite {
        dir: PathBuf,
    },
    Postgres {
        admin_url: String,
        name: String,
    },
    #[cfg(feature = "mysql")]
    Mysql {
        admin_url: String,
        name: String,
    },
}

/// The server URL a MariaDB test runs on; without it the test fails (the
/// MariaDB tests are ignored then, so only a test run on purpose gets here).
#[cfg(feature = "mysql")]
pub fn mysql_admin_url() -> String {
    match std::env::var("SHOP_TEST_MYSQL_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "this is a MariaDB test and SHOP_TEST_MYSQL_URL is not set: \
             set it to a server's URL (mysql://root@127.0.0.1:3306/test) to run the MariaDB tests"
        ),
    }
}

/// An administrative connection to the MariaDB server of `SHOP_TEST_MYSQL_URL`.
#[cfg(feature = "mysql")]
fn mysql_admin(admin_url: &str) -> Result<MysqlConnection, diesel::ConnectionError> {
    let mut conn = MysqlConnection::establish(admin_url)?;
    // DROP DATABASE waits for the metadata locks of open transactions: never for long.
    let _ = diesel::sql_query("SET SESSION lock_wait_timeout = 10").execute(&mut conn);
    Ok(conn)
}

impl TestDatabase {
    /// A fresh, empty database. A PostgreSQL one needs `SHOP_TEST_POSTGRES_URL`:
    /// without it the test fails (the PostgreSQL tests are ignored then, so
    /// only a test run on purpose, or one not marked, gets here).
    pub fn create(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir()
                    .join(format!("shop-test-{}", uuid::Uuid::now_v7().simple()));
                // A folder that cannot be made is a failure, not a skipped test.
                std::fs::create_dir_all(&dir).unwrap_or_else(|e| {
                    panic!(
                        "cannot create the test database folder {}: {e}",
                        dir.display()
                    )
                });
                Self::Sqlite { dir }
            }
            Backend::Postgres => {
                let Some(admin_url) = std::env::var("SHOP_TEST_POSTGRES_URL")
                    .ok()
                    .filter(|u| !u.is_empty())
                else {
                    panic!(
                        "this is a PostgreSQL test and SHOP_TEST_POSTGRES_URL is not set: \
                         set it to a server's URL to run the PostgreSQL tests"
                    );
                };
                let name = format!("shop_test_{}", uuid::Uuid::now_v7().simple());
                let mut conn = PgConnection::establish(&admin_url).unwrap_or_else(|e| {
                    panic!("cannot reach PostgreSQL at SHOP_TEST_POSTGRES_URL: {e}")
                });
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
                Self::Postgres { admin_url, name }
            }
            #[cfg(feature = "mysql")]
            Backend::Mysql => {
                let admin_url = mysql_admin_url();
                let name = format!("shop_test_{}", uuid::Uuid::now_v7().simple());
                let mut conn = mysql_admin(&admin_url)
                    .unwrap_or_else(|e| panic!("cannot reach MariaDB at SHOP_TEST_MYSQL_URL: {e}"));
                diesel::sql_query(format!(
                    "CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                ))
                .execute(&mut conn)
                .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
                Self::Mysql { admin_url, name }
            }
        }
    }

    pub fn url(&self) -> String {
        match self {
            Self::Sqlite { dir } => format!("sqlite://{}", dir.join("shop.db").display()),
            Self::Postgres { admin_url, name } => with_database(admin_url, name),
            #[cfg(feature = "mysql")]
            Self::Mysql { admin_url, name } => with_database(admin_url, name),
        }
    }

    /// A pool on this database, with every migration applied (for tests of
    /// the event bus and the like, below the app).
    pub fn open_migrated(&self) -> shared_kernel::storage::db::Db {
        let url = shared_kernel::storage::db::DatabaseUrl::parse(&self.url()).expect("url");
        let db = shared_kernel::storage::db::Db::connect(
            &url,
            &shared_kernel::storage::db::PoolOptions::default(),
        )
        .expect("connect");
        shared_kernel::storage::db::run_migrations(
            &mut db.get_blocking().expect("conn"),
            startup::migrations(),
        )
        .expect("migrate");
        db
    }
}

/// The same server URL naming another database.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[authority_end..].find('/') {
        Some(i) => &base[..authority_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match self {
            Self::Sqlite { dir } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Self::Postgres { admin_url, name } => {
                if let Ok(mut conn) = PgConnection::establish(admin_url) {
                    let _ =
                        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut conn);
                }
            }
            // MySQL has no DROP DATABASE ... WITH (FORCE): the connections
            // still on it (an app's pool, a process killed mid-transaction)
            // are killed first, so that the drop never waits on their locks.
            #[cfg(feature = "mysql")]
            Self::Mysql { admin_url, name } => {
                #[derive(diesel::QueryableByName)]
                struct Session {
                    #[diesel(sql_type = diesel::sql_types::BigInt)]
                    id: i64,
                }
                if let Ok(mut conn) = mysql_admin(admin_url) {
                    let sessions: Vec<Session> = diesel::sql_query(format!(
                        "SELECT CAST(id AS SIGNED) AS id FROM information_schema.PROCESSLIST \
                         WHERE db = '{name}' AND id <> CONNECTION_ID()"
                    ))
                    .load(&mut conn)
                    .unwrap_or_default();
                    for session in sessions {
                        let _ =
                            diesel::sql_query(format!("KILL {}", session.id)).execute(&mut conn);
                    }
                    let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name}"))
                        .execute(&mut conn);
                }
            }
        }
    }
}

/// A running app and a client for it.
pub struct TestApp {
    pub address: String,
    /// The database the app runs on (for checks no API shows).
    pub database_url: String,
    pub admin_token: String,
    /// The HS256 key this app checks customer tokens with.
    pub jwt_secret: String,
    pub client: reqwest::Client,
    pub backend: Backend,
    pub modules: Modules,
    server: actix_web::dev::ServerHandle,
    // Dropped last: the database outlives the server that uses it.
    _database: Option<TestDatabase>,
}

pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The HS256 key of customer tokens in test apps and test processes (`SHOP__AUTH__JWT_SECRET`).
pub const TEST_JWT_SECRET: &str = "test-jwt-secret-at-least-32-bytes-long";
/// The webhook secret test apps sign notifications with.
pub const WEBHOOK_SECRET: &str = "test-webhook-secret";

impl TestApp {
    /// Starts the app on a fresh database.
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, &[]).await
    }

    /// Like [`spawn`](Self::spawn), with extra settings (`SHOP__...` variables).
    pub async fn spawn_with(backend: Backend, settings: &[(&str, &str)]) -> Self {
        let database = TestDatabase::create(backend);
        Self::start(backend, &database.url(), Some(database), settings).await
    }

    /// Another instance on a database that a test already has (to run several instances on one database).
    pub async fn spawn_on(
        database: &TestDatabase,
        backend: Backend,
        settings: &[(&str, &str)],
    ) -> Self {
        Self::start(backend, &database.url(), None, settings).await
    }

    async fn start(
        backend: Backend,
        url: &str,
        database: Option<TestDatabase>,
        settings: &[(&str, &str)],
    ) -> Self {
        let mut env = vec![
            ("DATABASE_URL".to_owned(), url.to_owned()),
            ("SHOP__SERVER__BIND".to_owned(), "127.0.0.1:0".to_owned()),
            ("SHOP__AUTH__ADMIN_TOKEN".to_owned(), ADMIN_TOKEN.to_owned()),
            (
                "SHOP__AUTH__JWT_SECRET".to_owned(),
                TEST_JWT_SECRET.to_owned(),
            ),
            ("SHOP__DATABASE__POOL_SIZE".to_owned(), "8".to_owned()),
            ("SHOP__WORKER__POLL_MS".to_owned(), "100".to_owned()),
        ];
        env.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        // The JWT key as the settings load it: the last value given wins (a
        // test's own settings come after the default above).
        let jwt_secret = env
            .iter()
            .rev()
            .find(|(k, _)| k == "SHOP__AUTH__JWT_SECRET")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let settings = Settings::load_from(None, env).expect("test settings");
        if std::env::var("TEST_LOG").is_ok() {
            shop::telemetry::init(settings.log.format);
        }
        let db = startup::open_database(&settings).await.expect("database");
        let secrets = Secrets {
            admin_token: SecretString::from(ADMIN_TOKEN),
            webhook_secret: SecretString::from(WEBHOOK_SECRET),
            jwt_secret: Some(jwt_secret.as_str())
                .filter(|s| !s.is_empty())
                .map(SecretString::from),
        };
        let app = Application::build(&settings, db, &secrets)
            .await
            .expect("server");
        let modules = app.modules.clone();
        let address = format!("http://127.0.0.1:{}", app.port());
        let server = app.handle();
        tokio::spawn(app.run());
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // Idle connections are dropped before the server's keep-alive (5 s)
            // closes them, so that a request never goes out on a connection
            // the server is closing at that moment.
            .pool_idle_timeout(std::time::Duration::from_secs(2))
            .build()
            .expect("client");
        Self {
            address,
            database_url: url.to_owned(),
            admin_token: ADMIN_TOKEN.to_owned(),
            jwt_secret,
            client,
            backend,
            modules,
            server,
            _database: database,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// An unauthenticated GET (public routes, and 401 checks).
    pub async fn get(&self, path: &str) -> Response {
        Response::read(
            self.client
                .get(self.url(path))
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    /// A GET with the admin token (admins may read any order or payment).
    pub async fn admin_get(&self, path: &str) -> Response {
        self.send_as(&self.admin_token, reqwest::Method::GET, path, None)
            .await
    }

    /// A request that carries `token` (a customer's, the admin token, or one a test forged).
    pub fn request_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    /// Sends a request with `token` and, when given, a JSON body. (Usable
    /// from spawned tasks, which [`as_user`](Self::as_user)'s borrow is not.)
    pub async fn send_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self.request_as(token, method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request).await
    }

    /// A customer token for `user`, signed with this app's JWT key.
    pub fn token(&self, user: &str) -> String {
        mint_with(&self.jwt_secret, user)
    }

    /// A client that calls as the customer `user` (a bearer token on every request).
    pub fn as_user(&self, user: &str) -> UserClient<'_> {
        UserClient {
            app: self,
            user: user.to_owned(),
            token: self.token(user),
        }
    }

    /// A request with the admin token and a JSON body.
    pub async fn admin_send(&self, method: reqwest::Method, path: &str, body: &Value) -> Response {
        self.send_as(&self.admin_token, method, path, Some(body))
            .await
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Response {
        Response::read(request.send().await.expect("request")).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.send(self.client.post(self.url(path)).json(body)).await
    }

    /// The units in stock of a product, as the API shows them.
    pub async fn stock(&self, product_id: &str) -> i64 {
        let product = self.get(&format!("/api/v1/products/{product_id}")).await;
        product.json["stock"].as_i64().expect("stock")
    }

    /// Sends a gateway notification to `path`, signed with the test webhook secret at `timestamp`.
    pub async fn notify_at(&self, path: &str, body: &Value, timestamp: i64) -> Response {
        self.send(purchase::notification(
            &self.client,
            &self.url(path),
            body,
            timestamp,
        ))
        .await
    }

    /// Sends a gateway notification to `path`, signed now.
    pub async fn notify(&self, path: &str, body: &Value) -> Response {
        self.notify_at(path, body, chrono::Utc::now().timestamp())
            .await
    }

    /// Creates a product through the API (priced in CNY) and returns its JSON.
    pub async fn create_product(&self, name: &str, price: i64, stock: i64) -> Value {
        self.create_product_in(name, price, "CNY", stock).await
    }

    /// Creates a product priced in `currency` through the API and returns its JSON.
    pub async fn create_product_in(
        &self,
        name: &str,
        price: i64,
        currency: &str,
        stock: i64,
    ) -> Value {
        let request = self.caller(&self.admin_token).create_product(
            &self.address,
            name,
            price,
            currency,
            stock,
        );
        let response = self.send(request).await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
        response.json
    }

    /// The purchase flow's requests to this app, with `token`.
    pub fn caller<'a>(&'a self, token: &'a str) -> purchase::Caller<'a> {
        purchase::Caller::new(&self.client, token)
    }

    /// `user` orders `quantity` of `product`; the order must be created.
    pub async fn place_order(&self, user: &str, product: &str, quantity: i64) -> Placed {
        let token = self.token(user);
        let request = self
            .caller(&token)
            .place_order(&self.address, product, quantity);
        let order = self.send(request).await;
        assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
        Placed {
            product: product.to_owned(),
            order: order.json["orderId"].as_str().expect("orderId").to_owned(),
            amount: order.json["amount"].as_i64().expect("amount"),
            json: order.json,
        }
    }

    /// A new product (`stock` units at `price` in `currency`) and `user`'s
    /// order of `quantity` of it; both must be created.
    pub async fn order_new_product(
        &self,
        user: &str,
        price: i64,
        currency: &str,
        stock: i64,
        quantity: i64,
    ) -> Placed {
        let product = self
            .create_product_in("Phone", price, currency, stock)
            .await;
        let product = product["productId"].as_str().expect("productId");
        self.place_order(user, product, quantity).await
    }

    /// `user` opens a payment of `order` by `method` (on `channel` when given).
    pub async fn initiate(
        &self,
        user: &str,
        order: &str,
        method: &str,
        channel: Option<&str>,
    ) -> Response {
        let token = self.token(user);
        let request = self
            .caller(&token)
            .initiate(&self.address, order, method, channel);
        self.send(request).await
    }

    /// A new product (10 units at `price` CNY), `user`'s order of `quantity`
    /// of it and a payment of it by `method` (on `channel` when given); all
    /// three must be created. The order and the payment.
    pub async fn open_payment(
        &self,
        user: &str,
        price: i64,
        quantity: i64,
        method: &str,
        channel: Option<&str>,
    ) -> (Placed, Value) {
        let order = self
            .order_new_product(user, price, "CNY", 10, quantity)
            .await;
        let opened = self.initiate(user, &order.order, method, channel).await;
        opened.assert_status(StatusCode::CREATED);
        (order, opened.json)
    }

    /// `user` cancels `order`.
    pub async fn cancel(&self, user: &str, order: &str) -> Response {
        let token = self.token(user);
        self.send(self.caller(&token).cancel(&self.address, order))
            .await
    }

    /// An order's status, as its customer `user` reads it.
    pub async fn order_status(&self, user: &str, order: &str) -> Value {
        let token = self.token(user);
        let order = self.send(self.caller(&token).order(&self.address, order));
        order.await.json["status"].clone()
    }

    /// A payment, as its customer `user` reads it.
    pub async fn payment(&self, user: &str, payment: &str) -> Value {
        let token = self.token(user);
        self.send(self.caller(&token).payment(&self.address, payment))
            .await
            .json
    }

    /// A payment's status, as its customer `user` reads it.
    pub async fn payment_status(&self, user: &str, payment: &str) -> Value {
        self.payment(user, payment).await["status"].clone()
    }
}

/// An order a test placed ([`TestApp::place_order`]).
#[derive(Debug, Clone)]
pub struct Placed {
    /// The product it bought.
    pub product: String,
    /// Its id.
    pub order: String,
    pub amount: i64,
    /// The order as created.
    pub json: Value,
}

/// Requests to a [`TestApp`] as one customer: each carries `Authorization: Bearer <token>`.
pub struct UserClient<'a> {
    app: &'a TestApp,
    pub user: String,
    pub token: String,
}

impl UserClient<'_> {
    /// A request builder that already carries the customer's token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.app.request_as(&self.token, method, path)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Response {
        self.app.send(request).await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.send_json(reqwest::Method::POST, path, body).await
    }

    pub async fn send_json(&self, method: reqwest::Method, path: &str, body: &Value) -> Response {
        self.send(self.request(method, path).json(body)).await
    }
}

/// A customer token for `user`: HS256 under [`TEST_JWT_SECRET`], with `sub`,
/// `iat` and `exp` (an hour from now). Made with `jsonwebtoken` directly, not
/// with shop's code, so that the tests check that shop reads standard tokens.
pub fn mint(user: &str) -> String {
    mint_with(TEST_JWT_SECRET, user)
}

/// Like [`mint`], under another HS256 key.
pub fn mint_with(secret: &str, user: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": user, "iat": now, "exp": now + 3600});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("a token")
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop accepting at once; the database is dropped after.
        drop(self.server.stop(false));
    }
}

/// Signs as the gateway does, with the test webhook secret.
pub fn signer() -> domain_payment::signature::ShopSignature {
    domain_payment::signature::ShopSignature::new(SecretString::from(WEBHOOK_SECRET))
}

/// How long [`eventually`] waits: generous, since CI is a loaded 2-core machine.
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// Waits (up to [`DEADLINE`]) until `check` holds; background work is asynchronous.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_until(what, DEADLINE, check).await;
}

/// Waits until `check` holds, polling; fails the test once `timeout` has passed.
pub async fn wait_until<F, Fut>(what: &str, timeout: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Checks that `check` keeps holding for the whole of `quiet` (polling): for
/// "once, not twice" claims, after the first time has been waited for.
pub async fn holds_for<F, Fut>(what: &str, quiet: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = std::time::Instant::now() + quiet;
    loop {
        assert!(check().await, "{what} stopped holding within {quiet:?}");
        if std::time::Instant::now() >= end {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `name{labels} value` lines of a Prometheus text exposition.
pub fn parse_metrics(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of every series of `metric` whose labels include `label`.
pub fn sum(metrics: &std::collections::HashMap<String, f64>, metric: &str, label: &str) -> f64 {
    metrics
        .iter()
        .filter(|(series, _)| series.starts_with(&format!("{metric}{{")) && series.contains(label))
        .map(|(_, value)| value)
        .sum()
}

/// A response read to the end.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
    pub json: Value,
}

impl Response {
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.expect("body");
        let json = serde_json::from_str(&body).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            body,
            json,
        }
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts the status (the body in the message when it is another).
    pub fn assert_status(&self, status: StatusCode) {
        assert_eq!(self.status, status, "{}", self.body);
    }

    /// Asserts this is a problem+json of the given status and code.
    pub fn assert_problem(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(
            self.content_type(),
            "application/problem+json",
            "body: {}",
            self.body
        );
        assert_eq!(self.json["code"], code, "body: {}", self.body);
        assert_eq!(self.json["status"], status.as_u16(), "body: {}", self.body);
    }

    /// The fields a validation problem names.
    pub fn problem_fields(&self) -> Vec<String> {
        self.json["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| e["field"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Declares a test body once and runs it on every backend: `mod sqlite`,
/// `mod postgres` (ignored unless `SHOP_TEST_POSTGRES_URL` was set at build
/// time; see the crate's documentation) and, with the crate's `mysql`
/// feature, `mod mariadb` (ignored unless `SHOP_TEST_MYSQL_URL` was set). A
/// PostgreSQL test written by hand carries the same attribute:
/// `#[cfg_attr(not(shop_postgres), ignore = "set SHOP_TEST_POSTGRES_URL to run the PostgreSQL tests")]`,
/// a MariaDB one `#[cfg(feature = "mysql")]` and
/// `#[cfg_attr(not(shop_mysql), ignore = "set SHOP_TEST_MYSQL_URL to run the MariaDB tests")]`.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::TestApp::spawn($crate::Backend::Sqlite).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(shop_postgres), ignore = "set SHOP_TEST_POSTGRES_URL to run the PostgreSQL tests")]
                async fn $name() {
                    super::$name($crate::TestApp::spawn($crate::Backend::Postgres).await).await;
                }
            )*
        }
        #[cfg(feature = "mysql")]
        mod mariadb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(shop_mysql), ignore = "set SHOP_TEST_MYSQL_URL to run the MariaDB tests")]
                async fn $name() {
                    super::$name($crate::TestApp::spawn($crate::Backend::Mysql).await).await;
                }
            )*
        }
    };
}

/// Runs each `async fn name(backend: Backend)` on every backend, as
/// `name::sqlite`, `name::postgres` and (with the `mysql` feature)
/// `name::mariadb` (for tests that start their own app, fake provider or
/// process, where `on_every_backend!`'s ready-made `TestApp` does not fit).
/// `on_each_backend!(worker_threads = 4; name)` gives the runtime more threads.
#[macro_export]
macro_rules! on_each_backend {
    (worker_threads = $threads:tt; $($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
                async fn sqlite() {
                    super::$name($crate::Backend::Sqlite).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
                #[cfg_attr(not(shop_postgres), ignore = "set SHOP_TEST_POSTGRES_URL to run the PostgreSQL tests")]
                async fn postgres() {
                    super::$name($crate::Backend::Postgres).await;
                }
                #[cfg(feature = "mysql")]
                #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
                #[cfg_attr(not(shop_mysql), ignore = "set SHOP_TEST_MYSQL_URL to run the MariaDB tests")]
                async fn mariadb() {
                    super::$name($crate::Backend::Mysql).await;
                }
            }
        )*
    };
    ($($name:ident),* $(,)?) => {
        $crate::on_each_backend!(worker_threads = 2; $($name),*);
    };
}

/// [`on_each_backend!`] for tests that also need the message broker
/// (`SHOP_TEST_RABBITMQ_URL`): each is ignored unless the broker and its
/// database are configured.
#[macro_export]
macro_rules! on_each_backend_with_broker {
    (worker_threads = $threads:tt; $($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
                #[cfg_attr(not(shop_rabbitmq), ignore = "set SHOP_TEST_RABBITMQ_URL to run the RabbitMQ tests")]
                async fn sqlite() {
                    super::$name($crate::Backend::Sqlite).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
                #[cfg_attr(not(all(shop_postgres, shop_rabbitmq)), ignore = "set SHOP_TEST_POSTGRES_URL and SHOP_TEST_RABBITMQ_URL to run the PostgreSQL tests with RabbitMQ")]
                async fn postgres() {
                    super::$name($crate::Backend::Postgres).await;
                }
                #[cfg(feature = "mysql")]
                #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
                #[cfg_attr(not(all(shop_mysql, shop_rabbitmq)), ignore = "set SHOP_TEST_MYSQL_URL and SHOP_TEST_RABBITMQ_URL to run the MariaDB tests with RabbitMQ")]
                async fn mariadb() {
                    super::$name($crate::Backend::Mysql).await;
                }
            }
        )*
    };
    ($($name:ident),* $(,)?) => {
        $crate::on_each_backend_with_broker!(worker_threads = 2; $($name),*);
    };
}

/// A loopback port nothing listens on right now (bound, then let go), for a
/// process that must be told where another will listen before that one
/// starts (split mode's services, each knowing every other's URL).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// A `shop` process started by path, killed (SIGKILL) when dropped. Its
/// log (JSON lines on stderr) is kept for the test to read.
pub struct ShopProcess {
    child: std::process::Child,
    pub address: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ShopProcess {
    /// Starts `binary serve` on `database_url` and a free port, with extra settings.
    pub fn start(binary: &str, database_url: &str, settings: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        let mut command = std::process::Command::new(binary);
        command
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("SHOP__SERVER__BIND", "127.0.0.1:0")
            .env("SHOP__AUTH__ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SHOP__AUTH__JWT_SECRET", TEST_JWT_SECRET)
            .env("SHOP__PAYMENT__WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("SHOP__LOG__FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (key, value) in settings {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start shop");
        let stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
        let mut lines = stderr.lines();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut port = None;
        for line in lines.by_ref() {
            let line = line.expect("log line");
            log.lock().expect("log").push(line.clone());
            let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if entry["message"] == "listening" {
                port = entry["port"].as_u64();
                break;
            }
        }
        // Keep reading the log, as a terminal would; show it when asked.
        let show = std::env::var("TEST_LOG").is_ok();
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if show {
                    eprintln!("{line}");
                }
                if let Ok(mut kept) = kept.lock() {
                    kept.push(line);
                }
            }
        });
        let Some(port) = port else {
            // It exited (or closed its log) before listening: say why.
            let _ = child.kill();
            let _ = child.wait();
            let log = log.lock().map(|log| log.join("\n")).unwrap_or_default();
            if log.contains(shared_kernel::storage::db::MYSQL_NOT_BUILT) {
                panic!(
                    "{binary} was built without the mysql feature: build the tests with \
                     `--features mysql` (cargo test -p shop-tests --features mysql), and do not \
                     run a build without it in the same target directory at the same time \
                     (cargo puts both binaries at this one path)\n{log}"
                );
            }
            panic!("{binary} stopped before it listened; its log:\n{log}");
        };
        Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }

    /// Kills the process at once, as a power cut would (SIGKILL).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM, as systemd does to stop a service.
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
    }

    /// Waits (up to `timeout`) for the process to exit; returns whether it exited cleanly.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    }
}

impl Drop for ShopProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a `SELECT COUNT(*) AS n ...` (or any query of one integer `n`) on a
/// database directly. The query is written in the dialect PostgreSQL and
/// SQLite share; on MySQL, whose `CAST` has no `BIGINT` (and whose `SUM`
/// answers a DECIMAL that needs one), `AS BIGINT)` is read as `AS SIGNED)`.
pub fn count(database_url: &str, sql: &str) -> i64 {
    use diesel::QueryableByName;
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let db = connect(database_url);
    let mut conn = db.get_blocking().expect("connection");
    let sql = match db.backend() {
        shared_kernel::storage::db::Backend::Mysql => sql.replace(" AS BIGINT)", " AS SIGNED)"),
        shared_kernel::storage::db::Backend::Sqlite
        | shared_kernel::storage::db::Backend::Postgres => sql.to_owned(),
    };
    let row: Count = diesel::sql_query(sql)
        .get_result(&mut *conn)
        .expect("count query");
    row.n
}

/// A pool of one connection to a test's database, for reading it directly.
fn connect(database_url: &str) -> shared_kernel::storage::db::Db {
    let url = shared_kernel::storage::db::DatabaseUrl::parse(database_url).expect("url");
    shared_kernel::storage::db::Db::connect(
        &url,
        &shared_kernel::storage::db::PoolOptions {
            max_size: 1,
            ..Default::default()
        },
    )
    .expect("connect")
}

/// Runs a query of one text column `n` on a database directly; its rows.
pub fn rows(database_url: &str, sql: &str) -> Vec<String> {
    use diesel::QueryableByName;
    #[derive(QueryableByName)]
    struct Text {
        #[diesel(sql_type = diesel::sql_types::Text)]
        n: String,
    }
    let mut conn = connect(database_url).get_blocking().expect("connection");
    let found: Vec<Text> = diesel::sql_query(sql).load(&mut *conn).expect("text query");
    found.into_iter().map(|row| row.n).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_names_are_swapped_in_urls() {
        assert_eq!(
            super::with_database("postgres://u@h:5432/test", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            super::with_database("postgres://u@h/test?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(
            super::with_database("postgres://u@h", "x"),
            "postgres://u@h/x"
        );
    }
}

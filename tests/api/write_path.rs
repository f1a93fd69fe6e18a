//! The write path under load: group commit (a unit that fails inside a shared
//! commit rolls back alone), a mix of orders, cancels, payments and expiries
//! that must never answer 5xx nor lose a unit of stock, and expiry that keeps
//! up with hundreds of orders due at once.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shared_kernel::storage::db::{AnyConnection, Db, DbError};
use shop_tests::{Backend, StatusCode, TestApp, Value, count, eventually, json, wait_until};

fn insert_product_sql(id: &str) -> String {
    format!(
        "INSERT INTO products (id, name, description, price_minor, currency, stock, created_at, updated_at) \
         VALUES ('{id}', 'unit {id}', '', 1, 'CNY', 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
    )
}

/// Starts a write unit that does `work`, then holds the writer (the only
/// one, in these tests) until the returned sender is sent to (30 s at most),
/// so that the units queued meanwhile share the next commit. Returns once
/// the unit holds the writer.
async fn hold_the_writer(
    db: &Db,
    mut work: impl FnMut(&mut AnyConnection) -> Result<(), DbError> + Send + 'static,
) -> (
    mpsc::Sender<()>,
    tokio::task::JoinHandle<Result<(), DbError>>,
) {
    let (release, gate) = mpsc::channel::<()>();
    let (entered, gate_entered) = mpsc::channel::<()>();
    let gate_unit = tokio::spawn({
        let db = db.clone();
        let mut gate = Some(gate);
        async move {
            db.write(move |conn| {
                let _ = entered.send(());
                if let Some(gate) = gate.take() {
                    let _ = gate.recv_timeout(Duration::from_secs(30));
                }
                work(conn)
            })
            .await
        }
    });
    tokio::task::spawn_blocking(move || gate_entered.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("the gate unit holds the writer");
    (release, gate_unit)
}

/// Forty units queue behind a unit that holds the only writer, so that they
/// share the next commit. Every fifth fails after writing (its own error),
/// every fifth but one hits a primary key (a database error, which on
/// PostgreSQL aborts the transaction up to the unit's savepoint). Those roll
/// back alone; the other 24 commit, all in one commit.
async fn a_unit_that_fails_inside_a_shared_commit_rolls_back_alone(backend: Backend) {
    // No background work: the only writes are the test's.
    let settings = [
        ("SHOP__DATABASE__WRITERS", "1"),
        ("SHOP__WORKER__ENABLED", "false"),
    ];
    let app = TestApp::spawn_with(backend, &settings).await;
    let db = app.modules.db.clone();
    let (release, gate_unit) = hold_the_writer(&db, |conn| {
        diesel::RunQueryDsl::execute(diesel::sql_query(insert_product_sql("gate")), conn)
            .map(drop)
            .map_err(DbError::from)
    })
    .await;
    let before = db.write_stats();

    let units: Vec<_> = (0..40)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                db.write(move |conn| -> Result<(), anyhow::Error> {
                    let id = if i % 5 == 1 {
                        "gate".to_owned()
                    } else {
                        format!("unit-{i}")
                    };
                    diesel::RunQueryDsl::execute(diesel::sql_query(insert_product_sql(&id)), conn)?;
                    if i % 5 == 0 {
                        anyhow::bail!("unit {i} refuses after writing");
                    }
                    Ok(())
                })
                .await
            })
        })
        .collect();
    // Every unit is queued behind the gate before it opens.
    let deadline = Instant::now() + Duration::from_secs(10);
    while db.write_queue_len() < 40 {
        assert!(Instant::now() < deadline, "the units never queued");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    release.send(()).unwrap();
    gate_unit.await.unwrap().unwrap();
    let mut ok = 0;
    for (i, unit) in units.into_iter().enumerate() {
        let outcome = unit.await.unwrap();
        match i % 5 {
            0 => assert!(
                outcome
                    .as_ref()
                    .is_err_and(|e| e.to_string().contains("refuses")),
                "unit {i}: {outcome:?}"
            ),
            1 => assert!(
                outcome.is_err(),
                "unit {i} broke a primary key yet committed"
            ),
            _ => {
                assert!(outcome.is_ok(), "unit {i}: {outcome:?}");
                ok += 1;
            }
        }
    }
    let after = db.write_stats();
    eprintln!("{backend:?}: {before:?} -> {after:?}");
    assert_eq!(ok, 24);
    assert_eq!(
        after.commits - before.commits,
        2,
        "the gate's commit, then one for the 40 units: {before:?} -> {after:?}"
    );
    assert_eq!(
        after.committed - before.committed,
        25,
        "the gate and 24 units"
    );
    assert_eq!(after.failed - before.failed, 16);
    assert_eq!(
        count(
            &app.database_url,
            "SELECT COUNT(*) AS n FROM products WHERE id LIKE 'unit-%'"
        ),
        24,
        "exactly the units that succeeded are stored"
    );
    for i in (0..40).filter(|i| i % 5 == 0) {
        assert_eq!(
            count(
                &app.database_url,
                &format!("SELECT COUNT(*) AS n FROM products WHERE id = 'unit-{i}'")
            ),
            0,
            "the failed unit {i} left its write behind"
        );
    }
}

shop_tests::on_each_backend!(a_unit_that_fails_inside_a_shared_commit_rolls_back_alone);

/// On MySQL a deadlock rolls back the writer's whole transaction, its
/// savepoints with it (PostgreSQL and SQLite undo only the statement). Three
/// units share a batch behind a gate: the first refuses (so the batch runs
/// again, a savepoint per unit), the second adds 1 to a product's stock, the
/// third deadlocks with another session, which InnoDB lets win (it has
/// written more). The second unit's addition was rolled back with the
/// deadlock: it must run again, never be answered as committed without it.
#[cfg(feature = "mysql")]
async fn a_deadlock_inside_a_shared_batch_runs_the_batch_again() {
    let backend = Backend::Mysql;
    use diesel::Connection as _;
    use diesel::connection::SimpleConnection as _;

    let settings = [
        ("SHOP__DATABASE__WRITERS", "1"),
        ("SHOP__WORKER__ENABLED", "false"),
    ];
    let app = TestApp::spawn_with(backend, &settings).await;
    let db = app.modules.db.clone();
    let url = app.database_url.clone();
    db.write(|conn| {
        for id in ["dl-a", "dl-x", "dl-q"] {
            diesel::RunQueryDsl::execute(diesel::sql_query(insert_product_sql(id)), &mut *conn)?;
        }
        Ok::<_, DbError>(())
    })
    .await
    .unwrap();

    // The other session: heavy (500 rows written), holding dl-q.
    let (holds, other_holds) = mpsc::channel::<()>();
    let (go, other_go) = mpsc::channel::<()>();
    let other = std::thread::spawn({
        let url = url.clone();
        move || -> Result<(), String> {
            let mut conn =
                diesel::mysql::MysqlConnection::establish(&url).map_err(|e| e.to_string())?;
            conn.batch_execute(
                "SET SESSION innodb_lock_wait_timeout = 30;
                 CREATE TABLE IF NOT EXISTS deadlock_weight (n INTEGER NOT NULL);
                 BEGIN;
                 INSERT INTO deadlock_weight (n)
                     WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 500)
                     SELECT n FROM s;
                 UPDATE products SET stock = stock + 0 WHERE id = 'dl-q';",
            )
            .map_err(|e| e.to_string())?;
            holds.send(()).map_err(|e| e.to_string())?;
            other_go
                .recv_timeout(Duration::from_secs(30))
                .map_err(|e| e.to_string())?;
            // Waits for the writer's lock on dl-x while the writer waits for dl-q.
            conn.batch_execute("UPDATE products SET stock = stock + 0 WHERE id = 'dl-x'; COMMIT;")
                .map_err(|e| e.to_string())
        }
    });
    let held =
        tokio::task::spawn_blocking(move || other_holds.recv_timeout(Duration::from_secs(10)))
            .await
            .unwrap();
    if held.is_err() {
        panic!("the other session could not take dl-q: {:?}", other.join());
    }

    // The gate holds the only writer while the three units queue, in order.
    // Once released, it lets the writer wait for a row lock for up to 30 s
    // instead of shop's 1 s, so that the watcher below closes the cycle in
    // time however busy the machine (a lock wait that timed out instead
    // would be another test).
    let (release, gate_unit) = hold_the_writer(&db, |conn| {
        diesel::RunQueryDsl::execute(
            diesel::sql_query("SET SESSION innodb_lock_wait_timeout = 30"),
            conn,
        )
        .map(drop)
        .map_err(DbError::from)
    })
    .await;
    let add = |id: &'static str| {
        move |conn: &mut shared_kernel::storage::db::AnyConnection| {
            diesel::RunQueryDsl::execute(
                diesel::sql_query(format!(
                    "UPDATE products SET stock = stock + 1 WHERE id = '{id}'"
                )),
                conn,
            )
            .map(drop)
            .map_err(anyhow::Error::from)
        }
    };
    let queued = |n: usize| {
        let db = db.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while db.write_queue_len() < n {
                assert!(Instant::now() < deadline, "{n} units never queued");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    // The writer waits for dl-q (held by the other session): close the cycle
    // from a connection of its own that watches for that wait (on this
    // test's database: other tests share the server).
    let watcher = {
        let url = url.clone();
        let database = database_name(&url);
        std::thread::spawn(move || -> Result<(), String> {
            #[derive(diesel::QueryableByName)]
            struct Waiting {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            let mut conn =
                diesel::mysql::MysqlConnection::establish(&url).map_err(|e| e.to_string())?;
            let deadline = Instant::now() + Duration::from_secs(25);
            loop {
                let waiting: Waiting = diesel::RunQueryDsl::get_result(
                    diesel::sql_query(format!(
                        "SELECT COUNT(*) AS n FROM information_schema.innodb_trx t \
                         JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id \
                         WHERE t.trx_state = 'LOCK WAIT' AND p.DB = '{database}'"
                    )),
                    &mut conn,
                )
                .map_err(|e| e.to_string())?;
                if waiting.n > 0 {
                    return go.send(()).map_err(|e| e.to_string());
                }
                if Instant::now() > deadline {
                    return Err("the writer never waited for dl-q".into());
                }
                // InnoDB refreshes what INNODB_TRX shows only when it was
                // last read more than 100 ms ago: reading more often sees nothing new.
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };
    let refusing = tokio::spawn({
        let db = db.clone();
        async move {
            db.write(|_conn| -> Result<(), anyhow::Error> { anyhow::bail!("refused") })
                .await
        }
    });
    queued(1).await;
    let adding = tokio::spawn({
        let db = db.clone();
        let add_a = add("dl-a");
        async move { db.write(move |conn| add_a(conn)).await }
    });
    queued(2).await;
    let deadlocking = tokio::spawn({
        let db = db.clone();
        let (add_x, add_q) = (add("dl-x"), add("dl-q"));
        async move {
            db.write(move |conn| {
                add_x(conn)?;
                add_q(conn)
            })
            .await
        }
    });
    queued(3).await;
    let retried_before = db.write_stats().retried;
    let released_at = Instant::now();
    release.send(()).unwrap();
    gate_unit.await.unwrap().unwrap();

    let watched = tokio::task::spawn_blocking(move || watcher.join())
        .await
        .unwrap()
        .expect("the watcher's thread");
    assert_eq!(watched, Ok(()));
    let other = tokio::task::spawn_blocking(move || other.join())
        .await
        .unwrap()
        .expect("the other session's thread");
    assert_eq!(
        other,
        Ok(()),
        "InnoDB chose the writer, the lighter transaction, as the victim"
    );
    // The writer lost a race and ran its batch again: with its lock waits
    // allowed 30 s, within this test's time that race is the deadlock (and
    // the counts are this app's writer's, not the server's).
    assert!(
        db.write_stats().retried > retried_before,
        "the deadlock landed on the writer's batch, which ran again: {:?}",
        db.write_stats()
    );
    assert!(
        released_at.elapsed() < Duration::from_secs(25),
        "the cycle ended at once (a deadlock), not by a lock wait timing out"
    );

    assert!(refusing.await.unwrap().is_err());
    adding.await.unwrap().expect("the adding unit is answered");
    deadlocking
        .await
        .unwrap()
        .expect("the deadlocked unit runs again and succeeds");
    for id in ["dl-a", "dl-x", "dl-q"] {
        assert_eq!(
            count(
                &url,
                &format!("SELECT stock AS n FROM products WHERE id = '{id}'")
            ),
            2,
            "{id}: answered as written, so its +1 must be there, once"
        );
    }
}

/// The database a URL names (`shop_test_<uuid>`).
#[cfg(feature = "mysql")]
fn database_name(url: &str) -> String {
    let path = url.split('?').next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or_default().to_owned()
}

/// MySQL only: PostgreSQL and SQLite keep the savepoint when a statement loses a race.
#[cfg(feature = "mysql")]
mod mariadb {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        not(shop_mysql),
        ignore = "set SHOP_TEST_MYSQL_URL to run the MariaDB tests"
    )]
    async fn a_deadlock_inside_a_shared_batch_runs_the_batch_again() {
        super::a_deadlock_inside_a_shared_batch_runs_the_batch_again().await;
    }
}

/// A small deterministic generator, so that a failure can be replayed.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % sides
    }
}

const INITIAL_STOCK: i64 = 100_000;

/// 16 clients at once, over 4 shared products: multi-line orders (lines in
/// random product order), each then cancelled, paid, failed then left, or
/// left to expire, while the expiry sweep and the event handlers run. No
/// answer is a 5xx; once everything settled, each product's stock plus the
/// units of its paid orders is its initial stock.
async fn mixed_load_never_answers_5xx_and_loses_no_stock(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("SHOP__ORDER__PAYMENT_TIMEOUT_SECS", "2"),
            ("SHOP__ORDER__EXPIRY_SWEEP_MS", "100"),
        ],
    )
    .await;
    let app = Arc::new(app);
    let mut products = Vec::new();
    for n in 0..4 {
        let product = app
            .create_product(&format!("Shared {n}"), 100 + n, INITIAL_STOCK)
            .await;
        products.push(product["productId"].as_str().unwrap().to_owned());
    }
    let products = Arc::new(products);
    let clients: Vec<_> = (0..16u64)
        .map(|client| {
            let (app, products) = (app.clone(), products.clone());
            tokio::spawn(async move {
                let user = app.as_user(&format!("mixed-{client}"));
                let mut dice = Dice(client + 1);
                let mut statuses = Vec::new();
                for round in 0..12 {
                    let lines = 2 + dice.roll(3) as usize;
                    let start = dice.roll(4) as usize;
                    let items: Vec<Value> = (0..lines.min(4))
                        .map(|k| {
                            json!({"productId": products[(start + k * 3) % 4], "quantity": 1 + dice.roll(3)})
                        })
                        .collect();
                    let body = json!({"userId": format!("mixed-{client}"), "items": items});
                    let placed = user.post_json("/api/v1/orders", &body).await;
                    statuses.push((format!("createOrder {round}"), placed.status, placed.body.clone()));
                    if placed.status != StatusCode::CREATED {
                        continue;
                    }
                    let order = placed.json["orderId"].as_str().unwrap().to_owned();
                    let amount = placed.json["amount"].as_i64().unwrap();
                    match dice.roll(4) {
                        0 => {
                            let cancelled = user
                                .post_json(&format!("/api/v1/orders/{order}/cancel"), &json!({}))
                                .await;
                            statuses.push(("cancelOrder".into(), cancelled.status, cancelled.body));
                        }
                        1 | 2 => {
                            let opened = user
                                .post_json(
                                    "/api/v1/payments",
                                    &json!({"orderId": order, "paymentMethod": "alipay"}),
                                )
                                .await;
                            statuses.push(("initiatePayment".into(), opened.status, opened.body.clone()));
                            if opened.status == StatusCode::CREATED {
                                let outcome = if dice.roll(3) == 0 { "failure" } else { "success" };
                                let notified = app
                                    .notify(
                                        "/api/v1/payments/notify",
                                        &json!({"paymentId": opened.json["paymentId"], "paymentStatus": outcome, "amount": amount, "currency": "CNY", "transactionId": format!("tx-{client}-{round}")}),
                                    )
                                    .await;
                                statuses.push(("notify".into(), notified.status, notified.body));
                            }
                        }
                        _ => {} // left to expire
                    }
                }
                statuses
            })
        })
        .collect();
    let mut answered = 0;
    for client in clients {
        for (what, status, body) in client.await.unwrap() {
            assert!(status.as_u16() < 500, "{what} answered {status}: {body}");
            answered += 1;
        }
    }
    assert!(answered >= 16 * 12, "every client ran");
    eprintln!(
        "{:?}: {answered} answers, writes {:?}",
        app.backend,
        app.modules.db.write_stats()
    );

    let url = app.database_url.clone();
    eventually("every order is paid or cancelled", || {
        let url = url.clone();
        async move {
            count(
                &url,
                "SELECT COUNT(*) AS n FROM orders WHERE status = 'pending_payment'",
            ) == 0
        }
    })
    .await;
    eventually("every event is handled", || {
        let url = url.clone();
        async move {
            count(
                &url,
                "SELECT COUNT(*) AS n FROM event_deliveries WHERE handled_at IS NULL",
            ) == 0
        }
    })
    .await;
    let paid = count(
        &url,
        "SELECT COUNT(*) AS n FROM orders WHERE status = 'paid'",
    );
    let cancelled = count(
        &url,
        "SELECT COUNT(*) AS n FROM orders WHERE status = 'cancelled'",
    );
    assert!(
        paid > 0 && cancelled > 0,
        "the mix paid {paid} and cancelled {cancelled} orders"
    );
    for product in products.iter() {
        let sold = count(
            &url,
            &format!(
                "SELECT CAST(COALESCE(SUM(l.quantity), 0) AS BIGINT) AS n FROM order_lines l JOIN orders o ON o.id = l.order_id \
                 WHERE o.status = 'paid' AND l.product_id = '{product}'"
            ),
        );
        assert_eq!(
            app.stock(product).await + sold,
            INITIAL_STOCK,
            "product {product}: stock + units sold = initial stock"
        );
    }
    // Delivery is at least once, not at the first attempt: an attempt whose
    // handler fails (its writes undone with it) is tried again after a
    // backoff. What the code promises is that every event is, in the end,
    // handled once: none is left failing, and the stock above adds up.
    let retried = count(
        &url,
        "SELECT COUNT(*) AS n FROM event_deliveries WHERE attempts > 1",
    );
    eprintln!(
        "{:?}: {retried} deliveries took more than one attempt",
        app.backend
    );
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) AS n FROM event_deliveries WHERE handled_at IS NULL OR last_error IS NOT NULL"
        ),
        0,
        "every event was handled in the end, none is left failing"
    );
}

shop_tests::on_each_backend!(worker_threads = 4; mixed_load_never_answers_5xx_and_loses_no_stock);

/// 300 orders placed at once, all due within the same second or so: each is
/// cancelled as expired within seconds of its `expiresAt` (the sweep cancels
/// them 500 to a unit and runs every 100 ms here, so on an idle machine
/// within a fraction of a second; the test allows 10 s, which a loaded
/// machine cannot miss and a sweep taking them one or a few at a time, 300
/// runs of 100 ms, would), and all their stock is back.
async fn hundreds_of_orders_due_at_once_all_expire_within_seconds(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("SHOP__ORDER__PAYMENT_TIMEOUT_SECS", "5"),
            ("SHOP__ORDER__EXPIRY_SWEEP_MS", "100"),
        ],
    )
    .await;
    let app = Arc::new(app);
    let product = app.create_product("Expiring", 100, 1_000).await["productId"]
        .as_str()
        .unwrap()
        .to_owned();
    let orders: Vec<_> = (0..300)
        .map(|i| {
            let (app, product) = (app.clone(), product.clone());
            let user = format!("expiring-{i}");
            let token = app.token(&user);
            tokio::spawn(async move {
                let body =
                    json!({"userId": user, "items": [{"productId": product, "quantity": 1}]});
                app.send_as(&token, reqwest::Method::POST, "/api/v1/orders", Some(&body))
                    .await
            })
        })
        .collect();
    for order in orders {
        let placed = order.await.unwrap();
        assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    }
    let url = app.database_url.clone();
    wait_until("every order expired", Duration::from_secs(60), || {
        let url = url.clone();
        async move {
            count(
                &url,
                "SELECT COUNT(*) AS n FROM orders WHERE status = 'pending_payment'",
            ) == 0
        }
    })
    .await;
    eventually("all the stock is back", || {
        let (app, product) = (app.clone(), product.clone());
        async move { app.stock(&product).await == 1_000 }
    })
    .await;
    // Lateness as the database recorded it, in milliseconds: cancelled_at - expires_at.
    let lateness_ms = match app.backend {
        Backend::Sqlite => {
            "CAST((julianday(cancelled_at) - julianday(expires_at)) * 86400000 AS INTEGER)"
        }
        Backend::Postgres => {
            "CAST(EXTRACT(EPOCH FROM (cancelled_at - expires_at)) * 1000 AS BIGINT)"
        }
        #[cfg(feature = "mysql")]
        Backend::Mysql => "TIMESTAMPDIFF(MICROSECOND, expires_at, cancelled_at) DIV 1000",
    };
    let latest = count(
        &url,
        &format!("SELECT CAST(COALESCE(MAX({lateness_ms}), 0) AS BIGINT) AS n FROM orders"),
    );
    eprintln!(
        "{:?}: the latest of 300 expiries was cancelled {latest} ms after its expiresAt",
        app.backend
    );
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) AS n FROM orders WHERE cancel_reason = 'expired'"
        ),
        300
    );
    assert!(
        latest <= 10_000,
        "an order was cancelled {latest} ms after it expired"
    );
}

shop_tests::on_each_backend!(worker_threads = 4; hundreds_of_orders_due_at_once_all_expire_within_seconds);

/// A product id no product can have (a NUL byte, which PostgreSQL text
/// cannot hold, or an overlong one) is an unknown product, 404, on every
/// backend: it never reaches the database.
async fn impossible_product_ids_are_unknown_products(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let real = app.create_product("Real", 100, 5).await["productId"]
        .as_str()
        .unwrap()
        .to_owned();
    for impossible in ["tx\u{0}", &"x".repeat(65)] {
        let body = json!({"userId": "u1", "items": [{"productId": real, "quantity": 1}, {"productId": impossible, "quantity": 1}]});
        let placed = app.as_user("u1").post_json("/api/v1/orders", &body).await;
        placed.assert_problem(StatusCode::NOT_FOUND, "product_not_found");
        assert_eq!(placed.problem_fields(), ["items[1].productId"]);
    }
    assert_eq!(app.stock(&real).await, 5, "nothing was reserved");
}

shop_tests::on_each_backend!(impossible_product_ids_are_unknown_products);

/// What the seam promises of every MySQL connection (the table at the top of
/// shared-kernel/src/storage/db.rs), read back from the server on a pooled
/// connection and on a writer's: read committed, strict modes, UTC, utf8mb4;
/// a writer gives up on a row lock after 1 s; and strict means a value that
/// does not fit is refused, never truncated. (MariaDB's names: `tx_isolation`.)
#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(shop_mysql),
    ignore = "set SHOP_TEST_MYSQL_URL to run the MariaDB tests"
)]
async fn connections_are_set_as_the_seam_says_mariadb() {
    use diesel::sql_types::Text;
    #[derive(diesel::QueryableByName, Debug)]
    struct Session {
        #[diesel(sql_type = Text)]
        isolation: String,
        #[diesel(sql_type = Text)]
        sql_mode: String,
        #[diesel(sql_type = Text)]
        time_zone: String,
        #[diesel(sql_type = Text)]
        charset: String,
        #[diesel(sql_type = Text)]
        lock_wait: String,
    }
    const READ: &str = "SELECT CAST(@@SESSION.tx_isolation AS CHAR) AS isolation, \
        CAST(@@SESSION.sql_mode AS CHAR) AS sql_mode, CAST(@@SESSION.time_zone AS CHAR) AS time_zone, \
        CAST(@@SESSION.character_set_connection AS CHAR) AS charset, \
        CAST(@@SESSION.innodb_lock_wait_timeout AS CHAR) AS lock_wait";
    let app = TestApp::spawn_with(Backend::Mysql, &[("SHOP__WORKER__ENABLED", "false")]).await;
    let db = app.modules.db.clone();
    let pooled: Session = db
        .run(|conn| {
            diesel::RunQueryDsl::get_result(diesel::sql_query(READ), conn).map_err(DbError::from)
        })
        .await
        .unwrap();
    let writer: Session = db
        .write(|conn| {
            diesel::RunQueryDsl::get_result(diesel::sql_query(READ), conn).map_err(DbError::from)
        })
        .await
        .unwrap();
    for (which, session) in [("pooled", &pooled), ("writer", &writer)] {
        assert_eq!(session.isolation, "READ-COMMITTED", "{which}: {session:?}");
        for mode in ["STRICT_ALL_TABLES", "NO_ZERO_DATE", "ONLY_FULL_GROUP_BY"] {
            assert!(
                session.sql_mode.split(',').any(|m| m == mode),
                "{which} lacks {mode}: {session:?}"
            );
        }
        assert_eq!(session.time_zone, "+00:00", "{which}: {session:?}");
        assert_eq!(session.charset, "utf8mb4", "{which}: {session:?}");
    }
    assert_eq!(writer.lock_wait, "1", "{writer:?}");
    let refused = db
        .write(|conn| {
            diesel::RunQueryDsl::execute(
                diesel::sql_query(
                    "INSERT INTO products (id, name, description, price_minor, currency, stock, created_at, updated_at) \
                     VALUES ('strict', 'n', '', '12abc', 'CNY', 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
                ),
                conn,
            )
            .map_err(DbError::from)
        })
        .await;
    assert!(
        refused.is_err(),
        "'12abc' was stored as a price: {refused:?}"
    );
    assert_eq!(
        count(
            &app.database_url,
            "SELECT COUNT(*) AS n FROM products WHERE id = 'strict'"
        ),
        0
    );
}

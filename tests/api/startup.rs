//! What `shop serve` says when it starts, and what it refuses before it
//! touches anything.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shop_tests::{Backend, ShopProcess, TestDatabase};

const SHOP: &str = env!("CARGO_BIN_EXE_shop-e2e");

/// Runs `shop` with `args` and `env` until it exits or `within` passes; returns whether it exited, with its output.
pub(crate) fn run(args: &[&str], env: &[(&str, &str)], within: Duration) -> (bool, String) {
    let mut command = Command::new(SHOP);
    command
        .args(args)
        .env("SHOP__SERVER__BIND", "127.0.0.1:0")
        .env("SHOP__LOG__FORMAT", "json")
        .env_remove("SHOP__AUTH__ADMIN_TOKEN")
        .env_remove("SHOP__AUTH__JWT_SECRET")
        .env_remove("SHOP__PAYMENT__WEBHOOK_SECRET")
        // What an operator sees by default: no backtrace under the error.
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("start shop");
    let deadline = Instant::now() + within;
    let exited = loop {
        if let Ok(Some(_)) = child.try_wait() {
            break true;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut output = String::new();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read>),
    ]
    .into_iter()
    .flatten()
    {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            output.push_str(&line);
            output.push('\n');
        }
    }
    (exited, output)
}

#[test]
fn secrets_given_in_the_environment_are_never_echoed() {
    let database = TestDatabase::create(Backend::Sqlite);
    let admin = "an-admin-token-set-by-the-operator";
    let jwt = "a-customer-token-secret-set-by-the-operator";
    let webhook = "a-webhook-secret-set-by-the-operator";
    let (_, output) = run(
        &["serve", "--demo"],
        &[
            ("DATABASE_URL", &database.url()),
            ("SHOP__AUTH__ADMIN_TOKEN", admin),
            ("SHOP__AUTH__JWT_SECRET", jwt),
            ("SHOP__PAYMENT__WEBHOOK_SECRET", webhook),
        ],
        Duration::from_secs(5),
    );
    assert!(
        output.contains("Swagger UI: "),
        "the demo started: {output}"
    );
    assert!(
        output.contains("Customer token for demo-customer"),
        "{output}"
    );
    for secret in [admin, jwt, webhook] {
        assert!(!output.contains(secret), "{secret} was echoed:\n{output}");
    }
    // And what shop generates itself is printed once, so that it can be used.
    let (_, generated) = run(
        &["serve"],
        &[("DATABASE_URL", &database.url())],
        Duration::from_secs(5),
    );
    assert_eq!(
        generated
            .matches("Admin token (generated for this run")
            .count(),
        1,
        "{generated}"
    );
}

#[test]
fn a_bad_bind_address_is_refused_before_the_database_is_opened() {
    let database = TestDatabase::create(Backend::Sqlite);
    let url = database.url();
    let file = url.trim_start_matches("sqlite://").to_owned();
    let (exited, output) = run(
        &["serve"],
        &[
            ("DATABASE_URL", &url),
            ("SHOP__SERVER__BIND", "127.0.0.1:99999"),
        ],
        Duration::from_secs(10),
    );
    assert!(exited, "shop stopped: {output}");
    assert!(output.contains("SHOP__SERVER__BIND"), "{output}");
    assert!(
        !std::path::Path::new(&file).exists(),
        "the database was opened first:\n{output}"
    );
    assert!(!output.contains("database ready"), "{output}");
}

/// `shop serve` on a database the server does not have: one short error that says so.
fn a_missing_database_is_one_clear_error(admin_url: &str, says: &str) {
    let missing = shop_tests::with_database(
        admin_url,
        &format!("shop_missing_{}", uuid::Uuid::now_v7().simple()),
    );
    let (exited, output) = run(
        &["serve"],
        &[("DATABASE_URL", &missing)],
        Duration::from_secs(30),
    );
    assert!(exited, "shop stopped: {output}");
    assert!(output.contains(says), "{output}");
    let lines = output.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(
        lines <= 3,
        "{lines} lines for one missing database:\n{output}"
    );
}

#[test]
#[cfg_attr(
    not(shop_postgres),
    ignore = "set SHOP_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
fn a_missing_database_is_one_clear_error_postgres() {
    let admin_url = std::env::var("SHOP_TEST_POSTGRES_URL").expect("SHOP_TEST_POSTGRES_URL");
    a_missing_database_is_one_clear_error(&admin_url, "does not exist");
}

#[test]
#[cfg(feature = "mysql")]
#[cfg_attr(
    not(shop_mysql),
    ignore = "set SHOP_TEST_MYSQL_URL to run the MariaDB tests"
)]
fn a_missing_database_is_one_clear_error_mariadb() {
    a_missing_database_is_one_clear_error(&shop_tests::mysql_admin_url(), "Unknown database");
}

/// A build without the `mysql` feature, given a `mysql://` URL, says how to
/// get one that speaks it (and stops at once, touching nothing).
#[test]
#[cfg(not(feature = "mysql"))]
fn a_build_without_mysql_says_how_to_get_one() {
    let (exited, output) = run(
        &["serve"],
        &[(
            "DATABASE_URL",
            "mysql://shop:secret-password@127.0.0.1:1/shop",
        )],
        Duration::from_secs(30),
    );
    assert!(exited, "shop stopped: {output}");
    assert!(
        output.contains(shared_kernel::storage::db::MYSQL_NOT_BUILT),
        "{output}"
    );
    assert!(!output.contains("secret-password"), "{output}");
}

fn event_delivery_is_announced_once(backend: Backend, lanes: u64) {
    let database = TestDatabase::create(backend);
    let shop = ShopProcess::start(SHOP, &database.url(), &[]);
    let announcements = || -> Vec<serde_json::Value> {
        shop.log()
            .iter()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|entry| entry["message"] == "event delivery started")
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while announcements().is_empty() {
        assert!(
            Instant::now() < deadline,
            "event delivery was never announced: {:#?}",
            shop.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The lanes start right after the announcement: one announcing itself
    // (as each of them once did) would show within this quiet window.
    let quiet = Instant::now() + Duration::from_secs(3);
    while Instant::now() < quiet {
        let announced = announcements();
        assert_eq!(announced.len(), 1, "{announced:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = shop.log();
    assert!(
        !log.iter()
            .any(|line| line.contains("event dispatcher started")),
        "{log:#?}"
    );
    let announced = announcements();
    assert_eq!(announced[0]["lanes"], lanes, "{announced:?}");
}

#[test]
fn event_delivery_is_announced_once_sqlite() {
    event_delivery_is_announced_once(Backend::Sqlite, 1);
}

#[test]
#[cfg_attr(
    not(shop_postgres),
    ignore = "set SHOP_TEST_POSTGRES_URL to run the PostgreSQL tests"
)]
fn event_delivery_is_announced_once_postgres() {
    event_delivery_is_announced_once(Backend::Postgres, 4);
}

#[test]
#[cfg(feature = "mysql")]
#[cfg_attr(
    not(shop_mysql),
    ignore = "set SHOP_TEST_MYSQL_URL to run the MariaDB tests"
)]
fn event_delivery_is_announced_once_mariadb() {
    event_delivery_is_announced_once(Backend::Mysql, 4);
}

//! The harness itself: a test that did not run never reads as passed.

use std::process::Command;

/// The tests of this binary, as `--list` names them (`module::path::name`).
fn listed(only_ignored: bool) -> Vec<String> {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command.arg("--list");
    if only_ignored {
        command.arg("--ignored");
    }
    let output = command.output().expect("list the tests");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .map(str::to_owned)
        .collect()
}

/// A test of `backend` (`postgres`, `mariadb`): `on_every_backend!`'s
/// `backend::name`, `on_each_backend!`'s `name::backend`, or a hand-written `name_backend`.
fn is_of(backend: &str, test: &str) -> bool {
    test.split("::")
        .any(|segment| segment == backend || segment.ends_with(&format!("_{backend}")))
}

fn is_postgres(test: &str) -> bool {
    is_of("postgres", test)
}

fn is_mariadb(test: &str) -> bool {
    is_of("mariadb", test)
}

/// The MariaDB test of the same name as the PostgreSQL `test`.
fn mariadb_twin(test: &str) -> String {
    test.split("::")
        .map(|segment| match segment.strip_suffix("postgres") {
            Some(stem) if stem.is_empty() || stem.ends_with('_') => format!("{stem}mariadb"),
            _ => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("::")
}

/// Whether `url_variable` names a server, or `require_variable` is `1`.
/// Tests that need the message broker too (RabbitMQ): those of the modules
/// that run events over it.
fn needs_broker(test: &str) -> bool {
    BROKER_MODULES
        .iter()
        .any(|module| test.starts_with(&format!("{module}::")))
}

fn without_broker<'a>(tests: &[&'a String]) -> Vec<&'a String> {
    tests.iter().copied().filter(|t| !needs_broker(t)).collect()
}

const BROKER_MODULES: &[&str] = &["rabbitmq", "split"];

fn configured(url_variable: &str, require_variable: &str) -> bool {
    std::env::var(url_variable).is_ok_and(|url| !url.is_empty())
        || std::env::var(require_variable).is_ok_and(|v| v == "1")
}

/// Checks that each of `tests` is ignored exactly when its server is not `configured`.
fn ignored_exactly_unless(configured: bool, tests: &[&String], ignored: &[String], hint: &str) {
    for test in tests {
        assert_eq!(
            ignored.contains(test),
            !configured,
            "{test}: ignored exactly when no server is configured (configured: {configured}); {hint}"
        );
    }
}

/// Without `SHOP_TEST_POSTGRES_URL`, every PostgreSQL test is ignored (the
/// summary counts it as ignored, not as passed); with it (or with
/// `SHOP_TEST_REQUIRE_POSTGRES=1`), none is. The same holds of the MariaDB
/// tests (built with the `mysql` feature) and `SHOP_TEST_MYSQL_URL`. No other
/// test is ignored.
#[test]
fn postgresql_tests_are_ignored_exactly_when_no_server_is_configured() {
    let all = listed(false);
    let ignored = listed(true);
    let postgres_configured = configured("SHOP_TEST_POSTGRES_URL", "SHOP_TEST_REQUIRE_POSTGRES");
    let mysql_configured = configured("SHOP_TEST_MYSQL_URL", "SHOP_TEST_REQUIRE_MYSQL");
    let broker_configured = configured("SHOP_TEST_RABBITMQ_URL", "SHOP_TEST_REQUIRE_RABBITMQ");
    // The broker's tests: ignored exactly unless the broker and their database are configured.
    for test in all.iter().filter(|t| needs_broker(t)) {
        let database = if is_postgres(test) {
            postgres_configured
        } else if is_mariadb(test) {
            mysql_configured
        } else {
            true
        };
        ignored_exactly_unless(
            broker_configured && database,
            &[test],
            &ignored,
            "mark them with #[cfg_attr(not(all(shop_rabbitmq, ...)), ignore = ...)] (on_each_backend_with_broker!)",
        );
    }
    let ignored: Vec<String> = ignored.into_iter().filter(|t| !needs_broker(t)).collect();
    let postgres: Vec<&String> = all.iter().filter(|t| is_postgres(t)).collect();
    assert!(
        postgres.len() >= 30,
        "the PostgreSQL tests are named as expected: {postgres:?}"
    );
    ignored_exactly_unless(
        postgres_configured,
        &without_broker(&postgres),
        &ignored,
        "mark hand-written ones with #[cfg_attr(not(shop_postgres), ignore = ...)]",
    );
    let mariadb: Vec<&String> = all.iter().filter(|t| is_mariadb(t)).collect();
    if cfg!(feature = "mysql") {
        // Every PostgreSQL test has its MariaDB twin (same name, `mariadb` for `postgres`).
        let missing: Vec<String> = postgres
            .iter()
            .map(|test| mariadb_twin(test))
            .filter(|twin| !mariadb.contains(&twin))
            .collect();
        assert!(
            missing.is_empty(),
            "PostgreSQL tests without a MariaDB twin: {missing:?}"
        );
    } else {
        assert!(
            mariadb.is_empty(),
            "MariaDB tests exist only with the mysql feature: {mariadb:?}"
        );
    }
    ignored_exactly_unless(
        mysql_configured,
        &without_broker(&mariadb),
        &ignored,
        "mark hand-written ones with #[cfg_attr(not(shop_mysql), ignore = ...)]",
    );
    let others: Vec<&String> = ignored
        .iter()
        .filter(|t| !is_postgres(t) && !is_mariadb(t))
        .collect();
    assert!(
        others.is_empty(),
        "only PostgreSQL, MariaDB and broker tests are ignored: {others:?}"
    );
}

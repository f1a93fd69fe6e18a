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

/// A PostgreSQL test: `on_every_backend!`'s `postgres::name`, or a hand-written `name_postgres`.
fn is_postgres(test: &str) -> bool {
    test.split("::")
        .any(|segment| segment == "postgres" || segment.ends_with("_postgres"))
}

/// Without `SHOP_TEST_POSTGRES_URL`, every PostgreSQL test is ignored (the
/// summary counts it as ignored, not as passed); with it (or with
/// `SHOP_TEST_REQUIRE_POSTGRES=1`), none is. No other test is ignored.
#[test]
fn postgresql_tests_are_ignored_exactly_when_no_server_is_configured() {
    let configured = std::env::var("SHOP_TEST_POSTGRES_URL").is_ok_and(|url| !url.is_empty())
        || std::env::var("SHOP_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
    let all = listed(false);
    let ignored = listed(true);
    let postgres: Vec<&String> = all.iter().filter(|t| is_postgres(t)).collect();
    assert!(
        postgres.len() >= 30,
        "the PostgreSQL tests are named as expected: {postgres:?}"
    );
    for test in &postgres {
        assert_eq!(
            ignored.contains(test),
            !configured,
            "{test}: a PostgreSQL test is ignored exactly when no server is configured \
             (SHOP_TEST_POSTGRES_URL set: {configured}); mark hand-written ones with \
             #[cfg_attr(not(shop_postgres), ignore = ...)]"
        );
    }
    let others: Vec<&String> = ignored.iter().filter(|t| !is_postgres(t)).collect();
    assert!(
        others.is_empty(),
        "only PostgreSQL tests are ignored: {others:?}"
    );
}

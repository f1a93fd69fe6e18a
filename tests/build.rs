//! Whether this build runs the PostgreSQL and the MariaDB tests. libtest has
//! no way to skip a test at run time, so the choice is made here: without
//! `SHOP_TEST_POSTGRES_URL` every PostgreSQL test is compiled as `#[ignore]`d
//! and the summary counts it as ignored, never as passed. With
//! `SHOP_TEST_REQUIRE_POSTGRES=1` they are compiled to run whatever the URL,
//! so that a missing server fails them loudly. The MariaDB tests (which exist
//! only with the crate's `mysql` feature) follow `SHOP_TEST_MYSQL_URL` and
//! `SHOP_TEST_REQUIRE_MYSQL=1` the same way (`cfg(shop_mysql)`), and the
//! tests of events over RabbitMQ `SHOP_TEST_RABBITMQ_URL` and
//! `SHOP_TEST_REQUIRE_RABBITMQ=1` (`cfg(shop_rabbitmq)`), besides their database's.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(shop_postgres)");
    println!("cargo::rustc-check-cfg=cfg(shop_mysql)");
    println!("cargo::rustc-check-cfg=cfg(shop_rabbitmq)");
    for (variable, required, cfg) in [
        (
            "SHOP_TEST_POSTGRES_URL",
            "SHOP_TEST_REQUIRE_POSTGRES",
            "shop_postgres",
        ),
        (
            "SHOP_TEST_MYSQL_URL",
            "SHOP_TEST_REQUIRE_MYSQL",
            "shop_mysql",
        ),
        (
            "SHOP_TEST_RABBITMQ_URL",
            "SHOP_TEST_REQUIRE_RABBITMQ",
            "shop_rabbitmq",
        ),
    ] {
        println!("cargo::rerun-if-env-changed={variable}");
        println!("cargo::rerun-if-env-changed={required}");
        let configured = std::env::var(variable).is_ok_and(|url| !url.is_empty());
        let required = std::env::var(required).is_ok_and(|v| v == "1");
        if configured || required {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}

//! Whether this build runs the PostgreSQL tests. libtest has no way to skip a
//! test at run time, so the choice is made here: without
//! `SHOP_TEST_POSTGRES_URL` every PostgreSQL test is compiled as
//! `#[ignore]`d and the summary counts it as ignored, never as passed. With
//! `SHOP_TEST_REQUIRE_POSTGRES=1` they are compiled to run whatever the URL,
//! so that a missing server fails them loudly.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(shop_postgres)");
    println!("cargo::rerun-if-env-changed=SHOP_TEST_POSTGRES_URL");
    println!("cargo::rerun-if-env-changed=SHOP_TEST_REQUIRE_POSTGRES");
    let configured = std::env::var("SHOP_TEST_POSTGRES_URL").is_ok_and(|url| !url.is_empty());
    let required = std::env::var("SHOP_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
    if configured || required {
        println!("cargo::rustc-cfg=shop_postgres");
    }
}

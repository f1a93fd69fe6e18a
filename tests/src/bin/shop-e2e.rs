//! The `shop` binary, built again inside this package so that the crash
//! tests can start (and kill) it by path: Cargo tells a package's tests
//! where its own binaries are, not another package's. It is the same code:
//! `shop::run::main` is all that `app/src/main.rs` runs too.

fn main() -> anyhow::Result<()> {
    shop::run::main()
}

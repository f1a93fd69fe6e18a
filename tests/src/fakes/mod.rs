//! Fake payment providers on loopback, for the end-to-end tests: each
//! speaks its provider's protocol with the test-only fixture keys.
//!
//! The fakes are the providers' side, written from the providers'
//! documentation (`PAYMENT_GATEWAYS.md`): they sign, verify, encode, parse
//! and encrypt with their own code on the primitive crates (`rsa`, `sha2`,
//! `ring`'s AEAD, `base64`, `form_urlencoded`), never with shop's
//! (`domain_payment`), so that an end-to-end test checks shop against the
//! protocol rather than against itself; a test in `tests/api/architecture.rs`
//! holds that they never name shop's payment crate. They refuse what the
//! real providers refuse, with the real providers' errors, and keep every
//! refusal for the tests to show ([`alipay::FakeAlipay::refusals`],
//! [`wechat_pay::FakeWechatPay::refusals`]).

pub mod alipay;
pub mod rsa2;
pub mod wechat_pay;

/// A committed test-only key (`domain-payment/tests/fixtures/providers/`):
/// the key files shop is configured with, and the providers' own.
pub fn fixture(name: &str) -> String {
    format!(
        "{}/../domain-payment/tests/fixtures/providers/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The text of a fixture file.
pub fn read_fixture(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

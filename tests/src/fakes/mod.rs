//! Fake payment providers on loopback, for the end-to-end tests: each
//! speaks its provider's protocol with the test-only fixture keys.

pub mod alipay;
pub mod wechat_pay;

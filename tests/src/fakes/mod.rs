//! Fake payment providers on loopback, for the end-to-end tests.

pub mod wechat_pay;

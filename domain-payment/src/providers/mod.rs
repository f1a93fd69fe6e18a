//! The payment providers, one folder each: its wire protocol (pure code: what
//! to sign and how, what to send, and how to check what comes back; no HTTP
//! client, no database, no clock, the caller passes `now`), its gateway
//! adapter (the client that calls the provider), its notification route (the
//! route the provider calls back) and its settings. The gateway adapters, the
//! notify routes and the fake provider servers of the tests all stand on the
//! protocols. What a provider's answer means for a payment (its amount, app id,
//! merchant) is decided by the service, not here.
//!
//! - [`alipay`]: Alipay OpenAPI v2 with `RSA2` signatures.
//! - [`wechat_pay`]: WeChat Pay API v3 (`WECHATPAY2-SHA256-RSA2048`, AES-256-GCM).
//! - [`sandbox`]: the built-in stand-in provider and its checkout page.
//! - Shared by the providers: [`keys`] (RSA keys in every form the providers
//!   hand out, SHA256withRSA), and here the trade and refund numbers, the
//!   [`Mismatch`] of a field and Beijing time.
//!
//! The facts they implement, and the official SDKs they were checked against,
//! are in the project's `PAYMENT_GATEWAYS.md`.

use chrono::{DateTime, FixedOffset, Utc};
use uuid::Uuid;

pub use crate::model::Mismatch;
use crate::model::PaymentId;
use crate::model::expect_field;

pub mod alipay;
pub mod keys;
pub mod sandbox;
pub mod wechat_pay;

/// The merchant's trade number sent to a provider (`out_trade_no`): the
/// payment id as 32 lowercase hex digits, no hyphens. It fits both providers'
/// rules (Alipay: up to 64 letters, digits and underscores; WeChat Pay: 6 to 32
/// of `[0-9A-Za-z_-|*]`), and maps back to the payment id without a lookup.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OutTradeNo(String);

/// A payment id that is not a UUID, so it has no trade number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payment id {0:?} is not a UUID")]
pub struct NotAUuid(pub String);

impl OutTradeNo {
    /// The trade number of a payment.
    pub fn from_payment_id(id: &PaymentId) -> Result<Self, NotAUuid> {
        Uuid::try_parse(id.as_str())
            .map(|uuid| Self(uuid.simple().to_string()))
            .map_err(|_| NotAUuid(id.as_str().to_owned()))
    }

    /// A trade number as a provider echoes it: exactly 32 lowercase hex
    /// digits, or `None` (a trade number shop never sent).
    pub fn parse(text: &str) -> Option<Self> {
        let canonical = text.len() == 32
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        canonical.then(|| Self(text.to_owned()))
    }

    /// The payment this trade number belongs to.
    pub fn payment_id(&self) -> PaymentId {
        let hyphenated = Uuid::try_parse(&self.0)
            .map(|uuid| uuid.hyphenated().to_string())
            .unwrap_or_default();
        PaymentId::from(hyphenated)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for OutTradeNo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The merchant's refund number: Alipay's `out_request_no`, WeChat Pay's
/// `out_refund_no`. It is the idempotency key of a refund (a retry with the
/// same number refunds at most once), so the caller derives it from the
/// payment. Up to 64 of `[0-9A-Za-z_-|*@]`, what both providers accept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RefundNo(String);

/// A refund number outside both providers' rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a refund number is 1 to 64 of 0-9 A-Z a-z _ - | * @")]
pub struct InvalidRefundNo;

impl RefundNo {
    pub fn new(text: &str) -> Result<Self, InvalidRefundNo> {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b"_-|*@".contains(&b);
        if (1..=64).contains(&text.len()) && text.bytes().all(allowed) {
            Ok(Self(text.to_owned()))
        } else {
            Err(InvalidRefundNo)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// China Standard Time (UTC+8, no daylight saving), in which both providers
/// read and write local times.
pub const BEIJING: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    None => unreachable!(),
};

/// An instant in Beijing time.
fn beijing(at: DateTime<Utc>) -> DateTime<FixedOffset> {
    at.with_timezone(&BEIJING)
}

/// Whether `url` may be given to a provider as a callback (a notify or return
/// URL): `https://` with a host, no query string, no fragment, no spaces. Plain
/// `http://` is allowed only for loopback hosts, which no real provider can
/// reach, so that the fake providers of the tests can call back.
pub fn is_callback_url(url: &str) -> bool {
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        if !is_loopback_host(rest) {
            return false;
        }
        rest
    } else {
        return false;
    };
    let host_present = !rest.is_empty() && !rest.starts_with('/');
    host_present
        && url.len() <= 256
        && !url.contains(['?', '#'])
        && url.bytes().all(|b| b.is_ascii_graphic())
}

/// Whether the authority at the start of `rest` (what follows `http://`) is
/// this machine.
fn is_loopback_host(rest: &str) -> bool {
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A provider's settings section as the app reads it from its environment
/// variables (`<prefix><KEY>`, each a string under its lowercased key), for
/// the settings' own tests.
#[cfg(test)]
pub(crate) fn settings_from_env<T: serde::de::DeserializeOwned>(
    prefix: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, serde_json::Error> {
    let section: serde_json::Map<String, serde_json::Value> = env
        .into_iter()
        .map(|(k, v)| {
            let key = k.strip_prefix(prefix).unwrap_or(&k).to_lowercase();
            (key, serde_json::Value::from(v))
        })
        .collect();
    serde_json::from_value(serde_json::Value::Object(section))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trade_number_is_the_payment_id_without_hyphens_and_maps_back() {
        let id = PaymentId::from("0193a5b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b".to_owned());
        let no = OutTradeNo::from_payment_id(&id).unwrap();
        assert_eq!(no.as_str(), "0193a5b27c4d7e8f9a0b1c2d3e4f5a6b");
        assert_eq!(OutTradeNo::parse(no.as_str()).unwrap().payment_id(), id);
        let generated = PaymentId::generate();
        let no = OutTradeNo::from_payment_id(&generated).unwrap();
        assert_eq!(no.as_str().len(), 32);
        assert_eq!(no.payment_id(), generated);
    }

    #[test]
    fn only_canonical_trade_numbers_parse() {
        for text in [
            "",
            "0193a5b27c4d7e8f9a0b1c2d3e4f5a6",
            "0193a5b27c4d7e8f9a0b1c2d3e4f5a6b0",
            "0193A5B27C4D7E8F9A0B1C2D3E4F5A6B",
            "0193a5b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b",
            "0193a5b27c4d7e8f9a0b1c2d3e4f5a6g",
        ] {
            assert_eq!(OutTradeNo::parse(text), None, "{text}");
        }
        assert!(OutTradeNo::from_payment_id(&PaymentId::from("p-1".to_owned())).is_err());
    }

    #[test]
    fn refund_numbers_follow_both_providers_rules() {
        assert!(RefundNo::new("0193a5b27c4d7e8f9a0b1c2d3e4f5a6b-refund").is_ok());
        assert!(RefundNo::new(&"a".repeat(64)).is_ok());
        for bad in ["", "a b", "ä", "a/b", &"a".repeat(65)] {
            assert_eq!(RefundNo::new(bad), Err(InvalidRefundNo), "{bad}");
        }
    }

    #[test]
    fn callback_urls_are_https_without_query_or_loopback_http() {
        for good in [
            "https://shop.example.com/api/v1/payments/notify/alipay",
            "https://shop.example.com:8443/notify",
            "http://127.0.0.1:8080/api/v1/payments/notify/wechat_pay",
            "http://localhost/notify",
            "http://[::1]:9/notify",
        ] {
            assert!(is_callback_url(good), "{good}");
        }
        for bad in [
            "http://shop.example.com/notify",
            "http://127.0.0.1.example.com/notify",
            "http://127.0.0.1@example.com/notify",
            "https://shop.example.com/notify?order=1",
            "https://shop.example.com/notify#x",
            "https:///notify",
            "https://",
            "https://shop.example.com/a b",
            "ftp://shop.example.com/notify",
        ] {
            assert!(!is_callback_url(bad), "{bad}");
        }
    }

    #[test]
    fn beijing_time_is_utc_plus_eight() {
        let at = DateTime::parse_from_rfc3339("2025-01-31T16:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(beijing(at).to_rfc3339(), "2025-02-01T00:30:00+08:00");
    }
}

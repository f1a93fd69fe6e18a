//! `Shop-Signature`: how gateways sign the notifications they send to shop.
//!
//! `Shop-Signature: t=<unix seconds>,v1=<hex>`, where the hex is
//! HMAC-SHA256, under the webhook secret, of `"<t>.<raw request body>"`.
//! A signature older (or newer) than five minutes is refused, so that a
//! captured notification cannot be replayed later; one that does not match
//! is refused, so that no byte of a body can be altered. Several `v1` values
//! may be sent (while a secret is being rotated); one must match.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The header that carries the signature.
pub const HEADER: &str = "Shop-Signature";
/// How far a signature's timestamp may be from now, in seconds.
pub const TOLERANCE_SECS: i64 = 300;

/// Why a notification's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Shop-Signature header is missing")]
    Missing,
    #[error("the Shop-Signature header is malformed (expected t=<unix seconds>,v1=<hex>)")]
    Malformed,
    #[error("the signature's timestamp is more than five minutes away from now")]
    Stale,
    #[error("the signature does not match the body")]
    Mismatch,
}

/// Signs and verifies notifications under the webhook secret.
#[derive(Clone)]
pub struct ShopSignature {
    secret: SecretString,
}

impl std::fmt::Debug for ShopSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShopSignature(***)")
    }
}

type HmacSha256 = Hmac<Sha256>;

impl ShopSignature {
    pub fn new(secret: SecretString) -> Self {
        Self { secret }
    }

    fn mac(&self, timestamp: i64, body: &[u8]) -> HmacSha256 {
        // HMAC takes a key of any length.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(self.secret.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The header value for `body`, signed at `timestamp` (unix seconds).
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> String {
        let digest = self.mac(timestamp, body).finalize().into_bytes();
        format!("t={timestamp},v1={}", hex::encode(digest))
    }

    /// Checks a header value against the raw body, at `now` (unix seconds).
    pub fn verify(
        &self,
        header: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let (timestamp, signatures) = parse(header)?;
        if (now - timestamp).abs() > TOLERANCE_SECS {
            return Err(SignatureError::Stale);
        }
        let matches = signatures
            .iter()
            .any(|candidate| self.mac(timestamp, body).verify_slice(candidate).is_ok());
        if matches {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// Splits `t=..,v1=..[,v1=..]`; unknown keys are ignored (future schemes).
fn parse(header: &str) -> Result<(i64, Vec<Vec<u8>>), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match key {
            "t" if timestamp.is_none() => {
                let t: i64 = value.parse().map_err(|_| SignatureError::Malformed)?;
                timestamp = Some(t);
            }
            "t" => return Err(SignatureError::Malformed),
            "v1" => {
                let bytes = hex::decode(value).map_err(|_| SignatureError::Malformed)?;
                if bytes.len() != 32 {
                    return Err(SignatureError::Malformed);
                }
                signatures.push(bytes);
            }
            _ => {}
        }
    }
    match timestamp {
        Some(t) if !signatures.is_empty() => Ok((t, signatures)),
        _ => Err(SignatureError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> ShopSignature {
        ShopSignature::new(SecretString::from("whsec_test"))
    }

    const BODY: &[u8] = br#"{"paymentId":"p1","paymentStatus":"success"}"#;

    #[test]
    fn a_fresh_genuine_signature_verifies() {
        let header = signer().sign(1_000_000, BODY);
        assert!(header.starts_with("t=1000000,v1="));
        assert_eq!(signer().verify(Some(&header), BODY, 1_000_000), Ok(()));
        assert_eq!(
            signer().verify(Some(&header), BODY, 1_000_000 + TOLERANCE_SECS),
            Ok(())
        );
    }

    #[test]
    fn it_matches_an_independent_hmac_sha256() {
        // HMAC-SHA256(key="key", "The quick brown fox jumps over the lazy dog"), RFC 4231-style known answer,
        // here with the signed payload "<t>.<body>" built by hand.
        let signer = ShopSignature::new(SecretString::from("key"));
        let header = signer.sign(5, b"The quick brown fox jumps over the lazy dog");
        let mut mac = <HmacSha256 as Mac>::new_from_slice(b"key").unwrap();
        mac.update(b"5.The quick brown fox jumps over the lazy dog");
        assert_eq!(
            header,
            format!("t=5,v1={}", hex::encode(mac.finalize().into_bytes()))
        );
    }

    #[test]
    fn altered_bodies_other_secrets_and_old_signatures_are_refused() {
        let header = signer().sign(1_000_000, BODY);
        let altered = br#"{"paymentId":"p1","paymentStatus":"failure"}"#;
        assert_eq!(
            signer().verify(Some(&header), altered, 1_000_000),
            Err(SignatureError::Mismatch)
        );
        let other = ShopSignature::new(SecretString::from("another secret"));
        assert_eq!(
            other.verify(Some(&header), BODY, 1_000_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            signer().verify(Some(&header), BODY, 1_000_000 + TOLERANCE_SECS + 1),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            signer().verify(Some(&header), BODY, 1_000_000 - TOLERANCE_SECS - 1),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        let good = signer().sign(7, BODY);
        let hex_part = good.split("v1=").nth(1).unwrap();
        for header in [
            "",
            "t=7",
            "v1=00",
            "t=x,v1=00",
            "t=7,v1=zz",
            "t=7,v1=abcd",
            "garbage",
            &format!("t=7,t=8,v1={hex_part}"),
        ] {
            assert_eq!(
                signer().verify(Some(header), BODY, 7),
                Err(SignatureError::Malformed),
                "{header:?}"
            );
        }
        assert_eq!(signer().verify(None, BODY, 7), Err(SignatureError::Missing));
    }

    #[test]
    fn one_matching_signature_among_several_is_enough() {
        let good = signer().sign(9, BODY);
        let rotated = format!("{},v1={}", good, "00".repeat(32));
        assert_eq!(signer().verify(Some(&rotated), BODY, 9), Ok(()));
        let unknown_scheme = format!("{good},v0=legacy");
        assert_eq!(signer().verify(Some(&unknown_scheme), BODY, 9), Ok(()));
    }
}

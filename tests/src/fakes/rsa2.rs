//! SHA256withRSA (RSASSA-PKCS1-v1_5 over SHA-256), standard base64, as both
//! providers sign and verify (PAYMENT_GATEWAYS.md: Alipay's `RSA2`, WeChat
//! Pay's `WECHATPAY2-SHA256-RSA2048`), the providers' side of it.
//!
//! Written on the RustCrypto `rsa` crate, not on shop's code (shop signs with
//! `ring`): a fake that verifies shop with shop's own signer would only check
//! shop against itself. The `rsa` 0.9 line carries RUSTSEC-2023-0071, a timing
//! side channel in private-key operations; here it only signs with the
//! committed test-only fixture keys, on loopback.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;

/// A private key that signs (a provider's platform key, or a forger's).
#[derive(Clone)]
pub struct PrivateKey(SigningKey<Sha256>);

impl PrivateKey {
    /// A PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Self {
        let key = RsaPrivateKey::from_pkcs8_pem(pem).expect("a PKCS#8 PEM RSA private key");
        Self(SigningKey::new(key))
    }

    /// The standard base64 (no newlines) of the SHA256withRSA signature of `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        STANDARD.encode(self.0.sign(message).to_bytes())
    }
}

/// A public key that verifies (the merchant's, which shop signs requests with).
#[derive(Clone)]
pub struct PublicKey(VerifyingKey<Sha256>);

impl PublicKey {
    /// An SPKI PEM public key (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_spki_pem(pem: &str) -> Self {
        let key = RsaPublicKey::from_public_key_pem(pem).expect("an SPKI PEM RSA public key");
        Self(VerifyingKey::new(key))
    }

    /// Whether `signature` (standard base64) is this key's SHA256withRSA
    /// signature of `message`. Anything else (URL-safe base64, newlines,
    /// padding missing) is not.
    pub fn verifies(&self, message: &[u8], signature: &str) -> bool {
        let Ok(bytes) = STANDARD.decode(signature) else {
            return false;
        };
        let Ok(signature) = Signature::try_from(bytes.as_slice()) else {
            return false;
        };
        self.0.verify(message, &signature).is_ok()
    }
}

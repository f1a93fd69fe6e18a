//! RSA keys as the providers hand them out, and SHA256withRSA (RSASSA-PKCS1-v1_5
//! with SHA-256), the one signature both Alipay (`RSA2`) and WeChat Pay
//! (`WECHATPAY2-SHA256-RSA2048`) use.
//!
//! Key files come in every shape: PEM or bare base64 (the Alipay console shows
//! keys as one base64 line), private keys PKCS#8 (`PRIVATE KEY`) or PKCS#1
//! (`RSA PRIVATE KEY`), public keys SPKI (`PUBLIC KEY`) or PKCS#1
//! (`RSA PUBLIC KEY`). All of them are accepted; anything else is an error that
//! says what was found, never what the key holds.
//!
//! The crypto is `ring`'s: it signs in constant time (the `rsa` crate's 0.9 line
//! carries RUSTSEC-2023-0071, a timing side channel in private-key operations),
//! and PKCS#1 v1.5 signatures are deterministic, so golden vectors made with the
//! `openssl` CLI can be compared byte for byte. `spki` and `pkcs1` only unwrap
//! public keys, which `ring` wants as a bare `RSAPublicKey`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use pkcs1::der::Decode as _;
use ring::signature::{self, RsaKeyPair, UnparsedPublicKey};

/// The smallest modulus either provider issues, and the smallest `ring` verifies.
pub const MIN_BITS: usize = 2048;
/// The largest modulus `ring` signs with (it refuses larger keys itself).
pub const MAX_PRIVATE_BITS: usize = 4096;
/// The largest modulus `ring` verifies with.
pub const MAX_PUBLIC_BITS: usize = 8192;

/// Why a key could not be loaded. The text says what was wrong with the input
/// and never quotes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key is empty")]
    Empty,
    #[error("the key is not PEM and not base64")]
    NotBase64,
    #[error("malformed PEM: {0}")]
    MalformedPem(&'static str),
    #[error(
        "the PEM block is an encrypted private key; store it unencrypted (openssl pkcs8 -topk8 -nocrypt)"
    )]
    Encrypted,
    #[error("the PEM block is a {found}, where {expected} was expected")]
    WrongPemLabel {
        found: String,
        expected: &'static str,
    },
    #[error("this is a private key, where the public key was expected")]
    PrivateWherePublicExpected,
    #[error("this is a public key, where the private key was expected")]
    PublicWherePrivateExpected,
    #[error("not an RSA private key in PKCS#8 or PKCS#1 form ({0})")]
    BadPrivateKey(&'static str),
    #[error("not an RSA public key in SPKI or PKCS#1 form")]
    BadPublicKey,
    #[error("the key is not an RSA key")]
    NotRsa,
    #[error("the key has {bits} bits; 2048 to 8192 are accepted")]
    PublicKeySize { bits: usize },
    #[error("the key is smaller than 2048 or larger than 4096 bits")]
    PrivateKeySize,
}

/// Signing failed: only the system's random source (used for RSA blinding)
/// can make it fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("RSA signing failed (system random source unavailable)")]
pub struct SignError;

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature is not base64")]
    NotBase64,
    #[error("the signature does not match")]
    Mismatch,
}

/// An RSA private key, ready to sign. Its `Debug` shows only its size.
pub struct PrivateKey {
    pair: RsaKeyPair,
}

impl PrivateKey {
    /// A private key from the text of a key file: PEM (`PRIVATE KEY` or
    /// `RSA PRIVATE KEY`) or bare base64 of the DER, PKCS#8 or PKCS#1.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let der = match pem_block(text)? {
            Some(block) => {
                block.expect_label(&["PRIVATE KEY", "RSA PRIVATE KEY"], "a private key")?;
                block.der
            }
            None => bare_base64(text)?,
        };
        Self::from_der(&der)
    }

    /// A private key from DER: PKCS#8 `PrivateKeyInfo` or PKCS#1 `RSAPrivateKey`.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let pkcs8 = match RsaKeyPair::from_pkcs8(der) {
            Ok(pair) => return Ok(Self { pair }),
            Err(error) => rejected(error),
        };
        let pkcs1 = match RsaKeyPair::from_der(der) {
            Ok(pair) => return Ok(Self { pair }),
            Err(error) => rejected(error),
        };
        if PublicKey::from_der(der).is_ok() {
            return Err(KeyError::PublicWherePrivateExpected);
        }
        // The reason of the form the DER was closer to: a PKCS#8 document
        // that holds no RSA key says so, anything unreadable as PKCS#8 gets
        // the PKCS#1 reading's reason.
        Err(if pkcs8 == UNREADABLE { pkcs1 } else { pkcs8 })
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.pair.public().modulus_len() * 8
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            rsa_public_key: self.pair.public().as_ref().to_vec(),
            bits: self.bits(),
        }
    }

    /// SHA256withRSA (PKCS#1 v1.5) over `message`: the raw signature bytes.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let rng = ring::rand::SystemRandom::new();
        let mut signature = vec![0; self.pair.public().modulus_len()];
        self.pair
            .sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut signature)
            .map_err(|_| SignError)?;
        Ok(signature)
    }

    /// [`sign`](Self::sign), in standard base64 with padding and no line
    /// breaks: the form both providers put on the wire.
    pub fn sign_base64(&self, message: &[u8]) -> Result<String, SignError> {
        Ok(STANDARD.encode(self.sign(message)?))
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}-bit RSA)", self.bits())
    }
}

/// An RSA public key, ready to verify. Held as the PKCS#1 `RSAPublicKey` DER
/// that `ring` takes. Its `Debug` shows only its size.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    rsa_public_key: Vec<u8>,
    bits: usize,
}

impl PublicKey {
    /// A public key from the text of a key file: PEM (`PUBLIC KEY` or
    /// `RSA PUBLIC KEY`) or bare base64 of the DER, SPKI or PKCS#1.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let der = match pem_block(text)? {
            Some(block) => {
                block.expect_label(&["PUBLIC KEY", "RSA PUBLIC KEY"], "a public key")?;
                block.der
            }
            None => bare_base64(text)?,
        };
        Self::from_der(&der)
    }

    /// A public key from DER: SPKI `SubjectPublicKeyInfo` or PKCS#1 `RSAPublicKey`.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        Self::read_der(der).map_err(|error| {
            let private = RsaKeyPair::from_pkcs8(der).is_ok() || RsaKeyPair::from_der(der).is_ok();
            if private {
                KeyError::PrivateWherePublicExpected
            } else {
                error
            }
        })
    }

    fn read_der(der: &[u8]) -> Result<Self, KeyError> {
        let rsa_public_key = public_key_der(der)?;
        let bits = modulus_bits(rsa_public_key)?;
        if !(MIN_BITS..=MAX_PUBLIC_BITS).contains(&bits) {
            return Err(KeyError::PublicKeySize { bits });
        }
        Ok(Self {
            rsa_public_key: rsa_public_key.to_vec(),
            bits,
        })
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Checks a SHA256withRSA (PKCS#1 v1.5) signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.rsa_public_key)
            .verify(message, signature)
            .map_err(|_| SignatureError::Mismatch)
    }

    /// [`verify`](Self::verify) with the signature in standard base64, as both
    /// providers send it.
    pub fn verify_base64(&self, message: &[u8], signature: &str) -> Result<(), SignatureError> {
        let signature = STANDARD
            .decode(signature)
            .map_err(|_| SignatureError::NotBase64)?;
        self.verify(message, &signature)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}-bit RSA)", self.bits)
    }
}

/// `ring`'s reason for refusing a private key, in words.
fn rejected(error: ring::error::KeyRejected) -> KeyError {
    match error.to_string().as_str() {
        "TooSmall" | "TooLarge" | "PrivateModulusLenNotMultipleOf512Bits" => {
            KeyError::PrivateKeySize
        }
        "WrongAlgorithm" => KeyError::NotRsa,
        "VersionNotSupported" => KeyError::BadPrivateKey("multi-prime keys are not supported"),
        "InconsistentComponents" | "InvalidComponent" => {
            KeyError::BadPrivateKey("its numbers do not belong together: a damaged key")
        }
        _ => UNREADABLE,
    }
}

const UNREADABLE: KeyError = KeyError::BadPrivateKey("unreadable DER");

const RSA_ENCRYPTION: spki::ObjectIdentifier =
    spki::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// The PKCS#1 `RSAPublicKey` inside `der`, which holds either an SPKI or that
/// `RSAPublicKey` itself.
fn public_key_der(der: &[u8]) -> Result<&[u8], KeyError> {
    match spki::SubjectPublicKeyInfoRef::from_der(der) {
        Ok(info) if info.algorithm.oid != RSA_ENCRYPTION => Err(KeyError::NotRsa),
        Ok(info) => info
            .subject_public_key
            .as_bytes()
            .ok_or(KeyError::BadPublicKey),
        Err(_) => Ok(der),
    }
}

/// The size of the modulus of a PKCS#1 `RSAPublicKey`, which also proves it
/// is one.
fn modulus_bits(rsa_public_key: &[u8]) -> Result<usize, KeyError> {
    let key = pkcs1::RsaPublicKey::from_der(rsa_public_key).map_err(|_| KeyError::BadPublicKey)?;
    let modulus = key.modulus.as_bytes();
    let Some(first) = modulus.first() else {
        return Err(KeyError::BadPublicKey);
    };
    Ok(modulus.len() * 8 - first.leading_zeros() as usize)
}

/// A decoded PEM block.
struct PemBlock {
    label: String,
    der: Vec<u8>,
}

impl PemBlock {
    fn expect_label(&self, accepted: &[&str], expected: &'static str) -> Result<(), KeyError> {
        if accepted.contains(&self.label.as_str()) {
            return Ok(());
        }
        if self.label == "ENCRYPTED PRIVATE KEY" {
            return Err(KeyError::Encrypted);
        }
        Err(KeyError::WrongPemLabel {
            found: self.label.clone(),
            expected,
        })
    }
}

/// The first PEM block of `text` (RFC 7468: text around it is ignored), or
/// `None` when `text` holds no `-----BEGIN` line at all.
fn pem_block(text: &str) -> Result<Option<PemBlock>, KeyError> {
    let mut lines = text.lines().map(str::trim);
    let Some(begin) = lines.find(|line| line.starts_with("-----BEGIN ")) else {
        return Ok(None);
    };
    let label = pem_label(begin, "-----BEGIN ")?;
    let mut body = String::new();
    for line in lines {
        if line.starts_with("-----END ") {
            if pem_label(line, "-----END ")? != label {
                return Err(KeyError::MalformedPem("its BEGIN and END lines differ"));
            }
            let der = decode_base64(&body).map_err(|_| {
                KeyError::MalformedPem("the text between BEGIN and END is not base64")
            })?;
            return Ok(Some(PemBlock { label, der }));
        }
        if line.contains(':') {
            // RFC 1421 headers: only encrypted legacy keys carry them.
            return Err(KeyError::Encrypted);
        }
        body.push_str(line);
    }
    Err(KeyError::MalformedPem("no END line"))
}

fn pem_label(line: &str, prefix: &str) -> Result<String, KeyError> {
    line.strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix("-----"))
        .filter(|label| {
            label.len() <= 40 && label.bytes().all(|b| b.is_ascii_uppercase() || b == b' ')
        })
        .map(str::to_owned)
        .ok_or(KeyError::MalformedPem(
            "a BEGIN or END line is not well formed",
        ))
}

/// A key given as bare base64 (line breaks and spaces allowed, as when one is
/// pasted from a console).
fn bare_base64(text: &str) -> Result<Vec<u8>, KeyError> {
    if text.trim().is_empty() {
        return Err(KeyError::Empty);
    }
    decode_base64(text).map_err(|_| KeyError::NotBase64)
}

/// Standard base64 with whitespace removed; padding may be left out.
fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    LENIENT.decode(compact)
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! The committed test-only key pairs (`tests/fixtures/providers/`; how they
    //! were made is in `generate.sh` there).

    use super::{PrivateKey, PublicKey};

    macro_rules! fixture {
        ($file:literal) => {
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/providers/",
                $file
            ))
        };
    }
    pub(crate) use fixture;

    pub fn private(text: &str) -> PrivateKey {
        PrivateKey::parse(text).unwrap()
    }

    pub fn public(text: &str) -> PublicKey {
        PublicKey::parse(text).unwrap()
    }

    pub fn alipay_app_private() -> PrivateKey {
        private(fixture!("alipay_app_private_pkcs8.pem"))
    }
    pub fn alipay_platform_private() -> PrivateKey {
        private(fixture!("alipay_platform_private_pkcs8.pem"))
    }
    pub fn alipay_platform_public() -> PublicKey {
        public(fixture!("alipay_platform_public_spki.b64"))
    }
    pub fn wechat_merchant_private() -> PrivateKey {
        private(fixture!("wechat_merchant_private_pkcs8.pem"))
    }
    pub fn wechat_merchant_public() -> PublicKey {
        public(fixture!("wechat_merchant_public_spki.pem"))
    }
    pub fn wechat_platform_private() -> PrivateKey {
        private(fixture!("wechat_platform_private_pkcs8.pem"))
    }
    pub fn wechat_platform_public() -> PublicKey {
        public(fixture!("wechat_platform_public_spki.pem"))
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{self, fixture};
    use super::*;

    const MESSAGE: &[u8] = b"app_id=2021000000000001&method=alipay.trade.query";

    /// The PEM body of a key file as one base64 line.
    fn pem_body(pem: &str) -> String {
        pem.lines().filter(|l| !l.starts_with("-----")).collect()
    }

    #[test]
    fn a_private_key_loads_from_every_form_and_they_sign_alike() {
        let forms = [
            fixture!("alipay_app_private_pkcs8.pem"),
            fixture!("alipay_app_private_pkcs1.pem"),
            fixture!("alipay_app_private_pkcs8.b64"),
            fixture!("alipay_app_private_pkcs1.b64"),
        ];
        let signatures: Vec<String> = forms
            .iter()
            .map(|text| {
                PrivateKey::parse(text)
                    .unwrap()
                    .sign_base64(MESSAGE)
                    .unwrap()
            })
            .collect();
        assert!(signatures.iter().all(|s| s == &signatures[0]));
        assert_eq!(fixtures::alipay_app_private().bits(), 2048);
    }

    #[test]
    fn a_public_key_loads_from_every_form() {
        let signature = fixtures::alipay_app_private().sign(MESSAGE).unwrap();
        let spki_pem = fixture!("alipay_app_public_spki.pem");
        let forms = [
            spki_pem.to_owned(),
            pem_body(spki_pem),
            fixture!("alipay_app_public_pkcs1.pem").to_owned(),
            pem_body(fixture!("alipay_app_public_pkcs1.pem")),
        ];
        for text in &forms {
            let key = PublicKey::parse(text).unwrap();
            assert_eq!(key.bits(), 2048);
            key.verify(MESSAGE, &signature).unwrap();
        }
        assert_eq!(
            fixtures::alipay_app_private().public_key(),
            PublicKey::parse(spki_pem).unwrap()
        );
    }

    #[test]
    fn keys_with_crlf_line_ends_and_surrounding_text_load() {
        let pem = format!(
            "Bag Attributes\r\n    localKeyID: 01\r\n{}\r\n",
            fixture!("alipay_app_private_pkcs8.pem").replace('\n', "\r\n")
        );
        PrivateKey::parse(&pem).unwrap();
        let wrapped = fixture!("alipay_platform_public_spki.b64")
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        PublicKey::parse(&format!("  {wrapped}\n")).unwrap();
    }

    #[test]
    fn a_signature_verifies_with_its_own_key_only() {
        let signature = fixtures::wechat_merchant_private()
            .sign_base64(MESSAGE)
            .unwrap();
        fixtures::wechat_merchant_public()
            .verify_base64(MESSAGE, &signature)
            .unwrap();
        assert_eq!(
            fixtures::wechat_platform_public().verify_base64(MESSAGE, &signature),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            fixtures::wechat_merchant_public()
                .verify_base64(b"app_id=2021000000000002", &signature),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            fixtures::wechat_merchant_public().verify_base64(MESSAGE, "not base64!"),
            Err(SignatureError::NotBase64)
        );
    }

    /// Every refusal names the problem and quotes nothing of the input.
    #[test]
    fn a_bad_key_is_a_clear_error_without_the_key_in_it() {
        let private_pem = fixture!("alipay_app_private_pkcs8.pem");
        let public_pem = fixture!("alipay_app_public_spki.pem");
        let body = pem_body(private_pem);
        let truncated = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            &body[..400]
        );
        let cases: Vec<(Result<(), KeyError>, KeyError)> = vec![
            (PrivateKey::parse("").map(drop), KeyError::Empty),
            (PrivateKey::parse(" \n").map(drop), KeyError::Empty),
            (
                PrivateKey::parse("not a key!").map(drop),
                KeyError::NotBase64,
            ),
            (
                PrivateKey::parse(&truncated).map(drop),
                KeyError::BadPrivateKey("unreadable DER"),
            ),
            (
                PrivateKey::parse(&private_pem.replace("-----END PRIVATE KEY-----", "")).map(drop),
                KeyError::MalformedPem("no END line"),
            ),
            (
                PrivateKey::parse(&private_pem.replace("END PRIVATE", "END RSA PRIVATE")).map(drop),
                KeyError::MalformedPem("its BEGIN and END lines differ"),
            ),
            (
                PrivateKey::parse(public_pem).map(drop),
                KeyError::WrongPemLabel {
                    found: "PUBLIC KEY".into(),
                    expected: "a private key",
                },
            ),
            (
                PrivateKey::parse(&pem_body(public_pem)).map(drop),
                KeyError::PublicWherePrivateExpected,
            ),
            (
                PublicKey::parse(&pem_body(private_pem)).map(drop),
                KeyError::PrivateWherePublicExpected,
            ),
            (
                PublicKey::parse(private_pem).map(drop),
                KeyError::WrongPemLabel {
                    found: "PRIVATE KEY".into(),
                    expected: "a public key",
                },
            ),
            (
                PrivateKey::parse(&private_pem.replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY"))
                    .map(drop),
                KeyError::Encrypted,
            ),
            (
                PrivateKey::parse(&fixture!("alipay_app_private_pkcs1.pem").replacen(
                    "-----\n",
                    "-----\nProc-Type: 4,ENCRYPTED\n",
                    1,
                ))
                .map(drop),
                KeyError::Encrypted,
            ),
            (
                PublicKey::parse(&body[..300]).map(drop),
                KeyError::BadPublicKey,
            ),
        ];
        for (outcome, expected) in cases {
            let error = outcome.unwrap_err();
            assert_eq!(error, expected);
            let text = error.to_string();
            assert!(
                !text.contains(&body[..16]) && !text.contains("MII"),
                "{text}"
            );
        }
    }

    #[test]
    fn keys_outside_the_accepted_sizes_are_refused_by_size() {
        assert_eq!(
            PublicKey::parse(fixture!("small_1024_public_spki.pem")).unwrap_err(),
            KeyError::PublicKeySize { bits: 1024 }
        );
        assert_eq!(
            PrivateKey::parse(fixture!("small_1024_private_pkcs8.pem")).unwrap_err(),
            KeyError::PrivateKeySize
        );
    }

    #[test]
    fn keys_that_are_not_rsa_are_refused_as_such() {
        assert_eq!(
            PrivateKey::parse(fixture!("ec_p256_private_pkcs8.pem")).unwrap_err(),
            KeyError::NotRsa
        );
        assert_eq!(
            PublicKey::parse(fixture!("ec_p256_public_spki.pem")).unwrap_err(),
            KeyError::NotRsa
        );
    }

    #[test]
    fn debug_shows_the_size_only() {
        let private = fixtures::alipay_app_private();
        assert_eq!(format!("{private:?}"), "PrivateKey(2048-bit RSA)");
        assert_eq!(
            format!("{:?}", private.public_key()),
            "PublicKey(2048-bit RSA)"
        );
    }
}

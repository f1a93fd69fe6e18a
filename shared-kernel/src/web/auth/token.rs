//! Bearer JWTs (customers' and staff members'): verified with an HS256
//! shared secret, with the identity provider's public keys from a JWKS, or
//! both; a token is a staff token when its claims hold the staff role
//! ([`StaffClaim`]). The algorithm is
//! pinned by the key, never taken from the token: an HS256 token is checked
//! only against the secret, an RS256 token only against an RSA key of the
//! JWKS published for RS256, and so on (`none` does not exist here).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::staff::StaffClaim;
use super::{ADMIN_TOKEN_ACTOR, UserId};

/// The most clock skew tolerated on `exp` and `nbf`.
pub const MAX_LEEWAY_SECS: u64 = 60;
/// The shortest HS256 secret accepted (RFC 7518 §3.2: a key of at least 256 bits).
pub const MIN_SECRET_BYTES: usize = 32;
/// An unknown `kid` fetches the JWKS again, at most this often.
const MIN_REFETCH: Duration = Duration::from_secs(1);

/// Why a token was refused (the `error_description` of the 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("The token is not a well-formed JWT")]
    Malformed,
    #[error("The token's algorithm is not accepted")]
    Algorithm,
    #[error("The token's key is not known")]
    UnknownKey,
    #[error("The token's signature does not verify")]
    Signature,
    #[error("The token has expired")]
    Expired,
    #[error("The token is not valid yet")]
    NotYetValid,
    #[error("The token's issuer is not accepted")]
    Issuer,
    #[error("The token's audience is not accepted")]
    Audience,
    #[error("The token lacks the claim {0}")]
    MissingClaim(String),
    #[error("The token's subject is not a valid user id")]
    Subject,
    #[error("The token names critical header extensions (crit), which shop does not understand")]
    Critical,
    /// A staff token whose `sub` is what the audit log calls the admin token.
    #[error(
        "The token is a staff token whose subject is admin-token, which names the admin token in the audit log"
    )]
    ReservedSubject,
}

/// Where the identity provider publishes its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksLocation {
    Url(String),
    File(PathBuf),
}

impl JwksLocation {
    /// `https://...`, `file://...`, or `http://` on a loopback address (for
    /// a provider on the same host, and tests).
    pub fn parse(raw: &str) -> Result<Self, String> {
        if let Some(path) = raw.strip_prefix("file://") {
            return Ok(Self::File(PathBuf::from(path)));
        }
        let url = reqwest::Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
        let loopback = match url.host() {
            Some(url::Host::Domain(host)) => host == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        match url.scheme() {
            "https" => Ok(Self::Url(raw.to_owned())),
            "http" if loopback => Ok(Self::Url(raw.to_owned())),
            _ => Err("must be https://..., file://..., or http:// on a loopback address".into()),
        }
    }
}

/// How tokens are checked.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// The HS256 secret, if shop accepts tokens signed with one.
    pub secret: Option<SecretString>,
    pub jwks: Option<JwksLocation>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_secs: u64,
    /// What makes a token a staff token.
    pub staff: StaffClaim,
}

/// Whom a genuine token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its `sub`.
    pub user: UserId,
    /// Whether its claims hold the staff role.
    pub staff: bool,
}

/// One verification key and the one algorithm it is used with.
struct PublicKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Checks bearer JWTs.
pub struct TokenVerifier {
    secret: Option<DecodingKey>,
    jwks: Option<Jwks>,
    /// One per accepted algorithm (HS256 and [`ASYMMETRIC`]), built once:
    /// the same rules, each pinned to its algorithm.
    validations: Vec<Validation>,
    staff: StaffClaim,
}

struct Jwks {
    location: JwksLocation,
    client: reqwest::Client,
    keys: RwLock<Arc<Vec<PublicKey>>>,
    /// When a token naming an unknown key last made us fetch (`None`: never);
    /// held while fetching, so that one fetch runs at a time.
    refetched: tokio::sync::Mutex<Option<Instant>>,
}

/// (Optional here so that a token without `sub` is told apart from a malformed one.)
#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    /// The rest, where the staff role may be.
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

impl TokenVerifier {
    /// Builds the verifier; with a JWKS, fetches it (an unreachable or empty
    /// key set is an error: shop would refuse every customer).
    pub async fn load(settings: &TokenSettings) -> anyhow::Result<Self> {
        let secret = match &settings.secret {
            Some(secret) => {
                let bytes = secret.expose_secret().as_bytes();
                anyhow::ensure!(
                    bytes.len() >= MIN_SECRET_BYTES,
                    "SHOP__AUTH__JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes"
                );
                Some(DecodingKey::from_secret(bytes))
            }
            None => None,
        };
        let jwks = match &settings.jwks {
            Some(location) => {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()?;
                let keys = fetch(&client, location).await.map_err(|e| {
                    anyhow::anyhow!("SHOP__AUTH__JWKS_URL: could not load the key set: {e}")
                })?;
                tracing::info!(keys = keys.len(), "loaded the identity provider's keys");
                Some(Jwks {
                    location: location.clone(),
                    client,
                    keys: RwLock::new(Arc::new(keys)),
                    refetched: tokio::sync::Mutex::new(None),
                })
            }
            None => None,
        };
        anyhow::ensure!(
            secret.is_some() || jwks.is_some(),
            "customer tokens need SHOP__AUTH__JWT_SECRET or SHOP__AUTH__JWKS_URL"
        );
        anyhow::ensure!(
            settings.leeway_secs <= MAX_LEEWAY_SECS,
            "SHOP__AUTH__JWT_LEEWAY_SECS must be at most {MAX_LEEWAY_SECS}"
        );
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = settings.leeway_secs;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &settings.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &settings.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // Without a configured audience, `aud` is not checked.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let validations = std::iter::once(Algorithm::HS256)
            .chain(ASYMMETRIC)
            .map(|alg| Validation {
                algorithms: vec![alg],
                ..validation.clone()
            })
            .collect();
        Ok(Self {
            secret,
            jwks,
            validations,
            staff: settings.staff.clone(),
        })
    }

    /// Whom a token names, and whether it is a staff token, if it is
    /// genuine, current and meant for shop.
    pub async fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        if names_critical_extensions(token) {
            return Err(TokenError::Critical);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg == Algorithm::HS256 {
            let key = self.secret.as_ref().ok_or(TokenError::Algorithm)?;
            return self.check(token, key, Algorithm::HS256);
        }
        let jwks = self.jwks.as_ref().ok_or(TokenError::Algorithm)?;
        let (keys, index) = match jwks.find(&header) {
            Err(TokenError::UnknownKey) => {
                jwks.refetch_for(&header).await;
                jwks.find(&header)?
            }
            found => found?,
        };
        self.check(token, &keys[index].key, keys[index].alg)
    }

    fn check(
        &self,
        token: &str,
        key: &DecodingKey,
        alg: Algorithm,
    ) -> Result<Verified, TokenError> {
        let validation = self
            .validations
            .iter()
            .find(|v| v.algorithms == [alg])
            .ok_or(TokenError::Algorithm)?;
        let data =
            jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidIssuer => TokenError::Issuer,
                ErrorKind::InvalidAudience => TokenError::Audience,
                ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim.clone()),
                ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => TokenError::Algorithm,
                ErrorKind::InvalidSignature => TokenError::Signature,
                _ => TokenError::Malformed,
            })?;
        let sub = data
            .claims
            .sub
            .ok_or(TokenError::MissingClaim("sub".into()))?;
        let user = UserId::parse(&sub).map_err(|_| TokenError::Subject)?;
        let staff = self.staff.holds(&data.claims.other);
        // The audit log names the admin token `admin-token`: a staff token
        // of that name would pass for it there.
        if staff && user.as_str() == ADMIN_TOKEN_ACTOR {
            return Err(TokenError::ReservedSubject);
        }
        Ok(Verified { user, staff })
    }

    /// Fetches the JWKS again (the periodic refresh). Keeps the old keys when it fails.
    pub async fn refresh(&self) {
        if let Some(jwks) = &self.jwks {
            let _one_at_a_time = jwks.refetched.lock().await;
            jwks.fetch_now().await;
        }
    }

    pub fn uses_jwks(&self) -> bool {
        self.jwks.is_some()
    }
}

/// Whether the token's header has `crit`: the extensions it names must be
/// understood by whoever accepts the token (RFC 7515 section 4.1.11), and
/// shop understands none, so such a token is refused whatever it names.
fn names_critical_extensions(token: &str) -> bool {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|json| {
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&json).ok()
        })
        .is_some_and(|header| header.contains_key("crit"))
}

impl Jwks {
    /// The key for a token's header: by `kid`, or the only key for its algorithm when it has none.
    fn find(&self, header: &Header) -> Result<(Arc<Vec<PublicKey>>, usize), TokenError> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        let found = match &header.kid {
            Some(kid) => keys.iter().position(|k| k.kid.as_deref() == Some(kid)),
            None => {
                let mut same_alg = keys.iter().enumerate().filter(|(_, k)| k.alg == header.alg);
                match (same_alg.next(), same_alg.next()) {
                    (Some((i, _)), None) => Some(i),
                    _ => None,
                }
            }
        };
        match found {
            Some(i) if keys[i].alg == header.alg => Ok((keys, i)),
            Some(_) => Err(TokenError::Algorithm),
            None => Err(TokenError::UnknownKey),
        }
    }

    /// A token names a key we do not have: the provider may have rotated its
    /// keys. (At most once a second, so that made-up `kid`s cannot make shop
    /// hammer the provider.)
    async fn refetch_for(&self, header: &Header) {
        let mut refetched = self.refetched.lock().await;
        // Another request may have fetched while this one waited.
        if self.find(header).is_ok() || refetched.is_some_and(|at| at.elapsed() < MIN_REFETCH) {
            return;
        }
        *refetched = Some(Instant::now());
        self.fetch_now().await;
    }

    async fn fetch_now(&self) {
        match fetch(&self.client, &self.location).await {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "refreshed the identity provider's keys");
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
            }
            Err(error) => {
                tracing::warn!(%error, "could not refresh the identity provider's keys; keeping the previous ones");
            }
        }
    }
}

async fn fetch(
    client: &reqwest::Client,
    location: &JwksLocation,
) -> anyhow::Result<Vec<PublicKey>> {
    let body = match location {
        JwksLocation::File(path) => tokio::fs::read(path)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        JwksLocation::Url(url) => client
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?
            .to_vec(),
    };
    let set: JwkSet = serde_json::from_slice(&body)?;
    let keys = public_keys(&set);
    anyhow::ensure!(!keys.is_empty(), "the key set holds no usable signing key");
    Ok(keys)
}

/// The signing keys of a JWKS that shop can use, each with its algorithm:
/// the key's own `alg`, or the one its type and curve imply. Symmetric keys,
/// encryption keys and unsupported algorithms are skipped.
fn public_keys(set: &JwkSet) -> Vec<PublicKey> {
    let mut keys = Vec::new();
    for jwk in &set.keys {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let implied = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => Some(Algorithm::ES256),
                EllipticCurve::P384 => Some(Algorithm::ES384),
                _ => None,
            },
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                Some(Algorithm::EdDSA)
            }
            _ => None,
        };
        let alg = match jwk.common.key_algorithm {
            Some(alg) => asymmetric(alg),
            None => implied,
        };
        let family_fits = match (alg, &jwk.algorithm) {
            (Some(alg), AlgorithmParameters::RSA(_)) => matches!(
                alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
            (Some(alg), AlgorithmParameters::EllipticCurve(_)) => implied == Some(alg),
            (Some(alg), AlgorithmParameters::OctetKeyPair(_)) => alg == Algorithm::EdDSA,
            _ => false,
        };
        let (Some(alg), true) = (alg, family_fits) else {
            tracing::warn!(kid = ?jwk.common.key_id, "skipping a key of the JWKS that shop cannot verify with");
            continue;
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => keys.push(PublicKey {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            }),
            Err(error) => {
                tracing::warn!(kid = ?jwk.common.key_id, %error, "skipping a malformed key of the JWKS");
            }
        }
    }
    keys
}

/// The algorithms a JWKS key may be used with.
const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A JWK's `alg`, when it is one of [`ASYMMETRIC`].
fn asymmetric(alg: KeyAlgorithm) -> Option<Algorithm> {
    ASYMMETRIC
        .into_iter()
        .find(|a| KeyAlgorithm::from(*a) == alg)
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    iat: i64,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    /// The staff role, for a staff token.
    #[serde(flatten)]
    staff: serde_json::Map<String, serde_json::Value>,
}

/// Mints an HS256 token for `user`, valid for `ttl` (what `shop token` and
/// `serve --demo` print; a real deployment's tokens come from its identity
/// provider); with `staff`, a staff token (the role where that claim looks).
pub fn mint(
    secret: &SecretString,
    user: &UserId,
    ttl: Duration,
    issuer: Option<&str>,
    audience: Option<&str>,
    staff: Option<&StaffClaim>,
) -> anyhow::Result<String> {
    let now = chrono::Utc::now().timestamp();
    let claims = MintedClaims {
        sub: user.as_str(),
        iat: now,
        exp: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
        iss: issuer,
        aud: audience,
        staff: staff.map(StaffClaim::claims).unwrap_or_default(),
    };
    let key = EncodingKey::from_secret(secret.expose_secret().as_bytes());
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &key,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "unit-test-secret-0123456789abcdef";

    fn settings() -> TokenSettings {
        TokenSettings {
            secret: Some(SecretString::from(SECRET)),
            jwks: None,
            issuer: None,
            audience: None,
            leeway_secs: 30,
            staff: StaffClaim::default(),
        }
    }

    fn sign(claims: serde_json::Value, secret: &str, alg: Algorithm) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[tokio::test]
    async fn a_token_naming_critical_extensions_is_refused_though_its_signature_holds() {
        use base64::Engine as _;
        let b64 = |json: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
        };
        let claims = serde_json::json!({"sub": "alice", "exp": now() + 60});
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let signed = |header: serde_json::Value| {
            let message = format!("{}.{}", b64(header), b64(claims.clone()));
            let signature =
                jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
            format!("{message}.{signature}")
        };
        let verifier = TokenVerifier::load(&settings()).await.unwrap();
        let plain = signed(serde_json::json!({"alg": "HS256", "typ": "JWT"}));
        assert_eq!(
            verifier.verify(&plain).await.unwrap().user.as_str(),
            "alice"
        );
        let critical = signed(serde_json::json!({"alg": "HS256", "crit": ["exp"]}));
        assert!(matches!(
            verifier.verify(&critical).await,
            Err(TokenError::Critical)
        ));
    }

    #[tokio::test]
    async fn accepts_a_current_token_and_names_its_subject() {
        let v = TokenVerifier::load(&settings()).await.unwrap();
        let token = sign(
            serde_json::json!({"sub": "alice", "exp": now() + 60}),
            SECRET,
            Algorithm::HS256,
        );
        assert_eq!(v.verify(&token).await.unwrap().user.as_str(), "alice");
        let minted = mint(
            &SecretString::from(SECRET),
            &UserId::parse("bob").unwrap(),
            Duration::from_secs(60),
            None,
            None,
            None,
        )
        .unwrap();
        let verified = v.verify(&minted).await.unwrap();
        assert_eq!(verified.user.as_str(), "bob");
        assert!(!verified.staff, "a customer token");
    }

    #[tokio::test]
    async fn a_token_holding_the_staff_role_is_a_staff_token() {
        let mut s = settings();
        s.staff = StaffClaim::new("realm_access.roles", "shop-staff").unwrap();
        let v = TokenVerifier::load(&s).await.unwrap();
        let token = |claims: serde_json::Value| sign(claims, SECRET, Algorithm::HS256);
        let staff = token(
            serde_json::json!({"sub": "sam", "exp": now() + 60, "realm_access": {"roles": ["shop-staff"]}}),
        );
        assert_eq!(
            v.verify(&staff).await.unwrap(),
            Verified {
                user: UserId::parse("sam").unwrap(),
                staff: true
            }
        );
        let customer = token(
            serde_json::json!({"sub": "sam", "exp": now() + 60, "realm_access": {"roles": ["buyer"]}}),
        );
        assert!(!v.verify(&customer).await.unwrap().staff);
        // What `shop token --staff` mints is a staff token under the same settings.
        let minted = mint(
            &SecretString::from(SECRET),
            &UserId::parse("sam").unwrap(),
            Duration::from_secs(60),
            None,
            None,
            Some(&s.staff),
        )
        .unwrap();
        assert!(v.verify(&minted).await.unwrap().staff);
        // A staff token may not call itself what the audit log calls the admin token;
        // a customer of that name is only a customer.
        let impostor = token(
            serde_json::json!({"sub": "admin-token", "exp": now() + 60, "realm_access": {"roles": ["shop-staff"]}}),
        );
        assert_eq!(
            v.verify(&impostor).await.unwrap_err(),
            TokenError::ReservedSubject
        );
        let customer = token(serde_json::json!({"sub": "admin-token", "exp": now() + 60}));
        assert!(!v.verify(&customer).await.unwrap().staff);
    }

    #[tokio::test]
    async fn refuses_what_it_should() {
        let v = TokenVerifier::load(&settings()).await.unwrap();
        let cases = [
            (
                sign(
                    serde_json::json!({"sub": "a", "exp": now() - 31}),
                    SECRET,
                    Algorithm::HS256,
                ),
                TokenError::Expired,
            ),
            (
                sign(
                    serde_json::json!({"sub": "a", "exp": now() + 600, "nbf": now() + 120}),
                    SECRET,
                    Algorithm::HS256,
                ),
                TokenError::NotYetValid,
            ),
            (
                sign(
                    serde_json::json!({"sub": "a", "exp": now() + 60}),
                    "another-secret-0123456789abcdefgh",
                    Algorithm::HS256,
                ),
                TokenError::Signature,
            ),
            (
                sign(
                    serde_json::json!({"sub": "a", "exp": now() + 60}),
                    SECRET,
                    Algorithm::HS384,
                ),
                TokenError::Algorithm,
            ),
            (
                sign(
                    serde_json::json!({"exp": now() + 60}),
                    SECRET,
                    Algorithm::HS256,
                ),
                TokenError::MissingClaim("sub".into()),
            ),
            (
                sign(serde_json::json!({"sub": "a"}), SECRET, Algorithm::HS256),
                TokenError::MissingClaim("exp".into()),
            ),
            (
                sign(
                    serde_json::json!({"sub": "no spaces", "exp": now() + 60}),
                    SECRET,
                    Algorithm::HS256,
                ),
                TokenError::Subject,
            ),
            ("not.a.jwt".to_owned(), TokenError::Malformed),
            (
                "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.".to_owned(),
                TokenError::Malformed,
            ),
        ];
        for (token, expected) in cases {
            assert_eq!(v.verify(&token).await.unwrap_err(), expected, "{token}");
        }
        // Within the leeway, an expired token still passes.
        let token = sign(
            serde_json::json!({"sub": "a", "exp": now() - 5}),
            SECRET,
            Algorithm::HS256,
        );
        assert!(v.verify(&token).await.is_ok());
    }

    #[tokio::test]
    async fn checks_issuer_and_audience_when_set() {
        let mut s = settings();
        s.issuer = Some("https://id.example".into());
        s.audience = Some("shop".into());
        let v = TokenVerifier::load(&s).await.unwrap();
        let good = serde_json::json!({"sub": "a", "exp": now() + 60, "iss": "https://id.example", "aud": "shop"});
        assert!(
            v.verify(&sign(good.clone(), SECRET, Algorithm::HS256))
                .await
                .is_ok()
        );
        let mut wrong_iss = good.clone();
        wrong_iss["iss"] = "https://evil.example".into();
        assert_eq!(
            v.verify(&sign(wrong_iss, SECRET, Algorithm::HS256))
                .await
                .unwrap_err(),
            TokenError::Issuer
        );
        let mut wrong_aud = good.clone();
        wrong_aud["aud"] = "billing".into();
        assert_eq!(
            v.verify(&sign(wrong_aud, SECRET, Algorithm::HS256))
                .await
                .unwrap_err(),
            TokenError::Audience
        );
        let mut no_aud = good;
        no_aud.as_object_mut().unwrap().remove("aud");
        assert_eq!(
            v.verify(&sign(no_aud, SECRET, Algorithm::HS256))
                .await
                .unwrap_err(),
            TokenError::MissingClaim("aud".into())
        );
    }

    #[tokio::test]
    async fn refuses_short_secrets_and_wide_leeway() {
        let mut s = settings();
        s.secret = Some(SecretString::from("short"));
        assert!(TokenVerifier::load(&s).await.is_err());
        let mut s = settings();
        s.leeway_secs = 61;
        assert!(TokenVerifier::load(&s).await.is_err());
    }

    #[tokio::test]
    async fn a_jwks_file_verifies_with_each_key_under_its_own_algorithm() {
        let pem = include_str!("../../../../tests/fixtures/jwt/ed25519.pem");
        let key = EncodingKey::from_ed_pem(pem.as_bytes()).unwrap();
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::EdDSA).unwrap();
        jwk.common.key_id = Some("ed".into());
        let path = std::env::temp_dir().join(format!("shop-jwks-{}.json", std::process::id()));
        std::fs::write(
            &path,
            serde_json::to_vec(&JwkSet { keys: vec![jwk] }).unwrap(),
        )
        .unwrap();
        let mut s = settings();
        s.secret = None;
        s.jwks = Some(JwksLocation::parse(&format!("file://{}", path.display())).unwrap());
        let v = TokenVerifier::load(&s).await.unwrap();
        std::fs::remove_file(&path).unwrap();
        let claims = serde_json::json!({"sub": "carol", "exp": now() + 60});
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("ed".into());
        let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
        assert_eq!(v.verify(&token).await.unwrap().user.as_str(), "carol");
        // Without a kid, the only key of the token's algorithm is used.
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &key).unwrap();
        assert_eq!(v.verify(&token).await.unwrap().user.as_str(), "carol");
        // No secret is configured: HS256 is not accepted at all.
        let hs = sign(claims, SECRET, Algorithm::HS256);
        assert_eq!(v.verify(&hs).await.unwrap_err(), TokenError::Algorithm);
    }

    #[tokio::test]
    async fn an_unreadable_jwks_stops_the_start() {
        let mut s = settings();
        s.jwks = Some(JwksLocation::File(PathBuf::from("/nonexistent/jwks.json")));
        let error = TokenVerifier::load(&s).await.err().unwrap().to_string();
        assert!(error.contains("SHOP__AUTH__JWKS_URL"), "{error}");
    }

    #[test]
    fn jwks_locations() {
        assert!(JwksLocation::parse("https://id.example/.well-known/jwks.json").is_ok());
        assert!(JwksLocation::parse("http://127.0.0.1:9000/jwks").is_ok());
        assert!(JwksLocation::parse("http://localhost/jwks").is_ok());
        assert!(JwksLocation::parse("http://id.example/jwks").is_err());
        assert_eq!(
            JwksLocation::parse("file:///etc/shop/jwks.json").unwrap(),
            JwksLocation::File(PathBuf::from("/etc/shop/jwks.json"))
        );
    }
}

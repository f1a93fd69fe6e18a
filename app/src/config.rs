//! Configuration: built-in defaults < optional file (`--config FILE`) <
//! environment variables `SHOP__SECTION__KEY`, plus `DATABASE_URL`.

use std::path::Path;

use secrecy::SecretString;
use serde::Deserialize;
use shared_kernel::auth::token::JwksLocation;

/// Everything shop can be told.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub order: OrderSettings,
    pub payment: PaymentSettings,
    pub worker: WorkerSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrderSettings {
    /// Unpaid orders expire after this many seconds (`SHOP__ORDER__PAYMENT_TIMEOUT_SECS`).
    pub payment_timeout_secs: u64,
    /// How often the expiry sweep runs, in milliseconds (`SHOP__ORDER__EXPIRY_SWEEP_MS`).
    pub expiry_sweep_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PaymentSettings {
    /// Signs gateway notifications (`SHOP__PAYMENT__WEBHOOK_SECRET`); random per start when unset.
    pub webhook_secret: Option<SecretString>,
    /// Serve the sandbox gateway and its checkout page (`SHOP__PAYMENT__SANDBOX`).
    /// It lets anyone pay for free: production sets `false`.
    pub sandbox: bool,
    /// Where customers reach this server, for payment URLs (`SHOP__PAYMENT__PUBLIC_URL`);
    /// by default the listen address.
    pub public_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WorkerSettings {
    /// Whether this instance runs the background work: event delivery, the
    /// expiry sweep, the release of abandoned reservations
    /// (`SHOP__WORKER__ENABLED`). Any number of instances may run it at once.
    pub enabled: bool,
    /// How often the event dispatcher looks for work nobody woke it for, in
    /// milliseconds (`SHOP__WORKER__POLL_MS`): events of other instances, retries.
    pub poll_ms: u64,
    /// A stock reservation whose order never arrived is released this many
    /// seconds after its hold ended (`SHOP__WORKER__ABANDONED_RESERVATION_GRACE_SECS`).
    pub abandoned_reservation_grace_secs: u64,
    /// Handled events are deleted from the outbox after this many hours
    /// (`SHOP__WORKER__EVENT_RETENTION_HOURS`); pending ones are kept.
    pub event_retention_hours: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    /// Listen address (`SHOP__SERVER__BIND`).
    pub bind: String,
    /// Largest request body accepted, in bytes (`SHOP__SERVER__MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `DATABASE_URL`: `sqlite://PATH`, `postgres://...`.
    pub url: String,
    /// Connections in the read pool (`SHOP__DATABASE__POOL_SIZE`, 1 to 256).
    pub pool_size: u32,
    /// Writer connections that share commits between concurrent writes
    /// (`SHOP__DATABASE__WRITERS`, 1 to 32; PostgreSQL only: SQLite has one writer).
    pub writers: usize,
    /// The most writes one shared commit holds (`SHOP__DATABASE__MAX_BATCH`, 1 to 1000).
    pub max_batch: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// Bearer token of the admin routes (`SHOP__AUTH__ADMIN_TOKEN`); random per start when unset.
    pub admin_token: Option<SecretString>,
    /// HS256 secret of customer tokens, at least 32 bytes (`SHOP__AUTH__JWT_SECRET`).
    /// With neither it nor a JWKS, a random one is made per start.
    pub jwt_secret: Option<SecretString>,
    /// The identity provider's public keys (`SHOP__AUTH__JWKS_URL`): `https://...`
    /// (fetched at start, every `jwks_refresh_secs`, and when a token names an
    /// unknown key) or `file://...`.
    pub jwks_url: Option<String>,
    /// The `iss` customer tokens must carry, when set (`SHOP__AUTH__JWT_ISSUER`).
    pub jwt_issuer: Option<String>,
    /// The `aud` customer tokens must carry, when set (`SHOP__AUTH__JWT_AUDIENCE`).
    pub jwt_audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds (`SHOP__AUTH__JWT_LEEWAY_SECS`, 0 to 60).
    pub jwt_leeway_secs: u64,
    /// How often the JWKS is fetched again, in seconds (`SHOP__AUTH__JWKS_REFRESH_SECS`, 10 to 86400).
    pub jwks_refresh_secs: u64,
    /// Failed authentications one client address may make per minute before
    /// it is answered 429 (`SHOP__AUTH__FAILURES_PER_MINUTE`, 1 to 100000).
    pub failures_per_minute: u32,
}

impl AuthSettings {
    /// The HS256 secret of customer tokens, when one is set (an empty value counts as unset).
    pub fn hs256_secret(&self) -> Option<SecretString> {
        self.jwt_secret
            .clone()
            .filter(|s| !secrecy::ExposeSecret::expose_secret(s).is_empty())
    }

    /// Whether customer tokens are verified with a JWKS.
    pub fn has_jwks(&self) -> bool {
        present(&self.jwks_url).is_some()
    }

    /// Where the identity provider's keys are, when a JWKS is set.
    pub fn jwks(&self) -> anyhow::Result<Option<JwksLocation>> {
        present(&self.jwks_url)
            .map(|url| JwksLocation::parse(url).map_err(|e| anyhow::anyhow!("auth.jwks_url {e}")))
            .transpose()
    }

    /// The `iss` customer tokens must carry, when set.
    pub fn issuer(&self) -> Option<&str> {
        present(&self.jwt_issuer)
    }

    /// The `aud` customer tokens must carry, when set.
    pub fn audience(&self) -> Option<&str> {
        present(&self.jwt_audience)
    }
}

/// A setting's value, unless it is unset or empty (`SHOP__AUTH__JWT_ISSUER=` unsets it).
fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object a line, for Logstash or Filebeat.
    Json,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    /// `SHOP__LOG__FORMAT`: `pretty` (default) or `json`.
    pub format: LogFormat,
}

/// The built-in defaults, as a TOML document: the first layer.
pub const DEFAULTS: &str = r#"
[server]
bind = "127.0.0.1:8080"
max_body_bytes = 65536

[database]
url = "sqlite://data/shop.db"
pool_size = 10
writers = 2
max_batch = 64

[auth]
jwt_leeway_secs = 30
jwks_refresh_secs = 300
failures_per_minute = 20

[order]
payment_timeout_secs = 900
expiry_sweep_ms = 250

[payment]
sandbox = true

[worker]
enabled = true
poll_ms = 500
abandoned_reservation_grace_secs = 600
event_retention_hours = 168

[log]
format = "pretty"
"#;

impl Settings {
    /// Reads the layers from the process environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_from(file, std::env::vars())
    }

    /// Reads the layers with the given environment (tests pass their own).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let env: std::collections::HashMap<String, String> = env.into_iter().collect();
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).required(true));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("SHOP")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(
                    env.clone()
                        .into_iter()
                        .filter(|(k, _)| k.starts_with("SHOP__"))
                        .collect(),
                )),
        );
        if let Some(url) = env.get("DATABASE_URL").filter(|u| !u.is_empty()) {
            builder = builder.set_override("database.url", url.as_str())?;
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        if !(1..=256).contains(&settings.database.pool_size) {
            anyhow::bail!("database.pool_size must be 1 to 256");
        }
        if !(1..=32).contains(&settings.database.writers) {
            anyhow::bail!("database.writers must be 1 to 32");
        }
        if !(1..=1000).contains(&settings.database.max_batch) {
            anyhow::bail!("database.max_batch must be 1 to 1000");
        }
        if settings.auth.jwt_leeway_secs > 60 {
            anyhow::bail!("auth.jwt_leeway_secs must be 0 to 60");
        }
        if !(10..=86_400).contains(&settings.auth.jwks_refresh_secs) {
            anyhow::bail!("auth.jwks_refresh_secs must be 10 to 86400");
        }
        if !(1..=100_000).contains(&settings.auth.failures_per_minute) {
            anyhow::bail!("auth.failures_per_minute must be 1 to 100000");
        }
        settings.auth.jwks()?;
        if settings.order.payment_timeout_secs == 0
            || settings.order.expiry_sweep_ms == 0
            || settings.worker.poll_ms == 0
        {
            anyhow::bail!(
                "order.payment_timeout_secs, order.expiry_sweep_ms and worker.poll_ms must be at least 1"
            );
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_no_setup() {
        let s = Settings::load_from(None, env(&[])).unwrap();
        assert_eq!(s.server.bind, "127.0.0.1:8080");
        assert_eq!(s.database.url, "sqlite://data/shop.db");
        assert!(s.auth.admin_token.is_none());
        assert_eq!(s.order.payment_timeout_secs, 900);
        assert!(s.worker.enabled);
        assert!(s.payment.sandbox);
        assert!(s.payment.webhook_secret.is_none());
        assert_eq!(s.log.format, LogFormat::Pretty);
    }

    #[test]
    fn environment_overrides_defaults() {
        let s = Settings::load_from(
            None,
            env(&[
                ("SHOP__SERVER__BIND", "0.0.0.0:9000"),
                ("SHOP__AUTH__ADMIN_TOKEN", "12345"),
                ("SHOP__LOG__FORMAT", "json"),
                ("SHOP__DATABASE__POOL_SIZE", "4"),
                ("SHOP__ORDER__PAYMENT_TIMEOUT_SECS", "60"),
                ("SHOP__WORKER__ENABLED", "false"),
                ("SHOP__PAYMENT__SANDBOX", "false"),
                ("SHOP__PAYMENT__WEBHOOK_SECRET", "whsec"),
                ("DATABASE_URL", "postgres://localhost/shop"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.bind, "0.0.0.0:9000");
        assert_eq!(s.auth.admin_token.unwrap().expose_secret(), "12345");
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.database.pool_size, 4);
        assert_eq!(s.order.payment_timeout_secs, 60);
        assert!(!s.worker.enabled);
        assert!(!s.payment.sandbox);
        assert_eq!(s.payment.webhook_secret.unwrap().expose_secret(), "whsec");
        assert_eq!(s.database.url, "postgres://localhost/shop");
    }

    #[test]
    fn a_file_sits_between_defaults_and_environment() {
        let path = std::env::temp_dir().join(format!("shop-config-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "[server]\nbind = \"127.0.0.1:7000\"\n[log]\nformat = \"json\"\n",
        )
        .unwrap();
        let s = Settings::load_from(Some(&path), env(&[("SHOP__LOG__FORMAT", "pretty")])).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(s.server.bind, "127.0.0.1:7000");
        assert_eq!(s.log.format, LogFormat::Pretty);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Settings::load_from(None, env(&[("SHOP__LOG__FORMAT", "xml")])).is_err());
        assert!(Settings::load_from(None, env(&[("SHOP__DATABASE__POOL_SIZE", "0")])).is_err());
        assert!(Settings::load_from(None, env(&[("SHOP__DATABASE__WRITERS", "0")])).is_err());
        assert!(Settings::load_from(None, env(&[("SHOP__DATABASE__WRITERS", "33")])).is_err());
        assert!(Settings::load_from(None, env(&[("SHOP__DATABASE__MAX_BATCH", "0")])).is_err());
    }
}

//! Configuration: built-in defaults < optional file (`--config FILE`) <
//! environment variables `SHOP__SECTION__KEY`, plus `DATABASE_URL`.

use std::path::Path;

use domain_payment::providers::alipay::settings::AlipaySettings;
use domain_payment::providers::wechat_pay::settings::WechatPaySettings;
use secrecy::SecretString;
use serde::Deserialize;
use shared_kernel::messaging::rabbitmq::RabbitSettings;
use shared_kernel::remote::adapters::RemoteSettings;
use shared_kernel::web::auth::StaffClaim;
use shared_kernel::web::auth::token::JwksLocation;
use shared_kernel::web::client::TrustedProxies;

use crate::contexts::{self, Contexts};

/// Everything shop can be told.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// The contexts this process runs (`SHOP__CONTEXTS`, `--contexts`): by default all three.
    pub contexts: Contexts,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub order: OrderSettings,
    pub payment: PaymentSettings,
    pub worker: WorkerSettings,
    pub log: LogSettings,
    pub ports: PortsSettings,
    pub bus: BusSettings,
}

/// How events travel between the contexts (`SHOP__BUS__*`).
#[derive(Debug, Clone, Deserialize)]
pub struct BusSettings {
    /// `SHOP__BUS__KIND`: `in_process` (the default: the outbox delivers to
    /// the subscribers that share its database) or `rabbitmq`.
    pub kind: BusKind,
    /// `SHOP__BUS__RABBITMQ_URL`, such as `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub rabbitmq_url: Option<SecretString>,
    /// `SHOP__BUS__EXCHANGE`: the topic exchange, and the prefix of the queues.
    pub exchange: String,
    /// `SHOP__BUS__MAX_ATTEMPTS`: attempts before a failing message is dead-lettered.
    pub max_attempts: u64,
    /// `SHOP__BUS__PREFETCH`: messages a consumer holds, and applies in one transaction.
    pub prefetch: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum BusKind {
    InProcess,
    Rabbitmq,
}

impl TryFrom<String> for BusKind {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.as_str() {
            "in_process" => Ok(Self::InProcess),
            "rabbitmq" => Ok(Self::Rabbitmq),
            other => Err(format!(
                "SHOP__BUS__KIND (bus.kind) must be `in_process` or `rabbitmq`; it is `{other}`"
            )),
        }
    }
}

impl BusSettings {
    /// How to reach RabbitMQ, when events travel through it.
    pub fn rabbitmq(&self) -> anyhow::Result<Option<RabbitSettings>> {
        if self.kind == BusKind::InProcess {
            return Ok(None);
        }
        let url = self
            .rabbitmq_url
            .clone()
            .filter(|u| !secrecy::ExposeSecret::expose_secret(u).is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!("SHOP__BUS__KIND is rabbitmq, so SHOP__BUS__RABBITMQ_URL must be set (amqp://user:password@host:5672/%2f)")
            })?;
        let scheme = secrecy::ExposeSecret::expose_secret(&url)
            .split_once("://")
            .map(|(scheme, _)| scheme.to_owned());
        if !matches!(scheme.as_deref(), Some("amqp" | "amqps")) {
            anyhow::bail!("SHOP__BUS__RABBITMQ_URL must be an amqp:// or amqps:// URL");
        }
        let exchange = self.exchange.as_str();
        if exchange.is_empty()
            || exchange.len() > 200
            || !exchange
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            anyhow::bail!(
                "SHOP__BUS__EXCHANGE (bus.exchange) must be 1 to 200 letters, digits, dots, dashes or underscores; it is {exchange:?}"
            );
        }
        Ok(Some(RabbitSettings {
            url,
            exchange: exchange.to_owned(),
            max_attempts: u32::try_from(self.max_attempts).unwrap_or(u32::MAX),
            prefetch: u16::try_from(self.prefetch).unwrap_or(u16::MAX),
        }))
    }
}

/// The ports over HTTP (split mode): where the contexts this process does not
/// run are served, and the token of the internal API (`SHOP__PORTS__*`).
#[derive(Debug, Clone, Deserialize)]
pub struct PortsSettings {
    /// The process that runs the product context (`SHOP__PORTS__PRODUCT_URL`):
    /// when set, orders reserve stock there, over HTTP.
    pub product_url: Option<String>,
    /// The process that runs the order context (`SHOP__PORTS__ORDER_URL`):
    /// when set, payments read orders there, over HTTP.
    pub order_url: Option<String>,
    /// The service token of the internal API (`SHOP__PORTS__TOKEN`): this
    /// process serves `/internal/v1` only when it is set, and presents it on
    /// its own calls. The same in every process.
    pub token: Option<SecretString>,
    /// The budget of one port call, its retries included, in milliseconds
    /// (`SHOP__PORTS__TIMEOUT_MS`).
    pub timeout_ms: u64,
}

/// The shortest service token accepted: it is the internal API's only
/// defence, so it must be too long to guess (its failures are also counted
/// by the failure limiter, which slows them and never refuses the right token).
pub const MIN_SERVICE_TOKEN_CHARS: usize = 16;

impl PortsSettings {
    /// Checks the service token's length, when one is set.
    fn check_token(&self) -> anyhow::Result<()> {
        let length = self.token().map_or(usize::MAX, |t| {
            secrecy::ExposeSecret::expose_secret(&t).chars().count()
        });
        if length < MIN_SERVICE_TOKEN_CHARS {
            anyhow::bail!(
                "SHOP__PORTS__TOKEN must be at least {MIN_SERVICE_TOKEN_CHARS} characters (a random secret, such as the output of `openssl rand -hex 32`); it is {length}"
            );
        }
        Ok(())
    }

    /// The service token, when one is set (an empty value counts as unset).
    pub fn token(&self) -> Option<SecretString> {
        self.token
            .clone()
            .filter(|s| !secrecy::ExposeSecret::expose_secret(s).is_empty())
    }

    /// The URL setting of the process that runs the context `name`.
    pub fn url_of(&self, name: &str) -> &Option<String> {
        const NONE: &Option<String> = &None;
        match name {
            "product" => &self.product_url,
            "order" => &self.order_url,
            _ => NONE,
        }
    }

    /// `SHOP__PORTS__PRODUCT_URL` for `product`.
    pub fn url_variable(name: &str) -> String {
        format!("SHOP__PORTS__{}_URL", name.to_ascii_uppercase())
    }

    /// How to call the process that runs the context `name`, when it runs elsewhere.
    pub fn remote(&self, name: &str) -> anyhow::Result<Option<RemoteSettings>> {
        let variable = Self::url_variable(name);
        let Some(raw) = present(self.url_of(name)) else {
            return Ok(None);
        };
        let base_url = url::Url::parse(raw)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                anyhow::anyhow!("{variable} must be an http:// or https:// URL; it is {raw:?}")
            })?;
        let token = self.token().ok_or_else(|| {
            anyhow::anyhow!("{variable} is set, so SHOP__PORTS__TOKEN must be set too (the same in every process)")
        })?;
        Ok(Some(RemoteSettings {
            base_url,
            token,
            timeout: std::time::Duration::from_millis(self.timeout_ms),
        }))
    }
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
    /// A payment whose notification has not come is asked about at its
    /// provider from this many seconds before its deadline
    /// (`SHOP__PAYMENT__RECONCILE_WINDOW_SECS`).
    pub reconcile_window_secs: u64,
    /// ... every this many seconds until the deadline (`SHOP__PAYMENT__QUERY_INTERVAL_SECS`).
    pub query_interval_secs: u64,
    /// Alipay (`SHOP__PAYMENT__ALIPAY__*`): when set, Alipay serves the `alipay` method.
    #[serde(default)]
    pub alipay: Option<AlipaySettings>,
    /// WeChat Pay (`SHOP__PAYMENT__WECHAT_PAY__*`): when set, it serves `wechat_pay`.
    #[serde(default)]
    pub wechat_pay: Option<WechatPaySettings>,
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
    /// A request's head, and then its body, must each arrive within this many
    /// milliseconds (`SHOP__SERVER__REQUEST_TIMEOUT_MS`); a slower one gets 408
    /// and its connection is closed.
    pub request_timeout_ms: u64,
    /// Open connections this process holds at once (`SHOP__SERVER__MAX_CONNECTIONS`);
    /// past it, new ones wait in the listen queue. Lowered at start to what
    /// the file-descriptor limit allows.
    pub max_connections: usize,
    /// Connections one client address may hold at once
    /// (`SHOP__SERVER__MAX_CONNECTIONS_PER_CLIENT`); a connection past it is
    /// answered 429 and closed. Through a trusted proxy, requests in flight
    /// for one forwarded client count instead.
    pub max_connections_per_client: usize,
    /// Reverse proxies whose `X-Forwarded-For` names the client
    /// (`SHOP__SERVER__TRUSTED_PROXIES`): addresses and CIDR networks,
    /// comma-separated; empty (the default) trusts none.
    pub trusted_proxies: String,
}

impl ServerSettings {
    /// The trusted proxies, parsed.
    pub fn trusted_proxies(&self) -> anyhow::Result<TrustedProxies> {
        TrustedProxies::parse(&self.trusted_proxies).map_err(|e| {
            anyhow::anyhow!("SHOP__SERVER__TRUSTED_PROXIES (server.trusted_proxies): {e}")
        })
    }
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
    /// The shared admin token (`SHOP__AUTH__ADMIN_TOKEN`), at least
    /// [`MIN_ADMIN_TOKEN_CHARS`] characters; random per start when unset.
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
    /// The dotted path of the claim that holds a staff token's roles
    /// (`SHOP__AUTH__STAFF_CLAIM`: `roles`, `realm_access.roles`, `scope`,
    /// `https://shop.example/roles`; see [`StaffClaim`]).
    pub staff_claim: String,
    /// The role that makes a token a staff token (`SHOP__AUTH__STAFF_ROLE`).
    pub staff_role: String,
}

/// The shortest admin token accepted: it opens every staff route, so it must
/// be too long to guess.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;

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

    /// What makes a token a staff token.
    pub fn staff(&self) -> anyhow::Result<StaffClaim> {
        StaffClaim::new(&self.staff_claim, &self.staff_role).map_err(|e| {
            let variable = match e {
                shared_kernel::web::auth::staff::StaffClaimError::Path => "SHOP__AUTH__STAFF_CLAIM",
                shared_kernel::web::auth::staff::StaffClaimError::Role => "SHOP__AUTH__STAFF_ROLE",
            };
            anyhow::anyhow!("{variable}: {e}")
        })
    }

    /// Checks the admin token's length, when one is set (an empty value
    /// counts as unset: a random one is made per start).
    fn check_admin_token(&self) -> anyhow::Result<()> {
        let length = self
            .admin_token
            .as_ref()
            .map(|t| secrecy::ExposeSecret::expose_secret(t).chars().count())
            .filter(|length| *length > 0)
            .unwrap_or(usize::MAX);
        if length < MIN_ADMIN_TOKEN_CHARS {
            anyhow::bail!(
                "SHOP__AUTH__ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_CHARS} characters (a random secret, such as the output of `openssl rand -hex 32`); it is {length}"
            );
        }
        Ok(())
    }
}

/// A setting's value, unless it is unset or empty (`SHOP__AUTH__JWT_ISSUER=` unsets it).
fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object a line, for Logstash or Filebeat.
    Json,
}

impl TryFrom<String> for LogFormat {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.as_str() {
            "pretty" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "SHOP__LOG__FORMAT (log.format) must be `pretty` or `json`; it is `{other}`"
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    /// `SHOP__LOG__FORMAT`: `pretty` (default) or `json`.
    pub format: LogFormat,
}

/// The built-in defaults, as a TOML document: the first layer.
pub const DEFAULTS: &str = r#"
contexts = "product,order,payment"

[server]
bind = "127.0.0.1:8080"
max_body_bytes = 65536
request_timeout_ms = 10000
max_connections = 10000
max_connections_per_client = 1000
trusted_proxies = ""

[database]
url = "sqlite://data/shop.db"
pool_size = 10
writers = 2
max_batch = 64

[auth]
jwt_leeway_secs = 30
jwks_refresh_secs = 300
failures_per_minute = 20
staff_claim = "roles"
staff_role = "shop-staff"

[order]
payment_timeout_secs = 900
expiry_sweep_ms = 250

[payment]
sandbox = true
reconcile_window_secs = 120
query_interval_secs = 15

[worker]
enabled = true
poll_ms = 500
abandoned_reservation_grace_secs = 600
event_retention_hours = 168

[log]
format = "pretty"

[ports]
timeout_ms = 2000

[bus]
kind = "in_process"
exchange = "shop.events"
max_attempts = 8
prefetch = 64
"#;

/// A numeric setting's accepted range: every numeric setting has one, and
/// a value outside it stops start-up with a message naming the setting.
pub struct Bound {
    /// The dotted key (`order.payment_timeout_secs`).
    pub key: &'static str,
    pub min: u64,
    pub max: u64,
    value: fn(&Settings) -> u64,
}

impl Bound {
    /// The environment variable that sets it (`SHOP__ORDER__PAYMENT_TIMEOUT_SECS`).
    pub fn variable(&self) -> String {
        format!("SHOP__{}", self.key.replace('.', "__").to_uppercase())
    }

    fn check(&self, settings: &Settings) -> anyhow::Result<()> {
        let value = (self.value)(settings);
        if (self.min..=self.max).contains(&value) {
            return Ok(());
        }
        anyhow::bail!(
            "{} ({}) must be {} to {}; it is {value}",
            self.variable(),
            self.key,
            self.min,
            self.max
        )
    }
}

const fn bound(key: &'static str, min: u64, max: u64, value: fn(&Settings) -> u64) -> Bound {
    Bound {
        key,
        min,
        max,
        value,
    }
}

/// Every numeric setting and its range (the README's settings table gives the same; a test compares them).
pub const BOUNDS: &[Bound] = &[
    bound("server.max_body_bytes", 1_024, 16 * 1_024 * 1_024, |s| {
        s.server.max_body_bytes as u64
    }),
    bound("server.request_timeout_ms", 100, 300_000, |s| {
        s.server.request_timeout_ms
    }),
    bound("server.max_connections", 16, 100_000, |s| {
        s.server.max_connections as u64
    }),
    bound("server.max_connections_per_client", 1, 100_000, |s| {
        s.server.max_connections_per_client as u64
    }),
    bound("database.pool_size", 1, 256, |s| {
        s.database.pool_size.into()
    }),
    bound("database.writers", 1, 32, |s| s.database.writers as u64),
    bound("database.max_batch", 1, 1_000, |s| {
        s.database.max_batch as u64
    }),
    bound("auth.jwt_leeway_secs", 0, 60, |s| s.auth.jwt_leeway_secs),
    bound("auth.jwks_refresh_secs", 10, 86_400, |s| {
        s.auth.jwks_refresh_secs
    }),
    bound("auth.failures_per_minute", 1, 100_000, |s| {
        s.auth.failures_per_minute.into()
    }),
    // Thirty days: longer than either real provider lets a trade stay open.
    bound("order.payment_timeout_secs", 1, 2_592_000, |s| {
        s.order.payment_timeout_secs
    }),
    bound("order.expiry_sweep_ms", 1, 60_000, |s| {
        s.order.expiry_sweep_ms
    }),
    bound("worker.poll_ms", 1, 60_000, |s| s.worker.poll_ms),
    bound("payment.reconcile_window_secs", 0, 86_400, |s| {
        s.payment.reconcile_window_secs
    }),
    bound("payment.query_interval_secs", 1, 3_600, |s| {
        s.payment.query_interval_secs
    }),
    bound("worker.abandoned_reservation_grace_secs", 0, 604_800, |s| {
        s.worker.abandoned_reservation_grace_secs
    }),
    bound("ports.timeout_ms", 50, 60_000, |s| s.ports.timeout_ms),
    bound("bus.max_attempts", 1, 100, |s| s.bus.max_attempts),
    bound("bus.prefetch", 1, 1_000, |s| s.bus.prefetch),
    // Ten years.
    bound("worker.event_retention_hours", 1, 87_600, |s| {
        s.worker.event_retention_hours
    }),
];

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
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        for bound in BOUNDS {
            bound.check(&settings)?;
        }
        if let Some(alipay) = settings.payment.alipay.as_mut() {
            alipay.protocol = Some(std::sync::Arc::new(alipay.load()?));
        }
        settings.auth.jwks()?;
        settings.auth.check_admin_token()?;
        settings.auth.staff()?;
        settings.server.trusted_proxies()?;
        settings.ports.check_token()?;
        for context in contexts::ALL {
            settings.ports.remote(context.name)?;
        }
        settings.bus.rabbitmq()?;
        Ok(settings)
    }

    /// Refuses contexts that cannot run as configured: each port a context
    /// needs is offered by a context it runs with, or by the process at
    /// `SHOP__PORTS__<CONTEXT>_URL` (the order context reserves stock with the
    /// product context, the payment context reads orders in the order
    /// context). When the offering context runs here and its URL is set too,
    /// the URL wins: the port goes over HTTP, as in a process that does not run it.
    pub fn check_contexts(&self) -> anyhow::Result<()> {
        let running = self.contexts;
        for context in running.iter() {
            for port in context.needs {
                let Some(offerer) = contexts::offering(*port) else {
                    anyhow::bail!(
                        "no context offers {}, which the {} context needs",
                        port.name(),
                        context.name
                    );
                };
                if !running.runs(offerer.name) && present(self.ports.url_of(offerer.name)).is_none()
                {
                    anyhow::bail!(
                        "the {} context needs the {} context, which this process does not run \
                         (contexts: {running}): run it here too (--contexts {running},{}) or set \
                         {} to the process that runs it",
                        context.name,
                        offerer.name,
                        offerer.name,
                        PortsSettings::url_variable(offerer.name),
                    );
                }
            }
        }
        Ok(())
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
    fn port_urls_need_the_service_token_and_an_http_url() {
        let s = Settings::load_from(None, env(&[])).unwrap();
        assert!(
            s.ports.remote("product").unwrap().is_none()
                && s.ports.remote("order").unwrap().is_none()
        );
        assert!(s.ports.token().is_none(), "no internal API by default");
        let error = Settings::load_from(
            None,
            env(&[("SHOP__PORTS__PRODUCT_URL", "http://product:8080")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("SHOP__PORTS__PRODUCT_URL") && error.contains("SHOP__PORTS__TOKEN"),
            "{error}"
        );
        for bad in ["product:8080", "ftp://product", "http://"] {
            let error = Settings::load_from(
                None,
                env(&[
                    ("SHOP__PORTS__ORDER_URL", bad),
                    ("SHOP__PORTS__TOKEN", "a-token-of-sixteen+"),
                ]),
            )
            .unwrap_err()
            .to_string();
            assert!(error.contains("SHOP__PORTS__ORDER_URL"), "{bad}: {error}");
        }
        let s = Settings::load_from(
            None,
            env(&[
                ("SHOP__PORTS__ORDER_URL", "https://order.internal/shop"),
                ("SHOP__PORTS__TOKEN", "a-token-of-sixteen+"),
                ("SHOP__PORTS__TIMEOUT_MS", "750"),
                ("SHOP__PORTS__PRODUCT_URL", ""),
            ]),
        )
        .unwrap();
        let order = s.ports.remote("order").unwrap().unwrap();
        assert_eq!(order.base_url.as_str(), "https://order.internal/shop");
        assert_eq!(order.timeout, std::time::Duration::from_millis(750));
        assert!(
            s.ports.remote("product").unwrap().is_none(),
            "an empty URL is unset"
        );
        let error = Settings::load_from(None, env(&[("SHOP__PORTS__TOKEN", "short-token")]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("SHOP__PORTS__TOKEN") && error.contains("at least 16"),
            "{error}"
        );
    }

    #[test]
    fn contexts_come_from_the_environment_and_are_checked() {
        let s = Settings::load_from(None, env(&[])).unwrap();
        assert!(s.contexts.is_all());
        s.check_contexts().unwrap();
        let s = Settings::load_from(None, env(&[("SHOP__CONTEXTS", "product")])).unwrap();
        assert_eq!(s.contexts.to_string(), "product");
        s.check_contexts().unwrap();
        for bad in ["", "products", "product,,order"] {
            let error = Settings::load_from(None, env(&[("SHOP__CONTEXTS", bad)]))
                .unwrap_err()
                .to_string();
            assert!(error.contains("SHOP__CONTEXTS"), "{bad:?}: {error}");
        }
        let order = Settings::load_from(None, env(&[("SHOP__CONTEXTS", "order")])).unwrap();
        let error = order.check_contexts().unwrap_err().to_string();
        assert!(
            error.contains("SHOP__PORTS__PRODUCT_URL") && error.contains("product context"),
            "{error}"
        );
        let payment =
            Settings::load_from(None, env(&[("SHOP__CONTEXTS", "payment,product")])).unwrap();
        let error = payment.check_contexts().unwrap_err().to_string();
        assert!(
            error.contains("SHOP__PORTS__ORDER_URL") && error.contains("order context"),
            "{error}"
        );
        Settings::load_from(
            None,
            env(&[
                ("SHOP__CONTEXTS", "payment"),
                ("SHOP__PORTS__ORDER_URL", "http://order:8080"),
                ("SHOP__PORTS__TOKEN", "a-token-of-sixteen+"),
            ]),
        )
        .unwrap()
        .check_contexts()
        .unwrap();
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
                ("SHOP__AUTH__ADMIN_TOKEN", "0123456789abcdef"),
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
        assert_eq!(
            s.auth.admin_token.unwrap().expose_secret(),
            "0123456789abcdef"
        );
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
    fn every_numeric_setting_is_bounded_and_named_when_refused() {
        let defaults = Settings::load_from(None, env(&[])).unwrap();
        for bound in BOUNDS {
            assert!(
                (bound.min..=bound.max).contains(&(bound.value)(&defaults)),
                "the default of {} is outside its bounds",
                bound.key
            );
            for outside in [bound.min.checked_sub(1), bound.max.checked_add(1)]
                .into_iter()
                .flatten()
            {
                let error = Settings::load_from(
                    None,
                    env(&[(bound.variable().as_str(), outside.to_string().as_str())]),
                )
                .expect_err(&format!("{} = {outside} was accepted", bound.key))
                .to_string();
                assert!(
                    error.contains(&bound.variable())
                        && error.contains(&format!("{} to {}", bound.min, bound.max)),
                    "{error}"
                );
            }
        }
        // The values of the report: an overflowing timeout and a retention that wrapped to "now".
        for (variable, value) in [
            ("SHOP__ORDER__PAYMENT_TIMEOUT_SECS", "9999999999999"),
            ("SHOP__WORKER__EVENT_RETENTION_HOURS", "5124095576030431"),
        ] {
            let error = Settings::load_from(None, env(&[(variable, value)])).unwrap_err();
            assert!(error.to_string().contains(variable), "{error}");
        }
    }

    #[test]
    fn every_numeric_setting_is_in_the_readme_with_its_bounds() {
        let readme = include_str!("../../README.md");
        for bound in BOUNDS {
            let row = readme
                .lines()
                .find(|line| line.starts_with(&format!("| `{}`", bound.variable())))
                .unwrap_or_else(|| {
                    panic!(
                        "the README's settings table has no row for {}",
                        bound.variable()
                    )
                });
            let range = format!("({} to {}", group(bound.min), group(bound.max));
            assert!(
                row.contains(&range),
                "the README's row for {} does not say {range}",
                bound.variable()
            );
        }
    }

    /// 86400 as the README writes it: 86,400.
    fn group(n: u64) -> String {
        let digits = n.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    }

    #[test]
    fn an_unknown_log_format_lists_the_accepted_ones() {
        let error = Settings::load_from(None, env(&[("SHOP__LOG__FORMAT", "xml")])).unwrap_err();
        let error = error.to_string();
        assert!(
            error.contains("pretty") && error.contains("json"),
            "{error}"
        );
    }

    fn fixture(name: &str) -> String {
        format!(
            "{}/../domain-payment/tests/fixtures/providers/{name}",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    /// The providers' own settings and their tests are in their folders
    /// (`domain_payment::providers::<name>::settings`); here, that their
    /// variables reach them and that Alipay's keys are loaded with the rest.
    #[test]
    fn the_providers_sections_are_read_from_their_variables() {
        let s = Settings::load_from(None, env(&[])).unwrap();
        assert!(s.payment.alipay.is_none() && s.payment.wechat_pay.is_none());
        let alipay_private = fixture("alipay_app_private_pkcs1.b64");
        let alipay_public = fixture("alipay_platform_public_spki.pem");
        let wechat_private = fixture("wechat_merchant_private_pkcs8.pem");
        let wechat_public = fixture("wechat_platform_public_spki.pem");
        let mut pairs = vec![
            ("SHOP__PAYMENT__ALIPAY__APP_ID", "2021000000000001"),
            (
                "SHOP__PAYMENT__ALIPAY__PRIVATE_KEY_PATH",
                alipay_private.as_str(),
            ),
            (
                "SHOP__PAYMENT__ALIPAY__ALIPAY_PUBLIC_KEY_PATH",
                alipay_public.as_str(),
            ),
            ("SHOP__PAYMENT__ALIPAY__SELLER_ID", "2088000000000002"),
            ("SHOP__PAYMENT__WECHAT_PAY__MCH_ID", "1900000001"),
            ("SHOP__PAYMENT__WECHAT_PAY__APP_ID", "wxd678efh567hg6787"),
            (
                "SHOP__PAYMENT__WECHAT_PAY__MERCHANT_SERIAL_NO",
                "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
            ),
            (
                "SHOP__PAYMENT__WECHAT_PAY__PRIVATE_KEY_PATH",
                wechat_private.as_str(),
            ),
            (
                "SHOP__PAYMENT__WECHAT_PAY__APIV3_KEY",
                "0123456789abcdefghijABCDEFGHIJ01",
            ),
            (
                "SHOP__PAYMENT__WECHAT_PAY__PUBLIC_KEY_PATH",
                wechat_public.as_str(),
            ),
            (
                "SHOP__PAYMENT__WECHAT_PAY__PUBLIC_KEY_ID",
                "PUB_KEY_ID_0119000000012025013100000000000001",
            ),
        ];
        let s = Settings::load_from(None, env(&pairs)).unwrap();
        let alipay = s.payment.alipay.unwrap().protocol.unwrap();
        assert_eq!(alipay.config().app_id, "2021000000000001");
        assert_eq!(
            alipay.config().seller_id.as_deref(),
            Some("2088000000000002")
        );
        let wechat_pay = s.payment.wechat_pay.unwrap().protocol;
        assert_eq!(wechat_pay.config().mch_id, "1900000001");
        // A bad setting stops the load, named.
        pairs.push((
            "SHOP__PAYMENT__ALIPAY__GATEWAY_URL",
            "ftp://example.com/gateway.do",
        ));
        let error = Settings::load_from(None, env(&pairs))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("SHOP__PAYMENT__ALIPAY__GATEWAY_URL"),
            "{error}"
        );
    }

    #[test]
    fn the_admin_token_is_long_enough_or_unset() {
        let error = Settings::load_from(None, env(&[("SHOP__AUTH__ADMIN_TOKEN", "let-me-in")]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("SHOP__AUTH__ADMIN_TOKEN") && error.contains("at least 16"),
            "{error}"
        );
        // Empty is unset: a random one per start.
        Settings::load_from(None, env(&[("SHOP__AUTH__ADMIN_TOKEN", "")])).unwrap();
    }

    #[test]
    fn the_staff_claim_and_role_are_read_and_checked() {
        let s = Settings::load_from(None, env(&[])).unwrap();
        assert_eq!(s.auth.staff().unwrap(), StaffClaim::default());
        let s = Settings::load_from(
            None,
            env(&[
                ("SHOP__AUTH__STAFF_CLAIM", "https://shop.example/roles"),
                ("SHOP__AUTH__STAFF_ROLE", "support"),
            ]),
        )
        .unwrap();
        let staff = s.auth.staff().unwrap();
        assert_eq!(
            (staff.path(), staff.role()),
            ("https://shop.example/roles", "support")
        );
        for (variable, bad) in [
            ("SHOP__AUTH__STAFF_CLAIM", ""),
            ("SHOP__AUTH__STAFF_CLAIM", "realm_access."),
            ("SHOP__AUTH__STAFF_ROLE", ""),
            ("SHOP__AUTH__STAFF_ROLE", "shop staff"),
        ] {
            let error = Settings::load_from(None, env(&[(variable, bad)]))
                .unwrap_err()
                .to_string();
            assert!(error.contains(variable), "{variable}={bad:?}: {error}");
        }
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

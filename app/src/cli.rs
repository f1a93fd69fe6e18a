//! The command line: `shop [serve [--demo]] | migrate | openapi | token --user ID [--staff] | unsubscribe NAME`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::contexts::Contexts;

/// shop: an e-commerce backend for products, orders and payments.
///
/// Configuration comes from built-in defaults, then the optional --config
/// file (TOML), then environment variables SHOP__SECTION__KEY (for example
/// SHOP__SERVER__BIND=0.0.0.0:8080, SHOP__AUTH__ADMIN_TOKEN, SHOP__LOG__FORMAT=json),
/// plus DATABASE_URL (default sqlite://data/shop.db; postgres://... for PostgreSQL).
#[derive(Debug, Parser)]
#[command(name = "shop", version, about, long_about)]
pub struct Cli {
    /// A TOML configuration file, layered between the defaults and the environment.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the HTTP server (the default). Migrations are applied first.
    Serve {
        /// Seed a small demo catalog into an empty database and print how to explore it.
        #[arg(long)]
        demo: bool,
        /// The contexts this process runs, comma-separated: product, order,
        /// payment (default all; overrides SHOP__CONTEXTS). It serves, migrates
        /// and works for those only; the order context without the product
        /// context needs SHOP__PORTS__PRODUCT_URL, the payment context without
        /// the order context SHOP__PORTS__ORDER_URL.
        #[arg(long, value_name = "LIST")]
        contexts: Option<Contexts>,
    },
    /// Apply pending database migrations, then exit.
    Migrate {
        /// Migrate the tables of these contexts only (and the event bus's),
        /// comma-separated: product, order, payment (default all; overrides SHOP__CONTEXTS).
        #[arg(long, value_name = "LIST")]
        contexts: Option<Contexts>,
    },
    /// Print the OpenAPI document (YAML); the same whatever the configuration.
    Openapi {
        /// Print the internal API's document instead (`/internal/v1`, the
        /// ports other shop processes call; `openapi-internal.yaml`).
        #[arg(long)]
        internal: bool,
    },
    /// Print a customer token (an HS256 JWT under SHOP__AUTH__JWT_SECRET) for trying
    /// shop out or for scripts; real customers get theirs from the identity provider.
    Token {
        /// The customer's user id (the token's `sub`).
        #[arg(long, value_name = "ID")]
        user: String,
        /// A staff token: the role SHOP__AUTH__STAFF_ROLE in the claim
        /// SHOP__AUTH__STAFF_CLAIM (the audit log names its holder by --user).
        #[arg(long)]
        staff: bool,
        /// How long the token is valid: seconds, or a number with s, m, h or d (at most 366d).
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: std::time::Duration,
    },
    /// Retire an event subscriber no version of shop runs any more: no
    /// delivery is written for it from now on, and its pending deliveries are
    /// dropped (a process that still runs it records it again when it starts).
    Unsubscribe {
        /// The subscriber's name, as in the `subscriber` label of the outbox metrics.
        #[arg(value_name = "NAME")]
        subscriber: String,
    },
}

/// `90`, `90s`, `15m`, `1h`, `7d`: 1 second to 366 days.
pub fn parse_ttl(raw: &str) -> Result<std::time::Duration, String> {
    let raw = raw.trim();
    let (digits, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => raw.split_at(at),
        None => (raw, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration such as 90s, 15m, 1h or 7d"))?;
    let seconds = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(|| format!("{raw:?} is not a duration such as 90s, 15m, 1h or 7d"))?;
    if !(1..=366 * 86_400).contains(&seconds) {
        return Err("a token is valid for 1 second to 366 days".into());
    }
    Ok(std::time::Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(604_800));
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("367d").is_err());
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("99999999999999999999d").is_err());
    }
}

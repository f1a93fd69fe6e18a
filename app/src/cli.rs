//! The command line: `shop [serve [--demo]] | migrate | openapi`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
    },
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Print the OpenAPI document (YAML); the same whatever the configuration.
    Openapi,
}

//! The command line: the one entry point of the `shop` binary.

use std::time::Duration;

use clap::Parser;
use secrecy::{ExposeSecret, SecretString};
use shared_kernel::web::auth::UserId;
use shared_kernel::web::auth::token;

use crate::cli::{Cli, Command};
use crate::config::Settings;
use crate::modules::Secrets;
use crate::startup::{self, Application};
use crate::{api, telemetry};

/// Parses the command line and runs the command (`serve` when none is given).
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve {
        demo: false,
        contexts: None,
    }) {
        Command::Openapi { internal } => {
            if internal {
                print!("{}", api::internal_openapi_yaml()?);
            } else {
                print!("{}", api::openapi_yaml()?);
            }
            Ok(())
        }
        Command::Migrate { contexts } => {
            let settings = settings_for(cli.config.as_deref(), contexts)?;
            telemetry::init(settings.log.format);
            actix_web::rt::System::new().block_on(async move {
                startup::open_database(&settings).await?;
                Ok(())
            })
        }
        Command::Unsubscribe { subscriber } => {
            let settings = Settings::load(cli.config.as_deref())?;
            telemetry::init(settings.log.format);
            actix_web::rt::System::new().block_on(async move {
                let db = startup::open_database(&settings).await?;
                let dropped = shared_kernel::messaging::outbox::unsubscribe(
                    &mut *db.get_blocking()?,
                    &subscriber,
                )?;
                println!("{subscriber}: unsubscribed; {dropped} pending deliveries dropped");
                Ok(())
            })
        }
        Command::Token { user, ttl, staff } => {
            let settings = Settings::load(cli.config.as_deref())?;
            println!("{}", mint(&settings, &user, ttl, staff)?);
            Ok(())
        }
        Command::Serve { demo, contexts } => {
            let settings = settings_for(cli.config.as_deref(), contexts)?;
            telemetry::init(settings.log.format);
            actix_web::rt::System::new().block_on(serve(settings, demo))
        }
    }
}

/// The settings, with `--contexts` (when given) over `SHOP__CONTEXTS`.
fn settings_for(
    file: Option<&std::path::Path>,
    contexts: Option<crate::contexts::Contexts>,
) -> anyhow::Result<Settings> {
    let mut settings = Settings::load(file)?;
    if let Some(contexts) = contexts {
        settings.contexts = contexts;
    }
    Ok(settings)
}

async fn serve(settings: Settings, demo: bool) -> anyhow::Result<()> {
    // Contexts that cannot run, then the address, are reported before the database is touched.
    settings.check_contexts()?;
    let listener = startup::listen(&settings)?;
    let db = startup::open_database(&settings).await?;
    let (admin_token, admin_generated) =
        startup::secret_or_random(settings.auth.admin_token.as_ref());
    let (webhook_secret, webhook_generated) =
        startup::secret_or_random(settings.payment.webhook_secret.as_ref());
    let (jwt_secret, jwt_generated) = jwt_secret(&settings);
    let secrets = Secrets {
        admin_token,
        webhook_secret,
        jwt_secret,
    };
    let app = Application::build_on(listener, &settings, db, &secrets).await?;
    if demo {
        if app.modules.has_demo() {
            let added = app.modules.seed_demo().await?;
            tracing::info!(added, "demo catalog seeded");
        } else {
            tracing::warn!("--demo seeds the catalog, which this process does not run");
        }
    }
    let base = app.urls().public.clone();
    tracing::info!(address = %settings.server.bind, port = app.port(), "listening");
    // Secrets shop generated are printed once, on stdout, and never logged;
    // those it was given are never printed (whoever set them has them).
    if admin_generated {
        announce(&format!(
            "Admin token (generated for this run; set SHOP__AUTH__ADMIN_TOKEN to fix it): {}",
            secrets.admin_token.expose_secret()
        ));
    } else if demo {
        announce("Admin token: the value of SHOP__AUTH__ADMIN_TOKEN");
    }
    if webhook_generated {
        announce(&format!(
            "Webhook secret (generated for this run; set SHOP__PAYMENT__WEBHOOK_SECRET to fix it): {}",
            secrets.webhook_secret.expose_secret()
        ));
    }
    if jwt_generated && let Some(secret) = &secrets.jwt_secret {
        announce(&format!(
            "Customer token secret (HS256, generated for this run; set SHOP__AUTH__JWT_SECRET to fix it): {}",
            secret.expose_secret()
        ));
    }
    if demo {
        announce(&format!("Swagger UI: {base}/swagger-ui/"));
        announce(&format!("Try: curl {base}/api/v1/products"));
        match &secrets.jwt_secret {
            Some(secret) => {
                let user = UserId::parse(DEMO_CUSTOMER).map_err(anyhow::Error::msg)?;
                let token = token::mint(
                    secret,
                    &user,
                    DEMO_TOKEN_TTL,
                    settings.auth.issuer(),
                    settings.auth.audience(),
                    None,
                )?;
                announce(&format!(
                    "Customer token for {DEMO_CUSTOMER} (valid 24 h): {token}"
                ));
            }
            None => {
                announce("Customer tokens come from the identity provider of SHOP__AUTH__JWKS_URL.")
            }
        }
    }
    app.run().await?;
    tracing::info!("stopped");
    Ok(())
}

/// The customer `serve --demo` prints a token for.
const DEMO_CUSTOMER: &str = "demo-customer";
const DEMO_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// The HS256 secret of customer tokens, and whether it was generated: the
/// configured one; none when only a JWKS is configured; else a random one
/// for this run.
fn jwt_secret(settings: &Settings) -> (Option<SecretString>, bool) {
    match settings.auth.hs256_secret() {
        Some(secret) => (Some(secret), false),
        None if settings.auth.has_jwks() => (None, false),
        None => {
            let (secret, generated) = startup::secret_or_random(None);
            (Some(secret), generated)
        }
    }
}

/// `shop token`: a token under the configured secret (with `staff`, a staff token).
fn mint(settings: &Settings, user: &str, ttl: Duration, staff: bool) -> anyhow::Result<String> {
    let user = UserId::parse(user).map_err(|e| anyhow::anyhow!("--user {e}"))?;
    anyhow::ensure!(
        !(staff && user.as_str() == shared_kernel::web::auth::ADMIN_TOKEN_ACTOR),
        "--user admin-token: the audit log calls the admin token so; a staff token may not be named that"
    );
    let staff = if staff {
        Some(settings.auth.staff()?)
    } else {
        None
    };
    let Some(secret) = settings.auth.hs256_secret() else {
        if settings.auth.has_jwks() {
            anyhow::bail!(
                "shop verifies customer tokens with the keys of SHOP__AUTH__JWKS_URL: tokens come from that identity provider. \
                 `shop token` signs with SHOP__AUTH__JWT_SECRET, which is not set."
            );
        }
        anyhow::bail!(
            "SHOP__AUTH__JWT_SECRET is not set: the server makes a random secret each start, which a token minted now would not match. \
             Set SHOP__AUTH__JWT_SECRET (at least {} bytes) for both the server and this command.",
            token::MIN_SECRET_BYTES
        );
    };
    anyhow::ensure!(
        secret.expose_secret().len() >= token::MIN_SECRET_BYTES,
        "SHOP__AUTH__JWT_SECRET must be at least {} bytes",
        token::MIN_SECRET_BYTES
    );
    token::mint(
        &secret,
        &user,
        ttl,
        settings.auth.issuer(),
        settings.auth.audience(),
        staff.as_ref(),
    )
}

/// A line for the person who started the server. A closed stdout is no reason to stop serving.
fn announce(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

//! The command line: the one entry point of the `shop` binary.

use clap::Parser;
use secrecy::ExposeSecret;

use crate::cli::{Cli, Command};
use crate::config::Settings;
use crate::startup::{self, Application, Secrets};
use crate::{api, telemetry};

/// Parses the command line and runs the command (`serve` when none is given).
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve { demo: false }) {
        Command::Openapi => {
            print!("{}", api::openapi_yaml()?);
            Ok(())
        }
        Command::Migrate => {
            let settings = Settings::load(cli.config.as_deref())?;
            telemetry::init(settings.log.format);
            actix_web::rt::System::new().block_on(async move {
                startup::open_database(&settings).await?;
                Ok(())
            })
        }
        Command::Serve { demo } => {
            let settings = Settings::load(cli.config.as_deref())?;
            telemetry::init(settings.log.format);
            actix_web::rt::System::new().block_on(serve(settings, demo))
        }
    }
}

async fn serve(settings: Settings, demo: bool) -> anyhow::Result<()> {
    let db = startup::open_database(&settings).await?;
    let (admin_token, admin_generated) =
        startup::secret_or_random(settings.auth.admin_token.as_ref());
    let (webhook_secret, webhook_generated) =
        startup::secret_or_random(settings.payment.webhook_secret.as_ref());
    let secrets = Secrets {
        admin_token,
        webhook_secret,
        jwt_secret: None,
    };
    let app = Application::build(&settings, db, &secrets).await?;
    if demo {
        let added = app.modules.catalog.seed_demo().await?;
        tracing::info!(added, "demo catalog seeded");
    }
    let base = app.urls().public.clone();
    tracing::info!(address = %settings.server.bind, port = app.port(), "listening");
    // Secrets are printed once, on stdout, and never logged.
    if admin_generated {
        announce(&format!(
            "Admin token (generated for this run; set SHOP__AUTH__ADMIN_TOKEN to fix it): {}",
            secrets.admin_token.expose_secret()
        ));
    } else if demo {
        announce(&format!(
            "Admin token: {}",
            secrets.admin_token.expose_secret()
        ));
    }
    if webhook_generated {
        announce(&format!(
            "Webhook secret (generated for this run; set SHOP__PAYMENT__WEBHOOK_SECRET to fix it): {}",
            secrets.webhook_secret.expose_secret()
        ));
    }
    if demo {
        announce(&format!("Swagger UI: {base}/swagger-ui/"));
        announce(&format!("Try: curl {base}/api/v1/products"));
    }
    app.run().await?;
    tracing::info!("stopped");
    Ok(())
}

/// A line for the person who started the server. A closed stdout is no reason to stop serving.
fn announce(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

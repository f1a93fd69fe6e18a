//! Wiring: the one place that builds every module and mounts it on one server.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{Compress, ErrorHandlers};
use actix_web::{App, HttpResponse, web};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use domain_order::OrderService;
use domain_product::{ProductCatalog, ProductInventory, StockReservations};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use shared_kernel::db::{self, DatabaseUrl, Db, Migrations, PoolOptions};
use shared_kernel::http::AdminToken;
use shared_kernel::outbox::{DispatchOptions, Dispatcher, EventBusBuilder, Outbox};
use tracing_actix_web::TracingLogger;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

use crate::api::{self, RouteTable};
use crate::config::Settings;
use crate::workers::Workers;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// The SQL migrations of every backend, embedded in the binary.
pub fn migrations() -> Migrations {
    Migrations {
        sqlite: SQLITE_MIGRATIONS,
        postgres: POSTGRES_MIGRATIONS,
    }
}

/// Opens the database named by the settings and brings its schema up to date.
pub async fn open_database(settings: &Settings) -> anyhow::Result<Db> {
    let url = DatabaseUrl::parse(&settings.database.url)?;
    let options = PoolOptions {
        max_size: settings.database.pool_size,
        ..PoolOptions::default()
    };
    let db = tokio::task::spawn_blocking(move || -> anyhow::Result<Db> {
        let db = Db::connect(&url, &options)?;
        let applied = db::run_migrations(&mut *db.get_blocking()?, migrations())?;
        if !applied.is_empty() {
            tracing::info!(?applied, "migrations applied");
        }
        tracing::info!(database = %url.redacted(), "database ready");
        Ok(db)
    })
    .await??;
    Ok(db)
}

/// The admin token, and whether it was generated for this run.
pub fn admin_token(settings: &Settings) -> (SecretString, bool) {
    match &settings.auth.admin_token {
        Some(token) if !token.expose_secret().is_empty() => (token.clone(), false),
        _ => (SecretString::from(random_token()), true),
    }
}

fn random_token() -> String {
    let bytes: [u8; 24] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every module of the app, built once and shared by the server's workers.
#[derive(Clone)]
pub struct Modules {
    pub db: Db,
    pub catalog: ProductCatalog,
    pub inventory: ProductInventory,
    pub orders: OrderService,
    pub outbox: Outbox,
    pub dispatcher: Dispatcher,
    pub admin_token: AdminToken,
}

impl Modules {
    /// Wires the contexts: the order context reserves stock through the
    /// product context's `Inventory`, and every subscriber is registered on the event bus.
    pub fn new(db: Db, settings: &Settings, admin_token: SecretString) -> Self {
        let dispatch = DispatchOptions {
            poll_interval: Duration::from_millis(settings.worker.poll_ms),
            ..Default::default()
        };
        let (outbox, dispatcher) = EventBusBuilder::default()
            .subscribe(
                StockReservations::NAME,
                StockReservations::EVENTS,
                Arc::new(StockReservations),
            )
            .build(db.clone(), dispatch);
        let inventory = ProductInventory::new(db.clone());
        let orders = OrderService::new(
            db.clone(),
            outbox.clone(),
            Arc::new(inventory.clone()),
            Duration::from_secs(settings.order.payment_timeout_secs),
        );
        Self {
            catalog: ProductCatalog::new(db.clone()),
            inventory,
            orders,
            outbox,
            dispatcher,
            db,
            admin_token: AdminToken::new(admin_token),
        }
    }
}

/// A bound, not yet running, server.
pub struct Application {
    port: u16,
    server: Server,
    workers: Option<Workers>,
    pub modules: Modules,
}

impl Application {
    /// Binds the configured address (port 0 picks a free one) and builds the server.
    pub fn build(settings: &Settings, modules: Modules) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(&settings.server.bind)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.server.bind))?;
        let port = listener.local_addr()?.port();
        let doc = api::openapi();
        let routes = web::Data::new(RouteTable::from_openapi(&doc));
        let max_body = settings.server.max_body_bytes;
        let state = modules.clone();
        let server = actix_web::HttpServer::new(move || {
            let (app, _) = api::mount(App::new().into_utoipa_app()).split_for_parts();
            app.app_data(web::Data::new(state.db.clone()))
                .app_data(web::Data::new(state.catalog.clone()))
                .app_data(web::Data::new(state.orders.clone()))
                .app_data(web::Data::new(state.admin_token.clone()))
                .app_data(web::PayloadConfig::new(max_body))
                .app_data(routes.clone())
                .service(web::redirect("/swagger-ui", "/swagger-ui/"))
                .service(
                    SwaggerUi::new("/swagger-ui/{_:.*}").url("/api-docs/openapi.json", doc.clone()),
                )
                .route(
                    "/",
                    web::get().to(|| async {
                        HttpResponse::Found()
                            .insert_header(("Location", "/swagger-ui/"))
                            .finish()
                    }),
                )
                .default_service(web::to(api::fallback))
                .wrap(ErrorHandlers::new().default_handler(api::into_problem))
                .wrap(Compress::default())
                .wrap(TracingLogger::default())
        })
        .listen(listener)?
        .run();
        let workers = settings
            .worker
            .enabled
            .then(|| Workers::start(&modules, settings));
        Ok(Self {
            port,
            server,
            workers,
            modules,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the server is stopped (SIGTERM or Ctrl-C stops it
    /// gracefully), then stops the background work.
    pub async fn run(self) -> std::io::Result<()> {
        let served = self.server.await;
        if let Some(workers) = self.workers {
            workers.stop().await;
        }
        served
    }

    /// A handle that can stop the server.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }
}

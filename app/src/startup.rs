//! The server: the database opened and migrated for the contexts a process
//! runs, what they run started ([`crate::modules`]), and one HTTP server that
//! mounts their routes (each context describes itself: [`contexts::ALL`]),
//! with the background workers beside it.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{Compress, ErrorHandlers, from_fn};
use actix_web::{App, HttpResponse, web};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use shared_kernel::audit;
use shared_kernel::context::Stop;
use shared_kernel::messaging::outbox;
use shared_kernel::messaging::rabbitmq::{RabbitMq, Subscription};
use shared_kernel::storage::db::{self, DatabaseUrl, Db, Migrations, PoolOptions};
use shared_kernel::web::auth::TokenVerifier;
use shared_kernel::web::auth::token::TokenSettings;
use tracing_actix_web::TracingLogger;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::{Config as SwaggerConfig, SwaggerUi};

use crate::api::{self, RouteTable};
use crate::config::Settings;
use crate::contexts::{self, Contexts};
use crate::limits;
use crate::modules::{Modules, Secrets, Urls};
use crate::observability::{self, RequestSpan};
use crate::workers::Workers;

/// Every subscriber of every context, and the event types it takes: the
/// queues a message broker must hold before the first event is published
/// (each process declares them all, whichever contexts it runs).
pub fn subscriptions() -> Vec<Subscription> {
    contexts::ALL
        .iter()
        .flat_map(|context| context.subscribers)
        .map(|subscriber| (subscriber.name, subscriber.events))
        .collect()
}

/// The SQL migrations of every backend and every context, embedded in the binary.
pub fn migrations() -> Migrations {
    migrations_for(Contexts::ALL)
}

/// The SQL migrations of the event bus, the audit log and `contexts`, for every backend.
pub fn migrations_for(contexts: Contexts) -> Migrations {
    Migrations::of(
        [&outbox::MIGRATIONS, &audit::MIGRATIONS]
            .into_iter()
            .chain(contexts.iter().map(|c| &c.migrations)),
    )
}

/// Opens the database named by the settings and brings the schema of the
/// settings' contexts up to date.
pub async fn open_database(settings: &Settings) -> anyhow::Result<Db> {
    let url = DatabaseUrl::parse(&settings.database.url)?;
    let options = PoolOptions {
        max_size: settings.database.pool_size,
        writers: settings.database.writers,
        max_batch: settings.database.max_batch,
        ..PoolOptions::default()
    };
    let contexts = settings.contexts;
    let db = tokio::task::spawn_blocking(move || -> anyhow::Result<Db> {
        let db = Db::connect(&url, &options)?;
        let applied = db::run_migrations(&mut *db.get_blocking()?, migrations_for(contexts))?;
        if !applied.is_empty() {
            tracing::info!(?applied, "migrations applied");
        }
        tracing::info!(database = %url.redacted(), %contexts, "database ready");
        Ok(db)
    })
    .await??;
    Ok(db)
}

/// Binds the configured address (`SHOP__SERVER__BIND`; port 0 picks a free one).
pub fn listen(settings: &Settings) -> anyhow::Result<TcpListener> {
    TcpListener::bind(&settings.server.bind).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {} (SHOP__SERVER__BIND): {e}",
            settings.server.bind
        )
    })
}

/// A secret from the settings, or a random one for this run (and whether it was generated).
pub fn secret_or_random(configured: Option<&SecretString>) -> (SecretString, bool) {
    match configured {
        Some(secret) if !secret.expose_secret().is_empty() => (secret.clone(), false),
        _ => (SecretString::from(random_token()), true),
    }
}

fn random_token() -> String {
    let bytes: [u8; 24] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks bearer JWTs (customers' and staff members') as the settings say, with the run's HS256 secret
/// (a JWKS is fetched now: shop does not start without its keys).
pub async fn token_verifier(
    settings: &Settings,
    secrets: &Secrets,
) -> anyhow::Result<Arc<TokenVerifier>> {
    let verifier = TokenVerifier::load(&TokenSettings {
        secret: secrets.jwt_secret.clone(),
        jwks: settings.auth.jwks()?,
        issuer: settings.auth.issuer().map(str::to_owned),
        audience: settings.auth.audience().map(str::to_owned),
        leeway_secs: settings.auth.jwt_leeway_secs,
        staff: settings.auth.staff()?,
    })
    .await?;
    Ok(Arc::new(verifier))
}

/// The message broker, when events travel through RabbitMQ
/// (`SHOP__BUS__KIND=rabbitmq`): connected, with every context's queue declared.
async fn connect_broker(settings: &Settings) -> anyhow::Result<Option<Arc<RabbitMq>>> {
    let Some(rabbitmq) = settings.bus.rabbitmq()? else {
        return Ok(None);
    };
    let exchange = rabbitmq.exchange.clone();
    let broker = RabbitMq::connect(rabbitmq, &subscriptions())
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach RabbitMQ (SHOP__BUS__RABBITMQ_URL): {e:#}"))?;
    tracing::info!(%exchange, "events travel through RabbitMQ");
    Ok(Some(broker))
}

/// Fetches the identity provider's keys again every `every`.
fn refresh_keys(tokens: Arc<TokenVerifier>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            tokens.refresh().await;
        }
    })
}

/// What every HTTP worker serves: the routes of the contexts this process
/// runs (their document, and the table that tells 404 from 405), the
/// internal API, Swagger UI, and the middleware around them all.
#[derive(Clone)]
struct Site {
    modules: Modules,
    routes: web::Data<RouteTable>,
    document: web::Bytes,
    max_body: usize,
    request_timeout: Duration,
    /// The connections and requests each client holds, and who its client is.
    peers: limits::PeerConnections,
}

impl Site {
    fn new(
        modules: &Modules,
        settings: &Settings,
        peers: limits::PeerConnections,
    ) -> anyhow::Result<Self> {
        // The routes of the contexts this process runs: any other path is an unknown one (404).
        let served = api::openapi_for(modules.contexts);
        Ok(Self {
            modules: modules.clone(),
            routes: web::Data::new(RouteTable::from_openapi(&served)),
            document: web::Bytes::from(serde_json::to_vec(&api::document_of(served))?),
            max_body: settings.server.max_body_bytes,
            request_timeout: Duration::from_millis(settings.server.request_timeout_ms),
            peers,
        })
    }

    /// One HTTP worker's app.
    fn app(
        &self,
    ) -> App<
        impl actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody + use<>>,
            Error = actix_web::Error,
            InitError = (),
        > + use<>,
    > {
        let state = &self.modules;
        let contexts = state.contexts;
        let mut app = api::mount(App::new().into_utoipa_app(), contexts);
        if let Some(token) = &state.internal {
            app = api::mount_internal(app.app_data(token.clone()), contexts);
        }
        let (app, _) = app.split_for_parts();
        let document = self.document.clone();
        let request_timeout = self.request_timeout;
        let peers = self.peers.clone();
        app.app_data(web::Data::new(state.db.clone()))
            .app_data(state.auth.clone())
            .app_data(web::PayloadConfig::new(self.max_body))
            .app_data(self.routes.clone())
            .configure(|cfg| state.serve(cfg))
            .service(web::redirect("/swagger-ui", "/swagger-ui/"))
            .route(
                "/api-docs/openapi.json",
                web::get().to(move || {
                    let document = document.clone();
                    async move {
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body(document)
                    }
                }),
            )
            .service(
                SwaggerUi::new("/swagger-ui/{_:.*}")
                    .config(SwaggerConfig::new(["/api-docs/openapi.json"]).validator_url("none")),
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
            .wrap(from_fn(api::head_as_get))
            .wrap(ErrorHandlers::new().default_handler(api::into_problem))
            .wrap(Compress::default())
            .wrap(TracingLogger::<RequestSpan>::new())
            .wrap(from_fn(move |req, next| {
                limits::body_deadline(request_timeout, req, next)
            }))
            .wrap(from_fn(move |req, next| {
                limits::refuse_crowding(peers.clone(), req, next)
            }))
            .wrap(from_fn(observability::observe))
    }
}

/// A bound, not yet running, server.
pub struct Application {
    port: u16,
    urls: Urls,
    server: Server,
    workers: Option<Workers>,
    /// Stops the background work the contexts started with themselves.
    stops: Vec<Stop>,
    /// Fetches the identity provider's keys again, now and then.
    key_refresh: Option<tokio::task::JoinHandle<()>>,
    pub modules: Modules,
}

impl Application {
    /// Binds the configured address (port 0 picks a free one) and builds the
    /// server (with a JWKS configured, after fetching it).
    pub async fn build(settings: &Settings, db: Db, secrets: &Secrets) -> anyhow::Result<Self> {
        Self::build_on(listen(settings)?, settings, db, secrets).await
    }

    /// Builds the server on a listener already bound with [`listen`].
    pub async fn build_on(
        listener: TcpListener,
        settings: &Settings,
        db: Db,
        secrets: &Secrets,
    ) -> anyhow::Result<Self> {
        let tokens = token_verifier(settings, secrets).await?;
        let port = listener.local_addr()?.port();
        let urls = Urls::for_listener(&listener, settings)?;
        observability::metrics();
        let broker = connect_broker(settings).await?;
        let (modules, stops) = Modules::new(db, settings, secrets, tokens, &urls, broker)?;
        tracing::info!(contexts = %modules.contexts, "contexts run by this process");
        let peers = limits::PeerConnections::new(
            settings.server.max_connections_per_client,
            settings.server.trusted_proxies()?,
        );
        let site = Site::new(&modules, settings, peers.clone())?;
        let request_timeout = site.request_timeout;
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let connections = limits::connection_budget(settings.server.max_connections);
        let server = actix_web::HttpServer::new(move || site.app())
            .on_connect(move |connection, data| peers.on_connect(connection, data))
            .workers(threads)
            // actix counts connections per worker thread.
            .max_connections(connections.div_ceil(threads))
            .client_request_timeout(request_timeout)
            .listen(listener)?
            .run();
        let workers = settings
            .worker
            .enabled
            .then(|| Workers::start(&modules, settings));
        let key_refresh = modules.tokens.uses_jwks().then(|| {
            refresh_keys(
                modules.tokens.clone(),
                Duration::from_secs(settings.auth.jwks_refresh_secs),
            )
        });
        Ok(Self {
            port,
            urls,
            server,
            workers,
            stops,
            key_refresh,
            modules,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn urls(&self) -> &Urls {
        &self.urls
    }

    /// Serves until the server is stopped (SIGTERM or Ctrl-C stops it
    /// gracefully), then stops the background work.
    pub async fn run(self) -> std::io::Result<()> {
        let served = self.server.await;
        if let Some(workers) = self.workers {
            workers.stop().await;
        }
        for stop in self.stops {
            stop().await;
        }
        if let Some(refresh) = self.key_refresh {
            refresh.abort();
        }
        served
    }

    /// A handle that can stop the server.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }
}

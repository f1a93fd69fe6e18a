//! Wiring: the one place that builds every module and mounts it on one server.

use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{Compress, ErrorHandlers, from_fn};
use actix_web::{App, HttpResponse, web};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use domain_order::{OrderDirectory, OrderService, PaymentOutcomes};
use domain_payment::model::PaymentMethod;
use domain_payment::providers::alipay::gateway::AlipayGateway;
use domain_payment::service::Reconciliation;
use domain_payment::signature::ShopSignature;
use domain_payment::{
    CheckoutLinks, Gateways, PaymentService, Refunds, SandboxCheckout, SandboxGateway,
    SandboxTrades, TradeClosing, WechatPayGateway,
};
use domain_product::cache::{InvalidatingInventory, Invalidator};
use domain_product::{ProductCatalog, ProductInventory, StockReservations};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use shared_kernel::auth::token::TokenSettings;
use shared_kernel::auth::{AdminToken, Authenticator, FailureLimiter, TokenVerifier};
use shared_kernel::db::{self, DatabaseUrl, Db, Migrations, PoolOptions};
use shared_kernel::outbox::{DispatchOptions, Dispatcher, EventBusBuilder, Outbox};
use shared_kernel::ports::internal::ServiceToken;
use shared_kernel::ports::remote::{RemoteInventory, RemoteOrderLookup};
use shared_kernel::ports::{Inventory, OrderLookup, PaymentGateway};
use shared_kernel::rabbitmq::RabbitMq;
use tracing_actix_web::TracingLogger;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::{Config as SwaggerConfig, SwaggerUi};

use crate::api::{self, RouteTable};
use crate::config::Settings;
use crate::contexts::{Context, Contexts};
use crate::limits;
use crate::observability::{self, RequestSpan};
use crate::workers::Workers;

/// Every subscriber of every context, and the event types it takes: the
/// queues a message broker must hold before the first event is published
/// (each process declares them all, whichever contexts it runs).
pub const SUBSCRIPTIONS: &[shared_kernel::rabbitmq::Subscription] = &[
    (StockReservations::NAME, StockReservations::EVENTS),
    (PaymentOutcomes::NAME, PaymentOutcomes::EVENTS),
    (Refunds::NAME, Refunds::EVENTS),
    (TradeClosing::NAME, TradeClosing::EVENTS),
];

/// The migrations of one backend: the event bus's tables (every process
/// needs them), then each context's.
struct Groups {
    bus: &'static EmbeddedMigrations,
    product: &'static EmbeddedMigrations,
    order: &'static EmbeddedMigrations,
    payment: &'static EmbeddedMigrations,
}

impl Groups {
    /// The bus's migrations and those of `contexts`.
    fn for_contexts(&self, contexts: Contexts) -> Vec<&'static EmbeddedMigrations> {
        let mut sources = vec![self.bus];
        sources.extend(contexts.iter().map(|context| match context {
            Context::Product => self.product,
            Context::Order => self.order,
            Context::Payment => self.payment,
        }));
        sources
    }
}

static SQLITE_BUS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite/bus");
static SQLITE_PRODUCT: EmbeddedMigrations = embed_migrations!("../migrations/sqlite/product");
static SQLITE_ORDER: EmbeddedMigrations = embed_migrations!("../migrations/sqlite/order");
static SQLITE_PAYMENT: EmbeddedMigrations = embed_migrations!("../migrations/sqlite/payment");
const SQLITE: Groups = Groups {
    bus: &SQLITE_BUS,
    product: &SQLITE_PRODUCT,
    order: &SQLITE_ORDER,
    payment: &SQLITE_PAYMENT,
};
static POSTGRES_BUS: EmbeddedMigrations = embed_migrations!("../migrations/postgres/bus");
static POSTGRES_PRODUCT: EmbeddedMigrations = embed_migrations!("../migrations/postgres/product");
static POSTGRES_ORDER: EmbeddedMigrations = embed_migrations!("../migrations/postgres/order");
static POSTGRES_PAYMENT: EmbeddedMigrations = embed_migrations!("../migrations/postgres/payment");
const POSTGRES: Groups = Groups {
    bus: &POSTGRES_BUS,
    product: &POSTGRES_PRODUCT,
    order: &POSTGRES_ORDER,
    payment: &POSTGRES_PAYMENT,
};
#[cfg(feature = "mysql")]
static MYSQL_BUS: EmbeddedMigrations = embed_migrations!("../migrations/mysql/bus");
#[cfg(feature = "mysql")]
static MYSQL_PRODUCT: EmbeddedMigrations = embed_migrations!("../migrations/mysql/product");
#[cfg(feature = "mysql")]
static MYSQL_ORDER: EmbeddedMigrations = embed_migrations!("../migrations/mysql/order");
#[cfg(feature = "mysql")]
static MYSQL_PAYMENT: EmbeddedMigrations = embed_migrations!("../migrations/mysql/payment");
#[cfg(feature = "mysql")]
const MYSQL: Groups = Groups {
    bus: &MYSQL_BUS,
    product: &MYSQL_PRODUCT,
    order: &MYSQL_ORDER,
    payment: &MYSQL_PAYMENT,
};

/// The SQL migrations of every backend and every context, embedded in the binary.
pub fn migrations() -> Migrations {
    migrations_for(Contexts::ALL)
}

/// The SQL migrations of the event bus and of `contexts`, for every backend.
pub fn migrations_for(contexts: Contexts) -> Migrations {
    Migrations {
        sqlite: SQLITE.for_contexts(contexts),
        postgres: POSTGRES.for_contexts(contexts),
        #[cfg(feature = "mysql")]
        mysql: MYSQL.for_contexts(contexts),
    }
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

/// The secrets of one run.
#[derive(Clone)]
pub struct Secrets {
    pub admin_token: SecretString,
    pub webhook_secret: SecretString,
    /// The HS256 secret of customer tokens; `None` when only a JWKS verifies them.
    pub jwt_secret: Option<SecretString>,
}

/// Checks customer tokens as the settings say, with the run's HS256 secret
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
    })
    .await?;
    Ok(Arc::new(verifier))
}

/// Where this server is reached: by customers (payment URLs) and by itself (the sandbox's notifications).
#[derive(Debug, Clone)]
pub struct Urls {
    pub public: String,
    pub internal: String,
}

impl Urls {
    fn for_listener(listener: &TcpListener, settings: &Settings) -> std::io::Result<Self> {
        let mut address = listener.local_addr()?;
        if address.ip().is_unspecified() {
            address.set_ip(if address.is_ipv4() {
                Ipv4Addr::LOCALHOST.into()
            } else {
                Ipv6Addr::LOCALHOST.into()
            });
        }
        let internal = format!("http://{address}");
        let public = settings
            .payment
            .public_url
            .clone()
            .unwrap_or_else(|| internal.clone());
        Ok(Self {
            public: public.trim_end_matches('/').to_owned(),
            internal,
        })
    }
}

/// Every module of the app, built once and shared by the server's workers:
/// what every process has, and each context it runs (`None` for one it does
/// not run: its routes, subscribers and workers are then absent).
#[derive(Clone)]
pub struct Modules {
    pub db: Db,
    pub contexts: Contexts,
    pub product: Option<ProductModule>,
    pub order: Option<OrderModule>,
    pub payment: Option<PaymentModule>,
    pub outbox: Outbox,
    pub dispatcher: Dispatcher,
    /// The message broker, when events travel through RabbitMQ (`SHOP__BUS__KIND=rabbitmq`).
    pub broker: Option<Arc<RabbitMq>>,
    /// Checks every credential (customer tokens, the admin token), shared by all workers.
    pub auth: web::Data<Authenticator>,
    pub tokens: Arc<TokenVerifier>,
    /// The internal API (`/internal/v1`), served only with `SHOP__PORTS__TOKEN` set.
    pub internal: Option<Internal>,
}

/// The product context: the catalog and its stock.
#[derive(Clone)]
pub struct ProductModule {
    pub catalog: ProductCatalog,
    pub inventory: ProductInventory,
}

/// The order context.
#[derive(Clone)]
pub struct OrderModule {
    pub orders: OrderService,
}

/// The payment context and its gateways.
#[derive(Clone)]
pub struct PaymentModule {
    pub payments: PaymentService,
    pub sandbox: Option<SandboxCheckout>,
    /// Alipay, when configured (its notify route verifies with it).
    pub alipay: Option<AlipayGateway>,
    /// WeChat Pay, when configured (its notify route verifies with it).
    pub wechat_pay: Option<web::Data<WechatPayGateway>>,
}

/// What the internal API serves: this process's own ports, behind the
/// service token (each only when its context runs here).
#[derive(Clone)]
pub struct Internal {
    pub token: web::Data<ServiceToken>,
    pub inventory: Option<web::Data<dyn Inventory>>,
    pub orders: Option<web::Data<dyn OrderLookup>>,
}

impl Modules {
    /// Wires the contexts this process runs: the order context reserves
    /// stock through the product context's `Inventory`, the payment context
    /// reads orders through the order context's `OrderLookup` (each here, or
    /// over HTTP at `SHOP__PORTS__PRODUCT_URL` / `SHOP__PORTS__ORDER_URL`),
    /// and each context's subscribers are registered on the event bus. Fails
    /// when a context cannot run as configured, or a configured provider
    /// cannot be used (such as a notify URL it cannot call).
    pub fn new(
        db: Db,
        settings: &Settings,
        secrets: &Secrets,
        tokens: Arc<TokenVerifier>,
        urls: &Urls,
        broker: Option<Arc<RabbitMq>>,
    ) -> anyhow::Result<Self> {
        settings.check_contexts()?;
        let contexts = settings.contexts;
        let dispatch = DispatchOptions {
            poll_interval: Duration::from_millis(settings.worker.poll_ms),
            ..Default::default()
        };
        let mut bus = EventBusBuilder::default();
        if contexts.runs(Context::Product) {
            bus = bus.subscribe(
                StockReservations::NAME,
                StockReservations::EVENTS,
                Arc::new(StockReservations),
            );
        }
        if contexts.runs(Context::Payment) {
            bus = bus
                .subscribe(Refunds::NAME, Refunds::EVENTS, Arc::new(Refunds))
                .subscribe(
                    TradeClosing::NAME,
                    TradeClosing::EVENTS,
                    Arc::new(TradeClosing),
                );
        }
        // The order context's subscriber publishes events of its own, so it needs the outbox the bus builds.
        let (outbox, dispatcher) = bus.build_with(db.clone(), dispatch, |bus, outbox| {
            if contexts.runs(Context::Order) {
                bus.subscribe(
                    PaymentOutcomes::NAME,
                    PaymentOutcomes::EVENTS,
                    Arc::new(PaymentOutcomes::new(outbox.clone())),
                )
            } else {
                bus
            }
        });
        // With a broker, the outbox's relay publishes every event to it, and
        // the subscribers take theirs from their context's queue.
        let dispatcher = match &broker {
            Some(broker) => dispatcher.with_relay(broker.clone()),
            None => dispatcher,
        };
        // Before anything is published: every process publishing from now on
        // writes deliveries for this process's subscribers (or its relay).
        dispatcher
            .register(&mut *db.get_blocking()?)
            .map_err(|e| anyhow::anyhow!("cannot record the event subscriptions: {e}"))?;
        let product = contexts.runs(Context::Product).then(|| ProductModule {
            catalog: ProductCatalog::new(db.clone()),
            inventory: ProductInventory::new(db.clone()),
        });
        // This process's own product context, as the port serves it (also to
        // other processes, over the internal API).
        let local_inventory: Option<Arc<dyn Inventory>> = product.as_ref().map(|product| {
            Arc::new(InvalidatingInventory::new(
                product.inventory.clone(),
                product.catalog.cache().clone(),
            )) as Arc<dyn Inventory>
        });
        let order = match contexts.runs(Context::Order) {
            false => None,
            true => {
                // The order context reserves stock here, or in the process
                // that runs the product context (SHOP__PORTS__PRODUCT_URL,
                // which wins when both are there).
                let inventory: Arc<dyn Inventory> = match (
                    settings.ports.product()?,
                    &local_inventory,
                ) {
                    (Some(remote), _) => {
                        tracing::info!(url = %remote.base_url, "the product context runs elsewhere: stock is reserved over HTTP");
                        Arc::new(RemoteInventory::new(remote)?)
                    }
                    (None, Some(local)) => local.clone(),
                    (None, None) => anyhow::bail!("the order context needs the product context"),
                };
                Some(OrderModule {
                    orders: OrderService::new(
                        db.clone(),
                        outbox.clone(),
                        inventory,
                        Duration::from_secs(settings.order.payment_timeout_secs),
                    ),
                })
            }
        };
        let local_orders: Option<Arc<dyn OrderLookup>> = order
            .as_ref()
            .map(|_| Arc::new(OrderDirectory::new(db.clone())) as Arc<dyn OrderLookup>);
        let payment = match contexts.runs(Context::Payment) {
            false => None,
            true => {
                // The payment context reads orders here, or in the process that
                // runs the order context (SHOP__PORTS__ORDER_URL, which wins
                // when both are there).
                let orders: Arc<dyn OrderLookup> = match (settings.ports.order()?, &local_orders) {
                    (Some(remote), _) => {
                        tracing::info!(url = %remote.base_url, "the order context runs elsewhere: orders are read over HTTP");
                        Arc::new(RemoteOrderLookup::new(remote)?)
                    }
                    (None, Some(local)) => local.clone(),
                    (None, None) => anyhow::bail!("the payment context needs the order context"),
                };
                Some(PaymentModule::new(
                    settings, secrets, urls, &db, &outbox, orders,
                )?)
            }
        };
        let internal = settings.ports.token().map(|token| Internal {
            token: web::Data::new(ServiceToken::new(token)),
            inventory: local_inventory.map(web::Data::from),
            orders: local_orders.map(web::Data::from),
        });
        Ok(Self {
            internal,
            contexts,
            product,
            order,
            payment,
            outbox,
            dispatcher,
            broker,
            db,
            auth: web::Data::new(Authenticator::new(
                AdminToken::new(secrets.admin_token.clone()),
                tokens.clone(),
                FailureLimiter::per_minute(settings.auth.failures_per_minute),
            )),
            tokens,
        })
    }
}

impl PaymentModule {
    /// The payment context with its gateways: the real providers configured,
    /// then the sandbox (when on) for every method left.
    fn new(
        settings: &Settings,
        secrets: &Secrets,
        urls: &Urls,
        db: &Db,
        outbox: &Outbox,
        orders: Arc<dyn OrderLookup>,
    ) -> anyhow::Result<Self> {
        let links = CheckoutLinks::new(&secrets.webhook_secret);
        // The sandbox's own record of its trades, which its page and its gateway share.
        let sandbox_trades = SandboxTrades::default();
        let mut gateways = Gateways::default();
        // Real providers first: the first gateway given for a method serves it.
        let alipay = match settings
            .payment
            .alipay
            .as_ref()
            .and_then(|a| a.protocol.clone())
        {
            Some(protocol) => {
                let notify_url = format!("{}/api/v1/payments/notify/alipay", urls.public);
                let gateway = AlipayGateway::new(protocol, notify_url).map_err(|e| {
                    anyhow::anyhow!("Alipay (SHOP__PAYMENT__PUBLIC_URL must be https): {e}")
                })?;
                gateways = gateways.serve(PaymentMethod::Alipay, Arc::new(gateway.clone()));
                Some(gateway)
            }
            None => None,
        };
        let wechat_pay = settings.payment.wechat_pay.as_ref().map(|wechat_pay| {
            Arc::new(WechatPayGateway::new(
                wechat_pay.protocol.clone(),
                &urls.public,
            ))
        });
        if let Some(wechat_pay) = &wechat_pay {
            gateways = gateways.serve(PaymentMethod::WechatPay, wechat_pay.clone());
        }
        if settings.payment.sandbox {
            let sandbox: Arc<dyn PaymentGateway> = Arc::new(SandboxGateway::new(
                &urls.public,
                links.clone(),
                sandbox_trades.clone(),
            ));
            for method in [PaymentMethod::Alipay, PaymentMethod::WechatPay] {
                gateways = gateways.serve(method, sandbox.clone());
            }
        }
        let payments = PaymentService::new(
            db.clone(),
            outbox.clone(),
            orders,
            gateways,
            ShopSignature::new(secrets.webhook_secret.clone()),
            Reconciliation {
                window: Duration::from_secs(settings.payment.reconcile_window_secs),
                every: Duration::from_secs(settings.payment.query_interval_secs),
            },
        );
        Ok(Self {
            payments,
            alipay,
            sandbox: settings
                .payment
                .sandbox
                .then(|| SandboxCheckout::new(&urls.internal, links, sandbox_trades)),
            wechat_pay: wechat_pay.map(web::Data::from),
        })
    }
}

/// A bound, not yet running, server.
pub struct Application {
    port: u16,
    urls: Urls,
    server: Server,
    workers: Option<Workers>,
    product_cache: Option<Invalidator>,
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
        let broker = match settings.bus.rabbitmq()? {
            Some(rabbitmq) => {
                let exchange = rabbitmq.exchange.clone();
                let broker = RabbitMq::connect(rabbitmq, SUBSCRIPTIONS)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("cannot reach RabbitMQ (SHOP__BUS__RABBITMQ_URL): {e:#}")
                    })?;
                tracing::info!(%exchange, "events travel through RabbitMQ");
                Some(broker)
            }
            None => None,
        };
        let modules = Modules::new(db, settings, secrets, tokens, &urls, broker)?;
        if modules.payment.is_some() && settings.payment.sandbox {
            tracing::warn!(
                checkout = %format!("{}/sandbox/checkout/", urls.public),
                "the sandbox payment gateway is on: anyone can pay for free. Set SHOP__PAYMENT__SANDBOX=false in production"
            );
        }
        if let Some(payment) = &modules.payment {
            tracing::info!(gateways = ?payment.payments.gateways(), "payment methods and the gateways that serve them");
        }
        tracing::info!(contexts = %modules.contexts, "contexts run by this process");
        let contexts = modules.contexts;
        // The routes of the contexts this process runs: any other path is an unknown one (404).
        let served = api::openapi_for(contexts);
        let routes = web::Data::new(RouteTable::from_openapi(&served));
        let document = web::Bytes::from(serde_json::to_vec(&api::document_of(served))?);
        let max_body = settings.server.max_body_bytes;
        let request_timeout = Duration::from_millis(settings.server.request_timeout_ms);
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let connections = limits::connection_budget(settings.server.max_connections);
        let peers = limits::PeerConnections::new(settings.server.max_connections_per_client);
        let state = modules.clone();
        let server =
            actix_web::HttpServer::new(move || {
                let mut app = api::mount(App::new().into_utoipa_app(), contexts);
                if let Some(internal) = &state.internal {
                    let mut internal_app = app.app_data(internal.token.clone());
                    if let Some(inventory) = &internal.inventory {
                        internal_app = internal_app.app_data(inventory.clone());
                    }
                    if let Some(orders) = &internal.orders {
                        internal_app = internal_app.app_data(orders.clone());
                    }
                    app = api::mount_internal(
                        internal_app,
                        internal.inventory.is_some(),
                        internal.orders.is_some(),
                    );
                }
                let (app, _) = app.split_for_parts();
                app.app_data(web::Data::new(state.db.clone()))
                    .app_data(state.auth.clone())
                    .app_data(web::PayloadConfig::new(max_body))
                    .app_data(routes.clone())
                    .configure(|cfg| {
                        if let Some(product) = &state.product {
                            cfg.app_data(web::Data::new(product.catalog.clone()));
                        }
                        if let Some(order) = &state.order {
                            cfg.app_data(web::Data::new(order.orders.clone()));
                        }
                        if let Some(payment) = &state.payment {
                            cfg.app_data(web::Data::new(payment.payments.clone()));
                            if let Some(wechat_pay) = &payment.wechat_pay {
                                cfg.app_data(wechat_pay.clone());
                            }
                            if let Some(sandbox) = &payment.sandbox {
                                cfg.app_data(web::Data::new(sandbox.clone()));
                                domain_payment::sandbox::configure_checkout(cfg);
                            }
                            if let Some(alipay) = &payment.alipay {
                                cfg.app_data(web::Data::new(alipay.clone()));
                            }
                        }
                    })
                    .service(web::redirect("/swagger-ui", "/swagger-ui/"))
                    .route(
                        "/api-docs/openapi.json",
                        web::get().to({
                            let document = document.clone();
                            move || {
                                let document = document.clone();
                                async move {
                                    HttpResponse::Ok()
                                        .content_type("application/json")
                                        .body(document)
                                }
                            }
                        }),
                    )
                    .service(SwaggerUi::new("/swagger-ui/{_:.*}").config(
                        SwaggerConfig::new(["/api-docs/openapi.json"]).validator_url("none"),
                    ))
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
                    .wrap(from_fn(limits::refuse_crowding))
                    .wrap(from_fn(observability::observe))
            })
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
        // Every instance of the product context runs one: it keeps the
        // product cache right whoever writes.
        let product_cache = match &modules.product {
            Some(product) => Some(Invalidator::start(
                product.catalog.cache(),
                &DatabaseUrl::parse(&settings.database.url)?,
            )?),
            None => None,
        };
        let key_refresh = modules.tokens.uses_jwks().then(|| {
            let tokens = modules.tokens.clone();
            let every = Duration::from_secs(settings.auth.jwks_refresh_secs);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    tokens.refresh().await;
                }
            })
        });
        Ok(Self {
            port,
            urls,
            server,
            workers,
            product_cache,
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
        if let Some(product_cache) = self.product_cache {
            product_cache.stop().await;
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

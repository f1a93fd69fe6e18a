//! What a process runs: the contexts it was told to run, started in order
//! from one wiring, and the event bus, credentials and internal API they
//! share. Built once, shared by the HTTP workers and the background workers.

use std::any::Any;
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use anyhow::Context as _;
use domain_order::OrderConfig;
use domain_payment::PaymentConfig;
use domain_payment::service::Reconciliation;
use domain_product::ProductConfig;
use secrecy::SecretString;
use shared_kernel::context::{Job, Seed, Serve, Stop, Wiring};
use shared_kernel::messaging::outbox::{DispatchOptions, Dispatcher, EventBusBuilder, Outbox};
use shared_kernel::messaging::rabbitmq::RabbitMq;
use shared_kernel::remote::internal::ServiceToken;
use shared_kernel::storage::db::{DatabaseUrl, Db};
use shared_kernel::web::auth::{AdminToken, Authenticator, FailureLimiter, TokenVerifier};

use crate::config::Settings;
use crate::contexts::{self, Contexts};

/// The secrets of one run.
#[derive(Clone)]
pub struct Secrets {
    pub admin_token: SecretString,
    pub webhook_secret: SecretString,
    /// The HS256 secret of customer tokens; `None` when only a JWKS verifies them.
    pub jwt_secret: Option<SecretString>,
}

/// Where this server is reached: by customers (payment URLs) and by itself (the sandbox's notifications).
#[derive(Debug, Clone)]
pub struct Urls {
    pub public: String,
    pub internal: String,
}

impl Urls {
    pub fn for_listener(listener: &TcpListener, settings: &Settings) -> std::io::Result<Self> {
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

/// What the process runs, built once and shared by the server's workers:
/// the database and the event bus every process has, and what the contexts
/// it runs serve, deliver and schedule.
#[derive(Clone)]
pub struct Modules {
    pub db: Db,
    pub contexts: Contexts,
    /// What the contexts' routes need, registered on every HTTP worker.
    serve: Vec<Serve>,
    /// The contexts' background jobs.
    pub jobs: Vec<Job>,
    /// How `--demo` seeds the contexts that have a demo.
    seeds: Vec<Seed>,
    /// The facades of the running contexts ([`Modules::facade`]).
    facades: Arc<Vec<Box<dyn Any + Send + Sync>>>,
    pub outbox: Outbox,
    pub dispatcher: Dispatcher,
    /// The message broker, when events travel through RabbitMQ (`SHOP__BUS__KIND=rabbitmq`).
    pub broker: Option<Arc<RabbitMq>>,
    /// Checks every credential (customer tokens, the admin token), shared by all workers.
    pub auth: web::Data<Authenticator>,
    pub tokens: Arc<TokenVerifier>,
    /// The internal API's token (`/internal/v1`, served only with `SHOP__PORTS__TOKEN` set).
    pub internal: Option<web::Data<ServiceToken>>,
}

impl Modules {
    /// Starts the contexts this process runs, in order: each takes what the
    /// wiring holds (the database, the outbox, its settings, the ports it
    /// needs: here, or over HTTP at `SHOP__PORTS__<CONTEXT>_URL`) and offers
    /// its own ports to the next; then their subscribers are registered on
    /// the event bus. Fails when a context cannot run as configured, or a
    /// configured provider cannot be used (such as a notify URL it cannot
    /// call). Also returns the stops of the contexts' own background work.
    pub fn new(
        db: Db,
        settings: &Settings,
        secrets: &Secrets,
        tokens: Arc<TokenVerifier>,
        urls: &Urls,
        broker: Option<Arc<RabbitMq>>,
    ) -> anyhow::Result<(Self, Vec<Stop>)> {
        settings.check_contexts()?;
        let contexts = settings.contexts;
        let outbox = Outbox::new();
        let mut wiring = wiring(&db, &outbox, settings, secrets, urls)?;
        let mut bus = EventBusBuilder::default();
        let (mut serve, mut jobs, mut seeds, mut stops, mut facades) =
            (vec![], vec![], vec![], vec![], vec![]);
        for context in contexts.iter() {
            let started = (context.start)(&mut wiring)
                .with_context(|| format!("the {} context cannot start", context.name))?
                .into_parts(context)?;
            for (subscriber, handler) in started.subscriptions {
                bus = bus.subscribe(subscriber.name, subscriber.events, handler);
            }
            serve.extend(started.serve);
            jobs.extend(started.jobs);
            seeds.extend(started.seed);
            stops.extend(started.stops);
            facades.extend(started.facades);
        }
        for port in wiring.settle() {
            tracing::warn!(
                port,
                "a context here asks for a port that no context of this process offers and no \
                 SHOP__PORTS__<CONTEXT>_URL names; it works without it (the product context then \
                 keeps the reservations whose order never arrived: set SHOP__PORTS__ORDER_URL)"
            );
        }
        let dispatch = DispatchOptions {
            poll_interval: Duration::from_millis(settings.worker.poll_ms),
            ..Default::default()
        };
        let dispatcher = bus.build(db.clone(), dispatch, &outbox);
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
        let modules = Self {
            internal: settings
                .ports
                .token()
                .map(|token| web::Data::new(ServiceToken::new(token))),
            contexts,
            serve,
            jobs,
            seeds,
            facades: Arc::new(facades),
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
        };
        Ok((modules, stops))
    }

    /// Seeds the demo of every context that has one (`shop serve --demo`);
    /// how many things were added.
    pub async fn seed_demo(&self) -> anyhow::Result<usize> {
        let mut added = 0;
        for seed in &self.seeds {
            added += seed().await?;
        }
        Ok(added)
    }

    /// The facade of type `T` of a context this process runs (such as
    /// `domain_product::ProductCatalog`), for the binary's own commands and tests.
    pub fn facade<T: Any + Clone>(&self) -> Option<T> {
        self.facades
            .iter()
            .find_map(|f| f.downcast_ref::<T>())
            .cloned()
    }

    /// Registers what the running contexts' routes need on one HTTP worker.
    pub fn serve(&self, cfg: &mut web::ServiceConfig) {
        for serve in &self.serve {
            serve(cfg);
        }
    }

    /// Whether a context of this process has a demo to seed.
    pub fn has_demo(&self) -> bool {
        !self.seeds.is_empty()
    }
}

/// What the contexts are started from: the database, the outbox, each
/// context's settings, and the HTTP adapters of the ports that the running
/// contexts need from other processes (`SHOP__PORTS__<CONTEXT>_URL`).
fn wiring(
    db: &Db,
    outbox: &Outbox,
    settings: &Settings,
    secrets: &Secrets,
    urls: &Urls,
) -> anyhow::Result<Wiring> {
    let mut wiring = Wiring::default();
    wiring
        .provide(db.clone())
        .provide(outbox.clone())
        .provide(DatabaseUrl::parse(&settings.database.url)?)
        .provide(ProductConfig {
            abandoned_reservation_grace: Duration::from_secs(
                settings.worker.abandoned_reservation_grace_secs,
            ),
        })
        .provide(OrderConfig {
            payment_timeout: Duration::from_secs(settings.order.payment_timeout_secs),
            expiry_sweep: Duration::from_millis(settings.order.expiry_sweep_ms),
        })
        .provide(PaymentConfig {
            webhook_secret: secrets.webhook_secret.clone(),
            sandbox: settings.payment.sandbox,
            public_url: urls.public.clone(),
            internal_url: urls.internal.clone(),
            alipay: settings
                .payment
                .alipay
                .as_ref()
                .and_then(|a| a.protocol.clone()),
            wechat_pay: settings
                .payment
                .wechat_pay
                .as_ref()
                .map(|w| w.protocol.clone()),
            reconciliation: Reconciliation {
                window: Duration::from_secs(settings.payment.reconcile_window_secs),
                every: Duration::from_secs(settings.payment.query_interval_secs),
            },
            provider_work_every: Duration::from_millis(settings.worker.poll_ms),
        });
    for context in settings.contexts.iter() {
        for port in context.needs.iter().chain(context.asks) {
            let Some(offerer) = contexts::offering(*port) else {
                continue;
            };
            if let Some(remote) = settings.ports.remote(offerer.name)?
                && !wiring.is_connected(*port)
            {
                tracing::info!(url = %remote.base_url, port = port.name(), "the {} context runs elsewhere: its port is called over HTTP", offerer.name);
                port.connect(remote, &mut wiring)?;
            }
        }
    }
    Ok(wiring)
}

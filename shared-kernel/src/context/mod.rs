//! A bounded context as it describes itself to the app that runs it: one
//! [`Context`] value per domain crate says its name, its migrations per
//! backend, its routes (public, original-spec aliases, internal), its
//! subscribers and the events they take, the ports it offers and needs, and
//! how it starts. The app loops over the contexts it is told to run; split
//! mode, the broker's routing table, the served OpenAPI document and the
//! migrations all come from these values.

mod jobs;
mod wiring;

use std::any::Any;
use std::sync::Arc;

use crate::storage::db::MigrationSet;
use futures_util::future::BoxFuture;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::messaging::outbox::EventHandler;

pub use jobs::{Job, Progress};
pub use wiring::{Later, Port, Wiring};

/// What a context is, known without running it.
pub struct Context {
    /// Its name on the command line (`--contexts`), in `SHOP__CONTEXTS`, in
    /// its subscribers' names (`order.payment-outcomes`) and its broker queue.
    pub name: &'static str,
    /// Its tables, one embedded folder per backend.
    pub migrations: MigrationSet,
    /// Its documented routes.
    pub routes: Routes,
    /// The tag its operations carry in the OpenAPI document: name, description.
    pub tag: (&'static str, &'static str),
    /// Its subscribers and the event types each takes: the broker's routing
    /// table, whichever process runs the context. [`Context::start`] gives
    /// the handler of each, by name.
    pub subscribers: &'static [Subscriber],
    /// The ports it implements for the other contexts.
    pub offers: &'static [Port],
    /// The ports it calls: here, when the context that offers one runs in
    /// this process, or over HTTP (`SHOP__PORTS__<CONTEXT>_URL`).
    pub needs: &'static [Port],
    /// The ports it calls only once the process has started (from its jobs),
    /// taken with [`Wiring::later`]: the context that offers one may start
    /// after it. Without them here or a URL, the context works without them.
    pub asks: &'static [Port],
    /// Builds the running context from what the wiring holds (the database,
    /// the outbox, its settings, the ports it needs) and places the ports it
    /// offers there.
    pub start: fn(&mut Wiring) -> anyhow::Result<Started>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("name", &self.name)
            .field("tag", &self.tag.0)
            .field("subscribers", &self.subscribers)
            .field("offers", &self.offers)
            .field("needs", &self.needs)
            .field("asks", &self.asks)
            .finish_non_exhaustive()
    }
}

/// Mounts routes, collecting their OpenAPI operations.
pub type Mount = fn(&mut ServiceConfig);

/// A context's documented routes.
pub struct Routes {
    /// Its REST routes, under `/api/v1`.
    pub api: Mount,
    /// The original spec's literal paths, at the root.
    pub original_spec: Mount,
    /// The ports it offers, served to the other processes under
    /// `/internal/v1` (split mode); `None` when it offers none.
    pub internal: Option<Mount>,
}

/// A subscriber's stable name (it keys delivery rows and names the broker
/// queue's context: the part before the first dot) and the event types it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscriber {
    pub name: &'static str,
    pub events: &'static [&'static str],
}

/// Registers what the context's routes extract (`web::Data<...>`) and the
/// routes it serves outside the document (a checkout page), on every HTTP worker.
pub type Serve = Arc<dyn Fn(&mut actix_web::web::ServiceConfig) + Send + Sync>;

/// Seeds a demo into an empty database (`shop serve --demo`); how many it added.
pub type Seed = Arc<dyn Fn() -> BoxFuture<'static, anyhow::Result<usize>> + Send + Sync>;

/// Stops a piece of background work the context started with itself.
pub type Stop = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// A running context: what the app serves, delivers and schedules for it.
#[derive(Default)]
pub struct Started {
    serve: Vec<Serve>,
    handlers: Vec<(&'static str, Arc<dyn EventHandler>)>,
    jobs: Vec<Job>,
    stops: Vec<Stop>,
    seed: Option<Seed>,
    facades: Vec<Box<dyn Any + Send + Sync>>,
}

impl Started {
    /// What the context's routes need, registered on every HTTP worker.
    pub fn serve(
        mut self,
        serve: impl Fn(&mut actix_web::web::ServiceConfig) + Send + Sync + 'static,
    ) -> Self {
        self.serve.push(Arc::new(serve));
        self
    }

    /// The handler of the subscriber `name` (one of [`Context::subscribers`]).
    pub fn handle(mut self, name: &'static str, handler: Arc<dyn EventHandler>) -> Self {
        self.handlers.push((name, handler));
        self
    }

    /// A background job, run by the process's workers (`SHOP__WORKER__ENABLED`).
    pub fn job(mut self, job: Job) -> Self {
        self.jobs.push(job);
        self
    }

    /// Background work started with the context, stopped when the server stops.
    pub fn on_stop(mut self, stop: Stop) -> Self {
        self.stops.push(stop);
        self
    }

    /// How `--demo` seeds this context.
    pub fn seed(mut self, seed: Seed) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Shows `facade` (the context's use cases) to the binary's own commands
    /// and tests; other contexts reach the context through its ports only.
    pub fn expose<T: Any + Send + Sync>(mut self, facade: T) -> Self {
        self.facades.push(Box::new(facade));
        self
    }

    /// What the app takes from the started `context`, each subscriber with
    /// its events and handler; fails when a declared subscriber has no
    /// handler, or a handler no declaration, so that the broker's routing and
    /// the process's deliveries cannot disagree.
    pub fn into_parts(self, context: &Context) -> anyhow::Result<Parts> {
        let mut subscriptions = Vec::with_capacity(context.subscribers.len());
        for subscriber in context.subscribers {
            let handler = self
                .handlers
                .iter()
                .find(|(name, _)| *name == subscriber.name)
                .map(|(_, handler)| handler.clone())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "the {} context declares the subscriber {} but gave no handler for it",
                        context.name,
                        subscriber.name
                    )
                })?;
            subscriptions.push((*subscriber, handler));
        }
        if let Some((name, _)) = self
            .handlers
            .iter()
            .find(|(name, _)| !context.subscribers.iter().any(|s| s.name == *name))
        {
            anyhow::bail!(
                "the {} context gave a handler for {name}, which it does not declare among its subscribers",
                context.name
            );
        }
        Ok(Parts {
            subscriptions,
            serve: self.serve,
            jobs: self.jobs,
            stops: self.stops,
            seed: self.seed,
            facades: self.facades,
        })
    }
}

/// A started context, taken apart by the app ([`Started::into_parts`]).
pub struct Parts {
    pub subscriptions: Vec<(Subscriber, Arc<dyn EventHandler>)>,
    pub serve: Vec<Serve>,
    pub jobs: Vec<Job>,
    pub stops: Vec<Stop>,
    pub seed: Option<Seed>,
    pub facades: Vec<Box<dyn Any + Send + Sync>>,
}

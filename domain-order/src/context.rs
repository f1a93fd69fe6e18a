//! The order context as it describes itself to the app: its tables, its
//! routes, its subscriber, the expiry sweep, the `OrderLookup` port it offers
//! and the `Inventory` port it needs.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use diesel_migrations::embed_migrations;
use shared_kernel::context::{Context, Job, Port, Routes, Started, Subscriber, Wiring};
use shared_kernel::messaging::outbox::Outbox;
use shared_kernel::model::ports::{Inventory, OrderLookup};
use shared_kernel::storage::db::{Db, MigrationSet};

use crate::{EXPIRY_BATCH, OrderDirectory, OrderService, PaymentOutcomes};

/// The order context: an order's lifecycle from placement to payment or cancellation.
pub const CONTEXT: Context = Context {
    name: "order",
    migrations: MigrationSet {
        sqlite: &embed_migrations!("../migrations/sqlite/order"),
        postgres: &embed_migrations!("../migrations/postgres/order"),
        mysql: &embed_migrations!("../migrations/mysql/order"),
    },
    routes: Routes {
        api: crate::http::configure_api,
        original_spec: crate::http::configure_original_spec,
        internal: Some(crate::internal_http::configure),
    },
    tag: (
        "orders",
        "Orders: placement with stock reservation, cancellation, expiry",
    ),
    subscribers: &[Subscriber {
        name: PaymentOutcomes::NAME,
        events: PaymentOutcomes::EVENTS,
    }],
    offers: &[Port::OrderLookup],
    needs: &[Port::Inventory],
    asks: &[],
    start,
};

/// What the order context is started with, beside the database and the outbox.
#[derive(Debug, Clone)]
pub struct OrderConfig {
    /// Unpaid orders expire after this long (`SHOP__ORDER__PAYMENT_TIMEOUT_SECS`).
    pub payment_timeout: Duration,
    /// How often the expiry sweep runs (`SHOP__ORDER__EXPIRY_SWEEP_MS`).
    pub expiry_sweep: Duration,
}

fn start(wiring: &mut Wiring) -> anyhow::Result<Started> {
    let db: Db = wiring.get()?;
    let outbox: Outbox = wiring.get()?;
    let config: OrderConfig = wiring.get()?;
    let inventory = wiring.port::<dyn Inventory>()?;
    let orders = OrderService::new(
        db.clone(),
        outbox.clone(),
        inventory,
        config.payment_timeout,
    );
    let lookup: Arc<dyn OrderLookup> = Arc::new(OrderDirectory::new(db));
    wiring.offer(lookup.clone());
    let served = orders.clone();
    let exposed = orders.clone();
    Ok(Started::default()
        .serve(move |cfg| {
            cfg.app_data(web::Data::new(served.clone()))
                .app_data(web::Data::from(lookup.clone()));
        })
        .handle(
            PaymentOutcomes::NAME,
            Arc::new(PaymentOutcomes::new(outbox)),
        )
        .expose(exposed)
        .job(Job::every("order expiry", config.expiry_sweep, move || {
            let orders = orders.clone();
            async move {
                let expired = orders.expire_due().await?;
                Ok::<_, crate::OrderError>(Job::progress(expired, EXPIRY_BATCH as usize))
            }
        })))
}

//! The product context as it describes itself to the app: its tables, its
//! routes, its subscriber, its jobs, and the `Inventory` port it offers.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use diesel_migrations::embed_migrations;
use shared_kernel::context::{Context, Job, Port, Routes, Started, Subscriber, Wiring};
use shared_kernel::messaging::outbox::Outbox;
use shared_kernel::model::ports::{Inventory, OrderLookup};
use shared_kernel::storage::db::{DatabaseUrl, Db, MigrationSet};

use crate::cache::{InvalidatingInventory, Invalidator};
use crate::service::{ABANDONED_BATCH, AbandonedReservations, Reservations};
use crate::{ProductCatalog, ProductInventory, StockReservations};

/// The product context: the catalog and its stock.
pub const CONTEXT: Context = Context {
    name: "product",
    migrations: MigrationSet {
        sqlite: &embed_migrations!("../migrations/sqlite/product"),
        postgres: &embed_migrations!("../migrations/postgres/product"),
        mysql: &embed_migrations!("../migrations/mysql/product"),
    },
    routes: Routes {
        api: crate::http::configure_api,
        original_spec: crate::http::configure_original_spec,
        internal: Some(crate::internal_http::configure),
    },
    tag: ("products", "The catalog and its stock"),
    subscribers: &[Subscriber {
        name: StockReservations::NAME,
        events: StockReservations::EVENTS,
    }],
    offers: &[Port::Inventory],
    needs: &[],
    // The abandoned-reservation job asks whether a reservation's order exists.
    asks: &[Port::OrderLookup],
    start,
};

/// What the product context is started with, beside the database.
#[derive(Debug, Clone)]
pub struct ProductConfig {
    /// A reservation whose order never arrived is released this long after
    /// its hold ended (`SHOP__WORKER__ABANDONED_RESERVATION_GRACE_SECS`).
    pub abandoned_reservation_grace: Duration,
}

fn start(wiring: &mut Wiring) -> anyhow::Result<Started> {
    let db: Db = wiring.get()?;
    let config: ProductConfig = wiring.get()?;
    let outbox: Outbox = wiring.get()?;
    let catalog = ProductCatalog::new(db.clone(), outbox.clone());
    let reservations = Reservations::new(db.clone(), outbox);
    // The port, as this process uses it and serves it to others: reservations
    // that change stock also drop the products from the cache.
    let inventory: Arc<dyn Inventory> = Arc::new(InvalidatingInventory::new(
        ProductInventory::new(reservations.clone()),
        catalog.cache().clone(),
    ));
    wiring.offer(inventory.clone());
    // Every instance of the context keeps its product cache right, whoever writes.
    let invalidator = Invalidator::start(catalog.cache(), &wiring.get::<DatabaseUrl>()?)?;
    let orders = wiring.later::<dyn OrderLookup>();
    let abandoned =
        AbandonedReservations::new(reservations, orders, config.abandoned_reservation_grace);
    let releasing = abandoned.clone();
    let seeding = catalog.clone();
    let served = catalog.clone();
    Ok(Started::default()
        .serve(move |cfg| {
            cfg.app_data(web::Data::new(served.clone()))
                .app_data(web::Data::from(inventory.clone()));
        })
        .handle(StockReservations::NAME, Arc::new(StockReservations))
        .job(Job::every(
            "abandoned reservations",
            Duration::from_secs(60),
            move || {
                let abandoned = releasing.clone();
                async move {
                    let released = abandoned.release().await?;
                    Ok::<_, shared_kernel::storage::db::DbError>(Job::progress(
                        released,
                        ABANDONED_BATCH as usize,
                    ))
                }
            },
        ))
        .on_stop(Box::new(move || Box::pin(invalidator.stop())))
        .expose(catalog)
        .expose(abandoned)
        .seed(Arc::new(move || {
            let catalog = seeding.clone();
            Box::pin(async move { Ok(catalog.seed_demo().await?) })
        })))
}

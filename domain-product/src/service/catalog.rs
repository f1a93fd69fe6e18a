//! The catalog's use cases, behind the module facade [`ProductCatalog`].

use std::sync::Arc;

use serde_json::json;
use shared_kernel::audit::{self, Actor, AuditEntry};
use shared_kernel::messaging::outbox::Outbox;
use shared_kernel::model::clock;
use shared_kernel::model::events::{
    FieldChange, ProductArchived, ProductRestored, ProductStockLow, ProductUpdated,
};
use shared_kernel::model::money::{Currency, Money};
use shared_kernel::storage::db::{AnyConnection, Db, DbError};
use shared_kernel::web::pagination::PageRequest;

use crate::cache::{CachedProduct, Lookup, ProductCache};
use crate::error::ProductError;
use crate::model::{
    Description, NewProduct, Product, ProductFilter, ProductId, ProductName, ProductPatch,
    ProductSort, ProductStatus, SET_REASON, Stock, StockAdjustment, StockMovement, edited_fields,
    fell_below,
};
use crate::repository;

/// The product context's facade: everything the rest of the app may ask of the catalog.
#[derive(Debug, Clone)]
pub struct ProductCatalog {
    db: Db,
    outbox: Outbox,
    cache: ProductCache,
}

/// One page of a product's stock movements.
#[derive(Debug, Clone)]
pub struct MovementPage {
    pub movements: Vec<StockMovement>,
    pub next_cursor: Option<String>,
}

/// One page of products.
#[derive(Debug, Clone)]
pub struct ProductPage {
    pub products: Vec<Product>,
    pub next_cursor: Option<String>,
}

impl ProductCatalog {
    /// The catalog, with an empty read cache of its own (which caches
    /// nothing until an [`Invalidator`](crate::cache::Invalidator) runs for it).
    pub fn new(db: Db, outbox: Outbox) -> Self {
        Self {
            db,
            outbox,
            cache: ProductCache::default(),
        }
    }

    /// The read cache of [`get`](Self::get). Whatever changes products
    /// outside this facade invalidates them here once its transaction committed.
    pub fn cache(&self) -> &ProductCache {
        &self.cache
    }

    /// Adds a product; `actor`'s write is in the audit log (`product.created`).
    pub async fn create(&self, actor: &Actor, new: NewProduct) -> Result<Product, ProductError> {
        let id = ProductId::generate();
        let key = id.clone();
        let actor = actor.clone();
        let created = self
            .db
            .write(move |conn| {
                repository::insert(conn, &id, &new, clock::now())?;
                let product = repository::find(conn, &id)?
                    .ok_or_else(|| ProductError::NotFound(id.clone()))?;
                record(
                    conn,
                    &actor,
                    "product.created",
                    product.id.to_string(),
                    None,
                    Some(audited(&product)),
                )?;
                Ok(product)
            })
            .await;
        self.cache.invalidate([key.as_str()]);
        created
    }

    /// One product, from the cache when it holds it (no database work, no
    /// thread hop), else from the database.
    pub async fn get(&self, id: ProductId) -> Result<Arc<CachedProduct>, ProductError> {
        let ticket = match self.cache.lookup(id.as_str()) {
            Lookup::Hit(product) => return Ok(product),
            Lookup::Miss(ticket) => ticket,
        };
        let product = self
            .db
            .run(move |conn| repository::find(conn, &id)?.ok_or(ProductError::NotFound(id)))
            .await?;
        Ok(self.cache.fill(ticket, product))
    }

    /// One page of the products `filter` selects, in `sort` order.
    pub async fn list(
        &self,
        filter: ProductFilter,
        sort: ProductSort,
        page: PageRequest,
    ) -> Result<ProductPage, ProductError> {
        self.db
            .run(move |conn| {
                let rows = repository::list(conn, &filter, sort, &page)?
                    .ok_or(ProductError::UnknownCursor)?;
                let (products, next_cursor) = page.finish(rows, |p| p.id.as_str());
                Ok(ProductPage {
                    products,
                    next_cursor,
                })
            })
            .await
    }

    /// Sets the units on hand to an absolute number; `actor`'s write is in
    /// the audit log (`product.stock_set`, the stock as it was and became).
    pub async fn set_stock(
        &self,
        actor: &Actor,
        id: ProductId,
        stock: Stock,
    ) -> Result<Product, ProductError> {
        let key = id.clone();
        let (actor, outbox) = (actor.clone(), self.outbox.clone());
        let updated = self
            .db
            .write_locking(vec![id.as_str().to_owned()], move |conn| {
                // The stock as this set found it, exactly: the set applies
                // only while the stock is still what was read (an order may
                // take units in between), else it reads again.
                let mut tries = 0;
                let was = loop {
                    let was = repository::find(conn, &id)?
                        .ok_or_else(|| ProductError::NotFound(id.clone()))?;
                    if repository::set_stock(conn, &id, was.stock, stock, clock::now())? {
                        break was;
                    }
                    tries += 1;
                    if tries == SET_TRIES {
                        return Err(ProductError::Db(DbError::Aborted));
                    }
                };
                let product = repository::find(conn, &id)?
                    .ok_or_else(|| ProductError::NotFound(id.clone()))?;
                tell_if_low(
                    &outbox,
                    conn,
                    &id,
                    product.low_stock_threshold,
                    was.stock.units(),
                    product.stock.units(),
                )?;
                repository::insert_movement(
                    conn,
                    &movement(
                        &actor,
                        &id,
                        SET_REASON,
                        None,
                        product.stock.units() - was.stock.units(),
                        product.stock.units(),
                    ),
                )?;
                record(
                    conn,
                    &actor,
                    "product.stock_set",
                    product.id.to_string(),
                    Some(json!({"stock": was.stock.units()})),
                    Some(json!({"stock": product.stock.units()})),
                )?;
                Ok(product)
            })
            .await;
        // After the commit, and even after an error (a commit whose answer was lost may have happened).
        self.cache.invalidate([key.as_str()]);
        updated
    }

    /// Applies `patch` to the product while `current` holds for it as it
    /// stands (the caller's `If-Match`; always, without one), in one
    /// transaction with `actor`'s audit entry (`product.updated`, the fields
    /// that changed) and the `product.updated` event. A patch that changes
    /// nothing records nothing. A product that moves between the check and
    /// the write is read again (without a precondition) or refused (with one).
    pub async fn update(
        &self,
        actor: &Actor,
        id: ProductId,
        patch: ProductPatch,
        current: Option<Precondition>,
    ) -> Result<Product, ProductError> {
        let key = id.clone();
        let (actor, outbox) = (actor.clone(), self.outbox.clone());
        let updated = self
            .db
            .write_locking(vec![id.as_str().to_owned()], move |conn| {
                for _ in 0..SET_TRIES {
                    let before = repository::find(conn, &id)?
                        .ok_or_else(|| ProductError::NotFound(id.clone()))?;
                    if let Some(current) = &current
                        && !current(&before)
                    {
                        return Err(ProductError::PreconditionFailed(id.clone()));
                    }
                    let after = patch.apply(&before);
                    let changed = edited_fields(&before, &after);
                    if changed.is_empty() {
                        return Ok(before);
                    }
                    if !repository::update_fields(conn, &after, before.updated_at, clock::now())? {
                        if current.is_some() {
                            return Err(ProductError::PreconditionFailed(id.clone()));
                        }
                        continue;
                    }
                    let mut was = serde_json::Map::new();
                    let mut became = serde_json::Map::new();
                    let mut changes = std::collections::BTreeMap::new();
                    for (field, from, to) in changed {
                        was.insert(field.to_owned(), from.clone());
                        became.insert(field.to_owned(), to.clone());
                        changes.insert(field.to_owned(), FieldChange { from, to });
                    }
                    outbox.publish(
                        conn,
                        &ProductUpdated {
                            product_id: id.to_string(),
                            changes,
                        },
                    )?;
                    record(
                        conn,
                        &actor,
                        "product.updated",
                        id.to_string(),
                        Some(was.into()),
                        Some(became.into()),
                    )?;
                    return repository::find(conn, &id)?
                        .ok_or_else(|| ProductError::NotFound(id.clone()));
                }
                Err(ProductError::Db(DbError::Aborted))
            })
            .await;
        self.cache.invalidate([key.as_str()]);
        if updated.is_ok() {
            self.outbox.wake();
        }
        updated
    }

    /// Changes the units on hand by an adjustment's delta, through the same
    /// locked, conditional path as reservations (so that adjustments and
    /// orders racing on one product never lose an update), unless that
    /// would take them below zero; records the movement and `actor`'s write
    /// in the audit log (`product.stock_adjusted`) in its transaction.
    pub async fn adjust_stock(
        &self,
        actor: &Actor,
        id: ProductId,
        adjustment: StockAdjustment,
    ) -> Result<StockMovement, ProductError> {
        let key = id.clone();
        let (actor, outbox) = (actor.clone(), self.outbox.clone());
        let adjusted = self
            .db
            .write_locking(vec![id.as_str().to_owned()], move |conn| {
                let delta = adjustment.delta;
                let Some((stock_after, threshold)) =
                    repository::adjust_stock(conn, &id, delta, clock::now())?
                else {
                    let product = repository::find(conn, &id)?
                        .ok_or_else(|| ProductError::NotFound(id.clone()))?;
                    return Err(ProductError::InsufficientStock {
                        product_id: id.clone(),
                        available: product.stock.units(),
                        delta,
                    });
                };
                let moved = movement(
                    &actor,
                    &id,
                    adjustment.reason.as_str(),
                    adjustment.note.clone(),
                    delta,
                    stock_after,
                );
                repository::insert_movement(conn, &moved)?;
                tell_if_low(
                    &outbox,
                    conn,
                    &id,
                    threshold,
                    stock_after - delta,
                    stock_after,
                )?;
                record(
                    conn,
                    &actor,
                    "product.stock_adjusted",
                    id.to_string(),
                    Some(json!({"stock": stock_after - delta})),
                    Some(json!({
                        "stock": stock_after,
                        "delta": delta,
                        "reason": adjustment.reason.as_str(),
                        "note": adjustment.note,
                    })),
                )?;
                Ok(moved)
            })
            .await;
        self.cache.invalidate([key.as_str()]);
        adjusted
    }

    /// A page of a product's stock movements (sets and adjustments by
    /// staff), newest first.
    pub async fn movements(
        &self,
        id: ProductId,
        page: PageRequest,
    ) -> Result<MovementPage, ProductError> {
        self.db
            .run(move |conn| {
                if repository::find(conn, &id)?.is_none() {
                    return Err(ProductError::NotFound(id));
                }
                let rows = repository::movements(conn, &id, &page)?;
                let (movements, next_cursor) = page.finish(rows, |m| m.id.as_str());
                Ok(MovementPage {
                    movements,
                    next_cursor,
                })
            })
            .await
    }

    /// Takes a product off sale (`archive`) or puts it back (`restore`):
    /// idempotent (a product already there is answered as it is, with no
    /// audit entry and no event); otherwise `actor`'s change is in the audit
    /// log (`product.archived`, `product.restored`) and its event in the
    /// outbox, in the transaction of the change. A reservation that waits
    /// for the product's row lock sees the new status.
    pub async fn set_status(
        &self,
        actor: &Actor,
        id: ProductId,
        status: ProductStatus,
    ) -> Result<Product, ProductError> {
        let key = id.clone();
        let (actor, outbox) = (actor.clone(), self.outbox.clone());
        let updated = self
            .db
            .write_locking(vec![id.as_str().to_owned()], move |conn| {
                let now = clock::now();
                if repository::set_status(conn, &id, status, now)? {
                    let action = match status {
                        ProductStatus::Archived => {
                            outbox.publish(
                                conn,
                                &ProductArchived {
                                    product_id: id.to_string(),
                                },
                            )?;
                            "product.archived"
                        }
                        ProductStatus::Active => {
                            outbox.publish(
                                conn,
                                &ProductRestored {
                                    product_id: id.to_string(),
                                },
                            )?;
                            "product.restored"
                        }
                    };
                    let was = match status {
                        ProductStatus::Archived => ProductStatus::Active,
                        ProductStatus::Active => ProductStatus::Archived,
                    };
                    record(
                        conn,
                        &actor,
                        action,
                        id.to_string(),
                        Some(json!({"status": was.as_str()})),
                        Some(json!({"status": status.as_str()})),
                    )?;
                }
                repository::find(conn, &id)?.ok_or_else(|| ProductError::NotFound(id.clone()))
            })
            .await;
        self.cache.invalidate([key.as_str()]);
        if updated.is_ok() {
            self.outbox.wake();
        }
        updated
    }

    /// Fills an empty catalog with the demo products; returns how many were added.
    pub async fn seed_demo(&self) -> Result<usize, ProductError> {
        self.db
            .write(|conn| {
                if !repository::is_empty(conn)? {
                    return Ok(0);
                }
                let demo = demo_catalog();
                for product in &demo {
                    repository::insert(conn, &ProductId::generate(), product, clock::now())?;
                }
                Ok(demo.len())
            })
            .await
    }
}

/// Tells `product.stock_low`, in the change's transaction, when a change of
/// the product's stock from `before` to `after` fell below its threshold.
fn tell_if_low(
    outbox: &Outbox,
    conn: &mut AnyConnection,
    id: &ProductId,
    threshold: Option<i64>,
    before: i64,
    after: i64,
) -> Result<(), ProductError> {
    if let Some(threshold) = fell_below(threshold, before, after) {
        outbox.publish(
            conn,
            &ProductStockLow {
                product_id: id.to_string(),
                stock: after,
                threshold,
            },
        )?;
    }
    Ok(())
}

/// What must hold for a product as it stands for an edit to apply (the
/// client's `If-Match`, checked against the product's representation).
pub type Precondition = Box<dyn Fn(&Product) -> bool + Send>;

/// A stock movement made now by `actor`, in the current request.
fn movement(
    actor: &Actor,
    id: &ProductId,
    reason: &str,
    note: Option<String>,
    delta: i64,
    stock_after: i64,
) -> StockMovement {
    StockMovement {
        id: uuid::Uuid::now_v7().to_string(),
        product_id: id.clone(),
        actor: actor.as_str().to_owned(),
        reason: reason.to_owned(),
        note,
        delta,
        stock_after,
        request_id: shared_kernel::web::request_id::current(),
        occurred_at: clock::now(),
    }
}

/// How many times a stock set reads the stock again when orders keep changing it.
const SET_TRIES: u32 = 20;

/// Records `actor`'s write of product `id` in the audit log (`action`, what
/// changed as it was and as it became), on the change's connection.
fn record(
    conn: &mut AnyConnection,
    actor: &Actor,
    action: &'static str,
    id: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> diesel::QueryResult<()> {
    audit::record(
        conn,
        actor,
        AuditEntry {
            action,
            target_type: "product",
            target_id: id,
            before,
            after,
        },
    )
}

/// A product's fields as the audit log shows them.
fn audited(p: &Product) -> serde_json::Value {
    json!({
        "name": p.name.as_str(),
        "description": p.description.as_str(),
        "price": p.price.minor(),
        "currency": p.price.currency().as_str(),
        "stock": p.stock.units(),
    })
}

/// The original spec's example product and a few more. Prices are in fen:
/// the iPhone 15 costs 9,999.00 CNY.
fn demo_catalog() -> Vec<NewProduct> {
    let item = |name: &str, description: &str, price: i64, stock: i64| -> Option<NewProduct> {
        Some(NewProduct {
            name: ProductName::parse(name).ok()?,
            description: Description::parse(description).ok()?,
            price: Money::new(price, Currency::CNY),
            stock: Stock::new(stock).ok()?,
        })
    };
    [
        item("iPhone 15", "Apple iPhone 15, 128 GB, black", 999_900, 100),
        item(
            "AirPods Pro",
            "Apple AirPods Pro (2nd generation) with USB-C case",
            189_900,
            250,
        ),
        item(
            "Mechanical Keyboard",
            "87-key hot-swappable keyboard, brown switches",
            49_900,
            40,
        ),
        item(
            "Coffee Beans 1 kg",
            "Yunnan arabica, medium roast",
            12_800,
            500,
        ),
        item("Notebook A5", "Dotted, 160 pages", 1_990, 1_000),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_demo_catalog_is_valid_and_starts_with_the_spec_example() {
        let demo = super::demo_catalog();
        assert_eq!(demo.len(), 5, "every demo product passes validation");
        assert_eq!(demo[0].name.as_str(), "iPhone 15");
        assert_eq!(demo[0].stock.units(), 100);
    }
}

//! The catalog's read cache: products by id, in this process, kept right by
//! invalidation.
//!
//! The rules that keep it right:
//! - A write invalidates the products it changed *after* its transaction
//!   commits (on this instance: the write path calls [`ProductCache::invalidate`];
//!   on every instance, this one included: the [`Invalidator`] hears of every
//!   committed change, from PostgreSQL's `NOTIFY` or SQLite's `data_version`).
//! - A reader that missed takes a [`Ticket`] *before* it reads the database
//!   and may fill the cache with what it read only if nothing that could
//!   concern its product was invalidated since: a row read before a write
//!   committed never lands in the cache after that write's invalidation.
//!   Generations are kept per shard (an invalidation of any product of the
//!   shard refuses the fills in flight there) and per cache (`invalidate_all`).
//! - While no [`Invalidator`] is connected, writes of other instances would go
//!   unheard, so nothing is cached: every read goes to the database.
//! - Unknown ids are never cached; the cache holds at most a fixed number of
//!   bytes (an estimate per entry), evicting an arbitrary entry of the shard
//!   when full.

mod invalidator;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use actix_web::web::Bytes;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use shared_kernel::model::ports::{
    Inventory, PortError, ProductSnapshot, ReservationLine, ReserveError, ReservedLine,
};

use crate::model::Product;

pub use invalidator::{CHANNEL, Invalidator};

/// How many independently locked parts the cache has.
const SHARDS: usize = 64;
/// The default budget: about 45,000 products of typical size.
pub const DEFAULT_MAX_BYTES: usize = 32 * 1024 * 1024;
/// What an entry costs besides its text (the map slot, the `Arc`, the JSON syntax).
const ENTRY_OVERHEAD_BYTES: usize = 512;

/// A handle on one process's product cache; clones share it.
#[derive(Clone)]
pub struct ProductCache {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    /// Bumped by every `invalidate_all`.
    epoch: AtomicU64,
    /// Whether an invalidator is connected, so that other instances' writes are heard.
    live: AtomicBool,
    max_bytes_per_shard: usize,
}

#[derive(Default)]
struct Shard {
    /// Bumped by every invalidation of a product of this shard.
    generation: u64,
    bytes: usize,
    entries: HashMap<String, Arc<CachedProduct>>,
}

/// A product as cached, with its HTTP representation once rendered.
#[derive(Debug)]
pub struct CachedProduct {
    product: Product,
    rendered: OnceLock<Bytes>,
}

impl CachedProduct {
    pub fn product(&self) -> &Product {
        &self.product
    }

    /// The product's representation, rendered by `render` the first time and
    /// kept with the entry (an entry never changes: a new row is a new entry).
    pub fn rendered<E>(
        &self,
        render: impl FnOnce(&Product) -> Result<Bytes, E>,
    ) -> Result<Bytes, E> {
        if let Some(body) = self.rendered.get() {
            return Ok(body.clone());
        }
        let body = render(&self.product)?;
        let _ = self.rendered.set(body.clone());
        Ok(body)
    }

    fn weight(&self) -> usize {
        let p = &self.product;
        let text = p.id.as_str().len() + p.name.as_str().len() + p.description.as_str().len();
        // The product's strings, and about as much again for its rendered body.
        2 * text + ENTRY_OVERHEAD_BYTES
    }
}

/// What a lookup found: the product, or permission to fill its place later.
pub enum Lookup {
    Hit(Arc<CachedProduct>),
    Miss(Ticket),
}

/// Taken on a miss, before reading the database: the state of the cache
/// that a fill must still find for what was read to be current.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    shard: usize,
    generation: u64,
    epoch: u64,
}

impl Default for ProductCache {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BYTES)
    }
}

impl std::fmt::Debug for ProductCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProductCache")
            .field("live", &self.is_live())
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

impl ProductCache {
    /// An empty cache holding at most about `max_bytes`. It caches nothing
    /// until an [`Invalidator`] is connected (see [`Invalidator::start`]).
    pub fn new(max_bytes: usize) -> Self {
        metrics::describe_counter!(
            "shop_product_cache_total",
            "Product reads by id, by result (hit: answered from memory; miss: read from the database)"
        );
        for result in ["hit", "miss"] {
            metrics::counter!("shop_product_cache_total", "result" => result).increment(0);
        }
        Self {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
                epoch: AtomicU64::new(0),
                live: AtomicBool::new(false),
                max_bytes_per_shard: (max_bytes / SHARDS).max(ENTRY_OVERHEAD_BYTES * 4),
            }),
        }
    }

    /// The cached product, or a ticket to fill its place with what the database says.
    pub fn lookup(&self, id: &str) -> Lookup {
        let index = shard_of(id);
        let shard = self.shard(index);
        if let Some(hit) = shard.entries.get(id) {
            let hit = hit.clone();
            drop(shard);
            metrics::counter!("shop_product_cache_total", "result" => "hit").increment(1);
            return Lookup::Hit(hit);
        }
        let ticket = Ticket {
            shard: index,
            generation: shard.generation,
            epoch: self.inner.epoch.load(Ordering::SeqCst),
        };
        drop(shard);
        metrics::counter!("shop_product_cache_total", "result" => "miss").increment(1);
        Lookup::Miss(ticket)
    }

    /// The cached product, if any, without counting a read (for checks and diagnostics).
    pub fn peek(&self, id: &str) -> Option<Arc<CachedProduct>> {
        self.shard(shard_of(id)).entries.get(id).cloned()
    }

    /// Keeps `product`, read after `ticket` was taken, unless something was
    /// invalidated since (then what was read may be stale) or no invalidator
    /// is connected. Returns the product either way.
    pub fn fill(&self, ticket: Ticket, product: Product) -> Arc<CachedProduct> {
        let entry = Arc::new(CachedProduct {
            product,
            rendered: OnceLock::new(),
        });
        let mut shard = self.shard(ticket.shard);
        let current = shard.generation == ticket.generation
            && self.inner.epoch.load(Ordering::SeqCst) == ticket.epoch
            && self.inner.live.load(Ordering::SeqCst);
        if current {
            let weight = entry.weight();
            let key = entry.product.id.as_str().to_owned();
            if let Some(old) = shard.entries.remove(&key) {
                shard.bytes = shard.bytes.saturating_sub(old.weight());
            }
            while shard.bytes + weight > self.inner.max_bytes_per_shard {
                let Some(victim) = shard.entries.keys().next().cloned() else {
                    break;
                };
                if let Some(old) = shard.entries.remove(&victim) {
                    shard.bytes = shard.bytes.saturating_sub(old.weight());
                }
            }
            shard.bytes += weight;
            shard.entries.insert(key, entry.clone());
        }
        entry
    }

    /// Forgets these products; fills in flight for their shards are refused.
    /// Call it after the transaction that changed them committed.
    pub fn invalidate<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        for id in ids {
            let mut shard = self.shard(shard_of(id));
            shard.generation = shard.generation.wrapping_add(1);
            if let Some(old) = shard.entries.remove(id) {
                shard.bytes = shard.bytes.saturating_sub(old.weight());
            }
        }
    }

    /// Forgets every product; every fill in flight is refused.
    pub fn invalidate_all(&self) {
        self.inner.epoch.fetch_add(1, Ordering::SeqCst);
        for index in 0..SHARDS {
            let mut shard = self.shard(index);
            shard.entries.clear();
            shard.bytes = 0;
        }
    }

    /// Whether products are being cached: an invalidator is connected.
    pub fn is_live(&self) -> bool {
        self.inner.live.load(Ordering::SeqCst)
    }

    /// Starts caching (an invalidator connected: from now on every change
    /// is heard) or stops (it lost its connection: changes may go unheard).
    /// Either way, whatever was cached before is dropped.
    fn set_live(&self, live: bool) {
        if live {
            // Dropped first: what was cached before this point may have missed changes.
            self.invalidate_all();
            self.inner.live.store(true, Ordering::SeqCst);
        } else {
            self.inner.live.store(false, Ordering::SeqCst);
            self.invalidate_all();
        }
    }

    /// How many products are cached.
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|i| self.shard(i).entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, index: usize) -> MutexGuard<'_, Shard> {
        self.inner.shards[index % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// An [`Inventory`] that invalidates the products it changed once each call
/// returned, that is once its transaction committed (or rolled back): the
/// stock an order reserved shows at once in this instance's reads.
/// (`release` names a reservation, not its products: it drops everything.)
/// Other instances hear of the change from their [`Invalidator`].
#[derive(Debug, Clone)]
pub struct InvalidatingInventory<I> {
    inner: I,
    cache: ProductCache,
}

impl<I> InvalidatingInventory<I> {
    pub fn new(inner: I, cache: ProductCache) -> Self {
        Self { inner, cache }
    }
}

#[async_trait]
impl<I: Inventory> Inventory for InvalidatingInventory<I> {
    async fn products(&self, product_ids: &[String]) -> Result<Vec<ProductSnapshot>, PortError> {
        self.inner.products(product_ids).await
    }

    async fn reserve(
        &self,
        reservation_id: &str,
        lines: &[ReservationLine],
        hold_until: DateTime<Utc>,
    ) -> Result<Vec<ReservedLine>, ReserveError> {
        let reserved = self.inner.reserve(reservation_id, lines, hold_until).await;
        self.cache
            .invalidate(lines.iter().map(|line| line.product_id.as_str()));
        reserved
    }

    async fn release(&self, reservation_id: &str) -> Result<(), PortError> {
        let released = self.inner.release(reservation_id).await;
        self.cache.invalidate_all();
        released
    }
}

/// FNV-1a: product ids are not chosen by clients (unknown ids are never
/// cached), so a fast hash that spreads UUIDs is enough to pick a shard.
fn shard_of(id: &str) -> usize {
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % SHARDS as u64) as usize
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicI64;

    use shared_kernel::model::money::{Currency, Money};

    use super::*;
    use crate::model::{Description, ProductId, ProductName, Stock};

    fn product(id: &str, stock: i64) -> Product {
        Product {
            id: ProductId::from(id.to_owned()),
            name: ProductName::parse("Lamp").unwrap(),
            description: Description::parse("warm white").unwrap(),
            price: Money::new(100, Currency::CNY),
            stock: Stock::stored(stock).unwrap(),
            status: crate::model::ProductStatus::Active,
            low_stock_threshold: None,
            created_at: chrono::NaiveDateTime::default(),
            updated_at: chrono::NaiveDateTime::default(),
        }
    }

    fn live_cache() -> ProductCache {
        let cache = ProductCache::default();
        cache.set_live(true);
        cache
    }

    fn ticket(cache: &ProductCache, id: &str) -> Ticket {
        match cache.lookup(id) {
            Lookup::Miss(ticket) => ticket,
            Lookup::Hit(_) => panic!("{id} should not be cached"),
        }
    }

    fn cached_stock(cache: &ProductCache, id: &str) -> Option<i64> {
        match cache.lookup(id) {
            Lookup::Hit(hit) => Some(hit.product().stock.units()),
            Lookup::Miss(_) => None,
        }
    }

    #[test]
    fn a_fill_is_served_until_its_product_is_invalidated() {
        let cache = live_cache();
        let t = ticket(&cache, "p");
        cache.fill(t, product("p", 5));
        assert_eq!(cached_stock(&cache, "p"), Some(5));
        cache.invalidate(["p"]);
        assert_eq!(cached_stock(&cache, "p"), None);
    }

    #[test]
    fn a_read_that_began_before_an_invalidation_is_not_kept() {
        let cache = live_cache();
        // A reader misses and reads stock 5 from the database...
        let before = ticket(&cache, "p");
        // ...meanwhile a write sets 4, commits and invalidates...
        cache.invalidate(["p"]);
        // ...and the reader's stale row arrives: answered, but not kept.
        let answered = cache.fill(before, product("p", 5));
        assert_eq!(answered.product().stock.units(), 5);
        assert_eq!(
            cached_stock(&cache, "p"),
            None,
            "the stale row was not cached"
        );
        // A read that began after the invalidation is current, and kept.
        let after = ticket(&cache, "p");
        cache.fill(after, product("p", 4));
        assert_eq!(cached_stock(&cache, "p"), Some(4));
    }

    #[test]
    fn invalidating_everything_refuses_every_fill_in_flight() {
        let cache = live_cache();
        let before = ticket(&cache, "p");
        cache.invalidate_all();
        cache.fill(before, product("p", 5));
        assert_eq!(cached_stock(&cache, "p"), None);
    }

    #[test]
    fn nothing_is_cached_while_no_invalidator_listens() {
        let cache = ProductCache::default();
        let t = ticket(&cache, "p");
        cache.fill(t, product("p", 5));
        assert_eq!(cached_stock(&cache, "p"), None, "not live yet");
        cache.set_live(true);
        let t = ticket(&cache, "p");
        cache.fill(t, product("p", 5));
        assert_eq!(cached_stock(&cache, "p"), Some(5));
        cache.set_live(false);
        assert_eq!(
            cached_stock(&cache, "p"),
            None,
            "dropped when the listener went away"
        );
        let t = ticket(&cache, "p");
        cache.fill(t, product("p", 5));
        assert_eq!(cached_stock(&cache, "p"), None);
    }

    #[test]
    fn the_cache_stays_within_its_byte_budget() {
        let cache = ProductCache::new(SHARDS * 8 * 1024);
        cache.set_live(true);
        for i in 0..10_000 {
            let id = format!("product-{i}");
            let t = ticket(&cache, &id);
            cache.fill(t, product(&id, i));
        }
        let weight = cache.fill(ticket(&cache, "x"), product("x", 0)).weight();
        let most = SHARDS * (8 * 1024 / weight);
        assert!(
            cache.len() <= most,
            "{} entries, at most {most}",
            cache.len()
        );
        assert!(cache.len() >= most / 2, "evicts only what it must");
    }

    #[test]
    fn a_rendering_is_made_once_per_entry() {
        let cache = live_cache();
        let entry = cache.fill(ticket(&cache, "p"), product("p", 5));
        let mut renders = 0;
        for _ in 0..3 {
            let body: Result<Bytes, ()> = entry.rendered(|p| {
                renders += 1;
                Ok(Bytes::from(p.stock.units().to_string()))
            });
            assert_eq!(body.unwrap(), Bytes::from("5"));
        }
        assert_eq!(renders, 1);
    }

    /// Readers race a writer on one product: once a write's invalidation has
    /// returned, no reader may be served an older stock. The pause between a
    /// reader's database read and its fill makes the stale fill likely.
    #[test]
    fn concurrent_readers_never_see_a_write_undone() {
        let cache = live_cache();
        let database = Arc::new(AtomicI64::new(0));
        let invalidated = Arc::new(AtomicI64::new(0));
        let writes = 300;
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (cache, database, invalidated) =
                    (cache.clone(), database.clone(), invalidated.clone());
                std::thread::spawn(move || {
                    let mut stale = 0;
                    while invalidated.load(Ordering::SeqCst) < writes {
                        let floor = invalidated.load(Ordering::SeqCst);
                        let seen = match cache.lookup("p") {
                            Lookup::Hit(hit) => hit.product().stock.units(),
                            Lookup::Miss(ticket) => {
                                let read = database.load(Ordering::SeqCst);
                                std::thread::yield_now();
                                cache
                                    .fill(ticket, product("p", read))
                                    .product()
                                    .stock
                                    .units()
                            }
                        };
                        if seen < floor {
                            stale += 1;
                        }
                    }
                    stale
                })
            })
            .collect();
        for version in 1..=writes {
            database.store(version, Ordering::SeqCst); // the commit
            cache.invalidate(["p"]);
            invalidated.store(version, Ordering::SeqCst);
            std::thread::yield_now();
        }
        let stale: i32 = readers.into_iter().map(|r| r.join().unwrap()).sum();
        assert_eq!(
            stale, 0,
            "reads served a stock older than an invalidated write"
        );
    }

    #[test]
    fn ids_spread_over_the_shards() {
        let used: std::collections::HashSet<usize> = (0..1000)
            .map(|_| shard_of(ProductId::generate().as_str()))
            .collect();
        assert_eq!(used.len(), SHARDS);
    }
}

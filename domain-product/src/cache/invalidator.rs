//! Hears of every committed change to products, whichever instance (or
//! person at a SQL prompt) made it, and invalidates the cache within 100 ms.
//!
//! - PostgreSQL: a trigger on `products` (migration `product_cache_notify`)
//!   sends `NOTIFY shop_products, '<product id>'` for every row updated or
//!   deleted; PostgreSQL delivers it when, and only if, the transaction
//!   commits. A dedicated connection `LISTEN`s and is polled every 10 ms;
//!   each id heard is invalidated (an empty payload invalidates everything).
//! - SQLite (several instances may share one file): a dedicated connection
//!   reads `PRAGMA data_version` every 20 ms, which changes whenever another
//!   connection committed; then everything is invalidated. Under a pure read
//!   load it never changes.
//! - MySQL (no notifications): triggers append each changed product's id to
//!   `product_changes` in the writer's transaction; a dedicated connection
//!   reads the rows it has not seen every 20 ms ([`ChangeLog`]) and
//!   invalidates their ids.
//!
//! Until it is connected, and whenever it loses its connection (changes may
//! have gone unheard), the cache is dropped and caches nothing; it starts
//! again, empty, once connected anew.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, QueryableByName, RunQueryDsl};
use shared_kernel::storage::db::DatabaseUrl;

use super::{Inner, ProductCache};

#[cfg(feature = "mysql")]
mod change_log;
#[cfg(feature = "mysql")]
use change_log::ChangeLog;

/// The channel the `products` trigger notifies.
pub const CHANNEL: &str = "shop_products";

/// How often the PostgreSQL listener reads what arrived on its socket.
const PG_POLL: Duration = Duration::from_millis(10);
/// How often the PostgreSQL listener checks that its connection still answers
/// (a connection that died silently would otherwise go unnoticed).
const PG_CHECK: Duration = Duration::from_secs(2);
/// How often the SQLite poller reads `data_version`.
const SQLITE_POLL: Duration = Duration::from_millis(20);
/// How often the MySQL poller reads `product_changes`.
#[cfg(feature = "mysql")]
const MYSQL_POLL: Duration = Duration::from_millis(20);
/// How often the MySQL poller deletes old `product_changes` rows.
#[cfg(feature = "mysql")]
const MYSQL_PRUNE_EVERY: Duration = Duration::from_secs(60);
/// The pause between reconnection attempts.
const RECONNECT: Duration = Duration::from_millis(500);

/// The running listener (or poller) of one cache.
pub struct Invalidator {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Invalidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invalidator").finish_non_exhaustive()
    }
}

impl Invalidator {
    /// Starts listening for changes to `url`'s products on a dedicated thread
    /// and connection. It stops on [`stop`](Self::stop), when dropped, or
    /// when every handle on the cache is gone.
    pub fn start(cache: &ProductCache, url: &DatabaseUrl) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let listener = Listener {
            cache: Arc::downgrade(&cache.inner),
            stop: stop.clone(),
        };
        let url = url.clone();
        let thread = std::thread::Builder::new()
            .name("product-cache".into())
            .spawn(move || listener.run(&url))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops listening and waits for the thread to end; the cache caches nothing after.
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = actix_web::rt::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for Invalidator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct Listener {
    cache: Weak<Inner>,
    stop: Arc<AtomicBool>,
}

/// Why a connection's loop ended.
enum End {
    /// Asked to stop, or nobody holds the cache any more.
    Stopped,
    /// The connection failed; connect again.
    Lost(diesel::result::Error),
}

impl Listener {
    fn run(&self, url: &DatabaseUrl) {
        let mut failing = false;
        while self.cache().is_some() {
            let connected = match url {
                DatabaseUrl::Postgres(url) => PgConnection::establish(url)
                    .map_err(|e| e.to_string())
                    .map(|conn| self.listen(conn)),
                DatabaseUrl::Sqlite(path) => SqliteConnection::establish(&path.to_string_lossy())
                    .map_err(|e| e.to_string())
                    .map(|conn| self.poll_data_version(conn)),
                #[cfg(feature = "mysql")]
                DatabaseUrl::Mysql(url) => diesel::mysql::MysqlConnection::establish(url)
                    .map_err(|e| e.to_string())
                    .map(|conn| self.poll_change_log(conn)),
                #[cfg(not(feature = "mysql"))]
                DatabaseUrl::Mysql(_) => {
                    Err(shared_kernel::storage::db::MYSQL_NOT_BUILT.to_owned())
                }
            };
            if let Some(cache) = self.cache.upgrade() {
                cache_of(cache).set_live(false);
            }
            match connected {
                Ok(End::Stopped) => return,
                Ok(End::Lost(error)) => {
                    tracing::warn!(%error, "the product cache lost its database connection; caching nothing until it reconnects");
                    failing = false;
                }
                Err(error) if !failing => {
                    tracing::warn!(%error, "the product cache cannot connect to the database; caching nothing until it can");
                    failing = true;
                }
                Err(_) => {}
            }
            if self.pause(RECONNECT).is_none() {
                return;
            }
        }
    }

    /// The cache, unless asked to stop or every other handle on it is gone.
    /// (The listener holds it only while it uses it, so that it notices.)
    fn cache(&self) -> Option<ProductCache> {
        if self.stop.load(Ordering::SeqCst) {
            return None;
        }
        self.cache.upgrade().map(cache_of)
    }

    /// Sleeps, then [`cache`](Self::cache).
    fn pause(&self, duration: Duration) -> Option<ProductCache> {
        std::thread::sleep(duration);
        self.cache()
    }

    fn listen(&self, mut conn: PgConnection) -> End {
        if let Err(error) = conn.batch_execute(&format!("LISTEN {CHANNEL}")) {
            return End::Lost(error);
        }
        let Some(cache) = self.cache() else {
            return End::Stopped;
        };
        // Listening from here on: every later commit is heard, so caching may start.
        cache.set_live(true);
        drop(cache);
        let mut checked = Instant::now();
        let mut ids = Vec::new();
        loop {
            let Some(cache) = self.pause(PG_POLL) else {
                return End::Stopped;
            };
            let mut everything = false;
            for notification in conn.notifications_iter() {
                match notification {
                    Ok(n) if n.payload.is_empty() => everything = true,
                    Ok(n) => ids.push(n.payload),
                    Err(error) => return End::Lost(error),
                }
            }
            if everything {
                cache.invalidate_all();
            } else if !ids.is_empty() {
                cache.invalidate(ids.iter().map(String::as_str));
            }
            ids.clear();
            if checked.elapsed() >= PG_CHECK {
                if let Err(error) = conn.batch_execute("SELECT 1") {
                    return End::Lost(error);
                }
                checked = Instant::now();
            }
        }
    }

    fn poll_data_version(&self, mut conn: SqliteConnection) -> End {
        let mut seen = match conn
            .batch_execute("PRAGMA busy_timeout = 1000")
            .and_then(|()| data_version(&mut conn))
        {
            Ok(version) => version,
            Err(error) => return End::Lost(error),
        };
        let Some(cache) = self.cache() else {
            return End::Stopped;
        };
        // Every commit after that read changes data_version, so caching may start.
        cache.set_live(true);
        drop(cache);
        loop {
            let Some(cache) = self.pause(SQLITE_POLL) else {
                return End::Stopped;
            };
            match data_version(&mut conn) {
                Ok(version) if version != seen => {
                    seen = version;
                    cache.invalidate_all();
                }
                Ok(_) => {}
                Err(error) => return End::Lost(error),
            }
        }
    }
}

#[cfg(feature = "mysql")]
impl Listener {
    fn poll_change_log(&self, mut conn: diesel::mysql::MysqlConnection) -> End {
        let mut log = match ChangeLog::open(&mut conn) {
            Ok(log) => log,
            Err(error) => return End::Lost(error),
        };
        let Some(cache) = self.cache() else {
            return End::Stopped;
        };
        // Every change committed from here on has an id the log will read.
        cache.set_live(true);
        drop(cache);
        let mut pruned = Instant::now();
        loop {
            let Some(cache) = self.pause(MYSQL_POLL) else {
                return End::Stopped;
            };
            match log.read(&mut conn) {
                Ok(ids) if !ids.is_empty() => cache.invalidate(ids.iter().map(String::as_str)),
                Ok(_) => {}
                Err(error) => return End::Lost(error),
            }
            if pruned.elapsed() >= MYSQL_PRUNE_EVERY {
                if let Err(error) = change_log::prune(&mut conn) {
                    return End::Lost(error);
                }
                pruned = Instant::now();
            }
        }
    }
}

fn cache_of(inner: Arc<Inner>) -> ProductCache {
    ProductCache { inner }
}

/// SQLite's count of commits by other connections (as seen by this one).
fn data_version(conn: &mut SqliteConnection) -> diesel::QueryResult<i64> {
    #[derive(QueryableByName)]
    struct DataVersion {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        data_version: i64,
    }
    diesel::sql_query("PRAGMA data_version")
        .get_result::<DataVersion>(conn)
        .map(|row| row.data_version)
}

//! The database seam. One binary serves every backend; `DATABASE_URL`'s
//! scheme chooses it. Repositories write ordinary diesel queries against
//! [`AnyConnection`]; the few things that differ per backend are matched on
//! the variant here and nowhere else: this file and the macros it exports
//! (`per_backend!`, `insert_rows!`, `insert_ignoring_duplicates!`,
//! `update_returning!`, `load_skip_locked!`), plus the transaction control
//! in [`crate::storage::group_commit`]. MySQL and MariaDB are behind the cargo
//! feature `mysql` (they link the system's client library).
//!
//! diesel is synchronous: [`Db::run`] moves every read, including taking a
//! connection from the pool, onto the blocking thread pool, and
//! [`Db::write`] hands every write unit to the writer threads of
//! [`crate::storage::group_commit`], which share commits between concurrent units; the
//! async executor threads never wait on the database.
//!
//! What differs per backend, at a glance:
//!
//! | | SQLite | PostgreSQL | MySQL / MariaDB |
//! |---|---|---|---|
//! | connecting | a file; `busy_timeout`, WAL, `synchronous=NORMAL`, foreign keys on every connection | libpq URL | `mysql://` URL; every connection: `READ COMMITTED`, strict `sql_mode`, UTC, utf8mb4 |
//! | writers (group commit) | one (the engine has one writer) | `SHOP__DATABASE__WRITERS` (default 2); `lock_timeout` 500 ms | as PostgreSQL; `innodb_lock_wait_timeout` 1 s |
//! | write transaction | `BEGIN IMMEDIATE` (takes the lock up front) | `BEGIN` (read committed) | `BEGIN` (read committed) |
//! | claiming rows (outbox, expiry) | the writer's lock is the claim | `FOR UPDATE SKIP LOCKED` | `FOR UPDATE SKIP LOCKED` (MySQL 8, MariaDB 10.6) |
//! | insert unless present | `ON CONFLICT DO NOTHING` | `ON CONFLICT DO NOTHING` | `INSERT IGNORE` (`ON DUPLICATE KEY` counts a duplicate as a row) |
//! | changed row's values | `UPDATE ... RETURNING` | `UPDATE ... RETURNING` | `UPDATE`, then `SELECT` in the same transaction |
//! | lost races retried | "database is locked" | deadlock, serialization failure, lock timeout | deadlock (1213), lock wait timeout (1205) |
//! | migration lock | the write lock | `pg_advisory_lock` | `GET_LOCK` |
//! | product cache hears changes by | `PRAGMA data_version` | `LISTEN`/`NOTIFY` | polling `product_changes`, written by a trigger |

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
#[cfg(feature = "mysql")]
use diesel::mysql::MysqlConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

/// The connection and the errors of database work, used beside the pool everywhere.
pub use crate::storage::connection::{AnyConnection, DbError};
use crate::storage::group_commit::{GroupCommit, Locks, LostRaceDetector};

/// The backends one binary can talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// MySQL 8 or MariaDB 10.6+ (builds with the `mysql` feature).
    Mysql,
}

/// A parsed `DATABASE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://PATH`: PATH as written after the scheme (relative or absolute).
    Sqlite(PathBuf),
    /// `postgres://...` or `postgresql://...`, handed to libpq as is.
    Postgres(String),
    /// `mysql://user:password@host:port/database`, handed to the MySQL client library as is.
    Mysql(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "DATABASE_URL must start with sqlite://, postgres://, postgresql:// or mysql:// (got {0:?})"
)]
pub struct UnsupportedDatabaseUrl(pub String);

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, UnsupportedDatabaseUrl> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(UnsupportedDatabaseUrl(url.to_owned()));
            }
            Ok(Self::Sqlite(PathBuf::from(path)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.to_owned()))
        } else if url.starts_with("mysql://") {
            Ok(Self::Mysql(url.to_owned()))
        } else {
            Err(UnsupportedDatabaseUrl(redact(url)))
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
            Self::Mysql(_) => Backend::Mysql,
        }
    }

    /// The URL with any password removed, fit for a log line.
    pub fn redacted(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite://{}", path.display()),
            Self::Postgres(url) | Self::Mysql(url) => redact(url),
        }
    }
}

/// The URL with its secrets masked: the password of `scheme://user:password@host`,
/// and every query parameter's value (`?password=...`, `?sslpassword=...`:
/// libpq takes secrets there too, so none is shown, whatever its name).
fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => base.to_owned(),
            },
            None => base.to_owned(),
        },
        None => base.to_owned(),
    };
    let Some(query) = query else {
        return base;
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) => format!("{key}=***"),
            None => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", masked.join("&"))
}

/// How long SQLite waits for a lock before giving up.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;

/// How long a PostgreSQL writer waits for a row lock before its unit is
/// rolled back and tried again: it also breaks a deadlock between two
/// batches sooner than the server's own detector (`deadlock_timeout`, 1 s).
const POSTGRES_WRITER_LOCK_TIMEOUT: &str = "500ms";

/// The same for a MySQL writer, in whole seconds (InnoDB's unit; its least).
#[cfg(feature = "mysql")]
const MYSQL_WRITER_LOCK_WAIT_TIMEOUT_SECS: u32 = 1;

/// What every MySQL connection is set to, so that the same queries mean the
/// same as on PostgreSQL: read committed (InnoDB's default, repeatable read,
/// would read one snapshot per transaction and take gap locks that deadlock
/// concurrent inserts), strict modes (a value that does not fit is an error,
/// never truncated or zeroed). diesel itself sets UTC and utf8mb4.
#[cfg(feature = "mysql")]
const MYSQL_SESSION: &str = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;
     SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,ONLY_FULL_GROUP_BY';";

/// What a build without the `mysql` feature says when given a `mysql://` URL.
pub const MYSQL_NOT_BUILT: &str = "this build of shop does not speak MySQL: build it with \
`cargo build --release --features mysql` after installing the MariaDB client library \
(Debian/Ubuntu: apt-get install libmariadb-dev; see the README's MySQL section)";

/// Opens connections of the right variant and prepares each one.
#[derive(Debug, Clone)]
pub struct ConnectionManager {
    url: DatabaseUrl,
}

impl ManageConnection for ConnectionManager {
    type Connection = AnyConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, r2d2::Error> {
        let mut conn = self.open()?;
        conn.set_instrumentation(LostRaceDetector::new("pool", None));
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, _conn: &mut AnyConnection) -> bool {
        false
    }
}

impl ConnectionManager {
    /// Opens one connection and prepares it for this backend.
    fn open(&self) -> Result<AnyConnection, r2d2::Error> {
        match &self.url {
            DatabaseUrl::Sqlite(path) => {
                let path = path.to_str().ok_or_else(|| {
                    r2d2::Error::ConnectionError(diesel::ConnectionError::InvalidConnectionUrl(
                        "the SQLite path is not valid UTF-8".into(),
                    ))
                })?;
                let mut conn =
                    SqliteConnection::establish(path).map_err(r2d2::Error::ConnectionError)?;
                // Every pooled connection needs these; a pragma run once on one
                // connection is not enough. The busy timeout comes first so that
                // connections opened together wait for each other's switch to WAL.
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS};
                     PRAGMA journal_mode = WAL;
                     PRAGMA synchronous = NORMAL;
                     PRAGMA foreign_keys = ON;"
                ))
                .map_err(r2d2::Error::QueryError)?;
                Ok(AnyConnection::Sqlite(conn))
            }
            DatabaseUrl::Postgres(url) => {
                let conn = PgConnection::establish(url).map_err(r2d2::Error::ConnectionError)?;
                Ok(AnyConnection::Postgres(conn))
            }
            #[cfg(feature = "mysql")]
            DatabaseUrl::Mysql(url) => {
                let mut conn =
                    MysqlConnection::establish(url).map_err(r2d2::Error::ConnectionError)?;
                conn.batch_execute(MYSQL_SESSION)
                    .map_err(r2d2::Error::QueryError)?;
                Ok(AnyConnection::Mysql(conn))
            }
            #[cfg(not(feature = "mysql"))]
            DatabaseUrl::Mysql(_) => Err(r2d2::Error::ConnectionError(
                diesel::ConnectionError::InvalidConnectionUrl(MYSQL_NOT_BUILT.into()),
            )),
        }
    }

    /// Opens a writer's connection.
    fn open_writer(&self) -> Result<AnyConnection, DbError> {
        let mut conn = self
            .open()
            .map_err(|e| DbError::Unavailable(e.to_string()))?;
        match &mut conn {
            AnyConnection::Postgres(pg) => pg.batch_execute(&format!(
                "SET lock_timeout = '{POSTGRES_WRITER_LOCK_TIMEOUT}'"
            ))?,
            #[cfg(feature = "mysql")]
            AnyConnection::Mysql(my) => my.batch_execute(&format!(
                "SET SESSION innodb_lock_wait_timeout = {MYSQL_WRITER_LOCK_WAIT_TIMEOUT_SECS}"
            ))?,
            AnyConnection::Sqlite(_) => {}
        }
        Ok(conn)
    }
}

pub type Pool = r2d2::Pool<ConnectionManager>;
pub type PooledConnection = r2d2::PooledConnection<ConnectionManager>;

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Connections of the read pool.
    pub max_size: u32,
    pub connection_timeout: Duration,
    /// Writer connections sharing commits (PostgreSQL; SQLite always has one).
    pub writers: usize,
    /// The most write units one commit holds.
    pub max_batch: usize,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_size: 10,
            connection_timeout: Duration::from_secs(5),
            writers: 2,
            max_batch: 64,
        }
    }
}

/// One database: a pool for reads, writer threads for writes, and the way to use both from async code.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    backend: Backend,
    /// Write units queue here and share commits.
    writers: Arc<GroupCommit>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Opens a pool (creating the SQLite file and its folder when needed) and checks one connection.
    pub fn connect(url: &DatabaseUrl, options: &PoolOptions) -> anyhow::Result<Self> {
        let manager = ConnectionManager { url: url.clone() };
        if let DatabaseUrl::Sqlite(path) = url {
            create_parent_dir(path)?;
        }
        // One connection first, alone: a database that cannot be reached (or
        // does not exist) is one clear error now, not a pool retrying and
        // logging each failure until it gives up. On SQLite it also switches
        // the file to WAL (which persists) before connections opened together
        // could race for the switch, which SQLite refuses the loser without waiting.
        manager
            .connect()
            .map_err(|e| anyhow::anyhow!("cannot connect to {}: {e}", url.redacted()))?;
        let pool = r2d2::Pool::builder()
            .max_size(options.max_size)
            .connection_timeout(options.connection_timeout)
            .test_on_check_out(false)
            .build(manager.clone())?;
        let writers = match url.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres | Backend::Mysql => options.writers.max(1),
        };
        let writers = GroupCommit::start(
            writers,
            options.max_batch,
            Arc::new(move || manager.open_writer()),
        )?;
        Ok(Self {
            pool,
            backend: url.backend(),
            writers: Arc::new(writers),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Connections open, and of those idle, right now.
    pub fn pool_state(&self) -> (u32, u32) {
        let state = self.pool.state();
        (state.connections, state.idle_connections)
    }

    /// Takes a connection, blocking the current thread; for start-up and tests.
    pub fn get_blocking(&self) -> Result<PooledConnection, DbError> {
        self.pool
            .get()
            .map_err(|e| DbError::Unavailable(e.to_string()))
    }

    /// Runs one write unit: `work` runs in a transaction (its own, or one it
    /// shares with other units, each in a savepoint), and this returns once
    /// that commit is durable. When `work` fails, its writes are rolled back
    /// and its error returned. A unit that loses a deadlock or a conflict
    /// runs again, so `work` may run more than once: it must not have side
    /// effects outside the database.
    ///
    /// `work` locks only rows no other unit contends for in an order that
    /// matters (see [`Locks`]); a unit that locks contended rows names their keys with
    /// [`Db::write_locking`], one that cannot tell uses [`Db::write_alone`].
    pub async fn write<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnMut(&mut AnyConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.writers.write(Locks::Unordered, work).await
    }

    /// [`Db::write`] for a unit that locks the rows of these keys (in key
    /// order; a context's own keys, such as product ids): batches run such
    /// units in key order, so that no two batches wait for each other.
    pub async fn write_locking<T, E, F>(&self, keys: Vec<String>, work: F) -> Result<T, E>
    where
        F: FnMut(&mut AnyConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.writers.write(Locks::Keys(keys), work).await
    }

    /// [`Db::write`] for a unit that cannot name what it locks in advance
    /// (event handlers, sweeps): it runs in a transaction of its own.
    pub async fn write_alone<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnMut(&mut AnyConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.writers.write(Locks::Alone, work).await
    }

    /// Write units waiting for a writer right now.
    pub fn write_queue_len(&self) -> usize {
        self.writers.queued()
    }

    /// What this database's writers did since it was opened.
    pub fn write_stats(&self) -> crate::storage::group_commit::WriteStats {
        self.writers.stats()
    }

    /// Runs `work`, which reads, with a pooled connection on the blocking
    /// thread pool, inside the caller's tracing span. Writes go through [`Db::write`].
    pub async fn run<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let pool = self.pool.clone();
        let span = tracing::Span::current();
        let request_id = crate::web::request_id::current();
        actix_web::rt::task::spawn_blocking(move || {
            span.in_scope(|| {
                crate::web::request_id::in_blocking(request_id, || {
                    let waiting = metrics::gauge!("shop_db_pool_waiting");
                    waiting.increment(1.0);
                    let conn = pool.get();
                    waiting.decrement(1.0);
                    let mut conn =
                        conn.map_err(|e| E::from(DbError::Unavailable(e.to_string())))?;
                    work(&mut conn)
                })
            })
        })
        .await
        .unwrap_or_else(|_| Err(E::from(DbError::Aborted)))
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.run(|conn| conn.batch_execute("SELECT 1").map_err(DbError::from))
            .await
    }
}

fn create_parent_dir(path: &Path) -> anyhow::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!("cannot create the database folder {}: {e}", dir.display())
        }),
        _ => Ok(()),
    }
}

/// The migrations to run on each backend, embedded in the binary: one
/// source per group of tables (the event bus's, then each context's that
/// this process runs). Their versions are one sequence across the groups,
/// applied in version order, so that a database first migrated with every
/// group in one folder has nothing left to apply.
pub struct Migrations {
    pub sqlite: Vec<&'static EmbeddedMigrations>,
    pub postgres: Vec<&'static EmbeddedMigrations>,
    #[cfg(feature = "mysql")]
    pub mysql: Vec<&'static EmbeddedMigrations>,
}

/// One group of tables' migrations (the event bus's, or a context's), one
/// embedded folder per backend (the MySQL one is embedded in every build: it
/// is text until a build with the `mysql` feature runs it).
pub struct MigrationSet {
    pub sqlite: &'static EmbeddedMigrations,
    pub postgres: &'static EmbeddedMigrations,
    pub mysql: &'static EmbeddedMigrations,
}

impl Migrations {
    /// The migrations of `groups` (the event bus's, then the contexts'), for every backend.
    pub fn of<'a>(groups: impl IntoIterator<Item = &'a MigrationSet>) -> Self {
        let mut migrations = Self {
            sqlite: Vec::new(),
            postgres: Vec::new(),
            #[cfg(feature = "mysql")]
            mysql: Vec::new(),
        };
        for group in groups {
            migrations.sqlite.push(group.sqlite);
            migrations.postgres.push(group.postgres);
            #[cfg(feature = "mysql")]
            migrations.mysql.push(group.mysql);
        }
        migrations
    }
}

/// Several embedded sources as one: diesel applies the pending ones of all
/// of them in version order.
struct Sources(Vec<&'static EmbeddedMigrations>);

impl<DB: diesel::backend::Backend> diesel::migration::MigrationSource<DB> for Sources {
    fn migrations(
        &self,
    ) -> diesel::migration::Result<Vec<Box<dyn diesel::migration::Migration<DB>>>> {
        let mut all = Vec::new();
        for source in &self.0 {
            all.extend(diesel::migration::MigrationSource::<DB>::migrations(
                *source,
            )?);
        }
        Ok(all)
    }
}

/// A fixed key for PostgreSQL's advisory lock, so that instances starting together migrate one at a time.
const MIGRATION_LOCK_KEY: i64 = 0x5_4f50_4d49_4752;

/// The named lock MySQL instances take to migrate one at a time, and how long one waits for it.
#[cfg(feature = "mysql")]
const MYSQL_MIGRATION_LOCK: &str = "shop.migrations";
#[cfg(feature = "mysql")]
const MYSQL_MIGRATION_LOCK_WAIT_SECS: u32 = 600;

/// Applies every pending migration of `migrations`, under a lock that keeps
/// instances starting together apart; returns the versions applied.
pub fn run_migrations(
    conn: &mut AnyConnection,
    migrations: Migrations,
) -> anyhow::Result<Vec<String>> {
    match conn {
        // The write lock of the migrations' own transactions keeps instances apart.
        AnyConnection::Sqlite(inner) => migrate(inner, migrations.sqlite, "SQLite"),
        AnyConnection::Postgres(inner) => {
            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
                .execute(inner)?;
            let outcome = migrate(inner, migrations.postgres, "PostgreSQL");
            inner.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))?;
            outcome
        }
        #[cfg(feature = "mysql")]
        AnyConnection::Mysql(inner) => {
            #[derive(diesel::QueryableByName)]
            struct Locked {
                #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
                locked: Option<i32>,
            }
            let locked: Locked = diesel::sql_query(format!(
                "SELECT GET_LOCK('{MYSQL_MIGRATION_LOCK}', {MYSQL_MIGRATION_LOCK_WAIT_SECS}) AS locked"
            ))
            .get_result(inner)?;
            if locked.locked != Some(1) {
                anyhow::bail!(
                    "another instance held the migration lock ({MYSQL_MIGRATION_LOCK}) \
                     for {MYSQL_MIGRATION_LOCK_WAIT_SECS} s"
                );
            }
            // DDL commits implicitly on MySQL, so a migration that fails half-way
            // leaves the statements before the failing one applied (and says which failed).
            let outcome = migrate(inner, migrations.mysql, "MySQL");
            inner.batch_execute(&format!("DO RELEASE_LOCK('{MYSQL_MIGRATION_LOCK}')"))?;
            outcome
        }
    }
}

/// Applies `migrations`' pending ones on one backend's connection; returns their versions.
fn migrate<C>(
    conn: &mut C,
    migrations: Vec<&'static EmbeddedMigrations>,
    backend: &str,
) -> anyhow::Result<Vec<String>>
where
    C: MigrationHarness<C::Backend> + Connection,
{
    Ok(conn
        .run_pending_migrations(Sources(migrations))
        .map_err(|e| anyhow::anyhow!("{backend} migration failed: {e}"))?
        .iter()
        .map(ToString::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::result::{DatabaseErrorKind, Error as DieselError};

    #[test]
    fn sqlite_urls_keep_the_path_as_written() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/shop.db"),
            Ok(DatabaseUrl::Sqlite("data/shop.db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/lib/shop/shop.db"),
            Ok(DatabaseUrl::Sqlite("/var/lib/shop/shop.db".into()))
        );
        assert!(DatabaseUrl::parse("sqlite://").is_err());
    }

    #[test]
    fn postgres_urls_are_recognised_and_redacted() {
        let url = DatabaseUrl::parse("postgres://shop:hunter2@db:5432/shop").unwrap();
        assert_eq!(url.backend(), Backend::Postgres);
        assert_eq!(url.redacted(), "postgres://shop:***@db:5432/shop");
        assert!(DatabaseUrl::parse("postgresql://db/shop").is_ok());
        // libpq also takes the password (and other secrets) as query parameters.
        let url = DatabaseUrl::parse(
            "postgres://postgres@127.0.0.1:5432/db?password=hunter2&sslmode=require",
        )
        .unwrap();
        assert_eq!(
            url.redacted(),
            "postgres://postgres@127.0.0.1:5432/db?password=***&sslmode=***"
        );
        let url = DatabaseUrl::parse("postgres://u:p@ss:w0rd@db/shop?sslpassword=k3y").unwrap();
        let shown = url.redacted();
        for secret in ["p@ss", "w0rd", "k3y"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn mysql_urls_are_recognised_and_redacted() {
        let url = DatabaseUrl::parse("mysql://shop:hunter2@db:3306/shop").unwrap();
        assert_eq!(url.backend(), Backend::Mysql);
        assert_eq!(url.redacted(), "mysql://shop:***@db:3306/shop");
    }

    #[cfg(not(feature = "mysql"))]
    #[test]
    fn a_build_without_mysql_says_how_to_get_one() {
        let url = DatabaseUrl::parse("mysql://shop:hunter2@127.0.0.1:1/shop").unwrap();
        let error = Db::connect(&url, &PoolOptions::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("--features mysql"), "{error}");
        assert!(error.contains("libmariadb-dev"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn other_schemes_are_refused_without_leaking_passwords() {
        let err = DatabaseUrl::parse("redis://u:secret@host/0").unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn sqlite_connections_get_wal_and_foreign_keys() {
        #[derive(diesel::QueryableByName)]
        struct Mode {
            #[diesel(sql_type = diesel::sql_types::Text)]
            journal_mode: String,
        }
        #[derive(diesel::QueryableByName)]
        struct ForeignKeys {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            foreign_keys: i32,
        }
        let dir = std::env::temp_dir().join(format!("shop-db-test-{}", uuid::Uuid::now_v7()));
        let url = DatabaseUrl::Sqlite(dir.join("nested/test.db"));
        let options = PoolOptions {
            max_size: 3,
            ..PoolOptions::default()
        };
        let db = Db::connect(&url, &options).unwrap();
        // Every pooled connection, not only the first: hold three at once, so they are distinct.
        let mut held: Vec<_> = (0..3).map(|_| db.get_blocking().unwrap()).collect();
        for conn in &mut held {
            let AnyConnection::Sqlite(inner) = &mut **conn else {
                panic!("expected SQLite")
            };
            let mode: Mode = diesel::sql_query("PRAGMA journal_mode")
                .get_result(inner)
                .unwrap();
            assert_eq!(mode.journal_mode, "wal");
            let keys: ForeignKeys = diesel::sql_query("PRAGMA foreign_keys")
                .get_result(inner)
                .unwrap();
            assert_eq!(keys.foreign_keys, 1, "foreign keys are enforced");
        }
        // And enforced: a row naming a parent that does not exist is refused.
        let conn = &mut *held[2];
        conn.batch_execute(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (parent_id INTEGER NOT NULL REFERENCES parent (id));
             INSERT INTO parent (id) VALUES (1);
             INSERT INTO child (parent_id) VALUES (1);",
        )
        .unwrap();
        let orphan = conn.batch_execute("INSERT INTO child (parent_id) VALUES (2)");
        assert!(
            matches!(
                orphan,
                Err(DieselError::DatabaseError(
                    DatabaseErrorKind::ForeignKeyViolation,
                    _
                ))
            ),
            "{orphan:?}"
        );
        drop(held);
        let _ = std::fs::remove_dir_all(dir);
    }
}

//! A connection to whichever backend `DATABASE_URL` names, the macros that
//! run a statement per backend where the multi-backend connection cannot
//! express it, and the errors of database work. The lowest room of
//! storage: the pool ([`crate::storage::db`]) and the writers
//! ([`crate::storage::group_commit`]) stand on it.

use actix_web::http::StatusCode;
#[cfg(feature = "mysql")]
use diesel::mysql::MysqlConnection;
use diesel::pg::PgConnection;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sqlite::SqliteConnection;

use crate::web::problem::Problem;

/// A connection to whichever backend `DATABASE_URL` names.
#[cfg(not(feature = "mysql"))]
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

/// A connection to whichever backend `DATABASE_URL` names.
// (Two definitions: the derive cannot see a `cfg` on one variant.)
#[cfg(feature = "mysql")]
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
    Mysql(MysqlConnection),
}

/// Matches `conn` on its backend, one arm per backend: the one place the
/// macros below spell the `mysql` feature (the MySQL arm is dropped, unread,
/// from a build without it). Defined twice because a `cfg` inside an
/// exported macro would be read in the crate that uses it, not here.
#[cfg(not(feature = "mysql"))]
#[doc(hidden)]
#[macro_export]
macro_rules! match_backend {
    ($conn:expr, sqlite($s:ident) => $sqlite:expr, postgres($p:ident) => $postgres:expr, mysql($m:ident) => $mysql:expr $(,)?) => {
        match $conn {
            $crate::storage::connection::AnyConnection::Sqlite($s) => $sqlite,
            $crate::storage::connection::AnyConnection::Postgres($p) => $postgres,
        }
    };
}

/// See the other definition.
#[cfg(feature = "mysql")]
#[doc(hidden)]
#[macro_export]
macro_rules! match_backend {
    ($conn:expr, sqlite($s:ident) => $sqlite:expr, postgres($p:ident) => $postgres:expr, mysql($m:ident) => $mysql:expr $(,)?) => {
        match $conn {
            $crate::storage::connection::AnyConnection::Sqlite($s) => $sqlite,
            $crate::storage::connection::AnyConnection::Postgres($p) => $postgres,
            $crate::storage::connection::AnyConnection::Mysql($m) => $mysql,
        }
    };
}

/// Runs the same diesel query on whichever concrete connection `conn` holds,
/// for the few statements the multi-backend connection cannot express
/// (multi-row inserts). The query is written once; each backend compiles it
/// in its own dialect.
///
/// ```ignore
/// per_backend!(conn, |c| diesel::insert_into(t::table).values(rows).execute(c))
/// ```
#[macro_export]
macro_rules! per_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        $crate::match_backend!($conn, sqlite($c) => $body, postgres($c) => $body, mysql($c) => $body)
    };
}

/// The backends that lock rows (`FOR UPDATE SKIP LOCKED`) and those that do
/// not need to (SQLite: its one writer's lock is the claim), for a query that
/// claims rows other instances may be claiming too. Evaluates to `$query.load(c)`.
#[macro_export]
macro_rules! load_skip_locked {
    ($conn:expr, $query:expr) => {
        $crate::match_backend!($conn,
            sqlite(c) => $query.load(c),
            postgres(c) => $query.for_update().skip_locked().load(c),
            mysql(c) => $query.for_update().skip_locked().load(c),
        )
    };
}

/// `INSERT INTO $table VALUES $values` unless a row with the same key is
/// there; evaluates to the number of rows inserted (`QueryResult<usize>`).
/// MySQL's `ON DUPLICATE KEY UPDATE` counts a duplicate as a row touched, so
/// there it is `INSERT IGNORE` (which also turns other errors of the
/// statement into warnings: use it only for values already validated).
#[macro_export]
macro_rules! insert_ignoring_duplicates {
    ($conn:expr, $table:expr, $values:expr) => {
        $crate::match_backend!($conn,
            sqlite(c) => diesel::insert_into($table).values($values).on_conflict_do_nothing().execute(c),
            postgres(c) => diesel::insert_into($table).values($values).on_conflict_do_nothing().execute(c),
            mysql(c) => diesel::insert_or_ignore_into($table).values($values).execute(c),
        )
    };
}

/// Runs `$update` and answers the changed row's `$returning` columns
/// (`QueryResult<Option<_>>`: `None` when no row matched): `RETURNING` where
/// the backend has it; on MySQL the update, then `$select` (which must read
/// the same columns of the same row) in the same transaction, where the
/// update's row lock keeps them as the update left them.
#[macro_export]
macro_rules! update_returning {
    ($conn:expr, $update:expr, $returning:expr, $select:expr) => {
        $crate::match_backend!($conn,
            sqlite(c) => diesel::OptionalExtension::optional($update.returning($returning).get_result(c)),
            postgres(c) => diesel::OptionalExtension::optional($update.returning($returning).get_result(c)),
            mysql(c) => match $update.execute(c) {
                Ok(0) => Ok(None),
                Ok(_) => diesel::OptionalExtension::optional($select.first(c)),
                Err(error) => Err(error),
            },
        )
    };
}

/// Inserts `rows` (a `Vec` of value tuples) into `table`: a lone row as a
/// single-row insert (a statement the connection prepares once and keeps),
/// several in one multi-row statement (one round trip). Evaluates to a
/// `QueryResult<usize>`.
#[macro_export]
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $rows:expr) => {{
        use diesel::RunQueryDsl as _;
        let rows = $rows;
        match rows.as_slice() {
            [] => Ok(0),
            [one] => diesel::insert_into($table)
                .values(one.clone())
                .execute($conn),
            many => $crate::per_backend!($conn, |c| diesel::insert_into($table)
                .values(many)
                .execute(c)),
        }
    }};
}

/// Why a piece of database work did not complete.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had in time: the database is down or every connection is busy.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Query(#[from] DieselError),
    #[error("database work panicked or was cancelled")]
    Aborted,
}

impl DbError {
    /// Whether the database refused a write because of a unique key.
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            Self::Query(DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}

impl From<DbError> for Problem {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(detail) => {
                tracing::warn!(%detail, "database unavailable");
                Problem::unavailable("The database is unavailable; try again shortly.")
            }
            DbError::Query(DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection,
                info,
            )) => {
                tracing::warn!(detail = info.message(), "database connection lost");
                Problem::unavailable("The database connection was lost; try again shortly.")
            }
            DbError::Query(DieselError::NotFound) => {
                Problem::new(StatusCode::NOT_FOUND, "not_found", "Not found")
            }
            other => Problem::internal(&anyhow::Error::new(other)),
        }
    }
}

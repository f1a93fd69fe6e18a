//! Storage: one connection type for SQLite, PostgreSQL and MySQL, the pool,
//! migrations, and the writer that shares commits between use cases.

pub mod connection;
pub mod db;
pub mod group_commit;

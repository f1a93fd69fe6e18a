//! End-to-end tests: one binary, each test on its own app and database.

mod architecture;
mod operations;
mod products;

//! The `shop` application: configuration, telemetry and wiring. This is the
//! only crate that knows every concrete type; the contexts know only the
//! shared kernel.

pub mod api;
pub mod cli;
pub mod config;
pub mod limits;
pub mod observability;
pub mod run;
pub mod startup;
pub mod telemetry;
pub mod workers;

pub use startup::{Application, migrations};

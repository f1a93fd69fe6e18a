//! The `shop` application: configuration, telemetry and wiring. This is the
//! only crate that knows every concrete type; the contexts know only the
//! shared kernel.

pub mod api;
pub mod cli;
pub mod config;
pub mod contexts;
pub mod limits;
pub mod modules;
pub mod observability;
pub mod run;
pub mod startup;
pub mod telemetry;
pub mod workers;

pub use modules::{Modules, Secrets};
pub use startup::{Application, migrations};

/// jemalloc, not the system allocator, wherever this crate is linked (the
/// `shop` binary, and the test binaries that run it): after a burst of
/// connections glibc's allocator kept the memory and grew with every burst
/// (37 MB idle, 86 MB after a flood of 5,000 slow connections, 121 MB after
/// six), where jemalloc comes back to the same level each time (43 MB idle,
/// 55 to 70 MB after each of six). It builds from source with the C compiler
/// and make.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

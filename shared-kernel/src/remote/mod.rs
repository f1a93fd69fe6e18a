//! Ports over HTTP (split mode): the internal API a process serves for the
//! ports it offers, and the adapters that call another process's.

pub mod adapters;
pub mod internal;

//! The domain vocabulary every context shares: ids, money, timestamps,
//! integration events, and the ports one context offers another.

pub mod clock;
pub mod events;
pub mod id;
pub mod money;
pub mod ports;

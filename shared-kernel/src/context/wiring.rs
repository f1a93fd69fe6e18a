//! What a starting context takes from the process (the database, the outbox,
//! its settings, the ports it needs) and gives back (the ports it offers).

use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::sync::Arc;

use crate::model::ports::{Inventory, OrderLookup, PortError};
use crate::remote::adapters::{RemoteInventory, RemoteOrderLookup, RemoteSettings};

/// A port one context offers and another needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Port {
    /// Products, prices and stock reservations (`Arc<dyn Inventory>`).
    Inventory,
    /// Orders as payments need them (`Arc<dyn OrderLookup>`).
    OrderLookup,
}

impl Port {
    pub fn name(self) -> &'static str {
        match self {
            Self::Inventory => "Inventory",
            Self::OrderLookup => "OrderLookup",
        }
    }

    /// Places the HTTP adapter of this port, calling the process `remote`
    /// names, in `wiring`: it wins over an implementation in this process.
    pub fn connect(self, remote: RemoteSettings, wiring: &mut Wiring) -> Result<(), PortError> {
        match self {
            Self::Inventory => {
                let port: Arc<dyn Inventory> = Arc::new(RemoteInventory::new(remote)?);
                wiring
                    .remote
                    .insert(TypeId::of::<Arc<dyn Inventory>>(), Box::new(port));
            }
            Self::OrderLookup => {
                let port: Arc<dyn OrderLookup> = Arc::new(RemoteOrderLookup::new(remote)?);
                wiring
                    .remote
                    .insert(TypeId::of::<Arc<dyn OrderLookup>>(), Box::new(port));
            }
        }
        Ok(())
    }
}

type Values = HashMap<TypeId, Box<dyn Any + Send + Sync>>;

/// The values the contexts of one process are started from, by type: what
/// the app provides (the database, the outbox, each context's settings), the
/// ports the contexts started so far offer, and the HTTP adapters of the
/// ports served by other processes.
#[derive(Default)]
pub struct Wiring {
    values: Values,
    offered: Values,
    remote: Values,
}

impl Wiring {
    /// Provides `value` to the contexts (one value per type).
    pub fn provide<T: Any + Send + Sync>(&mut self, value: T) -> &mut Self {
        self.values.insert(TypeId::of::<T>(), Box::new(value));
        self
    }

    /// The value of type `T` the app provided.
    pub fn get<T: Any + Send + Sync + Clone>(&self) -> anyhow::Result<T> {
        self.values
            .get(&TypeId::of::<T>())
            .and_then(|value| value.downcast_ref::<T>())
            .cloned()
            .ok_or_else(|| {
                anyhow::anyhow!("nothing provides a {} to the contexts", type_name::<T>())
            })
    }

    /// Offers a port implemented in this process (`Arc<dyn Inventory>`).
    pub fn offer<P: ?Sized + Send + Sync + 'static>(&mut self, port: Arc<P>) {
        self.offered.insert(TypeId::of::<Arc<P>>(), Box::new(port));
    }

    /// The port of type `P`: its HTTP adapter when another process serves it
    /// (`SHOP__PORTS__<CONTEXT>_URL` wins), else the implementation a context
    /// started in this process offers.
    pub fn port<P: ?Sized + Send + Sync + 'static>(&self) -> anyhow::Result<Arc<P>> {
        let key = TypeId::of::<Arc<P>>();
        self.remote
            .get(&key)
            .or_else(|| self.offered.get(&key))
            .and_then(|port| port.downcast_ref::<Arc<P>>())
            .cloned()
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no context in this process offers {}, and no URL names the process that does",
                    type_name::<P>()
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    trait Greeter: Send + Sync {
        fn greet(&self) -> &'static str;
    }
    struct Here;
    impl Greeter for Here {
        fn greet(&self) -> &'static str {
            "here"
        }
    }

    #[test]
    fn values_and_ports_are_found_by_type() {
        let mut wiring = Wiring::default();
        wiring.provide(7_u32);
        assert_eq!(wiring.get::<u32>().unwrap(), 7);
        let missing = wiring.get::<u64>().unwrap_err().to_string();
        assert!(missing.contains("u64"), "{missing}");
        assert!(wiring.port::<dyn Greeter>().is_err());
        wiring.offer::<dyn Greeter>(Arc::new(Here));
        assert_eq!(wiring.port::<dyn Greeter>().unwrap().greet(), "here");
    }
}

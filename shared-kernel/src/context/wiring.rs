//! What a starting context takes from the process (the database, the outbox,
//! its settings, the ports it needs) and gives back (the ports it offers).

use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

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

    /// The `TypeId` its adapters are kept under in the wiring.
    fn key(self) -> TypeId {
        match self {
            Self::Inventory => TypeId::of::<Arc<dyn Inventory>>(),
            Self::OrderLookup => TypeId::of::<Arc<dyn OrderLookup>>(),
        }
    }

    /// Places the HTTP adapter of this port, calling the process `remote`
    /// names, in `wiring`: it wins over an implementation in this process.
    pub fn connect(self, remote: RemoteSettings, wiring: &mut Wiring) -> Result<(), PortError> {
        let adapter: Box<dyn Any + Send + Sync> = match self {
            Self::Inventory => {
                Box::new(Arc::new(RemoteInventory::new(remote)?) as Arc<dyn Inventory>)
            }
            Self::OrderLookup => {
                Box::new(Arc::new(RemoteOrderLookup::new(remote)?) as Arc<dyn OrderLookup>)
            }
        };
        wiring.remote.insert(self.key(), adapter);
        Ok(())
    }
}

type Values = HashMap<TypeId, Box<dyn Any + Send + Sync>>;

/// A port a context calls only once every context has started (its jobs,
/// say), so that it may be offered by a context that starts after it: the
/// order context needs the product context's `Inventory` to start, and the
/// product context asks the order context's `OrderLookup` later.
pub struct Later<P: ?Sized> {
    port: Arc<OnceLock<Arc<P>>>,
}

impl<P: ?Sized> Clone for Later<P> {
    fn clone(&self) -> Self {
        Self {
            port: self.port.clone(),
        }
    }
}

impl<P: ?Sized> Later<P> {
    /// The port, once the process has started; `None` when no context here
    /// offers it and no URL names the process that does.
    pub fn get(&self) -> Option<&Arc<P>> {
        self.port.get()
    }
}

/// Fills a [`Later`] once every context has started.
type Settle = Box<dyn FnOnce(&Wiring) -> bool + Send>;

/// The values the contexts of one process are started from, by type: what
/// the app provides (the database, the outbox, each context's settings), the
/// ports the contexts started so far offer, and the HTTP adapters of the
/// ports served by other processes.
#[derive(Default)]
pub struct Wiring {
    values: Values,
    offered: Values,
    remote: Values,
    later: Vec<(&'static str, Settle)>,
}

impl Wiring {
    /// Provides `value` to the contexts (one value per type).
    pub fn provide<T: Any + Send + Sync>(&mut self, value: T) -> &mut Self {
        self.values.insert(TypeId::of::<T>(), Box::new(value));
        self
    }

    /// Whether the HTTP adapter of `port` is in the wiring already.
    pub fn is_connected(&self, port: Port) -> bool {
        self.remote.contains_key(&port.key())
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

    /// The port of type `P` as [`Wiring::port`] will find it once every
    /// context has started ([`Wiring::settle`]).
    pub fn later<P: ?Sized + Send + Sync + 'static>(&mut self) -> Later<P> {
        let later = Later {
            port: Arc::new(OnceLock::new()),
        };
        let filled = later.clone();
        self.later.push((
            type_name::<P>(),
            Box::new(move |wiring: &Wiring| match wiring.port::<P>() {
                Ok(port) => filled.port.set(port).is_ok(),
                Err(_) => false,
            }),
        ));
        later
    }

    /// Every context has started: fills the ports asked for [`Wiring::later`].
    /// Returns the names of those nobody offers.
    pub fn settle(&mut self) -> Vec<&'static str> {
        let later = std::mem::take(&mut self.later);
        later
            .into_iter()
            .filter_map(|(name, settle)| (!settle(self)).then_some(name))
            .collect()
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

    #[test]
    fn a_port_asked_for_later_is_found_once_the_contexts_started() {
        let mut wiring = Wiring::default();
        let later = wiring.later::<dyn Greeter>();
        let missing = wiring.later::<dyn Send + Sync>();
        assert!(
            later.get().is_none(),
            "offered by a context that starts after"
        );
        wiring.offer::<dyn Greeter>(Arc::new(Here));
        let unsettled = wiring.settle();
        assert_eq!(later.get().map(|p| p.greet()), Some("here"));
        assert!(missing.get().is_none());
        assert_eq!(unsettled, vec![type_name::<dyn Send + Sync>()]);
    }
}

//! The payment providers one instance talks to: which serves each payment
//! method, and which a stored payment belongs to (by the name it was opened
//! with). A configured provider serves its own method; the sandbox, while it
//! is on, serves the methods that have none.

use std::collections::HashMap;
use std::sync::Arc;

use shared_kernel::model::ports::PaymentGateway;

use crate::model::PaymentMethod;

#[derive(Clone, Default)]
pub struct Gateways {
    by_method: HashMap<PaymentMethod, Arc<dyn PaymentGateway>>,
    by_name: HashMap<&'static str, Arc<dyn PaymentGateway>>,
}

impl Gateways {
    /// `gateway` serves `method`, unless a gateway serves it already (the
    /// first given wins: configure real providers before the sandbox).
    pub fn serve(mut self, method: PaymentMethod, gateway: Arc<dyn PaymentGateway>) -> Self {
        self.by_name
            .entry(gateway.name())
            .or_insert_with(|| gateway.clone());
        self.by_method.entry(method).or_insert(gateway);
        self
    }

    /// The gateway that opens payments of `method`.
    pub fn for_method(&self, method: PaymentMethod) -> Option<&Arc<dyn PaymentGateway>> {
        self.by_method.get(&method)
    }

    /// The gateway a payment was opened with, by its stored name.
    pub fn named(&self, name: &str) -> Option<&Arc<dyn PaymentGateway>> {
        self.by_name.get(name)
    }

    /// The gateways whose payments take their outcome from `Shop-Signature`
    /// notifications (the sandbox, while it is on).
    pub fn shop_signed(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self
            .by_name
            .values()
            .filter(|gateway| gateway.signs_with_shop_signature())
            .map(|gateway| gateway.name())
            .collect();
        names.sort_unstable();
        names
    }

    /// Which gateway serves which method, for the start-up log.
    pub fn describe(&self) -> Vec<(PaymentMethod, &'static str)> {
        let mut served: Vec<_> = self
            .by_method
            .iter()
            .map(|(method, gateway)| (*method, gateway.name()))
            .collect();
        served.sort_by_key(|(method, _)| method.as_str());
        served
    }
}

impl std::fmt::Debug for Gateways {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.describe().into_iter().map(|(m, g)| (m.as_str(), g)))
            .finish()
    }
}

//! Which bounded contexts a process runs (`shop serve --contexts`,
//! `SHOP__CONTEXTS`): all three by default, or any of them, each process
//! then serving, migrating and working for its own contexts only.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use shared_kernel::context::{Context, Port};

/// Every context this binary links, in the order they start: each after the
/// contexts whose ports it needs. Adding a context is one crate and one line here.
pub const ALL: &[&Context] = &[
    &domain_product::CONTEXT,
    &domain_order::CONTEXT,
    &domain_payment::CONTEXT,
];

/// The linked context that offers `port`.
pub fn offering(port: Port) -> Option<&'static Context> {
    ALL.iter()
        .copied()
        .find(|context| context.offers.contains(&port))
}

/// A non-empty set of the linked contexts ([`ALL`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Contexts(u32);

impl Contexts {
    /// Every context: the monolith, the default.
    pub const ALL: Contexts = Contexts((1 << ALL.len()) - 1);

    /// The set of the contexts named (`None` when empty or one is unknown).
    pub fn of(names: &[&str]) -> Option<Self> {
        let mut bits = 0;
        for name in names {
            bits |= 1 << ALL.iter().position(|c| c.name == *name)?;
        }
        (bits != 0).then_some(Self(bits))
    }

    /// Whether the context named `name` is in the set.
    pub fn runs(self, name: &str) -> bool {
        self.iter().any(|c| c.name == name)
    }

    pub fn is_all(self) -> bool {
        self == Self::ALL
    }

    /// The contexts of the set, in the order they start.
    pub fn iter(self) -> impl Iterator<Item = &'static Context> {
        ALL.iter()
            .enumerate()
            .filter(move |(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, c)| *c)
    }

    /// Parses `product,order,payment` (any non-empty subset, in any order,
    /// spaces around names allowed); `source` names the flag or variable in
    /// the error.
    pub fn parse(raw: &str, source: &str) -> Result<Self, String> {
        let known = known_names();
        let mut names = Vec::new();
        for name in raw.split(',').map(str::trim) {
            if name.is_empty() {
                return Err(format!(
                    "{source} must be a comma-separated list of {known}; \
                     it is {raw:?}, which has an empty name"
                ));
            }
            if !ALL.iter().any(|c| c.name == name) {
                return Err(format!(
                    "{source} must be a comma-separated list of {known}; \
                     {name:?} is not a context"
                ));
            }
            names.push(name);
        }
        Self::of(&names).ok_or_else(|| format!("{source} names no context"))
    }
}

/// "product, order and payment".
fn known_names() -> String {
    let names: Vec<&str> = ALL.iter().map(|c| c.name).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.concat(),
    }
}

impl Default for Contexts {
    fn default() -> Self {
        Self::ALL
    }
}

impl fmt::Display for Contexts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(|c| c.name).collect();
        f.write_str(&names.join(","))
    }
}

impl fmt::Debug for Contexts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Contexts({self})")
    }
}

impl FromStr for Contexts {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::parse(raw, "--contexts")
    }
}

impl TryFrom<String> for Contexts {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw, "SHOP__CONTEXTS (contexts)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_parse_in_any_order() {
        assert_eq!(
            "product,order,payment".parse::<Contexts>().unwrap(),
            Contexts::ALL
        );
        let two: Contexts = " payment , product".parse().unwrap();
        assert!(two.runs("product") && two.runs("payment"));
        assert!(!two.runs("order"));
        assert_eq!(two.to_string(), "product,payment");
        assert_eq!(
            "order,order".parse::<Contexts>().unwrap().to_string(),
            "order"
        );
    }

    #[test]
    fn the_linked_contexts_start_after_the_ports_they_need_and_own_their_subscribers() {
        for (i, context) in ALL.iter().enumerate() {
            assert!(
                ALL[..i].iter().all(|earlier| earlier.name != context.name),
                "{} is linked twice",
                context.name
            );
            for port in context.needs {
                assert!(
                    ALL[..i].iter().any(|earlier| earlier.offers.contains(port)),
                    "{} needs {}, which no context before it offers",
                    context.name,
                    port.name()
                );
            }
            for port in context.asks {
                assert!(
                    offering(*port).is_some(),
                    "{} asks for {}, which no linked context offers",
                    context.name,
                    port.name()
                );
            }
            for subscriber in context.subscribers {
                assert_eq!(
                    shared_kernel::messaging::rabbitmq::context_of(subscriber.name),
                    context.name,
                    "a subscriber's name begins with its context's: its broker queue is the context's"
                );
                assert!(
                    !subscriber.events.is_empty(),
                    "{} takes no event",
                    subscriber.name
                );
            }
        }
    }

    #[test]
    fn unknown_and_empty_names_are_refused_with_the_source_named() {
        for bad in [
            "",
            " ",
            "product,",
            ",order",
            "products",
            "product,shipping",
        ] {
            let error = bad.parse::<Contexts>().unwrap_err();
            assert!(error.contains("--contexts"), "{bad:?}: {error}");
            let error = Contexts::try_from(bad.to_owned()).unwrap_err();
            assert!(error.contains("SHOP__CONTEXTS"), "{bad:?}: {error}");
        }
        let error = "product,shipping".parse::<Contexts>().unwrap_err();
        assert!(error.contains("\"shipping\" is not a context"), "{error}");
    }
}

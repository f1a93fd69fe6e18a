//! Which bounded contexts a process runs (`shop serve --contexts`,
//! `SHOP__CONTEXTS`): all three by default, or any of them, each process
//! then serving, migrating and working for its own contexts only.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// A bounded context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Context {
    Product,
    Order,
    Payment,
}

impl Context {
    pub const ALL: [Context; 3] = [Context::Product, Context::Order, Context::Payment];

    /// Its name on the command line and in `SHOP__CONTEXTS`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Product => "product",
            Self::Order => "order",
            Self::Payment => "payment",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Self::Product => 1,
            Self::Order => 2,
            Self::Payment => 4,
        }
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A non-empty set of contexts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Contexts(u8);

impl Contexts {
    /// Every context: the monolith, the default.
    pub const ALL: Contexts = Contexts(1 | 2 | 4);

    /// The set of the given contexts (`None` when empty).
    pub fn of(contexts: &[Context]) -> Option<Self> {
        let bits = contexts.iter().fold(0, |bits, c| bits | c.bit());
        (bits != 0).then_some(Self(bits))
    }

    pub fn runs(self, context: Context) -> bool {
        self.0 & context.bit() != 0
    }

    pub fn is_all(self) -> bool {
        self == Self::ALL
    }

    /// The contexts of the set, in the order product, order, payment.
    pub fn iter(self) -> impl Iterator<Item = Context> {
        Context::ALL.into_iter().filter(move |c| self.runs(*c))
    }

    /// Parses `product,order,payment` (any non-empty subset, in any order,
    /// spaces around names allowed); `source` names the flag or variable in
    /// the error.
    pub fn parse(raw: &str, source: &str) -> Result<Self, String> {
        let mut contexts = Vec::new();
        for name in raw.split(',').map(str::trim) {
            let context = match name {
                "product" => Context::Product,
                "order" => Context::Order,
                "payment" => Context::Payment,
                "" => {
                    return Err(format!(
                        "{source} must be a comma-separated list of product, order and payment; \
                         it is {raw:?}, which has an empty name"
                    ));
                }
                other => {
                    return Err(format!(
                        "{source} must be a comma-separated list of product, order and payment; \
                         {other:?} is not a context"
                    ));
                }
            };
            contexts.push(context);
        }
        Self::of(&contexts).ok_or_else(|| format!("{source} names no context"))
    }
}

impl Default for Contexts {
    fn default() -> Self {
        Self::ALL
    }
}

impl fmt::Display for Contexts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Context::name).collect();
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
        assert!(two.runs(Context::Product) && two.runs(Context::Payment));
        assert!(!two.runs(Context::Order));
        assert_eq!(two.to_string(), "product,payment");
        assert_eq!(
            "order,order".parse::<Contexts>().unwrap().to_string(),
            "order"
        );
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

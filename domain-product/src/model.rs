//! The catalog's rules, as plain values: a product can only be built from
//! fields that passed these checks, so an invalid one never reaches storage.

use chrono::NaiveDateTime;
use shared_kernel::FieldViolation;
use shared_kernel::model::money::{Currency, Money};

shared_kernel::string_id!(
    /// Names one product.
    ProductId
);

pub const NAME_MAX_CHARS: usize = 200;
pub const DESCRIPTION_MAX_CHARS: usize = 2000;
/// The highest unit price, in minor units (100,000,000.00 in a two-decimal currency).
pub const MAX_PRICE_MINOR: i64 = 10_000_000_000;
/// The lowest unit price, in minor units: no payment provider takes a
/// payment of nothing, so an order of free units could never be paid.
pub const MIN_PRICE_MINOR: i64 = 1;
/// The most units of one product the catalog tracks.
pub const MAX_STOCK: i64 = 1_000_000_000;

/// What a name must match: no control characters and at least one visible character.
/// The API document states the same rule, so clients can check before sending.
pub const NAME_PATTERN: &str = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$";
/// What a description must match: anything but NUL, which no database text column holds.
pub const DESCRIPTION_PATTERN: &str = r"^[^\x00]*$";

/// A product's name: 1 to 200 characters, no control characters, not blank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductName(String);

impl ProductName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.chars().any(|c| c <= '\u{1f}' || c == '\u{7f}') {
            return Err("must not contain control characters".into());
        }
        if raw.chars().all(char::is_whitespace) {
            return Err("must not be blank".into());
        }
        if raw.chars().count() > NAME_MAX_CHARS {
            return Err(format!("must be at most {NAME_MAX_CHARS} characters"));
        }
        Ok(Self(raw.trim().to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A product's description: up to 2000 characters, no NUL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Description(String);

impl Description {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.contains('\0') {
            return Err("must not contain NUL characters".into());
        }
        if raw.chars().count() > DESCRIPTION_MAX_CHARS {
            return Err(format!(
                "must be at most {DESCRIPTION_MAX_CHARS} characters"
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A unit price in minor units: [`MIN_PRICE_MINOR`] to [`MAX_PRICE_MINOR`].
pub fn parse_price(minor: i64, currency: Currency) -> Result<Money, String> {
    if (MIN_PRICE_MINOR..=MAX_PRICE_MINOR).contains(&minor) {
        Ok(Money::new(minor, currency))
    } else {
        Err(format!(
            "must be between {MIN_PRICE_MINOR} and {MAX_PRICE_MINOR} (minor units)"
        ))
    }
}

/// Units on hand that can still be sold. An admin sets at most
/// [`MAX_STOCK`]; units that cancelled orders give back come on top, so a
/// stored stock may exceed it, but is never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stock(i64);

impl Stock {
    /// A stock level an admin asks for: 0 to [`MAX_STOCK`].
    pub fn new(units: i64) -> Result<Self, String> {
        if (0..=MAX_STOCK).contains(&units) {
            Ok(Self(units))
        } else {
            Err(format!("must be between 0 and {MAX_STOCK}"))
        }
    }

    /// A stock level as stored: any number of units, but not less than none.
    pub fn stored(units: i64) -> Result<Self, String> {
        if units >= 0 {
            Ok(Self(units))
        } else {
            Err(format!("a stored stock of {units} is negative"))
        }
    }

    pub fn units(self) -> i64 {
        self.0
    }
}

/// Whether a product is on sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductStatus {
    /// On sale: listed, and orders reserve it.
    Active,
    /// Off sale: still read by id (orders point at it), never reserved.
    Archived,
}

impl ProductStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Archived => "archived",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(Self::Active),
            "archived" => Some(Self::Archived),
            _ => None,
        }
    }
}

/// A name as searches and the name sort read it: lower-cased by Unicode's
/// rules, the same on every backend (SQLite's `LOWER` folds ASCII only).
pub fn fold_name(name: &ProductName) -> String {
    name.as_str().to_lowercase()
}

/// Why staff changed the units on hand by a delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdjustmentReason {
    Restock,
    Damaged,
    Lost,
    Found,
    Returned,
    Correction,
}

impl AdjustmentReason {
    pub const ALL: [Self; 6] = [
        Self::Restock,
        Self::Damaged,
        Self::Lost,
        Self::Found,
        Self::Returned,
        Self::Correction,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Restock => "restock",
            Self::Damaged => "damaged",
            Self::Lost => "lost",
            Self::Found => "found",
            Self::Returned => "returned",
            Self::Correction => "correction",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }
}

/// What a stock movement records as its reason: a set (`set`), or an adjustment's reason.
pub const SET_REASON: &str = "set";

/// The longest note an adjustment takes.
pub const NOTE_MAX_CHARS: usize = 500;

/// A change of the units on hand by `delta`, for a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockAdjustment {
    /// Not zero; at most [`MAX_STOCK`] either way.
    pub delta: i64,
    pub reason: AdjustmentReason,
    /// Up to [`NOTE_MAX_CHARS`] characters, no NUL.
    pub note: Option<String>,
}

impl StockAdjustment {
    /// Checks every field, naming each that fails.
    pub fn parse(
        delta: i64,
        reason: &str,
        note: Option<&str>,
    ) -> Result<Self, Vec<FieldViolation>> {
        let mut errors = Vec::new();
        if delta == 0 || delta.abs() > MAX_STOCK {
            errors.push(FieldViolation::new(
                "delta",
                format!("must be -{MAX_STOCK} to {MAX_STOCK}, and not 0"),
            ));
        }
        let reason = AdjustmentReason::parse(reason);
        if reason.is_none() {
            errors.push(FieldViolation::new(
                "reason",
                "must be restock, damaged, lost, found, returned or correction",
            ));
        }
        if let Some(note) = note
            && (note.chars().count() > NOTE_MAX_CHARS || note.contains('\0'))
        {
            errors.push(FieldViolation::new(
                "note",
                format!("must be at most {NOTE_MAX_CHARS} characters, with no NUL"),
            ));
        }
        match reason {
            Some(reason) if errors.is_empty() => Ok(Self {
                delta,
                reason,
                note: note.map(str::to_owned),
            }),
            _ => Err(errors),
        }
    }
}

/// One staff change of a product's stock, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockMovement {
    pub id: String,
    pub product_id: ProductId,
    pub actor: String,
    /// [`SET_REASON`] or an [`AdjustmentReason`].
    pub reason: String,
    pub note: Option<String>,
    pub delta: i64,
    pub stock_after: i64,
    pub request_id: Option<String>,
    pub occurred_at: NaiveDateTime,
}

/// Which products a catalog page holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductFilter {
    /// Only products in this status; `None`: every product.
    pub status: Option<ProductStatus>,
    /// Only products whose name holds this text, case folded ([`fold_name`]).
    pub name_contains: Option<String>,
}

/// The order of a catalog page; every order ends with the id, so that it is total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProductSort {
    /// Oldest first (ids are time-ordered: the order of the id alone).
    #[default]
    Oldest,
    Newest,
    CheapestFirst,
    DearestFirst,
    /// By name, case folded.
    Name,
}

/// The longest text `listProducts?q=` takes: a name's length.
pub const SEARCH_MAX_CHARS: usize = NAME_MAX_CHARS;

/// What a search must be: 1 to [`SEARCH_MAX_CHARS`] characters, no NUL.
pub fn parse_search(raw: &str) -> Result<String, String> {
    let chars = raw.chars().count();
    if chars == 0 || chars > SEARCH_MAX_CHARS || raw.contains('\0') {
        return Err(format!(
            "must be 1 to {SEARCH_MAX_CHARS} characters, with no NUL"
        ));
    }
    Ok(raw.to_lowercase())
}

/// A product as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: ProductId,
    pub name: ProductName,
    pub description: Description,
    pub price: Money,
    pub stock: Stock,
    pub status: ProductStatus,
    /// Below this many units, `product.stock_low` is told once (none: never).
    pub low_stock_threshold: Option<i64>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// A validated request to add a product to the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub name: ProductName,
    pub description: Description,
    pub price: Money,
    pub stock: Stock,
}

/// The unchecked fields of a new product, as a client sent them.
#[derive(Debug, Clone, Copy)]
pub struct NewProductFields<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub price: i64,
    pub currency: &'a str,
    pub stock: i64,
}

impl NewProduct {
    /// Checks every field and reports every violation at once.
    pub fn parse(fields: NewProductFields<'_>) -> Result<Self, Vec<FieldViolation>> {
        let mut errors = Vec::new();
        let name = checked("name", ProductName::parse(fields.name), &mut errors);
        let description = checked(
            "description",
            Description::parse(fields.description),
            &mut errors,
        );
        let currency = checked(
            "currency",
            Currency::parse(fields.currency).map_err(|e| e.to_string()),
            &mut errors,
        );
        let price = checked(
            "price",
            parse_price(fields.price, currency.unwrap_or(Currency::CNY)),
            &mut errors,
        );
        let stock = checked("stock", Stock::new(fields.stock), &mut errors);
        match (name, description, price, currency, stock) {
            (Some(name), Some(description), Some(price), Some(_), Some(stock)) => Ok(Self {
                name,
                description,
                price,
                stock,
            }),
            _ => Err(errors),
        }
    }
}

/// The threshold a change of stock from `before` to `after` units fell
/// below, if it did: from at or above it to below it. A stock already
/// below stays quiet, so each fall is told once.
pub fn fell_below(threshold: Option<i64>, before: i64, after: i64) -> Option<i64> {
    threshold.filter(|t| before >= *t && after < *t)
}

/// The most units a low-stock threshold may name.
pub const MAX_LOW_STOCK_THRESHOLD: i64 = MAX_STOCK;

/// A staff edit of a product, read as a JSON Merge Patch (RFC 7396): a
/// field left out is left as it is; `lowStockThreshold: null` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductPatch {
    pub name: Option<ProductName>,
    pub description: Option<Description>,
    /// Minor units of the currency the product has after the patch.
    pub price: Option<i64>,
    pub currency: Option<Currency>,
    /// `Some(None)` clears the threshold.
    pub low_stock_threshold: Option<Option<i64>>,
}

impl ProductPatch {
    /// Checks every member of the patch document, naming each that fails
    /// (an unknown member, or `null` for a field that cannot be cleared,
    /// fails too); an empty patch fails.
    pub fn parse(
        document: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, Vec<FieldViolation>> {
        use serde_json::Value;
        let mut errors = Vec::new();
        let mut patch = Self::default();
        if document.is_empty() {
            errors.push(FieldViolation::new(
                "body",
                "must change at least one of name, description, price, currency, lowStockThreshold",
            ));
        }
        fn text(value: &serde_json::Value) -> Result<&str, String> {
            value.as_str().ok_or_else(|| "must be a string".to_owned())
        }
        let integer = |value: &Value| {
            value
                .as_i64()
                .or_else(|| {
                    value
                        .as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                        .map(|f| f as i64)
                })
                .ok_or_else(|| "must be an integer".to_owned())
        };
        for (field, value) in document {
            match field.as_str() {
                "name" => {
                    patch.name =
                        checked(field, text(value).and_then(ProductName::parse), &mut errors);
                }
                "description" => {
                    patch.description =
                        checked(field, text(value).and_then(Description::parse), &mut errors);
                }
                "price" => {
                    patch.price = checked(
                        field,
                        integer(value)
                            .and_then(|minor| parse_price(minor, Currency::CNY).map(|_| minor)),
                        &mut errors,
                    );
                }
                "currency" => {
                    patch.currency = checked(
                        field,
                        text(value).and_then(|c| Currency::parse(c).map_err(|e| e.to_string())),
                        &mut errors,
                    );
                }
                "lowStockThreshold" if value.is_null() => patch.low_stock_threshold = Some(None),
                "lowStockThreshold" => {
                    patch.low_stock_threshold = checked(
                        field,
                        integer(value).and_then(|units| {
                            if (0..=MAX_LOW_STOCK_THRESHOLD).contains(&units) {
                                Ok(Some(units))
                            } else {
                                Err(format!(
                                    "must be between 0 and {MAX_LOW_STOCK_THRESHOLD}, or null"
                                ))
                            }
                        }),
                        &mut errors,
                    );
                }
                "stock" => errors.push(FieldViolation::new(
                    field,
                    "is changed by updateProductStock or adjustProductStock, not by an edit",
                )),
                "status" => errors.push(FieldViolation::new(
                    field,
                    "is changed by archiveProduct or restoreProduct, not by an edit",
                )),
                _ => errors.push(FieldViolation::new(
                    field,
                    "is not a field of a product that staff edit",
                )),
            }
        }
        if errors.is_empty() {
            Ok(patch)
        } else {
            Err(errors)
        }
    }

    /// `product` as the patch leaves it.
    pub fn apply(&self, product: &Product) -> Product {
        let currency = self.currency.unwrap_or(product.price.currency());
        let price = self.price.unwrap_or(product.price.minor());
        Product {
            name: self.name.clone().unwrap_or_else(|| product.name.clone()),
            description: self
                .description
                .clone()
                .unwrap_or_else(|| product.description.clone()),
            price: Money::new(price, currency),
            low_stock_threshold: self
                .low_stock_threshold
                .unwrap_or(product.low_stock_threshold),
            ..product.clone()
        }
    }
}

/// What an edit changed: each field whose value differs, as it was and as
/// it became (as the API names and shows them).
pub fn edited_fields(
    before: &Product,
    after: &Product,
) -> Vec<(&'static str, serde_json::Value, serde_json::Value)> {
    use serde_json::json;
    let mut changed = Vec::new();
    let mut compare = |field: &'static str, was: serde_json::Value, now: serde_json::Value| {
        if was != now {
            changed.push((field, was, now));
        }
    };
    compare(
        "name",
        json!(before.name.as_str()),
        json!(after.name.as_str()),
    );
    compare(
        "description",
        json!(before.description.as_str()),
        json!(after.description.as_str()),
    );
    compare(
        "price",
        json!(before.price.minor()),
        json!(after.price.minor()),
    );
    compare(
        "currency",
        json!(before.price.currency().as_str()),
        json!(after.price.currency().as_str()),
    );
    compare(
        "lowStockThreshold",
        json!(before.low_stock_threshold),
        json!(after.low_stock_threshold),
    );
    changed
}

/// Keeps a valid value, or records why the field was refused.
pub fn checked<T>(
    field: &str,
    result: Result<T, String>,
    errors: &mut Vec<FieldViolation>,
) -> Option<T> {
    result
        .map_err(|message| errors.push(FieldViolation::new(field, message)))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> NewProductFields<'static> {
        NewProductFields {
            name: "iPhone 15",
            description: "128 GB",
            price: 999_900,
            currency: "CNY",
            stock: 100,
        }
    }

    #[test]
    fn a_valid_product_parses() {
        let p = NewProduct::parse(fields()).unwrap();
        assert_eq!(p.name.as_str(), "iPhone 15");
        assert_eq!(p.price, Money::new(999_900, Currency::CNY));
        assert_eq!(p.stock.units(), 100);
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let errors = NewProduct::parse(NewProductFields {
            name: "  ",
            description: "a\0b",
            price: -1,
            currency: "yuan",
            stock: -5,
        })
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["name", "description", "currency", "price", "stock"]
        );
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(ProductName::parse("  Pen ").unwrap().as_str(), "Pen");
        assert!(ProductName::parse(&"x".repeat(NAME_MAX_CHARS)).is_ok());
        assert!(ProductName::parse(&"x".repeat(NAME_MAX_CHARS + 1)).is_err());
        assert!(
            ProductName::parse(&"é".repeat(NAME_MAX_CHARS)).is_ok(),
            "characters, not bytes"
        );
        assert!(ProductName::parse("tab\there").is_err());
        assert!(ProductName::parse("").is_err());
    }

    #[test]
    fn price_and_stock_bounds() {
        assert!(parse_price(0, Currency::CNY).is_err());
        assert!(parse_price(1, Currency::CNY).is_ok());
        assert!(parse_price(MAX_PRICE_MINOR, Currency::CNY).is_ok());
        assert!(parse_price(MAX_PRICE_MINOR + 1, Currency::CNY).is_err());
        assert!(Stock::new(0).is_ok());
        assert!(Stock::new(MAX_STOCK + 1).is_err());
        assert!(Stock::new(-1).is_err());
        assert!(
            Stock::stored(MAX_STOCK + 5).is_ok(),
            "released units may lift stock above what an admin may set"
        );
        assert!(Stock::stored(-1).is_err());
    }
}

/// Where a stock reservation stands. The stock of a held or confirmed
/// reservation is set aside; a sold one is gone; a released one came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationStatus {
    /// Reserved for an order that may not exist yet (its `OrderPlaced` has not arrived).
    Held,
    /// The order exists.
    Confirmed,
    /// The order was paid.
    Sold,
    /// The order was cancelled or never placed; the stock went back.
    Released,
}

impl ReservationStatus {
    pub const ALL: [ReservationStatus; 4] =
        [Self::Held, Self::Confirmed, Self::Sold, Self::Released];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Confirmed => "confirmed",
            Self::Sold => "sold",
            Self::Released => "released",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// The statuses each reaction moves a reservation from (to its target).
    /// Anything else is a no-op: the reaction already happened, or cannot.
    pub fn sources(target: ReservationStatus) -> &'static [ReservationStatus] {
        match target {
            Self::Held => &[],
            Self::Confirmed => &[Self::Held],
            Self::Sold => &[Self::Held, Self::Confirmed],
            Self::Released => &[Self::Held, Self::Confirmed],
        }
    }

    /// Whether this reservation's units are set aside from stock.
    pub fn holds_stock(self) -> bool {
        matches!(self, Self::Held | Self::Confirmed)
    }
}

#[cfg(test)]
mod reservation_tests {
    use super::ReservationStatus as S;

    #[test]
    fn only_held_or_confirmed_stock_can_be_sold_or_released() {
        for target in [S::Sold, S::Released] {
            assert_eq!(S::sources(target), &[S::Held, S::Confirmed]);
        }
        assert_eq!(S::sources(S::Confirmed), &[S::Held]);
        assert!(S::sources(S::Held).is_empty(), "nothing goes back to held");
        assert!(S::Held.holds_stock() && S::Confirmed.holds_stock());
        assert!(!S::Sold.holds_stock() && !S::Released.holds_stock());
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in S::ALL {
            assert_eq!(S::parse(status.as_str()), Some(status));
        }
        assert_eq!(S::parse("lost"), None);
    }
}

#[cfg(test)]
mod adjustment_tests {
    use super::*;

    #[test]
    fn an_adjustment_names_every_bad_field() {
        let ok = StockAdjustment::parse(-3, "damaged", Some("dropped")).unwrap();
        assert_eq!((ok.delta, ok.reason), (-3, AdjustmentReason::Damaged));
        let fields =
            |e: Vec<FieldViolation>| -> Vec<String> { e.into_iter().map(|v| v.field).collect() };
        assert_eq!(
            fields(StockAdjustment::parse(0, "stolen", Some("a\0")).unwrap_err()),
            ["delta", "reason", "note"]
        );
        assert!(StockAdjustment::parse(MAX_STOCK + 1, "restock", None).is_err());
        assert!(StockAdjustment::parse(-MAX_STOCK, "lost", None).is_ok());
        assert!(StockAdjustment::parse(1, "found", Some(&"n".repeat(NOTE_MAX_CHARS))).is_ok());
        assert!(StockAdjustment::parse(1, "found", Some(&"n".repeat(NOTE_MAX_CHARS + 1))).is_err());
        for reason in AdjustmentReason::ALL {
            assert_eq!(AdjustmentReason::parse(reason.as_str()), Some(reason));
        }
    }
}

#[cfg(test)]
mod patch_tests {
    use serde_json::json;

    use super::*;

    fn lamp() -> Product {
        Product {
            id: ProductId::from("p1".to_owned()),
            name: ProductName::parse("Lamp").unwrap(),
            description: Description::parse("warm").unwrap(),
            price: Money::new(100, Currency::CNY),
            stock: Stock::stored(5).unwrap(),
            status: ProductStatus::Active,
            low_stock_threshold: Some(3),
            created_at: NaiveDateTime::default(),
            updated_at: NaiveDateTime::default(),
        }
    }

    fn parse(document: serde_json::Value) -> Result<ProductPatch, Vec<String>> {
        ProductPatch::parse(document.as_object().unwrap())
            .map_err(|errors| errors.into_iter().map(|e| e.field).collect())
    }

    #[test]
    fn a_patch_changes_what_it_names_and_null_clears_the_threshold() {
        let patch = parse(json!({"price": 120, "lowStockThreshold": null})).unwrap();
        let after = patch.apply(&lamp());
        assert_eq!(after.price, Money::new(120, Currency::CNY));
        assert_eq!(after.low_stock_threshold, None);
        assert_eq!(after.name, lamp().name);
        let changed: Vec<&str> = edited_fields(&lamp(), &after).iter().map(|c| c.0).collect();
        assert_eq!(changed, ["price", "lowStockThreshold"]);
    }

    #[test]
    fn every_bad_member_is_named() {
        assert_eq!(parse(json!({})).unwrap_err(), ["body"]);
        let mut fields = parse(json!({
            "name": "", "description": 5, "price": 0, "currency": "yuan",
            "lowStockThreshold": -1, "stock": 3, "status": "archived", "colour": "red",
            "currency2": null
        }))
        .unwrap_err();
        fields.sort();
        assert_eq!(
            fields,
            [
                "colour",
                "currency",
                "currency2",
                "description",
                "lowStockThreshold",
                "name",
                "price",
                "status",
                "stock"
            ]
        );
        assert_eq!(parse(json!({"name": null})).unwrap_err(), ["name"]);
        assert!(parse(json!({"price": 5.0})).is_ok(), "5.0 is the integer 5");
        assert_eq!(parse(json!({"price": 5.5})).unwrap_err(), ["price"]);
    }
}

#[cfg(test)]
mod low_stock_tests {
    use super::fell_below;

    #[test]
    fn a_fall_below_the_threshold_is_told_once() {
        assert_eq!(fell_below(Some(5), 6, 4), Some(5));
        assert_eq!(fell_below(Some(5), 5, 4), Some(5), "from at the threshold");
        assert_eq!(fell_below(Some(5), 6, 5), None, "at it is not below it");
        assert_eq!(fell_below(Some(5), 4, 3), None, "already below");
        assert_eq!(fell_below(Some(5), 3, 8), None, "a rise");
        assert_eq!(fell_below(None, 6, 0), None, "no threshold");
        assert_eq!(fell_below(Some(0), 1, 0), None, "nothing is below 0");
    }
}

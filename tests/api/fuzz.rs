//! A bounded fuzz pass (proptest) over what clients and gateways send: the
//! JSON request bodies, their validation into domain values, and the
//! notification signature parser. Nothing may panic; every refusal must be
//! a 400 or 422 problem; whatever is accepted must satisfy the rules.
//! The body strategies are biased towards the valid ranges and their edges
//! (with any `i64` and any JSON besides), and each pass counts what it
//! refused and what it accepted: both must happen, or the pass proved nothing.
//! PROPTEST_CASES sets the number of cases (default 1024 a property):
//! `PROPTEST_CASES=100000 cargo test -p shop-tests --test api fuzz` for a long run.

use std::cell::Cell;

use domain_order::http::CreateOrder;
use domain_order::model::{LineFields, MAX_LINES, MAX_QUANTITY, PlaceOrder, RequestField, UserId};
use domain_payment::http::PaymentNotification;
use domain_payment::signature::{ShopSignature, SignatureError, Signed, TOLERANCE_SECS};
use domain_product::http::CreateProduct;
use domain_product::model::{
    MAX_PRICE_MINOR, MAX_STOCK, MIN_PRICE_MINOR, NAME_MAX_CHARS, NewProduct, NewProductFields,
};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::Value;
use shared_kernel::web::extract::parse_json;

/// Arbitrary JSON documents, biased towards the shapes the API expects.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
        prop_oneof![Just("CNY"), Just("productId"), Just("success"), Just("")]
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("name".to_owned()),
                        Just("price".to_owned()),
                        Just("currency".to_owned()),
                        Just("stock".to_owned()),
                        Just("userId".to_owned()),
                        Just("items".to_owned()),
                        Just("productId".to_owned()),
                        Just("quantity".to_owned()),
                        Just("paymentId".to_owned()),
                        Just("paymentStatus".to_owned()),
                        Just("amount".to_owned()),
                        "\\PC{0,6}",
                    ],
                    inner,
                ),
                0..8,
            )
            .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// Integers in `lo..=hi` most of the time, its four edges (`lo - 1`, `lo`,
/// `hi`, `hi + 1`) often, and any `i64` besides.
fn around(lo: i64, hi: i64) -> impl Strategy<Value = i64> {
    prop_oneof![
        5 => lo..=hi,
        3 => prop::sample::select(vec![lo - 1, lo, hi, hi + 1]),
        1 => any::<i64>(),
    ]
}

/// A field's value most of the time; sometimes any JSON instead, sometimes absent.
fn field(value: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        18 => value.prop_map(Some),
        1 => json_value().prop_map(Some),
        1 => Just(None),
    ]
    .boxed()
}

fn object(fields: Vec<(&'static str, Option<Value>)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_owned(), value?)))
            .collect(),
    )
}

/// `createProduct` bodies: mostly the right shape, each field valid, at an edge, or wrong.
fn product_document() -> impl Strategy<Value = Value> {
    let name = prop_oneof![
        4 => "[A-Za-z0-9][A-Za-z0-9 ]{0,19}".boxed(),
        1 => Just("x".repeat(NAME_MAX_CHARS)).boxed(),
        1 => Just("x".repeat(NAME_MAX_CHARS + 1)).boxed(),
        1 => prop_oneof![Just(String::new()), Just("   ".to_owned()), Just("a\tb".to_owned())].boxed(),
        1 => "\\PC{0,12}".boxed(),
    ];
    let description = prop_oneof![4 => "[ -~]{0,30}", 1 => "\\PC{0,12}"];
    let currency = prop_oneof![4 => "[A-Z]{3}", 1 => "[A-Za-z0-9 ]{0,4}"];
    let product = (
        field(name.prop_map(Value::from)),
        field(description.prop_map(Value::from)),
        field(around(0, MAX_PRICE_MINOR).prop_map(Value::from)),
        field(currency.prop_map(Value::from)),
        field(around(0, MAX_STOCK).prop_map(Value::from)),
    )
        .prop_map(|(name, description, price, currency, stock)| {
            object(vec![
                ("name", name),
                ("description", description),
                ("price", price),
                ("currency", currency),
                ("stock", stock),
            ])
        });
    prop_oneof![6 => product, 1 => json_value()]
}

/// `createOrder` bodies: mostly the right shape, with line counts and quantities at and beyond their edges.
fn order_document() -> impl Strategy<Value = Value> {
    let user = prop_oneof![
        4 => "[A-Za-z0-9][A-Za-z0-9_.:@-]{0,15}".boxed(),
        1 => Just("u".repeat(64)).boxed(),
        1 => Just("u".repeat(65)).boxed(),
        1 => prop_oneof![Just(String::new()), Just("-lead".to_owned()), Just("a b".to_owned())].boxed(),
        1 => "\\PC{0,8}".boxed(),
    ];
    let line = (
        field(prop_oneof![8 => "[a-z0-9-]{1,12}", 1 => Just(String::new())].prop_map(Value::from)),
        field(around(1, MAX_QUANTITY).prop_map(Value::from)),
    )
        .prop_map(|(product_id, quantity)| {
            object(vec![("productId", product_id), ("quantity", quantity)])
        });
    let lines = prop_oneof![
        6 => prop::collection::vec(line.clone(), 1..=3),
        1 => Just(Vec::new()),
        1 => prop::collection::vec(line, MAX_LINES..=MAX_LINES + 1),
    ];
    let order = (
        field(user.prop_map(Value::from)),
        field(lines.prop_map(Value::Array)),
    )
        .prop_map(|(user, items)| object(vec![("userId", user), ("items", items)]));
    prop_oneof![6 => order, 1 => json_value()]
}

/// How often a pass refused a body at parsing, refused its fields, and accepted it.
#[derive(Default)]
struct Outcomes {
    body_refused: Cell<u32>,
    fields_refused: Cell<u32>,
    accepted: Cell<u32>,
}

impl Outcomes {
    fn count(cell: &Cell<u32>) {
        cell.set(cell.get() + 1);
    }

    /// Every branch was taken.
    fn assert_all_taken(&self, what: &str) {
        let (body, fields, accepted) = (
            self.body_refused.get(),
            self.fields_refused.get(),
            self.accepted.get(),
        );
        eprintln!(
            "{what}: {body} refused as bodies, {fields} refused by field, {accepted} accepted"
        );
        assert!(
            body > 0 && fields > 0 && accepted > 0,
            "{what}: a branch was never taken ({body} refused as bodies, {fields} refused by field, {accepted} accepted)"
        );
    }
}

fn has_violation(errors: &[shared_kernel::FieldViolation], field: &str) -> bool {
    errors.iter().any(|e| e.field == field)
}

/// 1024 cases a property, or PROPTEST_CASES for a longer run.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1024);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn refused_cleanly(problem: &shared_kernel::Problem) -> bool {
    matches!(problem.status, 400 | 422) && !problem.code.is_empty()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_break_the_body_parser(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        for result in [
            parse_json::<CreateProduct>(&bytes).err(),
            parse_json::<CreateOrder>(&bytes).err(),
            parse_json::<PaymentNotification>(&bytes).err(),
        ].into_iter().flatten() {
            prop_assert!(refused_cleanly(&result), "{result:?}");
        }
    }

    #[test]
    fn arbitrary_signature_headers_never_verify_or_panic(header in "\\PC{0,120}", body in prop::collection::vec(any::<u8>(), 0..64), now in any::<i64>()) {
        let signer = ShopSignature::new("whsec_fuzz".to_owned().into());
        prop_assert!(signer.verify(Some(&header), &body, now).is_err());
    }

    #[test]
    fn a_genuine_signature_verifies_and_any_altered_byte_does_not(
        body in prop::collection::vec(any::<u8>(), 1..128),
        timestamp in 0i64..4_000_000_000,
        skew in -TOLERANCE_SECS..=TOLERANCE_SECS,
        flip in any::<prop::sample::Index>(),
    ) {
        let signer = ShopSignature::new("whsec_fuzz".to_owned().into());
        let header = signer.sign(timestamp, &body);
        prop_assert_eq!(signer.verify(Some(&header), &body, timestamp + skew), Ok(Signed::new(timestamp, &body)));
        let mut altered = body.clone();
        let i = flip.index(altered.len());
        altered[i] ^= 0x01;
        prop_assert_eq!(signer.verify(Some(&header), &altered, timestamp), Err(SignatureError::Mismatch));
        prop_assert_eq!(signer.verify(Some(&header), &body, timestamp + TOLERANCE_SECS + 1), Err(SignatureError::Stale));
    }
}

#[test]
fn new_products_are_accepted_only_within_the_rules() {
    let outcomes = Outcomes::default();
    TestRunner::new(config())
        .run(&product_document(), |document| {
            let bytes = serde_json::to_vec(&document).unwrap();
            let body = match parse_json::<CreateProduct>(&bytes) {
                Err(problem) => {
                    prop_assert!(refused_cleanly(&problem), "{problem:?}");
                    Outcomes::count(&outcomes.body_refused);
                    return Ok(());
                }
                Ok(body) => body,
            };
            let fields = NewProductFields {
                name: &body.name,
                description: &body.description,
                price: body.price,
                currency: &body.currency,
                stock: body.stock,
            };
            match NewProduct::parse(fields) {
                Ok(product) => {
                    Outcomes::count(&outcomes.accepted);
                    prop_assert!(
                        (MIN_PRICE_MINOR..=MAX_PRICE_MINOR).contains(&product.price.minor())
                    );
                    prop_assert!((0..=MAX_STOCK).contains(&product.stock.units()));
                    prop_assert!(!product.name.as_str().trim().is_empty());
                    prop_assert!(!product.description.as_str().contains('\0'));
                }
                Err(errors) => {
                    Outcomes::count(&outcomes.fields_refused);
                    prop_assert!(!errors.is_empty());
                    // The numeric rules, exactly at their edges: a field is named if and only if it is out of range.
                    prop_assert_eq!(
                        has_violation(&errors, "price"),
                        !(MIN_PRICE_MINOR..=MAX_PRICE_MINOR).contains(&body.price),
                        "price {}: {:?}",
                        body.price,
                        errors
                    );
                    prop_assert_eq!(
                        has_violation(&errors, "stock"),
                        !(0..=MAX_STOCK).contains(&body.stock),
                        "stock {}: {:?}",
                        body.stock,
                        errors
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    outcomes.assert_all_taken("createProduct");
}

#[test]
fn orders_are_accepted_only_within_the_rules() {
    let outcomes = Outcomes::default();
    TestRunner::new(config())
        .run(&order_document(), |document| {
            let bytes = serde_json::to_vec(&document).unwrap();
            let body = match parse_json::<CreateOrder>(&bytes) {
                Err(problem) => {
                    prop_assert!(refused_cleanly(&problem), "{problem:?}");
                    Outcomes::count(&outcomes.body_refused);
                    return Ok(());
                }
                Ok(body) => body,
            };
            let quantities: Vec<i64> = body.items.iter().map(|i| i.quantity).collect();
            let lines = body
                .items
                .into_iter()
                .map(|i| LineFields {
                    product_id: i.product_id,
                    quantity: i.quantity,
                })
                .collect();
            // The customer comes from the token; the body's `userId` is only compared with it.
            let customer = UserId::parse("fuzz-customer").unwrap();
            match PlaceOrder::parse(customer, lines) {
                Ok(order) => {
                    Outcomes::count(&outcomes.accepted);
                    prop_assert!((1..=MAX_LINES).contains(&order.items.len()));
                    prop_assert!(
                        order
                            .items
                            .iter()
                            .all(|l| (1..=MAX_QUANTITY).contains(&l.quantity))
                    );
                }
                Err(errors) => {
                    Outcomes::count(&outcomes.fields_refused);
                    prop_assert!(!errors.is_empty());
                    // The numeric rules, exactly at their edges: each line's
                    // quantity, and the number of lines, is named if and only if it is out of range.
                    for (i, quantity) in quantities.iter().enumerate() {
                        prop_assert_eq!(
                            errors.iter().any(|e| e.field == RequestField::Quantity(i)),
                            !(1..=MAX_QUANTITY).contains(quantity),
                            "quantity {}: {:?}",
                            quantity,
                            errors
                        );
                    }
                    prop_assert_eq!(
                        errors.iter().any(|e| e.field == RequestField::Items),
                        !(1..=MAX_LINES).contains(&quantities.len()),
                        "{} lines: {:?}",
                        quantities.len(),
                        errors
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    outcomes.assert_all_taken("createOrder");
}

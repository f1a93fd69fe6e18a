//! A bounded fuzz pass (proptest) over what clients and gateways send: the
//! JSON request bodies, their validation into domain values, and the
//! notification signature parser. Nothing may panic; every refusal must be
//! a 400 or 422 problem; whatever is accepted must satisfy the rules.
//! PROPTEST_CASES sets the number of cases (default 1024 a property):
//! `PROPTEST_CASES=100000 cargo test -p shop-tests --test api fuzz` for a long run.

use domain_order::http::CreateOrder;
use domain_order::model::{LineFields, MAX_LINES, MAX_QUANTITY, PlaceOrder};
use domain_payment::http::PaymentNotification;
use domain_payment::signature::{ShopSignature, SignatureError, TOLERANCE_SECS};
use domain_product::http::CreateProduct;
use domain_product::model::{MAX_PRICE_MINOR, MAX_STOCK, NewProduct, NewProductFields};
use proptest::prelude::*;
use serde_json::Value;
use shared_kernel::http::parse_json;

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
    fn new_products_are_accepted_only_within_the_rules(document in json_value()) {
        let bytes = serde_json::to_vec(&document).unwrap();
        match parse_json::<CreateProduct>(&bytes) {
            Err(problem) => prop_assert!(refused_cleanly(&problem)),
            Ok(body) => {
                let fields = NewProductFields {
                    name: &body.name,
                    description: &body.description,
                    price: body.price,
                    currency: &body.currency,
                    stock: body.stock,
                };
                if let Ok(product) = NewProduct::parse(fields) {
                    prop_assert!((0..=MAX_PRICE_MINOR).contains(&product.price.minor()));
                    prop_assert!((0..=MAX_STOCK).contains(&product.stock.units()));
                    prop_assert!(!product.name.as_str().trim().is_empty());
                    prop_assert!(!product.description.as_str().contains('\0'));
                }
            }
        }
    }

    #[test]
    fn orders_are_accepted_only_within_the_rules(document in json_value()) {
        let bytes = serde_json::to_vec(&document).unwrap();
        match parse_json::<CreateOrder>(&bytes) {
            Err(problem) => prop_assert!(refused_cleanly(&problem)),
            Ok(body) => {
                let lines = body.items.into_iter().map(|i| LineFields { product_id: i.product_id, quantity: i.quantity }).collect();
                match PlaceOrder::parse(&body.user_id, lines) {
                    Err(errors) => prop_assert!(!errors.is_empty()),
                    Ok(order) => {
                        prop_assert!((1..=MAX_LINES).contains(&order.items.len()));
                        prop_assert!(order.items.iter().all(|l| (1..=MAX_QUANTITY).contains(&l.quantity)));
                    }
                }
            }
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
        prop_assert_eq!(signer.verify(Some(&header), &body, timestamp + skew), Ok(()));
        let mut altered = body.clone();
        let i = flip.index(altered.len());
        altered[i] ^= 0x01;
        prop_assert_eq!(signer.verify(Some(&header), &altered, timestamp), Err(SignatureError::Mismatch));
        prop_assert_eq!(signer.verify(Some(&header), &body, timestamp + TOLERANCE_SECS + 1), Err(SignatureError::Stale));
    }
}

//! The API contract: what the OpenAPI document promises is what the server
//! does. Nullability and presence of fields, parameters, the answers to
//! unknown paths and methods, HEAD, the limits the validators enforce, and
//! what an `Idempotency-Key` replay answers.
//!
//! The document checked is the generated one (`shop::api::document()`);
//! `openapi.yaml` is held equal to it by the binary's tests.

use std::collections::{BTreeMap, BTreeSet};

use domain_order::http::{IDEMPOTENCY_KEY_MAX_LEN, is_idempotency_key};
use domain_order::model::{
    MAX_LINES, MAX_QUANTITY, OrderFilter, PRODUCT_ID_MAX_LEN, STATUS_LIST_PATTERN,
};
use domain_payment::model::{TRANSACTION_ID_MAX_LEN, TRANSACTION_ID_PATTERN};
use domain_product::model::{
    DESCRIPTION_MAX_CHARS, DESCRIPTION_PATTERN, Description, MAX_LOW_STOCK_THRESHOLD,
    MAX_PRICE_MINOR, MAX_STOCK, MIN_PRICE_MINOR, NAME_MAX_CHARS, NAME_PATTERN, NOTE_MAX_CHARS,
    ProductName, SEARCH_MAX_CHARS, parse_search,
};
use proptest::prelude::*;
use reqwest::Method;
use shared_kernel::audit::http::{
    ACTION_PATTERN, ACTOR_PATTERN, TARGET_ID_PATTERN, is_action, is_actor, is_target_id,
};
use shared_kernel::model::money::{CURRENCY_PATTERN, Currency};
use shared_kernel::web::pagination::{MAX_CURSOR_LEN, MAX_LIMIT, decode_cursor};
use shop_tests::{StatusCode, TestApp, Value, eventually, json, on_every_backend};

on_every_backend!(
    head_answers_every_get_route_as_get_does_without_a_body,
    a_replay_answers_the_order_as_it_is_now,
);

fn document() -> Value {
    shop::api::document()
}

/// Whether a schema lets `null` through (`type: null`, a type list naming
/// `null`, or a `oneOf`/`anyOf` branch that does).
fn admits_null(schema: &Value) -> bool {
    match &schema["type"] {
        Value::String(t) if t == "null" => return true,
        Value::Array(types) if types.iter().any(|t| t == "null") => return true,
        _ => {}
    }
    ["oneOf", "anyOf"].iter().any(|key| {
        schema[*key]
            .as_array()
            .is_some_and(|branches| branches.iter().any(admits_null))
    })
}

/// Every `#/components/schemas/...` name that `value` refers to.
fn refs_in(value: &Value, into: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(name) = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
            {
                into.insert(name.to_owned());
            }
            map.values().for_each(|v| refs_in(v, into));
        }
        Value::Array(items) => items.iter().for_each(|v| refs_in(v, into)),
        _ => {}
    }
}

/// The schemas a response body can hold, followed through their references.
fn response_schemas(doc: &Value) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            refs_in(&operation["responses"], &mut found);
        }
    }
    refs_in(&doc["components"]["responses"], &mut found);
    loop {
        let mut more = found.clone();
        for name in &found {
            refs_in(&doc["components"]["schemas"][name], &mut more);
        }
        if more == found {
            return found;
        }
        found = more;
    }
}

/// A field the server always writes, `null` when unset, is `required` (a
/// generated SDK then types it "present, maybe null" rather than "maybe
/// absent"); a field it leaves out when unset is never `null`.
#[test]
fn response_fields_that_are_always_present_are_required() {
    let doc = document();
    let schemas = response_schemas(&doc);
    for must in ["OrderView", "PaymentView", "Problem", "ProductList"] {
        assert!(schemas.contains(must), "{must} is a response schema");
    }
    for name in &schemas {
        let schema = &doc["components"]["schemas"][name];
        let required: BTreeSet<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (field, property) in schema["properties"].as_object().into_iter().flatten() {
            assert!(
                !admits_null(property) || required.contains(field.as_str()),
                "{name}.{field}: a nullable field is always present, so it must be required"
            );
            assert!(
                required.contains(field.as_str()) || !admits_null(property),
                "{name}.{field}: an optional field is left out when unset, never null"
            );
        }
    }
    for (schema, field) in [
        ("OrderView", "paidAt"),
        ("OrderView", "cancelledAt"),
        ("OrderView", "cancelReason"),
        ("PaymentView", "transactionId"),
    ] {
        let required = &doc["components"]["schemas"][schema]["required"];
        assert!(
            required.as_array().unwrap().contains(&json!(field)),
            "{schema}.{field} is required: {required}"
        );
        assert!(admits_null(
            &doc["components"]["schemas"][schema]["properties"][field]
        ));
    }
}

/// Headers, query and path parameters are strings on the wire: none admits `null`.
#[test]
fn no_parameter_admits_null() {
    let doc = document();
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                seen += 1;
                assert!(
                    !admits_null(&parameter["schema"]),
                    "{method} {path}: parameter {} admits null: {}",
                    parameter["name"],
                    parameter["schema"]
                );
            }
        }
    }
    assert!(seen > 10, "parameters were found");
}

/// What unknown paths and wrong methods answer is documented, and a client
/// knows where the API is served.
#[test]
fn unknown_paths_wrong_methods_and_servers_are_documented() {
    let doc = document();
    let responses = &doc["components"]["responses"];
    for name in ["NotFound", "MethodNotAllowed"] {
        let schema = &responses[name]["content"]["application/problem+json"]["schema"];
        assert_eq!(
            schema["$ref"], "#/components/schemas/Problem",
            "{name}: {}",
            responses[name]
        );
    }
    assert!(
        responses["MethodNotAllowed"]["headers"]["Allow"].is_object(),
        "405 documents Allow: {}",
        responses["MethodNotAllowed"]
    );
    let description = doc["info"]["description"].as_str().unwrap();
    for says in [
        "#/components/responses/NotFound",
        "#/components/responses/MethodNotAllowed",
        "HEAD",
    ] {
        assert!(description.contains(says), "info.description names {says}");
    }
    let servers = doc["servers"].as_array().expect("servers");
    assert_eq!(servers[0]["url"], "/", "the serving host comes first");
    assert!(servers.iter().all(|s| s["description"].is_string()));
}

/// Every limit the document states: `(where, keyword) -> value`. `where`
/// is `Schema.field` (`[]` for array items) or `operationId(parameter)`.
fn documented_limits(doc: &Value) -> BTreeMap<(String, &'static str), Value> {
    const KEYWORDS: [&str; 7] = [
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "minItems",
        "maxItems",
    ];
    fn walk(at: &str, schema: &Value, into: &mut BTreeMap<(String, &'static str), Value>) {
        for keyword in KEYWORDS {
            if let Some(value) = schema.get(keyword) {
                into.insert((at.to_owned(), keyword), value.clone());
            }
        }
        for (field, property) in schema["properties"].as_object().into_iter().flatten() {
            walk(&format!("{at}.{field}"), property, into);
        }
        if schema["items"].is_object() {
            walk(&format!("{at}[]"), &schema["items"], into);
        }
        for key in ["oneOf", "anyOf", "allOf"] {
            for branch in schema[key].as_array().into_iter().flatten() {
                walk(at, branch, into);
            }
        }
    }
    let mut limits = BTreeMap::new();
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        walk(name, schema, &mut limits);
    }
    for item in doc["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let at = format!(
                    "{}({})",
                    operation["operationId"].as_str().unwrap(),
                    parameter["name"].as_str().unwrap()
                );
                walk(&at, &parameter["schema"], &mut limits);
            }
        }
    }
    limits
}

/// The cursor a list route takes, as the document states it.
const CURSOR_PATTERN: &str = "^[0-9A-Za-z_-]{1,64}$";
/// The `Idempotency-Key`, as the document states it.
const IDEMPOTENCY_KEY_PATTERN: &str = r"^[\x21-\x7e]{1,255}$";

/// The limits the document states are the constants the validators use,
/// every one of them: a limit added to, dropped from or changed in either
/// place without the other fails here. (Patterns are literals in the schema
/// attributes; `documented_patterns_accept_what_the_validators_accept`
/// checks that they agree with the validators' code.)
#[test]
fn documented_limits_are_the_validators_limits() {
    let limits = documented_limits(&document());
    let mut expected: BTreeMap<(String, &'static str), Value> = BTreeMap::new();
    let mut expect = |at: &str, pairs: &[(&'static str, Value)]| {
        for (keyword, value) in pairs {
            expected.insert((at.to_owned(), keyword), value.clone());
        }
    };
    let money = |max: Option<i64>| -> Vec<(&'static str, Value)> {
        let mut v = vec![("minimum", json!(0))];
        if let Some(max) = max {
            v.push(("maximum", json!(max)));
        }
        v
    };
    let currency = [("pattern", json!(CURRENCY_PATTERN))];
    let quantity = [("minimum", json!(1)), ("maximum", json!(MAX_QUANTITY))];
    let id = [("minLength", json!(1))];

    // The catalog.
    // An edit takes each field as a creation does (and a threshold).
    expect(
        "UpdateProduct.name",
        &[
            ("minLength", json!(1)),
            ("maxLength", json!(NAME_MAX_CHARS)),
            ("pattern", json!(NAME_PATTERN)),
        ],
    );
    expect(
        "UpdateProduct.description",
        &[
            ("maxLength", json!(DESCRIPTION_MAX_CHARS)),
            ("pattern", json!(DESCRIPTION_PATTERN)),
        ],
    );
    expect(
        "UpdateProduct.price",
        &[
            ("minimum", json!(MIN_PRICE_MINOR)),
            ("maximum", json!(MAX_PRICE_MINOR)),
        ],
    );
    expect(
        "UpdateProduct.currency",
        &[
            ("pattern", json!(CURRENCY_PATTERN)),
            ("minLength", json!(3)),
            ("maxLength", json!(3)),
        ],
    );
    expect(
        "UpdateProduct.lowStockThreshold",
        &[
            ("minimum", json!(0)),
            ("maximum", json!(MAX_LOW_STOCK_THRESHOLD)),
        ],
    );
    expect(
        "CreateProduct.name",
        &[
            ("minLength", json!(1)),
            ("maxLength", json!(NAME_MAX_CHARS)),
            ("pattern", json!(NAME_PATTERN)),
        ],
    );
    expect(
        "CreateProduct.description",
        &[
            ("maxLength", json!(DESCRIPTION_MAX_CHARS)),
            ("pattern", json!(DESCRIPTION_PATTERN)),
        ],
    );
    expect(
        "CreateProduct.price",
        &[
            ("minimum", json!(MIN_PRICE_MINOR)),
            ("maximum", json!(MAX_PRICE_MINOR)),
        ],
    );
    expect(
        "CreateProduct.currency",
        &[
            ("pattern", json!(CURRENCY_PATTERN)),
            ("minLength", json!(3)),
            ("maxLength", json!(3)),
        ],
    );
    let stock = [("minimum", json!(0)), ("maximum", json!(MAX_STOCK))];
    expect("CreateProduct.stock", &stock);
    expect("UpdateStock.newStock", &stock);
    expect("OriginalUpdateStock.newStock", &stock);
    expect("ProductView.price", &money(Some(MAX_PRICE_MINOR)));
    expect("ProductView.currency", &currency);
    expect("ProductView.lowStockThreshold", &[("minimum", json!(0))]);
    // A delta is -MAX_STOCK..=-1 or 1..=MAX_STOCK (oneOf: the walk keeps the
    // second branch; the first is checked below).
    expect(
        "AdjustStock.delta",
        &[("minimum", json!(1)), ("maximum", json!(MAX_STOCK))],
    );
    let delta = &document()["components"]["schemas"]["AdjustStock"]["properties"]["delta"];
    assert_eq!(delta["oneOf"][0]["minimum"], json!(-MAX_STOCK));
    assert_eq!(delta["oneOf"][0]["maximum"], json!(-1));
    expect(
        "AdjustStock.note",
        &[
            ("maxLength", json!(NOTE_MAX_CHARS)),
            ("pattern", json!(DESCRIPTION_PATTERN)),
        ],
    );
    expect("StockMovementView.stockAfter", &[("minimum", json!(0))]);
    // Units released by cancelled orders may lift stored stock above MAX_STOCK.
    expect("ProductView.stock", &money(None));

    // Orders.
    expect("CreateOrderItem.productId", &id);
    expect("CreateOrderItem.quantity", &quantity);
    expect(
        "CreateOrder.items",
        &[("minItems", json!(1)), ("maxItems", json!(MAX_LINES))],
    );
    expect("OriginalCreateOrder.productId", &id);
    expect("OriginalCreateOrder.quantity", &quantity);
    expect("OrderItemView.quantity", &quantity);
    expect("OrderItemView.unitPrice", &money(None));
    expect("OrderView.amount", &money(None));
    expect("OrderView.currency", &currency);
    expect("OriginalOrderView.orderAmount", &money(None));

    // Payments.
    expect("InitiatePayment.orderId", &id);
    expect("PaymentView.amount", &money(None));
    expect("PaymentView.currency", &currency);
    expect("PaymentNotification.amount", &money(None));
    expect("OriginalPaymentNotification.amount", &money(None));
    for schema in ["PaymentNotification", "OriginalPaymentNotification"] {
        expect(
            &format!("{schema}.transactionId"),
            &[
                ("minLength", json!(1)),
                ("maxLength", json!(TRANSACTION_ID_MAX_LEN)),
                ("pattern", json!(TRANSACTION_ID_PATTERN)),
            ],
        );
    }

    // Errors.
    expect(
        "Problem.status",
        &[("minimum", json!(400)), ("maximum", json!(599))],
    );

    // Parameters.
    for operation in [
        "listProducts",
        "listOrders",
        "listAuditEvents",
        "listStockMovements",
    ] {
        expect(
            &format!("{operation}(limit)"),
            &[("minimum", json!(1)), ("maximum", json!(MAX_LIMIT))],
        );
        expect(
            &format!("{operation}(cursor)"),
            &[
                ("minLength", json!(1)),
                ("maxLength", json!(MAX_CURSOR_LEN)),
                ("pattern", json!(CURSOR_PATTERN)),
            ],
        );
    }
    expect(
        "listAuditEvents(actor)",
        &[("pattern", json!(ACTOR_PATTERN))],
    );
    expect(
        "listAuditEvents(targetId)",
        &[("pattern", json!(TARGET_ID_PATTERN))],
    );
    expect(
        "listAuditEvents(action)",
        &[("pattern", json!(ACTION_PATTERN))],
    );
    expect(
        "listOrders(status)",
        &[("pattern", json!(STATUS_LIST_PATTERN))],
    );
    expect(
        "listOrders(productId)",
        &[
            ("minLength", json!(1)),
            ("maxLength", json!(PRODUCT_ID_MAX_LEN)),
            ("pattern", json!(DESCRIPTION_PATTERN)),
        ],
    );
    expect(
        "listProducts(q)",
        &[
            ("minLength", json!(1)),
            ("maxLength", json!(SEARCH_MAX_CHARS)),
            ("pattern", json!(DESCRIPTION_PATTERN)),
        ],
    );
    for operation in ["createOrder", "originalCreateOrder"] {
        expect(
            &format!("{operation}(Idempotency-Key)"),
            &[
                ("minLength", json!(1)),
                ("maxLength", json!(IDEMPOTENCY_KEY_MAX_LEN)),
                ("pattern", json!(IDEMPOTENCY_KEY_PATTERN)),
            ],
        );
    }

    let documented: BTreeSet<_> = limits.keys().collect();
    let known: BTreeSet<_> = expected.keys().collect();
    assert_eq!(
        documented.difference(&known).collect::<Vec<_>>(),
        Vec::<&&(String, &str)>::new(),
        "documented limits this test does not tie to a validator's constant"
    );
    assert_eq!(
        known.difference(&documented).collect::<Vec<_>>(),
        Vec::<&&(String, &str)>::new(),
        "validator limits the document does not state"
    );
    for (key, value) in &expected {
        assert_eq!(&limits[key], value, "{key:?}");
    }
}

/// One documented string rule: its length limits (in characters, as JSON
/// Schema counts them) and pattern, and the validator that enforces it.
struct StringRule {
    what: &'static str,
    min: usize,
    max: usize,
    pattern: regex::Regex,
    validator: fn(&str) -> bool,
}

impl StringRule {
    fn new(
        what: &'static str,
        (min, max): (usize, usize),
        pattern: &str,
        validator: fn(&str) -> bool,
    ) -> Self {
        Self {
            what,
            min,
            max,
            pattern: regex::Regex::new(pattern).expect("a documented pattern compiles"),
            validator,
        }
    }

    fn documented(&self, s: &str) -> bool {
        (self.min..=self.max).contains(&s.chars().count()) && self.pattern.is_match(s)
    }
}

fn string_rules() -> Vec<StringRule> {
    vec![
        StringRule::new("name", (1, NAME_MAX_CHARS), NAME_PATTERN, |s| {
            ProductName::parse(s).is_ok()
        }),
        StringRule::new(
            "description",
            (0, DESCRIPTION_MAX_CHARS),
            DESCRIPTION_PATTERN,
            |s| Description::parse(s).is_ok(),
        ),
        StringRule::new("currency", (3, 3), CURRENCY_PATTERN, |s| {
            Currency::parse(s).is_ok()
        }),
        StringRule::new("cursor", (1, MAX_CURSOR_LEN), CURSOR_PATTERN, |s| {
            decode_cursor(s).is_some()
        }),
        StringRule::new("q", (1, SEARCH_MAX_CHARS), DESCRIPTION_PATTERN, |s| {
            parse_search(s).is_ok()
        }),
        StringRule::new("status", (4, 200), STATUS_LIST_PATTERN, |s| {
            OrderFilter::parse_statuses(s).is_ok()
        }),
        StringRule::new("actor", (1, 64), ACTOR_PATTERN, is_actor),
        StringRule::new("targetId", (1, 64), TARGET_ID_PATTERN, is_target_id),
        StringRule::new("action", (3, 65), ACTION_PATTERN, is_action),
        StringRule::new(
            "Idempotency-Key",
            (1, IDEMPOTENCY_KEY_MAX_LEN),
            IDEMPOTENCY_KEY_PATTERN,
            is_idempotency_key,
        ),
    ]
}

/// Characters that sit on the rules' edges: controls, DEL, NUL, ASCII and
/// Unicode spaces, the ends of visible ASCII, letters, digits, and non-ASCII.
const EDGE_CHARS: &[char] = &[
    '\0', '\u{1}', '\t', '\n', '\u{1f}', ' ', '!', '-', '_', '0', '9', 'A', 'Z', 'a', 'z', '~',
    '\u{7f}', '\u{a0}', '\u{2003}', '\u{3000}', 'é', '字', '🙂',
];

#[test]
fn documented_patterns_accept_what_the_validators_accept() {
    let rules = string_rules();
    for rule in &rules {
        let mut samples: Vec<String> = vec![
            String::new(),
            " ".into(),
            "CNY".into(),
            "cny".into(),
            "iPhone 15".into(),
            " padded ".into(),
            "019b3f2c-7d0e-7f00-b9e6-5c3a0f1d2e4b".into(),
        ];
        for n in [rule.min, rule.max] {
            for c in ['a', 'A', '字', ' '] {
                samples.push(c.to_string().repeat(n));
                samples.push(c.to_string().repeat(n + 1));
                samples.push(c.to_string().repeat(n.saturating_sub(1)));
            }
        }
        for c in EDGE_CHARS {
            samples.push(c.to_string());
            samples.push(format!("ab{c}"));
            samples.push(format!("{c}CN"));
        }
        for s in samples {
            assert_eq!(
                rule.documented(&s),
                (rule.validator)(&s),
                "{}: the document and the validator disagree on {s:?}",
                rule.what
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512)
    ))]

    /// Random strings of edge characters, of every length around the limits.
    #[test]
    fn documented_patterns_agree_with_the_validators_on_random_strings(
        rule in 0..5usize,
        chars in prop::collection::vec(prop::sample::select(EDGE_CHARS), 0..=8),
        fill in prop::sample::select(EDGE_CHARS),
        length in prop::sample::select(vec![0usize, 1, 2, 3, 4, 63, 64, 65, 199, 200, 201, 254, 255, 256, 1999, 2000, 2001]),
    ) {
        let rules = string_rules();
        let rule = &rules[rule];
        let mut s: String = std::iter::repeat_n(fill, length.saturating_sub(chars.len())).collect();
        s.extend(chars);
        prop_assert_eq!(
            rule.documented(&s),
            (rule.validator)(&s),
            "{}: the document and the validator disagree on {:?}", rule.what, s
        );
    }
}

/// A GET operation's path made concrete with ids that exist, and the token it takes.
fn concrete(
    path: &str,
    operation: &Value,
    ids: &BTreeMap<&str, String>,
) -> (String, Option<&'static str>) {
    let mut url = path.to_owned();
    let mut query = Vec::new();
    for parameter in operation["parameters"].as_array().into_iter().flatten() {
        let name = parameter["name"].as_str().unwrap();
        let required = parameter["required"] == json!(true);
        match parameter["in"].as_str().unwrap() {
            "path" => url = url.replace(&format!("{{{name}}}"), &ids[name]),
            "query" if required => query.push(format!("{name}={}", ids[name])),
            _ => {}
        }
    }
    if !query.is_empty() {
        url = format!("{url}?{}", query.join("&"));
    }
    let schemes: Vec<&str> = operation["security"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_object())
        .flat_map(|s| s.keys().map(String::as_str))
        .collect();
    let token = if schemes.contains(&"customerToken") {
        Some("customer")
    } else if schemes.contains(&"adminToken") {
        Some("admin")
    } else {
        None
    };
    (url, token)
}

/// Headers that differ between any two responses.
const PER_RESPONSE: [&str; 2] = ["date", "x-request-id"];

/// HEAD on every GET route of the document (and on the docs) answers what
/// GET answers, status and headers, without a body; a route without GET
/// answers HEAD with 405, and `Allow` names HEAD wherever GET is.
async fn head_answers_every_get_route_as_get_does_without_a_body(app: TestApp) {
    let product = app.create_product("Lamp", 12_900, 5).await["productId"]
        .as_str()
        .unwrap()
        .to_owned();
    let alice = app.as_user("alice");
    let order = alice
        .post_json(
            "/api/v1/orders",
            &json!({"items": [{"productId": product, "quantity": 1}]}),
        )
        .await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
    let order = order.json["orderId"].as_str().unwrap().to_owned();
    let payment = alice
        .post_json(
            "/api/v1/payments",
            &json!({"orderId": order, "paymentMethod": "alipay"}),
        )
        .await;
    assert_eq!(payment.status, StatusCode::CREATED, "{}", payment.body);
    let ids: BTreeMap<&str, String> = [
        ("productId", product),
        ("orderId", order),
        (
            "paymentId",
            payment.json["paymentId"].as_str().unwrap().to_owned(),
        ),
    ]
    .into();

    let doc = document();
    let mut routes = vec![
        ("/api-docs/openapi.json".to_owned(), None),
        ("/swagger-ui/".to_owned(), None),
        ("/".to_owned(), None),
    ];
    for (path, item) in doc["paths"].as_object().unwrap() {
        if let Some(operation) = item.get("get") {
            routes.push(concrete(path, operation, &ids));
        }
    }
    assert!(routes.len() > 10, "{routes:?}");
    for (url, token) in routes {
        let send = |method: Method| {
            let request = match token {
                Some("customer") => alice.request(method, &url),
                Some(_) => app.request_as(&app.admin_token, method, &url),
                None => app.client.request(method, app.url(&url)),
            };
            app.send(request)
        };
        let get = send(Method::GET).await;
        let head = send(Method::HEAD).await;
        assert!(
            get.status.is_success() || get.status.is_redirection(),
            "GET {url}: {} {}",
            get.status,
            get.body
        );
        assert_eq!(head.status, get.status, "HEAD {url}");
        assert_eq!(head.body, "", "HEAD {url} has no body");
        let names = |r: &shop_tests::Response| -> BTreeSet<String> {
            r.headers
                .keys()
                .map(|k| k.as_str().to_owned())
                .filter(|k| !PER_RESPONSE.contains(&k.as_str()))
                .collect()
        };
        assert_eq!(names(&head), names(&get), "HEAD {url}: the same headers");
        for name in names(&get) {
            // The metrics change between two scrapes, and so their length.
            if url == "/metrics" && name == "content-length" {
                continue;
            }
            assert_eq!(
                head.headers[&name], get.headers[&name],
                "HEAD {url}: {name}"
            );
        }
        if let Some(length) = get.headers.get("content-length")
            && url != "/metrics"
        {
            assert_eq!(length.to_str().unwrap(), get.body.len().to_string());
        }
    }

    // A path without GET has no HEAD either.
    for path in ["/api/v1/payments", "/createOrder"] {
        let head = app.send(app.client.head(app.url(path))).await;
        assert_eq!(head.status, StatusCode::METHOD_NOT_ALLOWED, "HEAD {path}");
        assert_eq!(head.headers["allow"], "POST", "HEAD {path}");
        assert_eq!(head.body, "");
    }
    // Allow names HEAD wherever GET is.
    let delete = app
        .send(app.client.delete(app.url("/api/v1/products")))
        .await;
    delete.assert_problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(delete.headers["allow"], "GET, HEAD, POST");
    // An unknown path answers HEAD as it answers GET: 404.
    let head = app.send(app.client.head(app.url("/nowhere"))).await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
}

/// A retried `Idempotency-Key` answers the order as it is now, not a copy of
/// the first response: paid since, it says paid, with its new `updatedAt`.
/// The document says so.
async fn a_replay_answers_the_order_as_it_is_now(app: TestApp) {
    let product = app.create_product("Lamp", 12_900, 5).await["productId"]
        .as_str()
        .unwrap()
        .to_owned();
    let alice = app.as_user("alice");
    let body = json!({"items": [{"productId": product, "quantity": 2}]});
    let place = || {
        alice.send(
            alice
                .request(Method::POST, "/api/v1/orders")
                .header("Idempotency-Key", "checkout-now")
                .json(&body),
        )
    };
    let first = place().await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.json["status"], "pending_payment");
    let order = first.json["orderId"].as_str().unwrap().to_owned();

    let payment = alice
        .post_json(
            "/api/v1/payments",
            &json!({"orderId": order, "paymentMethod": "wechat_pay"}),
        )
        .await;
    assert_eq!(payment.status, StatusCode::CREATED, "{}", payment.body);
    let paid = app
        .notify(
            "/api/v1/payments/notify",
            &json!({"paymentId": payment.json["paymentId"], "paymentStatus": "success",
                    "amount": payment.json["amount"], "currency": "CNY", "transactionId": "tx-now"}),
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    eventually("the order is paid", || async {
        alice.get(&format!("/api/v1/orders/{order}")).await.json["status"] == "paid"
    })
    .await;

    let replay = place().await;
    assert_eq!(replay.status, StatusCode::CREATED, "{}", replay.body);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.json["orderId"], json!(order), "the same order");
    assert_eq!(
        replay.json["status"], "paid",
        "as it is now: {}",
        replay.body
    );
    assert!(replay.json["paidAt"].is_string(), "{}", replay.body);
    assert_ne!(
        replay.json["updatedAt"], first.json["updatedAt"],
        "its current updatedAt"
    );
    assert_eq!(
        replay.json,
        alice.get(&format!("/api/v1/orders/{order}")).await.json,
        "exactly what reading the order answers"
    );
    assert_eq!(app.stock(&product).await, 3, "nothing reserved again");

    // The words agree: the header and the key say "as it is now".
    let doc = document();
    let create = &doc["paths"]["/api/v1/orders"]["post"];
    let key = create["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .unwrap();
    let replayed = &create["responses"]["201"]["headers"]["Idempotent-Replayed"];
    for text in [&key["description"], &replayed["description"]] {
        let text = text.as_str().unwrap();
        assert!(text.contains("as it is now"), "{text}");
        assert!(!text.contains("returns the\nfirst response"), "{text}");
    }
}

//! Orders on SQLite and PostgreSQL: placement, stock, idempotency, cancel,
//! expiry, bad input, and the concurrency that must never oversell.

use std::sync::Arc;

use reqwest::Method;
use shop_tests::{
    Backend, StatusCode, TestApp, Value, count, eventually, holds_for, json, on_every_backend,
};

on_every_backend!(
    an_order_reserves_stock_and_snapshots_prices,
    orders_are_listed_per_user_with_cursors,
    cancelling_releases_stock_once,
    bad_orders_are_refused_and_reserve_nothing,
    a_retry_with_the_same_idempotency_key_creates_nothing,
    concurrent_retries_with_one_key_create_one_order,
    two_hundred_buyers_for_fifty_units_never_oversell,
    concurrent_multi_line_orders_never_reserve_partially,
    original_spec_aliases_place_and_read_orders,
    released_units_come_on_top_of_an_absolute_stock,
    staff_find_orders_across_customers_by_status_product_and_time,
    a_staff_search_pages_exactly_while_orders_are_placed,
);

fn order_body(user: &str, items: &[(&str, i64)]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(p, q)| json!({"productId": p, "quantity": q}))
        .collect();
    json!({"userId": user, "items": items})
}

async fn new_product(app: &TestApp, price: i64, stock: i64) -> String {
    app.create_product("Thing", price, stock).await["productId"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn an_order_reserves_stock_and_snapshots_prices(app: TestApp) {
    let phone = new_product(&app, 999_900, 10).await;
    let case = new_product(&app, 4_900, 5).await;
    let user = app.as_user("user-1");
    let placed = user
        .post_json(
            "/api/v1/orders",
            &order_body("user-1", &[(&phone, 2), (&case, 3)]),
        )
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    let order = &placed.json;
    let id = order["orderId"].as_str().unwrap();
    assert_eq!(
        placed.headers["location"],
        format!("/api/v1/orders/{id}").as_str()
    );
    assert_eq!(order["userId"], "user-1");
    assert_eq!(order["status"], "pending_payment");
    assert_eq!(order["cancelReason"], Value::Null);
    assert_eq!(order["amount"], 2 * 999_900 + 3 * 4_900);
    assert_eq!(order["currency"], "CNY");
    assert_eq!(
        order["items"],
        json!([
            {"productId": phone, "quantity": 2, "unitPrice": 999_900},
            {"productId": case, "quantity": 3, "unitPrice": 4_900},
        ])
    );
    let created = chrono_of(&order["createdAt"]);
    let expires = chrono_of(&order["expiresAt"]);
    assert_eq!(
        (expires - created).num_seconds(),
        900,
        "the default payment timeout is 15 minutes"
    );

    assert_eq!(app.stock(&phone).await, 8);
    assert_eq!(app.stock(&case).await, 2);
    let fetched = user.get(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(&fetched.json, order);
    user.get("/api/v1/orders/nope")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "order_not_found");
    user.get("/api/v1/orders/%00")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "order_not_found");
}

fn chrono_of(value: &Value) -> chrono::DateTime<chrono::Utc> {
    value.as_str().unwrap().parse().unwrap()
}

async fn orders_are_listed_per_user_with_cursors(app: TestApp) {
    let product = new_product(&app, 100, 100).await;
    let (alice, bob) = (app.as_user("alice"), app.as_user("bob"));
    let mut mine = Vec::new();
    for _ in 0..3 {
        mine.push(
            alice
                .post_json("/api/v1/orders", &order_body("alice", &[(&product, 1)]))
                .await
                .json["orderId"]
                .clone(),
        );
        bob.post_json("/api/v1/orders", &order_body("bob", &[(&product, 1)]))
            .await;
    }
    let first = alice.get("/api/v1/orders?userId=alice&limit=2").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let cursor = first.json["nextCursor"].as_str().unwrap();
    let second = alice
        .get(&format!(
            "/api/v1/orders?userId=alice&limit=2&cursor={cursor}"
        ))
        .await;
    assert!(second.json.get("nextCursor").is_none());
    let seen: Vec<Value> = [first.json["items"].clone(), second.json["items"].clone()]
        .iter()
        .flat_map(|items| {
            items
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["orderId"].clone())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(seen, mine);
    // Without userId a customer lists their own orders, the same pages.
    let own = alice.get("/api/v1/orders?limit=2").await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    assert_eq!(own.json["items"], first.json["items"]);
    // Staff may list anyone's: newest first.
    let listed = app.admin_get("/api/v1/orders?userId=alice&limit=3").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let newest_first: Vec<Value> = listed.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["orderId"].clone())
        .collect();
    let mut reversed = mine.clone();
    reversed.reverse();
    assert_eq!(newest_first, reversed);
    assert_eq!(
        app.as_user("nobody")
            .get("/api/v1/orders?userId=nobody")
            .await
            .json["items"],
        json!([])
    );
    // Without userId, staff list every customer's.
    let everyone = app.admin_get("/api/v1/orders?limit=100").await;
    assert_eq!(everyone.json["items"].as_array().unwrap().len(), 6);
    app.admin_get("/api/v1/orders?userId=a%20b")
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_query");
    alice
        .get("/api/v1/orders?userId=alice&limit=0")
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_query");
}

async fn cancelling_releases_stock_once(app: TestApp) {
    let product = new_product(&app, 100, 10).await;
    let user = app.as_user("u");
    let order = user
        .post_json("/api/v1/orders", &order_body("u", &[(&product, 4)]))
        .await
        .json;
    let id = order["orderId"].as_str().unwrap();
    assert_eq!(app.stock(&product).await, 6);

    let cancelled = user
        .post_json(&format!("/api/v1/orders/{id}/cancel"), &json!(null))
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!(cancelled.json["status"], "cancelled");
    assert_eq!(cancelled.json["cancelReason"], "cancelled_by_user");
    assert!(cancelled.json["cancelledAt"].is_string());
    eventually("the stock comes back", || async {
        app.stock(&product).await == 10
    })
    .await;

    let again = user
        .send(user.request(Method::POST, &format!("/api/v1/orders/{id}/cancel")))
        .await;
    again.assert_problem(StatusCode::CONFLICT, "order_not_cancellable");
    user.send(user.request(Method::POST, "/api/v1/orders/nope/cancel"))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "order_not_found");
    // A second release would come from a repeated delivery: once every
    // delivery is handled, the stock stays put over a quiet second.
    eventually("every delivery is handled", || async {
        count(
            &app.database_url,
            "SELECT COUNT(*) AS n FROM event_deliveries WHERE handled_at IS NULL",
        ) == 0
    })
    .await;
    holds_for(
        "released once, not twice (stock stays 10)",
        std::time::Duration::from_secs(1),
        || async { app.stock(&product).await == 10 },
    )
    .await;
}

async fn bad_orders_are_refused_and_reserve_nothing(app: TestApp) {
    let product = new_product(&app, 100, 5).await;
    let other = new_product(&app, 200, 5).await;
    let usd = app
        .admin_send(
            Method::POST,
            "/api/v1/products",
            &json!({"name": "Import", "price": 300, "currency": "USD", "stock": 5}),
        )
        .await
        .json["productId"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = app.as_user("u");

    let unknown = user
        .post_json(
            "/api/v1/orders",
            &order_body("u", &[(&product, 1), ("no-such-product", 1)]),
        )
        .await;
    unknown.assert_problem(StatusCode::NOT_FOUND, "product_not_found");
    assert_eq!(unknown.problem_fields(), ["items[1].productId"]);

    for (quantity, why) in [
        (json!(0), "zero"),
        (json!(-1), "negative"),
        (json!(1001), "above the maximum"),
        (json!(1.5), "fractional"),
        (json!("2"), "a string"),
    ] {
        let body = json!({"userId": "u", "items": [{"productId": product, "quantity": quantity}]});
        let response = user.post_json("/api/v1/orders", &body).await;
        response.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(response.problem_fields(), ["items[0].quantity"], "{why}");
    }
    let empty = user
        .post_json("/api/v1/orders", &json!({"userId": "u", "items": []}))
        .await;
    empty.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(empty.problem_fields(), ["items"]);
    let twice = user
        .post_json(
            "/api/v1/orders",
            &order_body("u", &[(&product, 1), (&other, 1), (&product, 2)]),
        )
        .await;
    twice.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(twice.problem_fields(), ["items[2].productId"]);
    // userId may be left out (the token says who orders), but when given it must be the caller.
    let other_user = user
        .post_json(
            "/api/v1/orders",
            &order_body("someone-else", &[(&product, 1)]),
        )
        .await;
    other_user.assert_problem(StatusCode::FORBIDDEN, "user_mismatch");
    let bad_user = user
        .post_json(
            "/api/v1/orders",
            &order_body("not a user", &[(&product, 1)]),
        )
        .await;
    assert_eq!(bad_user.problem_fields(), ["userId"]);
    let mixed = user
        .post_json(
            "/api/v1/orders",
            &order_body("u", &[(&product, 1), (&usd, 1)]),
        )
        .await;
    mixed.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "currency_mismatch");

    let short = user
        .post_json(
            "/api/v1/orders",
            &order_body("u", &[(&other, 1), (&product, 6)]),
        )
        .await;
    short.assert_problem(StatusCode::CONFLICT, "insufficient_stock");
    assert_eq!(short.problem_fields(), ["items[1].quantity"]);
    assert!(
        short.json["detail"].as_str().unwrap().contains(&product),
        "names the product: {}",
        short.body
    );

    let bad_key = user
        .send(
            user.request(Method::POST, "/api/v1/orders")
                .header("Idempotency-Key", "has space")
                .json(&order_body("u", &[(&product, 1)])),
        )
        .await;
    bad_key.assert_problem(StatusCode::BAD_REQUEST, "invalid_idempotency_key");

    // Nothing above reserved anything, even for a short while (the mixed-currency one released its reservation).
    eventually("every refused order's stock is back", || async {
        app.stock(&product).await == 5 && app.stock(&other).await == 5 && app.stock(&usd).await == 5
    })
    .await;
    assert_eq!(
        user.get("/api/v1/orders?userId=u").await.json["items"],
        json!([])
    );
}

async fn a_retry_with_the_same_idempotency_key_creates_nothing(app: TestApp) {
    let product = new_product(&app, 100, 10).await;
    let body = order_body("carol", &[(&product, 2)]);
    let post = |user: &'static str, key: &'static str, body: Value| {
        app.send(
            app.request_as(&app.token(user), Method::POST, "/api/v1/orders")
                .header("Idempotency-Key", key)
                .json(&body),
        )
    };
    let first = post("carol", "checkout-1", body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let retry = post("carol", "checkout-1", body.clone()).await;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(retry.json, first.json, "the original response");
    assert_eq!(app.stock(&product).await, 8);

    let other_body = post("carol", "checkout-1", order_body("carol", &[(&product, 3)])).await;
    other_body.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused");
    // Keys are per user: another user's checkout-1 is another order.
    let dave = post("dave", "checkout-1", order_body("dave", &[(&product, 1)])).await;
    assert_eq!(dave.status, StatusCode::CREATED);
    assert_ne!(dave.json["orderId"], first.json["orderId"]);
    assert_eq!(app.stock(&product).await, 7);
    assert_eq!(
        app.as_user("carol")
            .get("/api/v1/orders?userId=carol")
            .await
            .json["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

async fn concurrent_retries_with_one_key_create_one_order(app: TestApp) {
    let product = new_product(&app, 100, 100).await;
    let app = Arc::new(app);
    let token = app.token("erin");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (app, product, token) = (app.clone(), product.clone(), token.clone());
            tokio::spawn(async move {
                let request = app
                    .request_as(&token, Method::POST, "/api/v1/orders")
                    .header("Idempotency-Key", "same-key");
                app.send(request.json(&order_body("erin", &[(&product, 1)])))
                    .await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        let response = task.await.unwrap();
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
        ids.push(response.json["orderId"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every caller got the one order");
    assert_eq!(
        app.as_user("erin")
            .get("/api/v1/orders?userId=erin")
            .await
            .json["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Losers' reservations are released; only the one order holds stock.
    eventually("only one unit stays reserved", || async {
        app.stock(&product).await == 99
    })
    .await;
}

async fn two_hundred_buyers_for_fifty_units_never_oversell(app: TestApp) {
    let product = new_product(&app, 999_900, 50).await;
    let app = Arc::new(app);
    // Every buyer's token is made before the sale starts.
    let tokens: Vec<String> = (0..200).map(|i| app.token(&format!("buyer-{i}"))).collect();
    let started = std::time::Instant::now();
    let tasks: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, token)| {
            let (app, product) = (app.clone(), product.clone());
            tokio::spawn(async move {
                let body = order_body(&format!("buyer-{i}"), &[(&product, 1)]);
                app.send_as(&token, Method::POST, "/api/v1/orders", Some(&body))
                    .await
            })
        })
        .collect();
    let (mut created, mut refused) = (0, 0);
    for task in tasks {
        let response = task.await.unwrap();
        match response.status {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {
                response.assert_problem(StatusCode::CONFLICT, "insufficient_stock");
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", response.body),
        }
    }
    eprintln!(
        "flash sale on {:?}: 200 concurrent orders for 50 units in {:?}: {created} created, {refused} refused",
        app.backend,
        started.elapsed()
    );
    assert_eq!((created, refused), (50, 150));
    assert_eq!(app.stock(&product).await, 0);
}

async fn concurrent_multi_line_orders_never_reserve_partially(app: TestApp) {
    let stocks = [30_i64, 20, 10];
    let mut products = Vec::new();
    for stock in stocks {
        products.push(new_product(&app, 100, stock).await);
    }
    let app = Arc::new(app);
    // A deterministic mix: each order takes 1 to 3 of some of the three products.
    let orders: Vec<Vec<(usize, i64)>> = (0..120_usize)
        .map(|i| {
            let lines: Vec<(usize, i64)> = (0..3)
                .filter(|p| (i + p) % 3 != 0 || p == &(i % 3))
                .map(|p| (p, ((i * 7 + p) % 3 + 1) as i64))
                .collect();
            lines
        })
        .collect();
    let tasks: Vec<_> = orders
        .iter()
        .enumerate()
        .map(|(i, lines)| {
            let app = app.clone();
            let items: Vec<(String, i64)> = lines
                .iter()
                .map(|(p, q)| (products[*p].clone(), *q))
                .collect();
            let token = app.token(&format!("mix-{i}"));
            tokio::spawn(async move {
                let items: Vec<(&str, i64)> = items.iter().map(|(p, q)| (p.as_str(), *q)).collect();
                let body = order_body(&format!("mix-{i}"), &items);
                app.send_as(&token, Method::POST, "/api/v1/orders", Some(&body))
                    .await
            })
        })
        .collect();
    let mut sold = [0_i64; 3];
    for (task, lines) in tasks.into_iter().zip(&orders) {
        let response = task.await.unwrap();
        match response.status {
            StatusCode::CREATED => lines.iter().for_each(|(p, q)| sold[*p] += q),
            StatusCode::CONFLICT => {
                response.assert_problem(StatusCode::CONFLICT, "insufficient_stock")
            }
            other => panic!("unexpected {other}: {}", response.body),
        }
    }
    for (i, product) in products.iter().enumerate() {
        let left = app.stock(product).await;
        assert!(left >= 0);
        assert_eq!(
            stocks[i] - left,
            sold[i],
            "product {i}: what left the stock is exactly what placed orders hold"
        );
    }
    assert!(sold.iter().sum::<i64>() > 0);
}

async fn original_spec_aliases_place_and_read_orders(app: TestApp) {
    let product = new_product(&app, 999_900, 100).await;
    let user = app.as_user("spec-user");
    let placed = user
        .post_json(
            "/createOrder",
            &json!({"productId": product, "quantity": 2, "userId": "spec-user"}),
        )
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
    assert_eq!(placed.json["orderAmount"], 1_999_800);
    assert_eq!(placed.json["orderStatus"], "pending_payment");
    let id = placed.json["orderId"].as_str().unwrap();
    let info = user.get(&format!("/getOrderInfo?orderId={id}")).await;
    assert_eq!(info.status, StatusCode::OK);
    assert_eq!(info.json, placed.json);
    user.get("/getOrderInfo?orderId=nope")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "order_not_found");
    user.get("/getOrderInfo")
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_query");

    let zero = user
        .post_json(
            "/createOrder",
            &json!({"productId": product, "quantity": 0, "userId": "spec-user"}),
        )
        .await;
    zero.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(zero.problem_fields(), ["quantity"]);
    let unknown = user
        .post_json(
            "/createOrder",
            &json!({"productId": "nope", "quantity": 1, "userId": "spec-user"}),
        )
        .await;
    unknown.assert_problem(StatusCode::NOT_FOUND, "product_not_found");
    assert_eq!(unknown.problem_fields(), ["productId"]);
    let short = user
        .post_json(
            "/createOrder",
            &json!({"productId": product, "quantity": 99, "userId": "spec-user"}),
        )
        .await;
    short.assert_problem(StatusCode::CONFLICT, "insufficient_stock");
    assert_eq!(app.stock(&product).await, 98);
}

mod expiry {
    use super::*;

    async fn unpaid_orders_expire_and_release_their_stock(backend: Backend) {
        // Long enough that the checks before the expiry finish first on a loaded machine.
        let settings = [
            ("SHOP__ORDER__PAYMENT_TIMEOUT_SECS", "5"),
            ("SHOP__ORDER__EXPIRY_SWEEP_MS", "100"),
        ];
        let app = TestApp::spawn_with(backend, &settings).await;
        let product = new_product(&app, 100, 10).await;
        let user = app.as_user("late");
        let order = user
            .post_json("/api/v1/orders", &order_body("late", &[(&product, 3)]))
            .await
            .json;
        let id = order["orderId"].as_str().unwrap().to_owned();
        assert_eq!(app.stock(&product).await, 7);
        let path = format!("/api/v1/orders/{id}");
        eventually("the order expires", || async {
            user.get(&path).await.json["status"] == "cancelled"
        })
        .await;
        let expired = user.get(&path).await.json;
        assert_eq!(expired["cancelReason"], "expired");
        let late_by = chrono_of(&expired["cancelledAt"]) - chrono_of(&expired["expiresAt"]);
        assert!(
            late_by.num_milliseconds() >= 0 && late_by.num_seconds() < 3,
            "cancelled within seconds of expiresAt"
        );
        eventually("the stock comes back", || async {
            app.stock(&product).await == 10
        })
        .await;
        let cancel = user
            .send(user.request(Method::POST, &format!("{path}/cancel")))
            .await;
        cancel.assert_problem(StatusCode::CONFLICT, "order_not_cancellable");
    }

    shop_tests::on_each_backend!(unpaid_orders_expire_and_release_their_stock);
}

/// Found by schemathesis: an admin sets the stock to the maximum while an
/// order holds units; the cancel gives them back on top, and the product
/// must still read (it once answered 500).
async fn released_units_come_on_top_of_an_absolute_stock(app: TestApp) {
    let product = new_product(&app, 100, 10).await;
    let user = app.as_user("u");
    let order = user
        .post_json("/api/v1/orders", &order_body("u", &[(&product, 3)]))
        .await
        .json;
    let set = app
        .admin_send(
            Method::PUT,
            &format!("/api/v1/products/{product}/stock"),
            &json!({"newStock": 1_000_000_000}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK);
    let id = order["orderId"].as_str().unwrap();
    let cancelled = user
        .send(user.request(Method::POST, &format!("/api/v1/orders/{id}/cancel")))
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    eventually("the units come back", || async {
        app.stock(&product).await == 1_000_000_003
    })
    .await;
    assert_eq!(
        app.get("/api/v1/products?limit=100").await.status,
        StatusCode::OK
    );
}

fn strs(ids: &[String]) -> Vec<&str> {
    ids.iter().map(String::as_str).collect()
}

/// The ids of every order a staff search lists, page after page.
async fn staff_search(app: &TestApp, query: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/orders?limit=2{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = app.admin_get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        for order in page.json["items"].as_array().unwrap() {
            ids.push(order["orderId"].as_str().unwrap().to_owned());
        }
        match page.json["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return ids,
        }
    }
}

async fn staff_find_orders_across_customers_by_status_product_and_time(app: TestApp) {
    let lamp = new_product(&app, 100, 100).await;
    let shade = new_product(&app, 200, 100).await;
    let a1 = app.place_order("alice", &lamp, 1).await.order;
    let b1 = app.place_order("bob", &shade, 1).await.order;
    let between = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let a2 = app.place_order("alice", &shade, 1).await.order;
    let b2 = app.place_order("bob", &lamp, 1).await.order;
    assert_eq!(app.cancel("bob", &b2).await.status, StatusCode::OK);

    assert_eq!(
        strs(&staff_search(&app, "").await),
        [b2.as_str(), a2.as_str(), b1.as_str(), a1.as_str()],
        "newest first"
    );
    assert_eq!(
        strs(&staff_search(&app, "&userId=alice").await),
        [a2.as_str(), a1.as_str()]
    );
    assert_eq!(
        strs(&staff_search(&app, "&status=cancelled").await),
        [b2.as_str()]
    );
    assert_eq!(
        strs(&staff_search(&app, "&status=pending_payment,cancelled").await),
        [b2.as_str(), a2.as_str(), b1.as_str(), a1.as_str()]
    );
    assert_eq!(
        strs(&staff_search(&app, &format!("&productId={lamp}")).await),
        [b2.as_str(), a1.as_str()]
    );
    let from = between.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let encoded = from.replace('+', "%2B").replace(':', "%3A");
    assert_eq!(
        strs(&staff_search(&app, &format!("&createdFrom={encoded}")).await),
        [b2.as_str(), a2.as_str()]
    );
    assert_eq!(
        strs(&staff_search(&app, &format!("&createdTo={encoded}")).await),
        [b1.as_str(), a1.as_str()]
    );
    assert_eq!(
        staff_search(
            &app,
            &format!("&createdFrom={encoded}&status=pending_payment&productId={shade}")
        )
        .await,
        [a2.as_str()]
    );
    // A customer filters their own orders only, whatever they ask.
    let mine = app
        .as_user("alice")
        .get(&format!("/api/v1/orders?productId={shade}"))
        .await;
    let ids: Vec<&str> = mine.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["orderId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a2.as_str()]);
    for (query, field) in [
        ("status=shipped", "status"),
        ("createdFrom=yesterday", "createdFrom"),
        ("createdTo=2026-13-01T00:00:00Z", "createdTo"),
    ] {
        let refused = app.admin_get(&format!("/api/v1/orders?{query}")).await;
        refused.assert_problem(StatusCode::BAD_REQUEST, "invalid_query");
        assert_eq!(refused.problem_fields(), [field], "{query}");
    }
}

/// Orders placed while staff page through the newest-first list never
/// shift a page: the pages hold exactly the orders there were when the
/// first was read, each once.
async fn a_staff_search_pages_exactly_while_orders_are_placed(app: TestApp) {
    let lamp = new_product(&app, 100, 100).await;
    let mut before = Vec::new();
    for _ in 0..7 {
        before.push(app.place_order("alice", &lamp, 1).await.order);
    }
    before.reverse();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/api/v1/orders?limit=2".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = app.admin_get(&path).await;
        for order in page.json["items"].as_array().unwrap() {
            seen.push(order["orderId"].as_str().unwrap().to_owned());
        }
        // A new order between every two pages.
        app.place_order("bob", &lamp, 1).await;
        match page.json["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, before);
}

//! Staff run the catalog: products taken off sale and put back, found by
//! name and listed in several orders, every page to the end.

use std::sync::Arc;

use shop_tests::{StatusCode, TestApp, Value, json, on_every_backend};

on_every_backend!(
    an_archived_product_reads_by_id_but_is_never_ordered,
    archiving_is_idempotent_audited_and_told,
    only_staff_list_archived_products,
    an_archive_racing_orders_never_lets_one_through_after_it,
    the_name_search_is_literal_and_case_insensitive,
    every_sort_pages_to_the_end,
    adjustments_and_sets_are_movements_audited_newest_first,
    an_adjustment_below_zero_changes_nothing,
    adjustments_racing_orders_lose_no_update,
    an_edit_changes_new_orders_only_and_is_audited_and_told,
    of_two_editors_with_one_etag_one_wins,
    invalid_edits_name_each_field_and_change_nothing,
    a_fall_below_the_low_stock_threshold_is_told_once,
);

async fn edit(
    app: &TestApp,
    product: &str,
    patch: Value,
    if_match: Option<&str>,
) -> shop_tests::Response {
    let mut request = app
        .request_as(
            &app.admin_token,
            reqwest::Method::PATCH,
            &format!("/api/v1/products/{product}"),
        )
        .header("content-type", "application/merge-patch+json")
        .body(patch.to_string());
    if let Some(tag) = if_match {
        request = request.header("if-match", tag);
    }
    app.send(request).await
}

fn etag(response: &shop_tests::Response) -> String {
    response.headers["etag"].to_str().unwrap().to_owned()
}

async fn adjust(app: &TestApp, product: &str, body: Value) -> shop_tests::Response {
    let path = format!("/api/v1/products/{product}/stock-adjustments");
    app.admin_send(reqwest::Method::POST, &path, &body).await
}

async fn movements(app: &TestApp, product: &str) -> Vec<Value> {
    let page = app
        .admin_get(&format!(
            "/api/v1/products/{product}/stock-movements?limit=100"
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.json["items"].as_array().cloned().unwrap_or_default()
}

const BUYER: &str = "buyer";

async fn archive(app: &TestApp, product: &str) -> shop_tests::Response {
    let path = format!("/api/v1/products/{product}/archive");
    app.admin_send(reqwest::Method::POST, &path, &json!({}))
        .await
}

async fn restore(app: &TestApp, product: &str) -> shop_tests::Response {
    let path = format!("/api/v1/products/{product}/restore");
    app.admin_send(reqwest::Method::POST, &path, &json!({}))
        .await
}

fn id(product: &Value) -> String {
    product["productId"].as_str().unwrap().to_owned()
}

/// The ids of every product `query` lists, page after page (`limit` 2).
async fn list_all(app: &TestApp, query: &str, staff: bool) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/products?limit=2{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = if staff {
            app.admin_get(&path).await
        } else {
            app.get(&path).await
        };
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        let got = page.json["items"].as_array().cloned().unwrap_or_default();
        assert!(got.len() <= 2);
        items.extend(got);
        match page.json["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

fn names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn an_archived_product_reads_by_id_but_is_never_ordered(app: TestApp) {
    let lamp = app.create_product("Lamp", 500, 10).await;
    let lamp = id(&lamp);
    let other = id(&app.create_product("Shade", 300, 10).await);
    assert_eq!(
        app.get(&format!("/api/v1/products/{lamp}")).await.json["status"],
        "active"
    );
    let archived = archive(&app, &lamp).await;
    assert_eq!(archived.status, StatusCode::OK, "{}", archived.body);
    assert_eq!(archived.json["status"], "archived");
    let read = app.get(&format!("/api/v1/products/{lamp}")).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.json["status"], "archived");

    // Refused on the REST route, naming the line, with nothing reserved of any line.
    let refused = app
        .as_user(BUYER)
        .post_json(
            "/api/v1/orders",
            &json!({"items": [{"productId": other, "quantity": 1}, {"productId": lamp, "quantity": 2}]}),
        )
        .await;
    refused.assert_problem(StatusCode::CONFLICT, "product_archived");
    assert_eq!(refused.problem_fields(), ["items[1].productId"]);
    // And on the original spec's alias.
    let alias = app
        .as_user(BUYER)
        .post_json("/createOrder", &json!({"productId": lamp, "quantity": 1}))
        .await;
    alias.assert_problem(StatusCode::CONFLICT, "product_archived");
    assert_eq!(app.stock(&lamp).await, 10);
    assert_eq!(app.stock(&other).await, 10);

    // Back on sale, it sells.
    assert_eq!(restore(&app, &lamp).await.json["status"], "active");
    app.place_order(BUYER, &lamp, 2).await;
    assert_eq!(app.stock(&lamp).await, 8);
}

async fn archiving_is_idempotent_audited_and_told(app: TestApp) {
    let lamp = id(&app.create_product("Lamp", 500, 10).await);
    for _ in 0..2 {
        let archived = archive(&app, &lamp).await;
        assert_eq!(archived.status, StatusCode::OK, "{}", archived.body);
        assert_eq!(archived.json["status"], "archived");
    }
    for _ in 0..2 {
        assert_eq!(restore(&app, &lamp).await.json["status"], "active");
    }
    archive(&app, "no-such-product")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "product_not_found");
    let log = app
        .admin_get(&format!("/api/v1/audit-events?targetId={lamp}"))
        .await;
    let actions: Vec<&str> = log.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["product.restored", "product.archived", "product.created"],
        "one entry a change, none for a repeat"
    );
    assert_eq!(log.json["items"][1]["before"], json!({"status": "active"}));
    assert_eq!(log.json["items"][1]["after"], json!({"status": "archived"}));
    let url = app.database_url.clone();
    let told = |kind: &str| {
        shop_tests::count(
            &url,
            &format!("SELECT COUNT(*) AS n FROM outbox_events WHERE event_type = '{kind}'"),
        )
    };
    assert_eq!(told("product.archived"), 1);
    assert_eq!(told("product.restored"), 1);
}

async fn only_staff_list_archived_products(app: TestApp) {
    let on_sale = id(&app.create_product("On sale", 100, 1).await);
    let off_sale = id(&app.create_product("Off sale", 100, 1).await);
    assert_eq!(archive(&app, &off_sale).await.status, StatusCode::OK);

    let public = list_all(&app, "", false).await;
    assert_eq!(names(&public), ["On sale"]);
    assert_eq!(public[0]["productId"], on_sale.as_str());
    assert_eq!(
        names(&list_all(&app, "&status=archived", true).await),
        ["Off sale"]
    );
    assert_eq!(
        names(&list_all(&app, "&status=all", true).await),
        ["On sale", "Off sale"]
    );
    for status in ["archived", "all"] {
        let anonymous = app.get(&format!("/api/v1/products?status={status}")).await;
        assert_eq!(
            anonymous.status,
            StatusCode::UNAUTHORIZED,
            "{}",
            anonymous.body
        );
        let customer = app
            .as_user(BUYER)
            .get(&format!("/api/v1/products?status={status}"))
            .await;
        customer.assert_problem(StatusCode::FORBIDDEN, "staff_only");
    }
    let bad = app.get("/api/v1/products?status=deleted").await;
    bad.assert_problem(StatusCode::BAD_REQUEST, "invalid_query");
}

/// Buyers keep ordering one unit at a time while staff archive the product:
/// every order is placed (holding its unit) or refused with
/// `product_archived` (taking nothing), and every order sent after the
/// archive answered (so after it committed) is refused.
async fn an_archive_racing_orders_never_lets_one_through_after_it(app: TestApp) {
    const BUYERS: usize = 8;
    let lamp = id(&app.create_product("Lamp", 100, 100_000).await);
    let app = Arc::new(app);
    let archived_at: Arc<std::sync::OnceLock<std::time::Instant>> = Arc::default();
    // The buyers start before the archive; each orders until it is refused twice.
    let mut buyers = Vec::new();
    for _ in 0..BUYERS {
        let (a, l, done) = (app.clone(), lamp.clone(), archived_at.clone());
        buyers.push(tokio::spawn(async move {
            let token = a.token(BUYER);
            let mut answers = Vec::new();
            // Until one order is sent after the archive answered.
            loop {
                let sent = std::time::Instant::now();
                let answer = a
                    .send(a.caller(&token).place_order(&a.address, &l, 1))
                    .await;
                answers.push((sent, answer));
                if done.get().is_some_and(|archived| sent > *archived) {
                    break;
                }
                assert!(answers.len() < 20_000, "the archive never answered");
            }
            answers
        }));
    }
    // Let the orders flow, then archive.
    shop_tests::eventually("orders are being placed", || async {
        app.stock(&lamp).await < 100_000 - 20
    })
    .await;
    let archived = archive(&app, &lamp).await;
    assert_eq!(archived.status, StatusCode::OK, "{}", archived.body);
    archived_at.set(std::time::Instant::now()).unwrap();
    let archived_at = *archived_at.get().unwrap();

    let mut placed = 0_i64;
    let mut refused_after = 0;
    for buyer in buyers {
        for (sent, answer) in buyer.await.unwrap() {
            match answer.status {
                StatusCode::CREATED => {
                    assert!(
                        sent < archived_at,
                        "an order sent after the archive answered was placed"
                    );
                    placed += 1;
                }
                _ => {
                    answer.assert_problem(StatusCode::CONFLICT, "product_archived");
                    if sent > archived_at {
                        refused_after += 1;
                    }
                }
            }
        }
    }
    assert!(placed >= 20, "orders were placed before the archive");
    assert!(
        refused_after >= BUYERS,
        "orders were sent after the archive"
    );
    // Every unit taken belongs to an order placed; none was taken by a refused one.
    assert_eq!(app.stock(&lamp).await, 100_000 - placed);
}

async fn the_name_search_is_literal_and_case_insensitive(app: TestApp) {
    for name in [
        "100% Cotton Shirt",
        "1000 Cotton Shirts",
        "snake_case mug",
        "snakeXcase mug",
        "Crème Brûlée Set",
        "ÉCLAIR tray",
        "手机壳 Phone Case",
        "Plain Phone",
    ] {
        app.create_product(name, 100, 1).await;
    }
    for (q, expected) in [
        ("100%", vec!["100% Cotton Shirt"]),
        ("%", vec!["100% Cotton Shirt"]),
        ("e_c", vec!["snake_case mug"]),
        ("_", vec!["snake_case mug"]),
        ("COTTON", vec!["100% Cotton Shirt", "1000 Cotton Shirts"]),
        ("crème", vec!["Crème Brûlée Set"]),
        ("BRÛLÉE", vec!["Crème Brûlée Set"]),
        ("éclair", vec!["ÉCLAIR tray"]),
        ("手机", vec!["手机壳 Phone Case"]),
        ("phone", vec!["手机壳 Phone Case", "Plain Phone"]),
        ("no such thing", vec![]),
    ] {
        let encoded: String = url_encode(q);
        let found = list_all(&app, &format!("&q={encoded}"), false).await;
        assert_eq!(names(&found), expected, "q={q}");
    }
    let empty = app.get("/api/v1/products?q=").await;
    empty.assert_problem(StatusCode::BAD_REQUEST, "invalid_query");
    assert_eq!(empty.problem_fields(), ["q"]);
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn every_sort_pages_to_the_end(app: TestApp) {
    // Names out of order, prices with ties, one archived product that no sort shows.
    let made = [
        ("pear", 300),
        ("Apple", 100),
        ("banana", 300),
        ("Cherry", 200),
        ("apricot", 100),
        ("Date", 500),
        ("fig", 300),
    ];
    let mut ids = Vec::new();
    for (name, price) in made {
        ids.push(id(&app.create_product(name, price, 1).await));
    }
    let hidden = id(&app.create_product("zzz archived", 1, 1).await);
    archive(&app, &hidden).await;

    let oldest = names(&list_all(&app, "", false).await);
    assert_eq!(
        oldest,
        [
            "pear", "Apple", "banana", "Cherry", "apricot", "Date", "fig"
        ]
    );
    assert_eq!(
        names(&list_all(&app, "&sort=createdAt", false).await),
        oldest
    );
    let mut newest = oldest.clone();
    newest.reverse();
    assert_eq!(
        names(&list_all(&app, "&sort=-createdAt", false).await),
        newest
    );
    // Ties are broken by id, which is the order of creation.
    assert_eq!(
        names(&list_all(&app, "&sort=price", false).await),
        [
            "Apple", "apricot", "Cherry", "pear", "banana", "fig", "Date"
        ]
    );
    assert_eq!(
        names(&list_all(&app, "&sort=-price", false).await),
        [
            "Date", "fig", "banana", "pear", "Cherry", "apricot", "Apple"
        ]
    );
    assert_eq!(
        names(&list_all(&app, "&sort=name", false).await),
        [
            "Apple", "apricot", "banana", "Cherry", "Date", "fig", "pear"
        ]
    );
    // A search and a sort together.
    assert_eq!(
        names(&list_all(&app, "&q=a&sort=-price", false).await),
        ["Date", "banana", "pear", "apricot", "Apple"]
    );
    let bad = app.get("/api/v1/products?sort=stock").await;
    bad.assert_problem(StatusCode::BAD_REQUEST, "invalid_query");
    let made_up = app
        .get("/api/v1/products?sort=price&cursor=nothing-here")
        .await;
    made_up.assert_problem(StatusCode::BAD_REQUEST, "invalid_query");
}

async fn adjustments_and_sets_are_movements_audited_newest_first(app: TestApp) {
    let lamp = id(&app.create_product("Lamp", 100, 10).await);
    let restock = adjust(&app, &lamp, json!({"delta": 5, "reason": "restock"})).await;
    assert_eq!(restock.status, StatusCode::CREATED, "{}", restock.body);
    assert_eq!(restock.json["stockAfter"], 15);
    assert_eq!(restock.json["delta"], 5);
    assert_eq!(restock.json["reason"], "restock");
    assert_eq!(restock.json["actor"], "admin-token");
    let broke = adjust(
        &app,
        &lamp,
        json!({"delta": -3, "reason": "damaged", "note": "dropped in the warehouse"}),
    )
    .await;
    assert_eq!(broke.json["stockAfter"], 12);
    let set = app
        .admin_send(
            reqwest::Method::PUT,
            &format!("/api/v1/products/{lamp}/stock"),
            &json!({"newStock": 20}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(app.stock(&lamp).await, 20);

    let moved = movements(&app, &lamp).await;
    let summary: Vec<(String, i64, i64)> = moved
        .iter()
        .map(|m| {
            (
                m["reason"].as_str().unwrap().to_owned(),
                m["delta"].as_i64().unwrap(),
                m["stockAfter"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("set".to_owned(), 8, 20),
            ("damaged".to_owned(), -3, 12),
            ("restock".to_owned(), 5, 15)
        ]
    );
    assert_eq!(moved[1]["note"], "dropped in the warehouse");
    assert_eq!(moved[0]["note"], Value::Null);
    assert!(moved[0]["requestId"].as_str().is_some());
    let log = app
        .admin_get(&format!(
            "/api/v1/audit-events?targetId={lamp}&action=product.stock_adjusted"
        ))
        .await;
    let entries = log.json["items"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["before"], json!({"stock": 15}));
    assert_eq!(entries[0]["after"]["stock"], 12);
    assert_eq!(entries[0]["after"]["reason"], "damaged");
    // Invalid adjustments name each field; movements are for staff and known products.
    let invalid = adjust(&app, &lamp, json!({"delta": 0, "reason": "stolen"})).await;
    invalid.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(invalid.problem_fields(), ["delta", "reason"]);
    let long = adjust(
        &app,
        &lamp,
        json!({"delta": 1, "reason": "found", "note": "n".repeat(501)}),
    )
    .await;
    assert_eq!(long.problem_fields(), ["note"]);
    adjust(
        &app,
        "no-such-product",
        json!({"delta": 1, "reason": "found"}),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "product_not_found");
    app.admin_get("/api/v1/products/no-such-product/stock-movements")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "product_not_found");
    let anonymous = app
        .get(&format!("/api/v1/products/{lamp}/stock-movements"))
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        movements(&app, &lamp).await.len(),
        3,
        "refusals made no movement"
    );
}

async fn an_adjustment_below_zero_changes_nothing(app: TestApp) {
    let lamp = id(&app.create_product("Lamp", 100, 4).await);
    let refused = adjust(&app, &lamp, json!({"delta": -5, "reason": "lost"})).await;
    refused.assert_problem(StatusCode::CONFLICT, "insufficient_stock");
    let detail = refused.json["detail"].as_str().unwrap();
    assert!(detail.contains("has 4 in stock"), "{detail}");
    assert_eq!(app.stock(&lamp).await, 4);
    assert!(movements(&app, &lamp).await.is_empty());
    let log = app
        .admin_get(&format!("/api/v1/audit-events?targetId={lamp}"))
        .await;
    assert_eq!(
        log.json["items"].as_array().unwrap().len(),
        1,
        "only the creation"
    );
    // All of it may go.
    let all = adjust(&app, &lamp, json!({"delta": -4, "reason": "lost"})).await;
    assert_eq!(all.json["stockAfter"], 0);
}

/// 100 adjustments (50 of +3, 50 of -1) race 100 orders of one unit on one
/// product, all started before any is awaited: the final stock is exact.
async fn adjustments_racing_orders_lose_no_update(app: TestApp) {
    const EACH: usize = 50;
    let lamp = id(&app.create_product("Lamp", 100, 1_000).await);
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..(2 * EACH) {
        let (a, l) = (app.clone(), lamp.clone());
        tasks.push(tokio::spawn(async move {
            let delta = if i % 2 == 0 { 3 } else { -1 };
            let answer = adjust(&a, &l, json!({"delta": delta, "reason": "correction"})).await;
            assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        }));
        let (a, l) = (app.clone(), lamp.clone());
        tasks.push(tokio::spawn(async move {
            let token = a.token(BUYER);
            let answer = a
                .send(a.caller(&token).place_order(&a.address, &l, 1))
                .await;
            assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let expected = 1_000 + 3 * EACH as i64 - EACH as i64 - 2 * EACH as i64;
    assert_eq!(app.stock(&lamp).await, expected);
    let moved = movements(&app, &lamp).await;
    assert_eq!(moved.len(), 2 * EACH);
}

async fn an_edit_changes_new_orders_only_and_is_audited_and_told(app: TestApp) {
    let lamp = id(&app.create_product("Lamp", 100, 10).await);
    let before = app.place_order(BUYER, &lamp, 2).await;
    let edited = edit(
        &app,
        &lamp,
        json!({"name": "Desk Lamp", "price": 150, "lowStockThreshold": 3}),
        None,
    )
    .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.body);
    assert_eq!(edited.json["name"], "Desk Lamp");
    assert_eq!(edited.json["price"], 150);
    assert_eq!(edited.json["lowStockThreshold"], 3);
    assert_eq!(edited.json["description"], "test product");
    // The order keeps the price it was placed at; a new one pays the new price.
    let old_order = app
        .as_user(BUYER)
        .get(&format!("/api/v1/orders/{}", before.order))
        .await;
    assert_eq!(old_order.json["items"][0]["unitPrice"], 100);
    let after = app.place_order(BUYER, &lamp, 1).await;
    assert_eq!(after.json["items"][0]["unitPrice"], 150);
    // The read shows it at once (the cache was told).
    assert_eq!(
        app.get(&format!("/api/v1/products/{lamp}")).await.json["name"],
        "Desk Lamp"
    );
    // Found under its new name.
    let found = app.get("/api/v1/products?q=desk").await;
    assert_eq!(found.json["items"][0]["productId"], lamp.as_str());

    // A patch that changes nothing records nothing; null clears the threshold.
    let same = edit(&app, &lamp, json!({"price": 150}), None).await;
    assert_eq!(same.status, StatusCode::OK);
    let cleared = edit(&app, &lamp, json!({"lowStockThreshold": null}), None).await;
    assert_eq!(cleared.json["lowStockThreshold"], Value::Null);

    let log = app
        .admin_get(&format!(
            "/api/v1/audit-events?targetId={lamp}&action=product.updated"
        ))
        .await;
    let entries = log.json["items"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{}", log.body);
    assert_eq!(
        entries[1]["before"],
        json!({"name": "Lamp", "price": 100, "lowStockThreshold": null})
    );
    assert_eq!(
        entries[1]["after"],
        json!({"name": "Desk Lamp", "price": 150, "lowStockThreshold": 3})
    );
    assert_eq!(entries[0]["before"], json!({"lowStockThreshold": 3}));
    assert_eq!(entries[0]["after"], json!({"lowStockThreshold": null}));
    let url = app.database_url.clone();
    let payloads: Vec<String> = shop_tests::rows(
        &url,
        "SELECT payload AS n FROM outbox_events WHERE event_type = 'product.updated' ORDER BY id",
    );
    assert_eq!(payloads.len(), 2);
    let first: Value = serde_json::from_str(&payloads[0]).unwrap();
    assert_eq!(first["changes"]["price"], json!({"from": 100, "to": 150}));
    assert_eq!(
        first["changes"]["name"],
        json!({"from": "Lamp", "to": "Desk Lamp"})
    );
}

async fn of_two_editors_with_one_etag_one_wins(app: TestApp) {
    let lamp = id(&app.create_product("Lamp", 100, 10).await);
    let read = app.get(&format!("/api/v1/products/{lamp}")).await;
    let tag = etag(&read);
    assert!(
        tag.starts_with('"') && tag.ends_with('"'),
        "a strong tag: {tag}"
    );
    // Unchanged: 304 for a client that holds it.
    let again = app
        .send(
            app.client
                .get(app.url(&format!("/api/v1/products/{lamp}")))
                .header("if-none-match", &tag),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);

    let app = Arc::new(app);
    let editors: Vec<_> = ["Red Lamp", "Blue Lamp"]
        .into_iter()
        .map(|name| {
            let (a, l, t) = (app.clone(), lamp.clone(), tag.clone());
            tokio::spawn(async move { edit(&a, &l, json!({"name": name}), Some(&t)).await })
        })
        .collect();
    let mut won = Vec::new();
    for editor in editors {
        let answer = editor.await.unwrap();
        match answer.status {
            StatusCode::OK => won.push(answer),
            _ => answer.assert_problem(StatusCode::PRECONDITION_FAILED, "precondition_failed"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one editor wins");
    let now = app.get(&format!("/api/v1/products/{lamp}")).await;
    assert_eq!(now.json["name"], won[0].json["name"]);
    assert_eq!(
        etag(&now),
        etag(&won[0]),
        "the answer's tag is the representation's"
    );
    assert_ne!(etag(&now), tag);
    // The old tag no longer matches: 200 with the new representation.
    let stale = app
        .send(
            app.client
                .get(app.url(&format!("/api/v1/products/{lamp}")))
                .header("if-none-match", &tag),
        )
        .await;
    assert_eq!(stale.status, StatusCode::OK);
    // A stock change is a change of the representation too.
    app.place_order(BUYER, &lamp, 1).await;
    edit(
        &app,
        &lamp,
        json!({"name": "Green Lamp"}),
        Some(&etag(&now)),
    )
    .await
    .assert_problem(StatusCode::PRECONDITION_FAILED, "precondition_failed");
    let log = app
        .admin_get(&format!(
            "/api/v1/audit-events?targetId={lamp}&action=product.updated"
        ))
        .await;
    assert_eq!(
        log.json["items"].as_array().unwrap().len(),
        1,
        "the refused edits recorded nothing"
    );
    // `*` matches any current representation.
    let any = edit(&app, &lamp, json!({"name": "Green Lamp"}), Some("*")).await;
    assert_eq!(any.status, StatusCode::OK, "{}", any.body);
}

async fn invalid_edits_name_each_field_and_change_nothing(app: TestApp) {
    let lamp = id(&app.create_product("Lamp", 100, 10).await);
    for (patch, fields) in [
        (json!({}), vec!["body"]),
        (json!({"name": null}), vec!["name"]),
        (
            json!({"price": 0, "currency": "yuan"}),
            vec!["currency", "price"],
        ),
        (json!({"stock": 3}), vec!["stock"]),
        (json!({"status": "archived"}), vec!["status"]),
        (json!({"colour": "red"}), vec!["colour"]),
        (json!({"lowStockThreshold": -1}), vec!["lowStockThreshold"]),
        (json!([1]), vec!["body"]),
    ] {
        let refused = edit(&app, &lamp, patch.clone(), None).await;
        refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        let mut named = refused.problem_fields();
        named.sort();
        assert_eq!(named, fields, "{patch}");
    }
    let plain = app
        .send(
            app.request_as(
                &app.admin_token,
                reqwest::Method::PATCH,
                &format!("/api/v1/products/{lamp}"),
            )
            .header("content-type", "text/plain")
            .body("{}"),
        )
        .await;
    assert_eq!(plain.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    edit(&app, "no-such-product", json!({"name": "X"}), None)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "product_not_found");
    let anonymous = app
        .send(
            app.client
                .patch(app.url(&format!("/api/v1/products/{lamp}")))
                .json(&json!({"name": "X"})),
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    // application/json is a merge patch too.
    let as_json = app
        .admin_send(
            reqwest::Method::PATCH,
            &format!("/api/v1/products/{lamp}"),
            &json!({"description": "warm"}),
        )
        .await;
    assert_eq!(as_json.json["description"], "warm");
    let product = app.get(&format!("/api/v1/products/{lamp}")).await;
    assert_eq!(
        (product.json["name"].clone(), product.json["price"].clone()),
        (json!("Lamp"), json!(100))
    );
}

/// `product.stock_low`: told once by whatever took the stock from at or
/// above the threshold to below it (an order, an adjustment, a set); a
/// product without a threshold tells nothing.
async fn a_fall_below_the_low_stock_threshold_is_told_once(app: TestApp) {
    let lamp = id(&app.create_product("Lamp", 100, 7).await);
    let plain = id(&app.create_product("Plain", 100, 7).await);
    edit(&app, &lamp, json!({"lowStockThreshold": 5}), None).await;
    let url = app.database_url.clone();
    let told = || {
        shop_tests::rows(
            &url,
            "SELECT payload AS n FROM outbox_events WHERE event_type = 'product.stock_low' ORDER BY id",
        )
        .into_iter()
        .map(|p| serde_json::from_str::<Value>(&p).unwrap())
        .collect::<Vec<_>>()
    };
    app.place_order(BUYER, &lamp, 2).await; // 7 -> 5: at the threshold, not below
    assert!(told().is_empty());
    app.place_order(BUYER, &lamp, 1).await; // 5 -> 4: below
    app.place_order(BUYER, &lamp, 1).await; // 4 -> 3: still below, quiet
    assert_eq!(
        told(),
        [json!({"productId": lamp, "stock": 4, "threshold": 5})]
    );
    adjust(&app, &lamp, json!({"delta": 10, "reason": "restock"})).await; // 13
    adjust(&app, &lamp, json!({"delta": -9, "reason": "damaged"})).await; // 4: a second fall
    app.admin_send(
        reqwest::Method::PUT,
        &format!("/api/v1/products/{lamp}/stock"),
        &json!({"newStock": 10}),
    )
    .await;
    app.admin_send(
        reqwest::Method::PUT,
        &format!("/api/v1/products/{lamp}/stock"),
        &json!({"newStock": 2}),
    )
    .await; // a third
    let stocks: Vec<i64> = told()
        .iter()
        .map(|e| e["stock"].as_i64().unwrap())
        .collect();
    assert_eq!(stocks, [4, 4, 2]);
    for _ in 0..7 {
        app.place_order(BUYER, &plain, 1).await;
    }
    assert_eq!(
        told().len(),
        3,
        "a product without a threshold tells nothing"
    );
}

//! The audit log: every staff write is recorded in the transaction of its
//! change (who, what, which target, what changed, the request), listed
//! newest first with filters and a cursor; a write that fails records nothing.

use shop_tests::{StatusCode, TestApp, Value, json, on_every_backend};

on_every_backend!(
    staff_writes_are_listed_newest_first_with_what_changed,
    the_log_filters_and_pages_to_its_end,
    a_refused_write_records_nothing,
    only_staff_read_the_log,
);

/// The audit log's entries, as the admin token lists them with `query`.
async fn entries(app: &TestApp, query: &str) -> (Vec<Value>, Option<String>) {
    let page = app.admin_get(&format!("/api/v1/audit-events{query}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let items = page.json["items"].as_array().cloned().unwrap_or_default();
    let next = page.json["nextCursor"].as_str().map(str::to_owned);
    (items, next)
}

async fn set_stock(app: &TestApp, product: &str, stock: i64) -> shop_tests::Response {
    app.admin_send(
        reqwest::Method::PUT,
        &format!("/api/v1/products/{product}/stock"),
        &json!({"newStock": stock}),
    )
    .await
}

async fn staff_writes_are_listed_newest_first_with_what_changed(app: TestApp) {
    let lamp = app.create_product("Desk Lamp", 12_900, 25).await;
    let id = lamp["productId"].as_str().unwrap();
    let set = set_stock(&app, id, 40).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let request_id = set.headers["x-request-id"].to_str().unwrap().to_owned();
    let alias = app
        .admin_send(
            reqwest::Method::POST,
            "/updateProductStock",
            &json!({"productId": id, "newStock": 38}),
        )
        .await;
    assert_eq!(alias.status, StatusCode::OK, "{}", alias.body);

    let (items, next) = entries(&app, "").await;
    assert_eq!(next, None);
    let actions: Vec<&str> = items
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["product.stock_set", "product.stock_set", "product.created"],
        "newest first"
    );
    for entry in &items {
        assert_eq!(entry["actor"], "admin-token");
        assert_eq!(entry["targetType"], "product");
        assert_eq!(entry["targetId"], id);
        assert!(entry["occurredAt"].as_str().is_some(), "{entry}");
    }
    assert_eq!(items[2]["before"], Value::Null);
    assert_eq!(
        items[2]["after"],
        json!({"name": "Desk Lamp", "description": "test product", "price": 12_900, "currency": "CNY", "stock": 25})
    );
    assert_eq!(items[1]["before"], json!({"stock": 25}));
    assert_eq!(items[1]["after"], json!({"stock": 40}));
    assert_eq!(items[1]["requestId"], request_id.as_str());
    assert_eq!(items[0]["before"], json!({"stock": 40}));
    assert_eq!(items[0]["after"], json!({"stock": 38}));
}

async fn the_log_filters_and_pages_to_its_end(app: TestApp) {
    let a = app.create_product("A", 100, 1).await;
    let a = a["productId"].as_str().unwrap().to_owned();
    let b = app.create_product("B", 100, 1).await;
    let b = b["productId"].as_str().unwrap().to_owned();
    for stock in 2..=6 {
        assert_eq!(set_stock(&app, &a, stock).await.status, StatusCode::OK);
    }
    // By target: A's creation and its five stock changes, newest first, two a page.
    let mut seen = Vec::new();
    let mut query = format!("?targetId={a}&limit=2");
    loop {
        let (items, next) = entries(&app, &query).await;
        assert!(items.len() <= 2);
        seen.extend(items);
        match next {
            Some(cursor) => query = format!("?targetId={a}&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let stocks: Vec<Value> = seen.iter().map(|e| e["after"]["stock"].clone()).collect();
    assert_eq!(
        stocks,
        [json!(6), json!(5), json!(4), json!(3), json!(2), json!(1)]
    );
    let ids: std::collections::BTreeSet<&str> = seen
        .iter()
        .map(|e| e["auditEventId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 6, "no entry twice across pages");
    // By action, and by actor.
    let (created, _) = entries(&app, "?action=product.created").await;
    let targets: Vec<&str> = created
        .iter()
        .map(|e| e["targetId"].as_str().unwrap())
        .collect();
    assert_eq!(targets, [b.as_str(), a.as_str()]);
    let (mine, _) = entries(&app, "?actor=admin-token&limit=100").await;
    assert_eq!(mine.len(), 7);
    let (nobody, _) = entries(&app, "?actor=someone-else").await;
    assert!(nobody.is_empty());
    // Filters that cannot name anything are refused, naming the parameter.
    for (query, field) in [
        ("?action=product", "action"),
        ("?action=Product.created", "action"),
        (&format!("?actor={}", "x".repeat(256)) as &str, "actor"),
        ("?limit=0", "limit"),
    ] {
        let refused = app.admin_get(&format!("/api/v1/audit-events{query}")).await;
        refused.assert_problem(StatusCode::BAD_REQUEST, "invalid_query");
        assert_eq!(refused.problem_fields(), [field], "{query}");
    }
}

async fn a_refused_write_records_nothing(app: TestApp) {
    let lamp = app.create_product("Lamp", 100, 5).await;
    let id = lamp["productId"].as_str().unwrap();
    // Out of range, an unknown product, an invalid product: nothing changes, nothing is recorded.
    assert_eq!(
        set_stock(&app, id, -1).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        set_stock(&app, "no-such-product", 3).await.status,
        StatusCode::NOT_FOUND
    );
    let invalid = app
        .admin_send(
            reqwest::Method::POST,
            "/api/v1/products",
            &json!({"name": "", "price": 0, "currency": "CNY", "stock": 1}),
        )
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    let (items, _) = entries(&app, "").await;
    let actions: Vec<&str> = items
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["product.created"]);
    assert_eq!(app.stock(id).await, 5);
}

async fn only_staff_read_the_log(app: TestApp) {
    let anonymous = app.get("/api/v1/audit-events").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let customer = app.as_user("user-1").get("/api/v1/audit-events").await;
    customer.assert_problem(StatusCode::FORBIDDEN, "staff_only");
}

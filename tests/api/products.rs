//! Every product route, on SQLite and PostgreSQL, with its bad-input cases.

use reqwest::Method;
use shop_tests::{StatusCode, TestApp, Value, json, on_every_backend};

on_every_backend!(
    create_then_get_and_list,
    admin_routes_refuse_missing_or_wrong_tokens,
    invalid_fields_are_named_and_change_nothing,
    malformed_bodies_are_problems,
    unknown_products_are_404_whatever_the_id,
    stock_updates_are_absolute_and_validated,
    listing_pages_through_the_catalog_in_a_stable_order,
    bad_list_queries_are_400,
    original_spec_aliases_follow_the_same_rules,
    concurrent_stock_writes_all_succeed,
);

async fn create_then_get_and_list(app: TestApp) {
    let body = json!({"name": "iPhone 15", "description": "128 GB", "price": 999900, "currency": "CNY", "stock": 100});
    let created = app
        .admin_send(Method::POST, "/api/v1/products", &body)
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let product = &created.json;
    let id = product["productId"].as_str().expect("productId");
    assert_eq!(
        created.headers["location"],
        format!("/api/v1/products/{id}").as_str()
    );
    assert_eq!(product["name"], "iPhone 15");
    assert_eq!(product["description"], "128 GB");
    assert_eq!(product["price"], 999900);
    assert_eq!(product["currency"], "CNY");
    assert_eq!(product["stock"], 100);
    assert!(
        product["createdAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(product["createdAt"], product["updatedAt"]);

    let fetched = app.get(&format!("/api/v1/products/{id}")).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(&fetched.json, product, "what was written is what is read");

    let listed = app.get("/api/v1/products").await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.json["items"], json!([product]));
    assert!(listed.json.get("nextCursor").is_none());
}

async fn admin_routes_refuse_missing_or_wrong_tokens(app: TestApp) {
    let body = json!({"name": "Pen", "price": 100, "currency": "CNY", "stock": 1});
    let anonymous = app
        .send(app.client.post(app.url("/api/v1/products")).json(&body))
        .await;
    anonymous.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(
        anonymous.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );

    let wrong = app
        .send(
            app.client
                .post(app.url("/api/v1/products"))
                .bearer_auth("nope")
                .json(&body),
        )
        .await;
    wrong.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    let basic = app
        .send(
            app.client
                .post(app.url("/api/v1/products"))
                .basic_auth("admin", Some(&app.admin_token))
                .json(&body),
        )
        .await;
    basic.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");

    // Even a malformed body gets 401, not 400: authorisation comes first.
    let garbage = app
        .send(
            app.client
                .post(app.url("/api/v1/products"))
                .body("{")
                .header("content-type", "application/json"),
        )
        .await;
    garbage.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");

    let product = app.create_product("Pen", 100, 5).await;
    let id = product["productId"].as_str().unwrap();
    let stock = app
        .send(
            app.client
                .put(app.url(&format!("/api/v1/products/{id}/stock")))
                .json(&json!({"newStock": 0})),
        )
        .await;
    stock.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    let alias = app
        .send(
            app.client
                .post(app.url("/updateProductStock"))
                .json(&json!({"productId": id, "newStock": 0})),
        )
        .await;
    alias.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");

    let listed = app.get("/api/v1/products").await;
    assert_eq!(
        listed.json["items"].as_array().unwrap().len(),
        1,
        "nothing was created by refused requests"
    );
    assert_eq!(
        listed.json["items"][0]["stock"], 5,
        "nothing was changed by refused requests"
    );
}

async fn invalid_fields_are_named_and_change_nothing(app: TestApp) {
    let cases = [
        (
            json!({"name": "", "price": 1, "currency": "CNY", "stock": 1}),
            vec!["name"],
        ),
        (
            json!({"name": "   ", "price": 1, "currency": "CNY", "stock": 1}),
            vec!["name"],
        ),
        (
            json!({"name": "x".repeat(201), "price": 1, "currency": "CNY", "stock": 1}),
            vec!["name"],
        ),
        (
            json!({"name": "a\u{0}b", "price": 1, "currency": "CNY", "stock": 1}),
            vec!["name"],
        ),
        (
            json!({"name": "ok", "description": "a\u{0}", "price": 1, "currency": "CNY", "stock": 1}),
            vec!["description"],
        ),
        (
            json!({"name": "ok", "description": "d".repeat(2001), "price": 1, "currency": "CNY", "stock": 1}),
            vec!["description"],
        ),
        (
            json!({"name": "ok", "price": -1, "currency": "CNY", "stock": 1}),
            vec!["price"],
        ),
        // No provider takes a payment of nothing: a price is at least 1.
        (
            json!({"name": "ok", "price": 0, "currency": "CNY", "stock": 1}),
            vec!["price"],
        ),
        (
            json!({"name": "ok", "price": 10_000_000_001_i64, "currency": "CNY", "stock": 1}),
            vec!["price"],
        ),
        (
            json!({"name": "ok", "price": 1, "currency": "cny", "stock": 1}),
            vec!["currency"],
        ),
        (
            json!({"name": "ok", "price": 1, "currency": "CNY", "stock": -1}),
            vec!["stock"],
        ),
        (
            json!({"name": "ok", "price": 1, "currency": "CNY", "stock": 1_000_000_001}),
            vec!["stock"],
        ),
        (
            json!({"name": "", "price": -5, "currency": "yuan", "stock": -1}),
            vec!["name", "currency", "price", "stock"],
        ),
    ];
    for (body, fields) in cases {
        let response = app
            .admin_send(Method::POST, "/api/v1/products", &body)
            .await;
        response.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(response.problem_fields(), fields, "{body}");
    }
    let listed = app.get("/api/v1/products").await;
    assert_eq!(
        listed.json["items"],
        json!([]),
        "no rejected product was stored"
    );
}

async fn malformed_bodies_are_problems(app: TestApp) {
    let post = |body: &'static str, content_type: &'static str| {
        app.client
            .post(app.url("/api/v1/products"))
            .bearer_auth(&app.admin_token)
            .header("content-type", content_type)
            .body(body)
    };
    app.send(post("{\"name\": ", "application/json"))
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "malformed_json");
    app.send(post("not json", "application/json"))
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "malformed_json");
    app.send(post("", "application/json"))
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "malformed_json");

    let wrong_type = app
        .send(post(
            r#"{"name": "ok", "price": "cheap", "currency": "CNY", "stock": 1}"#,
            "application/json",
        ))
        .await;
    wrong_type.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(wrong_type.problem_fields(), ["price"]);
    let fraction = app
        .send(post(
            r#"{"name": "ok", "price": 1.5, "currency": "CNY", "stock": 1}"#,
            "application/json",
        ))
        .await;
    assert_eq!(fraction.problem_fields(), ["price"]);
    let huge = app
        .send(post(
            r#"{"name": "ok", "price": 1, "currency": "CNY", "stock": 99999999999999999999999}"#,
            "application/json",
        ))
        .await;
    assert_eq!(huge.problem_fields(), ["stock"]);
    let missing = app
        .send(post(
            r#"{"name": "ok", "currency": "CNY", "stock": 1}"#,
            "application/json",
        ))
        .await;
    missing.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(missing.problem_fields(), ["price"]);
    let null = app
        .send(post(
            r#"{"name": null, "price": 1, "currency": "CNY", "stock": 1}"#,
            "application/json",
        ))
        .await;
    assert_eq!(null.problem_fields(), ["name"]);
    let array = app.send(post("[]", "application/json")).await;
    array.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");

    app.send(post(
        r#"{"name": "ok", "price": 1, "currency": "CNY", "stock": 1}"#,
        "text/plain",
    ))
    .await
    .assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let no_type = app
        .client
        .post(app.url("/api/v1/products"))
        .bearer_auth(&app.admin_token)
        .body("{}");
    app.send(no_type)
        .await
        .assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");

    let big = format!(
        r#"{{"name": "ok", "description": "{}", "price": 1, "currency": "CNY", "stock": 1}}"#,
        "x".repeat(200_000)
    );
    let too_large = app
        .client
        .post(app.url("/api/v1/products"))
        .bearer_auth(&app.admin_token)
        .header("content-type", "application/json")
        .body(big);
    app.send(too_large)
        .await
        .assert_problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    assert_eq!(app.get("/api/v1/products").await.json["items"], json!([]));
}

async fn unknown_products_are_404_whatever_the_id(app: TestApp) {
    for id in [
        "00000000-0000-0000-0000-000000000000",
        "nope",
        "%00",
        "a%2Fb",
        "%E2%9C%93",
        &"9".repeat(500),
        "1",
    ] {
        let response = app.get(&format!("/api/v1/products/{id}")).await;
        response.assert_problem(StatusCode::NOT_FOUND, "product_not_found");
        let stock = app
            .admin_send(
                Method::PUT,
                &format!("/api/v1/products/{id}/stock"),
                &json!({"newStock": 1}),
            )
            .await;
        stock.assert_problem(StatusCode::NOT_FOUND, "product_not_found");
    }
    // Details are written for API users, not in Rust's debug notation.
    let detail = app.get("/api/v1/products/nope").await.json["detail"].clone();
    assert_eq!(detail, "No product has the id \"nope\".");
}

async fn stock_updates_are_absolute_and_validated(app: TestApp) {
    let product = app.create_product("Lamp", 5000, 10).await;
    let id = product["productId"].as_str().unwrap();
    let path = format!("/api/v1/products/{id}/stock");

    let updated = app
        .admin_send(Method::PUT, &path, &json!({"newStock": 3}))
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.json["stock"], 3);
    assert_eq!(updated.json["createdAt"], product["createdAt"]);
    assert_ne!(updated.json["updatedAt"], product["updatedAt"]);
    let again = app
        .admin_send(Method::PUT, &path, &json!({"newStock": 3}))
        .await;
    assert_eq!(again.json["stock"], 3, "absolute, not a delta");

    for bad in [
        json!({"newStock": -1}),
        json!({"newStock": 1_000_000_001}),
        json!({"newStock": "7"}),
        json!({"newStock": 2.5}),
        json!({}),
    ] {
        let response = app.admin_send(Method::PUT, &path, &bad).await;
        response.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(response.problem_fields(), ["newStock"], "{bad}");
    }
    assert_eq!(
        app.get(&format!("/api/v1/products/{id}")).await.json["stock"],
        3,
        "rejected updates changed nothing"
    );
    let float_spelling = app
        .admin_send(Method::PUT, &path, &json!({"newStock": 4.0}))
        .await;
    assert_eq!(
        float_spelling.json["stock"], 4,
        "4.0 is the integer 4 in JSON Schema"
    );
    let zero = app
        .admin_send(Method::PUT, &path, &json!({"newStock": 0}))
        .await;
    assert_eq!(zero.json["stock"], 0);
}

async fn listing_pages_through_the_catalog_in_a_stable_order(app: TestApp) {
    let mut created = Vec::new();
    for i in 0..5 {
        created
            .push(app.create_product(&format!("Item {i}"), 100 + i, 1).await["productId"].clone());
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/products?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = app.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        pages += 1;
        let items = page.json["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|p| p["productId"].clone()));
        match page.json["nextCursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/products?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created, "every product once, oldest first");
    let all = app.get("/api/v1/products?limit=100").await;
    assert_eq!(all.json["items"].as_array().unwrap().len(), 5);
}

async fn bad_list_queries_are_400(app: TestApp) {
    for query in [
        "limit=0",
        "limit=101",
        "limit=abc",
        "limit=-1",
        "cursor=",
        "cursor=%00",
        "cursor=a%20b",
        &format!("cursor={}", "a".repeat(65)),
    ] {
        let response = app.get(&format!("/api/v1/products?{query}")).await;
        response.assert_problem(StatusCode::BAD_REQUEST, "invalid_query");
        assert!(
            !response.problem_fields().is_empty(),
            "{query}: {}",
            response.body
        );
    }
}

async fn original_spec_aliases_follow_the_same_rules(app: TestApp) {
    let product = app.create_product("iPhone 15", 999900, 100).await;
    let id = product["productId"].as_str().unwrap();

    let info = app.get(&format!("/getProductInfo?productId={id}")).await;
    assert_eq!(info.status, StatusCode::OK);
    assert_eq!(info.json, product);
    app.get("/getProductInfo?productId=missing")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "product_not_found");
    let no_param = app.get("/getProductInfo").await;
    no_param.assert_problem(StatusCode::BAD_REQUEST, "invalid_query");
    assert_eq!(no_param.problem_fields(), ["productId"]);

    let updated = app
        .admin_send(
            Method::POST,
            "/updateProductStock",
            &json!({"productId": id, "newStock": 42}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.json["stock"], 42);
    let negative = app
        .admin_send(
            Method::POST,
            "/updateProductStock",
            &json!({"productId": id, "newStock": -3}),
        )
        .await;
    negative.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let unknown = app
        .admin_send(
            Method::POST,
            "/updateProductStock",
            &json!({"productId": "nope", "newStock": 1}),
        )
        .await;
    unknown.assert_problem(StatusCode::NOT_FOUND, "product_not_found");
    let missing = app
        .admin_send(Method::POST, "/updateProductStock", &json!({"newStock": 1}))
        .await;
    assert_eq!(missing.problem_fields(), ["productId"]);
    assert_eq!(
        app.get(&format!("/api/v1/products/{id}")).await.json["stock"],
        42
    );
}

/// Many writers at once: on SQLite this fails with "database is locked" unless
/// every write transaction takes the lock up front and waits its turn. All 64
/// writers are spawned, and wait at a barrier, before any is awaited, so their
/// requests overlap; each sets a stock no other sets, so the final stock names
/// the writer whose write committed last, and the product must read exactly
/// as that writer's answer showed it.
async fn concurrent_stock_writes_all_succeed(app: TestApp) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const WRITERS: usize = 64;
    let product = app.create_product("Busy", 100, 0).await;
    let id = product["productId"].as_str().unwrap().to_owned();
    let app = std::sync::Arc::new(app);
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(WRITERS));
    let in_flight = std::sync::Arc::new(AtomicUsize::new(0));
    let most_in_flight = std::sync::Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (1..=WRITERS as i64)
        .map(|n| {
            let (app, id) = (app.clone(), id.clone());
            let (start, in_flight, most) =
                (start.clone(), in_flight.clone(), most_in_flight.clone());
            tokio::spawn(async move {
                start.wait().await;
                most.fetch_max(in_flight.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                let set = app
                    .admin_send(
                        Method::PUT,
                        &format!("/api/v1/products/{id}/stock"),
                        &json!({"newStock": n}),
                    )
                    .await;
                let created = app
                    .admin_send(
                        Method::POST,
                        "/api/v1/products",
                        &json!({"name": format!("P{n}"), "price": n, "currency": "CNY", "stock": n}),
                    )
                    .await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                (n, set, created)
            })
        })
        .collect();
    let mut answers = std::collections::HashMap::new();
    for writer in writers {
        let (n, set, created) = writer.await.unwrap();
        assert_eq!(set.status, StatusCode::OK, "writer {n}: {}", set.body);
        assert_eq!(set.json["stock"], n, "writer {n} reads back its own write");
        assert_eq!(
            created.status,
            StatusCode::CREATED,
            "writer {n}: {}",
            created.body
        );
        assert_eq!(
            (&created.json["name"], &created.json["stock"]),
            (&json!(format!("P{n}")), &json!(n))
        );
        answers.insert(n, set.json);
    }
    let most = most_in_flight.load(Ordering::SeqCst);
    assert!(most > 1, "the writers overlapped (at most {most} at once)");

    let last = app.get(&format!("/api/v1/products/{id}")).await.json;
    let n = last["stock"].as_i64().unwrap();
    assert_eq!(
        answers.get(&n),
        Some(&last),
        "the product reads exactly as the last committed write (stock {n}) answered"
    );
    let all: Value = app.get("/api/v1/products?limit=100").await.json;
    let mut created: Vec<(String, i64)> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["productId"] != id.as_str())
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["stock"].as_i64().unwrap(),
            )
        })
        .collect();
    created.sort_by_key(|(_, stock)| *stock);
    let expected: Vec<(String, i64)> = (1..=WRITERS as i64).map(|n| (format!("P{n}"), n)).collect();
    assert_eq!(created, expected, "every product created once, none lost");
}

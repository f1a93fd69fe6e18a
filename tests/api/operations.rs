//! Routes every deployment relies on: health, the API document, Swagger UI, and the error fallbacks.

use shop_tests::{StatusCode, TestApp, on_every_backend};

on_every_backend!(
    health_checks_answer,
    the_api_document_and_swagger_ui_are_served,
    unknown_routes_are_404_and_wrong_methods_405,
);

async fn health_checks_answer(app: TestApp) {
    let live = app.get("/health/live").await;
    assert_eq!(
        (live.status, live.json["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let ready = app.get("/health/ready").await;
    assert_eq!(
        (ready.status, ready.json["status"].as_str()),
        (StatusCode::OK, Some("ready"))
    );
}

async fn the_api_document_and_swagger_ui_are_served(app: TestApp) {
    let doc = app.get("/api-docs/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.json["openapi"], "3.1.0");
    assert!(
        doc.json == shop::api::document(),
        "the served document is the generated one"
    );
    assert!(doc.body.contains("\"links\""), "with its links");

    let ui = app.get("/swagger-ui/").await;
    assert_eq!(ui.status, StatusCode::OK);
    assert!(ui.content_type().starts_with("text/html"));
    assert!(ui.body.contains("swagger-ui"));
    let bundle = app.get("/swagger-ui/swagger-ui-bundle.js").await;
    assert_eq!(
        bundle.status,
        StatusCode::OK,
        "the UI is vendored into the binary"
    );
    let redirect = app.get("/swagger-ui").await;
    assert!(redirect.status.is_redirection());
}

async fn unknown_routes_are_404_and_wrong_methods_405(app: TestApp) {
    app.get("/nowhere")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not_found");
    app.get("/api/v1/nowhere")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not_found");
    let delete = app
        .send(app.client.delete(app.url("/api/v1/products")))
        .await;
    delete.assert_problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let allow = delete.headers["allow"].to_str().unwrap();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let delete_one = app
        .send(app.client.delete(app.url("/api/v1/products/some-id")))
        .await;
    delete_one.assert_problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(delete_one.headers["allow"], "GET, HEAD, PATCH");
}

//! Reservations whose order never arrived are given back; a reservation whose
//! order exists is kept however late that order's events are (a broker
//! backlog in split mode, a dispatcher that is not running), so that its
//! stock is never sold twice.

use diesel::RunQueryDsl;
use domain_product::service::AbandonedReservations;
use shop_tests::{Backend, StatusCode, TestApp, count, eventually, json};

const TOKEN: &str = "test-service-token-reservations-01";

/// The status of the reservation `id`.
fn status_of(app: &TestApp, id: &str) -> i64 {
    count(
        &app.database_url,
        &format!(
            "SELECT COUNT(*) AS n FROM stock_reservations WHERE id = '{id}' AND status = 'held'"
        ),
    )
}

async fn a_held_reservation_is_released_only_when_its_order_does_not_exist(backend: Backend) {
    // No background work: the order's `OrderPlaced` is never delivered, so its
    // reservation stays held, as in a product service cut off from the broker.
    let app = TestApp::spawn_with(
        backend,
        &[
            ("SHOP__WORKER__ENABLED", "false"),
            ("SHOP__WORKER__ABANDONED_RESERVATION_GRACE_SECS", "0"),
            ("SHOP__PORTS__TOKEN", TOKEN),
        ],
    )
    .await;
    let product = app.create_product("lamp", 100, 5).await["productId"]
        .as_str()
        .expect("id")
        .to_owned();
    let placed = app.place_order("alice", &product, 2).await;
    // A reservation whose order never came (its caller died between the two).
    let hold = (chrono::Utc::now() + chrono::Duration::minutes(15)).to_rfc3339();
    let orphan = app
        .send(
            app.client
                .put(app.url("/internal/v1/inventory/reservations/orphan-1"))
                .bearer_auth(TOKEN)
                .json(
                    &json!({"lines": [{"productId": product, "quantity": 1}], "holdUntil": hold}),
                ),
        )
        .await;
    assert_eq!(orphan.status, StatusCode::OK, "{}", orphan.body);
    assert_eq!(app.stock(&product).await, 2);
    assert_eq!(
        status_of(&app, &placed.order),
        1,
        "the order's reservation is held"
    );
    // Both holds ended long ago.
    {
        let mut conn = app.modules.db.get_blocking().expect("connection");
        diesel::sql_query("UPDATE stock_reservations SET hold_until = '2000-01-01 00:00:00'")
            .execute(&mut *conn)
            .expect("update");
    }

    let abandoned = app
        .modules
        .facade::<AbandonedReservations>()
        .expect("the product context's job");
    assert_eq!(
        abandoned.release().await.expect("release"),
        1,
        "the orphan only"
    );
    assert_eq!(status_of(&app, &placed.order), 1, "kept: its order exists");
    assert_eq!(status_of(&app, "orphan-1"), 0, "released");
    // The stock as readers see it: the release wrote the database, and the
    // product cache hears of it within moments (every instance's does).
    let stock_is = |units: i64| {
        let app = &app;
        let product = product.clone();
        move || {
            let product = product.clone();
            async move { app.stock(&product).await == units }
        }
    };
    eventually("the orphan's unit is back, the order's is not", stock_is(3)).await;
    // Asked again, nothing more is released.
    assert_eq!(abandoned.release().await.expect("release"), 0);
    assert_eq!(status_of(&app, &placed.order), 1, "still kept");
    assert_eq!(
        count(
            &app.database_url,
            &format!(
                "SELECT CAST(COALESCE(SUM(stock), 0) AS BIGINT) AS n FROM products WHERE id = '{product}'"
            ),
        ),
        3,
        "the stock stored"
    );
}

shop_tests::on_each_backend!(a_held_reservation_is_released_only_when_its_order_does_not_exist);

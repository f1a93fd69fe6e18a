//! Several instances of shop on one database, each running the background
//! work: every event is handled once per subscriber, every order expires once.

use shop_tests::{Backend, StatusCode, TestApp, TestDatabase, count, eventually, json};

async fn two_instances_share_the_work_without_doing_it_twice(backend: Backend) {
    let Some(database) = TestDatabase::create(backend) else {
        return;
    };
    let settings = [
        ("SHOP__ORDER__PAYMENT_TIMEOUT_SECS", "1"),
        ("SHOP__ORDER__EXPIRY_SWEEP_MS", "20"),
        ("SHOP__WORKER__POLL_MS", "20"),
    ];
    let first = TestApp::spawn_on(&database, backend, &settings).await;
    let second = TestApp::spawn_on(&database, backend, &settings).await;
    let product = first.create_product("Shared", 100, 100).await["productId"]
        .as_str()
        .unwrap()
        .to_owned();
    let instances = [&first, &second];
    let mut cancelled_by_user = 0;
    for i in 0..40 {
        let app = instances[i % 2];
        let body = json!({"userId": format!("multi-{i}"), "items": [{"productId": product, "quantity": 2}]});
        let order = app.post_json("/api/v1/orders", &body).await;
        assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
        if i % 4 == 0 {
            let id = order.json["orderId"].as_str().unwrap();
            // Cancelled through the other instance.
            let other = instances[(i + 1) % 2];
            assert_eq!(
                other
                    .send(
                        other
                            .client
                            .post(other.url(&format!("/api/v1/orders/{id}/cancel")))
                    )
                    .await
                    .status,
                StatusCode::OK
            );
            cancelled_by_user += 1;
        }
    }
    let url = database.url();
    eventually("every order is cancelled", || async {
        count(
            &url,
            "SELECT COUNT(*) AS n FROM orders WHERE status <> 'cancelled'",
        ) == 0
    })
    .await;
    eventually("every delivery is handled", || async {
        count(
            &url,
            "SELECT COUNT(*) AS n FROM event_deliveries WHERE handled_at IS NULL",
        ) == 0
    })
    .await;
    eventually("all stock is back", || async {
        first.stock(&product).await == 100
    })
    .await;
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) AS n FROM outbox_events WHERE event_type = 'order.cancelled'"
        ),
        40,
        "one cancellation each"
    );
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) AS n FROM orders WHERE cancel_reason = 'expired'"
        ),
        40 - cancelled_by_user,
        "expired once each, whichever instance swept"
    );
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) AS n FROM event_deliveries WHERE attempts <> 1"
        ),
        0,
        "each delivery handled once"
    );
    assert_eq!(second.stock(&product).await, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    two_instances_share_the_work_without_doing_it_twice(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    two_instances_share_the_work_without_doing_it_twice(Backend::Postgres).await;
}

/// The outbox keeps what is pending and forgets what every subscriber handled.
async fn the_outbox_prunes_delivered_events_only(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, &[("SHOP__WORKER__ENABLED", "false")]).await
    else {
        return;
    };
    let product = app.create_product("Pruned", 100, 10).await["productId"]
        .as_str()
        .unwrap()
        .to_owned();
    let order = json!({"userId": "pruner", "items": [{"productId": product, "quantity": 1}]});
    assert_eq!(
        app.post_json("/api/v1/orders", &order).await.status,
        StatusCode::CREATED
    );
    let url = app.database_url.clone();
    let events = "SELECT COUNT(*) AS n FROM outbox_events";
    assert_eq!(
        app.modules
            .dispatcher
            .prune(std::time::Duration::ZERO)
            .await
            .unwrap(),
        0,
        "pending: kept"
    );
    assert_eq!(count(&url, events), 1);
    assert_eq!(app.modules.dispatcher.drain().await.unwrap(), 1);
    let week = std::time::Duration::from_secs(7 * 24 * 3600);
    assert_eq!(
        app.modules.dispatcher.prune(week).await.unwrap(),
        0,
        "handled but recent: kept"
    );
    assert_eq!(
        app.modules
            .dispatcher
            .prune(std::time::Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    assert_eq!(count(&url, events), 0);
    assert_eq!(count(&url, "SELECT COUNT(*) AS n FROM event_deliveries"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_sqlite() {
    the_outbox_prunes_delivered_events_only(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_postgres() {
    the_outbox_prunes_delivered_events_only(Backend::Postgres).await;
}

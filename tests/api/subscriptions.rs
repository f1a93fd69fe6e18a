//! Event routing is decided by the consumers: a process writes deliveries for
//! every subscription recorded in the database (not only its own), claims only
//! the deliveries of the subscribers it runs, and a retired subscriber gets
//! nothing more.

use std::sync::Arc;

use shared_kernel::messaging::outbox::{DispatchOptions, Dispatcher, EventBusBuilder, Outbox};
use shared_kernel::model::events::IntegrationEvent;
use shared_kernel::storage::db::{Db, DbError};
use shop_tests::events::{Pinged, Recorder};
use shop_tests::{Backend, TestDatabase, count};

/// A process's bus with one subscriber, `name`, to `test.pinged`.
fn bus(db: &Db, name: &'static str) -> (Outbox, Dispatcher, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let outbox = Outbox::new();
    let dispatcher = EventBusBuilder::default()
        .subscribe(name, &[Pinged::TYPE], recorder.clone())
        .build(db.clone(), DispatchOptions::default(), &outbox);
    (outbox, dispatcher, recorder)
}

async fn publish(db: &Db, outbox: &Outbox, n: u32) {
    let outbox = outbox.clone();
    db.write(move |conn| outbox.publish(conn, &Pinged { n }).map_err(DbError::from))
        .await
        .expect("published");
}

async fn deliveries_are_routed_by_the_subscribers_consumers_record(backend: Backend) {
    let database = TestDatabase::create(backend);
    let url = database.url();
    let db = database.open_migrated();
    let pending = |subscriber: &str| {
        count(
            &url,
            &format!(
                "SELECT COUNT(*) AS n FROM event_deliveries \
                 WHERE subscriber = '{subscriber}' AND handled_at IS NULL"
            ),
        )
    };

    // Process A runs test.a; process B (another context, or a newer version) runs test.b.
    let (outbox_a, dispatcher_a, seen_a) = bus(&db, "test.a");
    let (_outbox_b, dispatcher_b, seen_b) = bus(&db, "test.b");
    assert_eq!(
        dispatcher_a
            .register(&mut db.get_blocking().expect("conn"))
            .expect("register"),
        1
    );
    publish(&db, &outbox_a, 1).await;
    assert_eq!(pending("test.b"), 0, "no subscription to test.b yet");

    // B records its subscription; A, which knows nothing of test.b, now writes its deliveries.
    assert_eq!(
        dispatcher_b
            .register(&mut db.get_blocking().expect("conn"))
            .expect("register"),
        1
    );
    assert_eq!(
        dispatcher_b
            .register(&mut db.get_blocking().expect("conn"))
            .expect("register"),
        0,
        "recording again changes nothing"
    );
    publish(&db, &outbox_a, 2).await;
    assert_eq!(pending("test.a"), 2);
    assert_eq!(pending("test.b"), 1);

    // A delivers its own and leaves B's alone: not claimed, not failed.
    assert_eq!(dispatcher_a.drain().await.expect("drain a"), 2);
    assert_eq!(seen_a.seen(), [1, 2]);
    assert_eq!(pending("test.b"), 1);
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) AS n FROM event_deliveries \
             WHERE subscriber = 'test.b' AND (attempts > 0 OR last_error IS NOT NULL)"
        ),
        0,
        "process A never attempted test.b's delivery"
    );
    assert_eq!(dispatcher_b.drain().await.expect("drain b"), 1);
    assert_eq!(seen_b.seen(), [2]);

    // Retired: its pending delivery is dropped and nothing more is written for it.
    publish(&db, &outbox_a, 3).await;
    assert_eq!(pending("test.b"), 1);
    let dropped = shared_kernel::messaging::outbox::unsubscribe(
        &mut db.get_blocking().expect("conn"),
        "test.b",
    )
    .expect("unsubscribe");
    assert_eq!(dropped, 1);
    publish(&db, &outbox_a, 4).await;
    assert_eq!(pending("test.b"), 0);
    assert_eq!(dispatcher_a.drain().await.expect("drain a"), 2);
    assert_eq!(seen_a.seen(), [1, 2, 3, 4]);
    assert_eq!(dispatcher_b.drain().await.expect("drain b"), 0);
    assert_eq!(seen_b.seen(), [2]);
}

shop_tests::on_each_backend!(deliveries_are_routed_by_the_subscribers_consumers_record);

-- Shared kernel: who consumes which event type. Each process records, when it
-- starts, the subscribers it runs and the event types they take; publishing
-- writes one delivery row per subscription found here (in the publishing
-- transaction), so routing is decided by the consumers, not by whichever
-- process published: a subscriber that only another process (or a newer
-- version) runs still gets its deliveries, and a process claims only the
-- deliveries of the subscribers it runs. `shop events unsubscribe` retires one.
CREATE TABLE event_subscriptions (
    event_type    TEXT      NOT NULL,
    subscriber    TEXT      NOT NULL,
    registered_at TIMESTAMP NOT NULL,   -- UTC
    PRIMARY KEY (event_type, subscriber)
);

-- Subscribers known from the deliveries already written, so that events
-- published between this migration and the subscribers' first start still
-- reach them.
INSERT INTO event_subscriptions (event_type, subscriber, registered_at)
    SELECT DISTINCT e.event_type, d.subscriber, now() AT TIME ZONE 'UTC'
    FROM event_deliveries d JOIN outbox_events e ON e.id = d.event_id;

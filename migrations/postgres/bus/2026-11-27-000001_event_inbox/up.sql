-- Shared kernel: the events a subscriber took from the message broker
-- (SHOP__BUS__KIND=rabbitmq). A row is written in the transaction that applies
-- the event, so a message the broker delivers again (after a crash between the
-- commit and the acknowledgement, or to another consumer) is recognised and
-- acknowledged without being applied twice. Pruned with the outbox.
CREATE TABLE event_inbox (
    event_id   TEXT      NOT NULL,
    subscriber TEXT      NOT NULL,
    handled_at TIMESTAMP NOT NULL,   -- UTC
    PRIMARY KEY (event_id, subscriber)
);
CREATE INDEX event_inbox_handled_at ON event_inbox (handled_at);

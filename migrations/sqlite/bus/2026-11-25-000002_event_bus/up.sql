-- Shared kernel: the transactional outbox. An event is written in the same
-- transaction as the state change that causes it, with one delivery row per
-- subscriber; a delivery is marked handled in the transaction of its handler.
CREATE TABLE outbox_events (
    id          TEXT      NOT NULL PRIMARY KEY,   -- UUIDv7
    event_type  TEXT      NOT NULL,
    version     INTEGER   NOT NULL,
    payload     TEXT      NOT NULL,               -- JSON
    occurred_at TIMESTAMP NOT NULL,               -- UTC
    request_id  TEXT
);

CREATE TABLE event_deliveries (
    event_id        TEXT      NOT NULL REFERENCES outbox_events (id),
    subscriber      TEXT      NOT NULL,
    attempts        INTEGER   NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    handled_at      TIMESTAMP,
    last_error      TEXT,
    PRIMARY KEY (event_id, subscriber)
);

CREATE INDEX event_deliveries_due ON event_deliveries (next_attempt_at) WHERE handled_at IS NULL;

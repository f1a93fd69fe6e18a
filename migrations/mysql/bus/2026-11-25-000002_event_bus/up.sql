-- Shared kernel: the transactional outbox. An event is written in the same
-- transaction as the state change that causes it, with one delivery row per
-- subscriber; a delivery is marked handled in the transaction of its handler.
CREATE TABLE outbox_events (
    id          VARCHAR(255) NOT NULL PRIMARY KEY,   -- UUIDv7
    event_type  VARCHAR(255) NOT NULL,
    version     INTEGER      NOT NULL,
    payload     MEDIUMTEXT   NOT NULL,               -- JSON
    occurred_at DATETIME(6)  NOT NULL,               -- UTC
    request_id  VARCHAR(255)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE event_deliveries (
    event_id        VARCHAR(255) NOT NULL,
    subscriber      VARCHAR(255) NOT NULL,
    attempts        INTEGER      NOT NULL DEFAULT 0,
    next_attempt_at DATETIME(6)  NOT NULL,
    handled_at      DATETIME(6),
    last_error      TEXT,
    PRIMARY KEY (event_id, subscriber),
    CONSTRAINT event_deliveries_event_id_fkey FOREIGN KEY (event_id) REFERENCES outbox_events (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- PostgreSQL's partial index (WHERE handled_at IS NULL) as a composite one:
-- the due deliveries are those with handled_at NULL, by next_attempt_at.
CREATE INDEX event_deliveries_due ON event_deliveries (handled_at, next_attempt_at);

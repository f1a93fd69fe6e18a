-- Shared kernel: the audit log. Every staff write appends one row in the
-- transaction that makes the change, so a write that fails records nothing.
-- Ids are UUIDv7 (time-ordered): the log reads newest first by id.
CREATE TABLE audit_events (
    id           VARCHAR(64)  NOT NULL PRIMARY KEY,
    occurred_at  DATETIME(6)  NOT NULL,   -- UTC
    actor        VARCHAR(255) NOT NULL,   -- a staff token's `sub`, or `admin-token`
    action       VARCHAR(64)  NOT NULL,   -- e.g. `product.created`
    target_type  VARCHAR(64)  NOT NULL,   -- e.g. `product`
    target_id    VARCHAR(64)  NOT NULL,
    before_state TEXT,                    -- JSON of what changed, as it was (none for a creation)
    after_state  TEXT,                    -- JSON of what changed, as it became
    request_id   VARCHAR(255),
    INDEX audit_events_actor (actor, id),
    INDEX audit_events_target (target_id, id),
    INDEX audit_events_action (action, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

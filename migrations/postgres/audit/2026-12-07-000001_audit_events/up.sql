-- Shared kernel: the audit log. Every staff write appends one row in the
-- transaction that makes the change, so a write that fails records nothing.
-- Ids are UUIDv7 (time-ordered): the log reads newest first by id.
CREATE TABLE audit_events (
    id           TEXT      NOT NULL PRIMARY KEY,
    occurred_at  TIMESTAMP NOT NULL,   -- UTC
    actor        TEXT      NOT NULL,   -- a staff token's `sub`, or `admin-token`
    action       TEXT      NOT NULL,   -- e.g. `product.created`
    target_type  TEXT      NOT NULL,   -- e.g. `product`
    target_id    TEXT      NOT NULL,
    before_state TEXT,                 -- JSON of what changed, as it was (none for a creation)
    after_state  TEXT,                 -- JSON of what changed, as it became
    request_id   TEXT
);
CREATE INDEX audit_events_actor ON audit_events (actor, id);
CREATE INDEX audit_events_target ON audit_events (target_id, id);
CREATE INDEX audit_events_action ON audit_events (action, id);

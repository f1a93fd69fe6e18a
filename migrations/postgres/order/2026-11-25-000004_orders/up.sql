-- Order context. Product ids are the catalog's, but no foreign key crosses
-- contexts: the order keeps its own snapshot of what was bought, at what price.
CREATE TABLE orders (
    id            TEXT      NOT NULL PRIMARY KEY,   -- UUIDv7
    user_id       TEXT      NOT NULL,
    status        TEXT      NOT NULL CHECK (status IN ('pending_payment', 'paid', 'cancelled')),
    cancel_reason TEXT               CHECK (cancel_reason IN ('expired', 'cancelled_by_user')),
    amount_minor  BIGINT    NOT NULL CHECK (amount_minor >= 0),
    currency      TEXT      NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL,
    expires_at    TIMESTAMP NOT NULL,
    paid_at       TIMESTAMP,
    cancelled_at  TIMESTAMP,
    payment_id    TEXT,
    CHECK ((status = 'cancelled') = (cancel_reason IS NOT NULL))
);

CREATE INDEX orders_user ON orders (user_id, id);
CREATE INDEX orders_expiry ON orders (expires_at) WHERE status = 'pending_payment';

CREATE TABLE order_lines (
    order_id         TEXT    NOT NULL REFERENCES orders (id),
    line_no          INTEGER NOT NULL,
    product_id       TEXT    NOT NULL,
    quantity         BIGINT  NOT NULL CHECK (quantity > 0),
    unit_price_minor BIGINT  NOT NULL CHECK (unit_price_minor >= 0),
    PRIMARY KEY (order_id, line_no)
);

-- createOrder's Idempotency-Key, per user: the request it was first used
-- with (canonical JSON) and the order that request created.
CREATE TABLE order_idempotency_keys (
    user_id         TEXT      NOT NULL,
    idempotency_key TEXT      NOT NULL,
    request         TEXT      NOT NULL,
    order_id        TEXT      NOT NULL REFERENCES orders (id),
    created_at      TIMESTAMP NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
);

CREATE INDEX order_idempotency_keys_order ON order_idempotency_keys (order_id);

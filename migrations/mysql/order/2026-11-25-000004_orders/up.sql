-- Order context. Product ids are the catalog's, but no foreign key crosses
-- contexts: the order keeps its own snapshot of what was bought, at what price.
CREATE TABLE orders (
    id            VARCHAR(255) NOT NULL PRIMARY KEY,   -- UUIDv7
    user_id       VARCHAR(255) NOT NULL,
    status        VARCHAR(32)  NOT NULL,
    cancel_reason VARCHAR(32),
    amount_minor  BIGINT       NOT NULL,
    currency      VARCHAR(3)   NOT NULL,
    created_at    DATETIME(6)  NOT NULL,
    updated_at    DATETIME(6)  NOT NULL,
    expires_at    DATETIME(6)  NOT NULL,
    paid_at       DATETIME(6),
    cancelled_at  DATETIME(6),
    payment_id    VARCHAR(255),
    CONSTRAINT orders_status_check CHECK (status IN ('pending_payment', 'paid', 'cancelled')),
    CONSTRAINT orders_cancel_reason_check CHECK (cancel_reason IN ('expired', 'cancelled_by_user')),
    CONSTRAINT orders_amount_minor_check CHECK (amount_minor >= 0),
    CONSTRAINT orders_check CHECK ((status = 'cancelled') = (cancel_reason IS NOT NULL))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE INDEX orders_user ON orders (user_id, id);
-- PostgreSQL's partial index (WHERE status = 'pending_payment') as a composite one.
CREATE INDEX orders_expiry ON orders (status, expires_at);

CREATE TABLE order_lines (
    order_id         VARCHAR(255) NOT NULL,
    line_no          INTEGER      NOT NULL,
    product_id       VARCHAR(255) NOT NULL,
    quantity         BIGINT       NOT NULL,
    unit_price_minor BIGINT       NOT NULL,
    PRIMARY KEY (order_id, line_no),
    CONSTRAINT order_lines_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id),
    CONSTRAINT order_lines_quantity_check CHECK (quantity > 0),
    CONSTRAINT order_lines_unit_price_minor_check CHECK (unit_price_minor >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- createOrder's Idempotency-Key, per user: the request it was first used
-- with (canonical JSON) and the order that request created.
CREATE TABLE order_idempotency_keys (
    user_id         VARCHAR(255) NOT NULL,
    idempotency_key VARCHAR(255) NOT NULL,
    request         MEDIUMTEXT   NOT NULL,
    order_id        VARCHAR(255) NOT NULL,
    created_at      DATETIME(6)  NOT NULL,
    PRIMARY KEY (user_id, idempotency_key),
    CONSTRAINT order_idempotency_keys_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE INDEX order_idempotency_keys_order ON order_idempotency_keys (order_id);

-- Payment context. The order id is the order context's, without a foreign
-- key: contexts do not share tables.
CREATE TABLE payments (
    id             VARCHAR(255) NOT NULL PRIMARY KEY,   -- UUIDv7
    order_id       VARCHAR(255) NOT NULL,
    method         VARCHAR(32)  NOT NULL,
    gateway        VARCHAR(64)  NOT NULL,
    status         VARCHAR(32)  NOT NULL,
    amount_minor   BIGINT       NOT NULL,
    currency       VARCHAR(3)   NOT NULL,
    payment_url    TEXT         NOT NULL,
    expires_at     DATETIME(6)  NOT NULL,
    transaction_id VARCHAR(255),
    created_at     DATETIME(6)  NOT NULL,
    updated_at     DATETIME(6)  NOT NULL,
    completed_at   DATETIME(6),
    -- MySQL has no partial unique index: this column is the order id while
    -- the payment is pending and NULL otherwise, and a unique index on it
    -- (which admits many NULLs) is PostgreSQL's payments_one_open_per_order.
    open_order_id  VARCHAR(255) GENERATED ALWAYS AS (CASE WHEN status = 'pending' THEN order_id END) STORED,
    CONSTRAINT payments_method_check CHECK (method IN ('alipay', 'wechat_pay')),
    CONSTRAINT payments_status_check CHECK (status IN ('pending', 'succeeded', 'failed', 'refund_required')),
    CONSTRAINT payments_amount_minor_check CHECK (amount_minor >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE INDEX payments_order ON payments (order_id, id);
-- An order has at most one open payment: initiating again returns it.
CREATE UNIQUE INDEX payments_one_open_per_order ON payments (open_order_id);

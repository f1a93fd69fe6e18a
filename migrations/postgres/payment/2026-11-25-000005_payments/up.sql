-- Payment context. The order id is the order context's, without a foreign
-- key: contexts do not share tables.
CREATE TABLE payments (
    id             TEXT      NOT NULL PRIMARY KEY,   -- UUIDv7
    order_id       TEXT      NOT NULL,
    method         TEXT      NOT NULL CHECK (method IN ('alipay', 'wechat_pay')),
    gateway        TEXT      NOT NULL,
    status         TEXT      NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'refund_required')),
    amount_minor   BIGINT    NOT NULL CHECK (amount_minor >= 0),
    currency       TEXT      NOT NULL,
    payment_url    TEXT      NOT NULL,
    expires_at     TIMESTAMP NOT NULL,
    transaction_id TEXT,
    created_at     TIMESTAMP NOT NULL,
    updated_at     TIMESTAMP NOT NULL,
    completed_at   TIMESTAMP
);

CREATE INDEX payments_order ON payments (order_id, id);
-- An order has at most one open payment: initiating again returns it.
CREATE UNIQUE INDEX payments_one_open_per_order ON payments (order_id) WHERE status = 'pending';

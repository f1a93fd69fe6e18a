-- A payment's whole lifecycle: `closed` (its order was cancelled or expired
-- before it was paid: the trade is closed at the provider) and `refunded`
-- (the provider confirmed the money went back). SQLite cannot change a
-- CHECK constraint: the table is made again and the rows copied.
ALTER TABLE payments RENAME TO payments_before_lifecycle;
CREATE TABLE payments (
    id             TEXT      NOT NULL PRIMARY KEY,   -- UUIDv7
    order_id       TEXT      NOT NULL,
    method         TEXT      NOT NULL CHECK (method IN ('alipay', 'wechat_pay')),
    gateway        TEXT      NOT NULL,
    status         TEXT      NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'refund_required', 'closed', 'refunded')),
    amount_minor   BIGINT    NOT NULL CHECK (amount_minor >= 0),
    currency       TEXT      NOT NULL,
    payment_url    TEXT      NOT NULL,
    expires_at     TIMESTAMP NOT NULL,
    transaction_id TEXT,
    created_at     TIMESTAMP NOT NULL,
    updated_at     TIMESTAMP NOT NULL,
    completed_at   TIMESTAMP,
    user_id        TEXT      NOT NULL DEFAULT '',
    -- What the provider is still owed for a payment: a `closed` one's trade
    -- closed, a `refund_required` one's money refunded. Due from this time
    -- (NULL: nothing owed); the worker retries with back-off, counting attempts.
    provider_due_at   TIMESTAMP,
    provider_attempts INTEGER NOT NULL DEFAULT 0
);
INSERT INTO payments (id, order_id, method, gateway, status, amount_minor, currency,
        payment_url, expires_at, transaction_id, created_at, updated_at, completed_at, user_id,
        provider_due_at)
    SELECT id, order_id, method, gateway, status, amount_minor, currency,
        payment_url, expires_at, transaction_id, created_at, updated_at, completed_at, user_id,
        CASE WHEN status = 'refund_required' THEN updated_at END
    FROM payments_before_lifecycle;
DROP TABLE payments_before_lifecycle;
CREATE INDEX payments_order ON payments (order_id, id);
CREATE UNIQUE INDEX payments_one_open_per_order ON payments (order_id) WHERE status = 'pending';
CREATE INDEX payments_provider_due ON payments (provider_due_at) WHERE provider_due_at IS NOT NULL;

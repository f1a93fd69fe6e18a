-- A payment's whole lifecycle: `closed` (its order was cancelled or expired
-- before it was paid: the trade is closed at the provider) and `refunded`
-- (the provider confirmed the money went back).
ALTER TABLE payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payments ADD CONSTRAINT payments_status_check
    CHECK (status IN ('pending', 'succeeded', 'failed', 'refund_required', 'closed', 'refunded'));
-- What the provider is still owed for a payment: a `closed` one's trade
-- closed, a `refund_required` one's money refunded. Due from this time (NULL:
-- nothing owed); the worker retries with back-off, counting attempts.
ALTER TABLE payments ADD COLUMN provider_due_at TIMESTAMP;
ALTER TABLE payments ADD COLUMN provider_attempts INTEGER NOT NULL DEFAULT 0;
CREATE INDEX payments_provider_due ON payments (provider_due_at) WHERE provider_due_at IS NOT NULL;
-- A refund_required payment from before this migration is owed its refund.
UPDATE payments SET provider_due_at = updated_at WHERE status = 'refund_required';

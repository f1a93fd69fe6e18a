DROP INDEX payments_provider_due;
ALTER TABLE payments DROP COLUMN provider_attempts;
ALTER TABLE payments DROP COLUMN provider_due_at;
UPDATE payments SET status = 'refund_required' WHERE status = 'refunded';
UPDATE payments SET status = 'failed' WHERE status = 'closed';
ALTER TABLE payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payments ADD CONSTRAINT payments_status_check
    CHECK (status IN ('pending', 'succeeded', 'failed', 'refund_required'));

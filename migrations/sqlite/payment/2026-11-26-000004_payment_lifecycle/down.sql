DROP INDEX payments_provider_due;
ALTER TABLE payments DROP COLUMN provider_attempts;
ALTER TABLE payments DROP COLUMN provider_due_at;

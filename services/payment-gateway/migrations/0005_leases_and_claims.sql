ALTER TABLE idempotency_keys ADD COLUMN resource_id TEXT;
ALTER TABLE idempotency_keys ADD COLUMN recovery_point TEXT;
ALTER TABLE idempotency_keys ADD COLUMN locked_until_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE idempotency_keys ADD COLUMN lease TEXT;
ALTER TABLE payments ADD COLUMN claimed_from TEXT;
ALTER TABLE payments ADD COLUMN claim_amount_minor BIGINT;
DROP INDEX payments_requery_due;
CREATE INDEX payments_requery_due ON payments (next_requery_at_ms) WHERE status IN ('processing', 'pending', 'capturing', 'canceling')

ALTER TABLE payments ADD COLUMN requery_attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE payments ADD COLUMN next_requery_at_ms BIGINT;
CREATE INDEX payments_requery_due ON payments (next_requery_at_ms) WHERE status IN ('processing', 'pending')

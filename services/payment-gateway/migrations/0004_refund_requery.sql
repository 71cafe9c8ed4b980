ALTER TABLE refunds ADD COLUMN requery_attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE refunds ADD COLUMN next_requery_at_ms BIGINT;
CREATE INDEX refunds_requery_due ON refunds (next_requery_at_ms) WHERE status = 'pending'

CREATE TABLE risk_decisions (
    id TEXT PRIMARY KEY,
    payment_id TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    action TEXT NOT NULL,
    score BIGINT NOT NULL,
    rules TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX risk_decisions_by_payment ON risk_decisions (payment_id)

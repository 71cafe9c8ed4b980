CREATE TABLE ledger_parked (
    event_id TEXT PRIMARY KEY,
    payment_id TEXT NOT NULL,
    envelope TEXT NOT NULL,
    parked_at_ms BIGINT NOT NULL
);
CREATE INDEX ledger_parked_by_payment ON ledger_parked (payment_id)

CREATE TABLE payments (
    id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    order_id TEXT,
    order_no TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    capture_method TEXT NOT NULL,
    method TEXT NOT NULL,
    channel TEXT,
    channel_reference TEXT,
    amount_captured_minor BIGINT NOT NULL,
    amount_refunded_minor BIGINT NOT NULL,
    fee_minor BIGINT NOT NULL,
    customer TEXT NOT NULL,
    description TEXT,
    return_url TEXT,
    metadata TEXT NOT NULL,
    next_action TEXT,
    failure_code TEXT,
    failure_message TEXT,
    risk_decision_id TEXT,
    risk_action TEXT,
    quota_reservation_id TEXT,
    expires_at_ms BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    UNIQUE (merchant_id, order_no)
);
CREATE INDEX payments_by_merchant ON payments (merchant_id, id);
CREATE INDEX payments_unpaid_by_expiry ON payments (expires_at_ms) WHERE status IN ('pending', 'requires_action');
CREATE TABLE refunds (
    id TEXT PRIMARY KEY,
    payment_id TEXT NOT NULL REFERENCES payments (id),
    merchant_id TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    channel_reference TEXT,
    failure_code TEXT,
    failure_message TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX refunds_by_payment ON refunds (payment_id);
CREATE TABLE idempotency_keys (
    merchant_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    response_status BIGINT,
    response_body TEXT,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (merchant_id, idempotency_key)
)

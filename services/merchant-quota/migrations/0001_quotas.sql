CREATE TABLE quota_usage (
    merchant_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    period TEXT NOT NULL,
    used_minor BIGINT NOT NULL,
    PRIMARY KEY (merchant_id, currency, period)
);
CREATE TABLE quota_reservations (
    id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    day_period TEXT NOT NULL,
    month_period TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
)

CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    order_no TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    previous_status TEXT,
    payment_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    UNIQUE (merchant_id, order_no)
);
CREATE TABLE order_transitions (
    order_id TEXT NOT NULL REFERENCES orders (id),
    from_status TEXT NOT NULL,
    to_status TEXT NOT NULL,
    at_ms BIGINT NOT NULL
)

CREATE TABLE merchant_policies (
    merchant_id TEXT PRIMARY KEY,
    plugin_id TEXT NOT NULL,
    config TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
)

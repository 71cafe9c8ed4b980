CREATE TABLE channel_credentials (
    merchant_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    sealed TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (merchant_id, channel_id)
)

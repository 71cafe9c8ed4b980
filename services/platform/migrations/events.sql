CREATE TABLE payloom_outbox (
    seq {sequence},
    service TEXT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    envelope TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX payloom_outbox_by_service ON payloom_outbox (service, seq);
CREATE TABLE payloom_consumed (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    consumed_at_ms BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE TABLE payloom_dead_letters (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    envelope TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
)

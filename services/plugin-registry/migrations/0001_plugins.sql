CREATE TABLE plugin_blobs (
    digest TEXT PRIMARY KEY,
    component_base64 TEXT NOT NULL
);
CREATE TABLE plugin_versions (
    plugin_id TEXT NOT NULL,
    version TEXT NOT NULL,
    world TEXT NOT NULL,
    digest TEXT NOT NULL REFERENCES plugin_blobs (digest),
    manifest TEXT NOT NULL,
    signature TEXT,
    publisher TEXT NOT NULL,
    uploaded_by TEXT NOT NULL,
    status TEXT NOT NULL,
    canary_percent BIGINT,
    size_bytes BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (plugin_id, version)
);
CREATE TABLE plugin_activations (
    seq BIGINT PRIMARY KEY,
    plugin_id TEXT NOT NULL,
    version TEXT NOT NULL,
    previous TEXT,
    action TEXT NOT NULL,
    percent BIGINT,
    merchant_id TEXT,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX plugin_activations_by_plugin ON plugin_activations (plugin_id, seq)
;
CREATE TABLE plugin_nodes (
    node TEXT PRIMARY KEY,
    report TEXT NOT NULL,
    at_ms BIGINT NOT NULL
)
;
CREATE TABLE plugin_bindings (
    plugin_id TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (plugin_id, merchant_id)
)

//! Runs a component under production limits on fixture inputs.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use payloom_host::capabilities::HostServices;
use payloom_host::capabilities::crypto::Key;
use payloom_host::{Call, CallContext, HostConfig, Plugin, PluginKind, Reply, Runtime};
use serde::{Deserialize, Serialize};

use crate::recorded::{Exchange, Recorded};

/// One call to make: `{"call": "create-payment", "input": {…}, "context": {…}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Fixture {
    /// The export to call (kebab-case WIT name).
    pub call: String,
    /// Its arguments, as the host's types serialize.
    #[serde(default)]
    pub input: serde_json::Value,
    /// Secrets, keys and clock for the call.
    #[serde(default)]
    pub context: FixtureContext,
}

/// What a fixture grants the call.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FixtureContext {
    /// Clock for the call (Unix ms).
    pub now_ms: Option<i64>,
    /// Secrets by name.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Keys by handle.
    #[serde(default)]
    pub keys: BTreeMap<String, FixtureKey>,
}

/// A key given in a fixture.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FixtureKey {
    /// HMAC key, hex.
    Hmac(String),
    /// AES-256 key, hex (32 bytes).
    Aes256(String),
    /// RSA private key, PKCS#8 PEM.
    RsaPrivatePem(String),
    /// RSA public key, SPKI PEM.
    RsaPublicPem(String),
}

impl FixtureContext {
    /// The host call context these settings describe.
    pub fn to_call_context(&self) -> anyhow::Result<CallContext> {
        let mut keys = Vec::new();
        for (handle, key) in &self.keys {
            let key = match key {
                FixtureKey::Hmac(hex_key) => {
                    Key::Hmac(hex::decode(hex_key).context("hmac key hex")?)
                }
                FixtureKey::Aes256(hex_key) => {
                    let bytes: [u8; 32] = hex::decode(hex_key)?
                        .try_into()
                        .map_err(|_| anyhow::anyhow!("aes256 key must be 32 bytes"))?;
                    Key::Aes256(Box::new(bytes))
                }
                FixtureKey::RsaPrivatePem(pem) => Key::rsa_private_pem(pem)?,
                FixtureKey::RsaPublicPem(pem) => Key::rsa_public_pem(pem)?,
            };
            keys.push((handle.clone(), key));
        }
        let mut ctx = CallContext::default()
            .with_secrets(self.secrets.iter().map(|(k, v)| (k.clone(), v.clone())))
            .with_keys(keys);
        ctx.now_ms = self.now_ms;
        Ok(ctx)
    }
}

/// What one call did, against the limits in force.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The export called.
    pub call: String,
    /// Whether the call completed (a plugin-level error such as a decline still counts).
    pub ok: bool,
    /// The reply.
    pub reply: Option<Reply>,
    /// The failure, when the call did not complete.
    pub error: Option<String>,
    /// Wall time in microseconds, instantiation included.
    pub wall_us: u64,
    /// Peak linear memory in bytes.
    pub peak_memory_bytes: usize,
    /// The memory cap in bytes.
    pub memory_limit_bytes: u64,
    /// Argument bytes (serialized).
    pub input_bytes: usize,
    /// The input cap.
    pub input_limit_bytes: usize,
    /// Reply bytes (serialized).
    pub output_bytes: usize,
    /// The output cap.
    pub output_limit_bytes: usize,
    /// What the plugin logged.
    pub logs: Vec<payloom_host::capabilities::log::LogLine>,
}

/// A local runtime with production limits and recorded HTTP.
pub struct Runner {
    runtime: Arc<Runtime>,
    /// The transport, to inspect what the plugin sent.
    pub http: Arc<Recorded>,
}

impl Runner {
    /// A runner with the platform's default limits, accepting unsigned components.
    pub fn new(exchanges: Vec<Exchange>) -> anyhow::Result<Self> {
        Self::with_config(
            HostConfig {
                allow_unsigned: true,
                ..HostConfig::default()
            },
            exchanges,
        )
    }

    /// A runner with explicit limits.
    pub fn with_config(config: HostConfig, exchanges: Vec<Exchange>) -> anyhow::Result<Self> {
        let http = Arc::new(Recorded::new(exchanges));
        let services = HostServices::in_memory(http.clone());
        let runtime = Runtime::new(config, services, &mut Default::default())?;
        Ok(Self { runtime, http })
    }

    /// The runtime underneath.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Loads (verifies, compiles, type-checks, smoke-tests) a component.
    pub async fn load(&self, wasm: &[u8], manifest: &str) -> anyhow::Result<Arc<Plugin>> {
        self.runtime.load(wasm, manifest, None).await
    }

    /// Makes one call and reports it.
    pub async fn run(&self, plugin: &Plugin, fixture: &Fixture) -> anyhow::Result<RunReport> {
        let call = fixture_call(plugin.kind(), fixture)?;
        let ctx = fixture.context.to_call_context()?;
        Ok(self.run_call(plugin, &fixture.call, ctx, call).await)
    }

    /// Makes one typed call and reports it.
    pub async fn run_call(
        &self,
        plugin: &Plugin,
        name: &str,
        ctx: CallContext,
        call: Call,
    ) -> RunReport {
        let config = self.runtime.config();
        let memory_limit_bytes = plugin
            .info()
            .manifest
            .limits
            .memory_bytes_max
            .unwrap_or(config.memory_bytes_max)
            .min(config.memory_bytes_max);
        let mut report = RunReport {
            call: name.to_owned(),
            ok: false,
            reply: None,
            error: None,
            wall_us: 0,
            peak_memory_bytes: 0,
            memory_limit_bytes,
            input_bytes: 0,
            input_limit_bytes: config.bytes.input_max,
            output_bytes: 0,
            output_limit_bytes: config.bytes.output_max,
            logs: Vec::new(),
        };
        let started = std::time::Instant::now();
        match self.runtime.call(plugin, ctx, call).await {
            Ok(done) => {
                report.ok = true;
                report.wall_us = done.wall.as_micros() as u64;
                report.peak_memory_bytes = done.peak_memory_bytes;
                report.input_bytes = done.input_bytes;
                report.output_bytes = done.output_bytes;
                report.logs = done.logs;
                report.reply = Some(done.reply);
            }
            Err(err) => {
                report.wall_us = started.elapsed().as_micros() as u64;
                report.error = Some(err.to_string());
            }
        }
        report
    }
}

/// The typed call a fixture names.
pub fn fixture_call(kind: PluginKind, fixture: &Fixture) -> anyhow::Result<Call> {
    let value = serde_json::json!({ "call": fixture.call, "input": fixture.input });
    let value = match (&fixture.input, fixture.call.as_str()) {
        (serde_json::Value::Null, _) => serde_json::json!({ "call": fixture.call }),
        _ => value,
    };
    Call::from_json(kind, value)
        .with_context(|| format!("fixture `{}` does not fit the {kind} world", fixture.call))
}

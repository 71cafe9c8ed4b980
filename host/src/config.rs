//! Runtime configuration. Every limit has a unit in its name and a reason for its default.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::manifest::PluginKind;
use crate::policy::FailurePolicy;

/// How the plugin runtime is sized and what it trusts.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostConfig {
    /// Plugin calls in flight at once per process. Sizes the pooling allocator and the
    /// semaphore in front of it; a call beyond it waits for a free slot.
    pub concurrent_calls_max: u32,
    /// Hard cap on one linear memory (bytes). Also the pool's slot size.
    pub memory_bytes_max: u64,
    /// Epoch ticker period (ms). Deadlines are rounded up to whole ticks.
    pub epoch_tick_ms: u64,
    /// Caps on the bytes crossing the boundary; see [`ByteCaps`].
    pub bytes: ByteCaps,
    /// Per plugin kind: deadline and failure policy.
    pub risk: KindConfig,
    /// See [`HostConfig::risk`].
    pub channel: KindConfig,
    /// See [`HostConfig::risk`].
    pub policy: KindConfig,
    /// Circuit breaker: consecutive failures that open it.
    pub breaker_failures_max: u32,
    /// Circuit breaker: how long it stays open before one trial call (ms).
    pub breaker_open_ms: u64,
    /// Hex ed25519 public keys whose signatures are accepted.
    pub trusted_keys: Vec<String>,
    /// Load components without a signature (development only).
    pub allow_unsigned: bool,
    /// Where precompiled components are cached; unset means no cache.
    pub cache_dir: Option<PathBuf>,
    /// Authenticates cache entries, so a file planted in `cache_dir` is never run. Set it
    /// from a persistent secret to reuse entries across restarts; unset, each process
    /// draws its own and recompiles what an earlier process cached.
    #[serde(skip)]
    pub cache_key: Option<CacheKey>,
    /// Components this binary carries, by [`crate::signing::pair_digest`]: they load
    /// unsigned, because the binary that embeds them is what vouches for them.
    #[serde(skip)]
    pub builtin_digests: Vec<[u8; 32]>,
    /// Let `http.send` reach loopback and private networks (tests, local mocks).
    pub http_allow_private: bool,
}

/// The secret that authenticates precompiled cache entries (see [`crate::cache`]).
#[derive(Clone)]
pub struct CacheKey(pub [u8; 32]);

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey(..)")
    }
}

/// Byte caps at the host boundary. Memory caps do not see these, so they are separate.
/// Defaults follow Shopify Functions' published limits scaled for PSP payloads.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ByteCaps {
    /// Serialized size of a call's arguments.
    pub input_max: usize,
    /// Serialized size of a call's result.
    pub output_max: usize,
    /// Log bytes per call (host `log` and WASI stdout/stderr together); the rest is dropped.
    pub log_max: usize,
    /// Body bytes of one outbound HTTP response.
    pub http_response_max: usize,
    /// Body bytes of one outbound HTTP request.
    pub http_request_max: usize,
    /// Bytes of a settlement statement given to `parse-statement`, and of its parsed
    /// result (statements are files: thousands of lines).
    pub statement_max: usize,
}

/// Settings that differ by plugin kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KindConfig {
    /// Wall-clock budget for one call, including host I/O (ms).
    pub deadline_ms: u64,
    /// What a failed call turns into.
    pub failure: FailurePolicy,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            concurrent_calls_max: 64,
            // Shopify caps functions at 10 MB; PSP adapters parse larger documents.
            memory_bytes_max: 64 << 20,
            // Spin ticks every 10 ms; 5 ms keeps a 20 ms risk deadline honest.
            epoch_tick_ms: 5,
            bytes: ByteCaps::default(),
            risk: KindConfig {
                deadline_ms: 50,
                failure: FailurePolicy::FailClosed,
            },
            channel: KindConfig {
                deadline_ms: 10_000,
                failure: FailurePolicy::FailClosed,
            },
            policy: KindConfig {
                deadline_ms: 50,
                failure: FailurePolicy::FailClosed,
            },
            breaker_failures_max: 5,
            // Envoy's FAIL_RELOAD backs off 1 s by default.
            breaker_open_ms: 1_000,
            trusted_keys: Vec::new(),
            allow_unsigned: false,
            cache_dir: None,
            cache_key: None,
            builtin_digests: Vec::new(),
            http_allow_private: false,
        }
    }
}

impl Default for ByteCaps {
    fn default() -> Self {
        Self {
            input_max: 128 * 1024,
            output_max: 64 * 1024,
            log_max: 4 * 1024,
            http_response_max: 1 << 20,
            http_request_max: 256 * 1024,
            statement_max: 8 << 20,
        }
    }
}

impl Default for KindConfig {
    fn default() -> Self {
        Self {
            deadline_ms: 1_000,
            failure: FailurePolicy::FailClosed,
        }
    }
}

impl HostConfig {
    /// Checks ranges and relationships once, at load time.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=4096).contains(&self.concurrent_calls_max),
            "concurrent_calls_max must be 1..=4096"
        );
        anyhow::ensure!(
            (1 << 20..=4 << 30).contains(&self.memory_bytes_max),
            "memory_bytes_max must be between 1 MiB and 4 GiB"
        );
        anyhow::ensure!(
            (1..=100).contains(&self.epoch_tick_ms),
            "epoch_tick_ms must be 1..=100"
        );
        for (name, kind) in [
            ("risk", &self.risk),
            ("channel", &self.channel),
            ("policy", &self.policy),
        ] {
            anyhow::ensure!(
                kind.deadline_ms >= 2 * self.epoch_tick_ms,
                "{name}.deadline_ms must be at least two epoch ticks"
            );
        }
        anyhow::ensure!(
            self.breaker_failures_max >= 1,
            "breaker_failures_max must be at least 1"
        );
        for key in &self.trusted_keys {
            crate::signing::parse_public_key(key)?;
        }
        Ok(())
    }

    /// The settings for one plugin kind.
    pub fn kind(&self, kind: PluginKind) -> &KindConfig {
        match kind {
            PluginKind::Channel => &self.channel,
            PluginKind::Risk => &self.risk,
            PluginKind::Policy => &self.policy,
        }
    }

    /// One kind's deadline as a duration.
    pub fn deadline(&self, kind: PluginKind) -> Duration {
        Duration::from_millis(self.kind(kind).deadline_ms)
    }
}

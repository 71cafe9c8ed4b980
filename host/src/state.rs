//! The per-call store data: the only things a plugin can reach.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::capabilities::HostServices;
use crate::capabilities::crypto::Key;
use crate::capabilities::log::LogBuffer;
use crate::plugin::PluginInfo;

/// What the caller grants one call: secrets, keys and the clock it runs under.
#[derive(Clone, Default)]
pub struct CallContext {
    /// Secret values by name (e.g. a merchant's channel credentials). A plugin still only
    /// reads names its manifest lists.
    pub secrets: Arc<HashMap<String, String>>,
    /// Crypto keys by handle. A plugin still only uses handles its manifest lists.
    pub keys: Arc<HashMap<String, Key>>,
    /// Fixes `clock.now-ms` (and the WASI clocks) for this call. Risk rules always run on a
    /// fixed clock: unset means "the time the call started".
    pub now_ms: Option<i64>,
    /// The merchant whose payment this call decides: `counters.get` reads only this
    /// merchant's counters. Unset, every counter reads zero.
    pub merchant_id: Option<String>,
    /// What the call is about (a payment id): a canary takes a fixed share of keys, so
    /// every call about one payment reaches the same version. Unset, the active serves.
    pub routing_key: Option<String>,
    /// Where `http.send` goes for this call, when not the host's client: a shadow run's
    /// recording or replay.
    pub(crate) outbound: Option<Arc<dyn crate::capabilities::http::Outbound>>,
}

impl CallContext {
    /// A context with these secrets.
    pub fn with_secrets<I: IntoIterator<Item = (String, String)>>(mut self, secrets: I) -> Self {
        self.secrets = Arc::new(secrets.into_iter().collect());
        self
    }

    /// A context with these keys.
    pub fn with_keys<I: IntoIterator<Item = (String, Key)>>(mut self, keys: I) -> Self {
        self.keys = Arc::new(keys.into_iter().collect());
        self
    }

    /// A context whose clock reads `now_ms`.
    pub fn at(mut self, now_ms: i64) -> Self {
        self.now_ms = Some(now_ms);
        self
    }

    /// This context with `http.send` answered by `outbound`.
    pub(crate) fn with_outbound(
        mut self,
        outbound: Arc<dyn crate::capabilities::http::Outbound>,
    ) -> Self {
        self.outbound = Some(outbound);
        self
    }

    /// A context whose version is chosen by `key` while a canary runs.
    pub fn routed_by(mut self, key: &str) -> Self {
        self.routing_key = Some(key.to_owned());
        self
    }

    /// A context for a payment of `merchant_id`, whose counters the plugin may read.
    pub fn for_merchant(mut self, merchant_id: &str) -> Self {
        self.merchant_id = Some(merchant_id.to_owned());
        self
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Store data for one call.
pub struct CallState {
    pub(crate) plugin: Arc<PluginInfo>,
    pub(crate) ctx: CallContext,
    pub(crate) services: Arc<HostServices>,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) log: Arc<Mutex<LogBuffer>>,
    /// The clock this call sees; `None` reads the real time.
    pub(crate) clock_ms: Option<i64>,
    /// When the call must be done, for host I/O inside it.
    pub(crate) deadline: tokio::time::Instant,
    wasi: Option<WasiCtx>,
    table: ResourceTable,
}

impl CallState {
    pub(crate) fn new(
        plugin: Arc<PluginInfo>,
        ctx: CallContext,
        services: Arc<HostServices>,
        memory_bytes_max: usize,
        log_bytes_max: usize,
        deadline: tokio::time::Instant,
    ) -> Self {
        let clock_ms = match plugin.deterministic {
            true => Some(ctx.now_ms.unwrap_or_else(unix_now_ms)),
            false => ctx.now_ms,
        };
        Self {
            plugin,
            ctx,
            services,
            limiter: MemoryLimiter::new(memory_bytes_max),
            log: Arc::new(Mutex::new(LogBuffer::new(log_bytes_max))),
            clock_ms,
            deadline,
            wasi: None,
            table: ResourceTable::new(),
        }
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock_ms.unwrap_or_else(unix_now_ms)
    }
}

impl WasiView for CallState {
    /// WASI is served from a locked-down context, built only if the guest touches WASI.
    fn ctx(&mut self) -> WasiCtxView<'_> {
        if self.wasi.is_none() {
            self.wasi = Some(crate::sandbox::locked_down_wasi(
                self.clock_ms,
                &self.plugin,
                &self.log,
            ));
        }
        let ctx = self.wasi.as_mut().expect("built above");
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}

/// Memory cap for one call, recording the peak and whether the cap was hit.
#[derive(Debug)]
pub struct MemoryLimiter {
    bytes_max: usize,
    /// Largest total linear memory reached.
    pub peak_bytes: usize,
    /// A grow was refused.
    pub hit: bool,
    current_total: usize,
}

/// Tables bigger than this are refused; Rust guests use a few hundred entries.
const TABLE_ELEMENTS_MAX: usize = 100_000;

impl MemoryLimiter {
    fn new(bytes_max: usize) -> Self {
        Self {
            bytes_max,
            peak_bytes: 0,
            hit: false,
            current_total: 0,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.current_total - current.min(self.current_total) + desired;
        if total > self.bytes_max {
            self.hit = true;
            // Trapping (rather than returning -1) makes a memory bomb fail loudly.
            wasmtime::bail!(
                "memory cap of {} bytes exceeded (wanted {total})",
                self.bytes_max
            );
        }
        self.current_total = total;
        self.peak_bytes = self.peak_bytes.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS_MAX)
    }
}

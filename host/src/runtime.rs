//! The engine and everything per call: loading, limits, deadlines, error classes, metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use prometheus_client::registry::Registry as MetricsRegistry;
use tokio::sync::Semaphore;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

use crate::bindings::channel::{ChannelAdapter, ChannelAdapterPre};
use crate::bindings::policy::{MerchantPolicy, MerchantPolicyPre};
use crate::bindings::risk::{RiskRule, RiskRulePre};
use crate::capabilities::HostServices;
use crate::capabilities::log::LogLine;
use crate::config::{CacheKey, HostConfig};
use crate::manifest::{Manifest, PluginKind};
use crate::metrics::{ErrorKind, ErrorLabels, PluginMetrics};
use crate::plugin::{Call, ChannelCall, Plugin, PluginInfo, Publisher, Reply, WorldPre};
use crate::policy::CircuitBreaker;
use crate::state::{CallContext, CallState};
use crate::{cache, sandbox, signing};

/// Core instances one component may create. A Rust guest encoded by `wit-component` has
/// 2–4; a `wasm32-wasip2` guest with the WASI adapter has about 8.
const CORE_INSTANCES_PER_COMPONENT_MAX: u32 = 20;
/// Linear memories per component (the guest's, plus the WASI adapter's).
const MEMORIES_PER_COMPONENT_MAX: u32 = 4;
/// Tables per component.
const TABLES_PER_COMPONENT_MAX: u32 = 8;
/// Parsed statement lines serialize to about four times their CSV size, so the reply of
/// `parse-statement` may be that much larger than the file.
const STATEMENT_OUTPUT_EXPANSION: usize = 4;
/// Largest component accepted, in bytes: Python components run to ~40 MB.
pub const COMPONENT_BYTES_MAX: usize = 64 << 20;

const _: () = assert!(MEMORIES_PER_COMPONENT_MAX <= CORE_INSTANCES_PER_COMPONENT_MAX);

/// Linear memory kept resident per slot: SDK components start with 1 MiB (see
/// `payloom-plugin-build`). PAGEMAP_SCAN walks the whole region on every reuse, so
/// larger is slower; memory beyond it is returned to the kernel instead.
const LINEAR_MEMORY_KEEP_RESIDENT_BYTES: usize = 1 << 20;
/// Table bytes kept resident per slot (Rust guests have a few hundred entries).
const TABLE_KEEP_RESIDENT_BYTES: usize = 64 << 10;
/// Fiber stack kept resident per slot; calls use tens of KiB of the 2 MiB stack.
const ASYNC_STACK_KEEP_RESIDENT_BYTES: usize = 256 << 10;
/// Slots whose decommits are batched into one call.
const DECOMMIT_BATCH_SIZE: usize = 16;

/// The imports each world's linker provides, as `payloom:plugin/<interface>` names.
fn world_imports(kind: PluginKind) -> &'static [&'static str] {
    match kind {
        PluginKind::Channel => &["types", "http", "crypto", "secrets", "log", "clock"],
        PluginKind::Risk => &["types", "counters", "lists", "crypto", "log", "clock"],
        PluginKind::Policy => &["types", "counters", "lists", "log", "clock"],
    }
}

/// Why a call produced no reply.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct CallError {
    /// The class counted in metrics.
    pub kind: ErrorKind,
    /// What happened, for logs and operators.
    pub message: String,
}

impl CallError {
    fn denied(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Denied,
            message: message.into(),
        }
    }

    pub(crate) fn refused(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Refused,
            message: message.into(),
        }
    }
}

/// A reply plus what the call cost.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallReport {
    /// The plugin's answer.
    pub reply: Reply,
    /// Wall time, instantiation included.
    pub wall: Duration,
    /// Largest linear memory total reached (bytes).
    pub peak_memory_bytes: usize,
    /// Serialized size of the arguments.
    pub input_bytes: usize,
    /// Serialized size of the reply.
    pub output_bytes: usize,
    /// What the plugin logged (capped).
    pub logs: Vec<LogLine>,
}

/// Ticks the engine's epoch so deadlines fire; stops when the engine is gone.
fn start_epoch_ticker(engine: &Engine, tick: Duration) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("payloom-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(tick);
            }
        })
        .expect("spawning the epoch ticker at start-up");
}

/// A key for this process alone: entries it writes are reusable until it exits.
fn random_cache_key() -> CacheKey {
    let mut key = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
        .expect("the system random source is available");
    CacheKey(key)
}

struct Linkers {
    channel: Linker<CallState>,
    risk: Linker<CallState>,
    policy: Linker<CallState>,
}

impl Linkers {
    fn new(engine: &Engine) -> anyhow::Result<Self> {
        let mut channel = Linker::new(engine);
        ChannelAdapter::add_to_linker::<_, HasSelf<_>>(&mut channel, |s| s)?;
        let mut risk = Linker::new(engine);
        RiskRule::add_to_linker::<_, HasSelf<_>>(&mut risk, |s| s)?;
        let mut policy = Linker::new(engine);
        MerchantPolicy::add_to_linker::<_, HasSelf<_>>(&mut policy, |s| s)?;
        for linker in [&mut channel, &mut risk, &mut policy] {
            wasmtime_wasi::p2::add_to_linker_async(linker)?;
        }
        Ok(Self {
            channel,
            risk,
            policy,
        })
    }
}

/// One engine per process, with its linkers, limits, metrics and host services.
pub struct Runtime {
    engine: Engine,
    config: HostConfig,
    linkers: Linkers,
    services: Arc<HostServices>,
    permits: Semaphore,
    trusted_keys: Vec<VerifyingKey>,
    cache_key: CacheKey,
    metrics: PluginMetrics,
}

impl Runtime {
    /// Builds the engine (pooling allocator, epochs, no component-model concurrency) and
    /// starts its epoch ticker.
    pub fn new(
        config: HostConfig,
        services: HostServices,
        metrics: &mut MetricsRegistry,
    ) -> anyhow::Result<Arc<Self>> {
        config.validate()?;
        let engine = Engine::new(&engine_config(&config))?;
        start_epoch_ticker(&engine, Duration::from_millis(config.epoch_tick_ms));
        let trusted_keys = config
            .trusted_keys
            .iter()
            .map(|k| signing::parse_public_key(k))
            .collect::<anyhow::Result<_>>()?;
        Ok(Arc::new(Self {
            linkers: Linkers::new(&engine)?,
            permits: Semaphore::new(config.concurrent_calls_max as usize),
            metrics: PluginMetrics::new(metrics),
            services: Arc::new(services),
            trusted_keys,
            cache_key: config.cache_key.clone().unwrap_or_else(random_cache_key),
            engine,
            config,
        }))
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The plugin metrics of this process.
    pub fn metrics(&self) -> &PluginMetrics {
        &self.metrics
    }

    /// The configuration in force.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Host services (counters, lists) for callers that feed them.
    pub fn services(&self) -> &HostServices {
        &self.services
    }

    /// Verifies, compiles, type-checks and smoke-tests a component. Nothing is
    /// activated here; see [`crate::registry::Registry`].
    pub async fn load(
        &self,
        component: &[u8],
        manifest_text: &str,
        signature: Option<&str>,
    ) -> anyhow::Result<Arc<Plugin>> {
        let plugin = self.prepare(component, manifest_text, signature).await?;
        self.smoke_test(&plugin).await?;
        Ok(plugin)
    }

    /// [`Runtime::load`] without the smoke test, for tools that inspect a component
    /// before they know its identity.
    pub async fn prepare(
        &self,
        component: &[u8],
        manifest_text: &str,
        signature: Option<&str>,
    ) -> anyhow::Result<Arc<Plugin>> {
        let manifest =
            Manifest::parse(manifest_text).map_err(|e| anyhow::anyhow!("manifest: {e}"))?;
        let publisher = self.authenticate(component, manifest_text, signature)?;
        anyhow::ensure!(
            component.len() <= COMPONENT_BYTES_MAX,
            "component exceeds {COMPONENT_BYTES_MAX} bytes"
        );
        anyhow::ensure!(
            Engine::detect_precompiled(component).is_none(),
            "precompiled artifacts are not accepted; upload the component itself"
        );
        anyhow::ensure!(
            wasmparser::Parser::is_component(component),
            "not a WebAssembly component"
        );
        let engine = self.engine.clone();
        let (cache_dir, cache_key) = (self.config.cache_dir.clone(), self.cache_key.clone());
        let bytes = component.to_vec();
        let (compiled, lookup) = tokio::task::spawn_blocking(move || {
            let cache = cache_dir.as_deref().map(|dir| cache::Cache {
                dir,
                key: &cache_key,
            });
            cache::compile(&engine, &bytes, cache)
        })
        .await??;
        if lookup == cache::Lookup::Rejected {
            self.metrics.cache_rejected.inc();
        }
        let uses_wasi =
            sandbox::check_imports(&self.engine, &compiled, world_imports(manifest.world))?;
        let pre = self.pre(&manifest, &compiled)?;
        // Build the copy-on-write heap image now, so the first real call does not pay for it.
        compiled.initialize_copy_on_write_image()?;
        let series = self.metrics.series(&manifest.id, &manifest.version);
        let breaker = |gauge| {
            CircuitBreaker::new(
                self.config.breaker_failures_max,
                Duration::from_millis(self.config.breaker_open_ms),
            )
            .reporting_to(gauge)
        };
        let plugin = Arc::new(Plugin {
            notify_breaker: breaker(series.notifications_breaker.clone()),
            breaker: breaker(series.calls_breaker.clone()),
            series,
            info: Arc::new(PluginInfo::new(
                manifest,
                component,
                uses_wasi,
                publisher,
                signing::pair_digest(component, manifest_text.as_bytes()),
            )?),
            pre,
        });
        Ok(plugin)
    }

    /// Who vouches for this component + manifest pair: a trusted publisher's signature,
    /// this binary (its built-in plugins), or nobody, where unsigned plugins are allowed.
    fn authenticate(
        &self,
        component: &[u8],
        manifest_text: &str,
        signature: Option<&str>,
    ) -> anyhow::Result<Publisher> {
        let manifest = manifest_text.as_bytes();
        if let Some(sig) = signature {
            let key = signing::verify(&self.trusted_keys, component, manifest, sig)?;
            return Ok(Publisher::Signed(key));
        }
        let digest = signing::pair_digest(component, manifest);
        if self.config.builtin_digests.contains(&digest) {
            return Ok(Publisher::BuiltIn);
        }
        anyhow::ensure!(
            self.config.allow_unsigned,
            "component is not signed and unsigned plugins are not allowed"
        );
        Ok(Publisher::Unsigned)
    }

    fn pre(&self, manifest: &Manifest, component: &Component) -> anyhow::Result<WorldPre> {
        let context = || format!("component does not implement world `{}`", manifest.world);
        Ok(match manifest.world {
            PluginKind::Channel => WorldPre::Channel(
                ChannelAdapterPre::new(self.linkers.channel.instantiate_pre(component)?)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", context()))?,
            ),
            PluginKind::Risk => WorldPre::Risk(
                RiskRulePre::new(self.linkers.risk.instantiate_pre(component)?)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", context()))?,
            ),
            PluginKind::Policy => WorldPre::Policy(
                MerchantPolicyPre::new(self.linkers.policy.instantiate_pre(component)?)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", context()))?,
            ),
        })
    }

    /// `describe` under production limits; its id and version must match the manifest.
    pub async fn smoke_test(&self, plugin: &Plugin) -> anyhow::Result<()> {
        let report = self
            .call(
                plugin,
                CallContext::default(),
                Call::describe(plugin.kind()),
            )
            .await
            .map_err(|e| anyhow::anyhow!("smoke test (describe) failed: {e}"))?;
        let (id, version) = match &report.reply {
            Reply::ChannelDescriptor(d) => (&d.id, &d.version),
            Reply::RiskDescriptor(d) => (&d.id, &d.version),
            Reply::PolicyDescriptor(d) => (&d.id, &d.version),
            other => anyhow::bail!("smoke test: describe answered {other:?}"),
        };
        anyhow::ensure!(
            id == plugin.id() && version == plugin.version(),
            "describe says {id}@{version} but the manifest says {}@{}",
            plugin.id(),
            plugin.version()
        );
        Ok(())
    }

    /// One call on a fresh instance, under every limit, counted in metrics. No failure
    /// policy or breaker here; [`crate::registry::Registry::call`] adds those.
    pub async fn call(
        &self,
        plugin: &Plugin,
        ctx: CallContext,
        call: Call,
    ) -> Result<CallReport, CallError> {
        let started = Instant::now();
        plugin.series.calls.inc();
        let result = self.call_unmetered(plugin, ctx, call, started).await;
        let seconds = started.elapsed().as_secs_f64();
        plugin.series.latency.observe(seconds);
        plugin.series.sketch.observe(seconds);
        if let Err(err) = &result {
            let labels = ErrorLabels {
                plugin: plugin.id().to_owned(),
                version: plugin.version().to_owned(),
                kind: err.kind,
            };
            self.metrics.errors.get_or_create(&labels).inc();
        }
        result
    }

    /// A call slot. Waiting for one spends the call's own deadline; a call that cannot
    /// start in time is refused by the host, which says nothing about the plugin.
    async fn slot(
        &self,
        until: tokio::time::Instant,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, CallError> {
        match tokio::time::timeout_at(until, self.permits.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(CallError::refused("runtime shutting down")),
            Err(_) => Err(CallError::refused("no free call slot before the deadline")),
        }
    }

    /// A call's deadline and memory cap: the plugin's own, never above the host's.
    fn call_limits(&self, plugin: &Plugin) -> (Duration, u64) {
        let limits = &plugin.info.manifest.limits;
        let host_deadline = self.config.kind(plugin.kind()).deadline_ms;
        let deadline = limits
            .deadline_ms
            .map_or(host_deadline, |ms| ms.min(host_deadline));
        let memory_max = limits
            .memory_bytes_max
            .map_or(self.config.memory_bytes_max, |m| {
                m.min(self.config.memory_bytes_max)
            });
        (Duration::from_millis(deadline), memory_max)
    }

    async fn call_unmetered(
        &self,
        plugin: &Plugin,
        ctx: CallContext,
        call: Call,
        started: Instant,
    ) -> Result<CallReport, CallError> {
        let caps = &self.config.bytes;
        // Statements are files, not messages: they get their own, larger cap.
        let is_statement = matches!(call, Call::Channel(ChannelCall::ParseStatement(_)));
        let (input_max, output_max) = match is_statement {
            true => (
                caps.statement_max,
                caps.statement_max * STATEMENT_OUTPUT_EXPANSION,
            ),
            false => (caps.input_max, caps.output_max),
        };
        let input_bytes = input_size(&call);
        if input_bytes > input_max {
            return Err(CallError::refused(format!(
                "input of {input_bytes} bytes exceeds {input_max}"
            )));
        }
        let (deadline, memory_max) = self.call_limits(plugin);
        // One deadline from the call's start: waiting for a slot spends it too.
        let until = tokio::time::Instant::now() + deadline;
        let _permit = self.slot(until).await?;
        let deadline = until.saturating_duration_since(tokio::time::Instant::now());
        let mut store = Store::new(
            &self.engine,
            CallState::new(
                plugin.info.clone(),
                ctx,
                self.services.clone(),
                memory_max as usize,
                caps.log_max,
                until,
            ),
        );
        store.limiter(|state| &mut state.limiter);
        // Whole ticks, plus one so a deadline never fires early.
        store.set_epoch_deadline(deadline.as_millis() as u64 / self.config.epoch_tick_ms + 1);
        let outcome = tokio::time::timeout(
            deadline,
            crate::plugin::dispatch(&plugin.pre, &mut store, call),
        )
        .await;
        let state = store.data();
        let reply = match outcome {
            Err(_) => {
                return Err(CallError {
                    kind: ErrorKind::Timeout,
                    message: format!("deadline of {deadline:?} passed"),
                });
            }
            Ok(Err(err)) => return Err(classify(err, state.limiter.hit, deadline)),
            Ok(Ok(reply)) => reply,
        };
        let output_bytes = json_size(&reply);
        if output_bytes > output_max {
            return Err(CallError::denied(format!(
                "output of {output_bytes} bytes exceeds {output_max}"
            )));
        }
        let logs = std::mem::take(&mut state.log.lock().expect("log lock").lines);
        Ok(CallReport {
            reply,
            wall: started.elapsed(),
            peak_memory_bytes: state.limiter.peak_bytes,
            input_bytes,
            output_bytes,
            logs,
        })
    }
}

fn engine_config(config: &HostConfig) -> Config {
    let n = config.concurrent_calls_max;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(n * CORE_INSTANCES_PER_COMPONENT_MAX)
        .total_memories(n * MEMORIES_PER_COMPONENT_MAX)
        .total_tables(n * TABLES_PER_COMPONENT_MAX)
        // One fiber stack per in-flight async call.
        .total_stacks(n)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT_MAX)
        .max_memories_per_component(MEMORIES_PER_COMPONENT_MAX)
        .max_tables_per_component(TABLES_PER_COMPONENT_MAX)
        .max_memory_size(config.memory_bytes_max as usize)
        // Resetting a slot by madvise costs TLB shootdowns across cores and fresh page
        // faults on every call; keeping the low pages resident and re-initialising only
        // the dirty ones (PAGEMAP_SCAN where the kernel has it) avoids both.
        .linear_memory_keep_resident(LINEAR_MEMORY_KEEP_RESIDENT_BYTES)
        .table_keep_resident(TABLE_KEEP_RESIDENT_BYTES)
        .async_stack_keep_resident(ASYNC_STACK_KEEP_RESIDENT_BYTES)
        .pagemap_scan(wasmtime::Enabled::Auto)
        .decommit_batch_size(DECOMMIT_BATCH_SIZE);
    let mut wasm = Config::new();
    wasm.strategy(wasmtime::Strategy::Cranelift)
        .epoch_interruption(true)
        // Component-model async makes sync calls ~3x dearer here; no plugin world uses it.
        .concurrency_support(false)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    wasm
}

/// What a call hands the guest, in bytes. Raw bytes (a statement, a notification's body)
/// count as themselves, not as their JSON spelling (a number array, ~4 bytes a byte).
fn input_size(call: &Call) -> usize {
    match call {
        Call::Channel(ChannelCall::ParseStatement(content)) => content.len(),
        Call::Channel(ChannelCall::HandleNotification(n)) => {
            let headers: usize = n.headers.iter().map(|h| h.key.len() + h.value.len()).sum();
            n.method.len() + n.path.len() + headers + n.body.len()
        }
        other => json_size(other),
    }
}

/// Serialized JSON size, counted without allocating the text.
fn json_size<T: serde::Serialize>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).expect("plugin values always serialize");
    count.0
}

fn classify(err: wasmtime::Error, memory_hit: bool, deadline: Duration) -> CallError {
    if memory_hit {
        return CallError {
            kind: ErrorKind::Memory,
            message: format!("{err:#}"),
        };
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError {
            kind: ErrorKind::Timeout,
            message: format!("deadline of {deadline:?} passed"),
        },
        _ => CallError {
            kind: ErrorKind::Trap,
            message: format!("{err:#}"),
        },
    }
}

//! No ambient authority: which imports a component may have, and the WASI context that
//! serves the ones language toolchains pull in.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime_wasi::{Deterministic, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

use crate::capabilities::log::{LogBuffer, LogStream};
use crate::plugin::PluginInfo;

/// WASI 0.2 interfaces served (empty) for toolchains: Rust std's panic path imports
/// `wasi:cli` and `wasi:io`; Python and JS pull in clocks, random, filesystem and sockets.
/// `wasi:http` is absent on purpose: outbound HTTP goes through `payloom:plugin/http`.
const WASI_ALLOWED_PREFIXES: &[&str] = &[
    "wasi:io/",
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

/// Our own package.
const PAYLOOM_PREFIX: &str = "payloom:plugin/";

/// Imports of a component, refused with a message naming the first one not allowed.
/// Returns whether the component imports any WASI interface.
pub fn check_imports(
    engine: &Engine,
    component: &Component,
    world_imports: &[&str],
) -> anyhow::Result<bool> {
    let mut uses_wasi = false;
    for (name, _) in component.component_type().imports(engine) {
        if WASI_ALLOWED_PREFIXES.iter().any(|p| name.starts_with(p)) {
            uses_wasi = true;
            continue;
        }
        if let Some(rest) = name.strip_prefix(PAYLOOM_PREFIX) {
            let interface = rest.split('@').next().unwrap_or(rest);
            anyhow::ensure!(
                world_imports.contains(&interface),
                "component imports `{name}`, which this world does not provide (it provides {})",
                world_imports.join(", ")
            );
            continue;
        }
        anyhow::bail!("component imports `{name}`, which plugins may not use");
    }
    Ok(uses_wasi)
}

/// A WASI context with nothing in it: no preopened directories, no environment or
/// arguments, empty stdin, stdout/stderr into the call's capped log, sockets and name
/// lookup denied. Deterministic plugins get a fixed clock and seeded randomness.
pub(crate) fn locked_down_wasi(
    clock_ms: Option<i64>,
    plugin: &PluginInfo,
    log: &Arc<Mutex<LogBuffer>>,
) -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(LogStream::new(
            log.clone(),
            crate::capabilities::log::Level::Info,
        ))
        .stderr(LogStream::new(
            log.clone(),
            crate::capabilities::log::Level::Warn,
        ))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    if let Some(now_ms) = clock_ms {
        builder
            .wall_clock(FixedClock(now_ms))
            .monotonic_clock(FixedClock(now_ms));
    }
    if plugin.deterministic {
        // Same plugin version and clock, same bytes: replays and backtests agree.
        let seed = plugin.seed(clock_ms.unwrap_or(0));
        builder
            .secure_random(Deterministic::new(seed.to_vec()))
            .insecure_random(Deterministic::new(seed.to_vec()))
            .insecure_random_seed(u128::from_le_bytes(
                seed[..16].try_into().expect("32-byte seed"),
            ));
    }
    builder.build()
}

/// A clock that stands still at one instant for the whole call.
struct FixedClock(i64);

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.max(0) as u64)
    }
}

impl HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        (self.0.max(0) as u64).saturating_mul(1_000_000)
    }
}

//! Fresh-instance call benchmarks: every call is a new `Store`, an instantiation from the
//! pre-linked component, the call and the drop, exactly as production serves it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use payloom_host::{Call, CallContext, Plugin, Runtime};
use serde::Serialize;

/// Latency and throughput of one benchmarked call.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// What was measured.
    pub name: String,
    /// Calls measured (after warm-up).
    pub calls: usize,
    /// Concurrent callers.
    pub threads: usize,
    /// Median call latency (µs).
    pub p50_us: f64,
    /// 99th percentile call latency (µs).
    pub p99_us: f64,
    /// Completed calls per second across all callers.
    pub calls_per_sec: f64,
}

/// Calls made before measuring, to fault in code and heap images.
const WARMUP_CALLS: usize = 200;

/// Runs `calls` fresh-instance calls of `call` from `threads` concurrent tasks. Must run
/// on a multi-threaded tokio runtime with at least `threads` workers.
pub async fn fresh_instance(
    runtime: &Arc<Runtime>,
    plugin: &Arc<Plugin>,
    name: &str,
    ctx: CallContext,
    call: Call,
    calls: usize,
    threads: usize,
) -> anyhow::Result<BenchResult> {
    for _ in 0..WARMUP_CALLS {
        runtime.call(plugin, ctx.clone(), call.clone()).await?;
    }
    let per_thread = calls.div_ceil(threads);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..threads {
        let (runtime, plugin, ctx, call) =
            (runtime.clone(), plugin.clone(), ctx.clone(), call.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(per_thread);
            for _ in 0..per_thread {
                let t0 = Instant::now();
                runtime.call(&plugin, ctx.clone(), call.clone()).await?;
                samples.push(t0.elapsed());
            }
            anyhow::Ok(samples)
        }));
    }
    let mut samples = Vec::with_capacity(per_thread * threads);
    for task in tasks {
        samples.extend(task.await??);
    }
    Ok(summarize(name, samples, started.elapsed(), threads))
}

/// Percentiles and rate from per-call samples.
pub fn summarize(
    name: &str,
    mut samples: Vec<Duration>,
    wall: Duration,
    threads: usize,
) -> BenchResult {
    assert!(!samples.is_empty());
    samples.sort();
    let pick =
        |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    BenchResult {
        name: name.to_owned(),
        calls: samples.len(),
        threads,
        p50_us: pick(0.50),
        p99_us: pick(0.99),
        calls_per_sec: samples.len() as f64 / wall.as_secs_f64(),
    }
}

/// The floor: `Store` + instantiate + drop of an empty component on the same engine.
pub fn empty_component_floor(
    runtime: &Runtime,
    calls: usize,
    threads: usize,
) -> anyhow::Result<BenchResult> {
    use wasmtime::component::{Component, Linker};
    let engine = runtime.engine().clone();
    let component = Component::new(&engine, "(component)")?;
    let pre = Linker::<()>::new(&engine).instantiate_pre(&component)?;
    let per_thread = calls.div_ceil(threads);
    let started = Instant::now();
    let samples: Vec<Duration> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (engine, pre) = (&engine, &pre);
                scope.spawn(move || {
                    let mut samples = Vec::with_capacity(per_thread);
                    for _ in 0..per_thread {
                        let t0 = Instant::now();
                        let mut store = wasmtime::Store::new(engine, ());
                        pre.instantiate(&mut store)
                            .expect("empty component instantiates");
                        drop(store);
                        samples.push(t0.elapsed());
                    }
                    samples
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("bench thread"))
            .collect()
    });
    Ok(summarize(
        "empty component (store + instantiate + drop)",
        samples,
        started.elapsed(),
        threads,
    ))
}

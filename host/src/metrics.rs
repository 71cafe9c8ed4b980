//! Prometheus metrics per plugin id and version.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of every per-plugin series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    /// Plugin id.
    pub plugin: String,
    /// Plugin version.
    pub version: String,
}

/// Labels of the error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Plugin id.
    pub plugin: String,
    /// Plugin version.
    pub version: String,
    /// Error class.
    pub kind: ErrorKind,
}

/// Labels of the breaker gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakerLabels {
    /// Plugin id.
    pub plugin: String,
    /// Plugin version.
    pub version: String,
    /// `calls` (what payments go through) or `notifications` (PSP notifications).
    pub breaker: &'static str,
}

/// Why a call failed, as counted (label values `trap`, `timeout`, `memory`, `denied`,
/// `refused`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ErrorKind {
    /// The guest trapped (panic, unreachable, bad memory access).
    Trap,
    /// The deadline passed.
    Timeout,
    /// The memory cap was hit.
    Memory,
    /// The guest did something the host does not allow: an output or log cap.
    Denied,
    /// The host declined to run the call at all: the input cap, an open circuit breaker,
    /// no free slot before the deadline, shutdown. Not the plugin's fault, so the breaker
    /// does not count it.
    Refused,
}

impl ErrorKind {
    /// Every kind, for series that should read zero before the first error.
    pub const ALL: [Self; 5] = [
        Self::Trap,
        Self::Timeout,
        Self::Memory,
        Self::Denied,
        Self::Refused,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trap => "trap",
            Self::Timeout => "timeout",
            Self::Memory => "memory",
            Self::Denied => "denied",
            Self::Refused => "refused",
        }
    }
}

impl EncodeLabelValue for ErrorKind {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// Every plugin metric, registered once per process.
#[derive(Debug)]
pub struct PluginMetrics {
    /// `payloom_plugin_calls_total`
    pub calls: Family<PluginLabels, Counter>,
    /// `payloom_plugin_errors_total`
    pub errors: Family<ErrorLabels, Counter>,
    /// `payloom_plugin_call_duration_seconds`
    pub latency: Family<PluginLabels, Histogram>,
    /// `payloom_plugin_breaker_open`
    pub breaker_open: Family<BreakerLabels, Gauge>,
    /// `payloom_plugin_serving`
    pub serving: Family<PluginLabels, Gauge>,
    /// `payloom_plugin_canary_percent`
    pub canary_percent: Family<PluginLabels, Gauge>,
    /// `payloom_plugin_cache_rejected_total`
    pub cache_rejected: Counter,
}

/// Latency bucket bounds (s): 10 µs .. ~5 s, since fresh-instance calls take
/// microseconds and adapters wait on PSPs.
fn latency_bounds() -> impl Iterator<Item = f64> {
    LATENCY_BOUNDS.iter().copied()
}

/// Computed once: every plugin call places its latency among them.
static LATENCY_BOUNDS: std::sync::LazyLock<Vec<f64>> = std::sync::LazyLock::new(|| {
    prometheus_client::metrics::histogram::exponential_buckets(1e-5, 3.0, LATENCY_BUCKETS as u16)
        .collect()
});

const LATENCY_BUCKETS: usize = 13;

fn latency_histogram() -> Histogram {
    Histogram::new(latency_bounds())
}

/// One version's call latencies in the histogram's buckets, readable in process (the
/// Prometheus histogram's are not), so a node can report p50 / p99 for `plugin status`.
#[derive(Debug, Clone, Default)]
pub struct LatencySketch(Arc<[AtomicU64; LATENCY_BUCKETS + 1]>);

impl LatencySketch {
    pub fn observe(&self, seconds: f64) {
        let bucket = latency_bounds()
            .position(|bound| seconds <= bound)
            .unwrap_or(LATENCY_BUCKETS);
        self.0[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The `q` quantile in milliseconds, interpolated inside its bucket as Prometheus'
    /// `histogram_quantile` does; `None` before the first call.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self.0.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let bounds = &*LATENCY_BOUNDS;
        let rank = q * total as f64;
        let mut below = 0u64;
        for (i, &count) in counts.iter().enumerate() {
            if count > 0 && (below + count) as f64 >= rank {
                let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
                let upper = *bounds.get(i).unwrap_or(&bounds[LATENCY_BUCKETS - 1]);
                let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
                return Some((lower + (upper - lower) * within) * 1_000.0);
            }
            below += count;
        }
        Some(bounds[LATENCY_BUCKETS - 1] * 1_000.0)
    }
}

/// One plugin version's call counter and latency histogram, looked up once at load so
/// the per-call path does no label hashing.
#[derive(Debug, Clone)]
pub struct PluginSeries {
    /// Calls to this version.
    pub calls: Counter,
    /// Their latency.
    pub latency: Histogram,
    /// The same latencies, for in-process quantiles.
    pub sketch: LatencySketch,
    /// Whether the breaker payments go through is open.
    pub calls_breaker: Gauge,
    /// Whether the breaker PSP notifications go through is open.
    pub notifications_breaker: Gauge,
    /// Whether this version is the one its id serves (1) or not (0).
    pub serving: Gauge,
    /// The share of calls this version takes as a canary (0 when it is none).
    pub canary_percent: Gauge,
}

impl PluginMetrics {
    /// Failed calls of one version by kind, as counted so far.
    pub fn errors_of(
        &self,
        plugin: &str,
        version: &str,
    ) -> std::collections::BTreeMap<&'static str, u64> {
        ErrorKind::ALL
            .into_iter()
            .map(|kind| {
                let labels = ErrorLabels {
                    plugin: plugin.to_owned(),
                    version: version.to_owned(),
                    kind,
                };
                (kind.as_str(), self.errors.get_or_create(&labels).get())
            })
            .collect()
    }

    /// The series of one plugin version.
    pub fn series(&self, plugin: &str, version: &str) -> PluginSeries {
        let labels = PluginLabels {
            plugin: plugin.to_owned(),
            version: version.to_owned(),
        };
        // Zero errors of each kind is a reading too: an error-rate panel shows 0, not nothing.
        for kind in ErrorKind::ALL {
            self.errors.get_or_create_owned(&ErrorLabels {
                plugin: plugin.to_owned(),
                version: version.to_owned(),
                kind,
            });
        }
        let breaker = |breaker| {
            let labels = BreakerLabels {
                plugin: plugin.to_owned(),
                version: version.to_owned(),
                breaker,
            };
            self.breaker_open.get_or_create(&labels).clone()
        };
        PluginSeries {
            calls: self.calls.get_or_create(&labels).clone(),
            latency: self.latency.get_or_create(&labels).clone(),
            sketch: LatencySketch::default(),
            calls_breaker: breaker("calls"),
            notifications_breaker: breaker("notifications"),
            serving: self.serving.get_or_create(&labels).clone(),
            canary_percent: self.canary_percent.get_or_create(&labels).clone(),
        }
    }

    /// Creates the families and registers them.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            calls: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            breaker_open: Family::default(),
            serving: Family::default(),
            canary_percent: Family::default(),
            cache_rejected: Counter::default(),
        };
        registry.register(
            "payloom_plugin_calls",
            "Plugin calls",
            metrics.calls.clone(),
        );
        registry.register(
            "payloom_plugin_errors",
            "Failed plugin calls by kind",
            metrics.errors.clone(),
        );
        registry.register(
            "payloom_plugin_call_duration_seconds",
            "Wall time of plugin calls, instantiation included",
            metrics.latency.clone(),
        );
        registry.register(
            "payloom_plugin_breaker_open",
            "Whether a plugin version's circuit breaker is open (1) or closed (0)",
            metrics.breaker_open.clone(),
        );
        registry.register(
            "payloom_plugin_serving",
            "Whether a plugin version is the one its id serves on this node (1) or not (0)",
            metrics.serving.clone(),
        );
        registry.register(
            "payloom_plugin_canary_percent",
            "The percentage of calls a canary version takes on this node (0 when it is none)",
            metrics.canary_percent.clone(),
        );
        registry.register(
            "payloom_plugin_cache_rejected",
            "Precompiled cache entries discarded because they failed authentication or would not load",
            metrics.cache_rejected.clone(),
        );
        metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets_like_histogram_quantile() {
        let sketch = LatencySketch::default();
        assert_eq!(sketch.quantile_ms(0.5), None);
        // 90 calls of 50 µs (bucket 30..90 µs) and 10 of 2 ms (bucket 0.81..2.43 ms).
        for _ in 0..90 {
            sketch.observe(50e-6);
        }
        for _ in 0..10 {
            sketch.observe(2e-3);
        }
        let p50 = sketch.quantile_ms(0.5).unwrap();
        assert!((0.03..=0.09).contains(&p50), "{p50}");
        let p99 = sketch.quantile_ms(0.99).unwrap();
        assert!((0.81..=2.43).contains(&p99), "{p99}");
        // Beyond the last bound, the last bound is what is known.
        sketch.observe(100.0);
        assert!(sketch.quantile_ms(1.0).unwrap() <= 5_314.41 + 1e-6);
    }
}

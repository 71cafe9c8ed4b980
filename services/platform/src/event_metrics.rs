//! What the event fabric reports. An outbox relay: the events it published, and the age
//! of the oldest event waiting when it last read its outbox (an outbox that stops draining,
//! a broker down or a relay stuck, shows here first: the age climbs while every payment
//! still answers). A consumer: the events it handled, and how long after they occurred
//! their effects committed (for the ledger, how far its books trail the payments).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

/// The relays' series, one per service whose outbox this process relays.
#[derive(Clone, Default)]
pub struct OutboxMetrics {
    published: Family<ServiceLabel, Counter>,
    oldest_age: Family<ServiceLabel, Gauge<f64, AtomicU64>>,
}

impl OutboxMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "payloom_outbox_published",
            "Events relayed out of a service's outbox",
            metrics.published.clone(),
        );
        registry.register(
            "payloom_outbox_oldest_event_age_seconds",
            "Age of the oldest event waiting in a service's outbox when its relay last read it (0: empty)",
            metrics.oldest_age.clone(),
        );
        metrics
    }

    /// The relay read its outbox at `now_ms`; the oldest event waiting occurred at
    /// `oldest_ms`, or none waits.
    pub fn read(&self, service: &str, oldest_ms: Option<i64>, now_ms: i64) {
        let age = oldest_ms.map_or(0.0, |at| now_ms.saturating_sub(at).max(0) as f64 / 1000.0);
        self.oldest_age.get_or_create(&label(service)).set(age);
    }

    /// `count` events left the outbox.
    pub fn published(&self, service: &str, count: usize) {
        self.published
            .get_or_create(&label(service))
            .inc_by(count as u64);
    }

    /// The oldest-age gauge's value for `service` (tests).
    pub fn oldest_age(&self, service: &str) -> f64 {
        self.oldest_age.get_or_create(&label(service)).get()
    }

    /// The published counter's value for `service` (tests).
    pub fn published_count(&self, service: &str) -> u64 {
        self.published.get_or_create(&label(service)).get()
    }
}

fn label(service: &str) -> ServiceLabel {
    ServiceLabel {
        service: service.to_owned(),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabel {
    consumer: String,
}

fn lag_histogram() -> Histogram {
    // 5 ms .. ~3 min: in-process delivery takes milliseconds, a stalled broker minutes.
    Histogram::new(exponential_buckets(0.005, 3.0, 11))
}

/// The consumers' series. Unregistered (the default) it still counts, unseen.
#[derive(Clone)]
pub struct ConsumerMetrics {
    consumed: Family<ConsumerLabel, Counter>,
    lag: Family<ConsumerLabel, Histogram>,
}

impl Default for ConsumerMetrics {
    fn default() -> Self {
        Self {
            consumed: Family::default(),
            lag: Family::new_with_constructor(lag_histogram),
        }
    }
}

impl ConsumerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "payloom_events_consumed",
            "Events a consumer handled and committed",
            metrics.consumed.clone(),
        );
        registry.register(
            "payloom_event_consume_lag_seconds",
            "From an event occurring to its consumer committing what it means",
            metrics.lag.clone(),
        );
        metrics
    }

    /// `consumer` committed an event that occurred at `occurred_ms`; now is `now_ms`.
    pub fn committed(&self, consumer: &str, occurred_ms: i64, now_ms: i64) {
        let label = consumer_label(consumer);
        self.consumed.get_or_create(&label).inc();
        let lag = now_ms.saturating_sub(occurred_ms).max(0) as f64 / 1000.0;
        self.lag.get_or_create(&label).observe(lag);
    }

    /// Shows `consumer`'s series before its first event, so dashboards read zero.
    pub fn declare(&self, consumer: &str) {
        let label = consumer_label(consumer);
        self.consumed.get_or_create_owned(&label);
        self.lag.get_or_create_owned(&label);
    }

    /// The consumed counter's value for `consumer` (tests).
    pub fn consumed_count(&self, consumer: &str) -> u64 {
        self.consumed.get_or_create(&consumer_label(consumer)).get()
    }
}

fn consumer_label(consumer: &str) -> ConsumerLabel {
    ConsumerLabel {
        consumer: consumer.to_owned(),
    }
}

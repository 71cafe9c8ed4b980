//! What webhook delivery reports: every attempt's result, and, sampled from the database,
//! the backlog waiting (how many deliveries, and how long the oldest has waited) and the
//! endpoints disabled. A backlog that grows while attempts succeed means the workers cannot
//! keep up; disabled endpoints are merchants who no longer hear of their payments.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Unregistered (as a service starts) it still counts; [`WebhookMetrics::register`] shows
/// the same series on `/metrics`.
#[derive(Clone, Default)]
pub struct WebhookMetrics {
    attempts: Family<ResultLabel, Counter>,
    pending: Gauge,
    oldest_pending_age: Gauge<f64, AtomicU64>,
    endpoints_disabled: Gauge,
}

impl WebhookMetrics {
    pub fn register(&self, registry: &mut Registry) {
        for result in ["succeeded", "failed"] {
            self.attempts.get_or_create_owned(&ResultLabel { result });
        }
        registry.register(
            "payloom_webhook_attempts",
            "Webhook delivery attempts, by whether the receiver answered 2xx",
            self.attempts.clone(),
        );
        registry.register(
            "payloom_webhook_deliveries_pending",
            "Webhook deliveries waiting for their first or next attempt",
            self.pending.clone(),
        );
        registry.register(
            "payloom_webhook_oldest_pending_age_seconds",
            "How long the oldest pending webhook delivery has existed (0: none pending)",
            self.oldest_pending_age.clone(),
        );
        registry.register(
            "payloom_webhook_endpoints_disabled",
            "Webhook endpoints disabled after failing (410 Gone, or failing past the window)",
            self.endpoints_disabled.clone(),
        );
    }

    pub(crate) fn attempted(&self, succeeded: bool) {
        let result = if succeeded { "succeeded" } else { "failed" };
        self.attempts.get_or_create(&ResultLabel { result }).inc();
    }

    /// The backlog and disabled endpoints as last read, at `now_ms`.
    pub(crate) fn sampled(&self, pending: i64, oldest_ms: Option<i64>, disabled: i64, now_ms: i64) {
        self.pending.set(pending);
        let age = oldest_ms.map_or(0.0, |at| now_ms.saturating_sub(at).max(0) as f64 / 1000.0);
        self.oldest_pending_age.set(age);
        self.endpoints_disabled.set(disabled);
    }
}

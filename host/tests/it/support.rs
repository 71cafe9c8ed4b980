//! A builder-style test host and helpers shared by the test modules.

use std::sync::Arc;

use payloom_host::bindings::risk_types::{Context, Verdict};
use payloom_host::bindings::types::{CaptureMode, Customer, KeyValue, Money, Payment};
use payloom_host::capabilities::HostServices;
use payloom_host::capabilities::counters::MemoryCounters;
use payloom_host::capabilities::http::HttpClient;
use payloom_host::capabilities::lists::MemoryLists;
use payloom_host::{CallContext, CallFailure, CallReport, HostConfig, Registry, RiskCall, Runtime};
use payloom_reference_plugins::Bundled;
use prometheus_client::registry::Registry as Metrics;

/// A runtime + registry with test-friendly settings.
pub struct TestHost {
    pub registry: Arc<Registry>,
    pub counters: Arc<MemoryCounters>,
    pub lists: Arc<MemoryLists>,
    pub metrics: Metrics,
}

pub struct TestHostBuilder {
    config: HostConfig,
}

impl TestHostBuilder {
    pub fn config(mut self, f: impl FnOnce(&mut HostConfig)) -> Self {
        f(&mut self.config);
        self
    }

    pub fn build(self) -> TestHost {
        let counters = Arc::new(MemoryCounters::default());
        let lists = Arc::new(MemoryLists::default());
        let http = HttpClient::from_config(&self.config).unwrap();
        let services = HostServices {
            http: Arc::new(http),
            counters: counters.clone(),
            lists: lists.clone(),
        };
        let mut metrics = Metrics::default();
        let runtime = Runtime::new(self.config, services, &mut metrics).unwrap();
        TestHost {
            registry: Registry::new(runtime),
            counters,
            lists,
            metrics,
        }
    }
}

impl TestHost {
    pub fn builder() -> TestHostBuilder {
        let mut config = HostConfig {
            allow_unsigned: true,
            concurrent_calls_max: 16,
            ..HostConfig::default()
        };
        config.risk.deadline_ms = 200;
        TestHostBuilder { config }
    }

    pub async fn with(plugins: &[Bundled]) -> TestHost {
        let host = Self::builder().build();
        for plugin in plugins {
            host.install(plugin).await;
        }
        host
    }

    pub async fn install(&self, plugin: &Bundled) {
        self.registry
            .install(plugin.wasm, plugin.manifest, None)
            .await
            .unwrap();
    }

    pub async fn evaluate(
        &self,
        id: &str,
        ctx: Context,
        config: &[(&str, &str)],
    ) -> Result<CallReport, CallFailure> {
        let call_ctx = CallContext::default()
            .at(NOW_MS)
            .for_merchant(&ctx.payment.merchant_id);
        let call = RiskCall::Evaluate {
            ctx,
            config: kvs(config),
        };
        self.registry
            .call(id, call_ctx, payloom_host::Call::Risk(call))
            .await
    }

    pub async fn verdict(&self, id: &str, ctx: Context, config: &[(&str, &str)]) -> Verdict {
        let report = self.evaluate(id, ctx, config).await.unwrap();
        report
            .verdict()
            .cloned()
            .unwrap_or_else(|| panic!("no verdict: {:?}", report.reply))
    }

    pub fn metrics_text(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.metrics).unwrap();
        text
    }
}

/// The instant every test call runs at (2026-01-01T00:00:00Z).
pub const NOW_MS: i64 = 1_767_225_600_000;

pub fn kvs(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
    pairs
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.to_string(),
            value: v.to_string(),
        })
        .collect()
}

pub fn payment(amount_minor: i64, currency: &str) -> Payment {
    Payment {
        id: "pay_test1".into(),
        merchant_id: "mch_test".into(),
        order_no: "order-1".into(),
        amount: Money {
            amount_minor,
            currency: currency.into(),
        },
        method: "card".into(),
        capture: CaptureMode::Automatic,
        customer: Customer {
            email: Some("payer@example.com".into()),
            ip: Some("203.0.113.7".into()),
            country: Some("US".into()),
            device_id: Some("dev-1".into()),
            phone: None,
        },
        description: None,
        return_url: Some("https://shop.example/return".into()),
        metadata: vec![],
        created_at_ms: NOW_MS,
    }
}

pub fn risk_ctx(amount_minor: i64) -> Context {
    Context {
        payment: payment(amount_minor, "USD"),
        channel: None,
    }
}

/// A copy of `plugin` whose version strings read `to` instead of `from` (same length).
pub fn patched(plugin: &Bundled, from: &str, to: &str) -> (Vec<u8>, String) {
    plugin.relabelled(from, to)
}

//! The merchant-facing payment gateway.

pub mod api;
mod auth;
mod claims;
mod db;
mod events;
mod flow;
mod idempotency;
mod janitor;
pub mod metrics;
mod notify;
mod operations;
pub mod service;

use std::sync::Arc;
use std::time::Duration;

use payloom_accounting_contract::AccountingApi;
use payloom_channel_contract::ChannelApi;
use payloom_notification_contract::NotificationApi;

use payloom_merchant_auth_contract::MerchantAuthApi;
use payloom_order_contract::OrderApi;
use payloom_platform::Db;
use payloom_platform::cache::KeyStore;
use payloom_platform::clock::SharedClock;
use payloom_platform::db::Migration;
use payloom_platform::events::Outbox;
use payloom_policy_contract::PolicyApi;
use payloom_quota_contract::QuotaApi;
use payloom_risk_contract::RiskApi;
use serde::{Deserialize, Serialize};

pub use auth::{Authenticated, sign_request};

/// The service's name in migrations and the outbox.
pub const SERVICE: &str = "payment-gateway";

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "payments, refunds, idempotency keys",
        sql: include_str!("../migrations/0001_payments.sql"),
    },
    Migration {
        version: 2,
        name: "idempotency keys by age, for the retention sweep",
        sql: include_str!("../migrations/0002_idempotency_age.sql"),
    },
    Migration {
        version: 3,
        name: "re-query schedule of payments with an open outcome",
        sql: include_str!("../migrations/0003_requery.sql"),
    },
    Migration {
        version: 4,
        name: "re-query schedule of refunds with an open outcome",
        sql: include_str!("../migrations/0004_refund_requery.sql"),
    },
    Migration {
        version: 5,
        name: "idempotency leases and recovery points; capture and cancel claims",
        sql: include_str!("../migrations/0005_leases_and_claims.sql"),
    },
];

/// `[gateway]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct GatewayConfig {
    /// Largest request body accepted on `/v1`, in bytes.
    pub body_limit_bytes: usize,
    /// Unpaid payments expire after this unless the request says `expires_in`.
    pub expires_in_default_secs: i64,
    /// The longest `expires_in` a merchant may ask for.
    pub expires_in_max_secs: i64,
    /// How often unpaid payments past their expiry are swept, in milliseconds.
    pub expiry_sweep_interval_ms: u64,
    /// How long a request waits for a concurrent one holding the same Idempotency-Key.
    pub idempotency_wait_ms: u64,
    /// How long a finished Idempotency-Key is remembered, in seconds; after it the key
    /// is free again.
    pub idempotency_retention_secs: i64,
    /// How long a request in flight holds what it claimed (its Idempotency-Key, a capture
    /// or cancel), in seconds. Past it, a retry takes the key over and the janitor
    /// settles the claim with the PSP: longer than any request can run.
    pub lease_secs: i64,
    /// Largest PSP notification body, in bytes; larger ones are refused with 413 before
    /// any channel component sees them.
    pub notify_body_limit_bytes: usize,
    /// PSP notifications accepted per second from one source address.
    pub notify_per_source_per_sec: u64,
    /// Public base URL PSP notifications are sent to (`<base>/v1/notify/<channel>`).
    pub public_base_url: String,
    /// Seconds between re-queries of a payment whose outcome is open (`processing`, or
    /// `pending` at the PSP), counted from the last answer. After the last, the payment
    /// waits for a notification or an operator.
    pub requery_schedule_secs: Vec<u64>,
}

impl GatewayConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1024..=10 * 1024 * 1024).contains(&self.body_limit_bytes),
            "gateway.body_limit_bytes must be 1 KiB to 10 MiB"
        );
        anyhow::ensure!(
            self.expires_in_default_secs > 0
                && self.expires_in_default_secs <= self.expires_in_max_secs,
            "gateway.expires_in_default_secs must be positive and at most expires_in_max_secs"
        );
        anyhow::ensure!(
            self.idempotency_retention_secs >= 1,
            "gateway.idempotency_retention_secs must be at least 1"
        );
        anyhow::ensure!(
            (1..=3_600).contains(&self.lease_secs),
            "gateway.lease_secs must be 1 to 3600"
        );
        anyhow::ensure!(
            (1024..=1024 * 1024).contains(&self.notify_body_limit_bytes),
            "gateway.notify_body_limit_bytes must be 1 KiB to 1 MiB"
        );
        anyhow::ensure!(
            self.notify_per_source_per_sec >= 1,
            "gateway.notify_per_source_per_sec must be at least 1"
        );
        anyhow::ensure!(
            self.requery_schedule_secs.len() <= 50,
            "gateway.requery_schedule_secs has at most 50 steps"
        );
        anyhow::ensure!(
            self.expiry_sweep_interval_ms >= 100,
            "gateway.expiry_sweep_interval_ms must be at least 100"
        );
        Ok(())
    }
}

/// The services the gateway calls, in-process or over HTTP.
#[derive(Clone)]
pub struct Dependencies {
    pub auth: Arc<dyn MerchantAuthApi>,
    pub orders: Arc<dyn OrderApi>,
    pub quota: Arc<dyn QuotaApi>,
    pub policy: Arc<dyn PolicyApi>,
    pub risk: Arc<dyn RiskApi>,
    pub channels: Arc<dyn ChannelApi>,
    pub accounting: Arc<dyn AccountingApi>,
    pub notifications: Arc<dyn NotificationApi>,
    /// Rate-limit windows shared by every node (Redis in production).
    pub limits: Arc<dyn KeyStore>,
}

pub struct Gateway {
    db: Db,
    clock: SharedClock,
    config: GatewayConfig,
    deps: Dependencies,
    outbox: Outbox,
    metrics: metrics::PaymentMetrics,
}

impl Gateway {
    pub async fn new(
        db: Db,
        clock: SharedClock,
        config: GatewayConfig,
        deps: Dependencies,
        metrics: metrics::PaymentMetrics,
    ) -> anyhow::Result<Arc<Self>> {
        config.validate()?;
        db.migrate("payment-gateway", MIGRATIONS).await?;
        payloom_platform::events::install(&db).await?;
        Ok(Arc::new(Self {
            db,
            clock,
            config,
            deps,
            outbox: Outbox::new(SERVICE),
            metrics,
        }))
    }

    /// The outbox its relay publishes.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// How long a request in flight holds its key or claim, in milliseconds.
    pub(crate) fn lease_ms(&self) -> i64 {
        self.config.lease_secs * 1_000
    }

    /// When a payment whose outcome is still open after `attempts` re-queries is asked
    /// again; `None` once the schedule is spent.
    pub(crate) fn requery_at(&self, attempts: i64, now: i64) -> Option<i64> {
        self.config
            .requery_schedule_secs
            .get(attempts as usize)
            .map(|secs| now + *secs as i64 * 1_000)
    }

    /// Sweeps expired unpaid payments, re-queries open outcomes (the janitor) and forgets
    /// old idempotency keys, until the process ends.
    pub fn spawn_sweeps(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let gateway = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(
                gateway.config.expiry_sweep_interval_ms,
            ));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = gateway.expire_due().await {
                    tracing::warn!("expiry sweep failed: {e}");
                }
                if let Err(e) = gateway.requery_due().await {
                    tracing::warn!("janitor round failed: {e}");
                }
                if let Err(e) = gateway.forget_idempotency_keys().await {
                    tracing::warn!("idempotency key sweep failed: {e}");
                }
            }
        })
    }
}

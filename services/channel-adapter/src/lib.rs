//! Channel dispatch with sealed per-merchant credentials.

pub mod service;
mod wit;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::{Json, Router};
use payloom_host::capabilities::crypto::Key;
use payloom_host::{Call, CallContext, CallFailure, PluginKind, Registry, Reply};
use payloom_platform::cache::TtlCache;
use payloom_platform::clock::SharedClock;
use payloom_platform::db::Migration;
use payloom_platform::seal::MasterKey;
use payloom_platform::{ApiError, ApiJson, ApiResult, Db};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use sqlx::Row;

pub use payloom_channel_contract::{
    CHANNEL_UNAVAILABLE, CHANNEL_UNKNOWN, ChannelApi, ChannelCall, ChannelHttp, ChannelIn,
    ChannelOut, operations,
};

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "channel credentials",
    sql: include_str!("../migrations/0001_credentials.sql"),
}];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    channel: String,
    operation: &'static str,
}

/// Calls handed to channel components, by channel and operation
/// (`payloom_channel_calls_total`): what reached the PSP side, whatever it answered.
/// Calls the host refused to run (breaker open, no free slot) are not counted.
#[derive(Clone, Default)]
pub struct ChannelMetrics {
    calls: Family<CallLabels, Counter>,
}

impl ChannelMetrics {
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "payloom_channel_calls",
            "Calls run by channel components, by channel and operation",
            metrics.calls.clone(),
        );
        metrics
    }

    fn count(&self, channel: &str, operation: &'static str) {
        let labels = CallLabels {
            channel: channel.to_owned(),
            operation,
        };
        self.calls.get_or_create(&labels).inc();
    }
}

pub struct ChannelAdapter {
    db: Db,
    registry: Arc<Registry>,
    master_key: MasterKey,
    clock: SharedClock,
    /// Opened credentials by `merchant:channel`; setting them drops the entry here, other
    /// nodes follow within the TTL.
    opened: TtlCache<BTreeMap<String, String>>,
    metrics: ChannelMetrics,
}

/// How long a node keeps opened credentials.
const CREDENTIALS_CACHE_TTL_MS: i64 = 5_000;

/// Most credential entries per merchant and channel, and the longest value.
const CREDENTIAL_ENTRIES_MAX: usize = 32;
const CREDENTIAL_VALUE_LEN_MAX: usize = 8 * 1024;

impl ChannelAdapter {
    pub async fn new(
        db: Db,
        registry: Arc<Registry>,
        master_key: MasterKey,
        clock: SharedClock,
        metrics: ChannelMetrics,
    ) -> anyhow::Result<Arc<Self>> {
        db.migrate("channel-adapter", MIGRATIONS).await?;
        let opened = TtlCache::new(clock.clone(), CREDENTIALS_CACHE_TTL_MS);
        Ok(Arc::new(Self {
            db,
            registry,
            master_key,
            clock,
            opened,
            metrics,
        }))
    }

    fn seal_context(merchant_id: &str, channel: &str) -> String {
        format!("channel:{merchant_id}:{channel}")
    }

    async fn credentials(
        &self,
        merchant_id: &str,
        channel: &str,
    ) -> ApiResult<BTreeMap<String, String>> {
        let cache_key = format!("{merchant_id}:{channel}");
        if let Some(values) = self.opened.get(&cache_key) {
            return Ok(values);
        }
        let values = self.load_credentials(merchant_id, channel).await?;
        self.opened.insert(&cache_key, values.clone());
        Ok(values)
    }

    async fn load_credentials(
        &self,
        merchant_id: &str,
        channel: &str,
    ) -> ApiResult<BTreeMap<String, String>> {
        let row = sqlx::query(
            "SELECT sealed FROM channel_credentials WHERE merchant_id = $1 AND channel_id = $2",
        )
        .bind(merchant_id)
        .bind(channel)
        .fetch_optional(self.db.pool())
        .await?;
        let Some(row) = row else {
            return Ok(BTreeMap::new());
        };
        let sealed: String = row.try_get("sealed")?;
        let plain = self
            .master_key
            .open(&sealed, &Self::seal_context(merchant_id, channel))
            .map_err(ApiError::internal)?;
        serde_json::from_slice(&plain).map_err(ApiError::internal)
    }

    /// The call context for `channel`: only what the manifest of the version that will
    /// serve this merchant and `routing_key` names.
    async fn context(
        &self,
        merchant_id: &str,
        channel: &str,
        routing_key: Option<&str>,
    ) -> ApiResult<CallContext> {
        let plugin = self
            .registry
            .get_for(channel, Some(merchant_id), routing_key)
            .filter(|p| p.kind() == PluginKind::Channel)
            .ok_or_else(|| unknown_channel(channel))?;
        let mut credentials = self.credentials(merchant_id, channel).await?;
        let caps = &plugin.info().manifest.capabilities;
        let keys: Vec<(String, Key)> = caps
            .keys
            .iter()
            .filter_map(|name| {
                credentials
                    .get(name)
                    .map(|v| (name.clone(), Key::Hmac(v.as_bytes().to_vec())))
            })
            .collect();
        credentials.retain(|name, _| caps.secrets.contains(name));
        // The merchant picks a version bound to it; channels read no counters.
        let ctx = CallContext::default()
            .with_secrets(credentials)
            .with_keys(keys)
            .at(self.clock.now_ms())
            .for_merchant(merchant_id);
        Ok(match routing_key {
            Some(key) => ctx.routed_by(key),
            None => ctx,
        })
    }
}

fn unknown_channel(channel: &str) -> ApiError {
    ApiError::new(
        400,
        "invalid_request_error",
        CHANNEL_UNKNOWN,
        format!("no channel '{channel}' is available"),
    )
    .with_param("channel")
}

#[async_trait]
impl ChannelApi for ChannelAdapter {
    async fn call(&self, req: ChannelIn) -> ApiResult<ChannelOut> {
        let payment_id = req.call.payment_id().map(str::to_owned);
        let ctx = self
            .context(&req.merchant_id, &req.channel, payment_id.as_deref())
            .await?;
        let call = wit::call(req.call);
        let operation = call.name();
        let result = self
            .registry
            .call(&req.channel, ctx, Call::Channel(call))
            .await;
        if !matches!(&result, Err(f) if f.was_refused()) {
            self.metrics.count(&req.channel, operation);
        }
        match result {
            Ok(report) => match report.reply {
                Reply::Payment(r) => Ok(ChannelOut::Payment(wit::payment_answer(r))),
                Reply::Refund(r) => Ok(ChannelOut::Refund(wit::refund_answer(r))),
                Reply::Notification(r) => Ok(ChannelOut::Notification(wit::notification_answer(r))),
                other => Err(ApiError::internal(format!("channel answered {other:?}"))),
            },
            Err(CallFailure::NotFound { .. }) => Err(unknown_channel(&req.channel)),
            // The component never ran, so the PSP was never asked: safe to treat as not done.
            Err(failure) if failure.was_refused() => Err(ApiError::new(
                503,
                "api_error",
                CHANNEL_UNAVAILABLE,
                failure.to_string(),
            )),
            Err(failure) => Err(ApiError::new(
                502,
                "api_error",
                "channel_failed",
                failure.to_string(),
            )),
        }
    }

    async fn set_credentials(
        &self,
        merchant_id: &str,
        channel: &str,
        values: BTreeMap<String, String>,
    ) -> ApiResult<()> {
        if values.len() > CREDENTIAL_ENTRIES_MAX
            || values.values().any(|v| v.len() > CREDENTIAL_VALUE_LEN_MAX)
        {
            return Err(ApiError::invalid(
                "credentials",
                "at most 32 entries of up to 8 KiB each",
            ));
        }
        if values.keys().any(|k| k.is_empty() || k.len() > 64) {
            return Err(ApiError::invalid(
                "credentials",
                "names are 1 to 64 characters",
            ));
        }
        let plain = serde_json::to_vec(&values).map_err(ApiError::internal)?;
        let sealed = self
            .master_key
            .seal(&plain, &Self::seal_context(merchant_id, channel));
        sqlx::query(
            "INSERT INTO channel_credentials (merchant_id, channel_id, sealed, updated_at_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (merchant_id, channel_id) DO UPDATE SET sealed = excluded.sealed, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(merchant_id)
        .bind(channel)
        .bind(sealed)
        .bind(self.clock.now_ms())
        .execute(self.db.pool())
        .await?;
        self.opened.remove(&format!("{merchant_id}:{channel}"));
        Ok(())
    }
}

pub fn router(service: Arc<ChannelAdapter>) -> Router {
    let router = operations::CALL.route(Router::new(), call);
    let router = operations::SET_CREDENTIALS.route(router, set_credentials);
    operations::REPLACE_CREDENTIALS
        .route(router, set_credentials)
        .with_state(service)
}

async fn call(
    State(s): State<Arc<ChannelAdapter>>,
    ApiJson(req): ApiJson<ChannelIn>,
) -> ApiResult<Json<ChannelOut>> {
    s.call(req).await.map(Json)
}

async fn set_credentials(
    State(s): State<Arc<ChannelAdapter>>,
    Path((merchant, channel)): Path<(String, String)>,
    ApiJson(values): ApiJson<BTreeMap<String, String>>,
) -> ApiResult<Json<serde_json::Value>> {
    s.set_credentials(&merchant, &channel, values).await?;
    Ok(Json(
        serde_json::json!({"merchant_id": merchant, "channel": channel, "updated": true}),
    ))
}

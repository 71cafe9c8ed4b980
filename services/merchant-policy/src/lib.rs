//! Merchant policy: allow or deny, fee, limits and channel ranking, decided by a component.

pub mod service;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::{Json, Router};
use payloom_host::bindings::{channel_types as ch, policy_types as po, types};
use payloom_host::{
    Call, CallContext, CallFailure, ChannelCall, PluginKind, PolicyCall, Registry, Reply,
};
use payloom_platform::cache::TtlCache;
use payloom_platform::clock::SharedClock;
use payloom_platform::db::Migration;
use payloom_platform::{ApiError, ApiJson, ApiResult, Db};
use serde::{Deserialize, Serialize};
use sqlx::Row;

pub use payloom_policy_contract::{
    DecideIn, Decision, PolicyApi, PolicyHttp, PolicyIn, operations,
};

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "merchant policies",
    sql: include_str!("../migrations/0001_policies.sql"),
}];

/// `[policy]`: the component and configuration merchants get unless they have their own.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PolicyConfig {
    pub plugin: String,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// Most configuration entries a merchant's policy may have.
const POLICY_CONFIG_ENTRIES_MAX: usize = 64;

pub struct MerchantPolicy {
    db: Db,
    registry: Arc<Registry>,
    config: PolicyConfig,
    clock: SharedClock,
    /// Channel descriptors by component digest: a version describes itself once.
    described: Mutex<HashMap<String, po::ChannelOption>>,
    /// Each merchant's policy and configuration; `set_policy` drops the entry here, other
    /// nodes follow within the TTL.
    policies: TtlCache<(String, BTreeMap<String, String>)>,
}

/// How long a node keeps a merchant's policy row.
const POLICY_CACHE_TTL_MS: i64 = 5_000;

impl MerchantPolicy {
    pub async fn new(
        db: Db,
        registry: Arc<Registry>,
        config: PolicyConfig,
        clock: SharedClock,
    ) -> anyhow::Result<Arc<Self>> {
        db.migrate("merchant-policy", MIGRATIONS).await?;
        Ok(Arc::new(Self {
            db,
            registry,
            config,
            policies: TtlCache::new(clock.clone(), POLICY_CACHE_TTL_MS),
            clock,
            described: Mutex::new(HashMap::new()),
        }))
    }

    /// Gives `merchant_id` its own policy component and configuration.
    async fn store_policy(
        &self,
        merchant_id: &str,
        plugin: &str,
        config: &BTreeMap<String, String>,
    ) -> ApiResult<()> {
        let config = serde_json::to_string(config).map_err(ApiError::internal)?;
        sqlx::query(
            "INSERT INTO merchant_policies (merchant_id, plugin_id, config, updated_at_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (merchant_id) DO UPDATE SET plugin_id = excluded.plugin_id, config = excluded.config, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(merchant_id)
        .bind(plugin)
        .bind(config)
        .bind(self.clock.now_ms())
        .execute(self.db.pool())
        .await?;
        self.policies.remove(merchant_id);
        Ok(())
    }

    async fn policy_for(&self, merchant_id: &str) -> ApiResult<(String, BTreeMap<String, String>)> {
        if let Some(policy) = self.policies.get(merchant_id) {
            return Ok(policy);
        }
        let policy = self.load_policy(merchant_id).await?;
        self.policies.insert(merchant_id, policy.clone());
        Ok(policy)
    }

    async fn load_policy(
        &self,
        merchant_id: &str,
    ) -> ApiResult<(String, BTreeMap<String, String>)> {
        let row =
            sqlx::query("SELECT plugin_id, config FROM merchant_policies WHERE merchant_id = $1")
                .bind(merchant_id)
                .fetch_optional(self.db.pool())
                .await?;
        match row {
            Some(row) => {
                let config: String = row.try_get("config")?;
                Ok((
                    row.try_get("plugin_id")?,
                    serde_json::from_str(&config).map_err(ApiError::internal)?,
                ))
            }
            None => Ok((self.config.plugin.clone(), self.config.config.clone())),
        }
    }

    /// The loaded channel components, as the policy sees them.
    async fn channel_options(&self) -> Vec<po::ChannelOption> {
        let mut options = Vec::new();
        for row in self
            .registry
            .list()
            .into_iter()
            .filter(|r| r.kind == PluginKind::Channel)
        {
            let known = self
                .described
                .lock()
                .expect("descriptor cache")
                .get(&row.digest)
                .cloned();
            if let Some(option) = known {
                options.push(option);
                continue;
            }
            let call = Call::Channel(ChannelCall::Describe);
            if let Ok(report) = self
                .registry
                .call(&row.id, CallContext::default(), call)
                .await
                && let Reply::ChannelDescriptor(d) = report.reply
            {
                let option = describe_to_option(d);
                self.described
                    .lock()
                    .expect("descriptor cache")
                    .insert(row.digest, option.clone());
                options.push(option);
            }
        }
        options
    }
}

/// The policy's answer as the gateway uses it. A fee outside `0..=amount` is the policy's
/// mistake, not a price: the payment is denied rather than shown or booked with it.
fn decision_from(d: po::Decision, amount_minor: i64, plugin: String) -> Decision {
    let fee_minor = d.fee.amount_minor;
    if !(0..=amount_minor).contains(&fee_minor) {
        tracing::warn!(plugin, fee_minor, amount_minor, "policy fee out of range");
        return Decision {
            denied: Some(format!(
                "policy fee out of range: {fee_minor} on an amount of {amount_minor}"
            )),
            fee_minor: 0,
            channels: d.channels,
            plugin,
        };
    }
    Decision {
        denied: match d.verdict {
            po::Verdict::Allow => None,
            po::Verdict::Deny(reason) => Some(reason),
        },
        fee_minor,
        channels: d.channels,
        plugin,
    }
}

fn describe_to_option(d: ch::Descriptor) -> po::ChannelOption {
    po::ChannelOption {
        id: d.id,
        methods: d.methods,
        currencies: d.currencies,
        countries: d.countries,
    }
}

#[async_trait]
impl PolicyApi for MerchantPolicy {
    async fn set_policy(&self, merchant_id: &str, policy: PolicyIn) -> ApiResult<()> {
        let loaded = self
            .registry
            .get(&policy.plugin)
            .is_some_and(|p| p.kind() == PluginKind::Policy);
        if !loaded {
            return Err(ApiError::new(
                400,
                "invalid_request_error",
                "plugin_unknown",
                format!("no merchant-policy component '{}' is loaded", policy.plugin),
            )
            .with_param("plugin"));
        }
        if policy.config.len() > POLICY_CONFIG_ENTRIES_MAX
            || policy
                .config
                .iter()
                .any(|(k, v)| k.is_empty() || k.len() > 128 || v.len() > 1024)
        {
            return Err(ApiError::invalid(
                "config",
                "at most 64 entries, keys 1 to 128 and values up to 1024 characters",
            ));
        }
        self.store_policy(merchant_id, &policy.plugin, &policy.config)
            .await
    }

    async fn decide(&self, req: DecideIn) -> ApiResult<Decision> {
        let (plugin, config) = self.policy_for(&req.payment.merchant_id).await?;
        let channels = self.channel_options().await;
        let amount_minor = req.payment.amount.amount_minor;
        // The policy reads the counters of this payment's merchant only.
        let call_ctx = CallContext::default()
            .for_merchant(&req.payment.merchant_id)
            .routed_by(&req.payment.id);
        let all_channels: Vec<String> = channels.iter().map(|c| c.id.clone()).collect();
        let ctx = po::Context {
            payment: req.payment.into(),
            merchant_tier: req.tier,
            config: config
                .into_iter()
                .map(|(key, value)| types::KeyValue { key, value })
                .collect(),
            channels,
        };
        let call = Call::Policy(PolicyCall::Decide(ctx));
        match self.registry.call(&plugin, call_ctx, call).await {
            Ok(report) => match report.reply {
                Reply::Decision(Ok(d)) => Ok(decision_from(d, amount_minor, plugin)),
                Reply::Decision(Err(message)) => Err(ApiError::new(
                    503,
                    "api_error",
                    "policy_unavailable",
                    format!("policy `{plugin}` refused its configuration: {message}"),
                )),
                other => Err(ApiError::internal(format!("policy answered {other:?}"))),
            },
            // Failing open: no opinion, so allow at no fee across every channel.
            Err(CallFailure::Open { .. }) => Ok(Decision {
                denied: None,
                fee_minor: 0,
                channels: all_channels,
                plugin,
            }),
            Err(failure) => Err(ApiError::new(
                503,
                "api_error",
                "policy_unavailable",
                failure.to_string(),
            )),
        }
    }
}

pub fn router(service: Arc<MerchantPolicy>) -> Router {
    let router = operations::DECIDE.route(Router::new(), decide);
    operations::SET_POLICY
        .route(router, set_policy)
        .with_state(service)
}

async fn set_policy(
    State(s): State<Arc<MerchantPolicy>>,
    Path(id): Path<String>,
    ApiJson(policy): ApiJson<PolicyIn>,
) -> ApiResult<Json<serde_json::Value>> {
    s.set_policy(&id, policy).await?;
    Ok(Json(
        serde_json::json!({"merchant_id": id, "updated": true}),
    ))
}

async fn decide(
    State(s): State<Arc<MerchantPolicy>>,
    ApiJson(req): ApiJson<DecideIn>,
) -> ApiResult<Json<Decision>> {
    s.decide(req).await.map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(fee_minor: i64, verdict: po::Verdict) -> po::Decision {
        po::Decision {
            verdict,
            fee: types::Money {
                amount_minor: fee_minor,
                currency: "USD".into(),
            },
            channels: vec!["sandbox".into()],
            limits: po::Limits {
                min_minor: None,
                max_minor: None,
            },
        }
    }

    #[test]
    fn a_fee_outside_zero_to_the_amount_denies_the_payment() {
        for fee in [-1, i64::MIN, 1_001, i64::MAX] {
            let d = decision_from(decision(fee, po::Verdict::Allow), 1_000, "p".into());
            let reason = d.denied.unwrap_or_default();
            assert!(
                reason.starts_with("policy fee out of range"),
                "{fee}: {reason}"
            );
            assert_eq!(d.fee_minor, 0, "the bad fee is never passed on");
        }
    }

    #[test]
    fn fees_from_zero_to_the_whole_amount_pass_through() {
        for fee in [0, 59, 1_000] {
            let d = decision_from(decision(fee, po::Verdict::Allow), 1_000, "p".into());
            assert_eq!((d.denied, d.fee_minor), (None, fee));
        }
        let denied = decision_from(
            decision(10, po::Verdict::Deny("no".into())),
            1_000,
            "p".into(),
        );
        assert_eq!(
            (denied.denied.as_deref(), denied.fee_minor),
            (Some("no"), 10)
        );
    }
}

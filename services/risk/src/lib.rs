//! Risk decisions: an ordered set of rule components, aggregated and persisted.

mod counters;
pub mod metrics;
pub mod service;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::{Json, Router};
use payloom_host::bindings::{risk_types as ri, types};
use payloom_host::capabilities::counters::{CounterKey, Counters};
use payloom_host::{Call, CallContext, Registry, RiskCall};
use payloom_platform::clock::SharedClock;
use payloom_platform::db::Migration;
use payloom_platform::{ApiError, ApiJson, ApiResult, Db, ids};
use serde::{Deserialize, Serialize};
use sqlx::Row;

pub use payloom_risk_contract::{
    Action, EvaluateIn, RiskApi, RiskDecision, RiskHttp, RuleResult, StoredDecision, operations,
};

pub use crate::counters::RedisCounters;
pub use crate::metrics::RiskMetrics;

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "risk decisions",
    sql: include_str!("../migrations/0001_decisions.sql"),
}];

/// One rule of the set.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RuleConfig {
    /// The risk component's id.
    pub plugin: String,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// `[risk]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RiskConfig {
    /// Evaluated in order; every rule runs, so each decision explains itself fully.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Lists the rules read (`blocked-emails = ["…"]`), loaded at start.
    #[serde(default)]
    pub lists: BTreeMap<String, Vec<String>>,
}

pub struct Risk {
    db: Db,
    registry: Arc<Registry>,
    counters: Arc<dyn Counters>,
    config: RiskConfig,
    clock: SharedClock,
    metrics: RiskMetrics,
}

/// The counter fields velocity rules read, as `payments-by-<field>`.
const COUNTED_FIELDS: [&str; 4] = ["email", "ip", "device_id", "phone"];

impl Risk {
    /// `counters` must be the store the registry's plugins read.
    pub async fn new(
        db: Db,
        registry: Arc<Registry>,
        counters: Arc<dyn Counters>,
        config: RiskConfig,
        clock: SharedClock,
        metrics: RiskMetrics,
    ) -> anyhow::Result<Arc<Self>> {
        db.migrate("risk", MIGRATIONS).await?;
        Ok(Arc::new(Self {
            db,
            registry,
            counters,
            config,
            clock,
            metrics,
        }))
    }

    async fn run_rule(&self, rule: &RuleConfig, ctx: &ri::Context, now_ms: i64) -> RuleResult {
        let config = rule
            .config
            .iter()
            .map(|(k, v)| types::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        let call = Call::Risk(RiskCall::Evaluate {
            ctx: ctx.clone(),
            config,
        });
        let version = self
            .registry
            .get_for(
                &rule.plugin,
                Some(&ctx.payment.merchant_id),
                Some(&ctx.payment.id),
            )
            .map(|p| p.version().to_owned());
        // Rules read the counters of this payment's merchant only; a canary takes the
        // same payments on every evaluation.
        let call_ctx = CallContext::default()
            .at(now_ms)
            .for_merchant(&ctx.payment.merchant_id)
            .routed_by(&ctx.payment.id);
        let verdict = match self.registry.call(&rule.plugin, call_ctx, call).await {
            Ok(report) => match report.verdict() {
                Some(v) => v.clone(),
                None => ri::Verdict {
                    action: ri::Action::Block,
                    score: 0,
                    reasons: vec![format!(
                        "rule `{}` refused its configuration: {:?}",
                        rule.plugin, report.reply
                    )],
                },
            },
            // A missing rule is a misconfiguration: it blocks, like any rule failing closed.
            Err(failure) => failure.risk_verdict().unwrap_or_else(|| ri::Verdict {
                action: ri::Action::Block,
                score: 0,
                reasons: vec![format!("rule `{}` is not loaded", rule.plugin)],
            }),
        };
        RuleResult {
            rule: rule.plugin.clone(),
            version,
            action: match verdict.action {
                ri::Action::Allow => "allow",
                ri::Action::Review => "review",
                ri::Action::Block => "block",
                ri::Action::None => "none",
            }
            .into(),
            score: verdict.score,
            reasons: verdict.reasons,
        }
    }

    /// Counts this payment toward its merchant's counters, blocked ones included: an
    /// attempt is activity too.
    async fn record_counters(&self, payment: &types::Payment, now_ms: i64) -> ApiResult<()> {
        let c = &payment.customer;
        for (field, value) in COUNTED_FIELDS
            .iter()
            .zip([&c.email, &c.ip, &c.device_id, &c.phone])
        {
            let Some(value) = value else { continue };
            let key = CounterKey::new(&payment.merchant_id, &format!("payments-by-{field}"), value);
            if key.value().is_empty() {
                continue;
            }
            self.counters
                .record(&key, now_ms, payment.amount.amount_minor)
                .await
                .map_err(|e| {
                    tracing::error!("recording velocity counters: {e:#}");
                    ApiError::unavailable("risk counters are unavailable")
                })?;
        }
        Ok(())
    }
}

/// block > review > allow; abstentions do not count.
pub fn aggregate(rules: &[RuleResult]) -> Action {
    rules
        .iter()
        .filter_map(|r| match r.action.as_str() {
            "block" => Some(Action::Block),
            "review" => Some(Action::Review),
            "allow" => Some(Action::Allow),
            _ => None,
        })
        .max()
        .unwrap_or(Action::Allow)
}

impl Risk {
    /// A stored decision: why a payment was allowed, reviewed or blocked.
    pub async fn decision(&self, id: &str) -> ApiResult<StoredDecision> {
        let row = sqlx::query("SELECT * FROM risk_decisions WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| ApiError::not_found("risk decision", id))?;
        let action: String = row.try_get("action")?;
        let rules: String = row.try_get("rules")?;
        let score: i64 = row.try_get("score")?;
        Ok(StoredDecision {
            payment_id: row.try_get("payment_id")?,
            merchant_id: row.try_get("merchant_id")?,
            created_at_ms: row.try_get("created_at_ms")?,
            decision: RiskDecision {
                id: row.try_get("id")?,
                action: serde_json::from_value(serde_json::Value::String(action))
                    .map_err(ApiError::internal)?,
                score: u32::try_from(score).unwrap_or(u32::MAX),
                rules: serde_json::from_str(&rules).map_err(ApiError::internal)?,
            },
        })
    }
}

#[async_trait]
impl RiskApi for Risk {
    async fn evaluate(&self, req: EvaluateIn) -> ApiResult<RiskDecision> {
        let started = std::time::Instant::now();
        let now = self.clock.now_ms();
        let ctx = ri::Context {
            payment: req.payment.into(),
            channel: req.channel,
        };
        let mut rules = Vec::with_capacity(self.config.rules.len());
        for rule in &self.config.rules {
            rules.push(self.run_rule(rule, &ctx, now).await);
        }
        let decision = RiskDecision {
            id: ids::new_id("rd", now),
            action: aggregate(&rules),
            score: rules
                .iter()
                .map(|r| r.score)
                .fold(0u32, u32::saturating_add),
            rules,
        };
        // Counted before the decision is stored: a store that cannot count fails the
        // evaluation and leaves no decision behind.
        self.record_counters(&ctx.payment, now).await?;
        sqlx::query(
            "INSERT INTO risk_decisions (id, payment_id, merchant_id, action, score, rules, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&decision.id)
        .bind(&ctx.payment.id)
        .bind(&ctx.payment.merchant_id)
        .bind(decision.action.as_str())
        .bind(i64::from(decision.score))
        .bind(serde_json::to_string(&decision.rules).map_err(ApiError::internal)?)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        self.metrics.decided(
            decision.action,
            &decision.rules,
            started.elapsed().as_secs_f64(),
        );
        Ok(decision)
    }
}

pub fn router(service: Arc<Risk>) -> Router {
    let router = operations::EVALUATE.route(Router::new(), evaluate);
    operations::DECISION
        .route(router, get_decision)
        .with_state(service)
}

async fn get_decision(
    State(s): State<Arc<Risk>>,
    Path(id): Path<String>,
) -> ApiResult<Json<StoredDecision>> {
    s.decision(&id).await.map(Json)
}

async fn evaluate(
    State(s): State<Arc<Risk>>,
    ApiJson(req): ApiJson<EvaluateIn>,
) -> ApiResult<Json<RiskDecision>> {
    s.evaluate(req).await.map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(action: &str) -> RuleResult {
        RuleResult {
            rule: "r".into(),
            version: None,
            action: action.into(),
            score: 0,
            reasons: vec![],
        }
    }

    #[test]
    fn block_beats_review_beats_allow_and_none_abstains() {
        assert_eq!(aggregate(&[]), Action::Allow);
        assert_eq!(aggregate(&[result("none")]), Action::Allow);
        assert_eq!(
            aggregate(&[result("allow"), result("review")]),
            Action::Review
        );
        assert_eq!(
            aggregate(&[result("review"), result("block"), result("allow")]),
            Action::Block
        );
    }
}

//! What the risk service reports: each decision's outcome, each rule's result, and how
//! long a whole evaluation took. A rule that starts blocking everything, or a rule set
//! that gets slow, shows here before merchants call.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::{Action, RuleResult};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
    action: String,
}

#[derive(Clone)]
pub struct RiskMetrics {
    decisions: Family<DecisionLabels, Counter>,
    rules: Family<RuleLabels, Counter>,
    duration: Histogram,
}

impl Default for RiskMetrics {
    fn default() -> Self {
        Self {
            decisions: Family::default(),
            rules: Family::default(),
            // 100 µs .. ~2 s: rules run in microseconds, a budget is tens of milliseconds.
            duration: Histogram::new(exponential_buckets(1e-4, 3.0, 10)),
        }
    }
}

impl RiskMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        // Every outcome shows from the start, so a rate reads zero rather than nothing.
        for action in [Action::Allow, Action::Review, Action::Block] {
            metrics.decisions.get_or_create_owned(&DecisionLabels {
                action: action.as_str().to_owned(),
            });
        }
        registry.register(
            "payloom_risk_decisions",
            "Risk decisions stored, by outcome",
            metrics.decisions.clone(),
        );
        registry.register(
            "payloom_risk_rule_results",
            "Rule results within stored decisions, by rule and the action it asked for",
            metrics.rules.clone(),
        );
        registry.register(
            "payloom_risk_evaluation_seconds",
            "Wall time of one risk evaluation, every rule of the set included",
            metrics.duration.clone(),
        );
        metrics
    }

    /// A decision was stored after `seconds` of evaluation.
    pub(crate) fn decided(&self, action: Action, rules: &[RuleResult], seconds: f64) {
        self.decisions
            .get_or_create(&DecisionLabels {
                action: action.as_str().to_owned(),
            })
            .inc();
        for rule in rules {
            self.rules
                .get_or_create(&RuleLabels {
                    rule: rule.rule.clone(),
                    action: rule.action.clone(),
                })
                .inc();
        }
        self.duration.observe(seconds);
    }
}

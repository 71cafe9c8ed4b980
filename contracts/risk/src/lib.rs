//! risk's contract: what the gateway asks (allow, review or block this payment), the
//! decision with every rule's result, the stored decision operators read, the internal
//! API, its operations and its HTTP client. The gateway depends on this crate, not on the
//! service.

use async_trait::async_trait;
use payloom_payment_facts::Payment;
use payloom_platform::ApiResult;
use payloom_platform::client::ServiceClient;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Allow,
    Review,
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Review => "review",
            Self::Block => "block",
        }
    }
}

/// What one rule said.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuleResult {
    pub rule: String,
    pub version: Option<String>,
    /// `allow`, `review`, `block` or `none` (abstained).
    pub action: String,
    pub score: u32,
    pub reasons: Vec<String>,
}

/// The aggregated decision, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RiskDecision {
    pub id: String,
    pub action: Action,
    pub score: u32,
    pub rules: Vec<RuleResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvaluateIn {
    pub payment: Payment,
    pub channel: Option<String>,
}

#[async_trait]
pub trait RiskApi: Send + Sync {
    async fn evaluate(&self, req: EvaluateIn) -> ApiResult<RiskDecision>;
}

/// A decision as stored, with the payment it was made for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredDecision {
    pub payment_id: String,
    pub merchant_id: String,
    pub created_at_ms: i64,
    #[serde(flatten)]
    pub decision: RiskDecision,
}

/// [`RiskApi`] over HTTP.
pub struct RiskHttp(pub ServiceClient);

#[async_trait]
impl RiskApi for RiskHttp {
    async fn evaluate(&self, req: EvaluateIn) -> ApiResult<RiskDecision> {
        operations::EVALUATE.call(&self.0, &[], &req).await
    }
}

/// The internal operations, each declared once for the client and the router.
pub mod operations {
    use payloom_platform::operation::Operation;

    use super::{EvaluateIn, RiskDecision, StoredDecision};

    pub const EVALUATE: Operation<EvaluateIn, RiskDecision> =
        Operation::post("/internal/v1/risk/evaluate");
    /// Every rule's result of one decision, for operators and their tooling.
    pub const DECISION: Operation<(), StoredDecision> =
        Operation::get("/internal/v1/risk/decisions/{id}");
}

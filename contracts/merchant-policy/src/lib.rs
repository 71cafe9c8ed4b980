//! merchant-policy's contract: what the gateway asks (may this payment go, at what fee,
//! over which channels), a merchant's own policy, the internal API, its operations and
//! its HTTP client. The gateway and the admin console depend on this crate, not on the
//! service.

use std::collections::BTreeMap;

use async_trait::async_trait;
use payloom_payment_facts::Payment;
use payloom_platform::ApiResult;
use payloom_platform::client::ServiceClient;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecideIn {
    pub tier: String,
    pub payment: Payment,
}

/// What the policy decided.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Decision {
    /// `None` when allowed; otherwise why not.
    pub denied: Option<String>,
    pub fee_minor: i64,
    /// Channel ids to try, best first.
    pub channels: Vec<String>,
    pub plugin: String,
}

#[async_trait]
pub trait PolicyApi: Send + Sync {
    async fn decide(&self, req: DecideIn) -> ApiResult<Decision>;
    /// Gives a merchant its own policy component and configuration.
    async fn set_policy(&self, merchant_id: &str, policy: PolicyIn) -> ApiResult<()>;
}

/// A merchant's own policy: a loaded merchant-policy component and its configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyIn {
    pub plugin: String,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// [`PolicyApi`] over HTTP.
pub struct PolicyHttp(pub ServiceClient);

#[async_trait]
impl PolicyApi for PolicyHttp {
    async fn decide(&self, req: DecideIn) -> ApiResult<Decision> {
        operations::DECIDE.call(&self.0, &[], &req).await
    }
    async fn set_policy(&self, merchant_id: &str, policy: PolicyIn) -> ApiResult<()> {
        operations::SET_POLICY
            .call(&self.0, &[merchant_id], &policy)
            .await
            .map(drop)
    }
}

/// The internal operations, each declared once for the client and the router.
pub mod operations {
    use payloom_platform::operation::Operation;

    use super::{DecideIn, Decision, PolicyIn};

    pub const DECIDE: Operation<DecideIn, Decision> = Operation::post("/internal/v1/policy/decide");
    pub const SET_POLICY: Operation<PolicyIn, serde_json::Value> =
        Operation::post("/internal/v1/merchants/{id}/policy");
}

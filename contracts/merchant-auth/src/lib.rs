//! merchant-auth's contract: merchants, API keys and the verdict on a signed request;
//! the internal API, its operations and its HTTP client. The gateway and the admin
//! console depend on this crate, not on the service.

pub mod signing;

use async_trait::async_trait;
use payloom_platform::ApiResult;
use payloom_platform::client::ServiceClient;
use serde::{Deserialize, Serialize};

/// A merchant account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merchant {
    pub id: String,
    pub name: String,
    /// Pricing tier handed to the merchant's policy (`standard`, `premium`, …).
    pub tier: String,
    /// `active` or `suspended`.
    pub status: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MerchantIn {
    pub name: String,
    #[serde(default)]
    pub tier: Option<String>,
}

/// A new key. The secret appears here once and nowhere else.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKeyOut {
    pub key_id: String,
    pub secret: String,
    pub merchant_id: String,
}

/// The parts of a signed request the verifier needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyIn {
    pub key_id: String,
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
    pub method: String,
    pub path_and_query: String,
    pub body: String,
}

/// Who signed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifiedOut {
    pub merchant_id: String,
    pub tier: String,
    pub key_id: String,
}

/// What the rest of the platform asks of merchant-auth.
#[async_trait]
pub trait MerchantAuthApi: Send + Sync {
    async fn verify(&self, req: VerifyIn) -> ApiResult<VerifiedOut>;
    async fn create_merchant(&self, req: MerchantIn) -> ApiResult<Merchant>;
    async fn get_merchant(&self, id: &str) -> ApiResult<Merchant>;
    async fn create_api_key(&self, merchant_id: &str) -> ApiResult<ApiKeyOut>;
    async fn revoke_api_key(&self, merchant_id: &str, key_id: &str) -> ApiResult<()>;
}

/// The internal operations, each declared once for the client and the router.
pub mod operations {
    use payloom_platform::operation::Operation;
    use serde_json::Value;

    use super::{ApiKeyOut, Merchant, MerchantIn, VerifiedOut, VerifyIn};

    pub const VERIFY: Operation<VerifyIn, VerifiedOut> =
        Operation::post("/internal/v1/auth/verify");
    pub const CREATE_MERCHANT: Operation<MerchantIn, Merchant> =
        Operation::post("/internal/v1/merchants");
    pub const GET_MERCHANT: Operation<(), Merchant> = Operation::get("/internal/v1/merchants/{id}");
    pub const CREATE_API_KEY: Operation<Value, ApiKeyOut> =
        Operation::post("/internal/v1/merchants/{id}/api-keys");
    pub const REVOKE_API_KEY: Operation<Value, Value> =
        Operation::post("/internal/v1/merchants/{id}/api-keys/{key_id}/revoke");
}

/// [`MerchantAuthApi`] over HTTP.
pub struct MerchantAuthHttp(pub ServiceClient);

#[async_trait]
impl MerchantAuthApi for MerchantAuthHttp {
    async fn verify(&self, req: VerifyIn) -> ApiResult<VerifiedOut> {
        operations::VERIFY.call(&self.0, &[], &req).await
    }
    async fn create_merchant(&self, req: MerchantIn) -> ApiResult<Merchant> {
        operations::CREATE_MERCHANT.call(&self.0, &[], &req).await
    }
    async fn get_merchant(&self, id: &str) -> ApiResult<Merchant> {
        operations::GET_MERCHANT.call(&self.0, &[id], &()).await
    }
    async fn create_api_key(&self, merchant_id: &str) -> ApiResult<ApiKeyOut> {
        let empty = serde_json::json!({});
        operations::CREATE_API_KEY
            .call(&self.0, &[merchant_id], &empty)
            .await
    }
    async fn revoke_api_key(&self, merchant_id: &str, key_id: &str) -> ApiResult<()> {
        let empty = serde_json::json!({});
        operations::REVOKE_API_KEY
            .call(&self.0, &[merchant_id, key_id], &empty)
            .await
            .map(drop)
    }
}

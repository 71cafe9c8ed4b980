//! channel-adapter's contract: the operations the gateway runs on a channel for a
//! merchant (create, query, capture, cancel, refund, notifications) and what comes back,
//! the internal API, its operations and its HTTP client. The gateway and the admin
//! console depend on this crate, not on the service.

mod calls;

pub use calls::*;

use std::collections::BTreeMap;

use async_trait::async_trait;
use payloom_platform::ApiResult;
use payloom_platform::client::ServiceClient;
use serde::{Deserialize, Serialize};

/// One operation on a channel for a merchant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChannelIn {
    pub merchant_id: String,
    pub channel: String,
    pub call: ChannelCall,
}

/// What the component answered. `Err` is the component's own refusal (bad request,
/// credentials, unsupported); a call that never produced an answer is an `ApiError`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ChannelOut {
    Payment(Result<PaymentResponse, ChannelError>),
    Refund(Result<RefundResponse, ChannelError>),
    Notification(Result<NotificationResponse, ChannelError>),
}

#[async_trait]
pub trait ChannelApi: Send + Sync {
    /// Runs a payment or refund operation. 400 `channel_unknown` for a channel that is not
    /// loaded; 503 `channel_unavailable` when the host refused to run the component (the
    /// PSP was not called); 502 `channel_failed` when the component could not answer (the
    /// outcome at the PSP is then unknown).
    async fn call(&self, req: ChannelIn) -> ApiResult<ChannelOut>;
    async fn set_credentials(
        &self,
        merchant_id: &str,
        channel: &str,
        values: BTreeMap<String, String>,
    ) -> ApiResult<()>;
}

/// The error code of a call the host refused to run: the PSP was certainly not called.
pub const CHANNEL_UNAVAILABLE: &str = "channel_unavailable";

/// The error code of a call to a channel that is not loaded.
pub const CHANNEL_UNKNOWN: &str = "channel_unknown";

/// [`ChannelApi`] over HTTP.
pub struct ChannelHttp(pub ServiceClient);

#[async_trait]
impl ChannelApi for ChannelHttp {
    async fn call(&self, req: ChannelIn) -> ApiResult<ChannelOut> {
        operations::CALL.call(&self.0, &[], &req).await
    }
    async fn set_credentials(
        &self,
        merchant_id: &str,
        channel: &str,
        values: BTreeMap<String, String>,
    ) -> ApiResult<()> {
        operations::SET_CREDENTIALS
            .call(&self.0, &[merchant_id, channel], &values)
            .await
            .map(drop)
    }
}

/// The internal operations, each declared once for the client and the router.
pub mod operations {
    use std::collections::BTreeMap;

    use payloom_platform::operation::Operation;

    use super::{ChannelIn, ChannelOut};

    pub const CALL: Operation<ChannelIn, ChannelOut> =
        Operation::post("/internal/v1/channels/call");
    pub const SET_CREDENTIALS: Operation<BTreeMap<String, String>, serde_json::Value> =
        Operation::post("/internal/v1/merchants/{merchant}/channels/{channel}/credentials");
    /// The same as [`SET_CREDENTIALS`], for tooling that replaces with PUT.
    pub const REPLACE_CREDENTIALS: Operation<BTreeMap<String, String>, serde_json::Value> =
        Operation::put("/internal/v1/merchants/{merchant}/channels/{channel}/credentials");
}

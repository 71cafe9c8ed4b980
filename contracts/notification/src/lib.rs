//! notification's contract: webhook endpoints and the shape of their URLs, the event
//! types an endpoint subscribes to, deliveries with their attempt log, the internal API,
//! its operations and its HTTP client. The gateway and the admin console depend on this
//! crate, not on the service.

pub mod webhook_url;

use async_trait::async_trait;
use payloom_platform::ApiResult;
use payloom_platform::client::ServiceClient;
use serde::{Deserialize, Serialize};

/// The event types an endpoint can subscribe to.
pub const EVENT_TYPES: &[&str] = &[
    "payment.succeeded",
    "payment.failed",
    "payment.authorized",
    "payment.canceled",
    "payment.expired",
    "payment.pending",
    "payment.requires_action",
    "refund.succeeded",
    "refund.failed",
];

/// A webhook endpoint to create.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointIn {
    #[schema(schema_with = webhook_url::schema)]
    pub url: String,
    #[serde(default)]
    #[schema(schema_with = event_types_schema)]
    pub events: Option<Vec<String>>,
    /// Free text without U+0000, which no text column can hold.
    #[schema(min_length = 1, max_length = 500, pattern = r"^[^\u0000]*$")]
    pub description: Option<String>,
    /// Told by email when the endpoint is disabled: at most 254 characters, with an `@`
    /// and no whitespace or U+0000.
    #[schema(
        max_length = 254,
        pattern = r"^[^\t\n\x0B\f\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u0000]*@[^\t\n\x0B\f\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u0000]*$"
    )]
    pub alert_email: Option<String>,
}

fn event_types_schema() -> utoipa::openapi::schema::Schema {
    let literal = serde_json::json!({
        "type": ["array", "null"],
        "description": "Event types to receive; absent or empty means all of them.",
        "items": {"type": "string", "enum": EVENT_TYPES},
    });
    serde_json::from_value(literal).expect("the events schema literal is valid")
}

/// A webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EndpointOut {
    pub id: String,
    pub object: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub alert_email: Option<String>,
    /// `enabled`, `disabled` or `deleted`.
    pub status: String,
    pub disabled_reason: Option<String>,
    /// Only in the answer that creates the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptOut {
    pub attempt: i64,
    /// `scheduled` or `manual`.
    pub trigger: String,
    pub at_ms: i64,
    pub response_status: Option<i64>,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryOut {
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    pub endpoint_id: String,
    pub merchant_id: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at_ms: Option<i64>,
    pub delivered_at_ms: Option<i64>,
    pub log: Vec<AttemptOut>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    pub endpoint_id: Option<String>,
    pub event_id: Option<String>,
}

#[async_trait]
pub trait NotificationApi: Send + Sync {
    async fn create_endpoint(&self, merchant_id: &str, input: EndpointIn)
    -> ApiResult<EndpointOut>;
    async fn list_endpoints(&self, merchant_id: &str) -> ApiResult<Vec<EndpointOut>>;
    async fn delete_endpoint(&self, merchant_id: &str, id: &str) -> ApiResult<EndpointOut>;
    async fn deliveries(&self, query: DeliveryQuery) -> ApiResult<Vec<DeliveryOut>>;
    /// Sends one delivery again now, whatever its state; a failure is logged but not
    /// scheduled again.
    async fn resend(&self, delivery_id: &str) -> ApiResult<DeliveryOut>;
}

/// [`NotificationApi`] over HTTP.
pub struct NotificationHttp(pub ServiceClient);

#[async_trait]
impl NotificationApi for NotificationHttp {
    async fn create_endpoint(
        &self,
        merchant_id: &str,
        input: EndpointIn,
    ) -> ApiResult<EndpointOut> {
        operations::CREATE_ENDPOINT
            .call(&self.0, &[merchant_id], &input)
            .await
    }
    async fn list_endpoints(&self, merchant_id: &str) -> ApiResult<Vec<EndpointOut>> {
        operations::LIST_ENDPOINTS
            .call(&self.0, &[merchant_id], &())
            .await
    }
    async fn delete_endpoint(&self, merchant_id: &str, id: &str) -> ApiResult<EndpointOut> {
        operations::DELETE_ENDPOINT
            .call(&self.0, &[merchant_id, id], &())
            .await
    }
    async fn deliveries(&self, query: DeliveryQuery) -> ApiResult<Vec<DeliveryOut>> {
        let filter = match (&query.endpoint_id, &query.event_id) {
            (Some(e), _) => ("endpoint_id", e.as_str()),
            (None, Some(e)) => ("event_id", e.as_str()),
            (None, None) => ("endpoint_id", ""),
        };
        operations::DELIVERIES
            .call_with_query(&self.0, &[], &[filter], &())
            .await
    }
    async fn resend(&self, delivery_id: &str) -> ApiResult<DeliveryOut> {
        operations::RESEND.call(&self.0, &[delivery_id], &()).await
    }
}

/// The internal operations, each declared once for the client and the router.
pub mod operations {
    use payloom_platform::operation::Operation;

    use super::{DeliveryOut, EndpointIn, EndpointOut};

    pub const CREATE_ENDPOINT: Operation<EndpointIn, EndpointOut> =
        Operation::post("/internal/v1/merchants/{merchant_id}/webhook_endpoints");
    pub const LIST_ENDPOINTS: Operation<(), Vec<EndpointOut>> =
        Operation::get("/internal/v1/merchants/{merchant_id}/webhook_endpoints");
    pub const DELETE_ENDPOINT: Operation<(), EndpointOut> =
        Operation::delete("/internal/v1/merchants/{merchant_id}/webhook_endpoints/{id}");
    /// Filtered by `?endpoint_id=` or `?event_id=`.
    pub const DELIVERIES: Operation<(), Vec<DeliveryOut>> =
        Operation::get("/internal/v1/webhook_deliveries");
    pub const RESEND: Operation<(), DeliveryOut> =
        Operation::post("/internal/v1/webhook_deliveries/{id}/resend");
}

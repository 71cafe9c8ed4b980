//! What the merchant API answers about payments and refunds: the objects the gateway's
//! routes return, and what its events carry (so a consumer that reads them compiles
//! against the same types the gateway writes).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa::openapi::schema::Schema;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaptureMode {
    #[default]
    Automatic,
    Manual,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    #[default]
    Pending,
    RequiresAction,
    Processing,
    Authorized,
    /// A capture was sent to the channel and its answer is not recorded yet.
    Capturing,
    /// A cancel was sent to the channel and its answer is not recorded yet.
    Canceling,
    Succeeded,
    Failed,
    Canceled,
    Expired,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::RequiresAction => "requires_action",
            Self::Processing => "processing",
            Self::Authorized => "authorized",
            Self::Capturing => "capturing",
            Self::Canceling => "canceling",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.to_owned())).ok()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    #[default]
    Pending,
    Succeeded,
    Failed,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.to_owned())).ok()
    }
}

/// Who pays. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    /// At most 254 characters, with an `@` and no whitespace or U+0000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        max_length = 254,
        pattern = r"^[^\t\n\x0B\f\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u0000]*@[^\t\n\x0B\f\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u0000]*$"
    )]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = ip_address_schema)]
    pub ip: Option<String>,
    /// ISO 3166-1 alpha-2, upper case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Z]{2}$")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128)]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 32)]
    pub phone: Option<String>,
}

/// What the customer must do next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NextAction {
    Redirect { url: String },
    QrCode { data: String },
    SdkParams { params: BTreeMap<String, String> },
}

/// A payment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentOut {
    pub id: String,
    /// Always `payment`.
    pub object: String,
    pub order_no: String,
    pub amount: i64,
    pub currency: String,
    pub status: PaymentStatus,
    pub capture: CaptureMode,
    pub method: String,
    pub channel: Option<String>,
    pub channel_reference: Option<String>,
    pub amount_captured: i64,
    pub amount_refunded: i64,
    /// The fee the merchant policy set, in minor units.
    pub fee: i64,
    pub customer: Customer,
    pub description: Option<String>,
    pub return_url: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub next_action: Option<NextAction>,
    /// Why it failed: `risk_blocked`, `policy_denied`, a channel decline code, ….
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub risk_decision_id: Option<String>,
    /// `allow`, `review` or `block`.
    pub risk_action: Option<String>,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A refund.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RefundOut {
    pub id: String,
    /// Always `refund`.
    pub object: String,
    pub payment_id: String,
    pub amount: i64,
    pub currency: String,
    pub status: RefundStatus,
    pub reason: Option<String>,
    pub channel_reference: Option<String>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

fn ip_address_schema() -> Schema {
    schema(json!({
        "description": "An IPv4 or IPv6 address.",
        "oneOf": [
            {"type": "null"},
            {"type": "string", "format": "ipv4"},
            {"type": "string", "format": "ipv6"},
        ],
    }))
}

fn schema(literal: Value) -> Schema {
    serde_json::from_value(literal).expect("a schema literal of this module is valid")
}

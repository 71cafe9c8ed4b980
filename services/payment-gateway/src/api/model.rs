//! The request and response types of merchant API v1. The OpenAPI document is generated
//! from these definitions, so they are the contract.

use std::collections::BTreeMap;

use payloom_platform::{ApiError, ApiResult, money};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Largest amount accepted, in minor units (10 billion major units of a 2-decimal currency).
pub const AMOUNT_MINOR_MAX: i64 = 1_000_000_000_000;
const ORDER_NO_LEN_MAX: usize = 64;
const DESCRIPTION_LEN_MAX: usize = 1_000;
const URL_LEN_MAX: usize = 2_048;
const METADATA_KEYS_MAX: usize = 50;
const METADATA_KEY_LEN_MAX: usize = 40;
const METADATA_VALUE_LEN_MAX: usize = 500;
const METHOD_DATA_KEYS_MAX: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaptureMode {
    Automatic,
    Manual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    RequiresAction,
    Processing,
    Authorized,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
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

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// ISO 3166-1 alpha-2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

/// `POST /v1/payments`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentIn {
    /// The merchant's order number; one payment per order number.
    pub order_no: String,
    /// Integer minor units (cents for USD, yen for JPY). Positive.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// A channel id; unset lets the merchant policy route.
    #[serde(default)]
    pub channel: Option<String>,
    /// Payment method, `card` unless set.
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub capture: Option<CaptureMode>,
    #[serde(default)]
    pub customer: Option<Customer>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub return_url: Option<String>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Seconds until an unpaid payment expires.
    #[serde(default)]
    pub expires_in: Option<i64>,
    /// Method details passed to the channel as-is (the sandbox reads `card.number`).
    #[serde(default)]
    pub method_data: Option<BTreeMap<String, String>>,
}

/// A payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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

/// `POST /v1/payments/{id}/capture`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureIn {
    /// Minor units to capture; the whole authorized amount when unset.
    #[serde(default)]
    pub amount: Option<i64>,
}

/// `POST /v1/payments/{id}/refunds`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundIn {
    /// Minor units; at most what is captured and not yet refunded.
    pub amount: i64,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A page of webhook endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookEndpointList {
    pub data: Vec<payloom_notification::EndpointOut>,
    pub has_more: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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

/// A page of a list, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PaymentList {
    pub data: Vec<PaymentOut>,
    pub has_more: bool,
}

/// The error shape.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorOut {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// `invalid_request_error`, `authentication_error`, `idempotency_error`, `quota_error`, `api_error`.
    #[serde(rename = "type")]
    pub kind: String,
    pub code: String,
    pub message: String,
    pub param: Option<String>,
}

/// Checks that `field` of a JSON object is an integer (or absent, unless `required`), with
/// a message that says what was wrong (serde would only say "expected i64").
pub fn integer_field(body: &Value, field: &str, required: bool) -> ApiResult<()> {
    // Not an object: `from_body` says so.
    let Some(body) = body.as_object() else {
        return Ok(());
    };
    match body.get(field) {
        None | Some(Value::Null) if required => {
            Err(ApiError::invalid(field, format!("{field} is required")))
        }
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(n)) if n.is_i64() => Ok(()),
        Some(Value::Number(n)) if n.is_u64() => {
            Err(ApiError::invalid(field, format!("{field} is too large")))
        }
        Some(Value::Number(_)) => Err(ApiError::invalid(
            field,
            format!("{field} must be an integer number of minor units, not a fraction"),
        )),
        Some(Value::String(_)) => Err(ApiError::invalid(
            field,
            format!("{field} must be a JSON integer, not a string"),
        )),
        Some(_) => Err(ApiError::invalid(
            field,
            format!("{field} must be an integer"),
        )),
    }
}

/// Deserializes a checked body, naming the parameter serde complains about.
pub fn from_body<T: serde::de::DeserializeOwned>(body: Value) -> ApiResult<T> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "body_invalid",
            "the body must be a JSON object",
        ));
    }
    // From text: serde_json's own deserializer lets the path of a bad field be tracked.
    let text = body.to_string();
    let mut deserializer = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // A missing field is reported at its parent, named only in the message.
        let missing = message
            .split("missing field `")
            .nth(1)
            .and_then(|rest| rest.split('`').next());
        let param = match (path.as_str(), missing) {
            (".", Some(field)) => Some(field.to_owned()),
            (parent, Some(field)) => Some(format!("{parent}.{field}")),
            (".", None) => None,
            (path, None) => Some(path.to_owned()),
        };
        let message = match &param {
            Some(p) => format!("{p}: {message}"),
            None => message,
        };
        ApiError {
            param,
            ..ApiError::bad_request("parameter_invalid", message)
        }
    })
}

pub fn check_amount(field: &str, amount: i64) -> ApiResult<()> {
    if amount <= 0 {
        return Err(ApiError::invalid(
            field,
            format!("{field} must be a positive integer of minor units"),
        ));
    }
    if amount > AMOUNT_MINOR_MAX {
        return Err(ApiError::invalid(
            field,
            format!("{field} must be at most {AMOUNT_MINOR_MAX}"),
        ));
    }
    Ok(())
}

fn check_len(field: &str, value: &str, max: usize) -> ApiResult<()> {
    if value.is_empty() || value.len() > max {
        return Err(ApiError::invalid(
            field,
            format!("{field} must be 1 to {max} characters"),
        ));
    }
    Ok(())
}

fn check_url(field: &str, value: &str) -> ApiResult<()> {
    check_len(field, value, URL_LEN_MAX)?;
    if !(value.starts_with("https://") || value.starts_with("http://"))
        || value.contains(char::is_whitespace)
    {
        return Err(ApiError::invalid(
            field,
            format!("{field} must be an http(s) URL"),
        ));
    }
    Ok(())
}

fn check_map(field: &str, map: &BTreeMap<String, String>, keys_max: usize) -> ApiResult<()> {
    if map.len() > keys_max {
        return Err(ApiError::invalid(
            field,
            format!("{field} holds at most {keys_max} keys"),
        ));
    }
    for (k, v) in map {
        check_len(field, k, METADATA_KEY_LEN_MAX)?;
        if v.len() > METADATA_VALUE_LEN_MAX {
            return Err(ApiError::invalid(
                field,
                format!("{field} values are at most {METADATA_VALUE_LEN_MAX} characters"),
            ));
        }
    }
    Ok(())
}

fn check_customer(c: &Customer) -> ApiResult<()> {
    if let Some(email) = &c.email
        && (email.len() > 254 || !email.contains('@') || email.contains(char::is_whitespace))
    {
        return Err(ApiError::invalid(
            "customer.email",
            "customer.email is not an email address",
        ));
    }
    if let Some(ip) = &c.ip
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        return Err(ApiError::invalid(
            "customer.ip",
            "customer.ip is not an IP address",
        ));
    }
    if let Some(country) = &c.country
        && (country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()))
    {
        return Err(ApiError::invalid(
            "customer.country",
            "customer.country is an ISO 3166-1 alpha-2 code like US",
        ));
    }
    if let Some(device) = &c.device_id {
        check_len("customer.device_id", device, 128)?;
    }
    if let Some(phone) = &c.phone {
        check_len("customer.phone", phone, 32)?;
    }
    Ok(())
}

impl PaymentIn {
    /// Checks every field; normalises the currency to upper case.
    pub fn validate(&mut self, expires_in_max_secs: i64) -> ApiResult<()> {
        check_len("order_no", &self.order_no, ORDER_NO_LEN_MAX)?;
        if !self.order_no.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::invalid(
                "order_no",
                "order_no is printable ASCII without spaces",
            ));
        }
        check_amount("amount", self.amount)?;
        self.currency = self.currency.to_ascii_uppercase();
        if money::currency(&self.currency).is_none() {
            return Err(ApiError::new(
                400,
                "invalid_request_error",
                "currency_invalid",
                format!("'{}' is not a supported ISO 4217 currency", self.currency),
            )
            .with_param("currency"));
        }
        if let Some(channel) = &self.channel {
            check_len("channel", channel, 64)?;
        }
        if let Some(method) = &self.method
            && (method.is_empty()
                || method.len() > 32
                || !method.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        {
            return Err(ApiError::invalid(
                "method",
                "method is 1 to 32 lower-case letters or underscores",
            ));
        }
        if let Some(c) = &self.customer {
            check_customer(c)?;
        }
        if let Some(d) = &self.description {
            check_len("description", d, DESCRIPTION_LEN_MAX)?;
        }
        if let Some(url) = &self.return_url {
            check_url("return_url", url)?;
        }
        if let Some(m) = &self.metadata {
            check_map("metadata", m, METADATA_KEYS_MAX)?;
        }
        if let Some(m) = &self.method_data {
            check_map("method_data", m, METHOD_DATA_KEYS_MAX)?;
        }
        if let Some(secs) = self.expires_in
            && !(1..=expires_in_max_secs).contains(&secs)
        {
            return Err(ApiError::invalid(
                "expires_in",
                format!("expires_in must be 1 to {expires_in_max_secs} seconds"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_errors_name_the_parameter() {
        let wrong_type = from_body::<PaymentIn>(
            serde_json::json!({"order_no": "a", "amount": 1, "currency": 840}),
        )
        .unwrap_err();
        assert_eq!(
            wrong_type.param.as_deref(),
            Some("currency"),
            "{wrong_type:?}"
        );
        let missing = from_body::<PaymentIn>(serde_json::json!({"amount": 1, "currency": "USD"}))
            .unwrap_err();
        assert_eq!(missing.param.as_deref(), Some("order_no"));
        let nested = from_body::<PaymentIn>(serde_json::json!({"order_no": "a", "amount": 1, "currency": "USD", "customer": {"email": 5}})).unwrap_err();
        assert_eq!(nested.param.as_deref(), Some("customer.email"));
        let unknown = from_body::<PaymentIn>(serde_json::json!({"order_no": "a", "amount": 1, "currency": "USD", "customer": {"shoe": "9"}})).unwrap_err();
        assert_eq!(unknown.param.as_deref(), Some("customer.shoe"));
    }
}

//! The facts of a payment that the gateway hands to merchant-policy, risk and
//! channel-adapter. They mirror the WIT `types` interface field for field, but they are
//! the services' own types: the plugin host converts them at the component boundary, so
//! a change to the WIT package is a change to one conversion, not to every caller.

use serde::{Deserialize, Serialize};

/// An amount in integer minor units of an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// What the merchant told us about the payer; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub email: Option<String>,
    pub ip: Option<String>,
    pub country: Option<String>,
    pub device_id: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaptureMode {
    Automatic,
    Manual,
}

/// A payment as the services behind the gateway see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub id: String,
    pub merchant_id: String,
    pub order_no: String,
    pub amount: Money,
    pub method: String,
    pub capture: CaptureMode,
    pub customer: Customer,
    pub description: Option<String>,
    pub return_url: Option<String>,
    pub metadata: Vec<KeyValue>,
    pub created_at_ms: i64,
}

//! The operations a channel runs for the gateway and what it answers. They mirror the
//! WIT `channel` interface, but they are the services' own types: channel-adapter
//! converts them at the component boundary, so the WIT package is not the wire format
//! between services.

use payloom_payment_facts::{KeyValue, Money, Payment};
use serde::{Deserialize, Serialize};

/// One operation on a channel. Describing a channel and parsing statements are the
/// adapter's own business and not on offer to other services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call", content = "input", rename_all = "kebab-case")]
// Moved once per call; boxing the big variants would add an allocation instead.
#[allow(clippy::large_enum_variant)]
pub enum ChannelCall {
    CreatePayment(CreateRequest),
    QueryPayment(PaymentRef),
    Capture(PaymentRef),
    Cancel(PaymentRef),
    Refund(RefundRequest),
    QueryRefund(RefundRef),
    HandleNotification(Notification),
}

impl ChannelCall {
    /// The payment the call is about. A refund query names only its refund, and a
    /// notification nothing until it is verified: those go to the active version.
    pub fn payment_id(&self) -> Option<&str> {
        match self {
            Self::CreatePayment(r) => Some(&r.payment.id),
            Self::QueryPayment(r) | Self::Capture(r) | Self::Cancel(r) => Some(&r.payment_id),
            Self::Refund(r) => Some(&r.payment_id),
            Self::QueryRefund(_) | Self::HandleNotification(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateRequest {
    pub payment: Payment,
    pub method_data: Vec<KeyValue>,
    /// Where the PSP reports the outcome.
    pub notify_url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentRef {
    pub payment_id: String,
    /// The PSP's own reference, once it has given one.
    pub reference: Option<String>,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundRequest {
    pub refund_id: String,
    pub payment_id: String,
    pub payment_reference: Option<String>,
    pub amount: Money,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundRef {
    pub refund_id: String,
    pub reference: Option<String>,
    pub amount: Money,
}

/// A PSP's notification as it reached us.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub method: String,
    pub path: String,
    pub headers: Vec<KeyValue>,
    pub body: Vec<u8>,
}

/// What the payer must do next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NextAction {
    Redirect(String),
    QrCode(String),
    SdkParams(Vec<KeyValue>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decline {
    pub code: String,
    pub message: String,
}

/// Where a payment stands at the PSP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Succeeded,
    Pending,
    RequiresAction(NextAction),
    Authorized,
    Declined(Decline),
    Canceled,
    /// The PSP could not say; the text is why.
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentResponse {
    pub outcome: Outcome,
    pub reference: Option<String>,
    pub amount: Money,
}

/// Where a refund stands at the PSP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RefundOutcome {
    Succeeded,
    Pending,
    Declined(Decline),
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundResponse {
    pub outcome: RefundOutcome,
    pub reference: Option<String>,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentUpdate {
    pub payment_id: String,
    pub reference: Option<String>,
    pub outcome: Outcome,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundUpdate {
    pub refund_id: String,
    pub reference: Option<String>,
    pub outcome: RefundOutcome,
    pub amount: Money,
}

/// What a notification said happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NotificationEvent {
    Payment(PaymentUpdate),
    Refund(RefundUpdate),
    Ignored,
}

/// The notification's meaning and the acknowledgement the PSP expects back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationResponse {
    pub event: NotificationEvent,
    pub ack_status: u16,
    pub ack_body: Vec<u8>,
}

/// The channel's own refusal of an operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ChannelError {
    InvalidRequest(String),
    Unauthorized(String),
    Unsupported(String),
    Upstream(String),
}

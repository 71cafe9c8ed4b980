//! The gateway's rows and how they read.

use std::collections::BTreeMap;

use payloom_platform::{ApiError, ApiResult};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::api::model::{
    CaptureMode, Customer, NextAction, PaymentOut, PaymentStatus, RefundOut, RefundStatus,
};

/// Every payment column, in the order [`payment_from_row`] reads them.
pub(crate) const PAYMENT_COLUMNS: &str = "id, merchant_id, order_id, order_no, amount_minor, currency, status, capture_method, method, channel, channel_reference, amount_captured_minor, amount_refunded_minor, fee_minor, customer, description, return_url, metadata, next_action, failure_code, failure_message, risk_decision_id, risk_action, quota_reservation_id, expires_at_ms, created_at_ms, updated_at_ms";

/// A payment row with the internal columns the API does not show.
#[derive(Debug, Clone)]
pub(crate) struct PaymentRow {
    pub out: PaymentOut,
    pub merchant_id: String,
    pub order_id: Option<String>,
    pub quota_reservation_id: Option<String>,
}

fn json_column<T: serde::de::DeserializeOwned>(row: &AnyRow, name: &str) -> ApiResult<T> {
    let text: String = row.try_get(name)?;
    serde_json::from_str(&text).map_err(ApiError::internal)
}

pub(crate) fn payment_from_row(row: &AnyRow) -> ApiResult<PaymentRow> {
    let status: String = row.try_get("status")?;
    let capture: String = row.try_get("capture_method")?;
    let next_action: Option<String> = row.try_get("next_action")?;
    let customer: Customer = json_column(row, "customer")?;
    let metadata: BTreeMap<String, String> = json_column(row, "metadata")?;
    let out = PaymentOut {
        id: row.try_get("id")?,
        object: "payment".into(),
        order_no: row.try_get("order_no")?,
        amount: row.try_get("amount_minor")?,
        currency: row.try_get("currency")?,
        status: PaymentStatus::parse(&status)
            .ok_or_else(|| ApiError::internal(format!("payment status {status}")))?,
        capture: if capture == "manual" {
            CaptureMode::Manual
        } else {
            CaptureMode::Automatic
        },
        method: row.try_get("method")?,
        channel: row.try_get("channel")?,
        channel_reference: row.try_get("channel_reference")?,
        amount_captured: row.try_get("amount_captured_minor")?,
        amount_refunded: row.try_get("amount_refunded_minor")?,
        fee: row.try_get("fee_minor")?,
        customer,
        description: row.try_get("description")?,
        return_url: row.try_get("return_url")?,
        metadata,
        next_action: next_action
            .map(|t| serde_json::from_str::<NextAction>(&t))
            .transpose()
            .map_err(ApiError::internal)?,
        failure_code: row.try_get("failure_code")?,
        failure_message: row.try_get("failure_message")?,
        risk_decision_id: row.try_get("risk_decision_id")?,
        risk_action: row.try_get("risk_action")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    };
    Ok(PaymentRow {
        out,
        merchant_id: row.try_get("merchant_id")?,
        order_id: row.try_get("order_id")?,
        quota_reservation_id: row.try_get("quota_reservation_id")?,
    })
}

pub(crate) const REFUND_COLUMNS: &str = "id, payment_id, merchant_id, amount_minor, currency, status, reason, channel_reference, failure_code, failure_message, created_at_ms, updated_at_ms";

pub(crate) fn refund_from_row(row: &AnyRow) -> ApiResult<RefundOut> {
    let status: String = row.try_get("status")?;
    Ok(RefundOut {
        id: row.try_get("id")?,
        object: "refund".into(),
        payment_id: row.try_get("payment_id")?,
        amount: row.try_get("amount_minor")?,
        currency: row.try_get("currency")?,
        status: RefundStatus::parse(&status)
            .ok_or_else(|| ApiError::internal(format!("refund status {status}")))?,
        reason: row.try_get("reason")?,
        channel_reference: row.try_get("channel_reference")?,
        failure_code: row.try_get("failure_code")?,
        failure_message: row.try_get("failure_message")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

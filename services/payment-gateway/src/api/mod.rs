//! Merchant API v1: routes, handlers and the generated OpenAPI document.

mod account;
pub mod model;

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use payloom_platform::{ApiError, ApiJson, ApiResult};
use serde_json::Value;
use utoipa::OpenApi;

use crate::auth::{Authenticated, authenticate};
use crate::operations::ListQuery;
use crate::{Gateway, idempotency};
use model::*;

/// The merchant API router: `/v1/*` behind the signature layer, plus the public
/// `/v1/openapi.json`.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let idempotent = || from_fn_with_state(gateway.clone(), idempotency::layer);
    let signed = Router::new()
        .route(
            "/v1/payments",
            get(list_payments).merge(post(create_payment).layer(idempotent())),
        )
        .route("/v1/payments/{id}", get(get_payment))
        .route(
            "/v1/payments/{id}/capture",
            post(capture_payment).layer(idempotent()),
        )
        .route(
            "/v1/payments/{id}/cancel",
            post(cancel_payment).layer(idempotent()),
        )
        .route(
            "/v1/payments/{id}/refunds",
            post(create_refund).layer(idempotent()),
        )
        .route("/v1/refunds/{id}", get(get_refund))
        .route("/v1/balance", get(account::get_balance))
        .route(
            "/v1/webhook_endpoints",
            get(account::list_webhook_endpoints).post(account::create_webhook_endpoint),
        )
        .route(
            "/v1/webhook_endpoints/{id}",
            delete(account::delete_webhook_endpoint),
        )
        .route_layer(from_fn_with_state(gateway.clone(), authenticate));
    Router::new()
        .route("/v1/openapi.json", get(openapi_json))
        .route("/v1/notify/{channel}", post(account::notify))
        .merge(signed)
        .with_state(gateway)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Payloom merchant API",
        version = "1.0.0",
        description = "Signed with X-Api-Key, X-Timestamp, X-Nonce and X-Signature (hex HMAC-SHA256 of METHOD\\nPATH_AND_QUERY\\nTIMESTAMP\\nNONCE\\nBODY). Amounts are integer minor units."
    ),
    paths(
        create_payment,
        list_payments,
        get_payment,
        capture_payment,
        cancel_payment,
        create_refund,
        get_refund,
        account::get_balance,
        account::create_webhook_endpoint,
        account::list_webhook_endpoints,
        account::delete_webhook_endpoint,
        account::notify
    ),
    components(schemas(
        PaymentIn,
        PaymentOut,
        PaymentList,
        CaptureIn,
        RefundIn,
        RefundOut,
        ErrorOut,
        ErrorBody,
        Customer,
        NextAction,
        CaptureMode,
        PaymentStatus,
        RefundStatus,
        payloom_accounting::Balance,
        payloom_accounting::CurrencyBalance,
        payloom_notification::EndpointIn,
        payloom_notification::EndpointOut,
        WebhookEndpointList
    ))
)]
pub struct ApiDoc;

async fn openapi_json() -> Json<Value> {
    Json(serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null))
}

/// Create a payment.
#[utoipa::path(post, path = "/v1/payments", request_body = PaymentIn,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body get the stored response")),
    responses((status = 201, body = PaymentOut), (status = 400, body = ErrorOut), (status = 401, body = ErrorOut), (status = 409, body = ErrorOut), (status = 429, body = ErrorOut)))]
async fn create_payment(
    State(g): State<Arc<Gateway>>,
    Extension(who): Extension<Authenticated>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<(StatusCode, Json<PaymentOut>)> {
    integer_field(&body, "amount", true)?;
    integer_field(&body, "expires_in", false)?;
    let mut input: PaymentIn = from_body(body)?;
    input.validate(g.config.expires_in_max_secs)?;
    let (status, payment) = g.create_payment(&who, input).await?;
    Ok((status, Json(payment)))
}

/// List the merchant's payments, newest first.
#[utoipa::path(get, path = "/v1/payments", params(ListQuery), responses((status = 200, body = PaymentList), (status = 400, body = ErrorOut)))]
async fn list_payments(
    State(g): State<Arc<Gateway>>,
    Extension(who): Extension<Authenticated>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<PaymentList>> {
    let Query(query) =
        query.map_err(|e| ApiError::bad_request("parameter_invalid", e.body_text()))?;
    g.list_payments(&who.merchant_id, query).await.map(Json)
}

/// Retrieve a payment.
#[utoipa::path(get, path = "/v1/payments/{id}", params(("id" = String, Path)), responses((status = 200, body = PaymentOut), (status = 404, body = ErrorOut)))]
async fn get_payment(
    State(g): State<Arc<Gateway>>,
    Extension(who): Extension<Authenticated>,
    Path(id): Path<String>,
) -> ApiResult<Json<PaymentOut>> {
    g.get_payment(&who.merchant_id, &id).await.map(Json)
}

/// Capture an authorized payment, wholly or in part.
#[utoipa::path(post, path = "/v1/payments/{id}/capture", params(("id" = String, Path)), request_body = CaptureIn,
    responses((status = 200, body = PaymentOut), (status = 404, body = ErrorOut), (status = 409, body = ErrorOut)))]
async fn capture_payment(
    State(g): State<Arc<Gateway>>,
    Extension(who): Extension<Authenticated>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<PaymentOut>> {
    let input: CaptureIn = optional_body(&body, "amount")?;
    g.capture(&who.merchant_id, &id, input.amount)
        .await
        .map(Json)
}

/// Cancel a payment that has not completed.
#[utoipa::path(post, path = "/v1/payments/{id}/cancel", params(("id" = String, Path)),
    responses((status = 200, body = PaymentOut), (status = 404, body = ErrorOut), (status = 409, body = ErrorOut)))]
async fn cancel_payment(
    State(g): State<Arc<Gateway>>,
    Extension(who): Extension<Authenticated>,
    Path(id): Path<String>,
) -> ApiResult<Json<PaymentOut>> {
    g.cancel(&who.merchant_id, &id).await.map(Json)
}

/// Refund part or all of a succeeded payment.
#[utoipa::path(post, path = "/v1/payments/{id}/refunds", params(("id" = String, Path)), request_body = RefundIn,
    responses((status = 201, body = RefundOut), (status = 400, body = ErrorOut), (status = 404, body = ErrorOut), (status = 409, body = ErrorOut)))]
async fn create_refund(
    State(g): State<Arc<Gateway>>,
    Extension(who): Extension<Authenticated>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<(StatusCode, Json<RefundOut>)> {
    integer_field(&body, "amount", true)?;
    let input: RefundIn = from_body(body)?;
    let refund = g.create_refund(&who.merchant_id, &id, input).await?;
    Ok((StatusCode::CREATED, Json(refund)))
}

/// Retrieve a refund.
#[utoipa::path(get, path = "/v1/refunds/{id}", params(("id" = String, Path)), responses((status = 200, body = RefundOut), (status = 404, body = ErrorOut)))]
async fn get_refund(
    State(g): State<Arc<Gateway>>,
    Extension(who): Extension<Authenticated>,
    Path(id): Path<String>,
) -> ApiResult<Json<RefundOut>> {
    g.get_refund(&who.merchant_id, &id).await.map(Json)
}

/// A body that may be empty (capture with no amount).
fn optional_body<T: serde::de::DeserializeOwned + Default>(
    bytes: &[u8],
    integer: &str,
) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request("body_invalid", format!("the body is not valid JSON: {e}"))
    })?;
    integer_field(&value, integer, false)?;
    from_body(value)
}

//! The merchant's balance, webhook endpoints, and the PSP notification ingress.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use payloom_accounting::Balance;
use payloom_host::bindings::{channel_types as ch, types};
use payloom_notification::{EndpointIn, EndpointOut};
use payloom_platform::{ApiError, ApiJson, ApiResult};

use super::model::{ErrorOut, WebhookEndpointList};
use crate::Gateway;
use crate::auth::Authenticated;

/// Retrieve the merchant's balances, per currency, from the ledger.
#[utoipa::path(get, path = "/v1/balance", responses((status = 200, body = Balance)))]
pub(super) async fn get_balance(
    State(g): State<Arc<Gateway>>,
    Extension(who): Extension<Authenticated>,
) -> ApiResult<Json<Balance>> {
    g.deps.accounting.balance(&who.merchant_id).await.map(Json)
}

/// Create a webhook endpoint. The answer holds its signing secret (`whsec_…`), shown
/// only here.
#[utoipa::path(post, path = "/v1/webhook_endpoints", request_body = EndpointIn,
    responses((status = 201, body = EndpointOut), (status = 400, body = ErrorOut), (status = 409, body = ErrorOut)))]
pub(super) async fn create_webhook_endpoint(
    State(g): State<Arc<Gateway>>,
    Extension(who): Extension<Authenticated>,
    ApiJson(input): ApiJson<EndpointIn>,
) -> ApiResult<(StatusCode, Json<EndpointOut>)> {
    let endpoint = g
        .deps
        .notifications
        .create_endpoint(&who.merchant_id, input)
        .await?;
    Ok((StatusCode::CREATED, Json(endpoint)))
}

/// List the merchant's webhook endpoints, newest first.
#[utoipa::path(get, path = "/v1/webhook_endpoints", responses((status = 200, body = WebhookEndpointList)))]
pub(super) async fn list_webhook_endpoints(
    State(g): State<Arc<Gateway>>,
    Extension(who): Extension<Authenticated>,
) -> ApiResult<Json<WebhookEndpointList>> {
    let data = g
        .deps
        .notifications
        .list_endpoints(&who.merchant_id)
        .await?;
    Ok(Json(WebhookEndpointList {
        data,
        has_more: false,
    }))
}

/// Delete a webhook endpoint: nothing more is sent to it.
#[utoipa::path(delete, path = "/v1/webhook_endpoints/{id}", params(("id" = String, Path)),
    responses((status = 200, body = EndpointOut), (status = 404, body = ErrorOut)))]
pub(super) async fn delete_webhook_endpoint(
    State(g): State<Arc<Gateway>>,
    Extension(who): Extension<Authenticated>,
    Path(id): Path<String>,
) -> ApiResult<Json<EndpointOut>> {
    g.deps
        .notifications
        .delete_endpoint(&who.merchant_id, &id)
        .await
        .map(Json)
}

/// Receive a PSP's notification. Not signed by a merchant key: the channel component
/// verifies it with the merchant's channel credentials. The answer is the channel's ack.
#[utoipa::path(post, path = "/v1/notify/{channel}",
    params(("channel" = String, Path), ("merchant" = String, Query, description = "The merchant whose credentials verify it")),
    request_body(content = String, description = "The PSP's request, as it sends it"),
    responses((status = 200, description = "The channel's acknowledgement"), (status = 400, body = ErrorOut), (status = 401, body = ErrorOut)))]
pub(super) async fn notify(
    State(g): State<Arc<Gateway>>,
    Path(channel): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let merchant_id = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("merchant="))
        .filter(|m| payloom_platform::ids::has_shape(m, "mch"))
        .ok_or_else(|| ApiError::invalid("merchant", "merchant must be a merchant id"))?
        .to_owned();
    let notification = ch::Notification {
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        headers: headers
            .iter()
            .map(|(k, v)| types::KeyValue {
                key: k.as_str().to_owned(),
                value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
            })
            .collect(),
        body: body.to_vec(),
    };
    let (status, ack) = g
        .handle_notification(&merchant_id, &channel, notification)
        .await?;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    Ok((status, ack).into_response())
}

//! The merchant's balance, webhook endpoints, and the PSP notification ingress.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use payloom_accounting_contract::Balance;
use payloom_channel_contract as ch;
use payloom_channel_contract::CHANNEL_UNKNOWN;
use payloom_notification_contract::{EndpointIn, EndpointOut};
use payloom_payment_facts as types;
use payloom_platform::{ApiError, ApiJson, ApiResult};
use serde_json::Value;

use super::model::{ErrorOut, WebhookEndpointList, from_body};
use crate::Gateway;
use crate::auth::Authenticated;

/// Retrieve the merchant's balances, per currency, from the ledger.
#[utoipa::path(get, path = "/v1/balance",
    responses((status = 200, description = "Per currency, in minor units.", body = Balance)))]
pub(super) async fn get_balance(
    State(g): State<Arc<Gateway>>,
    Extension(who): Extension<Authenticated>,
) -> ApiResult<Json<Balance>> {
    g.deps.accounting.balance(&who.merchant_id).await.map(Json)
}

/// Create a webhook endpoint. The answer holds its signing secret (`whsec_…`), shown
/// only here.
#[utoipa::path(post, path = "/v1/webhook_endpoints", request_body = EndpointIn,
    responses(
        (status = 201, description = "The endpoint, with its `secret`.", body = EndpointOut),
        (status = 400, description = "Bad input, named by `param`: `parameter_invalid`, \
            `body_invalid`.", body = ErrorOut),
        (status = 409, description = "`too_many_endpoints`: the merchant has 16 already.", body = ErrorOut),
        (status = 415, description = "`content_type_invalid`: the body must be sent as \
            application/json.", body = ErrorOut),
        (status = 422, description = "`url_not_allowed`: the URL is well-formed, but its host does \
            not resolve, or resolves to an address webhooks may not reach (loopback or private \
            networks, unless the operator allows them).", body = ErrorOut),
    ))]
pub(super) async fn create_webhook_endpoint(
    State(g): State<Arc<Gateway>>,
    Extension(who): Extension<Authenticated>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<(StatusCode, Json<EndpointOut>)> {
    // Through `from_body`, so a wrong type is reported at its field.
    let input: EndpointIn = from_body(body)?;
    let endpoint = g
        .deps
        .notifications
        .create_endpoint(&who.merchant_id, input)
        .await?;
    Ok((StatusCode::CREATED, Json(endpoint)))
}

/// List the merchant's webhook endpoints, newest first.
#[utoipa::path(get, path = "/v1/webhook_endpoints",
    responses((status = 200, description = "Every endpoint not deleted.", body = WebhookEndpointList)))]
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
#[utoipa::path(delete, path = "/v1/webhook_endpoints/{id}", params(EndpointPath),
    responses(
        (status = 200, description = "The endpoint, now `deleted`.", body = EndpointOut),
        (status = 404, description = "`resource_missing`: no such endpoint for this merchant.", body = ErrorOut),
    ))]
pub(super) async fn delete_webhook_endpoint(
    State(g): State<Arc<Gateway>>,
    Extension(who): Extension<Authenticated>,
    Path(id): Path<String>,
) -> ApiResult<Json<EndpointOut>> {
    // Only an endpoint id goes on to the notification service, never a path.
    if !payloom_platform::ids::has_shape(&id, "we") {
        return Err(ApiError::not_found("webhook endpoint", &id));
    }
    g.deps
        .notifications
        .delete_endpoint(&who.merchant_id, &id)
        .await
        .map(Json)
}

/// The channel a PSP's notification is for.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Read with `Path<String>`; this only describes it.
struct NotifyPath {
    /// A channel id; one that is not loaded is a 404.
    channel: String,
}

/// Whose notification it is.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read from the query as it came; this only describes it.
struct NotifyQuery {
    /// The merchant whose channel credentials verify it.
    #[param(pattern = "^mch_[0-9A-HJKMNP-TV-Z]{26}$")]
    merchant: String,
}

/// A webhook endpoint's id in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Read with `Path<String>`; this only describes it.
struct EndpointPath {
    /// A webhook endpoint id; any other string is an endpoint that does not exist.
    #[param(pattern = "^we_[0-9A-HJKMNP-TV-Z]{26}$")]
    id: String,
}

/// Receive a PSP's notification. Not signed by a merchant key: the channel component
/// verifies it with the merchant's channel credentials. The answer is the channel's ack.
#[utoipa::path(post, path = "/v1/notify/{channel}", params(NotifyPath, NotifyQuery),
    request_body(content = String, content_type = "text/plain", description = "The PSP's request, \
        as it sends it (any media type; the channel component reads it)."),
    responses(
        (status = 200, description = "The channel's acknowledgement, in the body the PSP expects.", content_type = "application/octet-stream", body = String),
        (status = 400, description = "`parameter_invalid` (`merchant`), `notification_invalid` \
            (the channel cannot read it), `notification_mismatch` (its payment or amount is not \
            ours).", body = ErrorOut),
        (status = 401, description = "`notification_unverified`: the channel could not verify it.", body = ErrorOut),
        (status = 404, description = "`channel_unknown` (no such channel), or the payment or \
            refund it names does not exist (`resource_missing`).", body = ErrorOut),
        (status = 413, description = "`body_too_large`: above `gateway.notify_body_limit_bytes` \
            (64 KiB by default).", body = ErrorOut),
        (status = 429, description = "`rate_limit_error/notifications_throttled`: too many \
            notifications from this source address this second.", body = ErrorOut),
        (status = 502, description = "`channel_failed`: the channel component failed.", body = ErrorOut),
        (status = 503, description = "`channel_unavailable`: the channel component could not be \
            called; or the rate limiter is unavailable.", body = ErrorOut),
    ))]
pub(super) async fn notify(
    State(g): State<Arc<Gateway>>,
    Path(channel): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let (parts, body) = req.into_parts();
    g.admit_notification(payloom_platform::server::peer_ip(&parts))
        .await?;
    // Capped while reading, before any component sees it.
    let body = axum::body::to_bytes(body, g.config.notify_body_limit_bytes)
        .await
        .map_err(|_| payloom_platform::error::body_too_large())?;
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
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
        .await
        .map_err(|e| unknown_channel_is_missing(e, &channel))?;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    Ok((status, ack).into_response())
}

/// The channel in the path names the resource this route posts to: one that does not
/// exist is a 404 here, not a bad parameter.
fn unknown_channel_is_missing(error: ApiError, channel: &str) -> ApiError {
    if error.code != CHANNEL_UNKNOWN {
        return error;
    }
    ApiError::new(
        404,
        "invalid_request_error",
        CHANNEL_UNKNOWN,
        format!("no channel '{channel}' is available"),
    )
    .with_param("channel")
}

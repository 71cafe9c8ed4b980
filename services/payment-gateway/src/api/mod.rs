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
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, Required, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::auth::{Authenticated, authenticate};
use crate::idempotency::{Idempotent, KeyScope};
use crate::operations::ListQuery;
use crate::{Gateway, idempotency};
use model::*;

/// The merchant API router: `/v1/*` behind the signature layer, plus the public
/// `/v1/openapi.json`.
pub fn router(gateway: Arc<Gateway>) -> Router {
    // Each route names the id prefix of what it creates, so a key's resource keeps one
    // id across retries; capture and cancel act on the payment in their path. A route
    // layer: a 405 for another method never touches the key.
    let idempotent = |creates| {
        let route = Idempotent {
            gateway: gateway.clone(),
            creates,
        };
        from_fn_with_state(route, idempotency::layer)
    };
    let signed = Router::new()
        .route(
            "/v1/payments",
            get(list_payments).merge(post(create_payment).route_layer(idempotent(Some("pay")))),
        )
        .route("/v1/payments/{id}", get(get_payment))
        .route(
            "/v1/payments/{id}/capture",
            post(capture_payment).route_layer(idempotent(None)),
        )
        .route(
            "/v1/payments/{id}/cancel",
            post(cancel_payment).route_layer(idempotent(None)),
        )
        .route(
            "/v1/payments/{id}/refunds",
            post(create_refund).route_layer(idempotent(Some("re"))),
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
    // The document depends on configuration only: built once, served as bytes.
    let openapi = axum::body::Bytes::from(document(gateway.config.expires_in_max_secs).to_string());
    let openapi_json = move || {
        let body = openapi.clone();
        async move {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
        }
    };
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
        description = "Merchant API v1. Every operation but `POST /v1/notify/{channel}` is signed \
            with one of the merchant's API keys: the security schemes `api_key`, `timestamp`, \
            `nonce` and `signature`, four headers required together (see `signature` for the \
            string to sign). Amounts are integer minor units; errors are \
            `{\"error\": {\"type\", \"code\", \"message\", \"param\"?}}`."
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
        payloom_accounting_contract::Balance,
        payloom_accounting_contract::CurrencyBalance,
        payloom_notification_contract::EndpointIn,
        payloom_notification_contract::EndpointOut,
        WebhookEndpointList
    )),
    modifiers(&Signed, &OptionalBodies)
)]
pub struct ApiDoc;

/// Routes served without a merchant signature (besides the document itself).
const UNSIGNED_PATHS: [&str; 1] = ["/v1/notify/{channel}"];

/// The merchant signature of DESIGN §5 as four API-key headers. They make one security
/// requirement together: a request needs all four.
const SIGNATURE_HEADERS: [(&str, &str, &str); 4] = [
    (
        "api_key",
        "X-Api-Key",
        "The key id of one of the merchant's API keys (`key_…`).",
    ),
    (
        "timestamp",
        "X-Timestamp",
        "Unix seconds when the request was signed; refused beyond 300 s of server time.",
    ),
    (
        "nonce",
        "X-Nonce",
        "1 to 64 characters this merchant has not sent in the last 630 s.",
    ),
    (
        "signature",
        "X-Signature",
        "Hex (either case) of HMAC-SHA256, keyed with the API key's secret, over the string \
         to sign: METHOD, PATH_AND_QUERY (the path and query exactly as sent), TIMESTAMP and \
         NONCE (as in their headers), each followed by a newline, then the body's bytes as \
         sent (nothing for no body). For example \
         `POST\\n/v1/payments\\n1795251764\\n5f1c…\\n{\"order_no\":…}`.",
    ),
];

/// What any signed operation may answer besides its own results: bad input (a body that
/// is not UTF-8, an invalid Idempotency-Key), a refused signature, a body over the limit,
/// a merchant over its share of the nonce store, and a dependency that cannot be reached.
/// An operation that says more about one of these statuses keeps its own description.
const SIGNED_ANSWERS: [(&str, &str); 5] = [
    (
        "400",
        "Bad input (`parameter_invalid` with the `param` at fault, `body_invalid`).",
    ),
    (
        "401",
        "The signature is refused: `signature_missing`, `timestamp_invalid`, \
         `timestamp_out_of_window`, `nonce_invalid`, `api_key_invalid`, `signature_invalid`, \
         `nonce_replayed`.",
    ),
    (
        "413",
        "`body_too_large`: the body is above `gateway.body_limit_bytes` (64 KiB by default).",
    ),
    (
        "429",
        "`rate_limit_error/nonce_store_full`: this merchant holds as many unexpired nonces as \
         a node keeps for one merchant; slow down and retry.",
    ),
    (
        "503",
        "A dependency cannot be reached or is full (`service_unavailable`, `nonce_store_full`, \
         `policy_unavailable`); safe to retry.",
    ),
];

/// Adds the signature scheme, requires it of every signed operation, and documents the
/// answers the signature layer gives, so no operation can leave them out.
struct Signed;

impl Modify for Signed {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut requirement = SecurityRequirement::default();
        for (scheme, header, description) in SIGNATURE_HEADERS {
            let key = ApiKeyValue::with_description(header, description);
            components.add_security_scheme(scheme, SecurityScheme::ApiKey(ApiKey::Header(key)));
            requirement = requirement.add(scheme, Vec::<String>::new());
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            if UNSIGNED_PATHS.contains(&path.as_str()) {
                continue;
            }
            let operations = [&mut item.get, &mut item.post, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                operation.security = Some(vec![requirement.clone()]);
                for (status, description) in SIGNED_ANSWERS {
                    let answers = &mut operation.responses.responses;
                    answers
                        .entry(status.to_owned())
                        .or_insert_with(|| error_answer(description).into());
                }
            }
        }
    }
}

/// utoipa marks every declared request body required; capture's may be left out.
struct OptionalBodies;

impl Modify for OptionalBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let capture = openapi.paths.paths.get_mut("/v1/payments/{id}/capture");
        let body = capture.and_then(|item| item.post.as_mut()?.request_body.as_mut());
        if let Some(body) = body {
            body.required = Some(Required::False);
        }
    }
}

/// A response in the error shape.
fn error_answer(description: &str) -> utoipa::openapi::Response {
    let body = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorOut")))
        .build();
    ResponseBuilder::new()
        .description(description)
        .content("application/json", body)
        .build()
}

/// The document as this gateway serves it: the generated one with the operator's
/// limits filled in.
pub fn document(expires_in_max_secs: i64) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    if let Some(Value::Object(expires_in)) =
        doc.pointer_mut("/components/schemas/PaymentIn/properties/expires_in")
    {
        expires_in.insert("maximum".into(), expires_in_max_secs.into());
    }
    doc
}

/// The optional `Idempotency-Key` header of the `POST` routes that act.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Read by the idempotency layer; this only describes it.
struct IdempotencyKey {
    /// Retries with the same key and body get the stored answer; another body gets 409.
    /// 1 to 255 visible ASCII characters (spaces and tabs only inside).
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 255,
        pattern = r"^[!-~]([\t -~]*[!-~])?$",
        nullable = false
    )]
    key: Option<String>,
}

/// Create a payment.
#[utoipa::path(post, path = "/v1/payments", request_body = PaymentIn, params(IdempotencyKey),
    responses(
        (status = 201, description = "The payment, also one that failed: see `status` and \
            `failure_code`.", body = PaymentOut),
        (status = 400, description = "Bad input, named by `param`: `parameter_invalid`, \
            `currency_invalid`, `body_invalid`.", body = ErrorOut),
        (status = 409, description = "`order_no_taken`; `channel_unavailable` (the channel asked \
            for cannot take this payment now); or the Idempotency-Key is in use \
            (`idempotency_key_reused`, `idempotency_in_progress`).", body = ErrorOut),
        (status = 415, description = "`content_type_invalid`: the body must be sent as \
            application/json.", body = ErrorOut),
        (status = 429, description = "`quota_error/quota_exceeded`: the merchant's daily or \
            monthly volume quota for the currency is spent; or \
            `rate_limit_error/nonce_store_full`.", body = ErrorOut),
    ))]
async fn create_payment(
    State(g): State<Arc<Gateway>>,
    Extension(who): Extension<Authenticated>,
    key: Option<Extension<KeyScope>>,
    ApiJson(mut body): ApiJson<Value>,
) -> ApiResult<(StatusCode, Json<PaymentOut>)> {
    IntegerField::amount(true).check(&mut body)?;
    let expires_in = IntegerField {
        name: "expires_in",
        unit: "seconds",
        min: 1,
        max: g.config.expires_in_max_secs,
        required: false,
    };
    expires_in.check(&mut body)?;
    let mut input: PaymentIn = from_body(body)?;
    input.validate(g.config.expires_in_max_secs)?;
    let key = key.map(|Extension(k)| k);
    let (status, payment) = g.create_payment(&who, input, key.as_ref()).await?;
    Ok((status, Json(payment)))
}

/// List the merchant's payments, newest first.
#[utoipa::path(get, path = "/v1/payments", params(ListQuery),
    responses(
        (status = 200, description = "A page of payments, newest first.", body = PaymentList),
        (status = 400, description = "`parameter_invalid`: a filter is malformed or unknown.", body = ErrorOut),
    ))]
async fn list_payments(
    State(g): State<Arc<Gateway>>,
    Extension(who): Extension<Authenticated>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<PaymentList>> {
    let Query(query) =
        query.map_err(|e| ApiError::bad_request("parameter_invalid", e.body_text()))?;
    g.list_payments(&who.merchant_id, query).await.map(Json)
}

/// A payment's id in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Read with `Path<String>`; this only describes it.
struct PaymentPath {
    /// A payment id; any other string is a payment that does not exist.
    #[param(pattern = "^pay_[0-9A-HJKMNP-TV-Z]{26}$")]
    id: String,
}

/// Retrieve a payment.
#[utoipa::path(get, path = "/v1/payments/{id}", params(PaymentPath),
    responses(
        (status = 200, description = "The payment.", body = PaymentOut),
        (status = 404, description = "`resource_missing`: no such payment for this merchant.", body = ErrorOut),
    ))]
async fn get_payment(
    State(g): State<Arc<Gateway>>,
    Extension(who): Extension<Authenticated>,
    Path(id): Path<String>,
) -> ApiResult<Json<PaymentOut>> {
    g.get_payment(&who.merchant_id, &id).await.map(Json)
}

/// Capture an authorized payment, wholly or in part. The payment is claimed
/// (`capturing`) before the channel is asked, so concurrent captures and cancels reach
/// the channel once between them.
#[utoipa::path(post, path = "/v1/payments/{id}/capture", params(PaymentPath, IdempotencyKey),
    request_body(content = CaptureIn, description = "Optional: without a body (or `amount`) the \
        whole authorized amount is captured."),
    responses(
        (status = 200, description = "Captured: the payment is `succeeded`.", body = PaymentOut),
        (status = 202, description = "The channel has not confirmed the capture yet: the payment \
            stays `capturing` until its answer or a re-query settles it.", body = PaymentOut),
        (status = 400, description = "Bad input: `parameter_invalid` (`amount`), `body_invalid`, \
            an invalid Idempotency-Key.", body = ErrorOut),
        (status = 402, description = "`channel_error`: the channel declined the capture (its \
            decline code, or `channel_refused`); the payment stays `authorized`.", body = ErrorOut),
        (status = 404, description = "`resource_missing`: no such payment for this merchant.", body = ErrorOut),
        (status = 409, description = "The payment is not `authorized` (`payment_not_capturable`, \
            also when another capture or cancel claimed it first); `amount_too_large` (more than \
            was authorized); `payment_without_channel`; or the Idempotency-Key is in \
            use.", body = ErrorOut),
        (status = 502, description = "`capture_unconfirmed`: the channel says the payment is still \
            authorized; it stays `authorized`.", body = ErrorOut),
        (status = 503, description = "`channel_unavailable`: the channel component could not be \
            called (nothing was sent); or another dependency is unavailable.", body = ErrorOut),
    ))]
async fn capture_payment(
    State(g): State<Arc<Gateway>>,
    Extension(who): Extension<Authenticated>,
    key: Option<Extension<KeyScope>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<PaymentOut>)> {
    let input: CaptureIn = optional_body(&body, IntegerField::amount(false))?;
    let key = key.map(|Extension(k)| k);
    let (status, payment) = g
        .capture(&who.merchant_id, &id, input.amount, key.as_ref())
        .await?;
    Ok((status, Json(payment)))
}

/// Cancel a payment that has not completed (`pending`, `requires_action` or
/// `authorized`). Claimed (`canceling`) before the channel is asked, like a capture.
#[utoipa::path(post, path = "/v1/payments/{id}/cancel", params(PaymentPath, IdempotencyKey),
    responses(
        (status = 200, description = "Canceled: the payment is `canceled`.", body = PaymentOut),
        (status = 202, description = "The channel has not confirmed the cancel yet: the payment \
            stays `canceling` until its answer or a re-query settles it.", body = PaymentOut),
        (status = 402, description = "`channel_error`: the channel refused the cancel (its decline \
            code, or `channel_refused`); the payment stays as it was.", body = ErrorOut),
        (status = 404, description = "`resource_missing`: no such payment for this merchant.", body = ErrorOut),
        (status = 409, description = "`payment_not_cancelable` (also when another capture or \
            cancel claimed it first), `payment_without_channel`, or the Idempotency-Key is in \
            use.", body = ErrorOut),
        (status = 502, description = "`cancel_unconfirmed`: the channel did not cancel the \
            payment; it stays as it was.", body = ErrorOut),
        (status = 503, description = "`channel_unavailable`: the channel component could not be \
            called (nothing was sent); or another dependency is unavailable.", body = ErrorOut),
    ))]
async fn cancel_payment(
    State(g): State<Arc<Gateway>>,
    Extension(who): Extension<Authenticated>,
    key: Option<Extension<KeyScope>>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<PaymentOut>)> {
    let key = key.map(|Extension(k)| k);
    let (status, payment) = g.cancel(&who.merchant_id, &id, key.as_ref()).await?;
    Ok((status, Json(payment)))
}

/// Refund part or all of a succeeded payment.
#[utoipa::path(post, path = "/v1/payments/{id}/refunds", params(PaymentPath, IdempotencyKey), request_body = RefundIn,
    responses(
        (status = 201, description = "The refund: `succeeded`, `failed`, or `pending` while the \
            channel has not answered.", body = RefundOut),
        (status = 400, description = "Bad input, named by `param`: `parameter_invalid`, \
            `body_invalid`.", body = ErrorOut),
        (status = 404, description = "`resource_missing`: no such payment for this merchant.", body = ErrorOut),
        (status = 409, description = "`payment_not_refundable` (the payment is not `succeeded`), \
            `amount_too_large` (the refunded total would pass the captured amount), or the \
            Idempotency-Key is in use.", body = ErrorOut),
        (status = 415, description = "`content_type_invalid`: the body must be sent as \
            application/json.", body = ErrorOut),
    ))]
async fn create_refund(
    State(g): State<Arc<Gateway>>,
    Extension(who): Extension<Authenticated>,
    key: Option<Extension<KeyScope>>,
    Path(id): Path<String>,
    ApiJson(mut body): ApiJson<Value>,
) -> ApiResult<(StatusCode, Json<RefundOut>)> {
    IntegerField::amount(true).check(&mut body)?;
    let input: RefundIn = from_body(body)?;
    input.validate()?;
    let key = key.map(|Extension(k)| k);
    let refund = g
        .create_refund(&who.merchant_id, &id, input, key.as_ref())
        .await?;
    Ok((StatusCode::CREATED, Json(refund)))
}

/// A refund's id in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Read with `Path<String>`; this only describes it.
struct RefundPath {
    /// A refund id; any other string is a refund that does not exist.
    #[param(pattern = "^re_[0-9A-HJKMNP-TV-Z]{26}$")]
    id: String,
}

/// Retrieve a refund.
#[utoipa::path(get, path = "/v1/refunds/{id}", params(RefundPath),
    responses(
        (status = 200, description = "The refund.", body = RefundOut),
        (status = 404, description = "`resource_missing`: no such refund for this merchant.", body = ErrorOut),
    ))]
async fn get_refund(
    State(g): State<Arc<Gateway>>,
    Extension(who): Extension<Authenticated>,
    Path(id): Path<String>,
) -> ApiResult<Json<RefundOut>> {
    g.get_refund(&who.merchant_id, &id).await.map(Json)
}

/// A body that may be empty (capture with no amount), with one integer field.
fn optional_body<T: serde::de::DeserializeOwned + Default>(
    bytes: &[u8],
    integer: IntegerField<'_>,
) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let mut value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request("body_invalid", format!("the body is not valid JSON: {e}"))
    })?;
    integer.check(&mut value)?;
    from_body(value)
}

//! The signature layer in front of every `/v1` route: buffers the body (bounded), asks
//! merchant-auth to verify the signed request and hands the merchant to the handlers.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use payloom_merchant_auth_contract::VerifyIn;
use payloom_platform::error::body_too_large;
use payloom_platform::{ApiError, ids};

use crate::Gateway;

/// The merchant a request was signed by.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub merchant_id: String,
    pub tier: String,
    pub key_id: String,
}

fn header(req: &Request, name: &str) -> Result<String, ApiError> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::unauthorized(
                "signature_missing",
                format!("the {name} header is required"),
            )
        })
}

pub(crate) async fn authenticate(
    State(gateway): State<Arc<Gateway>>,
    req: Request,
    next: Next,
) -> Response {
    match verify(&gateway, req).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn verify(gateway: &Gateway, req: Request) -> Result<Request, ApiError> {
    let key_id = header(&req, "x-api-key")?;
    let timestamp = header(&req, "x-timestamp")?;
    let nonce = header(&req, "x-nonce")?;
    let signature = header(&req, "x-signature")?;
    let method = req.method().as_str().to_owned();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let (mut parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, gateway.config.body_limit_bytes)
        .await
        .map_err(|_| body_too_large())?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::bad_request("body_invalid", "the body is not UTF-8"))?
        .to_owned();
    let verified = gateway
        .deps
        .auth
        .verify(VerifyIn {
            key_id,
            timestamp,
            nonce,
            signature,
            method,
            path_and_query,
            body: text,
        })
        .await?;
    parts.extensions.insert(Authenticated {
        merchant_id: verified.merchant_id,
        tier: verified.tier,
        key_id: verified.key_id,
    });
    parts.extensions.insert(bytes.clone());
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The headers that sign a request for `secret`: what a merchant's client sends. Used by
/// `payloom demo pay`, the load generator and the tests.
pub fn sign_request(
    key_id: &str,
    secret: &str,
    method: &str,
    path_and_query: &str,
    body: &str,
    now_secs: i64,
) -> Vec<(&'static str, String)> {
    let timestamp = now_secs.to_string();
    let nonce = ids::random_hex(16);
    let signature = payloom_merchant_auth_contract::signing::sign(
        secret,
        method,
        path_and_query,
        &timestamp,
        &nonce,
        body,
    );
    vec![
        ("x-api-key", key_id.to_owned()),
        ("x-timestamp", timestamp),
        ("x-nonce", nonce),
        ("x-signature", signature),
    ]
}

/// The buffered body the auth layer left for later layers.
pub(crate) fn body_of(req: &Request) -> Bytes {
    req.extensions().get::<Bytes>().cloned().unwrap_or_default()
}

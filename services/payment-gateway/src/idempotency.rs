//! Idempotency-Key as a layer around the creating routes.
//!
//! The first request with a key claims it (an insert that only one request can win),
//! runs, and stores its response. A retry with the same body gets that response byte for
//! byte; with another body, 409. A concurrent duplicate waits for the first to finish.
//! A 5xx is not stored: the key is freed so the merchant can retry.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use payloom_platform::ApiError;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::Gateway;
use crate::auth::{Authenticated, body_of};

const HEADER: &str = "idempotency-key";
const KEY_LEN_MAX: usize = 255;
/// How often a waiting duplicate looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

enum Claim {
    Won,
    Replay(u16, String),
    Busy,
}

pub(crate) async fn layer(
    State(gateway): State<Arc<Gateway>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(key) = req.headers().get(HEADER).cloned() else {
        return next.run(req).await;
    };
    let key = match key.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= KEY_LEN_MAX => k.to_owned(),
        _ => {
            return ApiError::invalid(
                "Idempotency-Key",
                "Idempotency-Key must be 1 to 255 visible characters",
            )
            .into_response();
        }
    };
    let Some(merchant) = req
        .extensions()
        .get::<Authenticated>()
        .map(|a| a.merchant_id.clone())
    else {
        return ApiError::internal("idempotency layer ran before authentication").into_response();
    };
    let mut hasher = Sha256::new();
    hasher.update(req.method().as_str());
    hasher.update(b"\n");
    hasher.update(req.uri().path());
    hasher.update(b"\n");
    hasher.update(body_of(&req));
    let fingerprint = hex::encode(hasher.finalize());
    match run(&gateway, &merchant, &key, &fingerprint, req, next).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn run(
    gateway: &Gateway,
    merchant: &str,
    key: &str,
    fingerprint: &str,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(gateway.config.idempotency_wait_ms);
    loop {
        match claim(gateway, merchant, key, fingerprint).await? {
            Claim::Won => break,
            Claim::Replay(status, body) => return Ok(stored(status, body)),
            Claim::Busy if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(POLL_INTERVAL).await
            }
            Claim::Busy => {
                return Err(ApiError::new(
                    409,
                    "idempotency_error",
                    "idempotency_in_progress",
                    "a request with this Idempotency-Key is still being processed; retry later",
                ));
            }
        }
    }
    let response = next.run(req).await;
    let status = response.status();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(ApiError::internal)?;
    if status.is_server_error() {
        sqlx::query("DELETE FROM idempotency_keys WHERE merchant_id = $1 AND idempotency_key = $2")
            .bind(merchant)
            .bind(key)
            .execute(gateway.db.pool())
            .await?;
    } else {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        sqlx::query("UPDATE idempotency_keys SET state = 'done', response_status = $1, response_body = $2 WHERE merchant_id = $3 AND idempotency_key = $4")
            .bind(i64::from(status.as_u16()))
            .bind(text)
            .bind(merchant)
            .bind(key)
            .execute(gateway.db.pool())
            .await?;
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

async fn claim(
    gateway: &Gateway,
    merchant: &str,
    key: &str,
    fingerprint: &str,
) -> Result<Claim, ApiError> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (merchant_id, idempotency_key, fingerprint, state, created_at_ms) VALUES ($1, $2, $3, 'started', $4) ON CONFLICT DO NOTHING",
    )
    .bind(merchant)
    .bind(key)
    .bind(fingerprint)
    .bind(gateway.clock.now_ms())
    .execute(gateway.db.pool())
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Claim::Won);
    }
    let row = sqlx::query("SELECT fingerprint, state, response_status, response_body FROM idempotency_keys WHERE merchant_id = $1 AND idempotency_key = $2")
        .bind(merchant)
        .bind(key)
        .fetch_optional(gateway.db.pool())
        .await?;
    // Freed by a failing first request between our insert and this read: try again.
    let Some(row) = row else {
        return Ok(Claim::Busy);
    };
    let stored_fingerprint: String = row.try_get("fingerprint")?;
    if stored_fingerprint != fingerprint {
        return Err(ApiError::new(
            409,
            "idempotency_error",
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request",
        )
        .with_param("Idempotency-Key"));
    }
    let state: String = row.try_get("state")?;
    if state != "done" {
        return Ok(Claim::Busy);
    }
    let status: i64 = row.try_get("response_status")?;
    let body: String = row.try_get("response_body")?;
    Ok(Claim::Replay(status as u16, body))
}

fn stored(status: u16, body: String) -> Response {
    let mut response =
        (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

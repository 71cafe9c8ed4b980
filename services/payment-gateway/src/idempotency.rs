//! Idempotency-Key as a layer around the creating routes, with recovery points in the
//! manner of Stripe's idempotency design.
//!
//! The first request with a key claims it (an insert only one request can win) under a
//! lease, with the id its resource will take. A retry with the same body gets the stored
//! response byte for byte; with another body, 409; while the lease holds, it waits for
//! the holder. A key is never freed once its request may have acted: when the holder
//! crashes, is cut off, or fails with a 5xx, a retry after the lease takes the key over
//! and resumes from what was recorded (the resource id, a claimed capture or cancel), so
//! a PSP is never asked twice for one key.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use payloom_platform::{ApiError, ids};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::Gateway;
use crate::auth::{Authenticated, body_of};

const HEADER: &str = "idempotency-key";
const KEY_LEN_MAX: usize = 255;
/// A waiting duplicate looks again after this, doubling up to [`POLL_MAX`].
const POLL_FIRST: Duration = Duration::from_millis(10);
const POLL_MAX: Duration = Duration::from_millis(250);

/// What a route's layer needs: the gateway and the prefix of the id its request creates
/// (`None` for routes acting on the resource in their path).
#[derive(Clone)]
pub(crate) struct Idempotent {
    pub gateway: Arc<Gateway>,
    pub creates: Option<&'static str>,
}

/// The key a request holds, handed to its handler as an extension.
#[derive(Debug, Clone)]
pub(crate) struct KeyScope {
    merchant: String,
    key: String,
    lease: String,
    /// The id the request's resource takes: the same on every retry of the key.
    pub resource_id: Option<String>,
    /// This request took the key over from one that crashed or failed; the handler
    /// resumes from what that one recorded instead of starting afresh.
    pub resumed: bool,
    /// What the earlier holder recorded, e.g. [`CLAIMED`].
    pub recovery_point: Option<String>,
}

/// Recovery point: the request claimed its capture or cancel (the PSP may have been asked).
pub(crate) const CLAIMED: &str = "claimed";

impl KeyScope {
    /// Records a recovery point, in the caller's transaction with the change it stands for.
    /// A request whose lease ran out and whose key was taken over no longer holds it: the
    /// error rolls its change back, so only the key's holder acts.
    pub(crate) async fn record(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        point: &str,
    ) -> Result<(), ApiError> {
        let held = sqlx::query("UPDATE idempotency_keys SET recovery_point = $1 WHERE merchant_id = $2 AND idempotency_key = $3 AND lease = $4")
            .bind(point)
            .bind(&self.merchant)
            .bind(&self.key)
            .bind(&self.lease)
            .execute(&mut **tx)
            .await?;
        if held.rows_affected() == 0 {
            return Err(in_progress());
        }
        Ok(())
    }

    /// Whether this request resumes one that recorded `point`.
    pub(crate) fn resumes(&self, point: &str) -> bool {
        self.resumed && self.recovery_point.as_deref() == Some(point)
    }
}

enum Claim {
    Won(KeyScope),
    Replay(u16, String),
    Busy,
}

pub(crate) async fn layer(
    State(route): State<Idempotent>,
    mut req: Request,
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
    let fingerprint = fingerprint(&req);
    let scope = match wait_for_key(&route, &merchant, &key, &fingerprint).await {
        Ok(Ok(scope)) => scope,
        Ok(Err(replay)) => return replay,
        Err(e) => return e.into_response(),
    };
    req.extensions_mut().insert(scope.clone());
    let response = next.run(req).await;
    finish(&route.gateway, &scope, response).await
}

fn fingerprint(req: &Request) -> String {
    let mut hasher = Sha256::new();
    hasher.update(req.method().as_str());
    hasher.update(b"\n");
    hasher.update(req.uri().path());
    hasher.update(b"\n");
    hasher.update(body_of(req));
    hex::encode(hasher.finalize())
}

/// Claims the key, waiting while another request holds it. `Ok(Err(response))` is a
/// stored answer to replay.
async fn wait_for_key(
    route: &Idempotent,
    merchant: &str,
    key: &str,
    fingerprint: &str,
) -> Result<Result<KeyScope, Response>, ApiError> {
    let gateway = &route.gateway;
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(gateway.config.idempotency_wait_ms);
    let mut pause = POLL_FIRST;
    loop {
        match claim(route, merchant, key, fingerprint).await? {
            Claim::Won(scope) => return Ok(Ok(scope)),
            Claim::Replay(status, body) => return Ok(Err(stored(status, body))),
            Claim::Busy if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(POLL_MAX);
            }
            Claim::Busy => return Err(in_progress()),
        }
    }
}

/// Stores the answer under the key; a 5xx is not an answer but a failure part-way, so the
/// key's lease is released instead and the next retry resumes. If the store itself fails
/// the merchant still gets the answer, and a retry after the lease resumes to the same.
async fn finish(gateway: &Gateway, scope: &KeyScope, response: Response) -> Response {
    let status = response.status();
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(e) => return ApiError::internal(e).into_response(),
    };
    let stored = if status.is_server_error() {
        sqlx::query("UPDATE idempotency_keys SET locked_until_ms = 0 WHERE merchant_id = $1 AND idempotency_key = $2 AND lease = $3 AND state = 'started'")
            .bind(&scope.merchant)
            .bind(&scope.key)
            .bind(&scope.lease)
            .execute(gateway.db.pool())
            .await
    } else {
        sqlx::query("UPDATE idempotency_keys SET state = 'done', response_status = $1, response_body = $2 WHERE merchant_id = $3 AND idempotency_key = $4 AND lease = $5")
            .bind(i64::from(status.as_u16()))
            .bind(String::from_utf8_lossy(&bytes).into_owned())
            .bind(&scope.merchant)
            .bind(&scope.key)
            .bind(&scope.lease)
            .execute(gateway.db.pool())
            .await
    };
    if let Err(e) = stored {
        tracing::warn!(key = scope.key, "idempotency key not updated: {e}");
    }
    Response::from_parts(parts, Body::from(bytes))
}

async fn claim(
    route: &Idempotent,
    merchant: &str,
    key: &str,
    fingerprint: &str,
) -> Result<Claim, ApiError> {
    let gateway = &route.gateway;
    let now = gateway.clock.now_ms();
    let scope = KeyScope {
        merchant: merchant.to_owned(),
        key: key.to_owned(),
        lease: ids::random_hex(8),
        resource_id: route.creates.map(|prefix| ids::new_id(prefix, now)),
        resumed: false,
        recovery_point: None,
    };
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (merchant_id, idempotency_key, fingerprint, state, created_at_ms, resource_id, locked_until_ms, lease)
         VALUES ($1, $2, $3, 'started', $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(merchant)
    .bind(key)
    .bind(fingerprint)
    .bind(now)
    .bind(&scope.resource_id)
    .bind(now + gateway.lease_ms())
    .bind(&scope.lease)
    .execute(gateway.db.pool())
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Claim::Won(scope));
    }
    let row = sqlx::query("SELECT fingerprint, state, response_status, response_body, resource_id, recovery_point, locked_until_ms FROM idempotency_keys WHERE merchant_id = $1 AND idempotency_key = $2")
        .bind(merchant)
        .bind(key)
        .fetch_optional(gateway.db.pool())
        .await?;
    // Forgotten by the retention sweep between our insert and this read: try again.
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
    if state == "done" {
        let status: i64 = row.try_get("response_status")?;
        let body: String = row.try_get("response_body")?;
        return Ok(Claim::Replay(status as u16, body));
    }
    let locked_until: i64 = row.try_get("locked_until_ms")?;
    if locked_until > now {
        return Ok(Claim::Busy);
    }
    take_over(gateway, scope, &row, locked_until, now).await
}

/// Takes over a key whose lease ran out: only one request can (the update re-checks the
/// lease it read), and it resumes from the holder's resource and recovery point.
async fn take_over(
    gateway: &Gateway,
    scope: KeyScope,
    row: &sqlx::any::AnyRow,
    locked_until: i64,
    now: i64,
) -> Result<Claim, ApiError> {
    let taken = sqlx::query("UPDATE idempotency_keys SET locked_until_ms = $1, lease = $2 WHERE merchant_id = $3 AND idempotency_key = $4 AND state = 'started' AND locked_until_ms = $5")
        .bind(now + gateway.lease_ms())
        .bind(&scope.lease)
        .bind(&scope.merchant)
        .bind(&scope.key)
        .bind(locked_until)
        .execute(gateway.db.pool())
        .await?;
    if taken.rows_affected() == 0 {
        return Ok(Claim::Busy);
    }
    tracing::info!(
        key = scope.key,
        "idempotency key taken over after its lease"
    );
    Ok(Claim::Won(KeyScope {
        resource_id: row.try_get("resource_id")?,
        recovery_point: row.try_get("recovery_point")?,
        resumed: true,
        ..scope
    }))
}

/// 409: another request holds the key.
pub(crate) fn in_progress() -> ApiError {
    ApiError::new(
        409,
        "idempotency_error",
        "idempotency_in_progress",
        "a request with this Idempotency-Key is still being processed; retry later",
    )
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

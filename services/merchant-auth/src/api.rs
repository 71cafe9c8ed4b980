//! merchant-auth's HTTP API, for other services (`/internal/v1`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Json, Router};
use payloom_platform::{ApiJson, ApiResult};

use crate::{
    ApiKeyOut, Merchant, MerchantAuth, MerchantAuthApi, MerchantIn, VerifiedOut, VerifyIn,
    operations,
};

pub fn router(service: Arc<MerchantAuth>) -> Router {
    let router = Router::new();
    let router = operations::VERIFY.route(router, verify);
    let router = operations::CREATE_MERCHANT.route(router, create_merchant);
    let router = operations::GET_MERCHANT.route(router, get_merchant);
    let router = operations::CREATE_API_KEY.route(router, create_api_key);
    operations::REVOKE_API_KEY
        .route(router, revoke_api_key)
        .with_state(service)
}

async fn verify(
    State(s): State<Arc<MerchantAuth>>,
    ApiJson(req): ApiJson<VerifyIn>,
) -> ApiResult<Json<VerifiedOut>> {
    s.verify(req).await.map(Json)
}

async fn create_merchant(
    State(s): State<Arc<MerchantAuth>>,
    ApiJson(req): ApiJson<MerchantIn>,
) -> ApiResult<Json<Merchant>> {
    s.create_merchant(req).await.map(Json)
}

async fn get_merchant(
    State(s): State<Arc<MerchantAuth>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Merchant>> {
    s.get_merchant(&id).await.map(Json)
}

async fn create_api_key(
    State(s): State<Arc<MerchantAuth>>,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKeyOut>> {
    s.create_api_key(&id).await.map(Json)
}

async fn revoke_api_key(
    State(s): State<Arc<MerchantAuth>>,
    Path((id, key_id)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    s.revoke_api_key(&id, &key_id).await?;
    Ok(Json(
        serde_json::json!({"key_id": key_id, "status": "revoked"}),
    ))
}

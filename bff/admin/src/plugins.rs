//! Plugin operations: push a signed version, list, inspect, activate, roll back. The
//! operator's username is what the registry's history records as who.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use payloom_platform::{ApiJson, ApiResult};
use payloom_plugin_registry_contract::{
    ActivateIn, Activation, BindIn, CanaryIn, PluginOut, PluginVersion, PushIn, RollbackIn,
    ShadowIn, UnbindIn,
};
use serde_json::{Value, json};

use crate::{Admin, Operator};

pub(crate) fn routes() -> Router<Arc<Admin>> {
    Router::new()
        .route(
            "/admin/v1/plugins",
            get(list).post(push).layer(DefaultBodyLimit::max(
                payloom_plugin_registry_contract::PUSH_BODY_MAX,
            )),
        )
        .route("/admin/v1/plugins/{id}", get(plugin))
        .route("/admin/v1/plugins/{id}/activate", post(activate))
        .route("/admin/v1/plugins/{id}/rollback", post(rollback))
        .route("/admin/v1/plugins/{id}/canary", post(canary))
        .route("/admin/v1/plugins/{id}/promote", post(promote))
        .route("/admin/v1/plugins/{id}/shadow", post(shadow))
        .route("/admin/v1/plugins/{id}/bindings", post(bind))
        .route("/admin/v1/plugins/{id}/unbind", post(unbind))
}

async fn push(
    State(a): State<Arc<Admin>>,
    operator: Operator,
    ApiJson(mut input): ApiJson<PushIn>,
) -> ApiResult<(StatusCode, Json<PluginVersion>)> {
    input.uploaded_by = operator.named(&a).await?;
    Ok((StatusCode::CREATED, Json(a.plugins.push(input).await?)))
}

async fn list(State(a): State<Arc<Admin>>, _: Operator) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "data": a.plugins.plugins().await? })))
}

async fn plugin(
    State(a): State<Arc<Admin>>,
    _: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<PluginOut>> {
    a.plugins.plugin(&id).await.map(Json)
}

async fn activate(
    State(a): State<Arc<Admin>>,
    operator: Operator,
    Path(id): Path<String>,
    ApiJson(mut input): ApiJson<ActivateIn>,
) -> ApiResult<Json<Activation>> {
    input.actor = operator.named(&a).await?;
    a.plugins.activate(&id, input).await.map(Json)
}

async fn rollback(
    State(a): State<Arc<Admin>>,
    operator: Operator,
    Path(id): Path<String>,
    ApiJson(mut input): ApiJson<RollbackIn>,
) -> ApiResult<Json<Activation>> {
    input.actor = operator.named(&a).await?;
    a.plugins.rollback(&id, input).await.map(Json)
}

async fn canary(
    State(a): State<Arc<Admin>>,
    operator: Operator,
    Path(id): Path<String>,
    ApiJson(mut input): ApiJson<CanaryIn>,
) -> ApiResult<Json<Activation>> {
    input.actor = operator.named(&a).await?;
    a.plugins.canary(&id, input).await.map(Json)
}

async fn promote(
    State(a): State<Arc<Admin>>,
    operator: Operator,
    Path(id): Path<String>,
    ApiJson(mut input): ApiJson<RollbackIn>,
) -> ApiResult<Json<Activation>> {
    input.actor = operator.named(&a).await?;
    a.plugins.promote(&id, input).await.map(Json)
}

async fn shadow(
    State(a): State<Arc<Admin>>,
    operator: Operator,
    Path(id): Path<String>,
    ApiJson(mut input): ApiJson<ShadowIn>,
) -> ApiResult<Json<Activation>> {
    input.actor = operator.named(&a).await?;
    a.plugins.shadow(&id, input).await.map(Json)
}

async fn bind(
    State(a): State<Arc<Admin>>,
    operator: Operator,
    Path(id): Path<String>,
    ApiJson(mut input): ApiJson<BindIn>,
) -> ApiResult<Json<Activation>> {
    a.auth.get_merchant(&input.merchant_id).await?;
    input.actor = operator.named(&a).await?;
    a.plugins.bind(&id, input).await.map(Json)
}

async fn unbind(
    State(a): State<Arc<Admin>>,
    operator: Operator,
    Path(id): Path<String>,
    ApiJson(mut input): ApiJson<UnbindIn>,
) -> ApiResult<Json<Activation>> {
    input.actor = operator.named(&a).await?;
    a.plugins.unbind(&id, input).await.map(Json)
}

//! The internal API: every operation of [`payloom_plugin_registry_contract::operations`].

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::{Json, Router};
use payloom_platform::{ApiJson, ApiResult};

use crate::{
    ActivateIn, Activation, ActiveSet, Artifact, CanaryIn, NodeReport, PluginOut, PluginRegistry,
    PluginRegistryApi, PluginVersion, PushIn, RollbackIn, ShadowIn, operations,
};

type Registry = State<Arc<PluginRegistry>>;

pub fn router(registry: Arc<PluginRegistry>) -> Router {
    let push_route = operations::PUSH
        .route(Router::new(), push)
        .layer(DefaultBodyLimit::max(crate::PUSH_BODY_MAX));
    let router = operations::LIST.route(Router::new(), list);
    let router = operations::GET.route(router, get);
    let router = operations::ACTIVATE.route(router, activate);
    let router = operations::ROLLBACK.route(router, rollback);
    let router = operations::CANARY.route(router, canary);
    let router = operations::PROMOTE.route(router, promote);
    let router = operations::SHADOW.route(router, shadow);
    let router = operations::BIND.route(router, bind);
    let router = operations::UNBIND.route(router, unbind);
    let router = operations::ACTIVE_SET.route(router, active_set);
    let router = operations::REPORT.route(router, report);
    let router = operations::ARTIFACT.route(router, artifact);
    router.merge(push_route).with_state(registry)
}

async fn push(
    State(r): Registry,
    ApiJson(input): ApiJson<PushIn>,
) -> ApiResult<(StatusCode, Json<PluginVersion>)> {
    Ok((StatusCode::CREATED, Json(r.push(input).await?)))
}

async fn list(State(r): Registry) -> ApiResult<Json<Vec<PluginOut>>> {
    r.plugins().await.map(Json)
}

async fn get(State(r): Registry, Path(id): Path<String>) -> ApiResult<Json<PluginOut>> {
    r.plugin(&id).await.map(Json)
}

async fn activate(
    State(r): Registry,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ActivateIn>,
) -> ApiResult<Json<Activation>> {
    r.activate(&id, input).await.map(Json)
}

async fn rollback(
    State(r): Registry,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<RollbackIn>,
) -> ApiResult<Json<Activation>> {
    r.rollback(&id, input).await.map(Json)
}

async fn canary(
    State(r): Registry,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<CanaryIn>,
) -> ApiResult<Json<Activation>> {
    r.canary(&id, input).await.map(Json)
}

async fn bind(
    State(r): Registry,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<crate::BindIn>,
) -> ApiResult<Json<Activation>> {
    r.bind(&id, input).await.map(Json)
}

async fn unbind(
    State(r): Registry,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<crate::UnbindIn>,
) -> ApiResult<Json<Activation>> {
    r.unbind(&id, input).await.map(Json)
}

async fn shadow(
    State(r): Registry,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ShadowIn>,
) -> ApiResult<Json<Activation>> {
    r.shadow(&id, input).await.map(Json)
}

async fn promote(
    State(r): Registry,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<RollbackIn>,
) -> ApiResult<Json<Activation>> {
    r.promote(&id, input).await.map(Json)
}

async fn report(
    State(r): Registry,
    ApiJson(input): ApiJson<NodeReport>,
) -> ApiResult<Json<serde_json::Value>> {
    r.report(input).await?;
    Ok(Json(serde_json::json!({"received": true})))
}

async fn active_set(State(r): Registry) -> ApiResult<Json<ActiveSet>> {
    r.active_set().await.map(Json)
}

async fn artifact(
    State(r): Registry,
    Path((id, version)): Path<(String, String)>,
) -> ApiResult<Json<Artifact>> {
    r.artifact(&id, &version).await.map(Json)
}

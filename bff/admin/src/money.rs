//! Admin views of money and messages: merchant balances, the ledger's accounts and
//! entries (with reversals), webhook deliveries (with the log and a resend), and the
//! events consumers gave up on (with a replay).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use payloom_accounting_contract::{Accounts, Balance, EntryOut, EntryQuery, ReverseIn};
use payloom_notification_contract::{DeliveryOut, DeliveryQuery};
use payloom_platform::events::Replayed;
use payloom_platform::{ApiError, ApiJson, ApiResult};
use serde_json::{Value, json};

use crate::{Admin, Operator};

pub(crate) fn routes() -> Router<Arc<Admin>> {
    Router::new()
        .route("/admin/v1/merchants/{id}/balance", get(balance))
        .route("/admin/v1/ledger/accounts", get(accounts))
        .route("/admin/v1/ledger/entries", get(entries))
        .route("/admin/v1/ledger/entries/{id}/reversals", post(reverse))
        .route("/admin/v1/webhook_deliveries", get(deliveries))
        .route("/admin/v1/webhook_deliveries/{id}/resend", post(resend))
        .route("/admin/v1/dead_letters", get(dead_letters))
        .route(
            "/admin/v1/dead_letters/{consumer}/{event_id}/replay",
            post(replay),
        )
}

async fn dead_letters(State(a): State<Arc<Admin>>, _: Operator) -> ApiResult<Json<Value>> {
    let mut all = Vec::new();
    for (_, consumer) in &a.dead_letters {
        all.extend(consumer.dead_letters().await?);
    }
    Ok(Json(json!({ "data": all })))
}

async fn replay(
    State(a): State<Arc<Admin>>,
    _: Operator,
    Path((consumer, event_id)): Path<(String, String)>,
) -> ApiResult<Json<Replayed>> {
    let (_, api) = a
        .dead_letters
        .iter()
        .find(|(name, _)| *name == consumer)
        .ok_or_else(|| ApiError::not_found("consumer", &consumer))?;
    api.replay(&event_id).await.map(Json)
}

async fn balance(
    State(a): State<Arc<Admin>>,
    _: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<Balance>> {
    a.auth.get_merchant(&id).await?;
    a.accounting.balance(&id).await.map(Json)
}

async fn accounts(State(a): State<Arc<Admin>>, _: Operator) -> ApiResult<Json<Accounts>> {
    a.accounting.accounts().await.map(Json)
}

async fn entries(
    State(a): State<Arc<Admin>>,
    _: Operator,
    query: Result<Query<EntryQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<EntryOut>>> {
    let Query(query) =
        query.map_err(|e| ApiError::bad_request("parameter_invalid", e.body_text()))?;
    a.accounting.entries(query).await.map(Json)
}

async fn reverse(
    State(a): State<Arc<Admin>>,
    _: Operator,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ReverseIn>,
) -> ApiResult<(StatusCode, Json<EntryOut>)> {
    let entry = a.accounting.reverse(&id, input).await?;
    Ok((StatusCode::CREATED, Json(entry)))
}

async fn deliveries(
    State(a): State<Arc<Admin>>,
    _: Operator,
    query: Result<Query<DeliveryQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<DeliveryOut>>> {
    let Query(query) =
        query.map_err(|e| ApiError::bad_request("parameter_invalid", e.body_text()))?;
    a.notifications.deliveries(query).await.map(Json)
}

async fn resend(
    State(a): State<Arc<Admin>>,
    _: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<DeliveryOut>> {
    a.notifications.resend(&id).await.map(Json)
}

//! Merchant webhooks: endpoints, the messages owed to them, and their delivery.

pub mod delivery;
pub mod email;
pub mod metrics;
pub mod service;
pub mod signing;
pub mod targets;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::{Path, Query, State};
use axum::{Json, Router};
use payloom_platform::clock::{SharedClock, rfc3339_ms};
use payloom_platform::db::Migration;
use payloom_platform::events::{self, Consumer, Envelope};
use payloom_platform::seal::MasterKey;
use payloom_platform::{ApiError, ApiJson, ApiResult, Db, ids};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use tokio::sync::Notify;

pub use payloom_notification_contract::{
    AttemptOut, DeliveryOut, DeliveryQuery, EVENT_TYPES, EndpointIn, EndpointOut, NotificationApi,
    NotificationHttp, operations, webhook_url,
};

use crate::email::Mailer;
use crate::targets::TargetPolicy;

pub const SERVICE: &str = "notification";

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "webhook endpoints, messages, deliveries, attempts",
    sql: include_str!("../migrations/0001_webhooks.sql"),
}];

/// Endpoints per merchant, at most.
pub const MAX_ENDPOINTS: i64 = 16;

/// `[notification]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct NotificationConfig {
    /// Seconds between attempts after the first (immediate) one; after the last, the
    /// delivery has failed.
    pub retry_schedule_secs: Vec<u64>,
    /// Each delay is drawn uniformly within ±this fraction.
    pub jitter: f64,
    /// The least delay after a timeout or a 429, in seconds.
    pub overload_floor_secs: u64,
    pub request_timeout_ms: u64,
    /// An endpoint failing without a success for this long is disabled.
    pub disable_after_secs: u64,
    /// How often due deliveries are looked for when nobody wakes the worker.
    pub poll_interval_ms: u64,
    /// Deliveries in flight at once in this process, across every endpoint.
    pub batch: i64,
    /// Deliveries in flight at once to one endpoint.
    pub endpoint_in_flight_max: i64,
    /// Deliveries in flight at once to one merchant's endpoints together.
    pub merchant_in_flight_max: i64,
    #[serde(flatten)]
    pub targets: TargetPolicy,
}

impl NotificationConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (0.0..1.0).contains(&self.jitter),
            "notification.jitter must be in [0, 1)"
        );
        anyhow::ensure!(
            self.retry_schedule_secs.len() <= 20,
            "notification.retry_schedule_secs has at most 20 steps"
        );
        anyhow::ensure!(
            (100..=60_000).contains(&self.request_timeout_ms),
            "notification.request_timeout_ms must be 100 to 60000"
        );
        anyhow::ensure!(
            (1..=500).contains(&self.batch),
            "notification.batch must be 1 to 500"
        );
        anyhow::ensure!(
            (1..=500).contains(&self.endpoint_in_flight_max),
            "notification.endpoint_in_flight_max must be 1 to 500"
        );
        anyhow::ensure!(
            (1..=500).contains(&self.merchant_in_flight_max),
            "notification.merchant_in_flight_max must be 1 to 500"
        );
        Ok(())
    }
}

/// Longest endpoint description, in characters.
const DESCRIPTION_LEN_MAX: usize = 500;
/// Longest alert email address, in characters.
const ALERT_EMAIL_LEN_MAX: usize = 254;

pub struct Notifications {
    db: Db,
    clock: SharedClock,
    master_key: MasterKey,
    config: NotificationConfig,
    http: reqwest::Client,
    mailer: Arc<dyn Mailer>,
    wake: Arc<Notify>,
    /// The delivery attempts under way; closed when the service stops.
    attempts: tokio_util::task::TaskTracker,
    metrics: metrics::WebhookMetrics,
}

const ENDPOINT_COLUMNS: &str = "id, merchant_id, url, description, event_types, alert_email, sealed_secret, status, disabled_reason, failing_since_ms, created_at_ms";

fn endpoint_from_row(row: &sqlx::any::AnyRow) -> ApiResult<EndpointOut> {
    let events: String = row.try_get("event_types")?;
    Ok(EndpointOut {
        id: row.try_get("id")?,
        object: "webhook_endpoint".into(),
        url: row.try_get("url")?,
        events: serde_json::from_str(&events).map_err(ApiError::internal)?,
        description: row.try_get("description")?,
        alert_email: row.try_get("alert_email")?,
        status: row.try_get("status")?,
        disabled_reason: row.try_get("disabled_reason")?,
        secret: None,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

impl Notifications {
    pub async fn new(
        db: Db,
        clock: SharedClock,
        master_key: MasterKey,
        config: NotificationConfig,
        mailer: Arc<dyn Mailer>,
    ) -> anyhow::Result<Arc<Self>> {
        config.validate()?;
        db.migrate(SERVICE, MIGRATIONS).await?;
        events::install(&db).await?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.request_timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the name itself, past the resolver's check.
            .no_proxy()
            .dns_resolver(Arc::new(targets::GuardedResolver(config.targets)))
            .user_agent(concat!("Payloom-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Arc::new(Self {
            db,
            clock,
            master_key,
            config,
            http,
            mailer,
            wake: Arc::new(Notify::new()),
            attempts: tokio_util::task::TaskTracker::new(),
            metrics: Default::default(),
        }))
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// What delivery counts and samples, to register on a service's `/metrics`.
    pub fn metrics(&self) -> &metrics::WebhookMetrics {
        &self.metrics
    }

    fn seal_context(endpoint_id: &str) -> String {
        format!("webhook-endpoint:{endpoint_id}")
    }

    /// The body a merchant receives for `event`: `{"type", "timestamp", "data"}`.
    fn body_of(event: &Envelope) -> String {
        serde_json::json!({
            "type": event.kind,
            "timestamp": rfc3339_ms(event.occurred_at_ms),
            "data": event.data,
        })
        .to_string()
    }

    /// One message per event, one delivery per endpoint that wants it, all inside the
    /// consumer's transaction.
    async fn fan_out(&self, tx: &mut AnyConnection, event: &Envelope) -> anyhow::Result<()> {
        let Some(merchant_id) = &event.merchant_id else {
            return Ok(());
        };
        if !EVENT_TYPES.contains(&event.kind.as_str()) {
            return Ok(());
        }
        let rows = sqlx::query(
            "SELECT id, event_types FROM webhook_endpoints WHERE merchant_id = $1 AND status = 'enabled'",
        )
        .bind(merchant_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut wanted = Vec::new();
        for row in &rows {
            let types: String = row.try_get("event_types")?;
            let types: Vec<String> = serde_json::from_str(&types)?;
            if types.is_empty() || types.contains(&event.kind) {
                wanted.push(row.try_get::<String, _>("id")?);
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        sqlx::query(
            "INSERT INTO webhook_messages (event_id, merchant_id, event_type, body, occurred_at_ms, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&event.id)
        .bind(merchant_id)
        .bind(&event.kind)
        .bind(Self::body_of(event))
        .bind(event.occurred_at_ms)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for endpoint_id in wanted {
            sqlx::query(
                "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, merchant_id, status, attempts, next_attempt_at_ms, created_at_ms, updated_at_ms)
                 VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5)",
            )
            .bind(ids::new_id("whd", now))
            .bind(&event.id)
            .bind(endpoint_id)
            .bind(merchant_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }

    /// The endpoint's URL and its event types, sorted and without repeats.
    fn validate_endpoint(&self, input: &EndpointIn) -> ApiResult<(url::Url, Vec<String>)> {
        if input.url.chars().count() > webhook_url::LEN_MAX {
            return Err(ApiError::invalid(
                "url",
                format!("url must be at most {} characters", webhook_url::LEN_MAX),
            ));
        }
        webhook_url::check(&input.url).map_err(|m| ApiError::invalid("url", m))?;
        let url = self
            .config
            .targets
            .parse(&input.url)
            .map_err(|m| ApiError::invalid("url", m))?;
        let events = input.events.clone().unwrap_or_default();
        if let Some(unknown) = events.iter().find(|e| !EVENT_TYPES.contains(&e.as_str())) {
            return Err(ApiError::invalid(
                "events",
                format!("'{unknown}' is not an event type"),
            ));
        }
        if input.description.as_ref().is_some_and(|d| {
            d.is_empty() || d.chars().count() > DESCRIPTION_LEN_MAX || d.contains('\0')
        }) {
            return Err(ApiError::invalid(
                "description",
                format!(
                    "description must be 1 to {DESCRIPTION_LEN_MAX} characters, without U+0000"
                ),
            ));
        }
        if input.alert_email.as_ref().is_some_and(|e| {
            e.chars().count() > ALERT_EMAIL_LEN_MAX
                || !e.contains('@')
                || e.contains(|c: char| c.is_whitespace() || c == '\0')
        }) {
            return Err(ApiError::invalid(
                "alert_email",
                format!(
                    "alert_email must be an email address: at most {ALERT_EMAIL_LEN_MAX} \
                     characters, with an @ and no whitespace or U+0000"
                ),
            ));
        }
        let mut events = events;
        events.sort();
        events.dedup();
        Ok((url, events))
    }

    async fn load_delivery(&self, id: &str) -> ApiResult<DeliveryOut> {
        self.deliveries_where("d.id = $1", id)
            .await?
            .pop()
            .ok_or_else(|| ApiError::not_found("webhook delivery", id))
    }

    async fn deliveries_where(&self, condition: &str, value: &str) -> ApiResult<Vec<DeliveryOut>> {
        let rows = sqlx::query(&format!(
            "SELECT d.id, d.event_id, m.event_type, d.endpoint_id, d.merchant_id, d.status, d.attempts, d.next_attempt_at_ms, d.delivered_at_ms
             FROM webhook_deliveries d JOIN webhook_messages m ON m.event_id = d.event_id
             WHERE {condition} ORDER BY d.id LIMIT 500"
        ))
        .bind(value)
        .fetch_all(self.db.pool())
        .await?;
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Ok(Vec::new());
        };
        // Every attempt of the page in one query, not one per delivery.
        let attempts = sqlx::query(&format!(
            "SELECT a.delivery_id, a.attempt, a.trigger_kind, a.at_ms, a.response_status, a.response_body, a.error, a.duration_ms
             FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
             WHERE {condition} AND d.id BETWEEN $2 AND $3 ORDER BY a.delivery_id, a.attempt"
        ))
        .bind(value)
        .bind(first.try_get::<String, _>("id")?)
        .bind(last.try_get::<String, _>("id")?)
        .fetch_all(self.db.pool())
        .await?;
        let mut logs: std::collections::HashMap<String, Vec<AttemptOut>> =
            std::collections::HashMap::new();
        for a in &attempts {
            logs.entry(a.try_get("delivery_id")?)
                .or_default()
                .push(AttemptOut {
                    attempt: a.try_get("attempt")?,
                    trigger: a.try_get("trigger_kind")?,
                    at_ms: a.try_get("at_ms")?,
                    response_status: a.try_get("response_status")?,
                    response_body: a.try_get("response_body")?,
                    error: a.try_get("error")?,
                    duration_ms: a.try_get("duration_ms")?,
                });
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            let status: String = row.try_get("status")?;
            let log = logs.remove(&id).unwrap_or_default();
            out.push(DeliveryOut {
                next_attempt_at_ms: if status == "pending" {
                    row.try_get("next_attempt_at_ms")?
                } else {
                    None
                },
                id,
                event_id: row.try_get("event_id")?,
                event_type: row.try_get("event_type")?,
                endpoint_id: row.try_get("endpoint_id")?,
                merchant_id: row.try_get("merchant_id")?,
                status,
                attempts: row.try_get("attempts")?,
                delivered_at_ms: row.try_get("delivered_at_ms")?,
                log,
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl Consumer for Notifications {
    fn name(&self) -> &'static str {
        SERVICE
    }

    fn topics(&self) -> &'static [&'static str] {
        &["payment.events", "refund.events"]
    }

    async fn handle(&self, tx: &mut AnyConnection, event: &Envelope) -> anyhow::Result<()> {
        self.fan_out(tx, event).await
    }

    fn committed(&self, _event: &Envelope) {
        self.wake.notify_one();
    }
}

#[async_trait]
impl NotificationApi for Notifications {
    async fn create_endpoint(
        &self,
        merchant_id: &str,
        input: EndpointIn,
    ) -> ApiResult<EndpointOut> {
        let (url, events) = self.validate_endpoint(&input)?;
        // Well-formed, but where it leads is refused: no pattern can say that, so it is
        // not a 400.
        self.config.targets.check(&url).await.map_err(|m| {
            ApiError::new(422, "invalid_request_error", "url_not_allowed", m).with_param("url")
        })?;
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM webhook_endpoints WHERE merchant_id = $1 AND status <> 'deleted'",
        )
        .bind(merchant_id)
        .fetch_one(self.db.pool())
        .await?;
        if count >= MAX_ENDPOINTS {
            return Err(ApiError::conflict(
                "too_many_endpoints",
                format!("a merchant may have at most {MAX_ENDPOINTS} webhook endpoints"),
            ));
        }
        let now = self.clock.now_ms();
        let id = ids::new_id("we", now);
        let (secret, key) = signing::new_secret();
        let sealed = self.master_key.seal(&key, &Self::seal_context(&id));
        sqlx::query(&format!(
            "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, 'enabled', NULL, NULL, $8, $8)"
        ))
        .bind(&id)
        .bind(merchant_id)
        .bind(url.as_str())
        .bind(&input.description)
        .bind(serde_json::to_string(&events).map_err(ApiError::internal)?)
        .bind(&input.alert_email)
        .bind(sealed)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(EndpointOut {
            id,
            object: "webhook_endpoint".into(),
            url: url.to_string(),
            events,
            description: input.description,
            alert_email: input.alert_email,
            status: "enabled".into(),
            disabled_reason: None,
            secret: Some(secret),
            created_at_ms: now,
        })
    }

    async fn list_endpoints(&self, merchant_id: &str) -> ApiResult<Vec<EndpointOut>> {
        let rows = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE merchant_id = $1 AND status <> 'deleted' ORDER BY id DESC"
        ))
        .bind(merchant_id)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    async fn delete_endpoint(&self, merchant_id: &str, id: &str) -> ApiResult<EndpointOut> {
        // Kept as `deleted`: its delivery log stays readable.
        let row = sqlx::query(&format!(
            "UPDATE webhook_endpoints SET status = 'deleted', updated_at_ms = $1 WHERE id = $2 AND merchant_id = $3 AND status <> 'deleted' RETURNING {ENDPOINT_COLUMNS}"
        ))
        .bind(self.clock.now_ms())
        .bind(id)
        .bind(merchant_id)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| ApiError::not_found("webhook endpoint", id))?;
        endpoint_from_row(&row)
    }

    async fn deliveries(&self, query: DeliveryQuery) -> ApiResult<Vec<DeliveryOut>> {
        match (&query.endpoint_id, &query.event_id) {
            (Some(e), None) => self.deliveries_where("d.endpoint_id = $1", e).await,
            (None, Some(e)) => self.deliveries_where("d.event_id = $1", e).await,
            _ => Err(ApiError::invalid(
                "endpoint_id",
                "give exactly one of endpoint_id and event_id",
            )),
        }
    }

    async fn resend(&self, delivery_id: &str) -> ApiResult<DeliveryOut> {
        let delivery = self.load_delivery(delivery_id).await?;
        self.attempt(&delivery.id, delivery::Trigger::Manual)
            .await?;
        self.load_delivery(delivery_id).await
    }
}

pub fn router(service: Arc<Notifications>) -> Router {
    use operations::*;
    let router = CREATE_ENDPOINT.route(Router::new(), create_endpoint);
    let router = LIST_ENDPOINTS.route(router, list_endpoints);
    let router = DELETE_ENDPOINT.route(router, delete_endpoint);
    let router = DELIVERIES.route(router, deliveries);
    RESEND.route(router, resend).with_state(service)
}

async fn create_endpoint(
    State(s): State<Arc<Notifications>>,
    Path(merchant_id): Path<String>,
    ApiJson(input): ApiJson<EndpointIn>,
) -> ApiResult<Json<EndpointOut>> {
    s.create_endpoint(&merchant_id, input).await.map(Json)
}

async fn list_endpoints(
    State(s): State<Arc<Notifications>>,
    Path(merchant_id): Path<String>,
) -> ApiResult<Json<Vec<EndpointOut>>> {
    s.list_endpoints(&merchant_id).await.map(Json)
}

async fn delete_endpoint(
    State(s): State<Arc<Notifications>>,
    Path((merchant_id, id)): Path<(String, String)>,
) -> ApiResult<Json<EndpointOut>> {
    s.delete_endpoint(&merchant_id, &id).await.map(Json)
}

async fn deliveries(
    State(s): State<Arc<Notifications>>,
    Query(q): Query<DeliveryQuery>,
) -> ApiResult<Json<Vec<DeliveryOut>>> {
    s.deliveries(q).await.map(Json)
}

async fn resend(
    State(s): State<Arc<Notifications>>,
    Path(id): Path<String>,
) -> ApiResult<Json<DeliveryOut>> {
    s.resend(&id).await.map(Json)
}

//! Orders and their state machine. Nobody writes an order's status directly: a move names
//! the state it goes to, and only the moves in [`OrderStatus::can_move_to`] happen.

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use payloom_platform::client::{ServiceClient, ServicePath};
use payloom_platform::clock::SharedClock;
use payloom_platform::db::{Dialect, Migration, is_unique_violation};
use payloom_platform::events::{self, Envelope, Outbox};
use payloom_platform::{ApiError, ApiJson, ApiResult, Db, ids};
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// The service's name in migrations and the outbox.
pub const SERVICE: &str = "order";

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "orders",
    sql: include_str!("../migrations/0001_orders.sql"),
}];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Created,
    Authorized,
    Paid,
    PartiallyRefunded,
    Refunded,
    Failed,
    Canceled,
    Expired,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 8] = [
        Self::Created,
        Self::Authorized,
        Self::Paid,
        Self::PartiallyRefunded,
        Self::Refunded,
        Self::Failed,
        Self::Canceled,
        Self::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Authorized => "authorized",
            Self::Paid => "paid",
            Self::PartiallyRefunded => "partially_refunded",
            Self::Refunded => "refunded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }

    /// The state machine. Exhaustive on purpose: a new state must say where it goes.
    pub fn can_move_to(self, to: Self) -> bool {
        use OrderStatus::*;
        match self {
            Created => matches!(to, Authorized | Paid | Failed | Canceled | Expired),
            Authorized => matches!(to, Paid | Canceled | Expired),
            Paid => matches!(to, PartiallyRefunded | Refunded),
            PartiallyRefunded => matches!(to, PartiallyRefunded | Refunded),
            Refunded | Failed | Canceled | Expired => false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub merchant_id: String,
    pub order_no: String,
    pub amount_minor: i64,
    pub currency: String,
    pub status: OrderStatus,
    pub payment_id: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderIn {
    pub merchant_id: String,
    pub order_no: String,
    pub amount_minor: i64,
    pub currency: String,
    pub payment_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MoveIn {
    pub to: OrderStatus,
}

#[async_trait]
pub trait OrderApi: Send + Sync {
    /// A new order in `created`. 409 `order_no_taken` when the merchant already has it.
    async fn create(&self, req: OrderIn) -> ApiResult<Order>;
    async fn get(&self, id: &str) -> ApiResult<Order>;
    /// Moves the order; 409 `order_transition_invalid` when the machine does not allow it.
    async fn transition(&self, id: &str, to: OrderStatus) -> ApiResult<Order>;
}

pub struct Orders {
    db: Db,
    clock: SharedClock,
    outbox: Outbox,
}

impl Orders {
    pub async fn new(db: Db, clock: SharedClock) -> anyhow::Result<Arc<Self>> {
        db.migrate(SERVICE, MIGRATIONS).await?;
        events::install(&db).await?;
        Ok(Arc::new(Self {
            db,
            clock,
            outbox: Outbox::new(SERVICE),
        }))
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The outbox of `order.*` events.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}

impl Orders {
    /// The order already holding `order`'s number. When it was made for the same payment
    /// (a retry resuming a crashed request) it is that order; otherwise the number is
    /// taken.
    async fn existing_for(&self, order: &Order) -> ApiResult<Order> {
        let row = sqlx::query("SELECT * FROM orders WHERE merchant_id = $1 AND order_no = $2")
            .bind(&order.merchant_id)
            .bind(&order.order_no)
            .fetch_optional(self.db.pool())
            .await?;
        match row.as_ref().map(order_from_row).transpose()? {
            Some(existing) if existing.payment_id == order.payment_id => Ok(existing),
            _ => Err(ApiError::conflict(
                "order_no_taken",
                format!("order_no '{}' already has a payment", order.order_no),
            )
            .with_param("order_no")),
        }
    }
}

fn order_from_row(row: &sqlx::any::AnyRow) -> ApiResult<Order> {
    let status: String = row.try_get("status")?;
    Ok(Order {
        id: row.try_get("id")?,
        merchant_id: row.try_get("merchant_id")?,
        order_no: row.try_get("order_no")?,
        amount_minor: row.try_get("amount_minor")?,
        currency: row.try_get("currency")?,
        status: OrderStatus::parse(&status)
            .ok_or_else(|| ApiError::internal(format!("order status {status}")))?,
        payment_id: row.try_get("payment_id")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

#[async_trait]
impl OrderApi for Orders {
    async fn create(&self, req: OrderIn) -> ApiResult<Order> {
        let now = self.clock.now_ms();
        let order = Order {
            id: ids::new_id("ord", now),
            merchant_id: req.merchant_id,
            order_no: req.order_no,
            amount_minor: req.amount_minor,
            currency: req.currency,
            status: OrderStatus::Created,
            payment_id: req.payment_id,
            created_at_ms: now,
            updated_at_ms: now,
        };
        let inserted = sqlx::query(
            "INSERT INTO orders (id, merchant_id, order_no, amount_minor, currency, status, payment_id, created_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(&order.id)
        .bind(&order.merchant_id)
        .bind(&order.order_no)
        .bind(order.amount_minor)
        .bind(&order.currency)
        .bind(order.status.as_str())
        .bind(&order.payment_id)
        .bind(now)
        .execute(self.db.pool())
        .await;
        match inserted {
            Ok(_) => Ok(order),
            Err(e) if is_unique_violation(&e) => self.existing_for(&order).await,
            Err(e) => Err(e.into()),
        }
    }

    async fn get(&self, id: &str) -> ApiResult<Order> {
        let row = sqlx::query("SELECT * FROM orders WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| ApiError::not_found("order", id))?;
        order_from_row(&row)
    }

    async fn transition(&self, id: &str, to: OrderStatus) -> ApiResult<Order> {
        let from: Vec<&str> = OrderStatus::ALL
            .iter()
            .filter(|s| s.can_move_to(to))
            .map(|s| s.as_str())
            .collect();
        let moved = self.move_order(id, to, &from, self.clock.now_ms()).await?;
        match moved {
            Some(order) => Ok(order),
            None => {
                let current = self.get(id).await?;
                Err(ApiError::conflict(
                    "order_transition_invalid",
                    format!(
                        "an order in {} cannot become {}",
                        current.status.as_str(),
                        to.as_str()
                    ),
                ))
            }
        }
    }
}

impl Orders {
    /// Moves the order if it is in one of `from`, and logs the move with it. `None` when
    /// it was not in any of them.
    async fn move_order(
        &self,
        id: &str,
        to: OrderStatus,
        from: &[&str],
        now: i64,
    ) -> ApiResult<Option<Order>> {
        // The machine's check is the update's condition, so a concurrent move cannot slip
        // between a read and a write. `previous_status = status` keeps where it came from.
        let placeholders: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 4)).collect();
        let update = format!(
            "UPDATE orders SET previous_status = status, status = $1, updated_at_ms = $2
             WHERE id = $3 AND status IN ({}) RETURNING *",
            if placeholders.is_empty() {
                "NULL".to_owned()
            } else {
                placeholders.join(", ")
            }
        );
        // The one dialect switch: PostgreSQL moves, logs and writes the event in one
        // statement (one round trip); SQLite, without data-modifying WITH, in a
        // transaction of three.
        let event_id = ids::new_id("evt", now);
        let event_at = from.len() + 4;
        let sql = match self.db.dialect() {
            Dialect::Postgres => format!(
                "WITH moved AS ({update}), logged AS (INSERT INTO order_transitions (order_id, from_status, to_status, at_ms)
                 SELECT id, previous_status, status, updated_at_ms FROM moved),
                 evented AS (INSERT INTO payloom_outbox (service, event_id, topic, partition_key, envelope, created_at_ms)
                 SELECT '{SERVICE}', ${event_at}, 'order.events', id, json_build_object(
                   'id', ${event_at}::text, 'type', 'order.' || status, 'aggregate_type', 'order', 'aggregate_id', id,
                   'merchant_id', merchant_id, 'version', {version}, 'occurred_at_ms', updated_at_ms,
                   'data', json_build_object('id', id, 'merchant_id', merchant_id, 'order_no', order_no,
                     'amount_minor', amount_minor, 'currency', currency, 'status', status, 'payment_id', payment_id,
                     'created_at_ms', created_at_ms, 'updated_at_ms', updated_at_ms))::text, updated_at_ms FROM moved)
                 SELECT * FROM moved",
                version = events::ENVELOPE_VERSION,
            ),
            Dialect::Sqlite => update,
        };
        let mut query = sqlx::query(&sql).bind(to.as_str()).bind(now).bind(id);
        for state in from {
            query = query.bind(*state);
        }
        if self.db.dialect() == Dialect::Postgres {
            query = query.bind(&event_id);
        }
        let row = match self.db.dialect() {
            // A single statement commits on its own.
            Dialect::Postgres => query.fetch_optional(self.db.pool()).await?,
            Dialect::Sqlite => {
                let mut tx = self.db.pool().begin().await?;
                let row = query.fetch_optional(&mut *tx).await?;
                if let Some(row) = &row {
                    let previous: String = row.try_get("previous_status")?;
                    sqlx::query("INSERT INTO order_transitions (order_id, from_status, to_status, at_ms) VALUES ($1, $2, $3, $4)")
                        .bind(id)
                        .bind(previous)
                        .bind(to.as_str())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    let order = order_from_row(row)?;
                    let mut event = Envelope::new(
                        format!("order.{}", order.status.as_str()),
                        "order",
                        &order.id,
                        now,
                        serde_json::to_value(&order).map_err(ApiError::internal)?,
                    )
                    .for_merchant(&order.merchant_id);
                    event.id = event_id;
                    self.outbox.append(&mut tx, &event, &order.id).await?;
                }
                tx.commit().await?;
                row
            }
        };
        if row.is_some() {
            self.outbox.wake();
        }
        row.map(|row| order_from_row(&row)).transpose()
    }
}

/// [`OrderApi`] over HTTP.
pub struct OrderHttp(pub ServiceClient);

#[async_trait]
impl OrderApi for OrderHttp {
    async fn create(&self, req: OrderIn) -> ApiResult<Order> {
        self.0.post("/internal/v1/orders", &req).await
    }
    async fn get(&self, id: &str) -> ApiResult<Order> {
        let path = ServicePath::new(["internal", "v1", "orders", id]);
        self.0.get(path).await
    }
    async fn transition(&self, id: &str, to: OrderStatus) -> ApiResult<Order> {
        let path = ServicePath::new(["internal", "v1", "orders", id, "transitions"]);
        self.0.post(path, &MoveIn { to }).await
    }
}

pub fn router(service: Arc<Orders>) -> Router {
    Router::new()
        .route("/internal/v1/orders", post(create))
        .route("/internal/v1/orders/{id}", get(get_order))
        .route("/internal/v1/orders/{id}/transitions", post(transition))
        .with_state(service)
}

async fn create(
    State(s): State<Arc<Orders>>,
    ApiJson(req): ApiJson<OrderIn>,
) -> ApiResult<Json<Order>> {
    s.create(req).await.map(Json)
}

async fn get_order(State(s): State<Arc<Orders>>, Path(id): Path<String>) -> ApiResult<Json<Order>> {
    s.get(&id).await.map(Json)
}

async fn transition(
    State(s): State<Arc<Orders>>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<MoveIn>,
) -> ApiResult<Json<Order>> {
    s.transition(&id, req.to).await.map(Json)
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::{self, *};

    #[test]
    fn terminal_states_never_move_and_refunds_follow_payment() {
        for terminal in [Refunded, Failed, Canceled, Expired] {
            for to in OrderStatus::ALL {
                assert!(!terminal.can_move_to(to), "{terminal:?} -> {to:?}");
            }
        }
        assert!(Created.can_move_to(Paid));
        assert!(!Created.can_move_to(Refunded));
        assert!(Paid.can_move_to(PartiallyRefunded));
        assert!(!Paid.can_move_to(Created));
    }
}

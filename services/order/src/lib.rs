//! Orders and their state machine. Nobody writes an order's status directly: a move names
//! the state it goes to, and only the moves in [`OrderStatus::can_move_to`] happen.

pub mod service;

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::{Json, Router};
use payloom_platform::clock::SharedClock;
use payloom_platform::db::{Dialect, Migration, is_unique_violation};
use payloom_platform::events::{self, Outbox};
use payloom_platform::{ApiError, ApiJson, ApiResult, Db, ids};
use sqlx::Row;

pub use payloom_order_contract::{
    MoveIn, Order, OrderApi, OrderEvent, OrderHttp, OrderIn, OrderStatus, TOPIC,
};

/// The service's name in migrations and the outbox.
pub const SERVICE: &str = "order";

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "orders",
    sql: include_str!("../migrations/0001_orders.sql"),
}];

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

/// The columns an order event's `data` carries: every field of [`Order`], by name.
const EVENT_FIELDS: [&str; 9] = [
    "id",
    "merchant_id",
    "order_no",
    "amount_minor",
    "currency",
    "status",
    "payment_id",
    "created_at_ms",
    "updated_at_ms",
];

/// The statement that writes `order.<status>` for the order rows of `source` into the
/// outbox, its envelope built in SQL (so PostgreSQL needs no second round trip). The one
/// definition of the event for both databases; `$event_param` binds its id.
fn event_insert(dialect: Dialect, source: &str, event_param: usize) -> String {
    let (object, id, as_text) = match dialect {
        Dialect::Postgres => (
            "json_build_object",
            format!("${event_param}::text"),
            "::text",
        ),
        Dialect::Sqlite => ("json_object", format!("${event_param}"), ""),
    };
    let data: Vec<String> = EVENT_FIELDS.iter().map(|f| format!("'{f}', {f}")).collect();
    format!(
        "INSERT INTO payloom_outbox (service, event_id, topic, partition_key, envelope, created_at_ms)
         SELECT '{SERVICE}', {id}, '{TOPIC}', id, {object}(
           'id', {id}, 'type', 'order.' || status, 'aggregate_type', 'order', 'aggregate_id', id,
           'merchant_id', merchant_id, 'version', {version}, 'occurred_at_ms', updated_at_ms,
           'data', {object}({data})){as_text}, updated_at_ms FROM {source}",
        data = data.join(", "),
        version = events::ENVELOPE_VERSION,
    )
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
        // transaction of three. Both build the event with the same `event_insert`.
        let event_id = ids::new_id("evt", now);
        let dialect = self.db.dialect();
        let sql = match dialect {
            Dialect::Postgres => format!(
                "WITH moved AS ({update}), logged AS (INSERT INTO order_transitions (order_id, from_status, to_status, at_ms)
                 SELECT id, previous_status, status, updated_at_ms FROM moved),
                 evented AS ({event})
                 SELECT * FROM moved",
                event = event_insert(dialect, "moved", from.len() + 4),
            ),
            Dialect::Sqlite => update,
        };
        let mut query = sqlx::query(&sql).bind(to.as_str()).bind(now).bind(id);
        for state in from {
            query = query.bind(*state);
        }
        if dialect == Dialect::Postgres {
            query = query.bind(&event_id);
        }
        let row = match dialect {
            // A single statement commits on its own.
            Dialect::Postgres => query.fetch_optional(self.db.pool()).await?,
            Dialect::Sqlite => {
                let mut tx = self.db.pool().begin().await?;
                let row = query.fetch_optional(&mut *tx).await?;
                if row.is_some() {
                    sqlx::query("INSERT INTO order_transitions (order_id, from_status, to_status, at_ms) SELECT id, previous_status, status, updated_at_ms FROM orders WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(&event_insert(dialect, "orders WHERE id = $2", 1))
                        .bind(&event_id)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
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

pub fn router(service: Arc<Orders>) -> Router {
    use payloom_order_contract::operations::{CREATE, GET, TRANSITION};
    let router = CREATE.route(Router::new(), create);
    let router = GET.route(router, get_order);
    TRANSITION.route(router, transition).with_state(service)
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

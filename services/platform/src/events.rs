//! Events between services: a transactional outbox, a relay that publishes it, and
//! consumers that are idempotent by event id.
//!
//! A service writes its state change and the event in one transaction ([`Outbox::append`]).
//! A [`Relay`] reads the outbox in order, hands each batch to a [`Publisher`] (the
//! in-process [`Bus`] under `dev`, Kafka under `serve`) and deletes what was published, so
//! a drained outbox is an empty one. Delivery is at least once; a [`Subscription`] makes
//! the effect exactly once by recording the event id in the consumer's own database in the
//! same transaction as the effect, and dead-letters an event that keeps failing.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use tokio::sync::Notify;

use crate::db::{Db, Dialect, Migration};
use crate::ids;
use crate::operation::Operation;

/// Version of the envelope's shape; a consumer refuses a version it does not know.
pub const ENVELOPE_VERSION: i64 = 1;

/// What every event looks like on the wire, whatever carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// `evt_…`, unique; consumers deduplicate on it.
    pub id: String,
    /// `payment.succeeded`, `refund.succeeded`, `order.paid`, `ledger.entry_booked`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// What changed: `payment`, `refund`, `order`, `journal_entry`.
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The merchant the event belongs to, when it belongs to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_id: Option<String>,
    /// The shape of this envelope ([`ENVELOPE_VERSION`]).
    pub version: i64,
    pub occurred_at_ms: i64,
    /// The object as it is after the change.
    pub data: serde_json::Value,
}

impl Envelope {
    pub fn new(
        kind: impl Into<String>,
        aggregate_type: impl Into<String>,
        aggregate_id: impl Into<String>,
        occurred_at_ms: i64,
        data: serde_json::Value,
    ) -> Self {
        Self {
            id: ids::new_id("evt", occurred_at_ms),
            kind: kind.into(),
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.into(),
            merchant_id: None,
            version: ENVELOPE_VERSION,
            occurred_at_ms,
            data,
        }
    }

    pub fn for_merchant(mut self, merchant_id: impl Into<String>) -> Self {
        self.merchant_id = Some(merchant_id.into());
        self
    }

    /// `payment.succeeded` goes to `payment.events`.
    pub fn topic(&self) -> String {
        topic_of(&self.kind)
    }
}

pub fn topic_of(kind: &str) -> String {
    format!("{}.events", kind.split('.').next().unwrap_or(kind))
}

/// An outbox row on its way out.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub seq: i64,
    pub topic: String,
    /// Events with the same key keep their order (a Kafka partition key).
    pub key: String,
    pub envelope: Envelope,
    /// The envelope exactly as stored, so every carrier sends the same bytes.
    pub json: String,
    /// The W3C trace context of the request that wrote it, when there was one.
    pub trace_parent: Option<String>,
}

const EVENTS_SQL: &str = include_str!("../migrations/events.sql");

/// The outbox's ordering column, the one dialect difference.
static MIGRATIONS: LazyLock<[[Migration; 2]; 2]> = LazyLock::new(|| {
    let with =
        |sequence: &str| -> &'static str { EVENTS_SQL.replace("{sequence}", sequence).leak() };
    let migration = |sql| Migration {
        version: 1,
        name: "outbox, consumed events, dead letters",
        sql,
    };
    [
        [migration(with("BIGSERIAL PRIMARY KEY")), TRACE_MIGRATION],
        [
            migration(with("INTEGER PRIMARY KEY AUTOINCREMENT")),
            TRACE_MIGRATION,
        ],
    ]
});

/// An event keeps the trace of the request that caused it, for the process that handles it.
const TRACE_MIGRATION: Migration = Migration {
    version: 2,
    name: "outbox keeps the trace",
    sql: "ALTER TABLE payloom_outbox ADD COLUMN trace_parent TEXT",
};

/// Creates the event tables in `db` (shared by every service on that database).
pub async fn install(db: &Db) -> anyhow::Result<()> {
    let migrations = match db.dialect() {
        Dialect::Postgres => &MIGRATIONS[0],
        Dialect::Sqlite => &MIGRATIONS[1],
    };
    db.migrate("events", migrations).await
}

/// One service's outbox.
#[derive(Clone)]
pub struct Outbox {
    service: &'static str,
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new(service: &'static str) -> Self {
        Self {
            service,
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn service(&self) -> &'static str {
        self.service
    }

    /// Adds `event` inside the caller's transaction: it commits or vanishes with the
    /// state change. Call [`Outbox::wake`] after the commit.
    pub async fn append(
        &self,
        tx: &mut AnyConnection,
        event: &Envelope,
        key: &str,
    ) -> sqlx::Result<()> {
        let json = serde_json::to_string(event).expect("an envelope serialises");
        sqlx::query(
            "INSERT INTO payloom_outbox (service, event_id, topic, partition_key, envelope, created_at_ms, trace_parent) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(self.service)
        .bind(&event.id)
        .bind(event.topic())
        .bind(key)
        .bind(json)
        .bind(event.occurred_at_ms)
        .bind(crate::telemetry::current_traceparent())
        .execute(tx)
        .await?;
        Ok(())
    }

    /// Tells the relay there is something to send, so it need not wait for its poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Where a relay sends events.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Publishes the batch in order; `Ok` only when every event is durably handed over.
    async fn publish(&self, batch: &[Outgoing]) -> anyhow::Result<()>;
}

/// Publishes one service's outbox until the process ends.
pub struct Relay {
    pub db: Db,
    pub outbox: Outbox,
    pub publisher: Arc<dyn Publisher>,
    /// Events per round.
    pub batch: i64,
    /// How often the outbox is read when nobody wakes the relay (rows left by a crash,
    /// or written by another node).
    pub poll: Duration,
    pub metrics: crate::event_metrics::OutboxMetrics,
}

impl Relay {
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                match self.relay_once().await {
                    Ok(n) if n as i64 == self.batch => {
                        failures = 0;
                        continue;
                    }
                    Ok(_) => failures = 0,
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        tracing::warn!(service = self.outbox.service, "outbox relay: {e:#}");
                        let backoff = 100u64 << failures.min(6);
                        tokio::time::sleep(Duration::from_millis(backoff)).await;
                        continue;
                    }
                }
                let _ = tokio::time::timeout(self.poll, self.outbox.wake.notified()).await;
            }
        })
    }

    /// Publishes up to one batch; returns how many events left the outbox.
    pub async fn relay_once(&self) -> anyhow::Result<usize> {
        match self.db.dialect() {
            // Several nodes may run a relay for one service: one at a time relays it, under
            // a transaction-scoped advisory lock, so events leave in the order their
            // transactions wrote them (two changes of one payment are serialised by its
            // row lock, so their sequence numbers are in commit order).
            Dialect::Postgres => {
                let mut tx = self.db.pool().begin().await?;
                let leader: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                    .bind(relay_lock_key(self.outbox.service))
                    .fetch_one(&mut *tx)
                    .await?;
                if !leader {
                    return Ok(0);
                }
                let batch = self.read(&mut tx, " ORDER BY seq LIMIT $2").await?;
                if batch.is_empty() {
                    return Ok(0);
                }
                self.publisher.publish(&batch).await?;
                self.delete(&mut tx, &batch).await?;
                tx.commit().await?;
                self.metrics.published(self.outbox.service, batch.len());
                Ok(batch.len())
            }
            // SQLite has one node and one connection: no transaction is held while
            // consumers run, so the service keeps writing meanwhile.
            Dialect::Sqlite => {
                let mut conn = self.db.pool().acquire().await?;
                let batch = self.read(&mut conn, " ORDER BY seq LIMIT $2").await?;
                drop(conn);
                if batch.is_empty() {
                    return Ok(0);
                }
                self.publisher.publish(&batch).await?;
                let mut conn = self.db.pool().acquire().await?;
                self.delete(&mut conn, &batch).await?;
                self.metrics.published(self.outbox.service, batch.len());
                Ok(batch.len())
            }
        }
    }

    async fn read(&self, conn: &mut AnyConnection, tail: &str) -> anyhow::Result<Vec<Outgoing>> {
        let rows = sqlx::query(&format!(
            "SELECT seq, topic, partition_key, envelope, trace_parent FROM payloom_outbox WHERE service = $1{tail}"
        ))
        .bind(self.outbox.service)
        .bind(self.batch)
        .fetch_all(conn)
        .await?;
        let outgoing = rows
            .iter()
            .map(|row| {
                let json: String = row.try_get("envelope")?;
                Ok(Outgoing {
                    seq: row.try_get("seq")?,
                    topic: row.try_get("topic")?,
                    key: row.try_get("partition_key")?,
                    envelope: serde_json::from_str(&json)?,
                    json,
                    trace_parent: row.try_get("trace_parent")?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // In sequence order, the first is the oldest waiting.
        let oldest = outgoing.first().map(|o| o.envelope.occurred_at_ms);
        let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        self.metrics.read(self.outbox.service, oldest, now);
        Ok(outgoing)
    }

    async fn delete(&self, conn: &mut AnyConnection, batch: &[Outgoing]) -> anyhow::Result<()> {
        // Only the rows just sent: on PostgreSQL a row locked by another relay may sit
        // between them. The values are integers we read, so they are inlined.
        let seqs: Vec<String> = batch.iter().map(|o| o.seq.to_string()).collect();
        sqlx::query(&format!(
            "DELETE FROM payloom_outbox WHERE service = $1 AND seq IN ({})",
            seqs.join(", ")
        ))
        .bind(self.outbox.service)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// The advisory lock of one service's relay: FNV-1a of its name, in a range of its own.
fn relay_lock_key(service: &str) -> i64 {
    let hash = service.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    ((0x504c_u64 << 48) | (hash >> 16)) as i64
}

/// Counts the events still waiting in `service`'s outbox.
pub async fn pending(db: &Db, service: &str) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM payloom_outbox WHERE service = $1")
            .bind(service)
            .fetch_one(db.pool())
            .await?,
    )
}

/// Something that acts on events, exactly once per event id.
#[async_trait]
pub trait Consumer: Send + Sync {
    /// Names the consumer in the processed-events and dead-letter tables.
    fn name(&self) -> &'static str;
    /// The topics it reads.
    fn topics(&self) -> &'static [&'static str];
    /// Acts on `event` inside `tx`, the transaction that also records the event as
    /// consumed. Use only `tx`: its effects and the record commit together.
    async fn handle(&self, tx: &mut AnyConnection, event: &Envelope) -> anyhow::Result<()>;
    /// Runs after the transaction of a newly handled event committed.
    fn committed(&self, _event: &Envelope) {}
}

/// What happened to one event at one consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processed {
    Handled,
    /// Seen before: nothing was done.
    Duplicate,
    DeadLettered,
}

/// A consumer bound to its database, with the retry and dead-letter policy.
pub struct Subscription {
    pub db: Db,
    pub consumer: Arc<dyn Consumer>,
    /// Tries before an event is dead-lettered.
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub metrics: crate::event_metrics::ConsumerMetrics,
}

impl Subscription {
    pub fn new(db: Db, consumer: Arc<dyn Consumer>) -> Self {
        Self {
            db,
            consumer,
            max_attempts: 5,
            retry_base: Duration::from_millis(50),
            metrics: Default::default(),
        }
    }

    /// Counts what this subscription handles into `metrics`.
    pub fn counted_in(mut self, metrics: crate::event_metrics::ConsumerMetrics) -> Self {
        metrics.declare(self.consumer.name());
        self.metrics = metrics;
        self
    }

    /// `event`'s effects are committed.
    fn committed(&self, event: &Envelope) {
        let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        self.metrics
            .committed(self.consumer.name(), event.occurred_at_ms, now);
        self.consumer.committed(event);
    }

    /// Handles `event` at most once; retries a failing handler and dead-letters the event
    /// after `max_attempts`. `Err` only when even the dead letter cannot be written, so
    /// the carrier redelivers.
    pub async fn process(&self, event: &Envelope) -> anyhow::Result<Processed> {
        if event.version != ENVELOPE_VERSION {
            return self
                .dead_letter(event, &format!("envelope version {}", event.version), 0)
                .await;
        }
        let mut last_error = String::new();
        for attempt in 1..=self.max_attempts {
            match self.try_once(event).await {
                Ok(outcome) => return Ok(outcome),
                Err(e) => {
                    last_error = format!("{e:#}");
                    tracing::warn!(
                        consumer = self.consumer.name(),
                        event_id = event.id,
                        attempt,
                        "event handler failed: {last_error}"
                    );
                }
            }
            if attempt < self.max_attempts {
                tokio::time::sleep(self.retry_base * 2u32.pow(attempt - 1)).await;
            }
        }
        self.dead_letter(event, &last_error, self.max_attempts)
            .await
    }

    /// Records `event` as consumed inside `tx`; `false` when it was already.
    async fn claim(&self, tx: &mut AnyConnection, event: &Envelope) -> sqlx::Result<bool> {
        let claimed = sqlx::query(
            "INSERT INTO payloom_consumed (consumer, event_id, consumed_at_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(self.consumer.name())
        .bind(&event.id)
        .bind(event.occurred_at_ms)
        .execute(tx)
        .await?;
        Ok(claimed.rows_affected() == 1)
    }

    /// Handles a run of events in one transaction (one commit for all: what lets a
    /// consumer keep up with a busy producer). If any event fails, the transaction is
    /// dropped and each event goes through [`Subscription::process`] on its own, so one
    /// bad event is retried and dead-lettered alone.
    pub async fn process_batch(&self, events: &[&Envelope]) -> anyhow::Result<()> {
        if events.len() > 1 {
            match self.try_batch(events).await {
                Ok(handled) => {
                    for event in handled {
                        self.committed(event);
                    }
                    return Ok(());
                }
                Err(e) => tracing::info!(
                    consumer = self.consumer.name(),
                    "batch of {} fell back to one by one: {e:#}",
                    events.len()
                ),
            }
        }
        for event in events {
            self.process(event).await?;
        }
        Ok(())
    }

    async fn try_batch<'e>(&self, events: &[&'e Envelope]) -> anyhow::Result<Vec<&'e Envelope>> {
        let mut tx = self.db.pool().begin().await?;
        let mut handled = Vec::with_capacity(events.len());
        for event in events {
            anyhow::ensure!(
                event.version == ENVELOPE_VERSION,
                "envelope version {}",
                event.version
            );
            if self.claim(&mut tx, event).await? {
                self.consumer.handle(&mut tx, event).await?;
                handled.push(*event);
            }
        }
        tx.commit().await?;
        Ok(handled)
    }

    async fn try_once(&self, event: &Envelope) -> anyhow::Result<Processed> {
        let mut tx = self.db.pool().begin().await?;
        if !self.claim(&mut tx, event).await? {
            return Ok(Processed::Duplicate);
        }
        self.consumer.handle(&mut tx, event).await?;
        tx.commit().await?;
        self.committed(event);
        Ok(Processed::Handled)
    }

    /// Parks the event with its error and marks it consumed, so it is not retried
    /// forever; an operator can read it back from `payloom_dead_letters`.
    async fn dead_letter(
        &self,
        event: &Envelope,
        error: &str,
        attempts: u32,
    ) -> anyhow::Result<Processed> {
        tracing::error!(
            consumer = self.consumer.name(),
            event_id = event.id,
            "event dead-lettered: {error}"
        );
        let mut tx = self.db.pool().begin().await?;
        if !self.claim(&mut tx, event).await? {
            return Ok(Processed::Duplicate);
        }
        sqlx::query(
            "INSERT INTO payloom_dead_letters (consumer, event_id, topic, envelope, error, attempts, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(self.consumer.name())
        .bind(&event.id)
        .bind(event.topic())
        .bind(serde_json::to_string(event)?)
        .bind(error)
        .bind(attempts as i64)
        .bind(event.occurred_at_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Processed::DeadLettered)
    }
}

/// An event a consumer gave up on, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub consumer: String,
    pub event_id: String,
    pub topic: String,
    pub error: String,
    pub attempts: i64,
    pub at_ms: i64,
    pub event: Envelope,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayed {
    pub consumer: String,
    pub event_id: String,
    /// `handled`, `duplicate` or `dead_lettered` (it failed again).
    pub outcome: String,
}

/// Operators' view of a consumer's dead letters, in-process or over HTTP.
#[async_trait]
pub trait DeadLetterApi: Send + Sync {
    async fn dead_letters(&self) -> crate::ApiResult<Vec<DeadLetter>>;
    /// Takes the event back from the dead letters and handles it again now.
    async fn replay(&self, event_id: &str) -> crate::ApiResult<Replayed>;
}

/// Dead letters listed at most.
const DEAD_LETTERS_MAX: i64 = 500;

#[async_trait]
impl DeadLetterApi for Subscription {
    async fn dead_letters(&self) -> crate::ApiResult<Vec<DeadLetter>> {
        let rows = sqlx::query(
            "SELECT consumer, event_id, topic, envelope, error, attempts, at_ms FROM payloom_dead_letters WHERE consumer = $1 ORDER BY at_ms, event_id LIMIT $2",
        )
        .bind(self.consumer.name())
        .bind(DEAD_LETTERS_MAX)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let envelope: String = row.try_get("envelope")?;
                Ok(DeadLetter {
                    consumer: row.try_get("consumer")?,
                    event_id: row.try_get("event_id")?,
                    topic: row.try_get("topic")?,
                    error: row.try_get("error")?,
                    attempts: row.try_get("attempts")?,
                    at_ms: row.try_get("at_ms")?,
                    event: serde_json::from_str(&envelope).map_err(crate::ApiError::internal)?,
                })
            })
            .collect()
    }

    async fn replay(&self, event_id: &str) -> crate::ApiResult<Replayed> {
        let mut tx = self.db.pool().begin().await?;
        let envelope: Option<String> = sqlx::query_scalar(
            "DELETE FROM payloom_dead_letters WHERE consumer = $1 AND event_id = $2 RETURNING envelope",
        )
        .bind(self.consumer.name())
        .bind(event_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(envelope) = envelope else {
            return Err(crate::ApiError::not_found("dead letter", event_id));
        };
        sqlx::query("DELETE FROM payloom_consumed WHERE consumer = $1 AND event_id = $2")
            .bind(self.consumer.name())
            .bind(event_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let event: Envelope = serde_json::from_str(&envelope).map_err(crate::ApiError::internal)?;
        let outcome = match self.process(&event).await? {
            Processed::Handled => "handled",
            Processed::Duplicate => "duplicate",
            Processed::DeadLettered => "dead_lettered",
        };
        Ok(Replayed {
            consumer: self.consumer.name().to_owned(),
            event_id: event.id,
            outcome: outcome.into(),
        })
    }
}

/// [`DeadLetterApi`] of a service over HTTP.
pub struct DeadLetterHttp(pub crate::client::ServiceClient);

#[async_trait]
impl DeadLetterApi for DeadLetterHttp {
    async fn dead_letters(&self) -> crate::ApiResult<Vec<DeadLetter>> {
        DEAD_LETTERS.call(&self.0, &[], &()).await
    }
    async fn replay(&self, event_id: &str) -> crate::ApiResult<Replayed> {
        REPLAY.call(&self.0, &[event_id], &()).await
    }
}

/// A consumer's dead letters, and the replay of one.
pub const DEAD_LETTERS: Operation<(), Vec<DeadLetter>> =
    Operation::get("/internal/v1/dead_letters");
pub const REPLAY: Operation<(), Replayed> =
    Operation::post("/internal/v1/dead_letters/{event_id}/replay");

/// A consumer service's internal routes for its dead letters.
pub fn dead_letter_router(subscription: Arc<Subscription>) -> axum::Router {
    use axum::extract::{Path, State};
    async fn list(
        State(s): State<Arc<Subscription>>,
    ) -> crate::ApiResult<axum::Json<Vec<DeadLetter>>> {
        s.dead_letters().await.map(axum::Json)
    }
    async fn replay(
        State(s): State<Arc<Subscription>>,
        Path(event_id): Path<String>,
    ) -> crate::ApiResult<axum::Json<Replayed>> {
        s.replay(&event_id).await.map(axum::Json)
    }
    let router = DEAD_LETTERS.route(axum::Router::new(), list);
    REPLAY.route(router, replay).with_state(subscription)
}

/// The in-process carrier of `dev`: publishing an event runs every subscribed consumer
/// on it before the relay deletes it from the outbox.
#[derive(Default)]
pub struct Bus {
    by_topic: HashMap<String, Vec<Arc<Subscription>>>,
}

impl Bus {
    pub fn subscribe(&mut self, subscription: Subscription) {
        let subscription = Arc::new(subscription);
        for topic in subscription.consumer.topics() {
            self.by_topic
                .entry((*topic).to_owned())
                .or_default()
                .push(subscription.clone());
        }
    }
}

#[async_trait]
impl Publisher for Bus {
    /// Each subscription gets its events of the batch in order, as one run; different
    /// subscriptions work at the same time.
    async fn publish(&self, batch: &[Outgoing]) -> anyhow::Result<()> {
        let mut runs: Vec<(&Arc<Subscription>, Vec<&Envelope>)> = Vec::new();
        for out in batch {
            for subscription in self.by_topic.get(&out.topic).into_iter().flatten() {
                match runs.iter_mut().find(|(s, _)| Arc::ptr_eq(s, subscription)) {
                    Some((_, events)) => events.push(&out.envelope),
                    None => runs.push((subscription, vec![&out.envelope])),
                }
            }
        }
        let results = futures::future::join_all(
            runs.iter()
                .map(|(subscription, events)| subscription.process_batch(events)),
        )
        .await;
        results.into_iter().collect()
    }
}

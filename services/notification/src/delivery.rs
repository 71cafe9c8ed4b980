//! Sending webhooks. A due delivery is leased (its next attempt pushed past the request
//! timeout) before it is sent, so a crash mid-send means one more send after the lease,
//! never a lost one: delivery is at least once, with the event id as `webhook-id` on every
//! try. Each delivery is sent by its own task in a bounded number of slots, with caps per
//! endpoint and per merchant, so receivers that never answer delay only their own
//! deliveries. Success is a 2xx; 410 disables the endpoint; anything else is retried on the
//! schedule with jitter until it runs out, and an endpoint that has only failed for
//! `disable_after_secs` is disabled.

use std::sync::Arc;
use std::time::{Duration, Instant};

mod slots;

use payloom_platform::{ApiError, ApiResult, ids};
use sqlx::Row;

use self::slots::{Limits, Slot, Slots};
use crate::email::Email;
use crate::signing;
use crate::{NotificationConfig, Notifications};

/// Who asked for an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The worker, on the schedule.
    Scheduled,
    /// An operator's resend: logged, never rescheduled on failure.
    Manual,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Manual => "manual",
        }
    }
}

/// What the receiver did.
struct Answer {
    status: Option<u16>,
    body: Option<String>,
    error: Option<String>,
    timed_out: bool,
}

impl Answer {
    fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Stored response bodies are cut to this many bytes, and no more is read: a receiver
/// cannot make the platform buffer what it sends.
const RESPONSE_KEEP: usize = 4096;

/// The start of a response body, read as it streams in and no further than
/// [`RESPONSE_KEEP`] bytes. A body that breaks off keeps what arrived.
async fn kept_body(mut response: reqwest::Response) -> String {
    let mut kept = Vec::with_capacity(RESPONSE_KEEP);
    while kept.len() < RESPONSE_KEEP {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = RESPONSE_KEEP - kept.len();
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    // Dropping the response here closes the connection on whatever is left unread.
    let text = String::from_utf8_lossy(&kept);
    let mut cut = text.len().min(RESPONSE_KEEP);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].to_owned()
}

/// `base` seconds, moved uniformly within ±`jitter`.
pub fn jittered_ms(base_secs: u64, jitter: f64) -> i64 {
    let bytes = ids::random_bytes(8);
    let unit = u64::from_le_bytes(bytes.try_into().expect("8 bytes")) as f64 / u64::MAX as f64;
    let factor = 1.0 - jitter + 2.0 * jitter * unit;
    (base_secs as f64 * 1_000.0 * factor).round() as i64
}

/// How long after its `made`-th failed attempt a delivery is tried again; `None` when it
/// has failed for good (410 Gone, or the schedule is spent). A timeout or a 429 waits at
/// least the overload floor.
pub fn retry_delay_ms(
    config: &NotificationConfig,
    made: i64,
    gone: bool,
    overloaded: bool,
) -> Option<i64> {
    if gone {
        return None;
    }
    let base = *config
        .retry_schedule_secs
        .get(usize::try_from(made - 1).ok()?)?;
    let delay = jittered_ms(base, config.jitter);
    Some(if overloaded {
        delay.max(config.overload_floor_secs as i64 * 1_000)
    } else {
        delay
    })
}

/// Candidate rows read per free slot when leasing: enough that a page rarely holds only
/// rows of endpoints that fill up in this round, few enough to keep a round cheap.
const CANDIDATES_PER_SLOT: usize = 4;

/// A due delivery, leased or about to be.
#[derive(Debug, Clone)]
struct Lease {
    id: String,
    endpoint_id: String,
    merchant_id: String,
}

impl Lease {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            endpoint_id: row.try_get("endpoint_id")?,
            merchant_id: row.try_get("merchant_id")?,
        })
    }
}

/// Due deliveries in order, `$2` of them from `$1` on, passing over the `endpoints`
/// endpoints and `merchants` merchants that follow as parameters (they are at their cap).
fn due_candidates_sql(endpoints: usize, merchants: usize) -> String {
    let mut sql = String::from(
        "SELECT id, endpoint_id, merchant_id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at_ms <= $1",
    );
    if endpoints > 0 {
        sql += &format!(" AND endpoint_id NOT IN ({})", placeholders(3, endpoints));
    }
    if merchants > 0 {
        let list = placeholders(3 + endpoints, merchants);
        sql += &format!(" AND merchant_id NOT IN ({list})");
    }
    sql + " ORDER BY next_attempt_at_ms LIMIT $2"
}

/// `$first, $first+1, …`: `n` numbered placeholders.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Notifications {
    /// Sends due deliveries, each in its own task, until the process ends or
    /// [`Self::drain`] stops it.
    pub fn spawn_worker(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        let slots = Slots::new(Limits::of(&self.config), self.wake.clone());
        tokio::spawn(async move {
            let poll = Duration::from_millis(service.config.poll_interval_ms);
            while !service.attempts.is_closed() {
                match service.lease_due(&slots).await {
                    Ok(leases) if !leases.is_empty() => {
                        for lease in leases {
                            let slot = slots.take(&lease.endpoint_id, &lease.merchant_id);
                            service.spawn_attempt(slot, lease.id);
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("webhook delivery round failed: {e:#}"),
                }
                // New deliveries, a freed slot, or the poll for retries coming due.
                let _ = tokio::time::timeout(poll, service.wake.notified()).await;
            }
        })
    }

    /// Reads the backlog and the disabled endpoints into the metrics every poll interval
    /// (at most once a quarter second), until the service stops.
    pub fn spawn_sampler(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        let every = Duration::from_millis(self.config.poll_interval_ms.max(250));
        tokio::spawn(async move {
            while !service.attempts.is_closed() {
                if let Err(e) = service.sample().await {
                    tracing::warn!("reading the webhook backlog failed: {e:#}");
                }
                tokio::time::sleep(every).await;
            }
        })
    }

    async fn sample(&self) -> anyhow::Result<()> {
        let (pending, oldest): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(created_at_ms) FROM webhook_deliveries WHERE status = 'pending'",
        )
        .fetch_one(self.db.pool())
        .await?;
        let (disabled,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM webhook_endpoints WHERE status = 'disabled'")
                .fetch_one(self.db.pool())
                .await?;
        self.metrics
            .sampled(pending, oldest, disabled, self.clock.now_ms());
        Ok(())
    }

    /// Leases no more deliveries and waits, up to `grace`, for the attempts under way to
    /// be answered and recorded; whether they all were. One cut short goes out again,
    /// under the same event id, after the next start.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.attempts.close();
        self.wake.notify_waiters();
        tokio::time::timeout(grace, self.attempts.wait())
            .await
            .is_ok()
    }

    fn spawn_attempt(self: &Arc<Self>, slot: Slot, delivery_id: String) {
        let service = self.clone();
        self.attempts.spawn(async move {
            let _slot = slot;
            if let Err(e) = service.attempt(&delivery_id, Trigger::Scheduled).await {
                tracing::warn!(delivery_id, "webhook attempt not recorded: {e}");
            }
        });
    }

    /// Leases as many due deliveries as there are free slots, none beyond an endpoint's
    /// or a merchant's cap.
    async fn lease_due(&self, slots: &Slots) -> anyhow::Result<Vec<Lease>> {
        let mut plan = slots.plan();
        let free = plan.free();
        if free == 0 {
            return Ok(Vec::new());
        }
        let now = self.clock.now_ms();
        let (full_endpoints, full_merchants) = plan.saturated();
        let sql = due_candidates_sql(full_endpoints.len(), full_merchants.len());
        let mut query = sqlx::query(&sql)
            .bind(now)
            .bind((free * CANDIDATES_PER_SLOT) as i64);
        for key in full_endpoints.iter().chain(&full_merchants) {
            query = query.bind(key);
        }
        let mut chosen = Vec::new();
        for row in query.fetch_all(self.db.pool()).await? {
            let candidate = Lease::from_row(&row)?;
            if plan.admits(&candidate.endpoint_id, &candidate.merchant_id) {
                plan.add(&candidate.endpoint_id, &candidate.merchant_id);
                chosen.push(candidate.id);
            }
        }
        self.lease(&chosen, now).await
    }

    /// Leases `ids` unless another sender took them since they were read: their next
    /// attempt moves past the request timeout, so a live sender is never raced and a
    /// crashed one's deliveries go out again soon after a restart.
    async fn lease(&self, ids: &[String], now: i64) -> anyhow::Result<Vec<Lease>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let lease_until = now + self.config.request_timeout_ms as i64 + 5_000;
        let sql = format!(
            "UPDATE webhook_deliveries SET next_attempt_at_ms = $1
             WHERE status = 'pending' AND next_attempt_at_ms <= $2 AND id IN ({})
             RETURNING id, endpoint_id, merchant_id",
            placeholders(3, ids.len())
        );
        let mut query = sqlx::query(&sql).bind(lease_until).bind(now);
        for id in ids {
            query = query.bind(id);
        }
        let rows = query.fetch_all(self.db.pool()).await?;
        Ok(rows.iter().map(Lease::from_row).collect::<Result<_, _>>()?)
    }

    /// Sends one delivery once and records what happened.
    pub(crate) async fn attempt(&self, delivery_id: &str, trigger: Trigger) -> ApiResult<()> {
        let row = sqlx::query(
            "SELECT d.attempts, d.status, d.event_id, m.body, e.id AS endpoint_id, e.url, e.sealed_secret, e.status AS endpoint_status,
                    e.failing_since_ms, e.alert_email, e.merchant_id
             FROM webhook_deliveries d JOIN webhook_messages m ON m.event_id = d.event_id JOIN webhook_endpoints e ON e.id = d.endpoint_id
             WHERE d.id = $1",
        )
        .bind(delivery_id)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| ApiError::not_found("webhook delivery", delivery_id))?;
        let endpoint_id: String = row.try_get("endpoint_id")?;
        let endpoint_status: String = row.try_get("endpoint_status")?;
        if endpoint_status != "enabled" {
            if trigger == Trigger::Manual {
                return Err(ApiError::conflict(
                    "endpoint_not_enabled",
                    format!("endpoint {endpoint_id} is {endpoint_status}"),
                ));
            }
            sqlx::query("UPDATE webhook_deliveries SET status = 'failed', last_error = $1, updated_at_ms = $2 WHERE id = $3 AND status = 'pending'")
                .bind(format!("endpoint {endpoint_status}"))
                .bind(self.clock.now_ms())
                .bind(delivery_id)
                .execute(self.db.pool())
                .await?;
            return Ok(());
        }
        let event_id: String = row.try_get("event_id")?;
        let body: String = row.try_get("body")?;
        let url: String = row.try_get("url")?;
        let sealed: String = row.try_get("sealed_secret")?;
        let key = self
            .master_key
            .open(&sealed, &Self::seal_context(&endpoint_id))
            .map_err(ApiError::internal)?;
        let started = Instant::now();
        let answer = self.send(&url, &key, &event_id, body).await;
        let duration_ms = started.elapsed().as_millis() as i64;
        self.metrics.attempted(answer.succeeded());
        let attempts: i64 = row.try_get("attempts")?;
        let failing_since: Option<i64> = row.try_get("failing_since_ms")?;
        let disabled = self
            .record(
                delivery_id,
                &endpoint_id,
                trigger,
                attempts,
                failing_since,
                &answer,
                duration_ms,
            )
            .await?;
        if let Some(reason) = disabled {
            let alert: Option<String> = row.try_get("alert_email")?;
            let merchant_id: String = row.try_get("merchant_id")?;
            tracing::warn!(
                endpoint_id,
                merchant_id,
                "webhook endpoint disabled: {reason}"
            );
            if let Some(to) = alert {
                let email = Email {
                    to,
                    subject: format!("Webhook endpoint {endpoint_id} was disabled"),
                    body: format!(
                        "Payloom stopped sending webhooks to {url}: {reason}. Create a new endpoint once it is fixed."
                    ),
                };
                if let Err(e) = self.mailer.send(&email) {
                    tracing::warn!("alert email not sent: {e:#}");
                }
            }
        }
        Ok(())
    }

    async fn send(&self, url: &str, key: &[u8], event_id: &str, body: String) -> Answer {
        let refused = |error: String| Answer {
            status: None,
            body: None,
            error: Some(error),
            timed_out: false,
        };
        // Names are checked by the client's resolver; an address literal never reaches it.
        let Ok(parsed) = url::Url::parse(url) else {
            return refused("stored url does not parse".into());
        };
        if let Some(ip) = parsed
            .host_str()
            .and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse().ok())
            && !self.config.targets.permits(ip)
        {
            return refused(format!("{ip} is not a permitted webhook target"));
        }
        let timestamp = self.clock.now_ms() / 1_000;
        let signature = signing::sign(key, event_id, timestamp, body.as_bytes());
        let sent = self
            .http
            .post(parsed)
            .header("content-type", "application/json")
            .header("webhook-id", event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                Answer {
                    status: Some(status),
                    body: Some(kept_body(response).await),
                    error: None,
                    timed_out: false,
                }
            }
            Err(e) => Answer {
                status: None,
                body: None,
                timed_out: e.is_timeout(),
                error: Some(format!("{e:#}")),
            },
        }
    }

    /// Logs the attempt and moves the delivery and endpoint, in one transaction. Returns
    /// why the endpoint was disabled, if this attempt disabled it.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        delivery_id: &str,
        endpoint_id: &str,
        trigger: Trigger,
        attempts: i64,
        failing_since: Option<i64>,
        answer: &Answer,
        duration_ms: i64,
    ) -> ApiResult<Option<String>> {
        let now = self.clock.now_ms();
        let mut tx = self.db.pool().begin().await?;
        log_attempt(&mut tx, delivery_id, trigger, now, answer, duration_ms).await?;
        let mut disabled = None;
        if answer.succeeded() {
            sqlx::query("UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + $1, last_status = $2, last_error = NULL, delivered_at_ms = $3, updated_at_ms = $3 WHERE id = $4")
                .bind(i64::from(trigger == Trigger::Scheduled))
                .bind(answer.status.map(i64::from))
                .bind(now)
                .bind(delivery_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE webhook_endpoints SET failing_since_ms = NULL WHERE id = $1 AND failing_since_ms IS NOT NULL")
                .bind(endpoint_id)
                .execute(&mut *tx)
                .await?;
        } else {
            if trigger == Trigger::Scheduled {
                self.schedule_retry(&mut tx, delivery_id, attempts + 1, answer, now)
                    .await?;
            }
            let since = failing_since.unwrap_or(now);
            disabled = self.disable_reason(answer, since, now);
            sqlx::query("UPDATE webhook_endpoints SET failing_since_ms = $1, status = $2, disabled_reason = $3, updated_at_ms = $4 WHERE id = $5 AND status = 'enabled'")
                .bind(since)
                .bind(if disabled.is_some() { "disabled" } else { "enabled" })
                .bind(&disabled)
                .bind(now)
                .bind(endpoint_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(disabled)
    }

    /// A failed scheduled attempt: the delivery waits for its next try, or has failed.
    async fn schedule_retry(
        &self,
        tx: &mut sqlx::AnyConnection,
        delivery_id: &str,
        made: i64,
        answer: &Answer,
        now: i64,
    ) -> ApiResult<()> {
        let error = answer
            .error
            .clone()
            .unwrap_or_else(|| format!("answered {}", answer.status.unwrap_or_default()));
        let gone = answer.status == Some(410);
        let overloaded = answer.timed_out || answer.status == Some(429);
        let (status, next_at) = match retry_delay_ms(&self.config, made, gone, overloaded) {
            Some(delay) => ("pending", now + delay),
            None => ("failed", now),
        };
        sqlx::query("UPDATE webhook_deliveries SET status = $1, attempts = $2, next_attempt_at_ms = $3, last_status = $4, last_error = $5, updated_at_ms = $6 WHERE id = $7")
            .bind(status)
            .bind(made)
            .bind(next_at)
            .bind(answer.status.map(i64::from))
            .bind(&error)
            .bind(now)
            .bind(delivery_id)
            .execute(tx)
            .await?;
        Ok(())
    }

    /// Why a failing endpoint is disabled now: it answered 410, or it has failed for
    /// longer than `disable_after_secs`.
    fn disable_reason(&self, answer: &Answer, since: i64, now: i64) -> Option<String> {
        if answer.status == Some(410) {
            Some("it answered 410 Gone".to_owned())
        } else if now - since >= self.config.disable_after_secs as i64 * 1_000 {
            Some(format!(
                "every attempt failed for {} s",
                (now - since) / 1_000
            ))
        } else {
            None
        }
    }
}

/// Appends the attempt to the delivery's log, numbered after the last one.
async fn log_attempt(
    tx: &mut sqlx::AnyConnection,
    delivery_id: &str,
    trigger: Trigger,
    now: i64,
    answer: &Answer,
    duration_ms: i64,
) -> ApiResult<()> {
    let number: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(attempt), 0) + 1 FROM webhook_attempts WHERE delivery_id = $1",
    )
    .bind(delivery_id)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO webhook_attempts (delivery_id, attempt, trigger_kind, at_ms, response_status, response_body, error, duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(delivery_id)
    .bind(number)
    .bind(trigger.as_str())
    .bind(now)
    .bind(answer.status.map(i64::from))
    .bind(&answer.body)
    .bind(&answer.error)
    .bind(duration_ms)
    .execute(tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn retries_follow_the_schedule_then_stop_and_overload_waits_the_floor() {
        let config = crate::NotificationConfig {
            retry_schedule_secs: vec![5, 300, 1800],
            jitter: 0.0,
            overload_floor_secs: 60,
            request_timeout_ms: 15_000,
            disable_after_secs: 432_000,
            poll_interval_ms: 500,
            batch: 32,
            endpoint_in_flight_max: 8,
            merchant_in_flight_max: 16,
            targets: Default::default(),
        };
        let after = |made, gone, overloaded| super::retry_delay_ms(&config, made, gone, overloaded);
        assert_eq!(after(1, false, false), Some(5_000));
        assert_eq!(after(2, false, false), Some(300_000));
        assert_eq!(after(3, false, false), Some(1_800_000));
        assert_eq!(after(4, false, false), None, "8 attempts in Svix's, 4 here");
        assert_eq!(
            after(1, false, true),
            Some(60_000),
            "a timeout or 429 waits the floor"
        );
        assert_eq!(after(3, false, true), Some(1_800_000));
        assert_eq!(after(1, true, false), None, "410 Gone stops at once");
    }

    #[test]
    fn candidates_pass_over_endpoints_and_merchants_at_their_cap() {
        let sql = super::due_candidates_sql(2, 1);
        assert!(
            sql.contains("endpoint_id NOT IN ($3, $4) AND merchant_id NOT IN ($5)"),
            "{sql}"
        );
        let none = super::due_candidates_sql(0, 0);
        assert!(
            !none.contains("NOT IN") && none.ends_with("LIMIT $2"),
            "{none}"
        );
    }

    #[test]
    fn jitter_stays_within_its_band() {
        for _ in 0..1000 {
            let ms = super::jittered_ms(300, 0.2);
            assert!((240_000..=360_000).contains(&ms), "{ms}");
        }
        assert_eq!(super::jittered_ms(5, 0.0), 5_000);
    }
}

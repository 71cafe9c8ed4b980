//! Where quota usage and reservations live: SQL rows or Redis keys. Each store moves the
//! counters and records the reservation atomically, so a release happens exactly once.

use std::sync::LazyLock;

use async_trait::async_trait;
use payloom_platform::Db;
use payloom_platform::db::Dialect;
use redis::aio::ConnectionManager;
use sqlx::Row;

/// One reservation against a day and a month.
#[derive(Debug, Clone)]
pub struct ReservationRecord {
    pub id: String,
    pub merchant_id: String,
    pub currency: String,
    pub amount_minor: i64,
    /// `d:YYYY-MM-DD`.
    pub day: String,
    /// `m:YYYY-MM`.
    pub month: String,
    pub created_at_ms: i64,
}

/// Usage counters per merchant, currency and period, and the reservations that moved them.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Adds the amount to the day and the month and records the reservation, if neither
    /// would pass its limit; otherwise changes nothing and answers `false`.
    async fn reserve(
        &self,
        r: &ReservationRecord,
        daily_minor: i64,
        monthly_minor: i64,
    ) -> anyhow::Result<bool>;
    /// Gives a reservation back. A second release, or an unknown id, changes nothing.
    async fn release(&self, reservation_id: &str) -> anyhow::Result<()>;
}

/// Counters and reservations as rows, moved in one transaction.
pub struct SqlUsage {
    db: Db,
}

impl SqlUsage {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

#[async_trait]
impl UsageStore for SqlUsage {
    async fn reserve(
        &self,
        r: &ReservationRecord,
        daily_minor: i64,
        monthly_minor: i64,
    ) -> anyhow::Result<bool> {
        if r.amount_minor > daily_minor || r.amount_minor > monthly_minor {
            return Ok(false);
        }
        let mut tx = self.db.pool().begin().await?;
        if self.db.dialect() == Dialect::Postgres {
            // Every payment of a merchant updates the same two rows, so their row lock is
            // the queue. Committing without waiting for the WAL flush releases it at
            // once. Nothing is lost by it: whatever relies on this reservation (the
            // payment) commits later with a flush, and WAL is flushed in order.
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut *tx)
                .await?;
        }
        // The reservation row first: it contends with nothing, so the row locks taken
        // below are held for as short a time as possible.
        sqlx::query(
            "INSERT INTO quota_reservations (id, merchant_id, currency, amount_minor, day_period, month_period, status, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, 'reserved', $7)",
        )
        .bind(&r.id)
        .bind(&r.merchant_id)
        .bind(&r.currency)
        .bind(r.amount_minor)
        .bind(&r.day)
        .bind(&r.month)
        .bind(r.created_at_ms)
        .execute(&mut *tx)
        .await?;
        // Both periods in one insert-or-add whose limit check is part of the statement:
        // concurrent reservations cannot both pass a check and then both add, and the row
        // locks are taken by one statement, held only until the commit right after it.
        let moved = sqlx::query(
            "INSERT INTO quota_usage (merchant_id, currency, period, used_minor)
             VALUES ($1, $2, $3, $5), ($1, $2, $4, $5)
             ON CONFLICT (merchant_id, currency, period)
             DO UPDATE SET used_minor = quota_usage.used_minor + excluded.used_minor
             WHERE quota_usage.used_minor + excluded.used_minor
                   <= CASE WHEN excluded.period = $3 THEN $6 ELSE $7 END",
        )
        .bind(&r.merchant_id)
        .bind(&r.currency)
        .bind(&r.day)
        .bind(&r.month)
        .bind(r.amount_minor)
        .bind(daily_minor)
        .bind(monthly_minor)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 2 {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn release(&self, reservation_id: &str) -> anyhow::Result<()> {
        let mut tx = self.db.pool().begin().await?;
        let row = sqlx::query(
            "UPDATE quota_reservations SET status = 'released' WHERE id = $1 AND status = 'reserved'
             RETURNING merchant_id, currency, amount_minor, day_period, month_period",
        )
        .bind(reservation_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(()) };
        let amount: i64 = row.try_get("amount_minor")?;
        let merchant: String = row.try_get("merchant_id")?;
        let currency: String = row.try_get("currency")?;
        for period in ["day_period", "month_period"] {
            let period: String = row.try_get(period)?;
            sqlx::query("UPDATE quota_usage SET used_minor = used_minor - $1 WHERE merchant_id = $2 AND currency = $3 AND period = $4")
                .bind(amount)
                .bind(&merchant)
                .bind(&currency)
                .bind(period)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Counters and reservations in Redis, each moved by one script, atomically.
pub struct RedisUsage {
    conn: ConnectionManager,
    prefix: String,
}

impl RedisUsage {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
        }
    }

    fn usage_key(&self, r: &ReservationRecord, period: &str) -> String {
        format!(
            "{}quota:{}:{}:{period}",
            self.prefix, r.merchant_id, r.currency
        )
    }

    fn reservation_key(&self, id: &str) -> String {
        format!("{}quota-reservation:{id}", self.prefix)
    }
}

/// Keys outlive their period by this much, then Redis drops them (40 days covers a month).
const USAGE_TTL_SECS: i64 = 40 * 86_400;

/// KEYS: day usage, month usage, reservation. ARGV: amount, ttl, day limit, month limit.
const RESERVE: &str = r"
for i = 1, 2 do
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used + tonumber(ARGV[1]) > tonumber(ARGV[i + 2]) then return 0 end
end
for i = 1, 2 do
  redis.call('INCRBY', KEYS[i], ARGV[1])
  redis.call('EXPIRE', KEYS[i], ARGV[2])
end
redis.call('HSET', KEYS[3], 'status', 'reserved', 'amount', ARGV[1], 'day', KEYS[1], 'month', KEYS[2])
redis.call('EXPIRE', KEYS[3], ARGV[2])
return 1
";

/// KEYS: reservation. Moves back the usage keys it recorded; only a reserved one.
const RELEASE: &str = r"
if redis.call('HGET', KEYS[1], 'status') ~= 'reserved' then return 0 end
local amount = redis.call('HGET', KEYS[1], 'amount')
redis.call('DECRBY', redis.call('HGET', KEYS[1], 'day'), amount)
redis.call('DECRBY', redis.call('HGET', KEYS[1], 'month'), amount)
redis.call('HSET', KEYS[1], 'status', 'released')
return 1
";

// Hashed once: `Script` keeps the SHA-1 it calls EVALSHA with.
static RESERVE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RESERVE));
static RELEASE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RELEASE));

#[async_trait]
impl UsageStore for RedisUsage {
    async fn reserve(
        &self,
        r: &ReservationRecord,
        daily_minor: i64,
        monthly_minor: i64,
    ) -> anyhow::Result<bool> {
        let mut conn = self.conn.clone();
        let granted: i64 = RESERVE_SCRIPT
            .key(self.usage_key(r, &r.day))
            .key(self.usage_key(r, &r.month))
            .key(self.reservation_key(&r.id))
            .arg(r.amount_minor)
            .arg(USAGE_TTL_SECS)
            .arg(daily_minor)
            .arg(monthly_minor)
            .invoke_async(&mut conn)
            .await?;
        Ok(granted == 1)
    }

    async fn release(&self, reservation_id: &str) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let _: i64 = RELEASE_SCRIPT
            .key(self.reservation_key(reservation_id))
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}

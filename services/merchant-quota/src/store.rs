//! Where quota usage is counted: SQL rows or Redis keys.

use async_trait::async_trait;
use payloom_platform::Db;
use redis::aio::ConnectionManager;

/// Usage counters per merchant, currency and period.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Adds `amount` to every period if none would pass its limit; otherwise changes nothing.
    async fn reserve(
        &self,
        merchant: &str,
        currency: &str,
        periods: [(&str, i64); 2],
        amount: i64,
    ) -> anyhow::Result<bool>;
    /// Takes `amount` back from every period.
    async fn release(
        &self,
        merchant: &str,
        currency: &str,
        periods: [&str; 2],
        amount: i64,
    ) -> anyhow::Result<()>;
}

/// Counters as rows, moved by conditional updates in one transaction.
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
        merchant: &str,
        currency: &str,
        periods: [(&str, i64); 2],
        amount: i64,
    ) -> anyhow::Result<bool> {
        let mut tx = self.db.pool().begin().await?;
        for (period, limit) in periods {
            sqlx::query("INSERT INTO quota_usage (merchant_id, currency, period, used_minor) VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING")
                .bind(merchant)
                .bind(currency)
                .bind(period)
                .execute(&mut *tx)
                .await?;
            // The limit check and the increment are one statement: concurrent
            // reservations cannot both pass a check and then both add.
            let moved = sqlx::query(
                "UPDATE quota_usage SET used_minor = used_minor + $1
                 WHERE merchant_id = $2 AND currency = $3 AND period = $4 AND used_minor + $1 <= $5",
            )
            .bind(amount)
            .bind(merchant)
            .bind(currency)
            .bind(period)
            .bind(limit)
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn release(
        &self,
        merchant: &str,
        currency: &str,
        periods: [&str; 2],
        amount: i64,
    ) -> anyhow::Result<()> {
        let mut tx = self.db.pool().begin().await?;
        for period in periods {
            sqlx::query("UPDATE quota_usage SET used_minor = used_minor - $1 WHERE merchant_id = $2 AND currency = $3 AND period = $4")
                .bind(amount)
                .bind(merchant)
                .bind(currency)
                .bind(period)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Counters in Redis. Both periods are checked and moved by one script, atomically.
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

    fn key(&self, merchant: &str, currency: &str, period: &str) -> String {
        format!("{}quota:{merchant}:{currency}:{period}", self.prefix)
    }
}

/// Keys outlive their period by this much, then Redis drops them (40 days covers a month).
const USAGE_TTL_SECS: i64 = 40 * 86_400;

const RESERVE: &str = r"
for i = 1, #KEYS do
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used + tonumber(ARGV[1]) > tonumber(ARGV[i + 2]) then return 0 end
end
for i = 1, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[1])
  redis.call('EXPIRE', KEYS[i], ARGV[2])
end
return 1
";

#[async_trait]
impl UsageStore for RedisUsage {
    async fn reserve(
        &self,
        merchant: &str,
        currency: &str,
        periods: [(&str, i64); 2],
        amount: i64,
    ) -> anyhow::Result<bool> {
        let mut conn = self.conn.clone();
        let granted: i64 = redis::Script::new(RESERVE)
            .key(self.key(merchant, currency, periods[0].0))
            .key(self.key(merchant, currency, periods[1].0))
            .arg(amount)
            .arg(USAGE_TTL_SECS)
            .arg(periods[0].1)
            .arg(periods[1].1)
            .invoke_async(&mut conn)
            .await?;
        Ok(granted == 1)
    }

    async fn release(
        &self,
        merchant: &str,
        currency: &str,
        periods: [&str; 2],
        amount: i64,
    ) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for period in periods {
            pipe.cmd("DECRBY")
                .arg(self.key(merchant, currency, period))
                .arg(amount)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }
}

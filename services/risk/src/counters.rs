//! Velocity counters in Redis, shared by every node: one sorted set per counter, scored
//! by event time. The window rule is the host's own ([`count_in_window`]), so a count
//! reads the same here as in process memory.

use std::sync::LazyLock;

use async_trait::async_trait;
use payloom_host::bindings::imports::payloom::plugin::counters::Counter;
use payloom_host::capabilities::counters::{
    COUNTER_WINDOW_MS_MAX, CounterKey, Counters, EVENTS_PER_KEY_MAX, count_in_window,
};
use redis::aio::ConnectionManager;

/// Counters under `<prefix>counter:`, one sorted set each.
pub struct RedisCounters {
    conn: ConnectionManager,
    prefix: String,
}

impl RedisCounters {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
        }
    }

    fn redis_key(&self, key: &CounterKey) -> String {
        format!("{}counter:{}", self.prefix, key.storage_key())
    }
}

/// KEYS: the counter. ARGV: at_ms, member, horizon_ms, events per key, ttl_ms.
/// Adds the event, drops events no window reaches and the oldest past the cap, and lets
/// a counter that goes idle expire once its newest event is out of every window.
const RECORD: &str = r"
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
if extra > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, extra - 1) end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
";

// Hashed once: `Script` keeps the SHA-1 it calls EVALSHA with.
static RECORD_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RECORD));

/// One event as a set member, `<at_ms>:<amount_minor>:<nonce>`; the nonce keeps two
/// equal events apart.
fn member(at_ms: i64, amount_minor: i64) -> String {
    format!(
        "{at_ms}:{amount_minor}:{}",
        payloom_platform::ids::random_hex(8)
    )
}

fn parse_member(member: &str) -> anyhow::Result<(i64, i64)> {
    let mut parts = member.splitn(3, ':');
    let mut next = || -> anyhow::Result<i64> {
        let part = parts.next().unwrap_or_default();
        part.parse()
            .map_err(|_| anyhow::anyhow!("counter event {member:?} is not at:amount:nonce"))
    };
    Ok((next()?, next()?))
}

#[async_trait]
impl Counters for RedisCounters {
    async fn record(&self, key: &CounterKey, at_ms: i64, amount_minor: i64) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let _: i64 = RECORD_SCRIPT
            .key(self.redis_key(key))
            .arg(at_ms)
            .arg(member(at_ms, amount_minor))
            .arg(at_ms.saturating_sub(COUNTER_WINDOW_MS_MAX))
            .arg(EVENTS_PER_KEY_MAX)
            .arg(COUNTER_WINDOW_MS_MAX)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn get(&self, key: &CounterKey, window_ms: i64, now_ms: i64) -> anyhow::Result<Counter> {
        let mut conn = self.conn.clone();
        let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.redis_key(key))
            .arg(format!("({}", now_ms.saturating_sub(window_ms)))
            .arg(now_ms)
            .query_async(&mut conn)
            .await?;
        let events = members
            .iter()
            .map(|m| parse_member(m))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(count_in_window(events, window_ms, now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_carry_time_and_amount_and_stay_distinct() {
        let (a, b) = (member(1_000, -5), member(1_000, -5));
        assert_ne!(a, b);
        assert_eq!(parse_member(&a).unwrap(), (1_000, -5));
        assert!(parse_member("1000").is_err());
        assert!(parse_member("x:1:n").is_err());
    }
}

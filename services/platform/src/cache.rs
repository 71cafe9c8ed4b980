//! Short-lived keys shared by every node: request nonces, locks. In-memory for `dev`,
//! Redis for `serve`; one trait, two small implementations.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use crate::clock::SharedClock;

/// Keys that expire.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores `key` for `ttl_ms` unless it is already there. `true` when this call stored
    /// it: the caller is the first to claim the key within the window.
    async fn insert_if_absent(&self, key: &str, ttl_ms: u64) -> anyhow::Result<bool>;
}

/// Keys held by this process. Dropped on expiry, bounded in number.
pub struct MemoryKeyStore {
    clock: SharedClock,
    keys: Mutex<HashMap<String, i64>>,
}

/// Most keys held at once; beyond it new claims are refused rather than forgetting live
/// ones, which would reopen a replay window.
const MEMORY_KEYS_MAX: usize = 1_000_000;

impl MemoryKeyStore {
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            keys: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl KeyStore for MemoryKeyStore {
    async fn insert_if_absent(&self, key: &str, ttl_ms: u64) -> anyhow::Result<bool> {
        let now = self.clock.now_ms();
        let mut keys = self.keys.lock().expect("key store lock");
        if let Some(expires) = keys.get(key)
            && *expires > now
        {
            return Ok(false);
        }
        if keys.len() >= MEMORY_KEYS_MAX {
            keys.retain(|_, expires| *expires > now);
            anyhow::ensure!(keys.len() < MEMORY_KEYS_MAX, "key store is full");
        }
        keys.insert(key.to_owned(), now + ttl_ms as i64);
        Ok(true)
    }
}

/// Keys in Redis, under a prefix.
pub struct RedisKeyStore {
    conn: ConnectionManager,
    prefix: String,
}

impl RedisKeyStore {
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
        }
    }
}

#[async_trait]
impl KeyStore for RedisKeyStore {
    async fn insert_if_absent(&self, key: &str, ttl_ms: u64) -> anyhow::Result<bool> {
        let mut conn = self.conn.clone();
        let stored: Option<String> = redis::cmd("SET")
            .arg(format!("{}{key}", self.prefix))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms.max(1))
            .query_async(&mut conn)
            .await?;
        Ok(stored.is_some())
    }
}

/// A reconnecting Redis connection.
pub async fn redis_connect(url: &str) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(std::time::Duration::from_secs(2))
        .set_response_timeout(std::time::Duration::from_secs(2));
    Ok(ConnectionManager::new_with_config(client, config).await?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ManualClock;

    #[tokio::test]
    async fn memory_keys_claim_once_until_they_expire() {
        let clock = ManualClock::new(0);
        let store = MemoryKeyStore::new(Arc::new(clock.clone()));
        assert!(store.insert_if_absent("n1", 1_000).await.unwrap());
        assert!(!store.insert_if_absent("n1", 1_000).await.unwrap());
        clock.advance(1_001);
        assert!(store.insert_if_absent("n1", 1_000).await.unwrap());
    }
}

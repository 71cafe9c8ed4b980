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

/// A small read-through cache for rows that change rarely (API keys, credentials,
/// policies). Entries live `ttl_ms`; the owner removes an entry when it changes the row,
/// so on one node a change is seen at once and other nodes see it within the TTL.
pub struct TtlCache<V: Clone> {
    clock: SharedClock,
    ttl_ms: i64,
    entries: Mutex<HashMap<String, (i64, V)>>,
}

/// Entries a cache holds before it drops expired ones; bounds memory under many keys.
const TTL_CACHE_ENTRIES_MAX: usize = 100_000;

impl<V: Clone> TtlCache<V> {
    pub fn new(clock: SharedClock, ttl_ms: i64) -> Self {
        Self {
            clock,
            ttl_ms,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &str) -> Option<V> {
        let now = self.clock.now_ms();
        let entries = self.entries.lock().expect("ttl cache lock");
        entries
            .get(key)
            .filter(|(expires, _)| *expires > now)
            .map(|(_, v)| v.clone())
    }

    pub fn insert(&self, key: &str, value: V) {
        let now = self.clock.now_ms();
        let mut entries = self.entries.lock().expect("ttl cache lock");
        if entries.len() >= TTL_CACHE_ENTRIES_MAX {
            entries.retain(|_, (expires, _)| *expires > now);
            if entries.len() >= TTL_CACHE_ENTRIES_MAX {
                entries.clear();
            }
        }
        entries.insert(key.to_owned(), (now + self.ttl_ms, value));
    }

    pub fn remove(&self, key: &str) {
        self.entries.lock().expect("ttl cache lock").remove(key);
    }
}

#[cfg(test)]
mod ttl_tests {
    use std::sync::Arc;

    use super::*;
    use crate::ManualClock;

    #[test]
    fn entries_expire_and_can_be_removed() {
        let clock = ManualClock::new(0);
        let cache = TtlCache::new(Arc::new(clock.clone()), 100);
        cache.insert("k", 1);
        assert_eq!(cache.get("k"), Some(1));
        clock.advance(100);
        assert_eq!(cache.get("k"), None);
        cache.insert("k", 2);
        cache.remove("k");
        assert_eq!(cache.get("k"), None);
    }
}

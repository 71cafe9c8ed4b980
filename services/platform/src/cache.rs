//! Short-lived keys shared by every node: request nonces, locks, rate-limit windows.
//! In-memory for `dev`, Redis for `serve`; one trait, two small implementations.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use crate::clock::SharedClock;

mod live_keys;

/// Keys that expire.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores `key` for `ttl_ms` unless it is already there. `true` when this call stored
    /// it: the caller is the first to claim the key within the window.
    async fn insert_if_absent(&self, key: &str, ttl_ms: u64) -> anyhow::Result<bool>;

    /// As [`KeyStore::insert_if_absent`], for a key that belongs to `scope` (an id without
    /// `:`, such as a merchant's): keys of different scopes never collide. A store that
    /// bounds its size also bounds each scope's share, so one scope filling its share is
    /// refused with [`StoreFull::Scope`] while the others go on.
    async fn insert_scoped_if_absent(
        &self,
        scope: &str,
        key: &str,
        ttl_ms: u64,
    ) -> anyhow::Result<bool> {
        self.insert_if_absent(&format!("{scope}:{key}"), ttl_ms)
            .await
    }

    /// Counts one hit on `key` in a fixed window of `window_ms` that opens at the key's
    /// first hit; returns the hits in the window so far, this one included. Rate limits
    /// compare it with their allowance.
    async fn hit(&self, key: &str, window_ms: u64) -> anyhow::Result<u64>;
}

/// Why a bounded store refused to claim a key: a clear, retryable refusal, unlike a store
/// that cannot be reached. Callers find it with `anyhow::Error::downcast_ref`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreFull {
    #[error("this scope holds as many live keys as it may")]
    Scope,
    #[error("the key store is full")]
    Store,
}

/// How many live claimed keys a [`MemoryKeyStore`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Over every scope.
    pub keys_max: usize,
    /// In one scope ([`KeyStore::insert_scoped_if_absent`]).
    pub keys_per_scope_max: usize,
}

impl Default for MemoryLimits {
    /// The store's bound, and no tighter one per scope.
    fn default() -> Self {
        Self {
            keys_max: MEMORY_KEYS_MAX,
            keys_per_scope_max: MEMORY_KEYS_MAX,
        }
    }
}

/// Keys held by this process. Dropped on expiry, bounded in number.
pub struct MemoryKeyStore {
    clock: SharedClock,
    limits: MemoryLimits,
    keys: Mutex<live_keys::LiveKeys>,
    /// Window counters: when the window closes, and the hits in it.
    windows: Mutex<HashMap<String, (i64, u64)>>,
}

/// Most keys held at once; beyond it new claims are refused rather than forgetting live
/// ones, which would reopen a replay window.
const MEMORY_KEYS_MAX: usize = 1_000_000;

impl MemoryKeyStore {
    pub fn new(clock: SharedClock) -> Self {
        Self::with_limits(clock, MemoryLimits::default())
    }

    /// With a tighter bound on claimed keys, overall or per scope.
    pub fn with_limits(clock: SharedClock, limits: MemoryLimits) -> Self {
        Self {
            clock,
            limits,
            keys: Mutex::new(live_keys::LiveKeys::default()),
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn claim(&self, scope: &str, key: &str, ttl_ms: u64) -> anyhow::Result<bool> {
        let now = self.clock.now_ms();
        let expires = now.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX));
        let mut keys = self.keys.lock().expect("key store lock");
        Ok(keys.claim(scope, key, now, expires, &self.limits)?)
    }
}

#[async_trait]
impl KeyStore for MemoryKeyStore {
    async fn insert_if_absent(&self, key: &str, ttl_ms: u64) -> anyhow::Result<bool> {
        self.claim(live_keys::UNSCOPED, key, ttl_ms)
    }

    async fn insert_scoped_if_absent(
        &self,
        scope: &str,
        key: &str,
        ttl_ms: u64,
    ) -> anyhow::Result<bool> {
        self.claim(scope, key, ttl_ms)
    }

    async fn hit(&self, key: &str, window_ms: u64) -> anyhow::Result<u64> {
        let now = self.clock.now_ms();
        let mut windows = self.windows.lock().expect("key store lock");
        if let Some((closes, hits)) = windows.get_mut(key)
            && *closes > now
        {
            *hits = hits.saturating_add(1);
            return Ok(*hits);
        }
        if windows.len() >= MEMORY_KEYS_MAX {
            windows.retain(|_, (closes, _)| *closes > now);
            anyhow::ensure!(windows.len() < MEMORY_KEYS_MAX, "key store is full");
        }
        windows.insert(key.to_owned(), (now + window_ms as i64, 1));
        Ok(1)
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

    async fn hit(&self, key: &str, window_ms: u64) -> anyhow::Result<u64> {
        let mut conn = self.conn.clone();
        let hits: u64 = WINDOW_SCRIPT
            .key(format!("{}{key}", self.prefix))
            .arg(window_ms.max(1))
            .invoke_async(&mut conn)
            .await?;
        Ok(hits)
    }
}

/// One hit in a window: the first hit starts the window's expiry, later ones only count.
static WINDOW_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return n",
    )
});

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

    fn full(result: anyhow::Result<bool>) -> StoreFull {
        *result.unwrap_err().downcast_ref::<StoreFull>().unwrap()
    }

    #[tokio::test]
    async fn one_scope_filling_its_share_leaves_the_others_working() {
        let clock = ManualClock::new(0);
        let limits = MemoryLimits {
            keys_max: 5,
            keys_per_scope_max: 2,
        };
        let store = MemoryKeyStore::with_limits(Arc::new(clock.clone()), limits);
        assert!(
            store
                .insert_scoped_if_absent("a", "n1", 1_000)
                .await
                .unwrap()
        );
        assert!(
            store
                .insert_scoped_if_absent("a", "n2", 1_000)
                .await
                .unwrap()
        );
        assert!(
            !store
                .insert_scoped_if_absent("a", "n1", 1_000)
                .await
                .unwrap(),
            "a live key is still answered while its scope is full"
        );
        let refused = store.insert_scoped_if_absent("a", "n3", 1_000).await;
        assert_eq!(full(refused), StoreFull::Scope);
        assert!(
            store
                .insert_scoped_if_absent("b", "n1", 1_000)
                .await
                .unwrap(),
            "scopes do not share keys"
        );
        assert!(
            store
                .insert_scoped_if_absent("b", "n2", 1_000)
                .await
                .unwrap()
        );
        assert!(store.insert_if_absent("x", 1_000).await.unwrap());
        let refused = store.insert_scoped_if_absent("c", "n1", 1_000).await;
        assert_eq!(full(refused), StoreFull::Store);
        clock.advance(1_000);
        assert!(
            store
                .insert_scoped_if_absent("a", "n3", 1_000)
                .await
                .unwrap(),
            "expired keys give their room back"
        );
        assert!(
            store
                .insert_scoped_if_absent("c", "n1", 1_000)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_key_claimed_again_after_expiry_stays_live_for_its_new_ttl() {
        let clock = ManualClock::new(0);
        let store = MemoryKeyStore::new(Arc::new(clock.clone()));
        assert!(store.insert_scoped_if_absent("a", "n", 100).await.unwrap());
        clock.advance(100);
        assert!(store.insert_scoped_if_absent("a", "n", 100).await.unwrap());
        clock.advance(99);
        assert!(!store.insert_scoped_if_absent("a", "n", 100).await.unwrap());
        clock.advance(1);
        assert!(store.insert_scoped_if_absent("a", "n", 100).await.unwrap());
    }

    #[tokio::test]
    async fn memory_windows_count_hits_until_they_close() {
        let clock = ManualClock::new(0);
        let store = MemoryKeyStore::new(Arc::new(clock.clone()));
        assert_eq!(store.hit("ip:1", 1_000).await.unwrap(), 1);
        assert_eq!(store.hit("ip:1", 1_000).await.unwrap(), 2);
        assert_eq!(store.hit("ip:2", 1_000).await.unwrap(), 1);
        clock.advance(1_000);
        assert_eq!(store.hit("ip:1", 1_000).await.unwrap(), 1, "a new window");
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

//! The claimed keys of a [`super::MemoryKeyStore`], grouped by scope (a merchant, for
//! nonces) so that one scope's share can be capped, and kept in expiry order so expired
//! keys leave without a scan.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::{MemoryLimits, StoreFull};

/// Scope of keys claimed without one ([`super::KeyStore::insert_if_absent`]); it has no
/// share cap of its own, only the store's.
pub(super) const UNSCOPED: &str = "";

#[derive(Default)]
pub(super) struct LiveKeys {
    scopes: HashMap<String, ScopeKeys>,
    /// Queue entries over every scope: what the store's cap counts.
    total: usize,
}

#[derive(Default)]
struct ScopeKeys {
    expires_by_key: HashMap<Arc<str>, i64>,
    /// `(expires, key)` in claim order. Keys claimed with one TTL (nonces) expire in this
    /// order. An entry behind a later-expiring one waits for it, which only keeps it
    /// counted a little longer; a key claimed again after expiry leaves a stale entry here
    /// that is counted until it reaches the front. Counting the queue, not the map, keeps
    /// memory bounded in every case.
    queue: VecDeque<(i64, Arc<str>)>,
}

impl ScopeKeys {
    /// Drops the expired keys at the front; returns how many queue entries left.
    fn expire(&mut self, now_ms: i64) -> usize {
        let before = self.queue.len();
        while let Some((expires, _)) = self.queue.front()
            && *expires <= now_ms
        {
            let (expires, key) = self.queue.pop_front().expect("the front exists");
            if self.expires_by_key.get(&key) == Some(&expires) {
                self.expires_by_key.remove(&key);
            }
        }
        before - self.queue.len()
    }
}

impl LiveKeys {
    /// Claims `key` in `scope` until `expires_ms`: `Ok(true)` when this call claimed it,
    /// `Ok(false)` when it is live already, [`StoreFull`] when there is no room.
    pub(super) fn claim(
        &mut self,
        scope: &str,
        key: &str,
        now_ms: i64,
        expires_ms: i64,
        limits: &MemoryLimits,
    ) -> Result<bool, StoreFull> {
        let keys = self.scope_mut(scope);
        let dropped = keys.expire(now_ms);
        let live = keys.expires_by_key.get(key).is_some_and(|e| *e > now_ms);
        let queued = keys.queue.len();
        self.total -= dropped;
        if live {
            return Ok(false);
        }
        if scope != UNSCOPED && queued >= limits.keys_per_scope_max {
            return Err(StoreFull::Scope);
        }
        if self.total >= limits.keys_max {
            self.expire_all(now_ms);
            if self.total >= limits.keys_max {
                return Err(StoreFull::Store);
            }
        }
        let keys = self.scope_mut(scope);
        let key: Arc<str> = Arc::from(key);
        keys.expires_by_key.insert(key.clone(), expires_ms);
        keys.queue.push_back((expires_ms, key));
        self.total += 1;
        Ok(true)
    }

    /// The keys of `scope`, made if missing (dropping expired keys may drop a scope).
    fn scope_mut(&mut self, scope: &str) -> &mut ScopeKeys {
        if !self.scopes.contains_key(scope) {
            self.scopes.insert(scope.to_owned(), ScopeKeys::default());
        }
        self.scopes.get_mut(scope).expect("inserted above")
    }

    /// Drops every scope's expired keys, and the scopes left empty.
    fn expire_all(&mut self, now_ms: i64) {
        let mut dropped = 0;
        self.scopes.retain(|_, keys| {
            dropped += keys.expire(now_ms);
            !keys.queue.is_empty()
        });
        self.total -= dropped;
    }
}

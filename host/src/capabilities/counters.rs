//! `counters`: read-only velocity counters, behind a trait the risk service implements.
//!
//! Every counter belongs to one merchant: a payment counts only toward the counters of
//! the merchant it was made at, and a plugin reads only the counters of the merchant
//! whose payment it is deciding (the host fills that in; the plugin cannot name another).
//! Otherwise one merchant could block a customer at every merchant by paying with the
//! customer's e-mail address.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::bindings::imports::payloom::plugin::counters::{self, Counter};
use crate::state::CallState;

/// Activity older than this is forgotten, and a longer window counts only this much. A
/// day covers the windows velocity rules use (minutes to hours) and bounds what a store
/// keeps for customers who never come back.
pub const COUNTER_WINDOW_MS_MAX: i64 = 24 * 3_600_000;

/// Events kept per counter; the oldest go first. A counter at this cap reads at most
/// this many events, far above any per-customer limit worth configuring.
pub const EVENTS_PER_KEY_MAX: usize = 10_000;

/// Counters [`MemoryCounters`] keeps by default: about 100 bytes each plus their events.
pub const MEMORY_KEYS_MAX: usize = 100_000;

/// Events [`MemoryCounters`] keeps by default, over all counters: 16 bytes each, so the
/// store stays in the tens of megabytes however many customer values it sees.
pub const MEMORY_EVENTS_MAX: usize = 1_000_000;

const _: () = assert!(EVENTS_PER_KEY_MAX <= MEMORY_EVENTS_MAX);

/// One counter: one merchant's events for one counter name and one customer value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterKey {
    merchant_id: String,
    name: String,
    value: String,
}

impl CounterKey {
    /// The value is normalised, so spellings of one customer share a counter: trimmed,
    /// and e-mail addresses lower-cased (`Bob@X.com ` and `bob@x.com` are one customer).
    pub fn new(merchant_id: &str, name: &str, value: &str) -> Self {
        let value = value.trim();
        let value = match name.ends_with("-by-email") {
            true => value.to_lowercase(),
            false => value.to_owned(),
        };
        Self {
            merchant_id: merchant_id.to_owned(),
            name: name.to_owned(),
            value,
        }
    }

    /// The normalised customer value.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The key as one string for a shared store. The merchant and the name carry their
    /// lengths, so no choice of parts can spell another key.
    pub fn storage_key(&self) -> String {
        format!(
            "{}:{}:{}:{}:{}",
            self.merchant_id.len(),
            self.merchant_id,
            self.name.len(),
            self.name,
            self.value
        )
    }
}

/// Where counters live: process memory under `dev`, Redis when one is configured.
#[async_trait::async_trait]
pub trait Counters: Send + Sync {
    /// Records one event of `amount_minor` at `at_ms`.
    async fn record(&self, key: &CounterKey, at_ms: i64, amount_minor: i64) -> anyhow::Result<()>;
    /// Events in `(now_ms - window_ms, now_ms]`.
    async fn get(&self, key: &CounterKey, window_ms: i64, now_ms: i64) -> anyhow::Result<Counter>;
}

/// `(at_ms, amount_minor)` events per counter, and how many there are in all.
#[derive(Default)]
struct Events {
    by_key: HashMap<CounterKey, VecDeque<(i64, i64)>>,
    total: usize,
}

/// Counters in process memory, bounded in keys and in events: when full, expired events
/// go first, then the counters that were idle longest.
pub struct MemoryCounters {
    events: Mutex<Events>,
    caps: Caps,
}

/// What a [`MemoryCounters`] may hold.
#[derive(Debug, Clone, Copy)]
struct Caps {
    keys_max: usize,
    events_max: usize,
    /// A share of `events_max`, so one busy counter never fills the store alone.
    events_per_key_max: usize,
}

impl Default for MemoryCounters {
    fn default() -> Self {
        Self::with_limits(MEMORY_KEYS_MAX, MEMORY_EVENTS_MAX)
    }
}

impl MemoryCounters {
    /// A store that keeps at most `keys_max` counters and `events_max` events.
    pub fn with_limits(keys_max: usize, events_max: usize) -> Self {
        assert!(
            keys_max > 0 && events_max > 0,
            "a counter store holds something"
        );
        Self {
            events: Mutex::new(Events::default()),
            caps: Caps {
                keys_max,
                events_max,
                events_per_key_max: EVENTS_PER_KEY_MAX.min(events_max / 4).max(1),
            },
        }
    }

    /// How many counters are held now.
    pub fn len(&self) -> usize {
        self.events.lock().expect("counters lock").by_key.len()
    }

    /// Whether no counter is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Events {
    fn add(&mut self, key: &CounterKey, at_ms: i64, amount_minor: i64, caps: Caps) {
        let is_new = !self.by_key.contains_key(key);
        if (is_new && self.by_key.len() >= caps.keys_max) || self.total >= caps.events_max {
            self.make_room(at_ms, caps.keys_max, caps.events_max);
        }
        let list = self.by_key.entry(key.clone()).or_default();
        if list.len() >= caps.events_per_key_max {
            list.pop_front();
            self.total -= 1;
        }
        list.push_back((at_ms, amount_minor));
        self.total += 1;
        debug_assert!(self.by_key.len() <= caps.keys_max && self.total <= caps.events_max);
    }

    /// Forgets expired events, then the longest-idle counters until both counts are a
    /// tenth below their caps, so the next sweep is thousands of records away.
    fn make_room(&mut self, now_ms: i64, keys_max: usize, events_max: usize) {
        let horizon = now_ms.saturating_sub(COUNTER_WINDOW_MS_MAX);
        self.by_key.retain(|_, list| {
            list.retain(|&(at_ms, _)| at_ms > horizon);
            !list.is_empty()
        });
        self.total = self.by_key.values().map(VecDeque::len).sum();
        let keys_goal = keys_max - (keys_max / 10).max(1);
        let events_goal = events_max - (events_max / 10).max(1);
        if self.by_key.len() <= keys_goal && self.total <= events_goal {
            return;
        }
        let mut by_last_seen: Vec<(i64, CounterKey)> = self
            .by_key
            .iter()
            .map(|(key, list)| {
                (
                    list.iter().map(|e| e.0).max().unwrap_or(i64::MIN),
                    key.clone(),
                )
            })
            .collect();
        by_last_seen.sort_unstable_by_key(|(last_ms, _)| *last_ms);
        for (_, key) in by_last_seen {
            if self.by_key.len() <= keys_goal && self.total <= events_goal {
                break;
            }
            if let Some(list) = self.by_key.remove(&key) {
                self.total -= list.len();
            }
        }
    }
}

#[async_trait::async_trait]
impl Counters for MemoryCounters {
    async fn record(&self, key: &CounterKey, at_ms: i64, amount_minor: i64) -> anyhow::Result<()> {
        let mut events = self.events.lock().expect("counters lock");
        events.add(key, at_ms, amount_minor, self.caps);
        Ok(())
    }

    async fn get(&self, key: &CounterKey, window_ms: i64, now_ms: i64) -> anyhow::Result<Counter> {
        let events = self.events.lock().expect("counters lock");
        let list = events.by_key.get(key).into_iter().flatten();
        Ok(count_in_window(list.copied(), window_ms, now_ms))
    }
}

/// Sums the events in `(now_ms - window_ms, now_ms]`, the window every store answers for.
pub fn count_in_window(
    events: impl IntoIterator<Item = (i64, i64)>,
    window_ms: i64,
    now_ms: i64,
) -> Counter {
    let since_ms = now_ms.saturating_sub(window_ms);
    let mut counter = Counter {
        count: 0,
        sum_minor: 0,
    };
    for (at_ms, amount_minor) in events {
        if at_ms > since_ms && at_ms <= now_ms {
            counter.count += 1;
            counter.sum_minor = counter.sum_minor.saturating_add(amount_minor);
        }
    }
    counter
}

impl counters::Host for CallState {
    /// Reads the counter of the merchant this call decides for. A store that cannot
    /// answer traps the call, so the rule fails by its kind's policy (risk: closed)
    /// rather than deciding on a count of zero.
    async fn get(
        &mut self,
        name: String,
        key: String,
        window_seconds: u32,
    ) -> wasmtime::Result<Counter> {
        let Some(merchant_id) = self.ctx.merchant_id.as_deref() else {
            return Ok(Counter {
                count: 0,
                sum_minor: 0,
            });
        };
        let key = CounterKey::new(merchant_id, &name, &key);
        let window_ms = (i64::from(window_seconds) * 1_000).min(COUNTER_WINDOW_MS_MAX);
        let now_ms = self.now_ms();
        let read = self.services.counters.get(&key, window_ms, now_ms);
        match tokio::time::timeout_at(self.deadline, read).await {
            Ok(Ok(counter)) => Ok(counter),
            Ok(Err(e)) => Err(wasmtime::format_err!("counters unavailable: {e:#}")),
            Err(_) => Err(wasmtime::format_err!("counters did not answer in time")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600_000;

    fn email(merchant: &str, value: &str) -> CounterKey {
        CounterKey::new(merchant, "payments-by-email", value)
    }

    async fn count(c: &MemoryCounters, key: &CounterKey) -> u64 {
        c.get(key, 3_600_000, NOW).await.unwrap().count
    }

    #[tokio::test]
    async fn each_merchant_counts_only_its_own_payments() {
        let c = MemoryCounters::default();
        for _ in 0..3 {
            c.record(&email("mch_a", "victim@example.com"), NOW, 100)
                .await
                .unwrap();
        }
        assert_eq!(count(&c, &email("mch_a", "victim@example.com")).await, 3);
        assert_eq!(count(&c, &email("mch_b", "victim@example.com")).await, 0);
    }

    #[tokio::test]
    async fn spellings_of_one_email_share_a_counter() {
        let c = MemoryCounters::default();
        c.record(&email("mch_a", " Bob@Example.COM"), NOW, 100)
            .await
            .unwrap();
        c.record(&email("mch_a", "bob@example.com\n"), NOW, 250)
            .await
            .unwrap();
        let seen = c
            .get(&email("mch_a", "BOB@example.com"), 60_000, NOW)
            .await
            .unwrap();
        assert_eq!((seen.count, seen.sum_minor), (2, 350));
        let device = |v: &str| CounterKey::new("mch_a", "payments-by-device_id", v);
        assert_eq!(device(" Dev-1 ").value(), "Dev-1", "only e-mails fold case");
    }

    #[tokio::test]
    async fn the_window_is_open_at_its_start_and_closed_at_now() {
        let c = MemoryCounters::default();
        let key = email("mch_a", "a@x.com");
        for at in [NOW - 3_600_000, NOW - 3_599_999, NOW, NOW + 1] {
            c.record(&key, at, 1).await.unwrap();
        }
        assert_eq!(count(&c, &key).await, 2);
    }

    #[test]
    fn storage_keys_cannot_collide_across_parts() {
        let a = CounterKey::new("mch_a", "x:y", "z");
        let b = CounterKey::new("mch_a", "x", "y:z");
        assert_ne!(a.storage_key(), b.storage_key());
    }

    #[tokio::test]
    async fn a_full_store_drops_the_longest_idle_counters() {
        let c = MemoryCounters::with_limits(10, 1_000);
        for i in 0..10 {
            c.record(&email("mch_a", &format!("{i}@x.com")), NOW - 10 + i, 1)
                .await
                .unwrap();
        }
        c.record(&email("mch_a", "new@x.com"), NOW, 1)
            .await
            .unwrap();
        assert!(c.len() <= 10, "{} counters", c.len());
        assert_eq!(count(&c, &email("mch_a", "new@x.com")).await, 1);
        assert_eq!(
            count(&c, &email("mch_a", "9@x.com")).await,
            1,
            "recent kept"
        );
        assert_eq!(count(&c, &email("mch_a", "0@x.com")).await, 0, "idle gone");
    }

    #[tokio::test]
    async fn expired_events_go_before_live_counters() {
        let c = MemoryCounters::with_limits(4, 1_000);
        let old = NOW - COUNTER_WINDOW_MS_MAX - 1;
        for i in 0..3 {
            c.record(&email("mch_a", &format!("old{i}@x.com")), old, 1)
                .await
                .unwrap();
        }
        c.record(&email("mch_a", "live@x.com"), NOW - 5, 1)
            .await
            .unwrap();
        c.record(&email("mch_a", "next@x.com"), NOW, 1)
            .await
            .unwrap();
        assert_eq!(c.len(), 2, "the three expired counters were dropped");
        assert_eq!(count(&c, &email("mch_a", "live@x.com")).await, 1);
    }

    #[tokio::test]
    async fn random_values_never_grow_the_store_past_its_caps() {
        let c = MemoryCounters::with_limits(100, 150);
        for i in 0..5_000 {
            c.record(&email("mch_a", &format!("{i}@x.com")), NOW + i, 1)
                .await
                .unwrap();
            c.record(&email("mch_a", "busy@x.com"), NOW + i, 1)
                .await
                .unwrap();
        }
        let events = c.events.lock().unwrap();
        assert!(events.by_key.len() <= 100 && events.total <= 150);
        let total: usize = events.by_key.values().map(VecDeque::len).sum();
        assert_eq!(total, events.total);
    }
}

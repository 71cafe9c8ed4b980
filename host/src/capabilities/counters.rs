//! `counters`: read-only velocity counters, behind a trait the risk service implements.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::bindings::imports::payloom::plugin::counters::{self, Counter};
use crate::state::CallState;

/// Where counters live (in memory here; Redis in the services).
#[async_trait::async_trait]
pub trait Counters: Send + Sync {
    /// Events for `name`/`key` in `(now_ms - window_ms, now_ms]`.
    async fn get(&self, name: &str, key: &str, window_ms: i64, now_ms: i64) -> Counter;
}

/// `(at_ms, amount_minor)` events per `(counter name, key)`.
type Events = HashMap<(String, String), Vec<(i64, i64)>>;

/// Events kept in process memory; callers record them as payments happen.
#[derive(Default)]
pub struct MemoryCounters {
    events: Mutex<Events>,
}

/// Events kept per key; older ones are dropped first. Bounds memory under abuse.
const EVENTS_PER_KEY_MAX: usize = 10_000;

impl MemoryCounters {
    /// Records one event of `amount_minor` at `at_ms`.
    pub fn record(&self, name: &str, key: &str, at_ms: i64, amount_minor: i64) {
        let mut events = self.events.lock().expect("counters lock");
        let list = events.entry((name.to_owned(), key.to_owned())).or_default();
        if list.len() == EVENTS_PER_KEY_MAX {
            list.remove(0);
        }
        list.push((at_ms, amount_minor));
    }
}

#[async_trait::async_trait]
impl Counters for MemoryCounters {
    async fn get(&self, name: &str, key: &str, window_ms: i64, now_ms: i64) -> Counter {
        let events = self.events.lock().expect("counters lock");
        let mut counter = Counter {
            count: 0,
            sum_minor: 0,
        };
        let Some(list) = events.get(&(name.to_owned(), key.to_owned())) else {
            return counter;
        };
        for &(at_ms, amount) in list {
            if at_ms > now_ms - window_ms && at_ms <= now_ms {
                counter.count += 1;
                counter.sum_minor = counter.sum_minor.saturating_add(amount);
            }
        }
        counter
    }
}

impl counters::Host for CallState {
    async fn get(&mut self, name: String, key: String, window_seconds: u32) -> Counter {
        let now_ms = self.now_ms();
        let window_ms = i64::from(window_seconds) * 1_000;
        self.services
            .counters
            .get(&name, &key, window_ms, now_ms)
            .await
    }
}

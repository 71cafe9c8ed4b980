//! The sending slots of one process. One delivery is one task holding one slot, so a
//! receiver that never answers holds its own slots and nobody else's: at most
//! `endpoint_in_flight_max` per endpoint and `merchant_in_flight_max` per merchant, out of
//! `batch` in all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::NotificationConfig;

/// The in-flight limits of `[notification]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    total: usize,
    endpoint: usize,
    merchant: usize,
}

impl Limits {
    pub(super) fn of(config: &NotificationConfig) -> Self {
        let count = |n: i64| usize::try_from(n).expect("validated as positive");
        Self {
            total: count(config.batch),
            endpoint: count(config.endpoint_in_flight_max),
            merchant: count(config.merchant_in_flight_max),
        }
    }
}

/// Deliveries in flight, in all and per endpoint and merchant, against the limits.
#[derive(Debug, Clone)]
pub(super) struct Held {
    limits: Limits,
    total: usize,
    endpoints: HashMap<String, usize>,
    merchants: HashMap<String, usize>,
}

impl Held {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            total: 0,
            endpoints: HashMap::new(),
            merchants: HashMap::new(),
        }
    }

    /// Slots nobody holds.
    pub(super) fn free(&self) -> usize {
        self.limits.total.saturating_sub(self.total)
    }

    pub(super) fn admits(&self, endpoint: &str, merchant: &str) -> bool {
        let of = |map: &HashMap<String, usize>, key: &str| map.get(key).copied().unwrap_or(0);
        self.free() > 0
            && of(&self.endpoints, endpoint) < self.limits.endpoint
            && of(&self.merchants, merchant) < self.limits.merchant
    }

    pub(super) fn add(&mut self, endpoint: &str, merchant: &str) {
        self.total += 1;
        *self.endpoints.entry(endpoint.to_owned()).or_default() += 1;
        *self.merchants.entry(merchant.to_owned()).or_default() += 1;
    }

    fn remove(&mut self, endpoint: &str, merchant: &str) {
        self.total -= 1;
        for (map, key) in [
            (&mut self.endpoints, endpoint),
            (&mut self.merchants, merchant),
        ] {
            let n = map.get_mut(key).expect("a held slot is counted");
            *n -= 1;
            if *n == 0 {
                map.remove(key);
            }
        }
    }

    /// Endpoints and merchants that may not take another delivery now.
    pub(super) fn saturated(&self) -> (Vec<String>, Vec<String>) {
        let full = |map: &HashMap<String, usize>, cap: usize| {
            map.iter()
                .filter(|(_, n)| **n >= cap)
                .map(|(key, _)| key.clone())
                .collect()
        };
        (
            full(&self.endpoints, self.limits.endpoint),
            full(&self.merchants, self.limits.merchant),
        )
    }
}

pub(super) struct Slots {
    held: Mutex<Held>,
    /// Woken when a slot frees, so the worker leases again.
    wake: Arc<Notify>,
}

impl Slots {
    pub(super) fn new(limits: Limits, wake: Arc<Notify>) -> Arc<Self> {
        Arc::new(Self {
            held: Mutex::new(Held::new(limits)),
            wake,
        })
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What is held now, to plan a lease against; slots only free up meanwhile.
    pub(super) fn plan(&self) -> Held {
        self.held().clone()
    }

    pub(super) fn take(self: &Arc<Self>, endpoint_id: &str, merchant_id: &str) -> Slot {
        self.held().add(endpoint_id, merchant_id);
        Slot {
            slots: self.clone(),
            endpoint_id: endpoint_id.to_owned(),
            merchant_id: merchant_id.to_owned(),
        }
    }
}

/// A held slot; dropping it frees the slot, also when the task panics.
pub(super) struct Slot {
    slots: Arc<Slots>,
    endpoint_id: String,
    merchant_id: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots
            .held()
            .remove(&self.endpoint_id, &self.merchant_id);
        self.slots.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_endpoint_per_merchant_and_in_all() {
        let mut held = Held::new(Limits {
            total: 4,
            endpoint: 2,
            merchant: 3,
        });
        held.add("we_1", "mch_a");
        held.add("we_1", "mch_a");
        assert!(!held.admits("we_1", "mch_a"), "the endpoint is full");
        assert!(held.admits("we_2", "mch_a"));
        held.add("we_2", "mch_a");
        assert!(!held.admits("we_3", "mch_a"), "the merchant is full");
        assert!(held.admits("we_4", "mch_b"));
        held.add("we_4", "mch_b");
        assert!(!held.admits("we_5", "mch_c"), "every slot is held");
        assert_eq!(held.free(), 0);
        assert_eq!(
            held.saturated(),
            (vec!["we_1".to_owned()], vec!["mch_a".to_owned()])
        );
        held.remove("we_1", "mch_a");
        assert_eq!(held.saturated(), (Vec::new(), Vec::new()));
        assert!(held.admits("we_5", "mch_c"));
        for (endpoint, merchant) in [("we_1", "mch_a"), ("we_2", "mch_a"), ("we_4", "mch_b")] {
            held.remove(endpoint, merchant);
        }
        assert_eq!(held.free(), 4);
        assert!(held.endpoints.is_empty() && held.merchants.is_empty());
    }

    #[tokio::test]
    async fn a_dropped_slot_frees_its_place_and_wakes_the_worker() {
        let wake = Arc::new(Notify::new());
        let limits = Limits {
            total: 1,
            endpoint: 1,
            merchant: 1,
        };
        let slots = Slots::new(limits, wake.clone());
        let slot = slots.take("we_1", "mch_a");
        assert_eq!(slots.plan().free(), 0);
        let task = tokio::spawn(async move {
            let _slot = slot;
            panic!("a failing delivery task");
        });
        assert!(task.await.is_err());
        assert_eq!(slots.plan().free(), 1, "freed by the panicking task too");
        wake.notified().await;
    }
}

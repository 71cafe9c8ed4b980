//! What a failed call turns into, and the circuit breaker that stops calling a plugin
//! that keeps failing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// What a failed plugin call becomes, per plugin kind.
///
/// Risk and authorization fail closed: Istio calls fail-open "not recommended for the
/// authentication or the authorization plugins", and Envoy defaults to FAIL_CLOSED.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// The failure stands: risk blocks, policy denies, a channel call errors.
    FailClosed,
    /// The plugin is skipped: risk has no opinion, policy keeps the host default.
    FailOpen,
    /// Another plugin of the same kind (by id) answers instead.
    Fallback(String),
}

/// Consecutive-failure circuit breaker with one trial call after a cool-down.
#[derive(Debug)]
pub struct CircuitBreaker {
    failures_max: u32,
    open_for: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Debug, Default)]
struct BreakerState {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    trial_in_flight: bool,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(failures_max: u32, open_for: Duration) -> Self {
        assert!(failures_max >= 1);
        Self {
            failures_max,
            open_for,
            state: Mutex::default(),
        }
    }

    /// Whether a call may go ahead now. While open, refuses; after the cool-down lets
    /// exactly one trial call through.
    pub fn admit(&self, now: Instant) -> bool {
        let mut state = self.state.lock().expect("breaker lock");
        match state.open_until {
            None => true,
            Some(until) if now < until => false,
            Some(_) if state.trial_in_flight => false,
            Some(_) => {
                state.trial_in_flight = true;
                true
            }
        }
    }

    /// Forgets an admitted call that never ran: a trial it was stays available.
    pub fn release_trial(&self) {
        self.state.lock().expect("breaker lock").trial_in_flight = false;
    }

    /// Records a call's result.
    pub fn record(&self, ok: bool, now: Instant) {
        let mut state = self.state.lock().expect("breaker lock");
        state.trial_in_flight = false;
        if ok {
            state.consecutive_failures = 0;
            state.open_until = None;
            return;
        }
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        if state.consecutive_failures >= self.failures_max {
            state.open_until = Some(now + self.open_for);
        }
    }

    /// Whether the breaker is refusing calls at `now`.
    pub fn is_open(&self, now: Instant) -> bool {
        let state = self.state.lock().expect("breaker lock");
        state.open_until.is_some_and(|until| now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_admits_one_trial() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(1));
        let t0 = Instant::now();
        for _ in 0..2 {
            assert!(breaker.admit(t0));
            breaker.record(false, t0);
        }
        breaker.record(true, t0); // a success resets the count
        for _ in 0..3 {
            breaker.record(false, t0);
        }
        assert!(!breaker.admit(t0 + Duration::from_millis(500)));
        let later = t0 + Duration::from_millis(1_500);
        assert!(breaker.admit(later), "one trial after the cool-down");
        assert!(!breaker.admit(later), "only one trial at a time");
        breaker.record(true, later);
        assert!(breaker.admit(later));
    }

    #[test]
    fn failed_trial_reopens() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(1));
        let t0 = Instant::now();
        breaker.record(false, t0);
        let later = t0 + Duration::from_secs(2);
        assert!(breaker.admit(later));
        breaker.record(false, later);
        assert!(breaker.is_open(later + Duration::from_millis(10)));
    }
}

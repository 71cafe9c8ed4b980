//! What a failed call turns into, and the circuit breaker that stops calling a plugin
//! that keeps failing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
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
    /// 1 from opening until a call succeeds again (cool-down and trial included), else 0.
    open_gauge: Gauge,
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
            open_gauge: Gauge::default(),
        }
    }

    /// Shows whether this breaker is open on `gauge`.
    pub fn reporting_to(mut self, gauge: Gauge) -> Self {
        gauge.set(0);
        self.open_gauge = gauge;
        self
    }

    /// Lets a call go ahead now, or not. While open, refuses; after the cool-down lets
    /// exactly one trial call through. The admission records the call's result; dropped
    /// unrecorded (the call never ran, or its caller gave up) it frees the trial it held.
    pub fn admit(&self, now: Instant) -> Option<Admission<'_>> {
        let mut state = self.state.lock().expect("breaker lock");
        let trial = match state.open_until {
            None => false,
            Some(until) if now < until => return None,
            Some(_) if state.trial_in_flight => return None,
            Some(_) => true,
        };
        state.trial_in_flight |= trial;
        Some(Admission {
            breaker: self,
            trial,
        })
    }

    fn record(&self, ok: bool, now: Instant) {
        let mut state = self.state.lock().expect("breaker lock");
        if ok {
            state.consecutive_failures = 0;
            state.open_until = None;
            self.open_gauge.set(0);
            return;
        }
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        if state.consecutive_failures >= self.failures_max {
            state.open_until = Some(now + self.open_for);
            self.open_gauge.set(1);
        }
    }

    fn end_trial(&self) {
        self.state.lock().expect("breaker lock").trial_in_flight = false;
    }

    /// Whether the breaker is refusing calls at `now`.
    pub fn is_open(&self, now: Instant) -> bool {
        let state = self.state.lock().expect("breaker lock");
        state.open_until.is_some_and(|until| now < until)
    }
}

/// A call the breaker let through.
#[must_use = "an admission records the call's result"]
pub struct Admission<'a> {
    breaker: &'a CircuitBreaker,
    trial: bool,
}

impl Admission<'_> {
    /// The call ran: its result counts (and the trial, if it was one, is over).
    pub fn record(self, ok: bool, now: Instant) {
        self.breaker.record(ok, now);
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if self.trial {
            self.breaker.end_trial();
        }
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
            breaker.admit(t0).unwrap().record(false, t0);
        }
        breaker.admit(t0).unwrap().record(true, t0); // a success resets the count
        for _ in 0..3 {
            breaker.admit(t0).unwrap().record(false, t0);
        }
        assert!(breaker.admit(t0 + Duration::from_millis(500)).is_none());
        let later = t0 + Duration::from_millis(1_500);
        let trial = breaker.admit(later).expect("one trial after the cool-down");
        assert!(breaker.admit(later).is_none(), "only one trial at a time");
        trial.record(true, later);
        assert!(breaker.admit(later).is_some());
    }

    #[test]
    fn failed_trial_reopens() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(1));
        let t0 = Instant::now();
        breaker.admit(t0).unwrap().record(false, t0);
        let later = t0 + Duration::from_secs(2);
        breaker.admit(later).unwrap().record(false, later);
        assert!(breaker.is_open(later + Duration::from_millis(10)));
    }

    #[test]
    fn a_trial_that_never_reports_frees_the_next_one() {
        let breaker = CircuitBreaker::new(1, Duration::from_secs(1));
        let t0 = Instant::now();
        breaker.admit(t0).unwrap().record(false, t0);
        let later = t0 + Duration::from_secs(2);
        // The caller gave up (its future was dropped) before the call reported.
        drop(breaker.admit(later).expect("the trial"));
        assert!(
            breaker.admit(later).is_some(),
            "a dropped trial must not keep the breaker shut"
        );
    }
}

//! The circuit breaker of one use of a plugin: after `threshold` consecutive failures
//! the plugin is not called (nor instantiated) for a cool-down; then one trial call is
//! let through, and its outcome closes the breaker or opens it for another cool-down.
//! Times are passed in, so the logic is tested without a clock.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// A breaker's state, as `GET /v1/rules` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// The cool-down is over; the next call is a trial.
    HalfOpen,
    /// Calls fail at once until the cool-down ends.
    Open,
}

/// Whether a call may run.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Yes, as the one trial after a cool-down.
    Trial,
    /// No: backed off after `failures` consecutive failures.
    No {
        failures: u32,
    },
}

/// What an outcome did to the breaker.
#[derive(Debug, PartialEq, Eq)]
pub enum Transition {
    None,
    Opened,
    Closed,
}

#[derive(Debug, Default)]
struct Inner {
    consecutive: u32,
    open_until: Option<Instant>,
    trial_running: bool,
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
    /// Whether the last recorded outcome left the breaker exactly as new (closed, no
    /// failure counted): then admitting a call and recording a success change nothing,
    /// and every call of a healthy plugin takes no lock. Written under the lock.
    pristine: AtomicBool,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            inner: Mutex::new(Inner::default()),
            pristine: AtomicBool::new(true),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn admit(&self, now: Instant) -> Admit {
        if self.pristine.load(Ordering::Acquire) {
            return Admit::Yes;
        }
        let mut s = self.lock();
        match s.open_until {
            None => Admit::Yes,
            Some(until) if now < until || s.trial_running => Admit::No { failures: s.consecutive },
            Some(_) => {
                s.trial_running = true;
                Admit::Trial
            }
        }
    }

    /// Records the outcome of an admitted call.
    pub fn record(&self, ok: bool, now: Instant) -> Transition {
        if ok && self.pristine.load(Ordering::Acquire) {
            return Transition::None;
        }
        let mut s = self.lock();
        let was_open = s.open_until.is_some();
        s.trial_running = false;
        if ok {
            s.consecutive = 0;
            s.open_until = None;
            self.pristine.store(true, Ordering::Release);
            return if was_open { Transition::Closed } else { Transition::None };
        }
        self.pristine.store(false, Ordering::Release);
        s.consecutive = s.consecutive.saturating_add(1);
        if was_open || s.consecutive >= self.threshold {
            s.open_until = Some(now + self.cooldown);
            return if was_open { Transition::None } else { Transition::Opened };
        }
        Transition::None
    }

    pub fn state(&self, now: Instant) -> BreakerState {
        match self.lock().open_until {
            None => BreakerState::Closed,
            Some(until) if now < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.lock().consecutive
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Admit, Breaker, BreakerState, Transition};

    #[test]
    fn opens_after_consecutive_failures_and_closes_after_a_good_trial() {
        let b = Breaker::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(b.record(false, t0), Transition::None);
        assert_eq!(b.record(true, t0), Transition::None, "a success resets the count");
        for _ in 0..2 {
            assert_eq!(b.admit(t0), Admit::Yes);
            assert_eq!(b.record(false, t0), Transition::None);
        }
        assert_eq!(b.record(false, t0), Transition::Opened);
        assert_eq!(b.state(t0), BreakerState::Open);
        assert_eq!(b.admit(t0 + Duration::from_secs(9)), Admit::No { failures: 3 });
        let later = t0 + Duration::from_secs(10);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        assert_eq!(b.admit(later), Admit::Trial);
        assert_eq!(b.admit(later), Admit::No { failures: 3 }, "one trial at a time");
        assert_eq!(b.record(false, later), Transition::None, "a failed trial opens it again");
        assert_eq!(b.state(later), BreakerState::Open);
        let after = later + Duration::from_secs(10);
        assert_eq!(b.admit(after), Admit::Trial);
        assert_eq!(b.record(true, after), Transition::Closed);
        assert_eq!((b.state(after), b.consecutive_failures()), (BreakerState::Closed, 0));
    }
}

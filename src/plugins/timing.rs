//! How long a plugin's calls take: a histogram since the plugin was loaded, for the
//! p50/p99 that `GET /v1/rules` shows (the `/metrics` histogram has coarse buckets).

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

/// The longest call recorded as itself, in nanoseconds (longer ones count as this).
const LONGEST_NS: u64 = 60_000_000_000;

/// The durations of a plugin's calls, to 2 significant digits (~1%).
#[derive(Debug)]
pub struct CallTimes(Mutex<Option<Histogram<u64>>>);

impl Default for CallTimes {
    fn default() -> Self {
        // Bounds that are valid by construction; `None` would only ever record nothing.
        Self(Mutex::new(Histogram::new_with_bounds(1, LONGEST_NS, 2).ok()))
    }
}

impl CallTimes {
    pub fn record(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).clamp(1, LONGEST_NS);
        if let Some(h) = self.0.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            h.saturating_record(ns);
        }
    }

    /// The median and the 99th percentile, in microseconds; `None` before the first call.
    pub fn p50_p99_us(&self) -> Option<(f64, f64)> {
        let guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let h = guard.as_ref().filter(|h| !h.is_empty())?;
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Some((us(0.5), us(0.99)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::CallTimes;

    #[test]
    fn quantiles_of_recorded_calls() {
        let t = CallTimes::default();
        assert_eq!(t.p50_p99_us(), None);
        for us in 1..=100 {
            t.record(Duration::from_micros(us));
        }
        let (p50, p99) = t.p50_p99_us().unwrap();
        assert!((49.0..=51.0).contains(&p50), "p50 {p50}");
        assert!((98.0..=100.5).contains(&p99), "p99 {p99}");
        t.record(Duration::from_secs(3600));
        assert!(t.p50_p99_us().is_some(), "a call past the longest is counted, not lost");
    }
}

//! Plugin failures in words: the one line an API client sees (never a backtrace, a host
//! path or the engine's internals), the detail that goes to the log, and the log's rate
//! limit per plugin.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::limits::{LimitError, Limits};

/// What was running when a plugin failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Creating an instance and running its `init`.
    Init,
    /// An `evaluate` call on `n` candidates, whose answer could copy `budget` bytes.
    Call { n: usize, budget: usize },
}

/// wasmtime's message when a lift used up its hostcall fuel (the error type is private).
const HOSTCALL_FUEL: &str = "fuel allocated for hostcalls has been exhausted";

/// The one-line, client-safe description of `e`.
pub fn describe(e: &wasmtime::Error, limits: &Limits, stage: Stage) -> String {
    let (deadline, fuel) = match stage {
        Stage::Init => (limits.init_deadline_ms, limits.init_fuel),
        Stage::Call { n, .. } => (limits.deadline_ms, limits.call_fuel(n)),
    };
    let during = if stage == Stage::Init { " while starting" } else { "" };
    let limit = e.downcast_ref::<LimitError>().or_else(|| e.chain().find_map(|c| c.downcast_ref::<LimitError>()));
    if let Some(limit) = limit {
        return match limit {
            LimitError::Memory { mib } => format!("exceeded its memory limit of {mib} MiB{during}"),
            LimitError::Table { elements } => format!("exceeded its table limit of {elements} elements{during}"),
        };
    }
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        return match trap {
            wasmtime::Trap::Interrupt => format!("ran past its deadline of {deadline} ms{during} and was stopped"),
            wasmtime::Trap::OutOfFuel => format!("used up its fuel of {fuel} instructions{during} and was stopped"),
            wasmtime::Trap::UnreachableCodeReached => format!("trapped{during} (a panic or abort in the guest)"),
            wasmtime::Trap::AllocationTooLarge => {
                format!("exceeded its memory limit of {} MiB{during}", limits.memory_mib)
            }
            other => format!("trapped{during}: {}", first_line(&other.to_string())),
        };
    }
    let text = detail(e);
    if text.contains(HOSTCALL_FUEL) {
        return match stage {
            Stage::Call { n, budget } => {
                format!("answered more than {budget} bytes for {n} candidates (its answer was not read)")
            }
            Stage::Init => "answered `init` with more than 64 KiB (its answer was not read)".into(),
        };
    }
    // wasmtime's own instantiation checks (`resource limit exceeded: memory count too high at 9`).
    if let Some(rest) = text.split("resource limit exceeded: ").nth(1) {
        let what = rest.split(" count").next().unwrap_or("resource");
        let allowed = match what {
            "memory" => "1 memory".to_owned(),
            "table" => format!("{} tables", super::limits::MAX_TABLES),
            _ => format!("{} core instances", super::limits::MAX_CORE_INSTANCES),
        };
        return format!("declares more than {allowed} per instance and cannot be instantiated");
    }
    match stage {
        Stage::Init => "could not be instantiated (the daemon's log has the detail)".into(),
        Stage::Call { .. } => "failed (the daemon's log has the detail)".into(),
    }
}

/// The first line of `text`, at most 200 bytes.
pub fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    let cut = (0..=line.len().min(200)).rev().find(|i| line.is_char_boundary(*i)).unwrap_or(0);
    line[..cut].to_owned()
}

/// The detail of `e` for the log, on one line: each cause's first line, without the
/// wasm backtrace that wasmtime attaches as a context.
pub fn detail(e: &wasmtime::Error) -> String {
    e.chain()
        .map(|c| first_line(&c.to_string()))
        .filter(|l| !l.is_empty() && !l.contains("wasm backtrace"))
        .collect::<Vec<_>>()
        .join(": ")
}

/// What to log for one failure.
#[derive(Debug, PartialEq, Eq)]
pub enum Note {
    /// Log this failure, after saying how many were held back since the last one logged.
    Log { held_back: u64 },
    /// Count it only.
    Hold,
}

/// One plugin's failure log: the first failure of each interval is logged, the rest are
/// counted and summed up in one line with the next one logged.
#[derive(Debug)]
pub struct FailureLog {
    interval: Duration,
    state: Mutex<Option<(Instant, u64)>>,
}

/// Failures of one plugin logged at most once per this interval.
pub const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl FailureLog {
    pub fn new(interval: Duration) -> Self {
        Self { interval, state: Mutex::new(None) }
    }

    /// What to do with a failure that happened at `now`.
    pub fn note(&self, now: Instant) -> Note {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *state {
            Some((since, held)) if now.saturating_duration_since(*since) < self.interval => {
                *held += 1;
                Note::Hold
            }
            other => {
                let held_back = other.map_or(0, |(_, held)| held);
                *other = Some((now, 0));
                Note::Log { held_back }
            }
        }
    }

    /// Logs a failure of `plugin` (already one line each), rate-limited.
    pub fn record(&self, plugin: &str, what: &str, detail: &str) {
        match self.note(Instant::now()) {
            Note::Hold => {}
            Note::Log { held_back: 0 } => tracing::warn!(plugin, detail, "plugin `{plugin}` failed: {what}"),
            Note::Log { held_back } => tracing::warn!(
                plugin,
                detail,
                held_back,
                "plugin `{plugin}` failed: {what} ({held_back} more failures in the {} s before were not logged)",
                self.interval.as_secs()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{FailureLog, Note, first_line};

    #[test]
    fn one_line_per_interval_with_a_count_of_the_rest() {
        let log = FailureLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(log.note(t0), Note::Log { held_back: 0 });
        for s in 1..10 {
            assert_eq!(log.note(t0 + Duration::from_secs(s)), Note::Hold);
        }
        assert_eq!(log.note(t0 + Duration::from_secs(10)), Note::Log { held_back: 9 });
        assert_eq!(log.note(t0 + Duration::from_secs(30)), Note::Log { held_back: 0 });
    }

    #[test]
    fn a_first_line_is_short_and_whole() {
        assert_eq!(first_line("trapped\nwasm backtrace:\n  0: f"), "trapped");
        let long = "é".repeat(300);
        let line = first_line(&long);
        assert!(line.len() <= 200 && line.chars().all(|c| c == 'é'));
    }
}

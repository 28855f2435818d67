//! What one plugin instance may use, and what the host accepts back from a call.
//!
//! Memory and tables are limited per **instance** (one store holds one component
//! instance): at most one linear memory, at most [`MAX_TABLES`] tables, and totals over
//! all of them, checked by [`InstanceLimiter`] on every growth, including the initial
//! sizes at instantiation. An answer is bounded before the host copies it:
//! [`answer_budget`] is the number of bytes the lift of one answer may copy out of the
//! guest (wasmtime's hostcall fuel), then [`check`] validates what was copied.

use serde::{Deserialize, Serialize};
use wasmtime::ResourceLimiter;

use super::wit;

/// Sandbox limits of every plugin instance and call (`[plugin_limits]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock budget of one call, in milliseconds: the backstop for stalls.
    #[serde(default = "default_deadline")]
    pub deadline_ms: u64,
    /// Memory of one instance (all its linear memories), in MiB.
    #[serde(default = "default_memory")]
    pub memory_mib: u64,
    /// WebAssembly instructions (fuel units) one call may execute besides
    /// `fuel_per_candidate` for each candidate: the deterministic bound on a call's work.
    #[serde(default = "default_fuel")]
    pub fuel: u64,
    /// Fuel a call gets for each candidate in its batch, on top of `fuel`: a matcher's
    /// work grows with the batch, and a dialog over 10,000 representatives sends them all.
    #[serde(default = "default_fuel_per_candidate")]
    pub fuel_per_candidate: u64,
    /// Wall-clock budget of creating an instance and running its `init`, in
    /// milliseconds. Not charged to any call.
    #[serde(default = "default_init_deadline")]
    pub init_deadline_ms: u64,
    /// Fuel of creating an instance and running its `init`.
    #[serde(default = "default_init_fuel")]
    pub init_fuel: u64,
    /// Table elements of one instance, over all its tables.
    #[serde(default = "default_table_elements")]
    pub table_elements: u64,
    /// Live instances of one plugin, over all the rules using it (an instance serves
    /// the rules with the config it was initialised with).
    #[serde(default = "default_instances")]
    pub instances: usize,
    /// Calls that may wait for a busy plugin's instance; more fail at once.
    #[serde(default = "default_waiting")]
    pub waiting: usize,
    /// How long a call waits for an instance before it fails, in milliseconds.
    #[serde(default = "default_wait")]
    pub wait_ms: u64,
    /// Consecutive failures after which a plugin is backed off.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long a backed-off plugin is not called, in milliseconds; then one trial
    /// call decides whether it is called again.
    #[serde(default = "default_breaker_cooldown")]
    pub breaker_cooldown_ms: u64,
}

fn default_deadline() -> u64 {
    5
}

fn default_memory() -> u64 {
    16
}

fn default_fuel() -> u64 {
    5_000_000
}

fn default_fuel_per_candidate() -> u64 {
    5_000
}

fn default_init_deadline() -> u64 {
    1_000
}

fn default_init_fuel() -> u64 {
    100_000_000
}

fn default_table_elements() -> u64 {
    10_000
}

fn default_instances() -> usize {
    4
}

fn default_waiting() -> usize {
    16
}

fn default_wait() -> u64 {
    100
}

fn default_breaker_failures() -> u32 {
    5
}

fn default_breaker_cooldown() -> u64 {
    30_000
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline_ms: default_deadline(),
            memory_mib: default_memory(),
            fuel: default_fuel(),
            fuel_per_candidate: default_fuel_per_candidate(),
            init_deadline_ms: default_init_deadline(),
            init_fuel: default_init_fuel(),
            table_elements: default_table_elements(),
            instances: default_instances(),
            waiting: default_waiting(),
            wait_ms: default_wait(),
            breaker_failures: default_breaker_failures(),
            breaker_cooldown_ms: default_breaker_cooldown(),
        }
    }
}

impl Limits {
    /// The fuel of a call on `n` candidates.
    pub fn call_fuel(&self, n: usize) -> u64 {
        self.fuel.saturating_add(self.fuel_per_candidate.saturating_mul(n as u64))
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
}

/// Tables of one instance. A Rust component has two or three (its function table and
/// the adapter shims'); more is refused at instantiation.
pub const MAX_TABLES: usize = 8;
/// Core instances of one component instance (modules and shims).
pub const MAX_CORE_INSTANCES: usize = 32;
/// Distinct reason texts in one answer.
pub const MAX_REASONS: usize = 64;
/// Bytes of reason text in one answer, over all reasons.
pub const MAX_REASON_BYTES: usize = 16 * 1024;
/// Bytes shown of one reason; longer ones are cut.
pub const MAX_REASON: usize = 500;

/// Bytes the host copies out of the guest, at most, for an answer on `n` candidates:
/// `excluded` and `reason-of` (4 bytes each, at most one per candidate), `scores` (8
/// bytes each), and the reasons. wasmtime charges a list `len × size_of::<T>()` of the
/// host type (a `String` per reason) and a string its bytes, before it copies them.
pub fn answer_budget(n: usize) -> usize {
    n.saturating_mul(4 + 4 + 8)
        .saturating_add(MAX_REASONS * std::mem::size_of::<String>())
        .saturating_add(MAX_REASON_BYTES)
}

/// Bytes the host copies out of `init`'s answer (the needs, or a refusal message).
pub const INIT_BUDGET: usize = 64 * 1024;

/// Why the limiter refused a growth; the guest traps with it.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("memory limit of {mib} MiB exceeded")]
    Memory { mib: u64 },
    #[error("table limit of {elements} elements exceeded")]
    Table { elements: u64 },
}

/// The limits of one store (one component instance), with what it uses now.
#[derive(Debug)]
pub struct InstanceLimiter {
    memory_mib: u64,
    memory_max: usize,
    table_max: usize,
    table_limit: u64,
    /// Bytes of linear memory, over all memories.
    memory: usize,
    /// Table elements, over all tables.
    table: usize,
}

impl InstanceLimiter {
    pub fn new(limits: &Limits) -> Self {
        Self {
            memory_mib: limits.memory_mib,
            memory_max: limits.memory_bytes(),
            table_max: usize::try_from(limits.table_elements).unwrap_or(usize::MAX),
            table_limit: limits.table_elements,
            memory: 0,
            table: 0,
        }
    }

    /// Bytes of linear memory the instance holds.
    pub fn memory_bytes(&self) -> usize {
        self.memory
    }

    /// Table elements the instance holds.
    #[cfg(test)]
    pub fn table_elements(&self) -> usize {
        self.table
    }
}

impl ResourceLimiter for InstanceLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            // Refused by the memory's own maximum: `memory.grow` answers -1.
            return Ok(false);
        }
        let total = self.memory.saturating_sub(current).saturating_add(desired);
        if total > self.memory_max {
            return Err(wasmtime::Error::new(LimitError::Memory { mib: self.memory_mib }));
        }
        self.memory = total;
        Ok(true)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        let total = self.table.saturating_sub(current).saturating_add(desired);
        if total > self.table_max {
            return Err(wasmtime::Error::new(LimitError::Table { elements: self.table_limit }));
        }
        self.table = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        1
    }
}

/// Checks a guest's answer on `n` candidates, saying plainly what is wrong with it, and
/// tidies it: scores that are not finite count as 0, over-long reasons are cut, and a
/// reason is one line.
pub fn check(mut v: wit::Verdicts, n: usize) -> Result<wit::Verdicts, String> {
    if !v.scores.is_empty() && v.scores.len() != n {
        return Err(format!("returned {} scores for {n} candidates (give none or one per candidate)", v.scores.len()));
    }
    if let Some(&k) = v.excluded.iter().find(|&&k| k as usize >= n) {
        return Err(format!("excluded candidate {k}, but there are {n} (indices start at 0)"));
    }
    if let Some(w) = v.excluded.windows(2).find(|w| w[0] >= w[1]) {
        return Err(format!("excluded candidate {} after {} (give each index once, in increasing order)", w[1], w[0]));
    }
    if !v.reason_of.is_empty() && v.reason_of.len() != v.excluded.len() {
        let (r, e) = (v.reason_of.len(), v.excluded.len());
        return Err(format!("returned {r} reason indices for {e} exclusions (give none or one per exclusion)"));
    }
    if v.reasons.len() > MAX_REASONS {
        return Err(format!("returned {} reasons (at most {MAX_REASONS} distinct reasons)", v.reasons.len()));
    }
    if let Some(&r) = v.reason_of.iter().find(|&&r| r as usize >= v.reasons.len()) {
        return Err(format!("named reason {r}, but returned {} reasons", v.reasons.len()));
    }
    for score in &mut v.scores {
        if !score.is_finite() {
            *score = 0.0;
        }
    }
    for r in &mut v.reasons {
        if r.len() > MAX_REASON {
            let cut = (0..=MAX_REASON).rev().find(|i| r.is_char_boundary(*i)).unwrap_or(0);
            r.truncate(cut);
            r.push('…');
        }
        if r.contains(char::is_control) {
            *r = r.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::{InstanceLimiter, LimitError, Limits, MAX_REASON, MAX_REASONS, check, wit};
    use wasmtime::ResourceLimiter;

    fn verdicts(excluded: &[u32], reason_of: &[u32], reasons: &[&str], scores: &[f64]) -> wit::Verdicts {
        wit::Verdicts {
            excluded: excluded.to_vec(),
            reason_of: reason_of.to_vec(),
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            scores: scores.to_vec(),
        }
    }

    #[test]
    fn answers_that_do_not_fit_the_batch_are_refused_plainly() {
        let many: Vec<&str> = vec!["r"; MAX_REASONS + 1];
        let cases = [
            (verdicts(&[], &[], &[], &[1.0; 4]), "returned 4 scores for 3 candidates (give none or one per candidate)"),
            (verdicts(&[3], &[], &[], &[]), "excluded candidate 3, but there are 3 (indices start at 0)"),
            (verdicts(&[0, 0], &[], &[], &[]), "excluded candidate 0 after 0 (give each index once"),
            (verdicts(&[2, 1], &[], &[], &[]), "excluded candidate 1 after 2"),
            (verdicts(&[0, 1], &[0], &["no"], &[]), "returned 1 reason indices for 2 exclusions"),
            (verdicts(&[0], &[1], &["no"], &[]), "named reason 1, but returned 1 reasons"),
            (verdicts(&[0], &[0], &many, &[]), "returned 65 reasons (at most 64 distinct reasons)"),
        ];
        for (answer, message) in cases {
            let got = check(answer, 3).unwrap_err();
            assert!(got.starts_with(message), "`{got}` does not start with `{message}`");
        }
    }

    #[test]
    fn good_answers_are_tidied_not_refused() {
        let long = "é".repeat(MAX_REASON);
        let got =
            check(verdicts(&[0, 2], &[0, 1], &[&long, "two\nlines"], &[f64::NAN, 1.5, f64::INFINITY]), 3).unwrap();
        assert_eq!(got.scores, [0.0, 1.5, 0.0]);
        assert!(got.reasons[0].len() <= MAX_REASON + '…'.len_utf8() && got.reasons[0].ends_with('…'));
        assert_eq!(got.reasons[1], "two lines");
        assert_eq!(got.excluded, [0, 2]);
        let none = check(verdicts(&[], &[], &[], &[]), 0).unwrap();
        assert!(none.excluded.is_empty() && none.scores.is_empty());
    }

    #[test]
    fn memory_and_tables_are_counted_over_the_whole_instance() {
        let limits = Limits { memory_mib: 2, table_elements: 100, ..Limits::default() };
        let mut l = InstanceLimiter::new(&limits);
        // Two memories of 1 MiB fit; a third MiB in any of them does not.
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        let e = l.memory_growing(1 << 20, 2 << 20, None).unwrap_err();
        assert!(matches!(e.downcast_ref::<LimitError>(), Some(LimitError::Memory { mib: 2 })));
        assert_eq!(l.memory_bytes(), 2 << 20);
        // A growth past the memory's own maximum is refused without being counted.
        assert!(!l.memory_growing(0, 1 << 20, Some(0)).unwrap());
        assert!(l.table_growing(0, 60, None).unwrap());
        assert!(l.table_growing(0, 40, None).unwrap());
        assert!(l.table_growing(40, 41, None).is_err());
        assert_eq!(l.table_elements(), 100);
        assert_eq!(l.memories(), 1);
    }
}

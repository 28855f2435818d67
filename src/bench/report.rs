//! What a run measured: per kind of call, the counts by outcome and an HDR histogram of
//! latencies; printed as a table or as one JSON document for tracking over time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::args::Kind;
use super::client::{Answer, Outcome};

/// A kind of call as reported: the five of the mix, and the creates that replace removed
/// conversations (measured, but not chosen by the mix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Mix(Kind),
    Create,
}

impl Call {
    pub const ALL: [Call; 6] = [
        Call::Mix(Kind::Candidates),
        Call::Mix(Kind::Assign),
        Call::Mix(Kind::Transfer),
        Call::Mix(Kind::Release),
        Call::Mix(Kind::Remove),
        Call::Create,
    ];

    fn index(self) -> usize {
        match self {
            Call::Mix(kind) => kind as usize,
            Call::Create => 5,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Call::Mix(kind) => kind.as_str(),
            Call::Create => "create",
        }
    }
}

/// Latencies are recorded in microseconds, from 1 µs to 60 s, at 3 significant digits.
const LOWEST_US: u64 = 1;
const HIGHEST_US: u64 = 60_000_000;

/// The counts and latencies of one kind of call.
#[derive(Clone, Debug)]
pub struct CallStats {
    pub calls: u64,
    pub ok: u64,
    /// 409, 412 and 422 answers by problem code.
    pub refused: BTreeMap<String, u64>,
    /// Everything else by message (5xx, unexpected 4xx, transport).
    pub errors: BTreeMap<String, u64>,
    /// Times the mix chose this kind but no conversation was in a status that allows it.
    pub skipped: u64,
    /// Every answered call (ok, refused or HTTP error); calls without an answer are not timed.
    pub latency_us: Histogram<u64>,
}

impl CallStats {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            calls: 0,
            ok: 0,
            refused: BTreeMap::new(),
            errors: BTreeMap::new(),
            skipped: 0,
            latency_us: Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, 3)?,
        })
    }

    pub fn refusals(&self) -> u64 {
        self.refused.values().sum()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn merge(&mut self, other: &CallStats) -> anyhow::Result<()> {
        self.calls += other.calls;
        self.ok += other.ok;
        self.skipped += other.skipped;
        for (k, v) in &other.refused {
            *self.refused.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        self.latency_us.add(&other.latency_us)?;
        Ok(())
    }

    /// (p50, p90, p99, max) in microseconds; `None` when nothing was timed.
    pub fn percentiles(&self) -> Option<[u64; 4]> {
        if self.latency_us.is_empty() {
            return None;
        }
        let h = &self.latency_us;
        Some([h.value_at_quantile(0.50), h.value_at_quantile(0.90), h.value_at_quantile(0.99), h.max()])
    }
}

/// The measurements of a worker, or of the whole run once merged.
#[derive(Clone, Debug)]
pub struct Stats {
    calls: Vec<CallStats>,
}

impl Stats {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self { calls: Call::ALL.iter().map(|_| CallStats::new()).collect::<anyhow::Result<_>>()? })
    }

    pub fn get(&self, call: Call) -> &CallStats {
        &self.calls[call.index()]
    }

    pub fn record(&mut self, call: Call, answer: &Answer) {
        let s = &mut self.calls[call.index()];
        s.calls += 1;
        match &answer.outcome {
            Outcome::Ok => s.ok += 1,
            Outcome::Refused(code) => *s.refused.entry(code.clone()).or_default() += 1,
            Outcome::Error(message) => *s.errors.entry(message.clone()).or_default() += 1,
        }
        if let Some(latency) = answer.latency {
            let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(LOWEST_US);
            s.latency_us.saturating_record(us);
        }
    }

    pub fn skip(&mut self, kind: Kind) {
        self.calls[Call::Mix(kind).index()].skipped += 1;
    }

    pub fn merge(&mut self, other: &Stats) -> anyhow::Result<()> {
        for (mine, theirs) in self.calls.iter_mut().zip(&other.calls) {
            mine.merge(theirs)?;
        }
        Ok(())
    }

    pub fn total_calls(&self) -> u64 {
        self.calls.iter().map(|c| c.calls).sum()
    }

    pub fn total_errors(&self) -> u64 {
        self.calls.iter().map(CallStats::error_count).sum()
    }

    pub fn total_refusals(&self) -> u64 {
        self.calls.iter().map(CallStats::refusals).sum()
    }
}

/// The machine the bench ran on.
pub fn machine() -> Value {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
    });
    json!({"os": std::env::consts::OS, "arch": std::env::consts::ARCH, "cpus": cpus, "cpu_model": model})
}

/// A finished run.
pub struct Report {
    /// Parameters, rules and set-up facts, as they go into the JSON document.
    pub parameters: Value,
    pub rules: Value,
    pub populate: Value,
    pub measured: Duration,
    pub interrupted: bool,
    pub stats: Stats,
    /// CPU seconds used during the measured window: (daemon when started here, this process).
    pub cpu_seconds: (Option<f64>, Option<f64>),
}

fn per_second(n: u64, over: Duration) -> f64 {
    let s = over.as_secs_f64();
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

impl Report {
    pub fn to_json(&self) -> Value {
        let mut kinds = serde_json::Map::new();
        for call in Call::ALL {
            let s = self.stats.get(call);
            let latency = s.percentiles().map(|[p50, p90, p99, max]| {
                json!({"p50": p50, "p90": p90, "p99": p99, "max": max, "mean": round(s.latency_us.mean(), 1)})
            });
            kinds.insert(
                call.as_str().to_owned(),
                json!({
                    "calls": s.calls,
                    "calls_per_s": round(per_second(s.calls, self.measured), 1),
                    "ok": s.ok,
                    "refusals": s.refusals(),
                    "refusals_by_code": s.refused,
                    "errors": s.error_count(),
                    "errors_by_message": s.errors,
                    "skipped": s.skipped,
                    "latency_us": latency,
                }),
            );
        }
        let total = self.stats.total_calls();
        json!({
            "switchboard": {"version": env!("CARGO_PKG_VERSION")},
            "machine": machine(),
            "parameters": self.parameters,
            "rules": self.rules,
            "populate": self.populate,
            "measured_seconds": round(self.measured.as_secs_f64(), 3),
            "interrupted": self.interrupted,
            "total": {
                "calls": total,
                "calls_per_s": round(per_second(total, self.measured), 1),
                "refusals": self.stats.total_refusals(),
                "errors": self.stats.total_errors(),
            },
            "kinds": kinds,
            "cpu_seconds": {"daemon": self.cpu_seconds.0.map(|s| round(s, 2)), "bench": self.cpu_seconds.1.map(|s| round(s, 2))},
        })
    }

    /// The table of the text output, then refusals and errors spelt out.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
            "kind", "calls", "calls/s", "p50", "p90", "p99", "max", "refusals", "errors"
        );
        for call in Call::ALL {
            let s = self.stats.get(call);
            let [p50, p90, p99, max] =
                s.percentiles().map_or_else(|| ["-".to_owned(), "-".into(), "-".into(), "-".into()], |p| p.map(ms));
            let _ = writeln!(
                out,
                "{:<11} {:>9} {:>9.1} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
                call.as_str(),
                s.calls,
                per_second(s.calls, self.measured),
                p50,
                p90,
                p99,
                max,
                s.refusals(),
                s.error_count()
            );
        }
        let total = self.stats.total_calls();
        let _ = writeln!(
            out,
            "{:<11} {:>9} {:>9.1} {:>49} {:>7}",
            "total",
            total,
            per_second(total, self.measured),
            self.stats.total_refusals(),
            self.stats.total_errors()
        );
        let mut notes = Vec::new();
        for call in Call::ALL {
            let s = self.stats.get(call);
            if !s.refused.is_empty() {
                let codes: Vec<String> = s.refused.iter().map(|(c, n)| format!("{n} {c}")).collect();
                notes.push(format!("refusals of {}: {}", call.as_str(), codes.join(", ")));
            }
            if s.skipped > 0 {
                notes.push(format!(
                    "{}: chosen {} times with no conversation in a status that allows it (another kind was chosen instead)",
                    call.as_str(),
                    s.skipped
                ));
            }
        }
        for call in Call::ALL {
            for (message, n) in &self.stats.get(call).errors {
                notes.push(format!("ERRORS of {}: {n} × {message}", call.as_str()));
            }
        }
        if !notes.is_empty() {
            out.push('\n');
            for n in notes {
                let _ = writeln!(out, "{n}");
            }
        }
        out
    }
}

/// Microseconds as milliseconds for the table.
fn ms(us: u64) -> String {
    format!("{:.2}ms", us as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    fn answer(outcome: Outcome, ms: u64) -> Answer {
        Answer { status: Some(StatusCode::OK), body: Value::Null, outcome, latency: Some(Duration::from_millis(ms)) }
    }

    #[test]
    fn merged_stats_count_outcomes_and_order_percentiles() {
        let mut a = Stats::new().unwrap();
        let mut b = Stats::new().unwrap();
        let assign = Call::Mix(Kind::Assign);
        for i in 1..=100 {
            a.record(assign, &answer(Outcome::Ok, i));
        }
        b.record(assign, &answer(Outcome::Refused("not_eligible".into()), 500));
        b.record(assign, &answer(Outcome::Error("HTTP 500 internal".into()), 2));
        b.skip(Kind::Release);
        a.merge(&b).unwrap();
        let s = a.get(assign);
        assert_eq!((s.calls, s.ok, s.refusals(), s.error_count()), (102, 100, 1, 1));
        let [p50, p90, p99, max] = s.percentiles().unwrap();
        assert!(p50 <= p90 && p90 <= p99 && p99 <= max, "{p50} {p90} {p99} {max}");
        assert!((499_000..=501_000).contains(&max), "{max}");
        assert_eq!(a.get(Call::Mix(Kind::Release)).skipped, 1);
        assert_eq!(a.total_errors(), 1);
        let report = Report {
            parameters: json!({}),
            rules: json!({}),
            populate: json!({}),
            measured: Duration::from_secs(2),
            interrupted: false,
            stats: a,
            cpu_seconds: (None, None),
        };
        let doc = report.to_json();
        assert_eq!(doc["kinds"]["assign"]["calls"], 102);
        assert_eq!(doc["kinds"]["assign"]["calls_per_s"], 51.0);
        assert_eq!(doc["kinds"]["candidates"]["latency_us"], Value::Null);
        let table = report.table();
        assert!(table.contains("refusals of assign: 1 not_eligible"), "{table}");
        assert!(table.contains("ERRORS of assign: 1 × HTTP 500 internal"), "{table}");
    }
}

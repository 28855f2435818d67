//! What a run measured: per kind of call, the counts by outcome and an HDR histogram of
//! latencies; printed as a table or as one JSON document for tracking over time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::args::{Kind, Limit, Mix};
use super::client::{Answer, Outcome};

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
    /// Candidates answers that list representatives: how many, the candidates they listed
    /// (at most `limit` each), the most one listed, and the eligible ones (`total`).
    pub answers: u64,
    pub listed: u64,
    pub listed_max: u64,
    pub eligible: u64,
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
            answers: 0,
            listed: 0,
            listed_max: 0,
            eligible: 0,
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
        self.answers += other.answers;
        self.listed += other.listed;
        self.listed_max = self.listed_max.max(other.listed_max);
        self.eligible += other.eligible;
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

/// The measurements of a worker, or of a group of calls once merged, by kind.
#[derive(Clone, Debug)]
pub struct Stats {
    calls: Vec<CallStats>,
}

impl Stats {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self { calls: Kind::ALL.iter().map(|_| CallStats::new()).collect::<anyhow::Result<_>>()? })
    }

    pub fn get(&self, kind: Kind) -> &CallStats {
        &self.calls[kind as usize]
    }

    pub fn record(&mut self, kind: Kind, answer: &Answer) {
        let s = &mut self.calls[kind as usize];
        s.calls += 1;
        match &answer.outcome {
            Outcome::Ok => {
                s.ok += 1;
                // Representatives only: one dialog in five lists the (few) queues.
                if answer.body["target"] == "representative"
                    && let Some(listed) = answer.body["candidates"].as_array().map(|c| c.len() as u64)
                {
                    s.answers += 1;
                    s.listed += listed;
                    s.listed_max = s.listed_max.max(listed);
                    s.eligible += answer.body["total"].as_u64().unwrap_or(0);
                }
            }
            Outcome::Refused(code) => *s.refused.entry(code.clone()).or_default() += 1,
            Outcome::Error(message) => *s.errors.entry(message.clone()).or_default() += 1,
        }
        if let Some(latency) = answer.latency {
            let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(LOWEST_US);
            s.latency_us.saturating_record(us);
        }
    }

    pub fn skip(&mut self, kind: Kind) {
        self.calls[kind as usize].skipped += 1;
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

/// How an open-loop group kept its schedule (`--rate`, `--background-rate`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pace {
    /// Calls per second asked for.
    pub rate: u32,
    /// Calls due in the measured window, one every 1/rate.
    pub due: u64,
    /// Calls started in the measured window (a draw that found no conversation its kind
    /// applies to starts none, and counts as `skipped`).
    pub started: u64,
    /// Calls started [`LATE`] or more after their scheduled time: every slot was busy
    /// (`--concurrency` calls in flight), or the bench itself fell behind.
    pub late: u64,
}

/// A call this much after its scheduled time is late: the timer wakes up to 1 ms late
/// by itself, so less than 2 ms is on time.
pub const LATE: Duration = Duration::from_millis(2);

/// One group of calls: the main load, or the `--background` one.
pub struct Group {
    pub mix: Mix,
    pub stats: Stats,
    /// `None`: closed loop (workers that wait for each answer).
    pub pace: Option<Pace>,
}

/// What `--restart` saw of the second start.
pub struct Restart {
    /// From starting the process to its `listening on` line.
    pub startup: Duration,
    /// VmRSS of the daemon before it was stopped, and right after it listened again.
    pub rss_before_mib: Option<f64>,
    pub rss_after_mib: Option<f64>,
}

/// A finished run.
pub struct Report {
    /// Parameters, rules and set-up facts, as they go into the JSON document.
    pub parameters: Value,
    pub rules: Value,
    pub populate: Value,
    pub restart: Option<Restart>,
    pub measured: Duration,
    pub interrupted: bool,
    pub concurrency: u32,
    pub limit: Limit,
    pub main: Group,
    pub background: Option<Group>,
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

impl Group {
    /// The kinds shown: all of them for the main group (a 0 row says the kind was not
    /// chosen), those in the mix or called for the background.
    fn shown(&self, main: bool) -> impl Iterator<Item = Kind> + '_ {
        Kind::ALL.into_iter().filter(move |&k| main || self.mix.weight(k) > 0 || self.stats.get(k).calls > 0)
    }

    fn kinds_json(&self, main: bool, measured: Duration) -> Value {
        let mut kinds = serde_json::Map::new();
        for kind in self.shown(main) {
            let s = self.stats.get(kind);
            let latency = s.percentiles().map(|[p50, p90, p99, max]| {
                json!({"p50": p50, "p90": p90, "p99": p99, "max": max, "mean": round(s.latency_us.mean(), 1)})
            });
            kinds.insert(
                kind.as_str().to_owned(),
                json!({
                    "calls": s.calls,
                    "calls_per_s": round(per_second(s.calls, measured), 1),
                    "ok": s.ok,
                    "refusals": s.refusals(),
                    "refusals_by_code": s.refused,
                    "errors": s.error_count(),
                    "errors_by_message": s.errors,
                    "skipped": s.skipped,
                    "latency_us": latency,
                }),
            );
            if kind == Kind::Candidates
                && let Some(k) = kinds.get_mut(kind.as_str())
            {
                let mean = |n: u64| round(n as f64 / s.answers.max(1) as f64, 1);
                k["representatives_listed"] = json!({"answers": s.answers, "mean": mean(s.listed), "max": s.listed_max, "eligible_mean": mean(s.eligible)});
            }
        }
        Value::Object(kinds)
    }

    fn total_json(&self, measured: Duration) -> Value {
        let total = self.stats.total_calls();
        json!({
            "calls": total,
            "calls_per_s": round(per_second(total, measured), 1),
            "refusals": self.stats.total_refusals(),
            "errors": self.stats.total_errors(),
        })
    }

    fn pace_json(&self, measured: Duration) -> Value {
        self.pace.map_or(Value::Null, |p| {
            json!({
                "target_per_s": p.rate,
                "achieved_per_s": round(per_second(p.started, measured), 1),
                "due": p.due,
                "started": p.started,
                "late": p.late,
            })
        })
    }

    /// `open loop at 500 calls/s (achieved 499.8/s, 0 of 15000 late)`.
    fn pace_text(&self, measured: Duration) -> Option<String> {
        self.pace.map(|p| {
            format!(
                "open loop at {} calls/s (achieved {:.1}/s, {} of {} started {}ms or more after their time)",
                p.rate,
                per_second(p.started, measured),
                p.late,
                p.started,
                LATE.as_millis()
            )
        })
    }
}

impl Report {
    pub fn total_errors(&self) -> u64 {
        self.main.stats.total_errors() + self.background.as_ref().map_or(0, |b| b.stats.total_errors())
    }

    pub fn to_json(&self) -> Value {
        let background = self.background.as_ref().map_or(Value::Null, |b| {
            json!({
                "mix": b.mix.to_string(),
                "rate": b.pace_json(self.measured),
                "kinds": b.kinds_json(false, self.measured),
                "total": b.total_json(self.measured),
            })
        });
        let restart = self.restart.as_ref().map_or(Value::Null, |r| {
            json!({
                "startup_ms": round(r.startup.as_secs_f64() * 1000.0, 1),
                "rss_mib": r.rss_after_mib.map(|m| round(m, 1)),
                "rss_mib_before": r.rss_before_mib.map(|m| round(m, 1)),
            })
        });
        json!({
            "switchboard": {"version": env!("CARGO_PKG_VERSION")},
            "machine": machine(),
            "parameters": self.parameters,
            "rules": self.rules,
            "populate": self.populate,
            "restart": restart,
            "measured_seconds": round(self.measured.as_secs_f64(), 3),
            "interrupted": self.interrupted,
            "rate": self.main.pace_json(self.measured),
            "total": self.main.total_json(self.measured),
            "kinds": self.main.kinds_json(true, self.measured),
            "background": background,
            "cpu_seconds": {"daemon": self.cpu_seconds.0.map(|s| round(s, 2)), "bench": self.cpu_seconds.1.map(|s| round(s, 2))},
        })
    }

    /// The table of the text output: what load, a row per kind (and per background
    /// kind), then refusals and errors spelt out, and what `--restart` saw.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let load = self.main.pace_text(self.measured).map_or_else(
            || format!("closed loop, {} connections", self.concurrency),
            |pace| format!("{pace}, at most {} in flight", self.concurrency),
        );
        let _ = writeln!(out, "load: {load} · candidates limit {}", self.limit);
        let mut groups = vec![("", &self.main)];
        if let Some(b) = &self.background {
            groups.push((" (background)", b));
        }
        let width = groups
            .iter()
            .flat_map(|(mark, g)| g.shown(mark.is_empty()).map(move |k| k.as_str().len() + mark.len()))
            .max()
            .unwrap_or(0)
            .max(11);
        let _ = writeln!(
            out,
            "{:<width$} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
            "kind", "calls", "calls/s", "p50", "p90", "p99", "max", "refusals", "errors"
        );
        for (mark, group) in &groups {
            for kind in group.shown(mark.is_empty()) {
                let s = group.stats.get(kind);
                let [p50, p90, p99, max] =
                    s.percentiles().map_or_else(|| ["-".to_owned(), "-".into(), "-".into(), "-".into()], |p| p.map(ms));
                let _ = writeln!(
                    out,
                    "{:<width$} {:>9} {:>9.1} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
                    format!("{kind}{mark}"),
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
            let total = group.stats.total_calls();
            let _ = writeln!(
                out,
                "{:<width$} {:>9} {:>9.1} {:>49} {:>7}",
                format!("total{mark}"),
                total,
                per_second(total, self.measured),
                group.stats.total_refusals(),
                group.stats.total_errors()
            );
        }
        let mut notes = Vec::new();
        if let Some(b) = &self.background {
            let pace = b.pace_text(self.measured).unwrap_or_default();
            notes.push(format!("background: {}, {pace}, at most {} in flight", b.mix, self.concurrency));
        }
        for (mark, group) in &groups {
            for kind in Kind::ALL {
                let s = group.stats.get(kind);
                if !s.refused.is_empty() {
                    let codes: Vec<String> = s.refused.iter().map(|(c, n)| format!("{n} {c}")).collect();
                    notes.push(format!("refusals of {kind}{mark}: {}", codes.join(", ")));
                }
                if s.skipped > 0 {
                    notes.push(format!(
                        "{kind}{mark}: chosen {} times with no conversation in a status that allows it (another kind was chosen instead)",
                        s.skipped
                    ));
                }
            }
        }
        for (mark, group) in &groups {
            for kind in Kind::ALL {
                for (message, n) in &group.stats.get(kind).errors {
                    notes.push(format!("ERRORS of {kind}{mark}: {n} × {message}"));
                }
            }
        }
        for (mark, group) in &groups {
            let s = group.stats.get(Kind::Candidates);
            if s.answers > 0 {
                let mean = |n: u64| n as f64 / s.answers as f64;
                notes.push(format!(
                    "candidates{mark}: representative dialogs listed {:.1} on average (at most {}) of {:.1} eligible; limit {}",
                    mean(s.listed),
                    s.listed_max,
                    mean(s.eligible),
                    self.limit
                ));
            }
        }
        if let Some(r) = &self.restart {
            let mib = |m: Option<f64>| m.map_or_else(|| "unknown".to_owned(), |m| format!("{m:.1} MiB"));
            notes.push(format!(
                "restart: start-up to `listening on` {:.0} ms over the populated database, RSS after start {} (before the restart {})",
                r.startup.as_secs_f64() * 1000.0,
                mib(r.rss_after_mib),
                mib(r.rss_before_mib)
            ));
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
        let assign = Kind::Assign;
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
        assert_eq!(a.get(Kind::Release).skipped, 1);
        assert_eq!(a.total_errors(), 1);
        let mix = |s| crate::bench::args::parse_mix(s).unwrap();
        let mut writes = Stats::new().unwrap();
        writes.record(Kind::PutQueue, &answer(Outcome::Ok, 3));
        let report = Report {
            parameters: json!({}),
            rules: json!({}),
            populate: json!({}),
            restart: Some(Restart {
                startup: Duration::from_millis(812),
                rss_before_mib: Some(60.0),
                rss_after_mib: None,
            }),
            measured: Duration::from_secs(2),
            interrupted: false,
            concurrency: 4,
            limit: Limit::At(50),
            main: Group { mix: mix("assign=1"), stats: a, pace: None },
            background: Some(Group {
                mix: mix("put_queue=1,create=1"),
                stats: writes,
                pace: Some(Pace { rate: 200, due: 400, started: 399, late: 1 }),
            }),
            cpu_seconds: (None, None),
        };
        let doc = report.to_json();
        assert_eq!(doc["kinds"]["assign"]["calls"], 102);
        assert_eq!(doc["kinds"]["assign"]["calls_per_s"], 51.0);
        assert_eq!(doc["kinds"]["candidates"]["latency_us"], Value::Null);
        let table = report.table();
        assert!(table.contains("refusals of assign: 1 not_eligible"), "{table}");
        assert!(table.contains("ERRORS of assign: 1 × HTTP 500 internal"), "{table}");
        assert!(table.starts_with("load: closed loop, 4 connections · candidates limit 50\n"), "{table}");
        assert!(table.lines().any(|l| l.starts_with("put_queue (background)  ")), "{table}");
        assert!(table.lines().any(|l| l.starts_with("create (background) ")), "{table}");
        assert!(!table.contains("assign (background)"), "only the background's kinds: {table}");
        assert!(table.contains("restart: start-up to `listening on` 812 ms"), "{table}");
        assert_eq!(report.total_errors(), 1);
        let b = &doc["background"];
        assert_eq!(b["rate"]["achieved_per_s"], 199.5);
        assert_eq!((b["rate"]["late"].as_u64(), b["kinds"]["put_queue"]["calls"].as_u64()), (Some(1), Some(1)));
        assert!(b["kinds"]["assign"].is_null(), "{b}");
        assert_eq!(doc["rate"], Value::Null, "the main group ran closed loop");
        assert_eq!(doc["restart"]["startup_ms"], 812.0);
    }
}

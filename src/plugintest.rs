//! `switchboard plugin test`: one matcher component on one fixture, through the daemon's
//! own plugin host, sandbox and limits, before any rule names it.
//!
//! A fixture (TOML, documented in plugins/README.md) declares a conversation, the
//! candidates (`[[representative]]`s or `[[queue]]`s, in the rule tests' format: the
//! tables are parsed by `ruletest`), the plugin's `config` and optional expectations.
//! The component is loaded as `plugins_dir` loads it, `init` runs with the config as a
//! rule's use would, and the whole batch is judged with [`PluginUse::representatives_request`] (or
//! [`PluginUse::judge_queues`]) `repeat` times through the plugin's pool, as the daemon
//! calls it. The report gives each candidate's verdict, the fields `init` asked for,
//! the median time of a call, the peak fuel and linear memory, what the guest printed,
//! and which expectations failed. Nothing here depends on the WIT types: a change of
//! the wire format under [`crate::plugins`] does not reach it.
//!
//! Every error in a fixture is reported as `file:line:column`, like the rule tests'.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::domain::{Conversation, Queue, Representative, RoutingAction, TargetKind};
use crate::plugins::{FailurePolicy, GuestSink, Judgement, Limits, PluginError, PluginHost};
use crate::rules::RuleError;
use crate::ruletest::{self, FixtureConversation, FixtureQueue, FixtureRep};

/// Score adjustments are compared to within this much.
pub const SCORE_TOLERANCE: f64 = 0.001;
/// The most calls `--repeat` may ask for.
pub const MAX_REPEAT: usize = 100_000;
/// Lines of guest output kept for the report.
const MAX_GUEST_LINES: usize = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureFile {
    /// `assign` (default) or `transfer`.
    #[serde(default = "assign")]
    action: RoutingAction,
    /// `representative` or `queue`; default: the kind the file declares.
    #[serde(default)]
    target: Option<Spanned<TargetKind>>,
    /// The request's clock (RFC 3339); default: the real one.
    #[serde(default)]
    now: Option<Spanned<String>>,
    /// The rule's `[rule.plugin] config`, given to `init` as JSON.
    #[serde(default)]
    config: Option<toml::Table>,
    conversation: Spanned<FixtureConversation>,
    #[serde(default)]
    representative: Vec<FixtureRep>,
    #[serde(default)]
    queue: Vec<FixtureQueue>,
    #[serde(default)]
    expect: Option<Spanned<ExpectDef>>,
}

fn assign() -> RoutingAction {
    RoutingAction::Assign
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectDef {
    /// The request fields `init` asks for, in any order.
    #[serde(default)]
    needs: Option<Vec<String>>,
    /// The candidates not excluded, in any order.
    #[serde(default)]
    eligible: Option<Vec<Spanned<String>>>,
    /// Candidate id → text its exclusion reason contains.
    #[serde(default)]
    excluded: BTreeMap<String, Spanned<String>>,
    /// Candidate id → its score adjustment; the candidate must be eligible.
    #[serde(default)]
    scores: BTreeMap<String, Spanned<f64>>,
    /// Text the plugin's failure contains: the plugin must fail (refuse its config, trap...).
    #[serde(default)]
    error: Option<String>,
}

/// What a fixture expects, checked.
#[derive(Debug, Default)]
struct Expect {
    needs: Option<Vec<String>>,
    eligible: Option<Vec<String>>,
    excluded: Vec<(String, String)>,
    scores: Vec<(String, f64)>,
    error: Option<String>,
}

impl Expect {
    fn count(&self) -> usize {
        usize::from(self.needs.is_some())
            + usize::from(self.eligible.is_some())
            + self.excluded.len()
            + self.scores.len()
            + usize::from(self.error.is_some())
    }
}

enum Candidates {
    Representatives(Vec<Representative>),
    Queues(Vec<Queue>),
}

/// A fixture, read and checked.
pub struct Fixture {
    /// The file as shown in messages.
    pub file: String,
    pub action: RoutingAction,
    pub now_ms: i64,
    /// The config from the file, as JSON (`{}` when it has none).
    pub config: String,
    conversation: Conversation,
    candidates: Candidates,
    expect: Expect,
}

impl Fixture {
    pub fn target(&self) -> TargetKind {
        match self.candidates {
            Candidates::Representatives(_) => TargetKind::Representative,
            Candidates::Queues(_) => TargetKind::Queue,
        }
    }

    fn ids(&self) -> Vec<(&str, &str)> {
        match &self.candidates {
            Candidates::Representatives(reps) => reps.iter().map(|r| (r.id.as_str(), r.input.name.as_str())).collect(),
            Candidates::Queues(queues) => queues.iter().map(|q| (q.id.as_str(), q.input.name.as_str())).collect(),
        }
    }
}

/// Why `plugin test` could not run.
#[derive(Debug, thiserror::Error)]
pub enum PluginTestError {
    #[error("{}", fixture_errors(.0))]
    Fixture(Vec<RuleError>),
    #[error(
        "--config is not a JSON object: {0} (give the rule's config table as JSON, e.g. --config '{{\"skill\":\"billing\"}}')"
    )]
    Config(String),
    #[error("--repeat {0} is out of range (1 to {MAX_REPEAT})")]
    Repeat(usize),
    #[error("starting the plugin engine: {0}")]
    Engine(String),
}

fn fixture_errors(errors: &[RuleError]) -> String {
    let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
    format!("the fixture is invalid ({} errors):\n{}", errors.len(), lines.join("\n"))
}

/// Reads and checks the fixture at `path`.
pub fn read(path: &Path) -> Result<Fixture, PluginTestError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        PluginTestError::Fixture(vec![RuleError {
            file: shown.clone(),
            line: 1,
            column: 1,
            message: format!("cannot read the fixture: {e}"),
        }])
    })?;
    parse(&shown, &text).map_err(PluginTestError::Fixture)
}

/// Parses and checks one fixture; every error, located.
pub fn parse(file: &str, text: &str) -> Result<Fixture, Vec<RuleError>> {
    let at = |offset: usize, message: String| RuleError::at(file, text, offset, message);
    let parsed: FixtureFile =
        toml::from_str(text).map_err(|e| vec![at(e.span().map_or(0, |s| s.start), e.message().trim().to_owned())])?;
    let mut errors = Vec::new();
    let now_ms = crate::ruletest::now_ms(parsed.now.as_ref(), |offset, message| errors.push(at(offset, message)));
    let (has_reps, has_queues) = (!parsed.representative.is_empty(), !parsed.queue.is_empty());
    let target = match &parsed.target {
        Some(t) => {
            let kind = *t.get_ref();
            let empty = match kind {
                TargetKind::Representative => !has_reps,
                TargetKind::Queue => !has_queues,
            };
            if empty {
                let what = if kind == TargetKind::Queue { "queue" } else { "representative" };
                errors.push(at(
                    t.span().start,
                    format!("`target` is `{what}`, but the file declares no [[{what}]]: add the candidates to judge"),
                ));
            }
            kind
        }
        None if has_reps && has_queues => {
            errors.push(at(
                0,
                "the file declares both [[representative]]s and [[queue]]s: say which to judge with \
                 `target = \"representative\"` or `target = \"queue\"`"
                    .into(),
            ));
            TargetKind::Representative
        }
        None if has_queues => TargetKind::Queue,
        None => {
            if !has_reps {
                errors.push(at(
                    0,
                    "no candidates: declare the representatives to judge with [[representative]] (id, name, \
                     presence, capacity, skills...) or the queues with [[queue]]"
                        .into(),
                ));
            }
            TargetKind::Representative
        }
    };
    let mut rep_ids = HashSet::new();
    let mut reps = Vec::new();
    for r in parsed.representative {
        if rep_ids.insert(r.id.get_ref().clone()) {
            reps.push(ruletest::representative(r, now_ms));
        } else {
            errors.push(at(r.id.span().start, format!("representative `{}` is declared twice", r.id.get_ref())));
        }
    }
    let mut queue_ids = HashSet::new();
    let mut queues = Vec::new();
    for q in parsed.queue {
        if queue_ids.insert(q.id.get_ref().clone()) {
            queues.push(ruletest::queue(q));
        } else {
            errors.push(at(q.id.span().start, format!("queue `{}` is declared twice", q.id.get_ref())));
        }
    }
    let (kind, known) = match target {
        TargetKind::Representative => ("representative", &rep_ids),
        TargetKind::Queue => ("queue", &queue_ids),
    };
    let is_known = |id: &str| known.iter().any(|k| k.as_str() == id);
    let unknown = |id: &str| {
        format!(
            "`{id}` is not a {kind} of this file (the candidates are its [[{kind}]]s; declare it with id = \"{id}\")"
        )
    };
    let mut expect = Expect::default();
    if let Some(def) = parsed.expect {
        let span = def.span();
        let def = def.into_inner();
        expect.needs = def.needs;
        expect.error = def.error;
        if let Some(list) = def.eligible {
            let mut ids = Vec::new();
            for id in list {
                if !is_known(id.get_ref()) {
                    errors.push(at(id.span().start, unknown(id.get_ref())));
                }
                ids.push(id.into_inner());
            }
            expect.eligible = Some(ids);
        }
        for (id, text) in def.excluded {
            if !is_known(&id) {
                errors.push(at(text.span().start, unknown(&id)));
            }
            expect.excluded.push((id, text.into_inner()));
        }
        for (id, score) in def.scores {
            if !is_known(&id) {
                errors.push(at(score.span().start, unknown(&id)));
            }
            expect.scores.push((id, *score.get_ref()));
        }
        if expect.count() == 0 {
            errors.push(at(
                span.start,
                "`expect` says nothing: give `eligible` (ids), `excluded` (id = reason text), `scores` \
                 (id = adjustment), `needs` (field names) or `error` (failure text), or drop the table"
                    .into(),
            ));
        }
        if expect.error.is_some() && expect.count() > 1 {
            errors.push(at(
                span.start,
                "`expect.error` says the plugin fails, so it gives no verdicts to expect: keep `error` alone".into(),
            ));
        }
    }
    let config = match &parsed.config {
        // As the rules give a rule's config table to `init`.
        Some(table) => serde_json::to_string(table).unwrap_or_else(|_| "{}".into()),
        None => "{}".into(),
    };
    let conv_span = parsed.conversation.span();
    let conversation = match ruletest::conversation(parsed.conversation.into_inner(), parsed.action, &rep_ids, now_ms) {
        Ok(c) => Some(c),
        Err((offset, message)) => {
            errors.push(at(if offset == 0 { conv_span.start } else { offset }, message));
            None
        }
    };
    let candidates = match target {
        TargetKind::Representative => Candidates::Representatives(reps),
        TargetKind::Queue => Candidates::Queues(queues),
    };
    match conversation {
        Some(conversation) if errors.is_empty() => Ok(Fixture {
            file: file.to_owned(),
            action: parsed.action,
            now_ms,
            config,
            conversation,
            candidates,
            expect,
        }),
        _ => Err(errors),
    }
}

/// Checks `--config` and puts it in the form the daemon gives a rule's config in.
pub fn config_arg(json: &str) -> Result<String, PluginTestError> {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(value @ serde_json::Value::Object(_)) => Ok(value.to_string()),
        Ok(other) => Err(PluginTestError::Config(format!("it is {other}"))),
        Err(e) => Err(PluginTestError::Config(e.to_string())),
    }
}

/// Guest stdout and stderr, handed over by the plugin host ([`GuestSink`]): `plugin test`
/// shows what the guest printed, a panic message above all, beside the verdicts.
#[derive(Clone, Debug, Default)]
struct GuestOutput {
    lines: Arc<Mutex<Vec<GuestLine>>>,
    /// Lines are kept only while this is set (init and the first call, not the repeats).
    recording: Arc<AtomicBool>,
}

/// One line a guest printed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GuestLine {
    /// `stdout` or `stderr`.
    pub stream: String,
    pub line: String,
}

impl GuestOutput {
    /// The sink to give the plugin host.
    fn sink(&self) -> GuestSink {
        let out = self.clone();
        GuestSink::new(move |_plugin, stream, line| {
            if !out.recording.load(Ordering::Relaxed) || line.trim().is_empty() {
                return;
            }
            let mut lines = out.lines.lock().unwrap_or_else(|e| e.into_inner());
            if lines.len() < MAX_GUEST_LINES {
                lines.push(GuestLine { stream: stream.to_owned(), line: line.to_owned() });
            }
        })
    }

    fn record(&self, on: bool) {
        self.recording.store(on, Ordering::Relaxed);
    }

    fn take(&self) -> Vec<GuestLine> {
        std::mem::take(&mut *self.lines.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// How to run the test.
#[derive(Clone, Debug)]
pub struct Options {
    /// Overrides the fixture's config (JSON, from [`config_arg`]).
    pub config: Option<String>,
    /// How many times the batch is judged (the time reported is the median).
    pub repeat: usize,
    pub limits: Limits,
}

/// One candidate's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub id: String,
    pub name: String,
    pub eligible: bool,
    /// Why it was excluded, if the plugin said.
    pub reason: Option<String>,
    /// The plugin's score adjustment (0 when it gave none).
    pub score: f64,
}

/// The time of the calls, in microseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Timing {
    pub calls: usize,
    pub median_us: f64,
    pub min_us: f64,
    pub max_us: f64,
    /// The median call's time divided by the candidates.
    pub per_candidate_us: f64,
    /// Creating the first instance and running `init`.
    pub init_us: f64,
}

/// Why the plugin failed, in the daemon's words.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    /// `load` (compiling and checking the component), `init` or `call`.
    pub stage: &'static str,
    /// What API clients would see (`PluginError::what`).
    pub what: String,
    /// The engine's detail, as the daemon logs it.
    pub detail: String,
}

/// What `plugin test` found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The plugin's name when installed as its file.
    pub plugin: String,
    pub component: String,
    pub bytes: u64,
    pub sha256: String,
    pub fixture: String,
    pub action: RoutingAction,
    pub target: TargetKind,
    /// The candidates in the batch.
    pub count: usize,
    /// The config `init` was given (JSON).
    pub config: String,
    /// The request fields `init` asked for (none when it failed).
    pub needs: Option<Vec<&'static str>>,
    pub candidates: Vec<Verdict>,
    pub timing: Option<Timing>,
    pub peak_call_fuel: u64,
    /// The fuel one call on this batch gets.
    pub call_fuel_limit: u64,
    /// The most linear memory the instance held after a call, in bytes.
    pub peak_instance_memory: u64,
    pub memory_limit: u64,
    pub deadline_ms: u64,
    /// What the guest printed during `init` and the first call.
    pub guest_output: Vec<GuestLine>,
    pub error: Option<Failure>,
    /// Expectations of the fixture.
    pub expectations: usize,
    /// Whether they were checked: not when the plugin failed unexpectedly.
    pub checked: bool,
    /// Expectations that failed, each with what was expected and what came.
    pub failures: Vec<String>,
    pub passed: bool,
}

fn failure(stage: &'static str, e: PluginError) -> Failure {
    Failure { stage, what: e.what, detail: e.detail }
}

/// Microseconds, to the nanosecond.
fn micros(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e9).round() / 1e3
}

/// Runs the component at `path` on `fixture`.
pub fn run(path: &Path, fixture: &Fixture, opts: &Options) -> Result<Report, PluginTestError> {
    if opts.repeat == 0 || opts.repeat > MAX_REPEAT {
        return Err(PluginTestError::Repeat(opts.repeat));
    }
    let guest_output = GuestOutput::default();
    let output = &guest_output;
    let host = PluginHost::with_guest_sink(opts.limits, None, Some(output.sink()))
        .map_err(|e| PluginTestError::Engine(format!("{e:#}")))?;
    // Named as `plugins_dir` names it: the file's stem, `_` read as `-`.
    let name = path.file_stem().map_or_else(|| "plugin".to_owned(), |s| s.to_string_lossy().replace('_', "-"));
    let n = fixture.ids().len();
    let config = opts.config.clone().unwrap_or_else(|| fixture.config.clone());
    let mut report = Report {
        plugin: name.clone(),
        component: path.display().to_string(),
        bytes: std::fs::metadata(path).map_or(0, |m| m.len()),
        sha256: String::new(),
        fixture: fixture.file.clone(),
        action: fixture.action,
        target: fixture.target(),
        count: n,
        config: config.clone(),
        needs: None,
        candidates: Vec::new(),
        timing: None,
        peak_call_fuel: 0,
        call_fuel_limit: opts.limits.call_fuel(n),
        peak_instance_memory: 0,
        memory_limit: opts.limits.memory_mib.saturating_mul(1 << 20),
        deadline_ms: opts.limits.deadline_ms,
        guest_output: Vec::new(),
        error: None,
        expectations: fixture.expect.count(),
        checked: false,
        failures: Vec::new(),
        passed: false,
    };
    let plugin = match host.load(&name, path) {
        Ok(p) => p,
        Err(e) => return Ok(finish(report, fixture, Some(failure("load", e)))),
    };
    report.sha256 = plugin.sha256.clone();
    output.record(true);
    let started = Instant::now();
    let using = plugin.with_config(config, FailurePolicy::FailClosed);
    let init_us = micros(started.elapsed());
    let using = match using {
        Ok(u) => u,
        Err(e) => {
            output.record(false);
            report.guest_output = output.take();
            return Ok(finish(report, fixture, Some(failure("init", e))));
        }
    };
    report.needs = Some(using.needs_names());
    let conv = &fixture.conversation;
    let (action, now_ms) = (fixture.action, fixture.now_ms);
    let answer = match &fixture.candidates {
        Candidates::Representatives(reps) => {
            let reps: Vec<&Representative> = reps.iter().collect();
            let request = using.representatives_request(action, now_ms, conv, &reps);
            repeat(opts.repeat, output, || using.judge(&request))
        }
        Candidates::Queues(queues) => {
            let queues: Vec<&Queue> = queues.iter().collect();
            repeat(opts.repeat, output, || using.judge_queues(action, now_ms, conv, &queues))
        }
    };
    report.guest_output = output.take();
    let stats = plugin.stats();
    report.peak_call_fuel = stats.peak_call_fuel;
    report.peak_instance_memory = stats.peak_instance_memory;
    let (judgement, mut times) = match answer {
        Ok(answer) => answer,
        Err(e) => return Ok(finish(report, fixture, Some(failure("call", e)))),
    };
    times.sort_unstable();
    let median = times.get(times.len() / 2).map_or(0.0, |t| micros(*t));
    report.timing = Some(Timing {
        calls: times.len(),
        median_us: median,
        min_us: times.first().map_or(0.0, |t| micros(*t)),
        max_us: times.last().map_or(0.0, |t| micros(*t)),
        per_candidate_us: (median / n.max(1) as f64 * 1e3).round() / 1e3,
        init_us,
    });
    report.candidates = verdicts(fixture, &judgement);
    Ok(finish(report, fixture, None))
}

/// Judges the batch `n` times (the guest's output is kept from the first call only):
/// the first answer and the time of each call, or the first failure.
fn repeat(
    n: usize,
    output: &GuestOutput,
    mut call: impl FnMut() -> Result<Judgement, PluginError>,
) -> Result<(Judgement, Vec<Duration>), PluginError> {
    let mut times = Vec::with_capacity(n);
    let mut first = None;
    for _ in 0..n {
        let started = Instant::now();
        let answer = call();
        times.push(started.elapsed());
        output.record(false);
        let judgement = answer?;
        first.get_or_insert(judgement);
    }
    Ok((first.unwrap_or_default(), times))
}

fn verdicts(fixture: &Fixture, j: &Judgement) -> Vec<Verdict> {
    let excluded: HashMap<usize, &Option<String>> = j.excluded.iter().map(|(k, r)| (*k, r)).collect();
    fixture
        .ids()
        .into_iter()
        .enumerate()
        .map(|(k, (id, name))| Verdict {
            id: id.to_owned(),
            name: name.to_owned(),
            eligible: !excluded.contains_key(&k),
            reason: excluded.get(&k).and_then(|r| (*r).clone()),
            score: j.scores.get(k).copied().unwrap_or(0.0),
        })
        .collect()
}

/// Checks the expectations against what the plugin did.
fn finish(mut report: Report, fixture: &Fixture, error: Option<Failure>) -> Report {
    let expect = &fixture.expect;
    let mut failures = Vec::new();
    match (&error, &expect.error) {
        (Some(e), Some(want)) if e.what.contains(want.as_str()) => {}
        (Some(e), Some(want)) => failures.push(format!(
            "error:\n      expected: the plugin fails with \"{want}\"\n      actual:   it failed in {}: {}",
            e.stage, e.what
        )),
        (None, Some(want)) => failures.push(format!(
            "error:\n      expected: the plugin fails with \"{want}\"\n      actual:   it answered (see the verdicts)"
        )),
        (Some(_), None) => {}
        (None, None) => failures.extend(check(expect, &report)),
    }
    report.checked = error.is_none() || expect.error.is_some();
    report.passed = failures.is_empty() && (error.is_none() || expect.error.is_some());
    report.failures = failures;
    report.error = error;
    report
}

fn check(expect: &Expect, report: &Report) -> Vec<String> {
    let mut failures = Vec::new();
    let by_id: HashMap<&str, &Verdict> = report.candidates.iter().map(|v| (v.id.as_str(), v)).collect();
    let shown = |v: &Verdict| match (&v.eligible, &v.reason) {
        (true, _) => format!("eligible, score {:+}", v.score),
        (false, Some(r)) => format!("excluded: {r}"),
        (false, None) => "excluded (no reason given)".to_owned(),
    };
    if let (Some(want), Some(got)) = (&expect.needs, &report.needs) {
        let want: BTreeSet<&str> = want.iter().map(String::as_str).collect();
        let got: BTreeSet<&str> = got.iter().copied().collect();
        if want != got {
            failures.push(format!(
                "needs:\n      expected: {}\n      actual:   {}",
                list(want.into_iter()),
                list(got.into_iter())
            ));
        }
    }
    if let Some(want) = &expect.eligible {
        let want: BTreeSet<&str> = want.iter().map(String::as_str).collect();
        let got: BTreeSet<&str> = report.candidates.iter().filter(|v| v.eligible).map(|v| v.id.as_str()).collect();
        if want != got {
            let mut lines = vec![format!(
                "eligible:\n      expected: {}\n      actual:   {}",
                list(want.iter().copied()),
                list(got.iter().copied())
            )];
            for id in want.difference(&got) {
                if let Some(v) = by_id.get(id) {
                    lines.push(format!("missing `{id}`: {}", shown(v)));
                }
            }
            for id in got.difference(&want) {
                if let Some(v) = by_id.get(id) {
                    lines.push(format!("extra `{id}`: {}", shown(v)));
                }
            }
            failures.push(lines.join("\n    "));
        }
    }
    for (id, text) in &expect.excluded {
        let Some(v) = by_id.get(id.as_str()) else { continue };
        let reason = v.reason.as_deref().unwrap_or("");
        if v.eligible || !reason.contains(text.as_str()) {
            failures.push(format!(
                "`{id}` excluded:\n      expected: excluded, the reason containing \"{text}\"\n      actual:   {}",
                shown(v)
            ));
        }
    }
    for (id, score) in &expect.scores {
        let Some(v) = by_id.get(id.as_str()) else { continue };
        if !v.eligible || (v.score - score).abs() > SCORE_TOLERANCE {
            failures.push(format!(
                "`{id}` score:\n      expected: eligible, score {score:+}\n      actual:   {}",
                shown(v)
            ));
        }
    }
    failures
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let items: Vec<&str> = items.collect();
    if items.is_empty() { "(none)".to_owned() } else { items.join(", ") }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mib(bytes: u64) -> String {
    let mib = bytes as f64 / f64::from(1 << 20);
    if mib.fract() == 0.0 { format!("{mib} MiB") } else { format!("{mib:.1} MiB") }
}

fn us(t: f64) -> String {
    if t >= 1000.0 { format!("{:.2} ms", t / 1000.0) } else { format!("{t:.1} µs") }
}

impl Report {
    /// The report for a person: the verdicts, then time, fuel and memory, then the
    /// expectations (a diff per failure).
    pub fn text(&self) -> String {
        let mut out = String::new();
        let mut line = |label: &str, text: String| out.push_str(&format!("{label:<10}{text}\n"));
        let short: String = self.sha256.chars().take(12).collect();
        let digest = if short.is_empty() { String::new() } else { format!(", sha256 {short}…") };
        line("plugin", format!("`{}` ({}, {} bytes{digest})", self.plugin, self.component, thousands(self.bytes)));
        let kind = match (self.target, self.count) {
            (TargetKind::Representative, 1) => "representative",
            (TargetKind::Representative, _) => "representatives",
            (TargetKind::Queue, 1) => "queue",
            (TargetKind::Queue, _) => "queues",
        };
        let action = match self.action {
            RoutingAction::Assign => "assign",
            RoutingAction::Transfer => "transfer",
        };
        line("fixture", format!("{}: {action}, {} {kind}", self.fixture, self.count));
        line("config", self.config.clone());
        match &self.needs {
            Some(needs) if needs.is_empty() => line("needs", "nothing beyond the conversation".into()),
            Some(needs) => line("needs", needs.join(", ")),
            None => {}
        }
        if !self.candidates.is_empty() {
            out.push('\n');
            let width = self.candidates.iter().map(|v| v.id.chars().count()).max().unwrap_or(0);
            for v in &self.candidates {
                let verdict = match (v.eligible, &v.reason) {
                    (true, _) => format!("eligible  {:+}", v.score),
                    (false, Some(reason)) => format!("excluded  {reason}"),
                    (false, None) => "excluded  (no reason given)".to_owned(),
                };
                out.push_str(&format!("  {:<width$}  {verdict}\n", v.id));
            }
            out.push('\n');
        }
        let mut line = |label: &str, text: String| out.push_str(&format!("{label:<10}{text}\n"));
        if let Some(t) = &self.timing {
            line(
                "time",
                format!(
                    "{} a call (median of {}; min {}, max {}), {} a candidate; init {}",
                    us(t.median_us),
                    t.calls,
                    us(t.min_us),
                    us(t.max_us),
                    us(t.per_candidate_us),
                    us(t.init_us)
                ),
            );
        }
        if self.needs.is_some() {
            line(
                "fuel",
                format!(
                    "{} instructions at most in a call (limit {})",
                    thousands(self.peak_call_fuel),
                    thousands(self.call_fuel_limit)
                ),
            );
            line(
                "memory",
                format!(
                    "{} of linear memory at most (limit {})",
                    mib(self.peak_instance_memory),
                    mib(self.memory_limit)
                ),
            );
        }
        for g in &self.guest_output {
            line("guest", format!("{}: {}", g.stream, g.line));
        }
        if let Some(e) = &self.error {
            let stage = match e.stage {
                "load" => "cannot be loaded",
                "init" => "failed in init",
                _ => "failed in evaluate",
            };
            line("error", format!("`{}` {stage}: {}", self.plugin, e.what));
            if !e.detail.is_empty() {
                line("detail", e.detail.clone());
            }
        }
        if self.expectations > 0 {
            if !self.checked {
                line("expect", format!("{} expectations not checked: the plugin failed", self.expectations));
            } else if self.failures.is_empty() {
                line("expect", format!("ok: {} expectations met", self.expectations));
            } else {
                line("expect", format!("FAILED: {} of {} expectations", self.failures.len(), self.expectations));
                for f in &self.failures {
                    out.push_str(&format!("    {f}\n"));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{Fixture, parse, thousands};

    fn errors(text: &str) -> Vec<String> {
        match parse("f.toml", text) {
            Ok(_) => panic!("parsed"),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    const CONV: &str = "[conversation]\nrecord = { entity = \"case\", id = \"C-1\" }\nqueue = \"billing\"\n";

    #[test]
    fn a_fixture_reads_its_candidates_config_and_expectations() {
        let text = format!(
            "now = \"2026-12-07T09:30:00Z\"\nconfig = {{ skill = \"billing\", min_level = 3 }}\n{CONV}\n\
             [[representative]]\nid = \"ann\"\nname = \"Ann\"\nskills = {{ billing = 7 }}\n\n\
             [expect]\neligible = [\"ann\"]\nscores = {{ ann = 7.0 }}\n"
        );
        let f: Fixture = parse("f.toml", &text).unwrap();
        assert_eq!(f.config, r#"{"min_level":3,"skill":"billing"}"#);
        assert_eq!(f.ids(), [("ann", "Ann")]);
        assert_eq!(f.expect.count(), 2);
        assert_eq!(f.now_ms, crate::clock::parse_ms("2026-12-07T09:30:00Z").unwrap());
    }

    #[test]
    fn every_error_is_located() {
        let text = format!(
            "now = \"yesterday\"\n{CONV}\n[[representative]]\nid = \"ann\"\nname = \"Ann\"\n\n\
             [[representative]]\nid = \"ann\"\nname = \"Ann 2\"\n\n[expect]\nexcluded = {{ bob = \"low\" }}\n"
        );
        assert_eq!(
            errors(&text),
            [
                "f.toml:1:7: `now` `yesterday` is not an RFC 3339 time (e.g. \"2026-12-07T09:30:00Z\")",
                "f.toml:11:6: representative `ann` is declared twice",
                "f.toml:15:20: `bob` is not a representative of this file (the candidates are its \
                 [[representative]]s; declare it with id = \"bob\")",
            ]
        );
        let typo = format!("{CONV}\n[[representative]]\nid = \"ann\"\nname = \"Ann\"\npresense = \"away\"\n");
        let got = errors(&typo);
        assert!(got[0].starts_with("f.toml:8:1: unknown field `presense`"), "{got:?}");
    }

    #[test]
    fn candidates_of_both_kinds_need_a_target() {
        let text =
            format!("{CONV}\n[[representative]]\nid = \"a\"\nname = \"A\"\n\n[[queue]]\nid = \"q\"\nname = \"Q\"\n");
        assert!(errors(&text)[0].contains("say which to judge with `target"), "{:?}", errors(&text));
        let queues = format!("target = \"queue\"\n{text}");
        assert_eq!(parse("f.toml", &queues).unwrap().ids(), [("q", "Q")]);
        assert!(errors(CONV)[0].contains("no candidates"));
    }

    #[test]
    fn an_expectation_that_says_nothing_is_an_error() {
        let text = format!("{CONV}\n[[representative]]\nid = \"a\"\nname = \"A\"\n\n[expect]\n");
        assert!(errors(&text)[0].starts_with("f.toml:9:1: `expect` says nothing"), "{:?}", errors(&text));
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(5_020_000), "5,020,000");
    }
}

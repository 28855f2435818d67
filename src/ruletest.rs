//! `switchboard test`: rule tests, as `opa test` is for Rego.
//!
//! A test file (`<rules_dir>/tests/*.toml`, which the daemon's loader does not read)
//! declares a small directory (`[[representative]]`, `[[queue]]`) and any number of
//! `[[test]]`s. Each test names a conversation, an action and a target kind, and what
//! must come out of the Assign or Transfer dialog under the rules: the eligible targets
//! in order, targets that must be excluded and by which rule, scores. The dialog is
//! computed as the daemon computes it ([`Directory::rank_representatives`] and
//! [`Directory::rank_queues`] with the rules and plugins of the folder under test), so
//! a test passes exactly when the daemon would answer so.
//!
//! Every error in a test file is reported as `file:line:column`, like the rules' own.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::domain::{
    self, Attributes, Conversation, ConversationInput, Id, Intent, Name, Presence, Queue, QueueFilter, QueueInput,
    Record, Representative, RepresentativeFilter, RepresentativeInput, RoutingAction, Skills, Status, SupervisorAction,
    Target, TargetKind,
};
use crate::routing::{Directory, Policy, Ranked, RoutingContext};
use crate::rules::RuleError;

/// Scores are compared to within this much (idle time moves while a test runs).
pub const SCORE_TOLERANCE: f64 = 0.001;

/// The test files of a rules folder: `DIR/tests/*.toml`, sorted by name.
pub fn test_dir(rules_dir: &Path) -> std::path::PathBuf {
    rules_dir.join("tests")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// The clock of every test in the file (RFC 3339); default: the real one.
    #[serde(default)]
    now: Option<Spanned<String>>,
    #[serde(default)]
    representative: Vec<FixtureRep>,
    #[serde(default)]
    queue: Vec<FixtureQueue>,
    #[serde(default)]
    test: Vec<Spanned<TestDef>>,
}

/// A `[[representative]]` of a fixture (also `switchboard plugin test`'s, see `plugintest`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FixtureRep {
    pub(crate) id: Spanned<Id>,
    name: Name,
    #[serde(default)]
    presence: Presence,
    #[serde(default)]
    capacity: u32,
    /// Units of the conversations this representative holds.
    #[serde(default)]
    used_capacity: u32,
    /// Minutes since this representative was last given work (ranks by idle time);
    /// absent: never given work, which counts as a day.
    #[serde(default)]
    idle_minutes: Option<u32>,
    #[serde(default)]
    skills: Skills,
    #[serde(default)]
    queues: Vec<Id>,
    #[serde(default)]
    user_groups: Vec<Id>,
    #[serde(default)]
    intents: Vec<Intent>,
    #[serde(default)]
    attributes: Attributes,
}

/// A `[[queue]]` of a fixture.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FixtureQueue {
    pub(crate) id: Spanned<Id>,
    name: Name,
    #[serde(default)]
    priority: u32,
    #[serde(default)]
    intent_based: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestDef {
    name: Spanned<String>,
    action: RoutingAction,
    target: TargetKind,
    conversation: Spanned<FixtureConversation>,
    expect: Spanned<Expect>,
}

/// A fixture's conversation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FixtureConversation {
    #[serde(default = "default_conversation_id")]
    id: Id,
    record: Record,
    queue: Id,
    #[serde(default)]
    priority: u32,
    #[serde(default = "one")]
    capacity_units: u32,
    #[serde(default)]
    skills: Skills,
    #[serde(default)]
    intent: Option<Intent>,
    #[serde(default)]
    attributes: Attributes,
    /// `open` unless said; a transfer of a held conversation says `active` and who holds it.
    #[serde(default = "open")]
    status: Spanned<Status>,
    #[serde(default)]
    representative: Option<Spanned<Id>>,
    /// Minutes since it entered its queue, at the file's `now` (default 0).
    #[serde(default)]
    waiting_minutes: u32,
}

fn default_conversation_id() -> Id {
    Id::parse("c-test").unwrap_or_else(|_| unreachable!("a valid id"))
}

fn one() -> u32 {
    1
}

fn open() -> Spanned<Status> {
    Spanned::new(0..0, Status::Open)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// Every eligible target, best first.
    #[serde(default)]
    eligible: Option<Vec<Spanned<Id>>>,
    /// Target id → a rule that must be among its exclusion reasons.
    #[serde(default)]
    excluded: BTreeMap<String, Spanned<String>>,
    /// Target id → its score (to within [`SCORE_TOLERANCE`]); the target must be eligible.
    #[serde(default)]
    scores: BTreeMap<String, Spanned<f64>>,
}

/// One test, ready to run.
struct Case {
    file: String,
    line: usize,
    name: String,
    action: RoutingAction,
    target: TargetKind,
    conversation: Conversation,
    now_ms: i64,
    directory: Arc<Directory>,
    eligible: Option<Vec<Id>>,
    excluded: Vec<(Id, String)>,
    scores: Vec<(Id, f64)>,
}

/// What one test found.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub file: String,
    pub line: usize,
    pub name: String,
    pub passed: bool,
    /// What did not match, one sentence each.
    pub failures: Vec<String>,
    /// What the rules answered.
    pub eligible: Vec<Scored>,
    pub excluded: Vec<ExcludedBy>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Scored {
    pub id: String,
    pub score: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExcludedBy {
    pub id: String,
    /// Each reason as `rule: detail`.
    pub reasons: Vec<String>,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub ruleset: String,
    pub passed: usize,
    pub failed: usize,
    /// Tests left out by `--filter`.
    pub filtered_out: usize,
    pub tests: Vec<Outcome>,
}

/// Reads every test file of `dir`; every error of every file, located.
fn read_cases(dir: &Path, shown_dir: &str) -> Result<Vec<Case>, Vec<RuleError>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![RuleError {
            file: shown_dir.to_owned(),
            line: 1,
            column: 1,
            message: format!("cannot read the rule tests folder: {e} (rule tests live in `tests/` beside the rules)"),
        }]
    })?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| crate::rules::is_rule_file(n))
        .collect();
    names.sort();
    let (mut cases, mut errors) = (Vec::new(), Vec::new());
    for name in names {
        let shown = format!("{shown_dir}/{name}");
        match std::fs::read_to_string(dir.join(&name)) {
            Ok(text) => match parse_file(&shown, &text) {
                Ok(more) => cases.extend(more),
                Err(more) => errors.extend(more),
            },
            Err(e) => errors.push(RuleError { file: shown, line: 1, column: 1, message: format!("cannot read: {e}") }),
        }
    }
    errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    if errors.is_empty() { Ok(cases) } else { Err(errors) }
}

/// A file's `now` (the real clock without one); a time that does not parse is reported
/// through `error(offset, message)` and the real clock used.
pub(crate) fn now_ms(now: Option<&Spanned<String>>, error: impl FnOnce(usize, String)) -> i64 {
    match now {
        None => crate::clock::now_ms(),
        Some(now) => crate::clock::parse_ms(now.get_ref()).unwrap_or_else(|| {
            let message = format!("`now` `{}` is not an RFC 3339 time (e.g. \"2026-12-07T09:30:00Z\")", now.get_ref());
            error(now.span().start, message);
            crate::clock::now_ms()
        }),
    }
}

/// Parses and checks one test file.
fn parse_file(file: &str, text: &str) -> Result<Vec<Case>, Vec<RuleError>> {
    let at = |offset: usize, message: String| RuleError::at(file, text, offset, message);
    let parsed: TestFile =
        toml::from_str(text).map_err(|e| vec![at(e.span().map_or(0, |s| s.start), e.message().trim().to_owned())])?;
    let mut errors = Vec::new();
    let now_ms = now_ms(parsed.now.as_ref(), |offset, message| errors.push(at(offset, message)));
    let mut reps = Vec::new();
    // Records the first declaration of `id`; a second one is an error at its place.
    let mut first = |seen: &mut HashSet<Id>, id: &Spanned<Id>, kind: &str| {
        let new = seen.insert(id.get_ref().clone());
        if !new {
            errors.push(at(id.span().start, format!("{kind} `{}` is declared twice", id.get_ref())));
        }
        new
    };
    let mut rep_ids = HashSet::new();
    for r in parsed.representative {
        if first(&mut rep_ids, &r.id, "representative") {
            reps.push(representative(r, now_ms));
        }
    }
    let mut queues = Vec::new();
    let mut queue_ids = HashSet::new();
    for q in parsed.queue {
        if !first(&mut queue_ids, &q.id, "queue") {
            continue;
        }
        queues.push(queue(q));
    }
    if parsed.test.is_empty() {
        errors.push(at(0, "no tests: add a `[[test]]` with name, action, target, conversation and expect".into()));
    }
    let directory = Arc::new(Directory::load(reps, queues));
    let mut cases = Vec::new();
    let mut names = HashSet::new();
    for def in parsed.test {
        let start = def.span().start;
        let def = def.into_inner();
        if !names.insert(def.name.get_ref().clone()) {
            errors
                .push(at(def.name.span().start, format!("a second test named `{}` in this file", def.name.get_ref())));
        }
        let known = |id: &str| match def.target {
            TargetKind::Representative => rep_ids.iter().any(|r| r.as_str() == id),
            TargetKind::Queue => queue_ids.iter().any(|q| q.as_str() == id),
        };
        let kind = match def.target {
            TargetKind::Representative => "representative",
            TargetKind::Queue => "queue",
        };
        let unknown =
            |id: &str| format!("`{id}` is not a {kind} of this file (declare it with [[{kind}]] id = \"{id}\")");
        let expect_span = def.expect.span();
        let expect = def.expect.into_inner();
        if expect.eligible.is_none() && expect.excluded.is_empty() && expect.scores.is_empty() {
            errors.push(at(
                expect_span.start,
                "`expect` says nothing: give `eligible` (in order), `excluded` (id = rule) or `scores` (id = score)"
                    .into(),
            ));
        }
        let mut eligible = None;
        if let Some(list) = expect.eligible {
            let mut ids = Vec::new();
            for id in list {
                if !known(id.get_ref().as_str()) {
                    errors.push(at(id.span().start, unknown(id.get_ref().as_str())));
                }
                ids.push(id.into_inner());
            }
            eligible = Some(ids);
        }
        let mut excluded = Vec::new();
        for (id, rule) in expect.excluded {
            match Id::parse(&id) {
                Ok(parsed) if known(&id) => excluded.push((parsed, rule.into_inner())),
                _ => errors.push(at(rule.span().start, unknown(&id))),
            }
        }
        let mut scores = Vec::new();
        for (id, score) in expect.scores {
            match Id::parse(&id) {
                Ok(parsed) if known(&id) => scores.push((parsed, *score.get_ref())),
                _ => errors.push(at(score.span().start, unknown(&id))),
            }
        }
        let conv_span = def.conversation.span();
        match conversation(def.conversation.into_inner(), def.action, &rep_ids, now_ms) {
            Ok(conversation) => cases.push(Case {
                file: file.to_owned(),
                line: RuleError::at(file, text, start, String::new()).line,
                name: def.name.into_inner(),
                action: def.action,
                target: def.target,
                conversation,
                now_ms,
                directory: directory.clone(),
                eligible,
                excluded,
                scores,
            }),
            Err((offset, message)) => errors.push(at(if offset == 0 { conv_span.start } else { offset }, message)),
        }
    }
    if errors.is_empty() { Ok(cases) } else { Err(errors) }
}

pub(crate) fn queue(q: FixtureQueue) -> Queue {
    let input = QueueInput { name: q.name, priority: q.priority, intent_based: q.intent_based };
    Queue { id: q.id.into_inner(), input, version: 1, updated_at: String::new() }
}

pub(crate) fn representative(r: FixtureRep, now_ms: i64) -> Representative {
    let input = RepresentativeInput {
        name: r.name,
        presence: r.presence,
        capacity: r.capacity,
        skills: r.skills,
        queues: r.queues,
        user_groups: r.user_groups,
        intents: r.intents,
        attributes: r.attributes,
    };
    let used = i64::from(r.used_capacity);
    Representative {
        id: r.id.into_inner(),
        free_capacity: i64::from(input.capacity) - used,
        input: Arc::new(input),
        used_capacity: used,
        version: 1,
        updated_at: String::new(),
        last_assigned_ms: r.idle_minutes.map(|m| now_ms - i64::from(m) * 60_000),
        revision: 1,
    }
}

/// The test's conversation; an error (at a byte offset, 0 for the table itself) when the
/// action is not one its status allows, as the daemon would answer `409`.
pub(crate) fn conversation(
    c: FixtureConversation,
    action: RoutingAction,
    reps: &HashSet<Id>,
    now_ms: i64,
) -> Result<Conversation, (usize, String)> {
    let input = ConversationInput {
        id: Some(c.id.clone()),
        record: c.record,
        queue: c.queue,
        priority: c.priority,
        capacity_units: c.capacity_units,
        skills: c.skills,
        intent: c.intent,
        attributes: c.attributes,
    };
    let queued_at = crate::clock::format_ms(now_ms - i64::from(c.waiting_minutes) * 60_000);
    let mut conv = Conversation::create(c.id, input, queued_at);
    conv.status = *c.status.get_ref();
    if let Some(holder) = &c.representative {
        if !reps.contains(holder.get_ref()) {
            return Err((
                holder.span().start,
                format!(
                    "`{}` is not a representative of this file (declare it with [[representative]])",
                    holder.get_ref()
                ),
            ));
        }
        conv.representative = Some(holder.get_ref().clone());
    }
    // Any target of the right kind: the status table does not depend on which.
    let probe = Target::Queue(conv.queue.clone());
    if let Err(refusal) = domain::supervise(&conv, &SupervisorAction::Route(action, probe)) {
        return Err((
            c.status.span().start,
            format!("{refusal}; give the test's conversation a `status` (and `representative`) that allows the action"),
        ));
    }
    Ok(conv)
}

/// Runs the tests of `rules_dir/tests` (those whose name or file contains `filter`)
/// under `policy`.
pub fn run(policy: &Arc<Box<dyn Policy>>, rules_dir: &Path, filter: Option<&str>) -> Result<Report, Vec<RuleError>> {
    let dir = test_dir(rules_dir);
    // As rule files are named: the rules folder's own name, then the path inside it.
    let shown = match rules_dir.file_name() {
        Some(name) => format!("{}/tests", name.to_string_lossy()),
        None => dir.display().to_string(),
    };
    let cases = read_cases(&dir, &shown)?;
    let total = cases.len();
    if total == 0 {
        return Err(vec![RuleError {
            file: shown,
            line: 1,
            column: 1,
            message: "no rule tests: add `*.toml` files with `[[test]]`s (docs/rules.md, \"Testing rules\")".into(),
        }]);
    }
    let mut tests = Vec::new();
    for case in cases {
        if filter.is_some_and(|f| !case.name.contains(f) && !case.file.contains(f)) {
            continue;
        }
        tests.push(run_case(policy, &case));
    }
    let passed = tests.iter().filter(|t| t.passed).count();
    Ok(Report {
        ruleset: policy.version().to_owned(),
        passed,
        failed: tests.len() - passed,
        filtered_out: total - tests.len(),
        tests,
    })
}

fn run_case(policy: &Arc<Box<dyn Policy>>, case: &Case) -> Outcome {
    let ctx =
        RoutingContext { action: case.action, conversation: &case.conversation, explain: true, now_ms: case.now_ms };
    let held = case.conversation.status != Status::Open;
    let holder = case.conversation.representative.as_ref().filter(|_| held && case.action == RoutingAction::Transfer);
    let ranked: Ranked = match case.target {
        TargetKind::Representative => {
            case.directory.rank_representatives(policy, ctx, &RepresentativeFilter::default(), holder, None)
        }
        TargetKind::Queue => case.directory.rank_queues(policy, ctx, &QueueFilter::default(), None),
    };
    let eligible: Vec<Scored> =
        ranked.candidates.iter().map(|c| Scored { id: c.id.as_str().to_owned(), score: c.score }).collect();
    let excluded: Vec<ExcludedBy> = ranked
        .excluded
        .iter()
        .map(|e| ExcludedBy {
            id: e.id.as_str().to_owned(),
            reasons: e.reasons.iter().map(|r| format!("{}: {}", r.rule, r.detail)).collect(),
        })
        .collect();
    let mut failures = Vec::new();
    let actual: Vec<&str> = eligible.iter().map(|c| c.id.as_str()).collect();
    let why_not = |id: &str| -> String {
        match ranked.excluded.iter().find(|e| e.id.as_str() == id) {
            Some(e) => {
                let rules: Vec<String> = e.reasons.iter().map(|r| format!("`{}` ({})", r.rule, r.detail)).collect();
                format!("excluded by {}", rules.join(", "))
            }
            None => "not a candidate (the holder of a transfer)".to_owned(),
        }
    };
    if let Some(expected) = &case.eligible {
        let expected: Vec<&str> = expected.iter().map(Id::as_str).collect();
        if expected != actual {
            let mut lines = vec![format!(
                "eligible, best first:\n      expected: {}\n      actual:   {}",
                list(&expected),
                list(&actual)
            )];
            for id in expected.iter().filter(|id| !actual.contains(id)) {
                lines.push(format!("missing `{id}`: {}", why_not(id)));
            }
            for c in eligible.iter().filter(|c| !expected.contains(&c.id.as_str())) {
                lines.push(format!("extra `{}`: eligible with score {}", c.id, c.score));
            }
            failures.push(lines.join("\n    "));
        }
    }
    for (id, rule) in &case.excluded {
        match ranked.excluded.iter().find(|e| &e.id == id) {
            Some(e) if e.reasons.iter().any(|r| &r.rule == rule) => {}
            Some(e) => {
                let rules: Vec<&str> = e.reasons.iter().map(|r| r.rule.as_str()).collect();
                failures.push(format!("`{id}` is excluded, but by {} and not by `{rule}`", list(&rules)));
            }
            None => match eligible.iter().find(|c| c.id == id.as_str()) {
                Some(c) => {
                    failures.push(format!("`{id}` should be excluded by `{rule}`, but is eligible (score {})", c.score))
                }
                None => failures.push(format!("`{id}` should be excluded by `{rule}`, but is not a candidate at all")),
            },
        }
    }
    for (id, score) in &case.scores {
        match eligible.iter().find(|c| c.id == id.as_str()) {
            Some(c) if (c.score - score).abs() <= SCORE_TOLERANCE => {}
            Some(c) => failures.push(format!("`{id}` scores {}, expected {score}", c.score)),
            None => failures.push(format!("`{id}` should score {score}, but is {}", why_not(id.as_str()))),
        }
    }
    Outcome {
        file: case.file.clone(),
        line: case.line,
        name: case.name.clone(),
        passed: failures.is_empty(),
        failures,
        eligible,
        excluded,
    }
}

fn list(ids: &[&str]) -> String {
    if ids.is_empty() { "(none)".to_owned() } else { ids.join(", ") }
}

impl Report {
    /// One line per test, each failure's diff under it, and a summary line.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for t in &self.tests {
            let mark = if t.passed { "ok  " } else { "FAIL" };
            out.push_str(&format!("{mark} {}:{}: {}\n", t.file, t.line, t.name));
            for f in &t.failures {
                out.push_str(&format!("    {f}\n"));
            }
        }
        out.push_str(&format!(
            "{}: {} passed, {} failed{} (rules version {})\n",
            if self.failed == 0 { "ok" } else { "FAILED" },
            self.passed,
            self.failed,
            if self.filtered_out > 0 { format!(", {} filtered out", self.filtered_out) } else { String::new() },
            self.ruleset
        ));
        out
    }
}

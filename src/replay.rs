//! `switchboard replay`: past decisions evaluated again under a draft of the rules.
//!
//! Each applied assign and transfer left a decision record (what the rules saw for the
//! chosen target: the conversation, the target's routing facts, the clock, the rule-set
//! version and the score; `store::DecisionRecord`), and the rule files of every version
//! in force were kept. Replay reads them (it writes nothing) and evaluates each record
//! twice, under the rules it was made with and under the draft, with the same plugins,
//! at the record's own clock: how many past assignments the draft would refuse, and by
//! which rule; how many it would still allow with a lower score.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;

use crate::plugins::PluginSet;
use crate::routing::{Policy, RoutingContext, Unrestricted, Verdict};
use crate::rules::Source;
use crate::store::{DecidedTarget, DecisionRecord, Store, StoreError};

/// Records read per page.
const PAGE: usize = 5_000;
/// Examples kept per rule (and for lower scores).
const EXAMPLES: usize = 3;

/// One decision, as a report cites it.
#[derive(Clone, Debug, Serialize)]
pub struct Example {
    pub at: String,
    pub conversation: String,
    pub action: String,
    pub target: String,
    /// Why the draft refuses it, or how its score moved.
    pub detail: String,
}

/// The draft refuses decisions by this rule.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ByRule {
    pub rule: String,
    pub count: usize,
    pub examples: Vec<Example>,
}

/// What replaying a span of decisions found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// The draft's rule-set version.
    pub draft: String,
    /// `None`: from the oldest record kept.
    pub since: Option<String>,
    pub until: String,
    /// Decision records in the span.
    pub records: usize,
    /// Records per rule-set version they were made under.
    pub versions: BTreeMap<String, usize>,
    /// Records whose rule set was not kept (made before this daemon kept rule files):
    /// evaluated under the draft only.
    pub without_original: usize,
    /// The original rules, evaluated again, no longer allow it (a plugin changed since,
    /// or a fact they read is not in the record).
    pub original_now_refuses: usize,
    /// The draft would refuse it.
    pub refused: usize,
    /// By the rule named first in the draft's reasons; most refusals first.
    pub refused_by_rule: Vec<ByRule>,
    /// Allowed by both, with a lower score under the draft (the target would rank lower).
    pub lower: usize,
    pub lower_examples: Vec<Example>,
    /// Allowed by both with the same or a higher score.
    pub unchanged_or_higher: usize,
    /// How long reading and evaluating took, in seconds.
    pub seconds: f64,
}

/// The rules of each version, compiled once; `None`: its files were not kept.
type Compiled = HashMap<String, Option<Arc<Box<dyn Policy>>>>;

/// Rule sets compiled once per version.
struct Policies<'a> {
    store: &'a dyn Store,
    plugins: &'a PluginSet,
    compiled: Compiled,
}

impl Policies<'_> {
    /// Compiles `version`'s kept rule files, unless done already.
    async fn compile(&mut self, version: &str) -> Result<(), StoreError> {
        if self.compiled.contains_key(version) {
            return Ok(());
        }
        let policy: Option<Arc<Box<dyn Policy>>> = if version == Unrestricted::VERSION {
            Some(Arc::new(Box::new(Unrestricted)))
        } else {
            match self.store.ruleset(version).await? {
                None => None,
                Some(files) => {
                    let sources: Vec<Source> =
                        files.into_iter().map(|f| Source { name: f.name, text: f.text }).collect();
                    match crate::rules::compile_with(&sources, self.plugins) {
                        Ok(rules) => Some(Arc::new(Box::new(rules))),
                        Err(errors) => {
                            // A kept version that no longer compiles (a plugin it names is gone).
                            tracing::warn!(version, errors = errors.len(), "a recorded rule set does not compile now");
                            None
                        }
                    }
                }
            }
        };
        self.compiled.insert(version.to_owned(), policy);
        Ok(())
    }
}

/// The verdict of `policy` on the record's target, at the record's clock.
pub fn evaluate(policy: &dyn Policy, record: &DecisionRecord) -> Verdict {
    let ctx = RoutingContext {
        action: record.action,
        conversation: &record.conversation,
        explain: true,
        now_ms: record.at_ms,
    };
    let verdict = match &record.target {
        DecidedTarget::Representative { record: rep, last_assigned_ms } => {
            let mut rep = rep.clone();
            rep.last_assigned_ms = *last_assigned_ms;
            policy.representatives(ctx, &[&rep]).pop()
        }
        DecidedTarget::Queue { record: queue } => policy.queues(ctx, &[queue]).pop(),
    };
    verdict.unwrap_or(Verdict::Excluded { reasons: Vec::new() })
}

fn target_id(record: &DecisionRecord) -> String {
    match &record.target {
        DecidedTarget::Representative { record, .. } => record.id.as_str().to_owned(),
        DecidedTarget::Queue { record } => format!("queue {}", record.id),
    }
}

fn example(record: &DecisionRecord, detail: String) -> Example {
    Example {
        at: crate::clock::format_ms(record.at_ms),
        conversation: record.conversation.id.as_str().to_owned(),
        action: format!("{:?}", record.action).to_lowercase(),
        target: target_id(record),
        detail,
    }
}

/// Replays the decisions made in `[since_ms, until_ms)` under `draft`.
pub async fn run(
    store: &dyn Store,
    draft: &dyn Policy,
    plugins: &PluginSet,
    since_ms: i64,
    until_ms: i64,
) -> Result<Report, StoreError> {
    let started = std::time::Instant::now();
    let mut policies = Policies { store, plugins, compiled: HashMap::new() };
    let mut report = Report {
        draft: draft.version().to_owned(),
        since: (since_ms > 0).then(|| crate::clock::format_ms(since_ms)),
        until: crate::clock::format_ms(until_ms),
        ..Report::default()
    };
    let mut by_rule: HashMap<String, ByRule> = HashMap::new();
    // Reading the next page (a blocking read or a network round trip) goes on while this
    // page is evaluated.
    let mut page = store.decisions(since_ms, until_ms, 0, PAGE).await?;
    while let Some(&(last, _)) = page.last() {
        // Compiles the versions this page needs (once each), before evaluating it.
        for (_, record) in &page {
            policies.compile(&record.ruleset).await?;
        }
        let next = store.decisions(since_ms, until_ms, last, PAGE);
        let tally = async { tally(&mut report, &mut by_rule, &policies.compiled, draft, &page) };
        let (next, ()) = futures_util::future::join(next, tally).await;
        page = next?;
    }
    let mut rules: Vec<ByRule> = by_rule.into_values().collect();
    rules.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.rule.cmp(&b.rule)));
    report.refused_by_rule = rules;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Evaluates one page of records under the rules each was made with and the draft.
fn tally(
    report: &mut Report,
    by_rule: &mut HashMap<String, ByRule>,
    originals: &Compiled,
    draft: &dyn Policy,
    page: &[(u64, DecisionRecord)],
) {
    for (_, record) in page {
        report.records += 1;
        *report.versions.entry(record.ruleset.clone()).or_default() += 1;
        let before = match originals.get(&record.ruleset).and_then(Option::as_ref) {
            Some(policy) => Some(evaluate(policy.as_ref().as_ref(), record)),
            None => {
                report.without_original += 1;
                None
            }
        };
        if matches!(before, Some(Verdict::Excluded { .. })) {
            report.original_now_refuses += 1;
        }
        match evaluate(draft, record) {
            Verdict::Excluded { reasons } => {
                report.refused += 1;
                let rule = reasons.first().map_or_else(|| "(no reason given)".to_owned(), |r| r.rule.clone());
                let entry = by_rule.entry(rule.clone()).or_insert_with(|| ByRule { rule, ..ByRule::default() });
                entry.count += 1;
                if entry.examples.len() < EXAMPLES {
                    let detail = reasons.iter().map(|r| format!("{}: {}", r.rule, r.detail)).collect::<Vec<_>>();
                    entry.examples.push(example(record, detail.join("; ")));
                }
            }
            Verdict::Eligible { score, .. } => {
                let then = match before {
                    Some(Verdict::Eligible { score, .. }) => score,
                    _ => record.score,
                };
                if score < then - 1e-9 {
                    report.lower += 1;
                    if report.lower_examples.len() < EXAMPLES {
                        let detail = format!("score {then} then, {score} under the draft");
                        report.lower_examples.push(example(record, detail));
                    }
                } else {
                    report.unchanged_or_higher += 1;
                }
            }
        }
    }
}

impl Report {
    /// The report as text, for a person.
    pub fn text(&self) -> String {
        let pct = |n: usize| if self.records == 0 { 0.0 } else { 100.0 * n as f64 / self.records as f64 };
        let mut out = format!(
            "replayed {} decisions made from {} to {} under the draft rules {}\n",
            self.records,
            self.since.as_deref().unwrap_or("the oldest kept"),
            self.until,
            self.draft
        );
        let versions: Vec<String> = self.versions.iter().map(|(v, n)| format!("{v} ({n})")).collect();
        if !versions.is_empty() {
            out.push_str(&format!("  made under: {}\n", versions.join(", ")));
        }
        out.push_str(&format!("  the draft would refuse {} ({:.1}%)\n", self.refused, pct(self.refused)));
        for r in &self.refused_by_rule {
            out.push_str(&format!("    {}: {}\n", r.rule, r.count));
            for e in &r.examples {
                out.push_str(&format!(
                    "      e.g. {} {} -> {} at {}: {}\n",
                    e.action, e.conversation, e.target, e.at, e.detail
                ));
            }
        }
        out.push_str(&format!(
            "  allowed by both, with a lower score under the draft: {} ({:.1}%)\n",
            self.lower,
            pct(self.lower)
        ));
        for e in &self.lower_examples {
            out.push_str(&format!(
                "      e.g. {} {} -> {} at {}: {}\n",
                e.action, e.conversation, e.target, e.at, e.detail
            ));
        }
        out.push_str(&format!("  allowed by both, same or higher score: {}\n", self.unchanged_or_higher));
        if self.without_original > 0 {
            out.push_str(&format!(
                "  {} made under rule sets whose files were not kept: compared with their recorded scores only\n",
                self.without_original
            ));
        }
        out.push_str(&format!(
            "  {:.2} s, {:.0} decisions a second (reading and evaluating each twice)\n",
            self.seconds,
            self.records as f64 / self.seconds.max(1e-9)
        ));
        if self.original_now_refuses > 0 {
            out.push_str(&format!(
                "  {} would be refused today by the very rules that allowed them (a plugin changed since)\n",
                self.original_now_refuses
            ));
        }
        out
    }
}

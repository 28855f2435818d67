//! Evaluation of a compiled [`RuleSet`]: per request, the rules whose `when` matches
//! are picked once; each candidate is compiled once into a row of integers and
//! bitsets; the eligibility pass then compares integers only.

use std::sync::Arc;

use super::compile::{Columns, Symbols, presence_bit};
use super::schema::{IntentLevel, IntentPattern, Range};
use crate::domain::{AttributeValue, Conversation, Queue, Reason, Representative, TargetKind};
use crate::plugins::{FailurePolicy, PluginUse, wit};
use crate::routing::{Policy, RoutingContext, Verdict};

/// A compiled attribute value: strings as symbols (`u32::MAX`: a string no rule names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Val {
    Str(u32),
    Num(f64),
    Bool(bool),
}

const UNKNOWN: u32 = u32::MAX;

/// Idle time counts up to a day; a representative never given work counts as a day idle.
pub const MAX_IDLE_MINUTES: f64 = 1440.0;

/// A compiled attribute condition.
#[derive(Debug, Clone)]
pub struct Cond {
    pub key: String,
    pub equals: Option<Val>,
    pub one_of: Option<Vec<Val>>,
    pub exists: Option<bool>,
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
}

impl Cond {
    pub fn holds(&self, v: Option<Val>) -> bool {
        if let Some(want) = self.exists
            && want != v.is_some()
        {
            return false;
        }
        let num = match v {
            Some(Val::Num(n)) => Some(n),
            _ => None,
        };
        let cmp = |bound: Option<f64>, ok: fn(f64, f64) -> bool| bound.is_none_or(|b| num.is_some_and(|n| ok(n, b)));
        self.equals.is_none_or(|e| v == Some(e))
            && self.one_of.as_ref().is_none_or(|l| v.is_some_and(|v| l.contains(&v)))
            && cmp(self.gt, |n, b| n > b)
            && cmp(self.gte, |n, b| n >= b)
            && cmp(self.lt, |n, b| n < b)
            && cmp(self.lte, |n, b| n <= b)
    }
}

/// Where a rule applies, matched once per request against the conversation.
#[derive(Debug, Clone)]
pub struct WhenMatch {
    pub actions: u8,
    pub entities: Option<Vec<String>>,
    pub queues: Option<Vec<String>>,
    pub priority: Option<Range>,
    pub intent: Option<IntentPattern>,
    pub intent_based: Option<bool>,
    pub attributes: Vec<Cond>,
}

fn in_range(r: &Range, v: u32) -> bool {
    r.min.is_none_or(|lo| v >= lo) && r.max.is_none_or(|hi| v <= hi)
}

/// One requirement, as the eligibility pass checks it.
#[derive(Debug, Clone)]
pub enum Req {
    /// The mask of allowed presences, and their names for explanations.
    Presence(u8, String),
    ConversationSkills,
    Skill {
        col: usize,
        min: u8,
    },
    CapacityForConversation,
    MinFree(i64),
    /// The mask, and the groups listed for explanations.
    GroupsAny(Vec<u64>, String),
    GroupsAll(Vec<u64>, Vec<String>),
    ConversationQueue,
    QueuesAny(Vec<u64>, String),
    HandlesIntent(IntentLevel),
    Attribute {
        col: usize,
        cond: Cond,
    },
    IntentBased(bool),
    Priority(Range),
    QueueIds(Vec<u32>, Vec<String>),
    QueueNames(Vec<u32>, Vec<String>),
}

/// One ranking key and its weight.
#[derive(Debug, Clone)]
pub enum Rank {
    Skill(usize, f64),
    SkillMatch(f64),
    FreeCapacity(f64),
    IdleTime(f64),
    QueuePriority(f64),
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub description: Option<String>,
    pub target: TargetKind,
    pub when: WhenMatch,
    pub reqs: Vec<Req>,
    pub rank: Vec<Rank>,
    /// The matcher consulted for the targets the requirements let through.
    pub plugin: Option<Arc<PluginUse>>,
}

/// The compiled rules in force.
#[derive(Debug, Clone)]
pub struct RuleSet {
    version: String,
    /// Each file's name and a digest of its content.
    files: Vec<(String, String)>,
    rules: Vec<Rule>,
    symbols: Symbols,
    columns: Columns,
}

/// Representatives compiled for one request: one row each, integers and bitsets.
#[derive(Debug, Default)]
pub struct RepTable {
    len: usize,
    group_words: usize,
    queue_words: usize,
    presence: Vec<u8>,
    free: Vec<i64>,
    conv_queue: Vec<bool>,
    intent_depth: Vec<u8>,
    conv_skills_ok: Vec<bool>,
    skill_match: Vec<f64>,
    idle_minutes: Vec<f64>,
    groups: Vec<u64>,
    queues: Vec<u64>,
    skills: Vec<i16>,
    attrs: Vec<Option<Val>>,
}

impl RepTable {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Queues compiled for one request.
#[derive(Debug, Default)]
pub struct QueueTable {
    intent_based: Vec<bool>,
    priority: Vec<u32>,
    id: Vec<u32>,
    name: Vec<u32>,
}

fn intent_depth(conv: &Conversation, rep: &Representative) -> u8 {
    let Some(want) = &conv.intent else { return 3 };
    rep.input
        .intents
        .iter()
        .map(|e| {
            if e.family != want.family {
                0
            } else if want.group.is_none() || e.group.is_none() {
                3
            } else if e.group != want.group {
                1
            } else if want.intent.is_none() || e.intent.is_none() || e.intent == want.intent {
                3
            } else {
                2
            }
        })
        .max()
        .unwrap_or(0)
}

fn level_depth(level: IntentLevel) -> u8 {
    match level {
        IntentLevel::Family => 1,
        IntentLevel::Group => 2,
        IntentLevel::Intent => 3,
    }
}

fn has_all(row: &[u64], mask: &[u64]) -> bool {
    mask.iter().enumerate().all(|(i, m)| row.get(i).copied().unwrap_or(0) & m == *m)
}

fn has_any(row: &[u64], mask: &[u64]) -> bool {
    mask.iter().enumerate().any(|(i, m)| row.get(i).copied().unwrap_or(0) & m != 0)
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

impl RuleSet {
    pub(super) fn new(
        version: String,
        files: Vec<(String, String)>,
        rules: Vec<Rule>,
        symbols: Symbols,
        columns: Columns,
    ) -> Self {
        Self { version, files, rules, symbols, columns }
    }

    /// Each file's name and a digest of its content.
    pub fn file_digests(&self) -> &[(String, String)] {
        &self.files
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    fn val(&self, v: &AttributeValue) -> Val {
        match v {
            AttributeValue::Bool(b) => Val::Bool(*b),
            AttributeValue::Number(n) => Val::Num(n.as_f64().unwrap_or(f64::NAN)),
            AttributeValue::String(s) => Val::Str(self.symbols.get(s).unwrap_or(UNKNOWN)),
        }
    }

    fn sym(&self, s: &str) -> u32 {
        self.symbols.get(s).unwrap_or(UNKNOWN)
    }

    fn applies(&self, rule: &Rule, ctx: &RoutingContext<'_>, kind: TargetKind) -> bool {
        let c = ctx.conversation;
        let w = &rule.when;
        rule.target == kind
            && w.actions & (1 << (ctx.action as u8)) != 0
            && w.entities.as_ref().is_none_or(|l| l.iter().any(|e| e == c.record.entity.as_str()))
            && w.queues.as_ref().is_none_or(|l| l.iter().any(|q| q == c.queue.as_str()))
            && w.priority.as_ref().is_none_or(|r| in_range(r, c.priority))
            && w.intent_based.is_none_or(|b| b == c.intent_based)
            && w.intent.as_ref().is_none_or(|p| {
                c.intent.as_ref().is_some_and(|i| {
                    p.family.as_ref().is_none_or(|f| f == i.family.as_str())
                        && p.group.as_ref().is_none_or(|g| i.group.as_ref().is_some_and(|x| x.as_str() == g))
                        && p.intent.as_ref().is_none_or(|n| i.intent.as_ref().is_some_and(|x| x.as_str() == n))
                })
            })
            && w.attributes.iter().all(|cond| {
                let v = c.attributes.iter().find(|(k, _)| k.as_str() == cond.key).map(|(_, v)| self.val(v));
                cond.holds(v)
            })
    }

    /// The rules that apply to this request and target kind: chosen once per request.
    pub fn applicable(&self, ctx: &RoutingContext<'_>, kind: TargetKind) -> Vec<&Rule> {
        self.rules.iter().filter(|r| self.applies(r, ctx, kind)).collect()
    }

    /// Compiles representatives into rows for one conversation.
    pub fn representative_table(&self, conv: &Conversation, reps: &[&Representative]) -> RepTable {
        let cols = &self.columns;
        let gw = cols.groups.len().div_ceil(64);
        let qw = cols.queues.len().div_ceil(64);
        let n = reps.len();
        let mut t = RepTable {
            len: n,
            group_words: gw,
            queue_words: qw,
            presence: Vec::with_capacity(n),
            free: Vec::with_capacity(n),
            conv_queue: Vec::with_capacity(n),
            intent_depth: Vec::with_capacity(n),
            conv_skills_ok: Vec::with_capacity(n),
            skill_match: Vec::with_capacity(n),
            idle_minutes: Vec::with_capacity(n),
            groups: Vec::with_capacity(n * gw),
            queues: Vec::with_capacity(n * qw),
            skills: Vec::with_capacity(n * cols.skills.len()),
            attrs: Vec::with_capacity(n * cols.attributes.len()),
        };
        let now = now_ms();
        for rep in reps {
            let r = &rep.input;
            t.presence.push(presence_bit(r.presence));
            t.free.push(rep.free_capacity);
            t.conv_queue.push(r.queues.contains(&conv.queue));
            t.intent_depth.push(intent_depth(conv, rep));
            let mut ok = true;
            let mut distance = 0i64;
            for (skill, need) in &conv.skills {
                let have = r.skills.get(skill).map_or(0, |p| i64::from(p.get()));
                let need = i64::from(need.get());
                ok &= r.skills.contains_key(skill) && have >= need;
                distance += (have - need).abs();
            }
            t.conv_skills_ok.push(ok);
            t.skill_match.push(-(distance as f64));
            let idle = rep.last_assigned_ms.map_or(MAX_IDLE_MINUTES, |at| (now - at).max(0) as f64 / 60_000.0);
            t.idle_minutes.push(idle.min(MAX_IDLE_MINUTES));
            let row = |out: &mut Vec<u64>, names: &[String], have: &dyn Fn(&str) -> bool, words: usize| {
                let start = out.len();
                out.resize(start + words, 0);
                for (i, name) in names.iter().enumerate() {
                    if have(name) {
                        out[start + i / 64] |= 1 << (i % 64);
                    }
                }
            };
            row(&mut t.groups, &cols.groups, &|g| r.user_groups.iter().any(|x| x.as_str() == g), gw);
            row(&mut t.queues, &cols.queues, &|q| r.queues.iter().any(|x| x.as_str() == q), qw);
            for name in &cols.skills {
                let level = r.skills.iter().find(|(k, _)| k.as_str() == name).map_or(-1, |(_, p)| i16::from(p.get()));
                t.skills.push(level);
            }
            for key in &cols.attributes {
                t.attrs.push(r.attributes.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| self.val(v)));
            }
        }
        t
    }

    /// Compiles queues into rows.
    pub fn queue_table(&self, queues: &[&Queue]) -> QueueTable {
        let mut t = QueueTable::default();
        for q in queues {
            t.intent_based.push(q.input.intent_based);
            t.priority.push(q.input.priority);
            t.id.push(self.sym(q.id.as_str()));
            t.name.push(self.sym(q.input.name.as_str()));
        }
        t
    }

    fn rep_passes(&self, req: &Req, t: &RepTable, i: usize, units: i64) -> bool {
        match req {
            Req::Presence(mask, _) => t.presence[i] & mask != 0,
            Req::ConversationSkills => t.conv_skills_ok[i],
            Req::Skill { col, min } => t.skills[i * self.columns.skills.len() + col] >= i16::from(*min),
            Req::CapacityForConversation => t.free[i] >= units,
            Req::MinFree(n) => t.free[i] >= *n,
            Req::GroupsAny(mask, _) => has_any(&t.groups[i * t.group_words..(i + 1) * t.group_words], mask),
            Req::GroupsAll(mask, _) => has_all(&t.groups[i * t.group_words..(i + 1) * t.group_words], mask),
            Req::ConversationQueue => t.conv_queue[i],
            Req::QueuesAny(mask, _) => has_any(&t.queues[i * t.queue_words..(i + 1) * t.queue_words], mask),
            Req::HandlesIntent(level) => t.intent_depth[i] >= level_depth(*level),
            Req::Attribute { col, cond } => cond.holds(t.attrs[i * self.columns.attributes.len() + col]),
            // Queue requirements never sit in a representative rule (validation refuses them).
            Req::IntentBased(_) | Req::Priority(_) | Req::QueueIds(..) | Req::QueueNames(..) => true,
        }
    }

    fn queue_passes(req: &Req, t: &QueueTable, i: usize) -> bool {
        match req {
            Req::IntentBased(b) => t.intent_based[i] == *b,
            Req::Priority(r) => in_range(r, t.priority[i]),
            Req::QueueIds(ids, _) => ids.contains(&t.id[i]),
            Req::QueueNames(names, _) => names.contains(&t.name[i]),
            _ => true,
        }
    }

    fn rep_score(&self, rules: &[&Rule], t: &RepTable, i: usize) -> f64 {
        let mut score = 0.0;
        for rule in rules {
            for k in &rule.rank {
                score += match *k {
                    Rank::Skill(col, w) => w * f64::from(t.skills[i * self.columns.skills.len() + col].max(0)),
                    Rank::SkillMatch(w) => w * t.skill_match[i],
                    Rank::FreeCapacity(w) => w * t.free[i] as f64,
                    Rank::IdleTime(w) => w * t.idle_minutes[i],
                    Rank::QueuePriority(_) => 0.0,
                };
            }
        }
        score
    }

    /// The eligibility pass: every row against every applicable requirement, into `out`
    /// (cleared first). It runs requirement by requirement over whole columns, so each
    /// inner loop is a branch-free comparison of integers that the compiler vectorises.
    pub fn eligible_representatives(&self, rules: &[&Rule], t: &RepTable, units: i64, out: &mut Vec<bool>) {
        out.clear();
        out.resize(t.len, true);
        for req in rules.iter().flat_map(|r| &r.reqs) {
            self.narrow(req, t, units, out);
        }
    }

    /// `out[i] &= row i meets req`.
    fn narrow(&self, req: &Req, t: &RepTable, units: i64, out: &mut [bool]) {
        fn each<T>(out: &mut [bool], col: &[T], test: impl Fn(&T) -> bool) {
            for (o, v) in out.iter_mut().zip(col) {
                *o &= test(v);
            }
        }
        fn rows(out: &mut [bool], col: &[u64], width: usize, test: impl Fn(&[u64]) -> bool) {
            if width == 0 {
                out.iter_mut().for_each(|o| *o &= test(&[]));
                return;
            }
            for (o, row) in out.iter_mut().zip(col.chunks_exact(width)) {
                *o &= test(row);
            }
        }
        let skills = self.columns.skills.len();
        let attrs = self.columns.attributes.len();
        match req {
            Req::Presence(mask, _) => each(out, &t.presence, |p| p & mask != 0),
            Req::ConversationSkills => each(out, &t.conv_skills_ok, |ok| *ok),
            Req::Skill { col, min } => {
                for (o, row) in out.iter_mut().zip(t.skills.chunks_exact(skills)) {
                    *o &= row[*col] >= i16::from(*min);
                }
            }
            Req::CapacityForConversation => each(out, &t.free, |f| *f >= units),
            Req::MinFree(n) => each(out, &t.free, |f| f >= n),
            Req::GroupsAny(mask, _) => rows(out, &t.groups, t.group_words, |r| has_any(r, mask)),
            Req::GroupsAll(mask, _) => rows(out, &t.groups, t.group_words, |r| has_all(r, mask)),
            Req::ConversationQueue => each(out, &t.conv_queue, |ok| *ok),
            Req::QueuesAny(mask, _) => rows(out, &t.queues, t.queue_words, |r| has_any(r, mask)),
            Req::HandlesIntent(level) => {
                let depth = level_depth(*level);
                each(out, &t.intent_depth, |d| *d >= depth)
            }
            Req::Attribute { col, cond } => {
                for (o, row) in out.iter_mut().zip(t.attrs.chunks_exact(attrs)) {
                    *o &= cond.holds(row[*col]);
                }
            }
            Req::IntentBased(_) | Req::Priority(_) | Req::QueueIds(..) | Req::QueueNames(..) => {}
        }
    }

    fn explain_rep(&self, rule: &Rule, req: &Req, conv: &Conversation, rep: &Representative) -> String {
        let r = &rep.input;
        match req {
            Req::Presence(_, allowed) => format!("presence `{}` is not one of {allowed}", r.presence.as_str()),
            Req::ConversationSkills => {
                use std::fmt::Write;
                let mut text = String::with_capacity(64);
                text.push_str("does not meet the conversation's skills: ");
                let mut first = true;
                for (s, need) in &conv.skills {
                    let have = r.skills.get(s);
                    if have.is_some_and(|h| h >= need) {
                        continue;
                    }
                    if !first {
                        text.push_str(", ");
                    }
                    first = false;
                    let _ = match have {
                        Some(have) => write!(text, "`{s}` {} < {}", have.get(), need.get()),
                        None => write!(text, "`{s}` missing (needs {})", need.get()),
                    };
                }
                text
            }
            Req::Skill { col, min } => {
                let name = &self.columns.skills[*col];
                match r.skills.iter().find(|(k, _)| k.as_str() == name) {
                    Some((_, have)) => format!("skill `{name}` is {}, below {min}", have.get()),
                    None => format!("lacks skill `{name}` (needs {min})"),
                }
            }
            Req::CapacityForConversation => {
                format!("free capacity {} is below the conversation's {} units", rep.free_capacity, conv.capacity_units)
            }
            Req::MinFree(n) => format!("free capacity {} is below {n}", rep.free_capacity),
            Req::GroupsAny(_, names) => format!("is in none of the user groups {names}"),
            Req::GroupsAll(_, names) => {
                let missing: Vec<&str> = names
                    .iter()
                    .filter(|g| !r.user_groups.iter().any(|x| x.as_str() == g.as_str()))
                    .map(String::as_str)
                    .collect();
                format!(
                    "is not in user group {}",
                    missing.iter().map(|g| format!("`{g}`")).collect::<Vec<_>>().join(", ")
                )
            }
            Req::ConversationQueue => format!("is not a member of the conversation's queue `{}`", conv.queue),
            Req::QueuesAny(_, names) => format!("is a member of none of the queues {names}"),
            Req::HandlesIntent(level) => {
                let i = conv.intent.as_ref();
                let shown = i.map_or(String::new(), |i| {
                    [
                        Some(i.family.as_str()),
                        i.group.as_ref().map(|g| g.as_str()),
                        i.intent.as_ref().map(|x| x.as_str()),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("/")
                });
                let level = match level {
                    IntentLevel::Family => "family",
                    IntentLevel::Group => "group",
                    IntentLevel::Intent => "intent",
                };
                format!("does not handle the conversation's intent `{shown}` at {level} level")
            }
            Req::Attribute { cond, .. } => {
                let have = r.attributes.iter().find(|(k, _)| k.as_str() == cond.key).map(|(_, v)| v);
                match have {
                    Some(v) => format!("attribute `{}` = {} does not meet the rule", cond.key, shown_value(v)),
                    None => format!("attribute `{}` is not set", cond.key),
                }
            }
            _ => format!("does not meet rule `{}`", rule.id),
        }
    }

    fn explain_queue(req: &Req, q: &Queue) -> String {
        match req {
            Req::IntentBased(true) => format!("queue `{}` is not intent-based", q.id),
            Req::IntentBased(false) => format!("queue `{}` is intent-based", q.id),
            Req::Priority(r) => {
                let bound = match (r.min, r.max) {
                    (Some(lo), Some(hi)) => format!("{lo}-{hi}"),
                    (Some(lo), None) => format!("{lo} or more"),
                    (None, Some(hi)) => format!("{hi} or less"),
                    (None, None) => "any".into(),
                };
                format!("priority {} is outside {bound}", q.input.priority)
            }
            Req::QueueIds(_, ids) => format!("queue `{}` is not one of {}", q.id, ids.join(", ")),
            Req::QueueNames(_, names) => format!("name `{}` is not one of {}", q.input.name.as_str(), names.join(", ")),
            _ => String::new(),
        }
    }
}

/// What plugins added to a request: score adjustments and exclusions with reasons.
struct PluginOutcome {
    scores: Vec<f64>,
    reasons: Vec<Vec<Reason>>,
}

impl PluginOutcome {
    fn new(n: usize) -> Self {
        Self { scores: vec![0.0; n], reasons: vec![Vec::new(); n] }
    }

    /// Calls `rule`'s plugin with the candidates still eligible, in one batch.
    fn consult(
        &mut self,
        rule: &Rule,
        eligible: &mut [bool],
        explain: bool,
        request: impl FnOnce(&[usize], wit::Needs) -> wit::Request,
    ) {
        let Some(using) = &rule.plugin else { return };
        let batch: Vec<usize> = (0..eligible.len()).filter(|&i| eligible[i]).collect();
        if batch.is_empty() {
            return;
        }
        let name = &using.plugin.name;
        match using.evaluate(&request(&batch, using.needs), batch.len()) {
            Ok(verdicts) => {
                for (&i, score) in batch.iter().zip(&verdicts.scores) {
                    self.scores[i] += score;
                }
                for (n, &k) in verdicts.excluded.iter().enumerate() {
                    let i = batch[k as usize];
                    eligible[i] = false;
                    if explain {
                        let why = verdicts.reason_of.get(n).and_then(|&r| verdicts.reasons.get(r as usize));
                        let why = why.map_or("excluded", String::as_str);
                        self.reasons[i]
                            .push(Reason { rule: rule.id.clone(), detail: format!("plugin `{name}`: {why}") });
                    }
                }
            }
            Err(e) => match using.on_failure {
                FailurePolicy::FailOpen => {}
                FailurePolicy::FailClosed => {
                    for &i in &batch {
                        eligible[i] = false;
                        if explain {
                            self.reasons[i].push(Reason {
                                rule: rule.id.clone(),
                                detail: format!("plugin `{name}` failed: {}", e.what),
                            });
                        }
                    }
                }
            },
        }
    }
}

fn shown_value(v: &AttributeValue) -> String {
    match v {
        AttributeValue::Bool(b) => b.to_string(),
        AttributeValue::Number(n) => n.to_string(),
        AttributeValue::String(s) => format!("`{s}`"),
    }
}

impl Policy for RuleSet {
    fn version(&self) -> &str {
        &self.version
    }

    fn representatives(&self, ctx: RoutingContext<'_>, reps: &[&Representative]) -> Vec<Verdict> {
        let rules = self.applicable(&ctx, TargetKind::Representative);
        let table = self.representative_table(ctx.conversation, reps);
        let units = i64::from(ctx.conversation.capacity_units);
        let mut eligible = Vec::new();
        self.eligible_representatives(&rules, &table, units, &mut eligible);
        let mut extra = PluginOutcome::new(reps.len());
        for rule in rules.iter().filter(|r| r.plugin.is_some()) {
            extra.consult(rule, &mut eligible, ctx.explain, |batch, needs| {
                let chosen: Vec<&Representative> = batch.iter().map(|&i| reps[i]).collect();
                let idle = |k: usize| table.idle_minutes[batch[k]] as f32;
                crate::plugins::representatives_request(ctx.action, now_ms(), ctx.conversation, &chosen, idle, needs)
            });
        }
        (0..reps.len())
            .map(|i| {
                if eligible[i] {
                    return Verdict::Eligible { score: self.rep_score(&rules, &table, i) + extra.scores[i] };
                }
                if !extra.reasons[i].is_empty() {
                    return Verdict::Excluded { reasons: std::mem::take(&mut extra.reasons[i]) };
                }
                let reasons = if ctx.explain {
                    rules
                        .iter()
                        .flat_map(|rule| {
                            rule.reqs.iter().filter(|q| !self.rep_passes(q, &table, i, units)).map(|q| Reason {
                                rule: rule.id.clone(),
                                detail: self.explain_rep(rule, q, ctx.conversation, reps[i]),
                            })
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                Verdict::Excluded { reasons }
            })
            .collect()
    }

    fn queues(&self, ctx: RoutingContext<'_>, queues: &[&Queue]) -> Vec<Verdict> {
        let rules = self.applicable(&ctx, TargetKind::Queue);
        let table = self.queue_table(queues);
        let failures: Vec<Vec<(&Rule, &Req)>> = (0..queues.len())
            .map(|i| {
                rules
                    .iter()
                    .flat_map(|r| r.reqs.iter().map(move |q| (*r, q)))
                    .filter(|(_, q)| !Self::queue_passes(q, &table, i))
                    .collect()
            })
            .collect();
        let mut eligible: Vec<bool> = failures.iter().map(Vec::is_empty).collect();
        let mut extra = PluginOutcome::new(queues.len());
        for rule in rules.iter().filter(|r| r.plugin.is_some()) {
            extra.consult(rule, &mut eligible, ctx.explain, |batch, needs| {
                let chosen: Vec<&Queue> = batch.iter().map(|&i| queues[i]).collect();
                crate::plugins::queues_request(ctx.action, now_ms(), ctx.conversation, &chosen, needs)
            });
        }
        failures
            .into_iter()
            .enumerate()
            .map(|(i, failed)| {
                if failed.is_empty() && !eligible[i] {
                    return Verdict::Excluded { reasons: std::mem::take(&mut extra.reasons[i]) };
                }
                if failed.is_empty() {
                    let score = rules
                        .iter()
                        .flat_map(|r| &r.rank)
                        .map(|k| match k {
                            Rank::QueuePriority(w) => -w * f64::from(table.priority[i]),
                            _ => 0.0,
                        })
                        .sum::<f64>();
                    Verdict::Eligible { score: score + extra.scores[i] }
                } else {
                    let reasons = if ctx.explain {
                        failed
                            .into_iter()
                            .map(|(r, q)| Reason { rule: r.id.clone(), detail: Self::explain_queue(q, queues[i]) })
                            .collect()
                    } else {
                        Vec::new()
                    };
                    Verdict::Excluded { reasons }
                }
            })
            .collect()
    }
}

//! Evaluation of a compiled [`RuleSet`]: per request, the rules whose `when` matches
//! are picked once; each representative is a row of integers and bitsets in a
//! [`RepTable`] (kept current by the directory in memory, not rebuilt per request); the
//! eligibility pass then compares integers only. Plugins run last; their requests are
//! built from the table ([`TableRows`]), and no lock is held while guest code runs.

use std::sync::Arc;

use super::compile::{Columns, Symbols, presence_bit};
use super::schema::{IntentLevel, IntentPattern, Range};
use crate::domain::{AttributeValue, Conversation, Presence, Queue, Reason, Representative, TargetKind};
use crate::plugins::{CandidateSource, FactValue, FailurePolicy, Judgement, PluginError, PluginRequest, PluginUse};
use crate::routing::{CapacityReliance, Policy, RoutingContext, ScorePart, Verdict};

/// A compiled attribute value: strings as symbols (`u32::MAX`: a string no rule names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Val {
    Str(u32),
    Num(f64),
    Bool(bool),
}

const UNKNOWN: u32 = u32::MAX;

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
    pub waiting_minutes: Option<Range>,
    pub hours: Option<HoursMatch>,
}

/// `when.hours`, compiled: local minutes of the day in `zone`, days as bits (Monday 0).
#[derive(Debug, Clone)]
pub struct HoursMatch {
    pub zone: jiff::tz::TimeZone,
    pub days: u8,
    pub from: u16,
    pub to: u16,
    /// As written, for explanations: `mon,tue 09:00-18:00 Europe/Lisbon`.
    pub text: String,
}

impl HoursMatch {
    /// The local date and time at `now_ms`.
    fn local(&self, now_ms: i64) -> Option<jiff::civil::DateTime> {
        Some(self.zone.to_datetime(jiff::Timestamp::from_millisecond(now_ms).ok()?))
    }

    /// Whether `now_ms` falls in the window: on one of `days` from `from` until `to`, or
    /// for a window past midnight, until `to` on the day after one of `days`.
    fn holds(&self, now_ms: i64) -> bool {
        let Some(at) = self.local(now_ms) else { return false };
        let day = at.weekday().to_monday_zero_offset() as u8;
        let minute = at.hour() as u16 * 60 + at.minute() as u16;
        let on = |d: u8| self.days & (1 << d) != 0;
        if self.from < self.to {
            on(day) && (self.from..self.to).contains(&minute)
        } else {
            (on(day) && minute >= self.from) || (on((day + 6) % 7) && minute < self.to)
        }
    }
}

impl WhenMatch {
    /// What the time conditions saw, when the rule has any (for explanations).
    pub fn time_note(&self, conv: &Conversation, now_ms: i64) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(r) = &self.waiting_minutes {
            let bounds = match (r.min, r.max) {
                (Some(lo), Some(hi)) => format!("{lo}-{hi}"),
                (Some(lo), None) => format!("at least {lo}"),
                (None, Some(hi)) => format!("at most {hi}"),
                (None, None) => "any".to_owned(),
            };
            parts.push(format!("waiting {} min, {bounds}", conv.waiting_minutes(now_ms)));
        }
        if let Some(h) = &self.hours {
            let local = h.local(now_ms).map_or_else(String::new, |at| at.strftime("%a %H:%M").to_string());
            parts.push(format!("{local} within {}", h.text));
        }
        (!parts.is_empty()).then(|| format!("applies: {}", parts.join("; ")))
    }
}

/// `detail`, followed by which time condition made `rule` apply, if it has one.
fn with_time(rule: &Rule, conv: &Conversation, now_ms: i64, detail: String) -> String {
    match rule.when.time_note(conv, now_ms) {
        Some(note) => format!("{detail} ({note})"),
        None => detail,
    }
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

impl Req {
    /// Whether checking it needs a column derived from the conversation.
    fn reads_conversation_columns(&self) -> bool {
        matches!(self, Req::ConversationSkills | Req::ConversationQueue | Req::HandlesIntent(_))
    }
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

impl Rank {
    /// Its weight.
    fn weight(&self) -> f64 {
        match *self {
            Rank::Skill(_, w)
            | Rank::SkillMatch(w)
            | Rank::FreeCapacity(w)
            | Rank::IdleTime(w)
            | Rank::QueuePriority(w) => w,
        }
    }

    /// Its `by`, as rule files write it.
    fn by(&self) -> &'static str {
        match self {
            Rank::Skill(..) => "skill",
            Rank::SkillMatch(_) => "skill_match",
            Rank::FreeCapacity(_) => "free_capacity",
            Rank::IdleTime(_) => "idle_time",
            Rank::QueuePriority(_) => "queue_priority",
        }
    }
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

/// Representatives compiled for a rule set: one row each, integers and bitsets, in the
/// columns the rules test. Rows are set one at a time ([`RuleSet::set_rep`]), so a
/// directory in memory keeps the table current as representatives change instead of
/// compiling it per request. What depends on the conversation (its queue, skills and
/// intent) is held here as interned facts and derived per request ([`ConvColumns`]).
#[derive(Debug, Default, Clone)]
pub struct RepTable {
    len: usize,
    group_words: usize,
    queue_words: usize,
    presence: Vec<u8>,
    capacity: Vec<u32>,
    free: Vec<i64>,
    /// Unix milliseconds of the last assignment; `NEVER` when never given work.
    last_assigned: Vec<i64>,
    groups: Vec<u64>,
    queues: Vec<u64>,
    skills: Vec<i16>,
    attrs: Vec<Option<Val>>,
    facts: Facts,
}

const NEVER: i64 = i64::MIN;
/// Intents per representative kept inline in the table.
const INLINE_INTENTS: usize = 4;
/// An intent entry's level that the representative left out.
const ABSENT: u32 = u32::MAX - 1;

/// Each row's queues and intents, as symbols of the table's own interner, and its
/// level in every skill any representative has, one dense column per skill (-1: lacks
/// it), so matching the conversation's skills is a pass over a column.
///
/// For the plugins it also keeps each row's names as runs of symbols, with the symbols'
/// text in `names`, so a plugin request is built without hashing a string per row.
#[derive(Debug, Default, Clone)]
struct Facts {
    symbols: Symbols,
    /// The text of each symbol (shared with the requests being built).
    names: Arc<Vec<Box<str>>>,
    queues: Vec<Box<[u32]>>,
    /// Each row's intents (family, group, intent): the first [`INLINE_INTENTS`] inline,
    /// so the intent pass reads one contiguous column; the rest, rarely any, apart.
    intents: Vec<[[u32; 3]; INLINE_INTENTS]>,
    intent_counts: Vec<u8>,
    more_intents: std::collections::HashMap<usize, Box<[[u32; 3]]>>,
    skill_columns: std::collections::HashMap<Box<str>, usize>,
    skills: Vec<Vec<i8>>,
    skill_runs: Vec<Box<[(u32, u8)]>>,
    groups: Vec<Box<[u32]>>,
    attributes: Vec<Box<[(u32, FactValue)]>>,
}

impl Facts {
    fn sym(&self, s: &str) -> u32 {
        self.symbols.get(s).unwrap_or(UNKNOWN)
    }

    fn intern(&mut self, s: &str) -> u32 {
        let before = self.names.len() as u32;
        let sym = self.symbols.intern(s);
        if sym == before {
            Arc::make_mut(&mut self.names).push(s.into());
        }
        sym
    }
}

impl RepTable {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Minutes since row `i` was last given work, capped at a day.
    fn idle_minutes(&self, i: usize, now_ms: i64) -> f64 {
        let at = self.last_assigned[i];
        crate::domain::idle_minutes((at != NEVER).then_some(at), now_ms)
    }
}

/// The columns that depend on the conversation, derived per request and only for the
/// requirements and rank keys of the rules that apply.
#[derive(Debug, Default)]
pub struct ConvColumns {
    conv_queue: Vec<bool>,
    intent_depth: Vec<u8>,
    conv_skills_ok: Vec<bool>,
    skill_match: Vec<f64>,
}

impl ConvColumns {
    /// `only`: the rows worth deriving the per-row (branchy) columns for; the others get
    /// a value that fails their requirement (they are already excluded).
    fn derive(rules: &[&Rule], t: &RepTable, conv: &Conversation, only: Option<&[bool]>) -> Self {
        let wanted = |i: usize| only.is_none_or(|o| o[i]);
        let reqs = || rules.iter().flat_map(|r| &r.reqs);
        let ranks = || rules.iter().flat_map(|r| &r.rank);
        let f = &t.facts;
        let mut c = ConvColumns::default();
        if reqs().any(|q| matches!(q, Req::ConversationQueue)) {
            let q = f.sym(conv.queue.as_str());
            c.conv_queue = f.queues.iter().enumerate().map(|(i, row)| wanted(i) && row.contains(&q)).collect();
        }
        if reqs().any(|q| matches!(q, Req::HandlesIntent(_))) {
            let want = conv.intent.as_ref().map(|i| {
                let level = |x: &Option<crate::domain::Id>| x.as_ref().map(|x| f.sym(x.as_str()));
                (f.sym(i.family.as_str()), level(&i.group), level(&i.intent))
            });
            c.intent_depth = (0..t.len)
                .map(|i| {
                    if !wanted(i) {
                        return 0;
                    }
                    let count = usize::from(f.intent_counts[i]);
                    let depth = intent_depth(want, &f.intents[i][..count.min(INLINE_INTENTS)]);
                    match count > INLINE_INTENTS {
                        true => depth.max(f.more_intents.get(&i).map_or(0, |rest| intent_depth(want, rest))),
                        false => depth,
                    }
                })
                .collect();
        }
        let match_rank = ranks().any(|k| matches!(k, Rank::SkillMatch(_)));
        if reqs().any(|q| matches!(q, Req::ConversationSkills)) || match_rank {
            c.conv_skills_ok = vec![true; t.len];
            let mut distance = vec![0i32; t.len];
            for (skill, need) in &conv.skills {
                let need = need.get() as i8;
                match f.skill_columns.get(skill.as_str()) {
                    Some(&col) => {
                        let levels = &f.skills[col];
                        for ((ok, d), &have) in c.conv_skills_ok.iter_mut().zip(&mut distance).zip(levels) {
                            *ok &= have >= need && have >= 0;
                            *d += i32::from((have.max(0) - need).abs());
                        }
                    }
                    // Nobody has it.
                    None => {
                        c.conv_skills_ok.iter_mut().for_each(|ok| *ok = false);
                        distance.iter_mut().for_each(|d| *d += i32::from(need));
                    }
                }
            }
            c.skill_match = distance.into_iter().map(|d| -f64::from(d)).collect();
        }
        c
    }
}

/// How deeply a representative's intents cover the conversation's: 0 not the family,
/// 1 the family, 2 the group, 3 the intent (or all that the conversation names).
fn intent_depth(want: Option<(u32, Option<u32>, Option<u32>)>, row: &[[u32; 3]]) -> u8 {
    let Some((family, group, intent)) = want else { return 3 };
    row.iter()
        .map(|&[f, g, i]| {
            if f != family {
                0
            } else if group.is_none() || g == ABSENT {
                3
            } else if Some(g) != group {
                1
            } else if intent.is_none() || i == ABSENT || Some(i) == intent {
                3
            } else {
                2
            }
        })
        .max()
        .unwrap_or(0)
}

/// Queues compiled for one request.
#[derive(Debug, Default)]
pub struct QueueTable {
    intent_based: Vec<bool>,
    priority: Vec<u32>,
    id: Vec<u32>,
    name: Vec<u32>,
}

/// The rule pass over representatives for one request: the rules that apply, which
/// rows they let through, and what the conversation derived.
pub struct RepPass<'r> {
    pub rules: Vec<&'r Rule>,
    /// Row `i` meets every requirement (and was in scope).
    pub eligible: Vec<bool>,
    conv: ConvColumns,
    units: i64,
    now_ms: i64,
}

impl RepPass<'_> {
    /// The instant the pass measured idle time at (Unix milliseconds).
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Whether any rule that applies consults a plugin.
    pub fn has_plugins(&self) -> bool {
        self.rules.iter().any(|r| r.plugin.is_some())
    }
}

/// A table's rows as plugins read them.
pub struct TableRows<'a, F> {
    pub table: &'a RepTable,
    pub now_ms: i64,
    /// The id of the representative in a row.
    pub id_of: F,
}

impl<'a, F: Fn(usize) -> &'a str> CandidateSource for TableRows<'a, F> {
    fn names(&self) -> &[Box<str>] {
        &self.table.facts.names
    }
    fn presence(&self, row: usize) -> Presence {
        presence_of_bit(self.table.presence[row])
    }
    fn capacity(&self, row: usize) -> u32 {
        self.table.capacity[row]
    }
    fn free_capacity(&self, row: usize) -> i64 {
        self.table.free[row]
    }
    fn idle_minutes(&self, row: usize) -> f32 {
        self.table.idle_minutes(row, self.now_ms) as f32
    }
    fn skills(&self, row: usize) -> &[(u32, u8)] {
        &self.table.facts.skill_runs[row]
    }
    fn queues(&self, row: usize) -> &[u32] {
        &self.table.facts.queues[row]
    }
    fn user_groups(&self, row: usize) -> &[u32] {
        &self.table.facts.groups[row]
    }
    fn attributes(&self, row: usize) -> &[(u32, FactValue)] {
        &self.table.facts.attributes[row]
    }
    fn id(&self, row: usize) -> &str {
        (self.id_of)(row)
    }
}

/// What the plugins of the rules that apply said of the rows a pass let through.
#[derive(Debug)]
pub struct PluginVerdicts {
    /// Per row given to the plugins: still eligible after every plugin.
    pub eligible: Vec<bool>,
    /// Per row given to the plugins: the plugins' score adjustments.
    pub scores: Vec<f64>,
    /// Per row given to the plugins: why a plugin excluded it (with `explain`).
    pub reasons: Vec<Vec<Reason>>,
    /// Per row given to the plugins: each plugin's adjustment (with `explain`).
    pub parts: Vec<Vec<ScorePart>>,
}

impl PluginVerdicts {
    fn new(eligible: Vec<bool>) -> Self {
        let n = eligible.len();
        PluginVerdicts { eligible, scores: vec![0.0; n], reasons: vec![Vec::new(); n], parts: vec![Vec::new(); n] }
    }
}

/// Rank key `k` of `rule` as a part of a score, measuring `value`.
fn rank_part(rule: &Rule, k: &Rank, skill: Option<String>, value: f64) -> ScorePart {
    let weight = k.weight();
    ScorePart {
        rule: rule.id.clone(),
        by: k.by(),
        skill,
        plugin: None,
        value: Some(value),
        weight: Some(weight),
        points: weight * value,
    }
}

/// The presence whose [`presence_bit`] is `bit`.
fn presence_of_bit(bit: u8) -> Presence {
    Presence::ALL.into_iter().find(|&p| presence_bit(p) == bit).unwrap_or(Presence::Offline)
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
            && w.waiting_minutes.as_ref().is_none_or(|r| in_range(r, c.waiting_minutes(ctx.now_ms)))
            && w.hours.as_ref().is_none_or(|h| h.holds(ctx.now_ms))
    }

    /// The rules that apply to this request and target kind: chosen once per request.
    pub fn applicable(&self, ctx: &RoutingContext<'_>, kind: TargetKind) -> Vec<&Rule> {
        self.rules.iter().filter(|r| self.applies(r, ctx, kind)).collect()
    }

    /// An empty table in this rule set's columns.
    pub fn rep_table(&self) -> RepTable {
        let cols = &self.columns;
        RepTable {
            group_words: cols.groups.len().div_ceil(64),
            queue_words: cols.queues.len().div_ceil(64),
            ..RepTable::default()
        }
    }

    /// Compiles `rep` into row `i` of `t` (`i == t.len()` appends a row).
    pub fn set_rep(&self, t: &mut RepTable, i: usize, rep: &Representative) {
        let cols = &self.columns;
        let (gw, qw, ns, na) = (t.group_words, t.queue_words, cols.skills.len(), cols.attributes.len());
        if i == t.len {
            t.len += 1;
            t.presence.push(0);
            t.capacity.push(0);
            t.free.push(0);
            t.last_assigned.push(NEVER);
            t.groups.resize(t.len * gw, 0);
            t.queues.resize(t.len * qw, 0);
            t.skills.resize(t.len * ns, -1);
            t.attrs.resize(t.len * na, None);
            t.facts.queues.push(Box::default());
            t.facts.intents.push([[0; 3]; INLINE_INTENTS]);
            t.facts.intent_counts.push(0);
            t.facts.skill_runs.push(Box::default());
            t.facts.groups.push(Box::default());
            t.facts.attributes.push(Box::default());
            t.facts.skills.iter_mut().for_each(|col| col.push(-1));
        }
        let r = &rep.input;
        t.presence[i] = presence_bit(r.presence);
        t.capacity[i] = r.capacity;
        t.free[i] = rep.free_capacity;
        t.last_assigned[i] = rep.last_assigned_ms.unwrap_or(NEVER);
        let bits = |out: &mut [u64], names: &[String], have: &dyn Fn(&str) -> bool| {
            out.fill(0);
            for (k, name) in names.iter().enumerate() {
                if have(name) {
                    out[k / 64] |= 1 << (k % 64);
                }
            }
        };
        bits(&mut t.groups[i * gw..(i + 1) * gw], &cols.groups, &|g| r.user_groups.iter().any(|x| x.as_str() == g));
        bits(&mut t.queues[i * qw..(i + 1) * qw], &cols.queues, &|q| r.queues.iter().any(|x| x.as_str() == q));
        for (k, name) in cols.skills.iter().enumerate() {
            let level = r.skills.iter().find(|(s, _)| s.as_str() == name).map_or(-1, |(_, p)| i16::from(p.get()));
            t.skills[i * ns + k] = level;
        }
        for (k, key) in cols.attributes.iter().enumerate() {
            t.attrs[i * na + k] = r.attributes.iter().find(|(a, _)| a.as_str() == key).map(|(_, v)| self.val(v));
        }
        let f = &mut t.facts;
        f.queues[i] = r.queues.iter().map(|q| f.intern(q.as_str())).collect();
        f.groups[i] = r.user_groups.iter().map(|g| f.intern(g.as_str())).collect();
        f.skill_runs[i] = r.skills.iter().map(|(s, p)| (f.intern(s.as_str()), p.get())).collect();
        f.attributes[i] = r
            .attributes
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    AttributeValue::String(text) => FactValue::Text(f.intern(text)),
                    AttributeValue::Number(n) => FactValue::Number(n.as_f64().unwrap_or(f64::NAN)),
                    AttributeValue::Bool(b) => FactValue::Bool(*b),
                };
                (f.intern(k.as_str()), value)
            })
            .collect();
        f.skills.iter_mut().for_each(|col| col[i] = -1);
        for (skill, level) in &r.skills {
            let col = match f.skill_columns.get(skill.as_str()) {
                Some(&col) => col,
                None => {
                    f.skill_columns.insert(skill.as_str().into(), f.skills.len());
                    f.skills.push(vec![-1; t.len]);
                    f.skills.len() - 1
                }
            };
            f.skills[col][i] = level.get() as i8;
        }
        let intents: Vec<[u32; 3]> = r
            .intents
            .iter()
            .map(|e| {
                let mut level = |x: &Option<crate::domain::Id>| x.as_ref().map_or(ABSENT, |x| f.intern(x.as_str()));
                let (group, intent) = (level(&e.group), level(&e.intent));
                [f.intern(e.family.as_str()), group, intent]
            })
            .collect();
        let inline = intents.len().min(INLINE_INTENTS);
        f.intents[i][..inline].copy_from_slice(&intents[..inline]);
        f.intent_counts[i] = intents.len().min(usize::from(u8::MAX)) as u8;
        if intents.len() > INLINE_INTENTS {
            f.more_intents.insert(i, intents[INLINE_INTENTS..].into());
        } else {
            f.more_intents.remove(&i);
        }
    }

    /// Compiles representatives into a table (a directory in memory keeps one instead).
    pub fn representative_table(&self, reps: &[&Representative]) -> RepTable {
        let mut t = self.rep_table();
        for (i, rep) in reps.iter().enumerate() {
            self.set_rep(&mut t, i, rep);
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

    fn rep_passes(&self, req: &Req, t: &RepTable, c: &ConvColumns, i: usize, units: i64) -> bool {
        match req {
            Req::Presence(mask, _) => t.presence[i] & mask != 0,
            Req::ConversationSkills => c.conv_skills_ok[i],
            Req::Skill { col, min } => t.skills[i * self.columns.skills.len() + col] >= i16::from(*min),
            Req::CapacityForConversation => t.free[i] >= units,
            Req::MinFree(n) => t.free[i] >= *n,
            Req::GroupsAny(mask, _) => has_any(&t.groups[i * t.group_words..(i + 1) * t.group_words], mask),
            Req::GroupsAll(mask, _) => has_all(&t.groups[i * t.group_words..(i + 1) * t.group_words], mask),
            Req::ConversationQueue => c.conv_queue[i],
            Req::QueuesAny(mask, _) => has_any(&t.queues[i * t.queue_words..(i + 1) * t.queue_words], mask),
            Req::HandlesIntent(level) => c.intent_depth[i] >= level_depth(*level),
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

    /// What rank key `k` measures of row `i` (a representative rule's keys only).
    fn rep_measure(&self, k: &Rank, pass: &RepPass<'_>, t: &RepTable, i: usize) -> Option<f64> {
        Some(match *k {
            Rank::Skill(col, _) => f64::from(t.skills[i * self.columns.skills.len() + col].max(0)),
            Rank::SkillMatch(_) => pass.conv.skill_match[i],
            Rank::FreeCapacity(_) => t.free[i] as f64,
            Rank::IdleTime(_) => t.idle_minutes(i, pass.now_ms),
            Rank::QueuePriority(_) => return None,
        })
    }

    /// Row `i`'s score under the rank keys of the rules that apply (plugins not included).
    pub fn rep_score(&self, pass: &RepPass<'_>, t: &RepTable, i: usize) -> f64 {
        let mut score = 0.0;
        for rule in &pass.rules {
            for k in &rule.rank {
                score += self.rep_measure(k, pass, t, i).map_or(0.0, |v| k.weight() * v);
            }
        }
        score
    }

    /// The parts of [`RuleSet::rep_score`]: one per rank key of the rules that apply.
    pub fn rep_score_parts(&self, pass: &RepPass<'_>, t: &RepTable, i: usize) -> Vec<ScorePart> {
        let mut parts = Vec::new();
        for rule in &pass.rules {
            for k in &rule.rank {
                if let Some(value) = self.rep_measure(k, pass, t, i) {
                    let skill = match *k {
                        Rank::Skill(col, _) => Some(self.columns.skills[col].to_string()),
                        _ => None,
                    };
                    parts.push(rank_part(rule, k, skill, value));
                }
            }
        }
        parts
    }

    /// The rule pass over the rows of `t` in `scope` (every row when `None`): picks the
    /// rules that apply, derives the conversation's columns they need, then checks every
    /// row against every requirement.
    pub fn pass_representatives(&self, ctx: &RoutingContext<'_>, t: &RepTable, scope: Option<&[bool]>) -> RepPass<'_> {
        let rules = self.applicable(ctx, TargetKind::Representative);
        let units = i64::from(ctx.conversation.capacity_units);
        let mut eligible = match scope {
            Some(scope) => scope.to_vec(),
            None => vec![true; t.len],
        };
        // The table's own columns first; then the conversation's columns, derived only
        // for the rows still eligible (all of them when excluded rows must be explained).
        let (own, derived): (Vec<&Req>, Vec<&Req>) =
            rules.iter().flat_map(|r| &r.reqs).partition(|q| !q.reads_conversation_columns());
        let none = ConvColumns::default();
        for req in own {
            self.narrow(req, t, &none, units, &mut eligible);
        }
        let conv = ConvColumns::derive(&rules, t, ctx.conversation, (!ctx.explain).then_some(&eligible[..]));
        for req in derived {
            self.narrow(req, t, &conv, units, &mut eligible);
        }
        RepPass { rules, eligible, conv, units, now_ms: ctx.now_ms }
    }

    /// The eligibility pass alone, into `out` (for benches comparing evaluators).
    pub fn eligible_representatives(&self, ctx: &RoutingContext<'_>, t: &RepTable, out: &mut Vec<bool>) {
        *out = self.pass_representatives(ctx, t, None).eligible;
    }

    /// `out[i] &= row i meets req`. It runs requirement by requirement over whole columns,
    /// so each inner loop is a branch-free comparison of integers that the compiler
    /// vectorises.
    fn narrow(&self, req: &Req, t: &RepTable, c: &ConvColumns, units: i64, out: &mut [bool]) {
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
            Req::ConversationSkills => each(out, &c.conv_skills_ok, |ok| *ok),
            Req::Skill { col, min } => {
                for (o, row) in out.iter_mut().zip(t.skills.chunks_exact(skills)) {
                    *o &= row[*col] >= i16::from(*min);
                }
            }
            Req::CapacityForConversation => each(out, &t.free, |f| *f >= units),
            Req::MinFree(n) => each(out, &t.free, |f| f >= n),
            Req::GroupsAny(mask, _) => rows(out, &t.groups, t.group_words, |r| has_any(r, mask)),
            Req::GroupsAll(mask, _) => rows(out, &t.groups, t.group_words, |r| has_all(r, mask)),
            Req::ConversationQueue => each(out, &c.conv_queue, |ok| *ok),
            Req::QueuesAny(mask, _) => rows(out, &t.queues, t.queue_words, |r| has_any(r, mask)),
            Req::HandlesIntent(level) => {
                let depth = level_depth(*level);
                each(out, &c.intent_depth, |d| *d >= depth)
            }
            Req::Attribute { col, cond } => {
                for (o, row) in out.iter_mut().zip(t.attrs.chunks_exact(attrs)) {
                    *o &= cond.holds(row[*col]);
                }
            }
            Req::IntentBased(_) | Req::Priority(_) | Req::QueueIds(..) | Req::QueueNames(..) => {}
        }
    }

    /// Why row `i` (representative `rep`) failed the pass: one reason per requirement it
    /// does not meet.
    pub fn explain_representative(
        &self,
        pass: &RepPass<'_>,
        t: &RepTable,
        i: usize,
        conv: &Conversation,
        rep: &Representative,
    ) -> Vec<Reason> {
        pass.rules
            .iter()
            .flat_map(|rule| {
                rule.reqs.iter().filter(|q| !self.rep_passes(q, t, &pass.conv, i, pass.units)).map(|q| Reason {
                    rule: rule.id.clone(),
                    detail: with_time(rule, conv, pass.now_ms, self.explain_rep(rule, q, conv, rep)),
                })
            })
            .collect()
    }

    /// What a verdict on a representative relies on of its used capacity, beyond its
    /// version: the strictest free-capacity requirement of the rules that apply, or the
    /// exact figure when a plugin that reads capacity is consulted.
    pub fn capacity_reliance(&self, ctx: &RoutingContext<'_>) -> CapacityReliance {
        let rules = self.applicable(ctx, TargetKind::Representative);
        if rules.iter().any(|r| r.plugin.as_ref().is_some_and(|p| p.reads_capacity())) {
            return CapacityReliance::Exact;
        }
        let units = i64::from(ctx.conversation.capacity_units);
        let free = rules
            .iter()
            .flat_map(|r| &r.reqs)
            .filter_map(|q| match q {
                Req::CapacityForConversation => Some(units),
                Req::MinFree(n) => Some(*n),
                _ => None,
            })
            .max();
        free.map_or(CapacityReliance::None, CapacityReliance::FreeAtLeast)
    }

    /// Runs the plugins of the rules that apply over the table rows `rows` (those the
    /// pass let through), in rule order; each sees only those the previous ones left
    /// eligible. `request(using, batch)` builds a plugin's request for some of those rows
    /// (under the table's lock, see [`TableRows`]). Plugins block: call this off the async
    /// workers, and never under a lock.
    pub fn consult_plugins(
        &self,
        ctx: &RoutingContext<'_>,
        rules: &[&Rule],
        rows: &[usize],
        mut request: impl FnMut(&PluginUse, &[usize]) -> PluginRequest,
    ) -> PluginVerdicts {
        let mut out = PluginVerdicts::new(vec![true; rows.len()]);
        for rule in rules.iter().filter(|r| r.plugin.is_some()) {
            consult(rule, &mut out, ctx.explain, |using, batch| {
                let table_rows: Vec<usize> = batch.iter().map(|&k| rows[k]).collect();
                using.judge(&request(using, &table_rows))
            });
        }
        out
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

/// Calls `rule`'s plugin with the shortlisted representatives still eligible, in one batch.
fn consult(
    rule: &Rule,
    out: &mut PluginVerdicts,
    explain: bool,
    judge: impl FnOnce(&PluginUse, &[usize]) -> Result<Judgement, PluginError>,
) {
    let Some(using) = &rule.plugin else { return };
    let batch: Vec<usize> = (0..out.eligible.len()).filter(|&i| out.eligible[i]).collect();
    if batch.is_empty() {
        return;
    }
    let name = &using.plugin.name;
    match judge(using, &batch) {
        Ok(judgement) => {
            for (&i, &points) in batch.iter().zip(&judgement.scores) {
                out.scores[i] += points;
                if explain {
                    out.parts[i].push(ScorePart {
                        rule: rule.id.clone(),
                        by: "plugin",
                        skill: None,
                        plugin: Some(name.clone()),
                        value: None,
                        weight: None,
                        points,
                    });
                }
            }
            for (k, why) in judgement.excluded {
                let i = batch[k];
                out.eligible[i] = false;
                if explain {
                    let why = why.as_deref().unwrap_or("excluded");
                    out.reasons[i].push(Reason { rule: rule.id.clone(), detail: format!("plugin `{name}`: {why}") });
                }
            }
        }
        Err(e) => match using.on_failure {
            FailurePolicy::FailOpen => {}
            FailurePolicy::FailClosed => {
                for &i in &batch {
                    out.eligible[i] = false;
                    if explain {
                        out.reasons[i].push(Reason {
                            rule: rule.id.clone(),
                            detail: format!("plugin `{name}` failed: {}", e.what),
                        });
                    }
                }
            }
        },
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
        let table = self.representative_table(reps);
        let pass = self.pass_representatives(&ctx, &table, None);
        let rows: Vec<usize> = (0..reps.len()).filter(|&i| pass.eligible[i]).collect();
        let plugins = pass.has_plugins().then(|| {
            let src = TableRows { table: &table, now_ms: pass.now_ms, id_of: |i: usize| reps[i].id.as_str() };
            self.consult_plugins(&ctx, &pass.rules, &rows, |using, batch| {
                using.request(ctx.action, pass.now_ms, ctx.conversation, &src, batch)
            })
        });
        let mut verdicts: Vec<Verdict> = (0..reps.len())
            .map(|i| {
                if pass.eligible[i] {
                    let parts = if ctx.explain { self.rep_score_parts(&pass, &table, i) } else { Vec::new() };
                    Verdict::Eligible { score: self.rep_score(&pass, &table, i), parts }
                } else if ctx.explain {
                    Verdict::Excluded {
                        reasons: self.explain_representative(&pass, &table, i, ctx.conversation, reps[i]),
                    }
                } else {
                    Verdict::Excluded { reasons: Vec::new() }
                }
            })
            .collect();
        if let Some(mut p) = plugins {
            for (k, &i) in rows.iter().enumerate() {
                match &mut verdicts[i] {
                    Verdict::Eligible { score, parts } if p.eligible[k] => {
                        *score += p.scores[k];
                        parts.append(&mut p.parts[k]);
                    }
                    v => *v = Verdict::Excluded { reasons: std::mem::take(&mut p.reasons[k]) },
                }
            }
        }
        verdicts
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
        let mut p = PluginVerdicts::new(failures.iter().map(Vec::is_empty).collect());
        let now = ctx.now_ms;
        for rule in rules.iter().filter(|r| r.plugin.is_some()) {
            consult(rule, &mut p, ctx.explain, |using, batch| {
                let chosen: Vec<&Queue> = batch.iter().map(|&i| queues[i]).collect();
                using.judge_queues(ctx.action, now, ctx.conversation, &chosen)
            });
        }
        failures
            .into_iter()
            .enumerate()
            .map(|(i, failed)| {
                if failed.is_empty() && !p.eligible[i] {
                    return Verdict::Excluded { reasons: std::mem::take(&mut p.reasons[i]) };
                }
                if failed.is_empty() {
                    let mut score = 0.0;
                    let mut parts = Vec::new();
                    for rule in &rules {
                        for k in rule.rank.iter().filter(|k| matches!(k, Rank::QueuePriority(_))) {
                            let value = -f64::from(table.priority[i]);
                            score += k.weight() * value;
                            if ctx.explain {
                                parts.push(rank_part(rule, k, None, value));
                            }
                        }
                    }
                    parts.append(&mut p.parts[i]);
                    Verdict::Eligible { score: score + p.scores[i], parts }
                } else {
                    let reasons = if ctx.explain {
                        failed
                            .into_iter()
                            .map(|(r, q)| Reason {
                                rule: r.id.clone(),
                                detail: with_time(r, ctx.conversation, ctx.now_ms, Self::explain_queue(q, queues[i])),
                            })
                            .collect()
                    } else {
                        Vec::new()
                    };
                    Verdict::Excluded { reasons }
                }
            })
            .collect()
    }

    fn capacity_reliance(&self, ctx: &RoutingContext<'_>) -> CapacityReliance {
        RuleSet::capacity_reliance(self, ctx)
    }

    fn as_rules(&self) -> Option<&RuleSet> {
        Some(self)
    }
}

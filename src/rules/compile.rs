//! From parsed rule files to a [`RuleSet`]: validation (every error, located) and
//! compilation to integer ids and bitsets.

use std::collections::HashMap;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::RuleError;
use super::eval::{Cond, HoursMatch, Rank, Req, Rule, RuleSet, Val, WhenMatch};
use super::schema::{self, Condition, PluginRefDef, RankBy, RankDef, RuleDef, Scalar, TargetKindDef};
use crate::domain::{Id, Presence, RoutingAction, TargetKind};
use crate::plugins::{CallBudget, PluginSet, PluginUse};
use std::sync::Arc;

/// One rule file's name (as shown in errors) and text.
pub struct Source {
    pub name: String,
    pub text: String,
}

/// Interned names: every string a rule mentions gets a small integer.
#[derive(Debug, Default, Clone)]
pub struct Symbols {
    ids: HashMap<Box<str>, u32>,
}

impl Symbols {
    pub fn intern(&mut self, s: &str) -> u32 {
        let next = self.ids.len() as u32;
        *self.ids.entry(s.into()).or_insert(next)
    }

    /// The id of a name a rule mentions; `None` for names no rule mentions.
    pub fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }
}

/// Column layout of the candidate table: which named queues, groups, skills and
/// attributes the rules test, each given a bit or a column.
#[derive(Debug, Default, Clone)]
pub struct Columns {
    pub queues: Vec<String>,
    pub groups: Vec<String>,
    pub skills: Vec<String>,
    pub attributes: Vec<String>,
}

fn column(list: &mut Vec<String>, name: &str) -> usize {
    match list.iter().position(|n| n == name) {
        Some(i) => i,
        None => {
            list.push(name.to_owned());
            list.len() - 1
        }
    }
}

pub(super) fn bits(cols: &[usize]) -> Vec<u64> {
    let words = cols.iter().map(|c| c / 64 + 1).max().unwrap_or(0);
    let mut mask = vec![0u64; words];
    for c in cols {
        mask[c / 64] |= 1 << (c % 64);
    }
    mask
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
    errors: &'a mut Vec<RuleError>,
}

impl Ctx<'_> {
    fn error(&mut self, span: std::ops::Range<usize>, message: impl Into<String>) {
        self.errors.push(RuleError::at(self.file, self.text, span.start, message.into()));
    }
}

/// Validates and compiles every file against the loaded plugins; all errors of the
/// set, or the rule set.
///
/// Every file is checked whatever the others hold: a syntax error stops its own file
/// only, a type error its own rule only, and the semantic checks of every rule that
/// parsed (and the duplicate-id check across files) still run. Each file's errors come
/// in the order of their position.
pub fn compile(sources: &[Source], version: String, plugins: &PluginSet) -> Result<RuleSet, Vec<RuleError>> {
    let mut errors = Vec::new();
    let mut symbols = Symbols::default();
    let mut columns = Columns::default();
    let mut rules = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for src in sources {
        let first_of_file = errors.len();
        let mut ctx = Ctx { file: &src.name, text: &src.text, errors: &mut errors };
        for parsed in parse_file(&mut ctx) {
            if let Some(id) = &parsed.id {
                check_id(&mut ctx, id, &mut seen);
            }
            let Some(def) = parsed.def else { continue };
            if let Some(rule) = compile_rule(&mut ctx, def, &mut symbols, &mut columns, plugins) {
                rules.push(rule);
            }
        }
        errors[first_of_file..].sort_by_key(|e| (e.line, e.column));
    }
    if errors.is_empty() {
        let files = sources
            .iter()
            .map(|s| (s.name.clone(), hex::encode(&crate::auth::sha256(s.text.as_bytes())[..8])))
            .collect();
        Ok(RuleSet::new(version, files, rules, symbols, columns))
    } else {
        Err(errors)
    }
}

/// One `[[rule]]` table of a file: its id when it has a string one (for the duplicate
/// check), and the rule when it has the right shape.
struct Parsed {
    id: Option<Spanned<String>>,
    def: Option<RuleDef>,
}

/// Parses a file's `[[rule]]` tables one by one, so that a type error in one rule does
/// not hide the errors of the others. A syntax error stops the file: what follows it
/// cannot be read reliably.
fn parse_file(ctx: &mut Ctx<'_>) -> Vec<Parsed> {
    let root = match DeTable::parse(ctx.text) {
        Ok(root) => root.into_inner(),
        Err(e) => {
            ctx.error(e.span().unwrap_or(0..0), with_hint(e.message().trim()));
            return Vec::new();
        }
    };
    let mut parsed = Vec::new();
    for (key, value) in root {
        if key.get_ref().as_ref() != "rule" {
            ctx.error(key.span(), format!("unknown field `{}`, expected `rule`", key.get_ref()));
            continue;
        }
        let span = value.span();
        let DeValue::Array(tables) = value.into_inner() else {
            ctx.error(span, "`rule` must be an array of tables: start each rule with `[[rule]]`, not `[rule]`");
            continue;
        };
        for table in tables {
            let id = table.get_ref().as_table().and_then(|t| {
                t.iter()
                    .find(|(k, _)| k.get_ref().as_ref() == "id")
                    .and_then(|(_, v)| v.get_ref().as_str().map(|s| Spanned::new(v.span(), s.to_owned())))
            });
            let def = match RuleDef::deserialize(ValueDeserializer::from(table)) {
                Ok(def) => Some(def),
                Err(e) => {
                    ctx.error(e.span().unwrap_or(span.clone()), with_hint(e.message().trim()));
                    None
                }
            };
            parsed.push(Parsed { id, def });
        }
    }
    parsed
}

/// A rule id must be valid and unique across all files.
fn check_id(ctx: &mut Ctx<'_>, id: &Spanned<String>, seen: &mut HashMap<String, String>) {
    let name = id.get_ref();
    if let Err(e) = Id::parse(name) {
        ctx.error(id.span(), format!("invalid rule id: {e}"));
    }
    let here = RuleError::at(ctx.file, ctx.text, id.span().start, String::new()).location();
    if let Some(first) = seen.get(name) {
        ctx.error(
            id.span(),
            format!("duplicate rule id `{name}` (first defined at {first}); rule ids must be unique across all files"),
        );
    } else {
        seen.insert(name.clone(), here);
    }
}

/// Adds how to fix it to the parser's message where the fix is not obvious.
/// `when.hours`, checked: a known time zone, `HH:MM` times, a window of some length, at
/// least one day.
fn hours(ctx: &mut Ctx<'_>, id: &str, h: &schema::Hours) -> Option<HoursMatch> {
    let zone = match jiff::tz::TimeZone::get(h.zone.get_ref()) {
        Ok(zone) => Some(zone),
        Err(_) => {
            let message = format!(
                "rule `{id}`: `when.hours.zone` `{}` is not a known time zone (use an IANA name such as \"Europe/Lisbon\" or \"UTC\")",
                h.zone.get_ref()
            );
            ctx.error(h.zone.span(), message);
            None
        }
    };
    let mut minute = |key: &str, t: &Spanned<String>| {
        let parsed = t.get_ref().split_once(':').and_then(|(hh, mm)| {
            let ok = hh.len() == 2 && mm.len() == 2;
            let (hh, mm) = (hh.parse::<u16>().ok()?, mm.parse::<u16>().ok()?);
            (ok && mm < 60 && (hh < 24 || (hh == 24 && mm == 0))).then_some(hh * 60 + mm)
        });
        if parsed.is_none() {
            ctx.error(
                t.span(),
                format!(
                    "rule `{id}`: `when.hours.{key}` `{}` is not a time of day (write HH:MM, 24-hour, e.g. \"09:00\")",
                    t.get_ref()
                ),
            );
        }
        parsed
    };
    let (from, to) = (minute("from", &h.from), minute("to", &h.to));
    if let (Some(f), Some(t)) = (from, to)
        && f == t
    {
        ctx.error(
            h.to.span(),
            format!("rule `{id}`: `when.hours` runs from {0} to {0}, an empty window (for whole days write from = \"00:00\", to = \"24:00\")", h.from.get_ref()),
        );
    }
    let mut days = 0u8;
    match &h.days {
        Some(list) if list.get_ref().is_empty() => {
            ctx.error(list.span(), format!("rule `{id}`: `when.hours.days` is empty, so the rule could never apply (list at least one day, or leave `days` out for every day)"));
        }
        Some(list) => list.get_ref().iter().for_each(|d| days |= 1 << (*d as u8)),
        None => days = 0x7f,
    }
    let text = format!(
        "{} {}-{} {}",
        h.days.as_ref().map_or_else(
            || "every day".to_owned(),
            |d| { d.get_ref().iter().map(|x| format!("{x:?}").to_lowercase()).collect::<Vec<_>>().join(",") }
        ),
        h.from.get_ref(),
        h.to.get_ref(),
        h.zone.get_ref()
    );
    Some(HoursMatch { zone: zone?, days, from: from?, to: to?, text })
}

fn with_hint(message: &str) -> String {
    let hint = match message {
        "missing field `target`" => " (add target = \"representative\" or target = \"queue\")",
        "missing field `id`" => " (every rule needs a unique id, e.g. id = \"vip-to-tier-2\")",
        "missing field `by`" => {
            " (give by = \"skill\", \"skill_match\", \"free_capacity\", \"idle_time\" or \"queue_priority\")"
        }
        _ => "",
    };
    format!("{message}{hint}")
}

fn scalar(symbols: &mut Symbols, s: &Scalar) -> Val {
    match s {
        Scalar::Bool(b) => Val::Bool(*b),
        Scalar::Number(n) => Val::Num(*n),
        Scalar::String(s) => Val::Str(symbols.intern(s)),
    }
}

/// Compiles the condition at `path` (`when.attributes.KEY` or `require.attributes.KEY`),
/// reporting one that tests nothing or that no value could meet.
fn condition(
    ctx: &mut Ctx<'_>,
    rule: &str,
    path: &str,
    key: &str,
    c: &Spanned<Condition>,
    symbols: &mut Symbols,
) -> Cond {
    let span = c.span();
    let c = c.get_ref();
    let values = [("equals", c.equals.is_some()), ("one_of", c.one_of.is_some())];
    let bounds = [("gt", c.gt), ("gte", c.gte), ("lt", c.lt), ("lte", c.lte)];
    let tests: Vec<&str> = values
        .iter()
        .filter(|(_, given)| *given)
        .map(|(name, _)| *name)
        .chain(bounds.iter().filter(|(_, b)| b.is_some()).map(|(name, _)| *name))
        .collect();
    if tests.is_empty() && c.exists.is_none() {
        ctx.error(
            span.clone(),
            format!("rule `{rule}`: `{path}.{key}` tests nothing (give equals, one_of, exists, gt, gte, lt or lte)"),
        );
    }
    if c.exists == Some(false) && !tests.is_empty() {
        ctx.error(
            span.clone(),
            format!(
                "rule `{rule}`: `{path}.{key}` can never hold: it asks for the attribute to be absent (`exists = false`) and tests its value ({}) (keep one or the other)",
                tests.join(", ")
            ),
        );
    }
    if let Some(list) = &c.one_of
        && list.get_ref().is_empty()
    {
        ctx.error(
            list.span(),
            format!(
                "rule `{rule}`: `{path}.{key}.one_of` is empty, so the condition never holds (list at least one value)"
            ),
        );
    }
    for (name, bound) in bounds {
        if bound.is_some_and(f64::is_nan) {
            ctx.error(
                span.clone(),
                format!("rule `{rule}`: `{path}.{key}.{name}` is nan, which no number meets (give a number)"),
            );
        }
    }
    if let Some(why) = empty_range(c) {
        ctx.error(span, format!("rule `{rule}`: `{path}.{key}` can never hold: {why}"));
    }
    Cond {
        key: key.to_owned(),
        equals: c.equals.as_ref().map(|s| scalar(symbols, s)),
        one_of: c.one_of.as_ref().map(|l| l.get_ref().iter().map(|s| scalar(symbols, s)).collect()),
        exists: c.exists,
        gt: c.gt,
        gte: c.gte,
        lt: c.lt,
        lte: c.lte,
    }
}

/// Why the numeric bounds of `c` admit no number, when they admit none: a lower bound
/// (`gt`, `gte`) above an upper one (`lt`, `lte`), or equal to it with either strict.
fn empty_range(c: &Condition) -> Option<String> {
    let lower = [(c.gt, true, "above"), (c.gte, false, "at least")];
    let upper = [(c.lt, true, "below"), (c.lte, false, "at most")];
    for (lo, lo_strict, lo_words) in lower {
        for (hi, hi_strict, hi_words) in upper {
            let (Some(lo), Some(hi)) = (lo, hi) else { continue };
            let fix = if lo > hi {
                "swap the bounds, or correct the one that is wrong".to_owned()
            } else if lo == hi && (lo_strict || hi_strict) {
                format!("write `equals = {lo}` to admit exactly {lo}")
            } else {
                continue;
            };
            return Some(format!("no number is {lo_words} {lo} and {hi_words} {hi} ({fix})"));
        }
    }
    None
}

fn compile_rule(
    ctx: &mut Ctx<'_>,
    def: RuleDef,
    symbols: &mut Symbols,
    columns: &mut Columns,
    plugins: &PluginSet,
) -> Option<Rule> {
    let before = ctx.errors.len();
    let id = def.id.get_ref().clone();
    let target = match def.target.get_ref() {
        TargetKindDef::Representative => TargetKind::Representative,
        TargetKindDef::Queue => TargetKind::Queue,
    };
    let kind_name = match target {
        TargetKind::Representative => "representative",
        TargetKind::Queue => "queue",
    };

    // Where it applies.
    let w = def.when;
    let never = "so the rule would never apply";
    if let Some(list) = &w.action
        && list.get_ref().is_empty()
    {
        ctx.error(
            list.span(),
            format!("rule `{id}`: `when.action` is empty, {never} (list `assign`, `transfer` or both, or leave `action` out for both)"),
        );
    }
    for (key, list) in [("entity", &w.entity), ("queue", &w.queue)] {
        if let Some(list) = list
            && list.get_ref().is_empty()
        {
            ctx.error(
                list.span(),
                format!("rule `{id}`: `when.{key}` is empty, {never} (list at least one {key}, or leave `{key}` out to match every conversation)"),
            );
        }
    }
    let mut actions = 0u8;
    for a in w.action.as_ref().map_or(&[RoutingAction::Assign, RoutingAction::Transfer][..], |l| l.get_ref()) {
        actions |= 1 << (*a as u8);
    }
    if let Some(r) = &w.priority
        && r.get_ref().min.zip(r.get_ref().max).is_some_and(|(lo, hi)| lo > hi)
    {
        ctx.error(r.span(), format!("rule `{id}`: `when.priority` has min above max, {never} (swap min and max)"));
    }
    if let Some(r) = &w.waiting_minutes
        && r.get_ref().min.zip(r.get_ref().max).is_some_and(|(lo, hi)| lo > hi)
    {
        ctx.error(
            r.span(),
            format!("rule `{id}`: `when.waiting_minutes` has min above max, {never} (swap min and max)"),
        );
    }
    let hours = w.hours.as_ref().and_then(|h| hours(ctx, &id, h.get_ref()));
    let when_attrs: Vec<Cond> =
        w.attributes.iter().map(|(k, c)| condition(ctx, &id, "when.attributes", k, c, symbols)).collect();
    let when = WhenMatch {
        actions,
        entities: w.entity.map(Spanned::into_inner),
        queues: w.queue.map(Spanned::into_inner),
        priority: w.priority.map(Spanned::into_inner),
        intent: w.intent,
        intent_based: w.intent_based,
        attributes: when_attrs,
        waiting_minutes: w.waiting_minutes.map(Spanned::into_inner),
        hours,
    };

    // Requirements, each checked against the rule's target kind.
    let r = def.require;
    let mut reqs = Vec::new();
    let wrong_kind = |ctx: &mut Ctx<'_>, key: &str, span: std::ops::Range<usize>, of: &str| {
        ctx.error(
            span,
            format!(
                "rule `{id}`: `require.{key}` is a {of} requirement, but the rule has target = \"{kind_name}\" (move it to a rule with target = \"{of}\")"
            ),
        );
    };
    macro_rules! rep_only {
        ($field:ident) => {
            if let Some(v) = &r.$field
                && target != TargetKind::Representative
            {
                wrong_kind(ctx, stringify!($field), v.span(), "representative");
            }
        };
    }
    macro_rules! queue_only {
        ($field:ident) => {
            if let Some(v) = &r.$field
                && target != TargetKind::Queue
            {
                wrong_kind(ctx, stringify!($field), v.span(), "queue");
            }
        };
    }
    rep_only!(presence);
    rep_only!(conversation_skills);
    rep_only!(skills);
    rep_only!(capacity_for_conversation);
    rep_only!(min_free_capacity);
    rep_only!(user_groups_any);
    rep_only!(user_groups_all);
    rep_only!(member_of_conversation_queue);
    rep_only!(member_of_any);
    rep_only!(handles_intent);
    rep_only!(attributes);
    queue_only!(intent_based);
    queue_only!(priority);
    queue_only!(ids);
    queue_only!(names);

    if let Some(p) = &r.presence {
        check_nonempty(ctx, &id, "presence", p);
        let mask = p.get_ref().iter().fold(0u8, |m, p| m | presence_bit(*p));
        let names: Vec<&str> =
            Presence::ALL.iter().filter(|p| mask & presence_bit(**p) != 0).map(|p| p.as_str()).collect();
        reqs.push(Req::Presence(mask, names.join(", ")));
    }
    if r.conversation_skills.as_ref().is_some_and(|b| *b.get_ref()) {
        reqs.push(Req::ConversationSkills);
    }
    if let Some(skills) = &r.skills {
        for (name, level) in skills.get_ref() {
            if *level.get_ref() > 10 {
                ctx.error(
                    level.span(),
                    format!(
                        "rule `{id}`: `require.skills.{name}` is {}, but proficiencies run from 0 to 10 (give at most 10)",
                        level.get_ref()
                    ),
                );
            }
            reqs.push(Req::Skill { col: column(&mut columns.skills, name), min: *level.get_ref() });
        }
    }
    if r.capacity_for_conversation.as_ref().is_some_and(|b| *b.get_ref()) {
        reqs.push(Req::CapacityForConversation);
    }
    if let Some(n) = &r.min_free_capacity {
        reqs.push(Req::MinFree(*n.get_ref()));
    }
    if let Some(g) = &r.user_groups_any {
        check_nonempty(ctx, &id, "user_groups_any", g);
        let cols: Vec<usize> = g.get_ref().iter().map(|n| column(&mut columns.groups, n)).collect();
        reqs.push(Req::GroupsAny(bits(&cols), g.get_ref().join(", ")));
    }
    if let Some(g) = &r.user_groups_all {
        let cols: Vec<usize> = g.get_ref().iter().map(|n| column(&mut columns.groups, n)).collect();
        reqs.push(Req::GroupsAll(bits(&cols), g.get_ref().clone()));
    }
    if r.member_of_conversation_queue.as_ref().is_some_and(|b| *b.get_ref()) {
        reqs.push(Req::ConversationQueue);
    }
    if let Some(q) = &r.member_of_any {
        check_nonempty(ctx, &id, "member_of_any", q);
        let cols: Vec<usize> = q.get_ref().iter().map(|n| column(&mut columns.queues, n)).collect();
        reqs.push(Req::QueuesAny(bits(&cols), q.get_ref().join(", ")));
    }
    if let Some(level) = &r.handles_intent {
        reqs.push(Req::HandlesIntent(*level.get_ref()));
    }
    if let Some(attrs) = &r.attributes {
        for (key, c) in attrs.get_ref() {
            let cond = condition(ctx, &id, "require.attributes", key, c, symbols);
            reqs.push(Req::Attribute { col: column(&mut columns.attributes, key), cond });
        }
    }
    if let Some(b) = &r.intent_based {
        reqs.push(Req::IntentBased(*b.get_ref()));
    }
    if let Some(range) = &r.priority {
        let rg = *range.get_ref();
        if rg.min.zip(rg.max).is_some_and(|(lo, hi)| lo > hi) {
            ctx.error(
                range.span(),
                format!(
                    "rule `{id}`: `require.priority` has min above max, so nothing could ever match (swap min and max)"
                ),
            );
        }
        reqs.push(Req::Priority(rg));
    }
    if let Some(ids) = &r.ids {
        check_nonempty(ctx, &id, "ids", ids);
        reqs.push(Req::QueueIds(ids.get_ref().iter().map(|s| symbols.intern(s)).collect(), ids.get_ref().clone()));
    }
    if let Some(names) = &r.names {
        check_nonempty(ctx, &id, "names", names);
        reqs.push(Req::QueueNames(
            names.get_ref().iter().map(|s| symbols.intern(s)).collect(),
            names.get_ref().clone(),
        ));
    }

    let rank = def.rank.iter().filter_map(|k| rank_key(ctx, &id, target, k, columns)).collect();
    // Checked even when the rule has other errors, so that all of them come at once.
    let plugin = def.plugin.and_then(|p| plugin_use(ctx, &id, p, plugins)).map(Arc::new);
    if ctx.errors.len() != before {
        return None;
    }
    Some(Rule { id, description: def.description, target, when, reqs, rank, plugin })
}

fn plugin_use(ctx: &mut Ctx<'_>, id: &str, def: Spanned<PluginRefDef>, plugins: &PluginSet) -> Option<PluginUse> {
    let def = def.into_inner();
    let name = def.name.get_ref();
    let Some(plugin) = plugins.get(name) else {
        let loaded = plugins.names();
        let loaded = if loaded.is_empty() { "none".to_owned() } else { loaded.join(", ") };
        ctx.error(
            def.name.span(),
            format!(
                "rule `{id}`: plugin `{name}` is not loaded (loaded from {}: {loaded}); build it into {}/{name}.wasm",
                plugins.dir().display(),
                plugins.dir().display()
            ),
        );
        return None;
    };
    let budget = match def.limits {
        None => CallBudget::default(),
        Some(limits) => {
            let deadline = limits.get_ref().deadline_ms;
            if deadline.is_some_and(|ms| ms == 0 || ms > CallBudget::MAX_DEADLINE_MS) {
                ctx.error(
                    limits.span(),
                    format!(
                        "rule `{id}`: plugin `limits.deadline_ms` must be 1 to {} (milliseconds)",
                        CallBudget::MAX_DEADLINE_MS
                    ),
                );
                return None;
            }
            limits.into_inner()
        }
    };
    let config = serde_json::to_string(&def.config.unwrap_or_default()).unwrap_or_else(|_| "{}".into());
    match plugin.with_config(config, def.on_failure.unwrap_or_default()) {
        Ok(u) => Some(u.with_call_budget(budget)),
        Err(e) => {
            ctx.error(def.name.span(), format!("rule `{id}`: {e}"));
            None
        }
    }
}

fn check_nonempty<T>(ctx: &mut Ctx<'_>, id: &str, key: &str, list: &Spanned<Vec<T>>) {
    if list.get_ref().is_empty() {
        ctx.error(
            list.span(),
            format!("rule `{id}`: `require.{key}` is empty, so nothing could ever match (list at least one)"),
        );
    }
}

fn rank_key(
    ctx: &mut Ctx<'_>,
    id: &str,
    target: TargetKind,
    key: &Spanned<RankDef>,
    columns: &mut Columns,
) -> Option<Rank> {
    let k = key.get_ref();
    if !k.weight.is_finite() {
        ctx.error(key.span(), format!("rule `{id}`: rank weight must be a finite number"));
        return None;
    }
    let for_queues = k.by == RankBy::QueuePriority;
    if for_queues != (target == TargetKind::Queue) {
        let want = if for_queues { "queue" } else { "representative" };
        ctx.error(key.span(), format!("rule `{id}`: rank by `{}` needs target = \"{want}\"", by_name(k.by)));
        return None;
    }
    match (k.by, &k.skill) {
        (RankBy::Skill, Some(skill)) => Some(Rank::Skill(column(&mut columns.skills, skill), k.weight)),
        (RankBy::Skill, None) => {
            ctx.error(key.span(), format!("rule `{id}`: rank by `skill` needs `skill = \"<name>\"`"));
            None
        }
        (other, Some(_)) => {
            ctx.error(
                key.span(),
                format!("rule `{id}`: `skill` goes only with by = \"skill\", not `{}`", by_name(other)),
            );
            None
        }
        (RankBy::SkillMatch, None) => Some(Rank::SkillMatch(k.weight)),
        (RankBy::FreeCapacity, None) => Some(Rank::FreeCapacity(k.weight)),
        (RankBy::IdleTime, None) => Some(Rank::IdleTime(k.weight)),
        (RankBy::QueuePriority, None) => Some(Rank::QueuePriority(k.weight)),
    }
}

fn by_name(by: RankBy) -> &'static str {
    match by {
        RankBy::Skill => "skill",
        RankBy::SkillMatch => "skill_match",
        RankBy::FreeCapacity => "free_capacity",
        RankBy::IdleTime => "idle_time",
        RankBy::QueuePriority => "queue_priority",
    }
}

pub(super) fn presence_bit(p: Presence) -> u8 {
    1 << (p as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `empty_range` flags a condition exactly when no number meets it, so no valid
    /// rule file becomes invalid.
    #[test]
    fn empty_range_flags_exactly_the_bounds_no_number_meets() {
        let bounds = [None, Some(1.0), Some(2.0), Some(3.0)];
        let grid: Vec<f64> = (0..=32).map(|i| f64::from(i) / 8.0).collect();
        for gt in bounds {
            for gte in bounds {
                for lt in bounds {
                    for lte in bounds {
                        let c = Condition { gt, gte, lt, lte, ..Condition::default() };
                        let cond = Cond { key: "k".into(), equals: None, one_of: None, exists: None, gt, gte, lt, lte };
                        let some_number_meets = grid.iter().any(|n| cond.holds(Some(Val::Num(*n))));
                        assert_eq!(empty_range(&c).is_some(), !some_number_meets, "{c:?}");
                    }
                }
            }
        }
    }
}

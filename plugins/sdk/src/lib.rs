//! Writing Switchboard matchers in Rust.
//!
//! The bindings of `switchboard:matcher@0.3.0` (plugins/wit), and the request decoded
//! into views over its columns, read where the host copied them (nothing is copied or
//! allocated per candidate), with accessors so a matcher reads like the rule it
//! implements. A matcher says at `init` which candidate fields it reads (`Needs`); the
//! others arrive empty.
//!
//! ```ignore
//! use switchboard_matcher::{Candidates, Guest, Needs, Request, Verdicts, VerdictsBuilder};
//!
//! struct MyMatcher;
//!
//! impl Guest for MyMatcher {
//!     // Reads only the representatives' skills: nothing else is computed or sent.
//!     fn init(_config: String) -> Result<Needs, String> { Ok(Needs::SKILLS) }
//!     fn evaluate(request: Request) -> Verdicts {
//!         let mut out = VerdictsBuilder::new(request.count as usize);
//!         if let Candidates::Representatives(reps) = &request.candidates {
//!             let billing = request.symbol("billing");
//!             for k in 0..request.count as usize {
//!                 if billing.and_then(|s| reps.skill_level(k, s)).unwrap_or(0) < 5 {
//!                     out.exclude(k, "billing below 5");
//!                 }
//!             }
//!         }
//!         out.finish()
//!     }
//! }
//!
//! switchboard_matcher::export!(MyMatcher);
//! ```

use std::marker::PhantomData;
use std::ops::Range;

wit_bindgen::generate!({
    world: "plugin",
    path: "../wit",
    pub_export_macro: true,
    export_macro_name: "export_component",
    default_bindings_module: "switchboard_matcher",
});

pub use switchboard::matcher::types::{Needs, Verdicts};

/// A matcher: what a plugin implements (then `switchboard_matcher::export!(Type)`).
pub trait Guest {
    /// Called once per instance, before any `evaluate`, with the `config` table of the
    /// rule that names the matcher, as JSON. Answers the candidate fields the matcher
    /// reads; an error refuses the configuration.
    fn init(config: String) -> Result<Needs, String>;

    /// The verdicts on the request's candidates.
    fn evaluate(request: Request<'_>) -> Verdicts;
}

/// Exports a [`Guest`] as the plugin's `matcher`.
#[macro_export]
macro_rules! export {
    ($ty:ident) => {
        type __SwitchboardMatcherExport = $crate::Exported<$ty>;
        $crate::export_component!(__SwitchboardMatcherExport);
    };
}

/// The generated interface over a [`Guest`]: decodes each request (used by `export!`).
#[doc(hidden)]
pub struct Exported<M>(PhantomData<M>);

impl<M: Guest> exports::switchboard::matcher::matcher::Guest for Exported<M> {
    fn init(config: String) -> Result<Needs, String> {
        M::init(config)
    }

    fn evaluate(request: Vec<u8>) -> Verdicts {
        // Sections are 8-aligned within the request; the buffer's start is too when the
        // allocator gives 8-aligned blocks (it does), else it is copied once to be so.
        let copy: Vec<u64>;
        let bytes: &[u8] = if request.as_ptr().align_offset(8) == 0 {
            &request
        } else {
            copy = request
                .chunks(8)
                .map(|c| u64::from_le_bytes(std::array::from_fn(|i| c.get(i).copied().unwrap_or(0))))
                .collect();
            // SAFETY: any u64 is 8 valid bytes; the view is no longer than the copy.
            unsafe { std::slice::from_raw_parts(copy.as_ptr().cast::<u8>(), request.len()) }
        };
        match Request::decode(bytes) {
            Ok(r) => M::evaluate(r),
            Err(e) => panic!("switchboard-matcher: the host's request is malformed: {e}"),
        }
    }
}

/// The supervisor's action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Assign,
    Transfer,
}

/// A representative's presence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    Available,
    Busy,
    BusyDnd,
    Away,
    Offline,
}

/// An attribute value: text (a symbol), a number or a boolean.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Text(u32),
    Number(f64),
    Boolean(bool),
}

/// One call: the conversation and the candidates the rules left eligible.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The action being taken.
    pub action: Action,
    /// The time of the request (Unix milliseconds): the guest has no clock.
    pub now_ms: i64,
    /// How many candidates there are.
    pub count: u32,
    /// The conversation.
    pub conversation: Conversation<'a>,
    /// The candidates, in the order verdicts refer to them.
    pub candidates: Candidates<'a>,
    symbol_text: &'a str,
    symbol_ends: &'a [u32],
    candidate_ids: Option<(&'a str, &'a [u32])>,
}

/// The conversation being routed. Names are symbols.
#[derive(Clone, Copy, Debug)]
pub struct Conversation<'a> {
    pub id: u32,
    /// The record entity (`case`, `email`, `activity`, ...).
    pub entity: u32,
    /// The queue it is in.
    pub queue: u32,
    /// Its priority (lower is served first).
    pub priority: u32,
    /// Capacity units it takes from the representative who holds it.
    pub capacity_units: u32,
    /// Its intent's family, group and intent, when it has them.
    pub intent_family: Option<u32>,
    pub intent_group: Option<u32>,
    pub intent: Option<u32>,
    /// The representative holding it, if any.
    pub representative: Option<u32>,
    /// The skills it requires (symbols), with `skill_levels`, from 0 to 10.
    pub skills: &'a [u32],
    pub skill_levels: &'a [u8],
    attributes: Attributes<'a>,
}

/// The candidates of one request: all of one kind.
#[derive(Clone, Copy, Debug)]
pub enum Candidates<'a> {
    Representatives(Representatives<'a>),
    Queues(Queues<'a>),
}

/// Attributes as columns, item `i` of each: key (a symbol), kind (0 text, 1 number, 2
/// boolean), text (a symbol) and number.
#[derive(Clone, Copy, Debug, Default)]
pub struct Attributes<'a> {
    pub keys: &'a [u32],
    pub kinds: &'a [u8],
    pub texts: &'a [u32],
    pub numbers: &'a [f64],
}

impl Attributes<'_> {
    /// Item `i` as (key symbol, value).
    fn item(&self, i: usize) -> Option<(u32, Value)> {
        let key = *self.keys.get(i)?;
        let number = self.numbers.get(i).copied().unwrap_or(0.0);
        Some((
            key,
            match self.kinds.get(i).copied() {
                Some(0) => Value::Text(self.texts.get(i).copied().unwrap_or(0)),
                Some(2) => Value::Boolean(number != 0.0),
                _ => Value::Number(number),
            },
        ))
    }

    /// The value of the first item in `range` whose key is `key`.
    fn find(&self, range: Range<usize>, key: u32) -> Option<Value> {
        let i = range.into_iter().find(|&i| self.keys.get(i) == Some(&key))?;
        self.item(i).map(|(_, v)| v)
    }
}

/// Representatives' skills: representative `k`'s are items `ends[k-1]..ends[k]` of
/// `skills` (symbols) and `levels` (0 to 10).
#[derive(Clone, Copy, Debug)]
pub struct SkillRuns<'a> {
    pub ends: &'a [u32],
    pub skills: &'a [u32],
    pub levels: &'a [u8],
}

/// A set of names per representative (queues, user groups): representative `k`'s are
/// items `ends[k-1]..ends[k]` of `symbols`.
#[derive(Clone, Copy, Debug)]
pub struct SymbolRuns<'a> {
    pub ends: &'a [u32],
    pub symbols: &'a [u32],
}

/// Representatives' attributes: representative `k`'s are items `ends[k-1]..ends[k]` of
/// `columns`.
#[derive(Clone, Copy, Debug)]
pub struct AttributeRuns<'a> {
    pub ends: &'a [u32],
    pub columns: Attributes<'a>,
}

/// Representative candidates, as columns: representative `k` is index `k` of each
/// per-candidate column. A field is `None` unless `init` declared it in `Needs`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Representatives<'a> {
    /// Presence of each (0 available, 1 busy, 2 busy-dnd, 3 away, 4 offline).
    pub presence: Option<&'a [u8]>,
    /// Capacity units each can hold.
    pub capacity: Option<&'a [u32]>,
    /// Capacity minus units in use (negative when over-assigned).
    pub free_capacity: Option<&'a [i32]>,
    /// Minutes since each was last given a conversation (at most 1440).
    pub idle_minutes: Option<&'a [f32]>,
    pub skills: Option<SkillRuns<'a>>,
    pub queues: Option<SymbolRuns<'a>>,
    pub user_groups: Option<SymbolRuns<'a>>,
    pub attributes: Option<AttributeRuns<'a>>,
}

/// Queue candidates, as columns: queue `k` is index `k` of each.
#[derive(Clone, Copy, Debug)]
pub struct Queues<'a> {
    /// Each queue's id (a symbol).
    pub ids: &'a [u32],
    /// Its display name (a symbol).
    pub names: &'a [u32],
    /// Its priority (lower is served first).
    pub priorities: &'a [u32],
    /// 1 when it routes intent-based conversations, else 0.
    pub intent_based: &'a [u8],
}

/// Why a request could not be read (the host and the SDK disagree on the layout).
#[derive(Debug)]
pub struct DecodeError(String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

/// A primitive a section holds: any bit pattern is a valid value.
///
/// # Safety
/// Implemented only for plain numbers without padding or invalid values.
unsafe trait Plain: Copy {}
unsafe impl Plain for u8 {}
unsafe impl Plain for u32 {}
unsafe impl Plain for i32 {}
unsafe impl Plain for f32 {}
unsafe impl Plain for f64 {}

/// The section table of a request.
struct Sections<'a> {
    bytes: &'a [u8],
    table: &'a [u8],
}

const HEADER: usize = 24;

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

impl<'a> Sections<'a> {
    /// Section `n`'s bytes (empty when the table has no such entry).
    fn bytes(&self, n: usize) -> Result<&'a [u8], DecodeError> {
        let (Some(start), Some(len)) = (u32_at(self.table, n * 8), u32_at(self.table, n * 8 + 4)) else {
            return Ok(&[]);
        };
        let (start, len) = (start as usize, len as usize);
        self.bytes.get(start..start.saturating_add(len)).ok_or_else(|| {
            DecodeError(format!("section {n} ({start}+{len}) lies beyond the request's {} bytes", self.bytes.len()))
        })
    }

    /// Section `n` as an array of `T`, in place.
    fn array<T: Plain>(&self, n: usize) -> Result<&'a [T], DecodeError> {
        let bytes = self.bytes(n)?;
        // SAFETY: `T` is `Plain`, and `align_to` splits off whatever is not aligned.
        let (head, items, tail) = unsafe { bytes.align_to::<T>() };
        if !head.is_empty() || !tail.is_empty() {
            return Err(DecodeError(format!(
                "section {n} is not an aligned array of {}-byte items",
                std::mem::size_of::<T>()
            )));
        }
        Ok(items)
    }

    fn text(&self, n: usize) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes(n)?).map_err(|e| DecodeError(format!("section {n} is not UTF-8: {e}")))
    }

    fn attributes(&self, at: usize) -> Result<Attributes<'a>, DecodeError> {
        Ok(Attributes {
            keys: self.array(at)?,
            kinds: self.array(at + 1)?,
            texts: self.array(at + 2)?,
            numbers: self.array(at + 3)?,
        })
    }
}

fn some(symbol: u32) -> Option<u32> {
    (symbol != u32::MAX).then_some(symbol)
}

impl<'a> Request<'a> {
    /// Reads a request in the layout of `evaluate` (plugins/wit). `bytes` must start at a
    /// multiple of 8 (`export!` sees to it).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let header = bytes.get(..HEADER).ok_or_else(|| DecodeError(format!("{} bytes, no header", bytes.len())))?;
        let count = u32_at(header, 0).unwrap_or(0);
        let sections = u32_at(header, 20).unwrap_or(0) as usize;
        let table = bytes
            .get(HEADER..HEADER + sections * 8)
            .ok_or_else(|| DecodeError(format!("the section table of {sections} entries is cut short")))?;
        let s = Sections { bytes, table };
        let needs = u32_at(header, 16).unwrap_or(0);
        let has = |bit: u32| needs & (1 << bit) != 0;
        let c: &[u32] = s.array(2)?;
        let field = |i: usize| c.get(i).copied().unwrap_or(u32::MAX);
        let conversation = Conversation {
            id: field(0),
            entity: field(1),
            queue: field(2),
            priority: field(3),
            capacity_units: field(4),
            intent_family: some(field(5)),
            intent_group: some(field(6)),
            intent: some(field(7)),
            representative: some(field(8)),
            skills: s.array(3)?,
            skill_levels: s.array(4)?,
            attributes: s.attributes(5)?,
        };
        let runs = |at: usize| -> Result<SymbolRuns<'a>, DecodeError> {
            Ok(SymbolRuns { ends: s.array(at)?, symbols: s.array(at + 1)? })
        };
        let candidates = if header[5] == 1 {
            Candidates::Queues(Queues {
                ids: s.array(27)?,
                names: s.array(28)?,
                priorities: s.array(29)?,
                intent_based: s.array(30)?,
            })
        } else {
            Candidates::Representatives(Representatives {
                presence: has(0).then(|| s.array(9)).transpose()?,
                capacity: has(1).then(|| s.array(10)).transpose()?,
                free_capacity: has(1).then(|| s.array(11)).transpose()?,
                idle_minutes: has(2).then(|| s.array(12)).transpose()?,
                skills: has(3)
                    .then(|| {
                        Ok::<_, DecodeError>(SkillRuns {
                            ends: s.array(13)?,
                            skills: s.array(14)?,
                            levels: s.array(15)?,
                        })
                    })
                    .transpose()?,
                queues: has(4).then(|| runs(16)).transpose()?,
                user_groups: has(5).then(|| runs(18)).transpose()?,
                attributes: has(6)
                    .then(|| Ok::<_, DecodeError>(AttributeRuns { ends: s.array(20)?, columns: s.attributes(21)? }))
                    .transpose()?,
            })
        };
        Ok(Request {
            action: if header[4] == 1 { Action::Transfer } else { Action::Assign },
            now_ms: i64::from_le_bytes(header[8..16].try_into().unwrap_or_default()),
            count,
            conversation,
            candidates,
            symbol_text: s.text(0)?,
            symbol_ends: s.array(1)?,
            candidate_ids: has(7).then(|| Ok::<_, DecodeError>((s.text(25)?, s.array(26)?))).transpose()?,
        })
    }

    /// The symbol of `name`, if this request mentions it. Resolve the names a matcher
    /// cares about once per call, then compare symbols per candidate.
    pub fn symbol(&self, name: &str) -> Option<u32> {
        let mut start = 0;
        for (i, &end) in self.symbol_ends.iter().enumerate() {
            if self.symbol_text.get(start as usize..end as usize) == Some(name) {
                return Some(i as u32);
            }
            start = end;
        }
        None
    }

    /// The text of symbol `symbol` (empty when there is no such symbol).
    pub fn text(&self, symbol: u32) -> &'a str {
        self.symbol_text.get(run(self.symbol_ends, symbol as usize)).unwrap_or("")
    }

    /// The id of candidate `k` (`None` unless `init` declared `Needs::CANDIDATE_IDS`).
    pub fn candidate_id(&self, k: usize) -> Option<&'a str> {
        let (text, ends) = self.candidate_ids?;
        text.get(run(ends, k))
    }

    /// The conversation's attribute whose key is the symbol `key`.
    pub fn conversation_attribute(&self, key: u32) -> Option<Value> {
        self.conversation.attribute(key)
    }
}

impl<'a> Conversation<'a> {
    /// Its attribute whose key is the symbol `key`.
    pub fn attribute(&self, key: u32) -> Option<Value> {
        self.attributes.find(0..self.attributes.keys.len(), key)
    }

    /// Its skills as (skill symbol, level).
    pub fn skills(&self) -> impl Iterator<Item = (u32, u8)> + 'a {
        self.skills.iter().copied().zip(self.skill_levels.iter().copied())
    }

    /// Its attributes as (key symbol, value).
    pub fn attributes(&self) -> impl Iterator<Item = (u32, Value)> + 'a {
        let a = self.attributes;
        (0..a.keys.len()).filter_map(move |i| a.item(i))
    }
}

/// The items of run `k` in a list delimited by `ends` (empty when out of range).
fn run(ends: &[u32], k: usize) -> Range<usize> {
    let start = if k == 0 { 0 } else { ends.get(k - 1).copied().unwrap_or(0) as usize };
    let end = ends.get(k).copied().map_or(start, |e| e as usize);
    start..end.max(start)
}

fn items<T>(list: &[T], range: Range<usize>) -> &[T] {
    list.get(range).unwrap_or(&[])
}

/// Each accessor reads a column that `init` must have declared in its `Needs`; an
/// undeclared column reads as absent (`None`, or no items).
impl<'a> Representatives<'a> {
    /// Representative `k`'s presence (needs `PRESENCE`).
    pub fn presence_of(&self, k: usize) -> Option<Presence> {
        Some(match self.presence?.get(k)? {
            0 => Presence::Available,
            1 => Presence::Busy,
            2 => Presence::BusyDnd,
            3 => Presence::Away,
            _ => Presence::Offline,
        })
    }

    /// Representative `k`'s free capacity (needs `CAPACITY`).
    pub fn free_capacity_of(&self, k: usize) -> Option<i32> {
        self.free_capacity?.get(k).copied()
    }

    /// Representative `k`'s skills as (skill symbol, level) (needs `SKILLS`).
    pub fn skills_of(&self, k: usize) -> impl Iterator<Item = (u32, u8)> + 'a {
        let (skills, levels): (&[u32], &[u8]) = match self.skills {
            Some(runs) => {
                let range = run(runs.ends, k);
                (items(runs.skills, range.clone()), items(runs.levels, range))
            }
            None => (&[], &[]),
        };
        skills.iter().copied().zip(levels.iter().copied())
    }

    /// Representative `k`'s level in `skill` (a symbol), if they have it (needs `SKILLS`).
    pub fn skill_level(&self, k: usize, skill: u32) -> Option<u8> {
        self.skills_of(k).find(|&(s, _)| s == skill).map(|(_, level)| level)
    }

    /// The queues (symbols) representative `k` is a member of (needs `QUEUES`).
    pub fn queues_of(&self, k: usize) -> &'a [u32] {
        self.queues.map_or(&[], |runs| items(runs.symbols, run(runs.ends, k)))
    }

    /// The user groups (symbols) of representative `k` (needs `USER_GROUPS`).
    pub fn user_groups_of(&self, k: usize) -> &'a [u32] {
        self.user_groups.map_or(&[], |runs| items(runs.symbols, run(runs.ends, k)))
    }

    /// Representative `k`'s attributes as (key symbol, value) (needs `ATTRIBUTES`).
    pub fn attributes_of(&self, k: usize) -> impl Iterator<Item = (u32, Value)> + 'a {
        let (range, columns) = match self.attributes {
            Some(runs) => (run(runs.ends, k), runs.columns),
            None => (0..0, Attributes::default()),
        };
        range.filter_map(move |i| columns.item(i))
    }

    /// Representative `k`'s attribute whose key is the symbol `key` (needs `ATTRIBUTES`).
    pub fn attribute(&self, k: usize, key: u32) -> Option<Value> {
        let runs = self.attributes?;
        runs.columns.find(run(runs.ends, k), key)
    }
}

impl Queues<'_> {
    /// How many queues there are.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl Verdicts {
    /// Everyone stays eligible, the order unchanged.
    pub fn all_eligible() -> Self {
        Verdicts { excluded: Vec::new(), reason_of: Vec::new(), reasons: Vec::new(), scores: Vec::new() }
    }
}

/// Builds a matcher's answer: exclusions (reasons interned) and score adjustments.
pub struct VerdictsBuilder {
    count: usize,
    verdicts: Verdicts,
}

impl VerdictsBuilder {
    /// An answer on `count` candidates (the request's `count`): all eligible so far.
    pub fn new(count: usize) -> Self {
        VerdictsBuilder { count, verdicts: Verdicts::all_eligible() }
    }

    /// Excludes candidate `k`, saying why (identical reasons cross once). Candidates may
    /// be excluded in any order; excluding one twice keeps the first reason.
    pub fn exclude(&mut self, k: usize, reason: &str) {
        let v = &mut self.verdicts;
        let r = match v.reasons.iter().position(|r| r == reason) {
            Some(r) => r,
            None => {
                v.reasons.push(reason.to_owned());
                v.reasons.len() - 1
            }
        };
        v.excluded.push(k as u32);
        v.reason_of.push(r as u32);
    }

    /// Adds `score` to candidate `k`'s score.
    pub fn add_score(&mut self, k: usize, score: f64) {
        if self.verdicts.scores.is_empty() {
            self.verdicts.scores = vec![0.0; self.count];
        }
        if let Some(s) = self.verdicts.scores.get_mut(k) {
            *s += score;
        }
    }

    /// The answer, with the exclusions in increasing order of candidate, each once, as
    /// the host requires.
    pub fn finish(mut self) -> Verdicts {
        let v = &mut self.verdicts;
        if v.excluded.windows(2).any(|w| w[0] >= w[1]) {
            let mut pairs: Vec<(u32, u32)> = v.excluded.iter().copied().zip(v.reason_of.iter().copied()).collect();
            // A stable sort keeps the first reason of a candidate excluded twice.
            pairs.sort_by_key(|&(k, _)| k);
            pairs.dedup_by_key(|&mut (k, _)| k);
            (v.excluded, v.reason_of) = pairs.into_iter().unzip();
        }
        self.verdicts
    }
}

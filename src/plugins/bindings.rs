//! The generated bindings of `plugins/wit`, and the encoding of domain values into a
//! request: one buffer in the layout `evaluate` documents there (a header, a table of
//! sections, each section an array of one primitive type, 8-aligned). Generated types
//! stay in this module; the rest of the daemon sees domain types.

use std::collections::HashMap;

use crate::domain::{AttributeValue, Conversation, Presence, Queue, Representative, RoutingAction};

wasmtime::component::bindgen!({
    world: "plugin",
    path: "plugins/wit",
});

pub use self::switchboard::matcher::types as wit;

/// The interface a plugin must export.
pub const INTERFACE: &str = "switchboard:matcher/matcher@0.3.0";

/// The `needs` flags in the order of their bits in a request's header, with their WIT
/// names.
pub const NEEDS: [(wit::Needs, &str); 8] = [
    (wit::Needs::PRESENCE, "presence"),
    (wit::Needs::CAPACITY, "capacity"),
    (wit::Needs::IDLE_TIME, "idle-time"),
    (wit::Needs::SKILLS, "skills"),
    (wit::Needs::QUEUES, "queues"),
    (wit::Needs::USER_GROUPS, "user-groups"),
    (wit::Needs::ATTRIBUTES, "attributes"),
    (wit::Needs::CANDIDATE_IDS, "candidate-ids"),
];

/// The sections of a request, by their number in the section table (plugins/wit).
pub mod section {
    pub const SYMBOL_TEXT: usize = 0;
    pub const SYMBOL_ENDS: usize = 1;
    pub const CONVERSATION: usize = 2;
    pub const CONVERSATION_SKILLS: usize = 3;
    pub const CONVERSATION_SKILL_LEVELS: usize = 4;
    /// Keys, kinds, texts and numbers: 5 to 8.
    pub const CONVERSATION_ATTRIBUTES: usize = 5;
    pub const PRESENCE: usize = 9;
    pub const CAPACITY: usize = 10;
    pub const FREE_CAPACITY: usize = 11;
    pub const IDLE_MINUTES: usize = 12;
    /// Ends, skills, levels: 13 to 15.
    pub const SKILLS: usize = 13;
    /// Ends, symbols: 16 and 17.
    pub const QUEUES: usize = 16;
    /// Ends, symbols: 18 and 19.
    pub const USER_GROUPS: usize = 18;
    /// Ends, keys, kinds, texts, numbers: 20 to 24.
    pub const ATTRIBUTES: usize = 20;
    /// Text, ends: 25 and 26.
    pub const CANDIDATE_IDS: usize = 25;
    /// Ids, names, priorities, intent-based: 27 to 30.
    pub const QUEUE_COLUMNS: usize = 27;
    /// How many sections a request of this version has.
    pub const COUNT: usize = 31;
}

/// The header's size in bytes; the section table follows it.
pub const HEADER: usize = 24;

/// A symbol that is absent (an `option` that is `none`).
const NONE: u32 = u32::MAX;

/// Representatives as a plugin reads them, by row, with every name an index into
/// [`CandidateSource::names`] (strings interned once, when a representative changed), so
/// building a request hashes no string per representative. The routing state's table is
/// one; a request is built from it under its read lock, and the lock is released before
/// the plugin runs.
pub trait CandidateSource {
    fn names(&self) -> &[Box<str>];
    fn presence(&self, row: usize) -> Presence;
    fn capacity(&self, row: usize) -> u32;
    fn free_capacity(&self, row: usize) -> i64;
    fn idle_minutes(&self, row: usize) -> f32;
    fn skills(&self, row: usize) -> &[(u32, u8)];
    fn queues(&self, row: usize) -> &[u32];
    fn user_groups(&self, row: usize) -> &[u32];
    fn attributes(&self, row: usize) -> &[(u32, FactValue)];
    fn id(&self, row: usize) -> &str;
}

/// An attribute value with text as an index into [`CandidateSource::names`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FactValue {
    Text(u32),
    Number(f64),
    Bool(bool),
}

/// A request for a plugin: the bytes `evaluate` receives, and how many candidates they
/// describe.
#[derive(Clone, Debug)]
pub struct PluginRequest {
    bytes: Vec<u8>,
    count: usize,
}

impl PluginRequest {
    /// The request as the plugin receives it.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// How many candidates it describes.
    pub fn count(&self) -> usize {
        self.count
    }
}

/// A primitive written little-endian into a section.
trait Le: Copy {
    fn put(self, out: &mut Vec<u8>);
}

macro_rules! le {
    ($($t:ty),*) => {$(
        impl Le for $t {
            #[inline]
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
le!(u8, u32, i32, f32, f64);

/// Writes a request: the header, then sections, each at a multiple of 8, recorded in
/// the table as it is written.
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn new(act: RoutingAction, now_ms: i64, count: usize, queues: bool, needs: u32) -> Self {
        let mut buf = Vec::with_capacity(512);
        buf.extend_from_slice(&(count as u32).to_le_bytes());
        buf.push(match act {
            RoutingAction::Assign => 0,
            RoutingAction::Transfer => 1,
        });
        buf.push(u8::from(queues));
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&now_ms.to_le_bytes());
        buf.extend_from_slice(&needs.to_le_bytes());
        buf.extend_from_slice(&(section::COUNT as u32).to_le_bytes());
        buf.resize(HEADER + section::COUNT * 8, 0);
        Writer { buf }
    }

    /// Section `n`: the bytes `write` appends.
    fn section(&mut self, n: usize, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.buf.len().next_multiple_of(8);
        self.buf.resize(start, 0);
        write(&mut self.buf);
        let len = self.buf.len() - start;
        let entry = HEADER + n * 8;
        self.buf[entry..entry + 4].copy_from_slice(&(start as u32).to_le_bytes());
        self.buf[entry + 4..entry + 8].copy_from_slice(&(len as u32).to_le_bytes());
    }

    /// Section `n`: an array of `items`.
    fn column<T: Le>(&mut self, n: usize, items: impl IntoIterator<Item = T>) {
        self.section(n, |out| items.into_iter().for_each(|x| x.put(out)));
    }

    /// Section `n`: the ends of runs of the lengths `lens`.
    fn ends(&mut self, n: usize, lens: impl IntoIterator<Item = usize>) {
        let mut end = 0u32;
        self.column(
            n,
            lens.into_iter().map(|len| {
                end += len as u32;
                end
            }),
        );
    }

    /// The request, its symbol table written last (interning runs while the sections
    /// are written).
    fn finish(mut self, symbols: Symbols<'_>, count: usize) -> PluginRequest {
        self.section(section::SYMBOL_TEXT, |out| out.extend_from_slice(symbols.text.as_bytes()));
        self.column(section::SYMBOL_ENDS, symbols.ends);
        PluginRequest { bytes: self.buf, count }
    }
}

/// The request's symbol table: each distinct string once.
#[derive(Default)]
struct Symbols<'a> {
    ids: HashMap<&'a str, u32, foldhash::fast::RandomState>,
    text: String,
    ends: Vec<u32>,
    /// Request symbol of each of [`CandidateSource::names`] used so far (`u32::MAX`: none).
    remap: Vec<u32>,
}

impl<'a> Symbols<'a> {
    fn sym(&mut self, s: &'a str) -> u32 {
        let next = self.ends.len() as u32;
        *self.ids.entry(s).or_insert_with(|| {
            self.text.push_str(s);
            self.ends.push(self.text.len() as u32);
            next
        })
    }

    /// The request symbol of name `n` of `names`: each distinct name is looked up once.
    fn name(&mut self, names: &'a [Box<str>], n: u32) -> u32 {
        if self.remap.len() < names.len() {
            self.remap.resize(names.len(), u32::MAX);
        }
        match self.remap[n as usize] {
            u32::MAX => {
                let sym = self.sym(&names[n as usize]);
                self.remap[n as usize] = sym;
                sym
            }
            sym => sym,
        }
    }
}

/// An attribute value as a request's columns carry it: kind, text, number.
fn fact(v: FactValue) -> (u8, Option<u32>, f64) {
    match v {
        FactValue::Text(t) => (0, Some(t), 0.0),
        FactValue::Number(n) => (1, None, n),
        FactValue::Bool(b) => (2, None, f64::from(u8::from(b))),
    }
}

/// The same for a domain value, its text not yet interned.
fn value(v: &AttributeValue) -> (u8, Option<&str>, f64) {
    match v {
        AttributeValue::String(s) => (0, Some(s), 0.0),
        AttributeValue::Number(n) => (1, None, n.as_f64().unwrap_or(f64::NAN)),
        AttributeValue::Bool(b) => (2, None, f64::from(u8::from(*b))),
    }
}

/// The header's bits of the sections `needs` asks for (those a request can carry).
fn bits(needs: wit::Needs, mask: wit::Needs) -> u32 {
    NEEDS
        .iter()
        .enumerate()
        .filter(|(_, (flag, _))| needs.contains(*flag) && mask.contains(*flag))
        .fold(0, |b, (i, _)| b | 1 << i)
}

/// Writes the conversation's sections.
fn conversation<'a>(w: &mut Writer, s: &mut Symbols<'a>, c: &'a Conversation) {
    let intent = c.intent.as_ref();
    let mut opt = |x: Option<&'a str>| x.map_or(NONE, |x| s.sym(x));
    let fields = [
        opt(Some(c.id.as_str())),
        opt(Some(c.record.entity.as_str())),
        opt(Some(c.queue.as_str())),
        c.priority,
        c.capacity_units,
        opt(intent.map(|i| i.family.as_str())),
        opt(intent.and_then(|i| i.group.as_ref()).map(|g| g.as_str())),
        opt(intent.and_then(|i| i.intent.as_ref()).map(|x| x.as_str())),
        opt(c.representative.as_ref().map(|r| r.as_str())),
    ];
    w.column(section::CONVERSATION, fields);
    w.column(section::CONVERSATION_SKILLS, c.skills.keys().map(|k| s.sym(k.as_str())));
    w.column(section::CONVERSATION_SKILL_LEVELS, c.skills.values().map(|v| v.get()));
    let attrs = &c.attributes;
    let at = section::CONVERSATION_ATTRIBUTES;
    w.column(at, attrs.keys().map(|k| s.sym(k.as_str())));
    w.column(at + 1, attrs.values().map(|v| value(v).0));
    w.column(at + 2, attrs.values().map(|v| value(v).1.map_or(0, |t| s.sym(t))));
    w.column(at + 3, attrs.values().map(|v| value(v).2));
}

/// Writes the candidates' ids, when the plugin reads them.
fn candidate_ids<'i>(w: &mut Writer, needs: wit::Needs, ids: impl Iterator<Item = &'i str> + Clone) {
    if needs.contains(wit::Needs::CANDIDATE_IDS) {
        w.section(section::CANDIDATE_IDS, |out| ids.clone().for_each(|id| out.extend_from_slice(id.as_bytes())));
        w.ends(section::CANDIDATE_IDS + 1, ids.map(str::len));
    }
}

fn presence(p: Presence) -> u8 {
    match p {
        Presence::Available => 0,
        Presence::Busy => 1,
        Presence::BusyDnd => 2,
        Presence::Away => 3,
        Presence::Offline => 4,
    }
}

fn clamp_i32(x: i64) -> i32 {
    x.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// A request over representatives, with the fields the plugin declared it `needs`;
/// `idle_minutes(k)` is representative `k`'s idle time, asked only when it is needed.
pub fn representatives_request(
    act: RoutingAction,
    now_ms: i64,
    conv: &Conversation,
    reps: &[&Representative],
    idle_minutes: impl Fn(usize) -> f32,
    needs: wit::Needs,
) -> PluginRequest {
    let mut w = Writer::new(act, now_ms, reps.len(), false, bits(needs, wit::Needs::all()));
    let mut s = Symbols::default();
    conversation(&mut w, &mut s, conv);
    let needed = |need: wit::Needs| needs.contains(need);
    if needed(wit::Needs::PRESENCE) {
        w.column(section::PRESENCE, reps.iter().map(|r| presence(r.input.presence)));
    }
    if needed(wit::Needs::CAPACITY) {
        w.column(section::CAPACITY, reps.iter().map(|r| r.input.capacity));
        w.column(section::FREE_CAPACITY, reps.iter().map(|r| clamp_i32(r.free_capacity)));
    }
    if needed(wit::Needs::IDLE_TIME) {
        w.column(section::IDLE_MINUTES, (0..reps.len()).map(idle_minutes));
    }
    if needed(wit::Needs::SKILLS) {
        let skills = || reps.iter().flat_map(|r| r.input.skills.iter());
        w.ends(section::SKILLS, reps.iter().map(|r| r.input.skills.len()));
        w.column(section::SKILLS + 1, skills().map(|(k, _)| s.sym(k.as_str())));
        w.column(section::SKILLS + 2, skills().map(|(_, v)| v.get()));
    }
    for (need, at, of) in [
        (wit::Needs::QUEUES, section::QUEUES, (|r| &r.input.queues) as fn(&Representative) -> &Vec<crate::domain::Id>),
        (wit::Needs::USER_GROUPS, section::USER_GROUPS, |r| &r.input.user_groups),
    ] {
        if needed(need) {
            w.ends(at, reps.iter().map(|r| of(r).len()));
            w.column(at + 1, reps.iter().flat_map(|r| of(r)).map(|n| s.sym(n.as_str())));
        }
    }
    if needed(wit::Needs::ATTRIBUTES) {
        let attrs = || reps.iter().flat_map(|r| r.input.attributes.iter());
        let at = section::ATTRIBUTES;
        w.ends(at, reps.iter().map(|r| r.input.attributes.len()));
        w.column(at + 1, attrs().map(|(k, _)| s.sym(k.as_str())));
        w.column(at + 2, attrs().map(|(_, v)| value(v).0));
        w.column(at + 3, attrs().map(|(_, v)| value(v).1.map_or(0, |t| s.sym(t))));
        w.column(at + 4, attrs().map(|(_, v)| value(v).2));
    }
    candidate_ids(&mut w, needs, reps.iter().map(|r| r.id.as_str()));
    w.finish(s, reps.len())
}

/// A request over queues (the representatives' sections are not sent).
pub fn queues_request(
    act: RoutingAction,
    now_ms: i64,
    conv: &Conversation,
    queues: &[&Queue],
    needs: wit::Needs,
) -> PluginRequest {
    let mut w = Writer::new(act, now_ms, queues.len(), true, bits(needs, wit::Needs::CANDIDATE_IDS));
    let mut s = Symbols::default();
    conversation(&mut w, &mut s, conv);
    let at = section::QUEUE_COLUMNS;
    w.column(at, queues.iter().map(|q| s.sym(q.id.as_str())));
    w.column(at + 1, queues.iter().map(|q| s.sym(q.input.name.as_str())));
    w.column(at + 2, queues.iter().map(|q| q.input.priority));
    w.column(at + 3, queues.iter().map(|q| u8::from(q.input.intent_based)));
    candidate_ids(&mut w, needs, queues.iter().map(|q| q.id.as_str()));
    w.finish(s, queues.len())
}

/// A request over rows `batch` of `src`, with the fields the plugin declared it `needs`.
pub fn rows_request<'a>(
    act: RoutingAction,
    now_ms: i64,
    conv: &'a Conversation,
    src: &'a dyn CandidateSource,
    batch: &[usize],
    needs: wit::Needs,
) -> PluginRequest {
    let mut w = Writer::new(act, now_ms, batch.len(), false, bits(needs, wit::Needs::all()));
    let mut s = Symbols::default();
    conversation(&mut w, &mut s, conv);
    let names: &[Box<str>] = src.names();
    let needed = |need: wit::Needs| needs.contains(need);
    if needed(wit::Needs::PRESENCE) {
        w.column(section::PRESENCE, batch.iter().map(|&k| presence(src.presence(k))));
    }
    if needed(wit::Needs::CAPACITY) {
        w.column(section::CAPACITY, batch.iter().map(|&k| src.capacity(k)));
        w.column(section::FREE_CAPACITY, batch.iter().map(|&k| clamp_i32(src.free_capacity(k))));
    }
    if needed(wit::Needs::IDLE_TIME) {
        w.column(section::IDLE_MINUTES, batch.iter().map(|&k| src.idle_minutes(k)));
    }
    if needed(wit::Needs::SKILLS) {
        let skills = || batch.iter().flat_map(|&k| src.skills(k));
        w.ends(section::SKILLS, batch.iter().map(|&k| src.skills(k).len()));
        w.column(section::SKILLS + 1, skills().map(|&(n, _)| s.name(names, n)));
        w.column(section::SKILLS + 2, skills().map(|&(_, level)| level));
    }
    for (need, at, of) in [
        (
            wit::Needs::QUEUES,
            section::QUEUES,
            (|src, k| src.queues(k)) as fn(&'a dyn CandidateSource, usize) -> &'a [u32],
        ),
        (wit::Needs::USER_GROUPS, section::USER_GROUPS, |src, k| src.user_groups(k)),
    ] {
        if needed(need) {
            w.ends(at, batch.iter().map(|&k| of(src, k).len()));
            w.column(at + 1, batch.iter().flat_map(|&k| of(src, k)).map(|&n| s.name(names, n)));
        }
    }
    if needed(wit::Needs::ATTRIBUTES) {
        let attrs = || batch.iter().flat_map(|&k| src.attributes(k));
        let at = section::ATTRIBUTES;
        w.ends(at, batch.iter().map(|&k| src.attributes(k).len()));
        w.column(at + 1, attrs().map(|&(key, _)| s.name(names, key)));
        w.column(at + 2, attrs().map(|&(_, v)| fact(v).0));
        w.column(at + 3, attrs().map(|&(_, v)| fact(v).1.map_or(0, |t| s.name(names, t))));
        w.column(at + 4, attrs().map(|&(_, v)| fact(v).2));
    }
    candidate_ids(&mut w, needs, batch.iter().map(|&k| src.id(k)));
    w.finish(s, batch.len())
}

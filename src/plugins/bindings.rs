//! The generated bindings of `plugins/wit` and the conversion of domain values into
//! them. Generated types stay in this module; the rest of the daemon sees domain types.

use std::collections::HashMap;

use crate::domain::{AttributeValue, Conversation, Id, Presence, Queue, Representative, RoutingAction};

wasmtime::component::bindgen!({
    world: "plugin",
    path: "plugins/wit",
});

pub use self::switchboard::matcher::types as wit;

/// The interface a plugin must export.
pub const INTERFACE: &str = "switchboard:matcher/matcher@0.2.0";

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

/// Builds one request: interned strings, the conversation and the candidate columns.
#[derive(Default)]
struct Builder<'a> {
    ids: HashMap<&'a str, u32, foldhash::fast::RandomState>,
    text: String,
    ends: Vec<u32>,
    /// Request symbol of each of [`CandidateSource::names`] used so far (`u32::MAX`: none).
    remap: Vec<u32>,
}

impl<'a> Builder<'a> {
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

    fn name_runs(
        &mut self,
        names: &'a [Box<str>],
        batch: &[usize],
        row: impl Fn(usize) -> &'a [u32],
    ) -> wit::SymbolRuns {
        let mut out = wit::SymbolRuns { ends: Vec::with_capacity(batch.len()), symbols: Vec::new() };
        for &k in batch {
            for &n in row(k) {
                out.symbols.push(self.name(names, n));
            }
            out.ends.push(out.symbols.len() as u32);
        }
        out
    }

    fn sym(&mut self, s: &'a str) -> u32 {
        let next = self.ends.len() as u32;
        *self.ids.entry(s).or_insert_with(|| {
            self.text.push_str(s);
            self.ends.push(self.text.len() as u32);
            next
        })
    }

    fn conversation(&mut self, c: &'a Conversation) -> wit::Conversation {
        let intent = c.intent.as_ref();
        wit::Conversation {
            id: self.sym(c.id.as_str()),
            entity: self.sym(c.record.entity.as_str()),
            queue: self.sym(c.queue.as_str()),
            priority: c.priority,
            capacity_units: c.capacity_units,
            intent_family: intent.map(|i| self.sym(i.family.as_str())),
            intent_group: intent.and_then(|i| i.group.as_ref()).map(|g| self.sym(g.as_str())),
            intent: intent.and_then(|i| i.intent.as_ref()).map(|x| self.sym(x.as_str())),
            skills: c.skills.iter().map(|(k, v)| wit::Skill { skill: self.sym(k.as_str()), level: v.get() }).collect(),
            attributes: c
                .attributes
                .iter()
                .map(|(k, v)| {
                    let key = self.sym(k.as_str());
                    let value = match v {
                        AttributeValue::String(s) => wit::Value::Text(self.sym(s)),
                        AttributeValue::Number(n) => wit::Value::Number(n.as_f64().unwrap_or(f64::NAN)),
                        AttributeValue::Bool(b) => wit::Value::Boolean(*b),
                    };
                    wit::Attribute { key, value }
                })
                .collect(),
            representative: c.representative.as_ref().map(|r| self.sym(r.as_str())),
        }
    }

    fn skills(&mut self, reps: &[&'a Representative]) -> wit::SkillRuns {
        let mut runs = wit::SkillRuns {
            ends: Vec::with_capacity(reps.len()),
            skills: Vec::with_capacity(reps.len() * 3),
            levels: Vec::with_capacity(reps.len() * 3),
        };
        for r in reps {
            for (k, v) in &r.input.skills {
                runs.skills.push(self.sym(k.as_str()));
                runs.levels.push(v.get());
            }
            runs.ends.push(runs.skills.len() as u32);
        }
        runs
    }

    fn names(&mut self, reps: &[&'a Representative], of: fn(&Representative) -> &[Id]) -> wit::SymbolRuns {
        let mut runs =
            wit::SymbolRuns { ends: Vec::with_capacity(reps.len()), symbols: Vec::with_capacity(reps.len()) };
        for &r in reps {
            for n in of(r) {
                runs.symbols.push(self.sym(n.as_str()));
            }
            runs.ends.push(runs.symbols.len() as u32);
        }
        runs
    }

    fn attributes(&mut self, reps: &[&'a Representative]) -> wit::AttributeRuns {
        let mut runs = wit::AttributeRuns {
            ends: Vec::with_capacity(reps.len()),
            keys: Vec::new(),
            kinds: Vec::new(),
            texts: Vec::new(),
            numbers: Vec::new(),
        };
        for r in reps {
            for (k, v) in &r.input.attributes {
                runs.keys.push(self.sym(k.as_str()));
                let (kind, text, number) = match v {
                    AttributeValue::String(s) => (wit::ValueKind::Text, self.sym(s), 0.0),
                    AttributeValue::Number(n) => (wit::ValueKind::Number, 0, n.as_f64().unwrap_or(f64::NAN)),
                    AttributeValue::Bool(b) => (wit::ValueKind::Boolean, 0, f64::from(u8::from(*b))),
                };
                runs.kinds.push(kind as u8);
                runs.texts.push(text);
                runs.numbers.push(number);
            }
            runs.ends.push(runs.keys.len() as u32);
        }
        runs
    }

    /// The request over the candidates whose ids are `ids` (in order); the ids themselves
    /// are sent only when the plugin needs them.
    fn request<'i>(
        self,
        act: RoutingAction,
        now_ms: i64,
        conversation: wit::Conversation,
        candidates: wit::Candidates,
        needs: wit::Needs,
        ids: impl ExactSizeIterator<Item = &'i str>,
    ) -> wit::Request {
        let count = ids.len();
        let candidate_ids = needs.contains(wit::Needs::CANDIDATE_IDS).then(|| {
            let mut out = wit::CandidateIds { text: String::new(), ends: Vec::with_capacity(count) };
            for id in ids {
                out.text.push_str(id);
                out.ends.push(out.text.len() as u32);
            }
            out
        });
        wit::Request {
            action: action(act),
            now_ms,
            count: count as u32,
            symbol_text: self.text,
            symbol_ends: self.ends,
            candidate_ids,
            conversation,
            candidates,
        }
    }
}

fn presence(p: Presence) -> u8 {
    let p = match p {
        Presence::Available => wit::Presence::Available,
        Presence::Busy => wit::Presence::Busy,
        Presence::BusyDnd => wit::Presence::BusyDnd,
        Presence::Away => wit::Presence::Away,
        Presence::Offline => wit::Presence::Offline,
    };
    p as u8
}

fn action(a: RoutingAction) -> wit::Action {
    match a {
        RoutingAction::Assign => wit::Action::Assign,
        RoutingAction::Transfer => wit::Action::Transfer,
    }
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
) -> wit::Request {
    let mut b = Builder::default();
    let conversation = b.conversation(conv);
    let needed = |need: wit::Needs| needs.contains(need);
    let cols = wit::Representatives {
        presence: needed(wit::Needs::PRESENCE).then(|| reps.iter().map(|r| presence(r.input.presence)).collect()),
        capacity: needed(wit::Needs::CAPACITY).then(|| reps.iter().map(|r| r.input.capacity).collect()),
        free_capacity: needed(wit::Needs::CAPACITY).then(|| {
            reps.iter().map(|r| r.free_capacity.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32).collect()
        }),
        idle_minutes: needed(wit::Needs::IDLE_TIME).then(|| (0..reps.len()).map(idle_minutes).collect()),
        skills: needed(wit::Needs::SKILLS).then(|| b.skills(reps)),
        queues: needed(wit::Needs::QUEUES).then(|| b.names(reps, |r| &r.input.queues)),
        user_groups: needed(wit::Needs::USER_GROUPS).then(|| b.names(reps, |r| &r.input.user_groups)),
        attributes: needed(wit::Needs::ATTRIBUTES).then(|| b.attributes(reps)),
    };
    let ids = reps.iter().map(|r| r.id.as_str());
    b.request(act, now_ms, conversation, wit::Candidates::Representatives(cols), needs, ids)
}

/// A request over queues.
pub fn queues_request(
    act: RoutingAction,
    now_ms: i64,
    conv: &Conversation,
    queues: &[&Queue],
    needs: wit::Needs,
) -> wit::Request {
    let mut b = Builder::default();
    let conversation = b.conversation(conv);
    let mut cols = wit::Queues {
        ids: Vec::with_capacity(queues.len()),
        names: Vec::with_capacity(queues.len()),
        priorities: Vec::with_capacity(queues.len()),
        intent_based: Vec::with_capacity(queues.len()),
    };
    for q in queues {
        cols.ids.push(b.sym(q.id.as_str()));
        cols.names.push(b.sym(q.input.name.as_str()));
        cols.priorities.push(q.input.priority);
        cols.intent_based.push(u8::from(q.input.intent_based));
    }
    let ids = queues.iter().map(|q| q.id.as_str());
    b.request(act, now_ms, conversation, wit::Candidates::Queues(cols), needs, ids)
}

/// A request over rows `batch` of `src`, with the fields the plugin declared it `needs`.
pub fn rows_request<'a>(
    act: RoutingAction,
    now_ms: i64,
    conv: &'a Conversation,
    src: &'a dyn CandidateSource,
    batch: &[usize],
    needs: wit::Needs,
) -> wit::Request {
    let mut b = Builder::default();
    let conversation = b.conversation(conv);
    let names: &[Box<str>] = src.names();
    let needed = |need: wit::Needs| needs.contains(need);
    let skills = needed(wit::Needs::SKILLS).then(|| {
        let mut runs = wit::SkillRuns { ends: Vec::with_capacity(batch.len()), skills: Vec::new(), levels: Vec::new() };
        for &k in batch {
            for &(n, level) in src.skills(k) {
                runs.skills.push(b.name(names, n));
                runs.levels.push(level);
            }
            runs.ends.push(runs.skills.len() as u32);
        }
        runs
    });
    let queues = needed(wit::Needs::QUEUES).then(|| b.name_runs(names, batch, |k| src.queues(k)));
    let user_groups = needed(wit::Needs::USER_GROUPS).then(|| b.name_runs(names, batch, |k| src.user_groups(k)));
    let attributes = needed(wit::Needs::ATTRIBUTES).then(|| {
        let mut runs = wit::AttributeRuns {
            ends: Vec::with_capacity(batch.len()),
            keys: Vec::new(),
            kinds: Vec::new(),
            texts: Vec::new(),
            numbers: Vec::new(),
        };
        for &k in batch {
            for &(key, value) in src.attributes(k) {
                runs.keys.push(b.name(names, key));
                let (kind, text, number) = match value {
                    FactValue::Text(t) => (wit::ValueKind::Text, b.name(names, t), 0.0),
                    FactValue::Number(n) => (wit::ValueKind::Number, 0, n),
                    FactValue::Bool(v) => (wit::ValueKind::Boolean, 0, f64::from(u8::from(v))),
                };
                runs.kinds.push(kind as u8);
                runs.texts.push(text);
                runs.numbers.push(number);
            }
            runs.ends.push(runs.keys.len() as u32);
        }
        runs
    });
    let cols = wit::Representatives {
        presence: needed(wit::Needs::PRESENCE).then(|| batch.iter().map(|&k| presence(src.presence(k))).collect()),
        capacity: needed(wit::Needs::CAPACITY).then(|| batch.iter().map(|&k| src.capacity(k)).collect()),
        free_capacity: needed(wit::Needs::CAPACITY).then(|| {
            batch.iter().map(|&k| src.free_capacity(k).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32).collect()
        }),
        idle_minutes: needed(wit::Needs::IDLE_TIME).then(|| batch.iter().map(|&k| src.idle_minutes(k)).collect()),
        skills,
        queues,
        user_groups,
        attributes,
    };
    b.request(
        act,
        now_ms,
        conversation,
        wit::Candidates::Representatives(cols),
        needs,
        batch.iter().map(|&k| src.id(k)),
    )
}

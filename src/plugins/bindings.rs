//! The generated bindings of `plugins/wit` and the conversion of domain values into
//! them. Generated types stay in this module; the rest of the daemon sees domain types.

use std::collections::HashMap;

use crate::domain::{AttributeValue, Attributes, Conversation, Presence, Queue, Representative, RoutingAction, Skills};

wasmtime::component::bindgen!({
    world: "plugin",
    path: "plugins/wit",
});

pub use self::switchboard::matcher::types as wit;

/// The interface a plugin must export.
pub const INTERFACE: &str = "switchboard:matcher/matcher@0.1.0";

/// Builds one request: interned strings and the shared lists candidates point into.
#[derive(Default)]
struct Builder<'a> {
    ids: HashMap<&'a str, u32>,
    text: String,
    ends: Vec<u32>,
    candidate_text: String,
    candidate_ends: Vec<u32>,
    skills: Vec<wit::Skill>,
    names: Vec<u32>,
    attributes: Vec<wit::Attribute>,
}

fn span(start: usize, end: usize) -> wit::Span {
    wit::Span { start: start as u32, len: (end - start) as u32 }
}

impl<'a> Builder<'a> {
    fn sym(&mut self, s: &'a str) -> u32 {
        let next = self.ends.len() as u32;
        *self.ids.entry(s).or_insert_with(|| {
            self.text.push_str(s);
            self.ends.push(self.text.len() as u32);
            next
        })
    }

    fn candidate(&mut self, id: &str) {
        self.candidate_text.push_str(id);
        self.candidate_ends.push(self.candidate_text.len() as u32);
    }

    fn skills(&mut self, skills: &'a Skills) -> wit::Span {
        let start = self.skills.len();
        for (k, v) in skills {
            let skill = self.sym(k.as_str());
            self.skills.push(wit::Skill { skill, level: v.get() });
        }
        span(start, self.skills.len())
    }

    fn names(&mut self, names: &'a [crate::domain::Id]) -> wit::Span {
        let start = self.names.len();
        for n in names {
            let s = self.sym(n.as_str());
            self.names.push(s);
        }
        span(start, self.names.len())
    }

    fn attributes(&mut self, attrs: &'a Attributes) -> wit::Span {
        let start = self.attributes.len();
        for (k, v) in attrs {
            let key = self.sym(k.as_str());
            let value = match v {
                AttributeValue::String(s) => wit::Value::Text(self.sym(s)),
                AttributeValue::Number(n) => wit::Value::Number(n.as_f64().unwrap_or(f64::NAN)),
                AttributeValue::Bool(b) => wit::Value::Boolean(*b),
            };
            self.attributes.push(wit::Attribute { key, value });
        }
        span(start, self.attributes.len())
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
            skills: self.skills(&c.skills),
            attributes: self.attributes(&c.attributes),
            representative: c.representative.as_ref().map(|r| self.sym(r.as_str())),
        }
    }

    fn request(
        self,
        act: RoutingAction,
        now_ms: i64,
        conversation: wit::Conversation,
        candidates: wit::Candidates,
    ) -> wit::Request {
        wit::Request {
            action: action(act),
            now_ms,
            symbol_text: self.text,
            symbol_ends: self.ends,
            candidate_id_text: self.candidate_text,
            candidate_id_ends: self.candidate_ends,
            skills: self.skills,
            names: self.names,
            attributes: self.attributes,
            conversation,
            candidates,
        }
    }
}

fn presence(p: Presence) -> wit::Presence {
    match p {
        Presence::Available => wit::Presence::Available,
        Presence::Busy => wit::Presence::Busy,
        Presence::BusyDnd => wit::Presence::BusyDnd,
        Presence::Away => wit::Presence::Away,
        Presence::Offline => wit::Presence::Offline,
    }
}

fn action(a: RoutingAction) -> wit::Action {
    match a {
        RoutingAction::Assign => wit::Action::Assign,
        RoutingAction::Transfer => wit::Action::Transfer,
    }
}

/// A request over representatives (`idle_minutes` in the same order).
pub fn representatives_request(
    act: RoutingAction,
    now_ms: i64,
    conv: &Conversation,
    reps: &[&Representative],
    idle_minutes: &[f32],
) -> wit::Request {
    let mut b = Builder::default();
    let conversation = b.conversation(conv);
    let mut candidates = Vec::with_capacity(reps.len());
    for (r, idle) in reps.iter().zip(idle_minutes.iter().copied().chain(std::iter::repeat(0.0))) {
        b.candidate(r.id.as_str());
        candidates.push(wit::Representative {
            presence: presence(r.input.presence),
            capacity: r.input.capacity,
            free_capacity: r.free_capacity.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            idle_minutes: idle,
            skills: b.skills(&r.input.skills),
            queues: b.names(&r.input.queues),
            user_groups: b.names(&r.input.user_groups),
            attributes: b.attributes(&r.input.attributes),
        });
    }
    b.request(act, now_ms, conversation, wit::Candidates::Representatives(candidates))
}

/// A request over queues.
pub fn queues_request(act: RoutingAction, now_ms: i64, conv: &Conversation, queues: &[&Queue]) -> wit::Request {
    let mut b = Builder::default();
    let conversation = b.conversation(conv);
    let mut candidates = Vec::with_capacity(queues.len());
    for q in queues {
        b.candidate(q.id.as_str());
        candidates.push(wit::Queue {
            id: b.sym(q.id.as_str()),
            name: b.sym(q.input.name.as_str()),
            priority: q.input.priority,
            intent_based: q.input.intent_based,
        });
    }
    b.request(act, now_ms, conversation, wit::Candidates::Queues(candidates))
}

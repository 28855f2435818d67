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
pub const INTERFACE: &str = "switchboard:matcher/matcher@0.2.0";

/// Builds one request: interned strings, the conversation and the candidate columns.
#[derive(Default)]
struct Builder<'a> {
    ids: HashMap<&'a str, u32>,
    text: String,
    ends: Vec<u32>,
    candidate_text: String,
    candidate_ends: Vec<u32>,
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

    fn skills(&mut self, skills: &'a Skills, cols: &mut wit::Representatives) {
        for (k, v) in skills {
            cols.skill_ids.push(self.sym(k.as_str()));
            cols.skill_levels.push(v.get());
        }
        cols.skill_ends.push(cols.skill_ids.len() as u32);
    }

    fn names(&mut self, names: &'a [crate::domain::Id], out: &mut Vec<u32>, ends: &mut Vec<u32>) {
        out.extend(names.iter().map(|n| self.sym(n.as_str())));
        ends.push(out.len() as u32);
    }

    fn attributes(&mut self, attrs: &'a Attributes, cols: &mut wit::Representatives) {
        for (k, v) in attrs {
            cols.attribute_keys.push(self.sym(k.as_str()));
            let (kind, text, number) = match v {
                AttributeValue::String(s) => (wit::ValueKind::Text, self.sym(s), 0.0),
                AttributeValue::Number(n) => (wit::ValueKind::Number, 0, n.as_f64().unwrap_or(f64::NAN)),
                AttributeValue::Bool(b) => (wit::ValueKind::Boolean, 0, f64::from(u8::from(*b))),
            };
            cols.attribute_kinds.push(kind as u8);
            cols.attribute_texts.push(text);
            cols.attribute_numbers.push(number);
        }
        cols.attribute_ends.push(cols.attribute_keys.len() as u32);
    }

    fn request(
        self,
        act: RoutingAction,
        now_ms: i64,
        count: usize,
        conversation: wit::Conversation,
        candidates: wit::Candidates,
    ) -> wit::Request {
        wit::Request {
            action: action(act),
            now_ms,
            count: count as u32,
            symbol_text: self.text,
            symbol_ends: self.ends,
            candidate_id_text: self.candidate_text,
            candidate_id_ends: self.candidate_ends,
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

fn with_capacity(n: usize) -> wit::Representatives {
    wit::Representatives {
        presence: Vec::with_capacity(n),
        capacity: Vec::with_capacity(n),
        free_capacity: Vec::with_capacity(n),
        idle_minutes: Vec::with_capacity(n),
        skill_ends: Vec::with_capacity(n),
        skill_ids: Vec::with_capacity(n * 3),
        skill_levels: Vec::with_capacity(n * 3),
        queue_ends: Vec::with_capacity(n),
        queues: Vec::with_capacity(n * 2),
        user_group_ends: Vec::with_capacity(n),
        user_groups: Vec::with_capacity(n),
        attribute_ends: Vec::with_capacity(n),
        attribute_keys: Vec::with_capacity(n),
        attribute_kinds: Vec::with_capacity(n),
        attribute_texts: Vec::with_capacity(n),
        attribute_numbers: Vec::with_capacity(n),
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
    let mut cols = with_capacity(reps.len());
    for (r, idle) in reps.iter().zip(idle_minutes.iter().copied().chain(std::iter::repeat(0.0))) {
        b.candidate(r.id.as_str());
        cols.presence.push(presence(r.input.presence));
        cols.capacity.push(r.input.capacity);
        cols.free_capacity.push(r.free_capacity.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32);
        cols.idle_minutes.push(idle);
        b.skills(&r.input.skills, &mut cols);
        b.names(&r.input.queues, &mut cols.queues, &mut cols.queue_ends);
        b.names(&r.input.user_groups, &mut cols.user_groups, &mut cols.user_group_ends);
        b.attributes(&r.input.attributes, &mut cols);
    }
    b.request(act, now_ms, reps.len(), conversation, wit::Candidates::Representatives(cols))
}

/// A request over queues.
pub fn queues_request(act: RoutingAction, now_ms: i64, conv: &Conversation, queues: &[&Queue]) -> wit::Request {
    let mut b = Builder::default();
    let conversation = b.conversation(conv);
    let mut cols = wit::Queues {
        ids: Vec::with_capacity(queues.len()),
        names: Vec::with_capacity(queues.len()),
        priorities: Vec::with_capacity(queues.len()),
        intent_based: Vec::with_capacity(queues.len()),
    };
    for q in queues {
        b.candidate(q.id.as_str());
        cols.ids.push(b.sym(q.id.as_str()));
        cols.names.push(b.sym(q.input.name.as_str()));
        cols.priorities.push(q.input.priority);
        cols.intent_based.push(u8::from(q.input.intent_based));
    }
    b.request(act, now_ms, queues.len(), conversation, wit::Candidates::Queues(cols))
}

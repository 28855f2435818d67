//! The generated bindings of `plugins/wit` and the conversion of domain values into
//! them. Generated types stay in this module; the rest of the daemon sees domain types.

use std::collections::HashMap;

use crate::domain::{AttributeValue, Attributes, Conversation, Presence, Queue, Representative, RoutingAction, Skills};

wasmtime::component::bindgen!({
    world: "plugin",
    path: "plugins/wit",
});

pub use switchboard::matcher::types as wit;

/// The interface a plugin must export.
pub const INTERFACE: &str = "switchboard:matcher/matcher@0.1.0";

/// Interns the strings of one request.
#[derive(Default)]
struct Interner<'a> {
    ids: HashMap<&'a str, u32>,
    symbols: Vec<String>,
}

impl<'a> Interner<'a> {
    fn get(&mut self, s: &'a str) -> u32 {
        let next = self.symbols.len() as u32;
        *self.ids.entry(s).or_insert_with(|| {
            self.symbols.push(s.to_owned());
            next
        })
    }

    fn skills(&mut self, skills: &'a Skills) -> Vec<wit::Skill> {
        skills.iter().map(|(k, v)| wit::Skill { skill: self.get(k.as_str()), level: v.get() }).collect()
    }

    fn attributes(&mut self, attrs: &'a Attributes) -> Vec<wit::Attribute> {
        attrs
            .iter()
            .map(|(k, v)| wit::Attribute {
                key: self.get(k.as_str()),
                value: match v {
                    AttributeValue::String(s) => wit::Value::Text(self.get(s)),
                    AttributeValue::Number(n) => wit::Value::Number(n.as_f64().unwrap_or(f64::NAN)),
                    AttributeValue::Bool(b) => wit::Value::Boolean(*b),
                },
            })
            .collect()
    }

    fn conversation(&mut self, c: &'a Conversation) -> wit::Conversation {
        let mut intent = Vec::new();
        if let Some(i) = &c.intent {
            intent.push(self.get(i.family.as_str()));
            if let Some(g) = &i.group {
                intent.push(self.get(g.as_str()));
                if let Some(x) = &i.intent {
                    intent.push(self.get(x.as_str()));
                }
            }
        }
        wit::Conversation {
            id: self.get(c.id.as_str()),
            entity: self.get(c.record.entity.as_str()),
            queue: self.get(c.queue.as_str()),
            priority: c.priority,
            capacity_units: c.capacity_units,
            skills: self.skills(&c.skills),
            intent,
            attributes: self.attributes(&c.attributes),
            representative: c.representative.as_ref().map(|r| self.get(r.as_str())),
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
    let mut i = Interner::default();
    let conversation = i.conversation(conv);
    let candidates = reps
        .iter()
        .zip(idle_minutes.iter().copied().chain(std::iter::repeat(0.0)))
        .map(|(r, idle)| wit::Representative {
            id: i.get(r.id.as_str()),
            presence: presence(r.input.presence),
            capacity: r.input.capacity,
            free_capacity: r.free_capacity.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            idle_minutes: idle,
            skills: i.skills(&r.input.skills),
            queues: r.input.queues.iter().map(|q| i.get(q.as_str())).collect(),
            user_groups: r.input.user_groups.iter().map(|g| i.get(g.as_str())).collect(),
            attributes: i.attributes(&r.input.attributes),
        })
        .collect();
    wit::Request {
        action: action(act),
        now_ms,
        symbols: i.symbols,
        conversation,
        candidates: wit::Candidates::Representatives(candidates),
    }
}

/// A request over queues.
pub fn queues_request(act: RoutingAction, now_ms: i64, conv: &Conversation, queues: &[&Queue]) -> wit::Request {
    let mut i = Interner::default();
    let conversation = i.conversation(conv);
    let candidates = queues
        .iter()
        .map(|q| wit::Queue {
            id: i.get(q.id.as_str()),
            name: i.get(q.input.name.as_str()),
            priority: q.input.priority,
            intent_based: q.input.intent_based,
        })
        .collect();
    wit::Request {
        action: action(act),
        now_ms,
        symbols: i.symbols,
        conversation,
        candidates: wit::Candidates::Queues(candidates),
    }
}

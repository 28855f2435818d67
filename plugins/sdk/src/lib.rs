//! Writing Switchboard matchers in Rust.
//!
//! The bindings of `switchboard:matcher@0.2.0` (plugins/wit), plus accessors over its
//! columns so a matcher reads like the rule it implements. A matcher says at `init`
//! which candidate fields it reads (`Needs`); the others arrive empty.
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

use std::ops::Range;

wit_bindgen::generate!({
    world: "plugin",
    path: "../wit",
    pub_export_macro: true,
    default_bindings_module: "switchboard_matcher",
});

pub use exports::switchboard::matcher::matcher::Guest;
pub use switchboard::matcher::types::*;

/// The items of run `k` in a list delimited by `ends` (empty when out of range).
fn run(ends: &[u32], k: usize) -> Range<usize> {
    let start = if k == 0 { 0 } else { ends.get(k - 1).copied().unwrap_or(0) as usize };
    let end = ends.get(k).copied().map_or(start, |e| e as usize);
    start..end.max(start)
}

fn items<T>(list: &[T], range: Range<usize>) -> &[T] {
    list.get(range).unwrap_or(&[])
}

impl Request {
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
    pub fn text(&self, symbol: u32) -> &str {
        let range = run(&self.symbol_ends, symbol as usize);
        self.symbol_text.get(range).unwrap_or("")
    }

    /// The id of candidate `k` (`None` unless `init` declared `Needs::CANDIDATE_IDS`).
    pub fn candidate_id(&self, k: usize) -> Option<&str> {
        let ids = self.candidate_ids.as_ref()?;
        ids.text.get(run(&ids.ends, k))
    }

    /// The conversation's attribute whose key is the symbol `key`.
    pub fn conversation_attribute(&self, key: u32) -> Option<Value> {
        self.conversation.attributes.iter().find(|a| a.key == key).map(|a| a.value)
    }
}

/// Each accessor reads a column that `init` must have declared in its `Needs`; an
/// undeclared column reads as absent (`None`, or no items).
impl Representatives {
    /// Representative `k`'s presence (needs `PRESENCE`).
    pub fn presence_of(&self, k: usize) -> Option<Presence> {
        Some(match self.presence.as_ref()?.get(k)? {
            0 => Presence::Available,
            1 => Presence::Busy,
            2 => Presence::BusyDnd,
            3 => Presence::Away,
            _ => Presence::Offline,
        })
    }

    /// Representative `k`'s free capacity (needs `CAPACITY`).
    pub fn free_capacity_of(&self, k: usize) -> Option<i32> {
        self.free_capacity.as_ref()?.get(k).copied()
    }

    /// Representative `k`'s skills as (skill symbol, level) (needs `SKILLS`).
    pub fn skills_of(&self, k: usize) -> impl Iterator<Item = (u32, u8)> + '_ {
        let (skills, levels) = match &self.skills {
            Some(runs) => {
                let range = run(&runs.ends, k);
                (items(&runs.skills, range.clone()), items(&runs.levels, range))
            }
            None => (&[][..], &[][..]),
        };
        skills.iter().copied().zip(levels.iter().copied())
    }

    /// Representative `k`'s level in `skill` (a symbol), if they have it (needs `SKILLS`).
    pub fn skill_level(&self, k: usize, skill: u32) -> Option<u8> {
        self.skills_of(k).find(|&(s, _)| s == skill).map(|(_, level)| level)
    }

    /// The queues (symbols) representative `k` is a member of (needs `QUEUES`).
    pub fn queues_of(&self, k: usize) -> &[u32] {
        self.queues.as_ref().map_or(&[], |runs| items(&runs.symbols, run(&runs.ends, k)))
    }

    /// The user groups (symbols) of representative `k` (needs `USER_GROUPS`).
    pub fn user_groups_of(&self, k: usize) -> &[u32] {
        self.user_groups.as_ref().map_or(&[], |runs| items(&runs.symbols, run(&runs.ends, k)))
    }

    /// Representative `k`'s attribute whose key is the symbol `key` (needs `ATTRIBUTES`).
    pub fn attribute(&self, k: usize, key: u32) -> Option<Value> {
        let runs = self.attributes.as_ref()?;
        let i = run(&runs.ends, k).find(|&i| runs.keys.get(i) == Some(&key))?;
        let number = runs.numbers.get(i).copied().unwrap_or(0.0);
        Some(match runs.kinds.get(i).copied() {
            Some(0) => Value::Text(runs.texts.get(i).copied().unwrap_or(0)),
            Some(2) => Value::Boolean(number != 0.0),
            _ => Value::Number(number),
        })
    }
}

impl Queues {
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

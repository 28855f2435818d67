//! A synthetic contact center for the benches: deterministic for a seed.
#![allow(dead_code)]

use serde_json::json;
use switchboard::domain::{Conversation, Id, Representative};

fn id(s: &str) -> Id {
    Id::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

/// Deterministic pseudo-random numbers (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// `n` representatives with varied presence, skills, groups, queues, intents, load.
pub fn representatives(n: usize, seed: u64) -> Vec<Representative> {
    let mut rng = Rng(seed | 1);
    let presences = ["available", "busy", "busy_dnd", "away", "offline"];
    let skills = ["billing", "english", "spanish", "networking", "french"];
    let groups = ["tier-1", "tier-2", "supervisors"];
    let queues = ["billing", "tech-support", "vip", "intents"];
    let families = [("billing", "refunds"), ("billing", "invoices"), ("technical", "connectivity")];
    (0..n)
        .map(|i| {
            let mut sk = serde_json::Map::new();
            for s in skills {
                if rng.next(2) == 0 {
                    sk.insert(s.into(), json!(rng.next(11)));
                }
            }
            let (fam, grp) = families[rng.next(3) as usize];
            let input = json!({
                "name": format!("Rep {i:05}"),
                "presence": presences[rng.next(5) as usize],
                "capacity": rng.next(5),
                "skills": sk,
                "queues": [queues[rng.next(4) as usize], queues[rng.next(4) as usize]],
                "user_groups": [groups[rng.next(3) as usize]],
                "intents": [{"family": fam, "group": grp}],
                "attributes": {"site": if rng.next(2) == 0 { "lisbon" } else { "madrid" }},
            });
            let input = serde_json::from_value(input).unwrap_or_else(|e| panic!("{e}"));
            Representative::new(id(&format!("r{i}")), input, rng.next(3) as i64, 1, String::new())
        })
        .collect()
}

/// A VIP billing case: every demo rule applies to it.
pub fn conversation() -> Conversation {
    let input = serde_json::from_value(json!({
        "record": {"entity": "case", "id": "CAS-1"}, "queue": "billing", "capacity_units": 1,
        "skills": {"billing": 5}, "attributes": {"customer_tier": "gold"},
        "intent": {"family": "billing", "group": "refunds"}
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    Conversation::create(id("c1"), input, String::new())
}

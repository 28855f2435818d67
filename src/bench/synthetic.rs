//! A synthetic contact center, deterministic for a seed: queues, representatives and
//! conversations as the JSON bodies of the HTTP API (`PUT /v1/queues/{id}`,
//! `PUT /v1/representatives/{id}`, `POST /v1/conversations`).
//!
//! Every record is a pure function of `(seed, index)`, so a population is the same
//! whatever order or concurrency creates it, and the n-th replacement conversation of a
//! run is the same in every run with that seed. The distributions exercise every
//! example rule in `rules/`: presence, skills and capacity, VIP tiers (`vip.toml`,
//! the `vip-scoring` plugin), intents (`intents.toml`) and languages (`language-match`).

use serde_json::{Map, Value, json};

/// SplitMix64: small, fast, and good enough to spread choices; not for secrets.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The generator of record `index` of `stream`, independent of every other record's.
    pub fn for_record(seed: u64, stream: u64, index: u64) -> Self {
        let mut mix = Rng(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        let base = mix.next_u64();
        let mut rng = Rng(base ^ index.wrapping_mul(0xE703_7ED1_A0B4_28DB));
        rng.next_u64();
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `0..n` as an index.
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `choices`, by weight.
    pub fn weighted<T: Copy>(&mut self, choices: &[(T, u64)]) -> T {
        let total: u64 = choices.iter().map(|c| c.1).sum();
        let mut ticket = self.below(total);
        for &(value, weight) in choices {
            if ticket < weight {
                return value;
            }
            ticket -= weight;
        }
        choices[0].0
    }
}

const QUEUE_NAMES: [&str; 8] =
    ["Billing", "Tech support", "Sales", "Returns", "VIP", "Onboarding", "Claims", "Retention"];
const FIRST: [&str; 12] =
    ["Ann", "Bob", "Chen", "Dara", "Emil", "Fatima", "Goran", "Hana", "Ivo", "Jade", "Kofi", "Lena"];
const LAST: [&str; 10] = ["Lee", "Stone", "Silva", "Novak", "Okafor", "Berg", "Costa", "Ito", "Moreau", "Khan"];
const PRESENCE: [(&str, u64); 5] = [("available", 50), ("busy", 20), ("busy_dnd", 10), ("away", 10), ("offline", 10)];
const CAPACITY: [(u64, u64); 5] = [(1, 10), (2, 25), (3, 35), (4, 20), (5, 10)];
/// Topic skills, then languages (the `language-match` plugin reads a language skill).
const SKILLS: [&str; 6] = ["billing", "networking", "hardware", "english", "spanish", "french"];
const LANGUAGES: [&str; 3] = ["english", "spanish", "french"];
const GROUPS: [(&str, u64); 3] = [("tier-1", 60), ("tier-2", 30), ("supervisors", 10)];
const SITES: [&str; 3] = ["lisbon", "madrid", "porto"];
/// (family, group, intent).
const INTENTS: [(&str, &str, &str); 4] = [
    ("billing", "refunds", "refund-status"),
    ("billing", "invoices", "invoice-copy"),
    ("technical", "connectivity", "no-signal"),
    ("sales", "upgrades", "plan-change"),
];
const ENTITIES: [(&str, u64); 3] = [("case", 60), ("email", 25), ("activity", 15)];
const TIERS: [(&str, u64); 3] = [("standard", 70), ("gold", 20), ("platinum", 10)];
const TITLES: [&str; 6] = [
    "Refund not received",
    "Invoice copy needed",
    "No signal since Monday",
    "Upgrade my plan",
    "Wrong item delivered",
    "Cannot log in",
];

const QUEUE_STREAM: u64 = 1;
const REPRESENTATIVE_STREAM: u64 = 2;
const CONVERSATION_STREAM: u64 = 3;

/// The shape of a synthetic contact center, and the ids of its records.
#[derive(Clone, Debug)]
pub struct Center {
    pub seed: u64,
    /// Prepended to every id, so a run touches only its own records.
    pub prefix: String,
    pub queues: u64,
    pub representatives: u64,
    pub conversations: u64,
}

impl Center {
    pub fn queue_id(&self, i: u64) -> String {
        format!("{}q{i}", self.prefix)
    }

    pub fn representative_id(&self, i: u64) -> String {
        format!("{}r{i}", self.prefix)
    }

    /// Ids at or past `conversations` are the replacements created after removes.
    pub fn conversation_id(&self, i: u64) -> String {
        format!("{}c{i}", self.prefix)
    }

    /// Every fourth queue is intent-based (the last one too, when there are fewer than four).
    pub fn queue_is_intent_based(&self, i: u64) -> bool {
        i % 4 == 3 || (self.queues > 1 && self.queues < 4 && i == self.queues - 1)
    }

    /// The body of `PUT /v1/queues/{queue_id(i)}`.
    pub fn queue(&self, i: u64) -> Value {
        let mut rng = Rng::for_record(self.seed, QUEUE_STREAM, i);
        let base = QUEUE_NAMES[(i % QUEUE_NAMES.len() as u64) as usize];
        let name = if i < QUEUE_NAMES.len() as u64 { base.to_owned() } else { format!("{base} {i}") };
        json!({"name": name, "priority": rng.below(4), "intent_based": self.queue_is_intent_based(i)})
    }

    /// The body of `PUT /v1/representatives/{representative_id(i)}`: 1 to 3 queues, about
    /// half of the skills, 1 or 2 intents, one group.
    pub fn representative(&self, i: u64) -> Value {
        let mut rng = Rng::for_record(self.seed, REPRESENTATIVE_STREAM, i);
        let name = format!("{} {} {i}", FIRST[rng.index(FIRST.len())], LAST[rng.index(LAST.len())]);
        let mut skills = Map::new();
        for skill in SKILLS {
            if rng.chance(50) {
                skills.insert(skill.to_owned(), json!(3 + rng.below(8)));
            }
        }
        let mut queues: Vec<String> = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let q = self.queue_id(rng.below(self.queues));
            if !queues.contains(&q) {
                queues.push(q);
            }
        }
        let mut intents: Vec<Value> = Vec::new();
        for _ in 0..1 + rng.below(2) {
            let (family, group, _) = INTENTS[rng.index(INTENTS.len())];
            let intent = json!({"family": family, "group": group});
            if !intents.contains(&intent) {
                intents.push(intent);
            }
        }
        json!({
            "name": name,
            "presence": rng.weighted(&PRESENCE),
            "capacity": rng.weighted(&CAPACITY),
            "skills": skills,
            "queues": queues,
            "user_groups": [rng.weighted(&GROUPS)],
            "intents": intents,
            "attributes": {"site": SITES[rng.index(SITES.len())]},
        })
    }

    /// The body of `POST /v1/conversations` for `conversation_id(i)` (the id included).
    /// Queues are skewed (the first ones busier); intent-based queues get an intent.
    pub fn conversation(&self, i: u64) -> Value {
        let mut rng = Rng::for_record(self.seed, CONVERSATION_STREAM, i);
        // Queue q has weight (queues - q): the first queue is the busiest.
        let weights: Vec<(u64, u64)> = (0..self.queues).map(|q| (q, self.queues - q)).collect();
        let queue = rng.weighted(&weights);
        let entity = rng.weighted(&ENTITIES);
        let prefix = match entity {
            "case" => "CAS",
            "email" => "EML",
            _ => "ACT",
        };
        let mut skills = Map::new();
        if rng.chance(40) {
            skills.insert(SKILLS[rng.index(3)].to_owned(), json!(1 + rng.below(6)));
        }
        let mut attributes = Map::new();
        attributes.insert("customer_tier".to_owned(), json!(rng.weighted(&TIERS)));
        if rng.chance(15) {
            attributes.insert("language".to_owned(), json!(LANGUAGES[rng.index(LANGUAGES.len())]));
        }
        let mut body = json!({
            "id": self.conversation_id(i),
            "record": {"entity": entity, "id": format!("{prefix}-{}", 1000 + i), "title": TITLES[rng.index(TITLES.len())]},
            "queue": self.queue_id(queue),
            "priority": rng.below(3),
            "capacity_units": if rng.chance(80) { 1 } else { 2 },
            "skills": skills,
            "attributes": attributes,
        });
        if self.queue_is_intent_based(queue) {
            let (family, group, intent) = INTENTS[rng.index(INTENTS.len())];
            body["intent"] = json!({"family": family, "group": group, "intent": intent});
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn center(seed: u64) -> Center {
        Center { seed, prefix: "bench-1-x-".into(), queues: 4, representatives: 100, conversations: 100 }
    }

    #[test]
    fn records_depend_only_on_seed_and_index() {
        let a = center(7);
        let b = center(7);
        assert_eq!(a.representative(5), b.representative(5));
        assert_eq!(a.conversation(150), b.conversation(150));
        assert_ne!(a.representative(5), center(8).representative(5));
    }

    #[test]
    fn records_are_valid_bodies_of_the_api() {
        let c = center(3);
        for i in 0..50 {
            let _: crate::domain::QueueInput = serde_json::from_value(c.queue(i)).unwrap();
            let _: crate::domain::RepresentativeInput = serde_json::from_value(c.representative(i)).unwrap();
            let _: crate::domain::ConversationInput = serde_json::from_value(c.conversation(i)).unwrap();
        }
        assert_eq!(c.queue(3)["intent_based"], true);
        assert_eq!(c.queue(0)["intent_based"], false);
    }

    #[test]
    fn distributions_are_roughly_as_documented() {
        let c = center(11);
        let available = (0..1000).filter(|&i| c.representative(i)["presence"] == "available").count();
        assert!((400..600).contains(&available), "{available}");
        let mut rng = Rng::new(1);
        let below: Vec<u64> = (0..1000).map(|_| rng.below(10)).collect();
        assert!(below.iter().all(|&v| v < 10));
        assert!((0..10).all(|v| below.contains(&v)));
    }
}

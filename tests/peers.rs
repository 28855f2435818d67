//! The peer policies of `benches/peers.rs` (Cedar, Rego) decide as Switchboard's demo
//! rules do: the same eligible set on synthetic contact centers, and each condition of
//! the rules encoded by each peer (a representative failing exactly one is excluded by
//! all three, and only rules whose `when` matches count).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/common/peers.rs"]
mod peers;
#[path = "../benches/common/synthetic.rs"]
mod synthetic;

use serde_json::{Value, json};
use switchboard::domain::{Conversation, Id, Representative};

/// A conversation from its input's JSON.
fn conv(input: Value) -> Conversation {
    Conversation::create(Id::parse("c").unwrap(), serde_json::from_value(input).unwrap(), String::new())
}

/// The bench's VIP billing case (every demo rule applies), and conversations to which
/// the VIP rule, the intent rule or both do not apply, or apply differently.
fn conversations() -> Vec<(&'static str, Conversation)> {
    vec![
        ("vip case, billing/refunds", synthetic::conversation()),
        (
            "email, no intent",
            conv(json!({"record": {"entity": "email", "id": "E-1"}, "queue": "billing", "skills": {"billing": 3}})),
        ),
        (
            "platinum case, family-only intent, two skills, 2 units",
            conv(json!({
                "record": {"entity": "case", "id": "CAS-2"}, "queue": "tech-support", "capacity_units": 2,
                "skills": {"billing": 1, "english": 4}, "attributes": {"customer_tier": "platinum"},
                "intent": {"family": "billing"}
            })),
        ),
        (
            "silver case, technical/connectivity",
            conv(json!({
                "record": {"entity": "case", "id": "CAS-3"}, "queue": "tech-support",
                "skills": {"networking": 4}, "attributes": {"customer_tier": "silver"},
                "intent": {"family": "technical", "group": "connectivity"}
            })),
        ),
    ]
}

/// Four conversations over 600 synthetic representatives at four seeds: one eligible set,
/// neither empty nor everyone.
#[test]
fn the_three_agree_on_synthetic_contact_centers() {
    let set = peers::demo_rules();
    for (name, conv) in conversations() {
        // `representatives` uses `seed | 1`, so odd seeds are the distinct ones; at seed 7
        // nobody can take the platinum case, and an empty set would prove nothing.
        for seed in [1, 3, 5, 9] {
            let reps = synthetic::representatives(600, seed);
            let label = format!("{name}, 600 representatives, seed {seed}");
            let eligible = peers::assert_agree(&set, &conv, &reps, &label);
            // Agreement on nobody or everybody would prove little.
            assert!(!eligible.is_empty() && eligible.len() < reps.len(), "{label}: {} eligible", eligible.len());
        }
    }
}

/// A representative who meets every demo rule for the VIP billing/refunds case, with
/// `change` applied to its input and `used` capacity units in use.
fn rep(id: &str, change: Value, used: i64) -> Representative {
    let mut input = json!({
        "name": id, "presence": "available", "capacity": 2, "skills": {"billing": 5, "english": 7},
        "user_groups": ["tier-2"], "intents": [{"family": "billing", "group": "refunds"}]
    });
    input.as_object_mut().unwrap().extend(change.as_object().unwrap().clone());
    Representative::new(Id::parse(id).unwrap(), serde_json::from_value(input).unwrap(), used, 1, String::new())
}

/// Hand-made representatives that each fail one condition, for conversations to which
/// all, some or other demo rules apply.
#[test]
fn each_condition_is_encoded_by_each_peer() {
    let set = peers::demo_rules();
    let reps = vec![
        rep("ok", json!({}), 1),
        rep("busy", json!({"presence": "busy"}), 0),
        rep("whole-family", json!({"intents": [{"family": "billing"}]}), 0),
        rep("away", json!({"presence": "away"}), 0),
        rep("no-billing", json!({"skills": {"english": 7}}), 0),
        rep("billing-4", json!({"skills": {"billing": 4, "english": 7}}), 0),
        rep("full", json!({}), 2),
        rep("tier-1", json!({"user_groups": ["tier-1"]}), 0),
        rep("invoices", json!({"intents": [{"family": "billing", "group": "invoices"}]}), 0),
        rep("technical", json!({"intents": [{"family": "technical", "group": "refunds"}]}), 0),
    ];
    let cases = [
        // Every rule applies: each representative that fails one condition is out.
        (synthetic::conversation(), vec!["busy", "ok", "whole-family"]),
        // No VIP rule, no intent rule: group and intent no longer matter.
        (
            conv(json!({"record": {"entity": "email", "id": "E-1"}, "queue": "billing", "skills": {"billing": 5}})),
            vec!["busy", "invoices", "ok", "technical", "tier-1", "whole-family"],
        ),
        // A family-only intent: any group of the family will do; 2 units leave out "ok".
        (
            conv(json!({
                "record": {"entity": "case", "id": "CAS-2"}, "queue": "billing", "capacity_units": 2,
                "skills": {"billing": 5}, "attributes": {"customer_tier": "platinum"}, "intent": {"family": "billing"}
            })),
            vec!["busy", "invoices", "whole-family"],
        ),
    ];
    for (i, (conv, want)) in cases.into_iter().enumerate() {
        let got = peers::assert_agree(&set, &conv, &reps, &format!("case {i}"));
        assert_eq!(got, want, "case {i}");
    }
}

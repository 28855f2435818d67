//! Every cell of the contract's status table, over HTTP, including "unchanged after a
//! refusal", and capacity accounting through each action.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Daemon, SUPERVISOR, conversation_in};
use serde_json::{Value, json};

const STATUSES: [&str; 5] = ["open", "active", "waiting", "wrap_up", "closed"];

/// (name, path suffix, body)
fn actions() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("assign>rep", "assign", json!({"representative": "bob"})),
        ("assign>queue", "assign", json!({"queue": "support"})),
        ("transfer>rep", "transfer", json!({"representative": "bob"})),
        ("transfer>queue", "transfer", json!({"queue": "support"})),
        ("release", "release", json!({})),
        ("remove", "remove", json!({"note": "duplicate"})),
    ]
}

/// The contract: `None` is 409; otherwise (status, queue, representative, closed_reason).
fn expected(from: &str, action: &str) -> Option<(&'static str, &'static str, Value, Value)> {
    let bob = json!("bob");
    match (from, action) {
        ("open", "assign>rep") => Some(("active", "billing", bob, Value::Null)),
        ("open", "assign>queue") => Some(("open", "support", Value::Null, Value::Null)),
        ("open" | "active" | "waiting", "transfer>rep") => Some(("active", "billing", bob, Value::Null)),
        ("open" | "active" | "waiting", "transfer>queue") => Some(("open", "support", Value::Null, Value::Null)),
        ("active" | "waiting", "release") => Some(("open", "billing", Value::Null, Value::Null)),
        ("open" | "active" | "waiting" | "wrap_up", "remove") => {
            Some(("closed", "billing", Value::Null, json!("removed")))
        }
        _ => None,
    }
}

on_both_backends! {
async fn every_cell_of_the_status_table() {
    let daemon = Daemon::start().await;
    let c = &daemon.client;
    c.seed_directory().await;
    let mut n = 0;
    for from in STATUSES {
        for (name, path, body) in actions() {
            n += 1;
            let id = format!("c{n}");
            conversation_in(c, &id, from).await;
            let before = c.get(&format!("/v1/conversations/{id}"), SUPERVISOR).await.expect(200);
            let history_before = c.get(&format!("/v1/conversations/{id}/history"), SUPERVISOR).await.expect(200);
            let ann_before = c.used_capacity("ann").await;
            let bob_before = c.used_capacity("bob").await;
            let answer = c.post(&format!("/v1/conversations/{id}/{path}"), SUPERVISOR, body.clone()).await;
            match expected(from, name) {
                None => {
                    answer.problem(409, "invalid_transition");
                    let after = c.get(&format!("/v1/conversations/{id}"), SUPERVISOR).await.expect(200);
                    assert_eq!(after.text, before.text, "{from} + {name} changed the conversation");
                    let history = c.get(&format!("/v1/conversations/{id}/history"), SUPERVISOR).await;
                    assert_eq!(history.text, history_before.text, "{from} + {name} changed history");
                    assert_eq!(c.used_capacity("ann").await, ann_before);
                    assert_eq!(c.used_capacity("bob").await, bob_before);
                }
                Some((status, queue, rep, reason)) => {
                    let conv = answer.expect(200).json;
                    assert_eq!(conv["status"], status, "{from} + {name}");
                    assert_eq!(conv["queue"], queue, "{from} + {name}");
                    assert_eq!(conv["representative"], rep, "{from} + {name}");
                    assert_eq!(conv["closed_reason"], reason, "{from} + {name}");
                    assert_eq!(conv["version"], before.json["version"].as_u64().unwrap() + 1);
                    // Capacity: ann gives back what she held, bob gains what he now holds.
                    let ann_held = before.json["representative"] == "ann" && from != "open" && from != "closed";
                    let bob_holds = rep == "bob";
                    assert_eq!(
                        c.used_capacity("ann").await,
                        ann_before - if ann_held { 2 } else { 0 },
                        "{from}+{name}"
                    );
                    assert_eq!(
                        c.used_capacity("bob").await,
                        bob_before + if bob_holds { 2 } else { 0 },
                        "{from}+{name}"
                    );
                    let history = c.get(&format!("/v1/conversations/{id}/history"), SUPERVISOR).await.json;
                    let last = history["events"].as_array().unwrap().last().unwrap().clone();
                    assert_eq!(last["action"], path, "{from} + {name}");
                    assert_eq!(last["actor"], SUPERVISOR);
                    assert_eq!(last["to"]["status"], status);
                    assert_eq!(last["from"]["status"], from);
                    assert_eq!(last["ruleset"], "empty");
                }
            }
        }
    }
}

async fn transfer_to_the_current_holder_is_refused() {
    let daemon = Daemon::start().await;
    let c = &daemon.client;
    c.seed_directory().await;
    conversation_in(c, "c1", "active").await;
    c.post("/v1/conversations/c1/transfer", SUPERVISOR, json!({"representative": "ann"}))
        .await
        .problem(409, "invalid_transition");
    assert_eq!(c.used_capacity("ann").await, 2);
}

async fn resolve_keeps_the_resolver_and_gives_capacity_back() {
    let daemon = Daemon::start().await;
    let c = &daemon.client;
    c.seed_directory().await;
    conversation_in(c, "c1", "wrap_up").await;
    assert_eq!(c.used_capacity("ann").await, 2, "wrap_up still holds capacity");
    let conv = c.event("c1", json!({"type": "resolve", "note": "fixed"})).await.expect(200).json;
    assert_eq!(conv["status"], "closed");
    assert_eq!(conv["closed_reason"], "resolved");
    assert_eq!(conv["representative"], "ann");
    assert_eq!(c.used_capacity("ann").await, 0);
    let history = c.get("/v1/conversations/c1/history", SUPERVISOR).await.json;
    let actions: Vec<&str> =
        history["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["created", "accept", "wrap_up", "resolve"]);
    assert_eq!(history["events"][0]["from"], Value::Null);
    assert_eq!(history["events"][3]["note"], "fixed");
}

async fn events_its_status_does_not_allow_are_409() {
    let daemon = Daemon::start().await;
    let c = &daemon.client;
    c.seed_directory().await;
    conversation_in(c, "c1", "open").await;
    c.event("c1", json!({"type": "hold"})).await.problem(409, "invalid_transition");
    c.event("c1", json!({"type": "resolve"})).await.problem(409, "invalid_transition");
    c.event("c1", json!({"type": "explode"})).await.problem(400, "bad_request");
    c.event("c1", json!({"type": "accept"})).await.problem(400, "bad_request");
    c.event("c1", json!({"type": "accept", "representative": "nobody"})).await.problem(404, "not_found");
    c.event("c1", json!({"type": "accept", "representative": "bob"})).await.expect(200);
    c.event("c1", json!({"type": "accept", "representative": "bob"})).await.problem(409, "invalid_transition");
    c.event("c1", json!({"type": "resume"})).await.problem(409, "invalid_transition");
}
}

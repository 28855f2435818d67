//! The routing state in memory and decisions made outside the store's writer: races for
//! the last unit of capacity, facts that change between a decision and its commit, and
//! the state in memory against a fresh load after a storm of concurrent writes.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Daemon, INTEGRATION, SUPERVISOR, workdir};
use serde_json::json;
use switchboard::domain::{Id, RoutingAction, SupervisorAction, Target};
use switchboard::store::{self, Author, Command, Expect, StoreError, UsedCapacity, WriteRequest};

const CAPACITY_RULE: &str = r#"
[[rule]]
id = "room-for-it"
target = "representative"

[rule.require]
capacity_for_conversation = true
"#;

fn id(s: &str) -> Id {
    Id::parse(s).unwrap()
}

async fn daemon_with_rules(rules: &str) -> Daemon {
    let dir = workdir("");
    std::fs::write(dir.path().join("rules/capacity.toml"), rules).unwrap();
    Daemon::start_in(dir).await
}

async fn create(c: &common::Client, id: &str, units: u32) {
    let body = json!({"id": id, "record": {"entity": "case", "id": id}, "queue": "billing", "capacity_units": units});
    c.post("/v1/conversations", INTEGRATION, body).await.expect(201);
}

fn write(command: Command) -> WriteRequest {
    WriteRequest {
        author: Author { name: "test".into(), token_digest: "test".into() },
        idempotency: None,
        command,
        ruleset: "test".into(),
        now: "2026-12-01T00:00:00.000Z".into(),
        now_ms: 1_796_083_200_000,
    }
}

#[tokio::test]
async fn a_fact_that_changed_after_the_decision_is_never_committed_against() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open("sqlite://sb.db", dir.path()).await.unwrap();
    fn json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }
    store.write(write(Command::PutQueue { id: id("q"), input: json(json!({"name": "Q"})) })).await.unwrap();
    let rep = json!({"name": "Ann", "presence": "available", "capacity": 1, "queues": ["q"]});
    store.write(write(Command::PutRepresentative { id: id("ann"), input: json(rep) })).await.unwrap();
    for c in ["c1", "c2"] {
        let conv = json!({"id": c, "record": {"entity": "case", "id": c}, "queue": "q"});
        store.write(write(Command::CreateConversation(json(conv)))).await.unwrap();
    }
    let assign = |conv: &str, expect: Expect| Command::Supervise {
        id: id(conv),
        action: SupervisorAction::Route(RoutingAction::Assign, Target::Representative(id("ann"))),
        if_match: None,
        note: None,
        expect: Some(expect),
    };
    // Decided while ann was available (version 1); she goes offline before the commit.
    let decided = Expect { conversation_version: 1, target_version: 1, used_capacity: UsedCapacity::Any, record: None };
    let offline = json!({"presence": "offline"});
    store.write(write(Command::PatchRepresentative { id: id("ann"), patch: json(offline) })).await.unwrap();
    let stale = store.write(write(assign("c1", decided.clone()))).await.unwrap_err();
    assert!(matches!(stale, StoreError::Stale("the representative")), "{stale}");
    // Decided with room for one unit; another conversation takes it before the commit.
    let room =
        Expect { conversation_version: 1, target_version: 2, used_capacity: UsedCapacity::AtMost(0), record: None };
    store.write(write(assign("c2", room.clone()))).await.unwrap();
    let stale = store.write(write(assign("c1", room))).await.unwrap_err();
    assert!(matches!(stale, StoreError::Stale("the representative")), "{stale}");
    // The conversation itself moved on since the decision.
    let moved = Expect { conversation_version: 1, target_version: 2, used_capacity: UsedCapacity::Any, record: None };
    store
        .write(write(Command::Supervise {
            id: id("c1"),
            action: SupervisorAction::Remove,
            if_match: None,
            note: None,
            expect: None,
        }))
        .await
        .unwrap();
    let stale = store.write(write(assign("c1", moved))).await.unwrap_err();
    assert!(matches!(stale, StoreError::Stale("the conversation")), "{stale}");
    // Nothing of the refused writes was applied.
    let history = store.history(&id("c1")).await.unwrap().unwrap();
    assert_eq!(history.len(), 2, "created, removed: {history:?}");
    let ann = store.representative(&id("ann")).await.unwrap().unwrap();
    assert_eq!(ann.used_capacity, 1, "only c2 counts");
    assert_eq!(ann.version, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn state_in_memory_equals_a_fresh_load_after_concurrent_writes() {
    let daemon = daemon_with_rules(CAPACITY_RULE).await;
    let c = daemon.client.clone();
    c.seed_directory().await;
    let reps = ["ann", "bob", "cid", "dee", "eve"];
    for (i, r) in reps.iter().enumerate() {
        let body = json!({"name": format!("R {r}"), "presence": "available", "capacity": 2 + i, "queues": ["billing"]});
        c.put(&format!("/v1/representatives/{r}"), INTEGRATION, body).await;
    }
    for i in 0..12 {
        create(&c, &format!("c{i}"), 1 + (i % 2) as u32).await;
    }
    // A deterministic storm: each task draws its operations from its own counter.
    let tasks: Vec<_> = (0..16u64)
        .map(|t| {
            let c = c.clone();
            tokio::spawn(async move {
                let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for _ in 0..25 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let conv = format!("c{}", x % 12);
                    let rep = reps[((x >> 8) % 5) as usize];
                    let a = match (x >> 16) % 9 {
                        0 | 1 => {
                            let path = format!("/v1/conversations/{conv}/assign");
                            c.post(&path, SUPERVISOR, json!({"representative": rep})).await
                        }
                        2 => {
                            let path = format!("/v1/conversations/{conv}/transfer");
                            c.post(&path, SUPERVISOR, json!({"representative": rep})).await
                        }
                        3 => c.post(&format!("/v1/conversations/{conv}/release"), SUPERVISOR, json!({})).await,
                        4 => {
                            let presence = ["available", "busy", "offline"][((x >> 24) % 3) as usize];
                            let body = json!({"presence": presence, "capacity": (x >> 28) % 5});
                            c.patch(&format!("/v1/representatives/{rep}"), INTEGRATION, body).await
                        }
                        5 => {
                            let body = json!({"name": format!("Renamed {}", x % 97), "presence": "available",
                                              "capacity": 3, "queues": ["billing", "support"],
                                              "skills": {"billing": (x >> 32) % 11}});
                            c.put(&format!("/v1/representatives/{rep}"), INTEGRATION, body).await
                        }
                        6 => c.event(&conv, json!({"type": "hold"})).await,
                        7 => c.event(&conv, json!({"type": "accept", "representative": rep})).await,
                        _ => {
                            let body = json!({"name": format!("Billing {}", x % 7), "priority": (x >> 20) % 4});
                            c.put("/v1/queues/billing", INTEGRATION, body).await
                        }
                    };
                    assert!(a.status.as_u16() < 500, "{}", a.text);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (reps_in_memory, queues_in_memory) = daemon.state.supervisor.directory().records();
    let dir = daemon.stop().await;
    let store = store::open("sqlite://data/sb.db", dir.path()).await.unwrap();
    let (reps_stored, queues_stored) = store.directory().await.unwrap();
    assert_eq!(reps_in_memory.len(), reps_stored.len());
    for (mem, db) in reps_in_memory.iter().zip(&reps_stored) {
        assert_eq!(mem, db, "representative `{}` in memory differs from the store", db.id);
        assert_eq!(mem.last_assigned_ms, db.last_assigned_ms, "`{}`: last assignment", db.id);
    }
    assert_eq!(queues_in_memory, queues_stored);
}

on_both_backends! {
async fn supervisors_racing_for_the_last_unit_of_capacity_one_wins() {
    let daemon = daemon_with_rules(CAPACITY_RULE).await;
    let c = daemon.client.clone();
    c.seed_directory().await; // ann: capacity 3
    for i in 0..24 {
        create(&c, &format!("c{i}"), 2).await;
    }
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                c.post(&format!("/v1/conversations/c{i}/assign"), SUPERVISOR, json!({"representative": "ann"})).await
            })
        })
        .collect();
    let (mut won, mut a_loser) = (0, None);
    for (i, t) in tasks.into_iter().enumerate() {
        let a = t.await.unwrap();
        match a.status.as_u16() {
            200 => won += 1,
            422 => {
                a_loser = Some(i);
                let a = a.problem(422, "not_eligible");
                assert_eq!(a.json["reasons"][0]["rule"], "room-for-it", "{}", a.text);
                assert_eq!(
                    a.json["reasons"][0]["detail"], "free capacity 1 is below the conversation's 2 units",
                    "the loser is refused for capacity, decided against the winner's commit: {}",
                    a.text
                );
            }
            other => panic!("unexpected {other}: {}", a.text),
        }
    }
    assert_eq!(won, 1, "3 units of capacity hold one conversation of 2 units");
    assert_eq!(c.used_capacity("ann").await, 2, "the capacity invariant");
    // The dialog agrees for a conversation that lost: nobody fits any more.
    let loser = a_loser.unwrap();
    let dialog = c
        .get(
            &format!("/v1/conversations/c{loser}/candidates?action=assign&target=representative&explain=true"),
            SUPERVISOR,
        )
        .await
        .expect(200)
        .json;
    let excluded: Vec<&str> =
        dialog["excluded"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert!(excluded.contains(&"ann"), "{dialog}");
}

async fn exactly_the_free_capacity_is_handed_out_under_a_capacity_rule() {
    let daemon = daemon_with_rules(CAPACITY_RULE).await;
    let c = daemon.client.clone();
    c.seed_directory().await;
    c.patch("/v1/representatives/bob", INTEGRATION, json!({"capacity": 5, "queues": ["billing"]})).await.expect(200);
    for i in 0..30 {
        create(&c, &format!("c{i}"), 1).await;
    }
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let c = c.clone();
            let rep = if i % 2 == 0 { "ann" } else { "bob" };
            tokio::spawn(async move {
                c.post(&format!("/v1/conversations/c{i}/assign"), SUPERVISOR, json!({"representative": rep})).await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        let a = t.await.unwrap();
        match a.status.as_u16() {
            200 => won += 1,
            422 => assert_eq!(a.code(), "not_eligible", "{}", a.text),
            other => panic!("unexpected {other}: {}", a.text),
        }
    }
    assert_eq!(won, 3 + 5, "ann takes 3, bob 5, nobody more");
    assert_eq!(c.used_capacity("ann").await, 3);
    assert_eq!(c.used_capacity("bob").await, 5);
}

async fn the_dialog_pages_with_limit_and_counts_totals() {
    let rules = r#"
[[rule]]
id = "reachable"
target = "representative"

[rule.require]
presence = ["available"]

[[rule.rank]]
by = "free_capacity"
"#;
    let daemon = daemon_with_rules(rules).await;
    let c = daemon.client.clone();
    c.seed_directory().await; // ann available (free 3), bob busy
    for (r, presence, capacity) in [("cid", "available", 5), ("dee", "available", 1), ("eve", "offline", 9)] {
        let body = json!({"name": format!("{} Z", r.to_uppercase()), "presence": presence, "capacity": capacity});
        c.put(&format!("/v1/representatives/{r}"), INTEGRATION, body).await.expect(201);
    }
    create(&c, "c1", 1).await;
    let dialog = |q: &str| {
        let c = c.clone();
        let path = format!("/v1/conversations/c1/candidates?action=assign&target=representative{q}");
        async move { c.get(&path, SUPERVISOR).await }
    };
    let all = dialog("").await.expect(200).json;
    let ids = |v: &serde_json::Value, key: &str| -> Vec<String> {
        v[key].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(ids(&all, "candidates"), ["cid", "ann", "dee"], "best first: free capacity 5, 3, 1");
    assert_eq!(all["total"], 3);
    assert!(all.get("excluded_total").is_none() && all.get("excluded").is_none(), "{all}");
    let two = dialog("&limit=2&explain=true").await.expect(200).json;
    assert_eq!(ids(&two, "candidates"), ["cid", "ann"]);
    assert_eq!(two["total"], 3, "total counts every eligible one, not the page");
    assert_eq!(ids(&two, "excluded"), ["bob", "eve"], "excluded by name: `Bob Stone`, `EVE Z`");
    assert_eq!(two["excluded_total"], 2);
    let one = dialog("&limit=1&explain=true").await.expect(200).json;
    assert_eq!(ids(&one, "excluded"), ["bob"]);
    assert_eq!(one["excluded_total"], 2);
    let filtered = dialog("&limit=1000&name=z&explain=true").await.expect(200).json;
    assert_eq!(ids(&filtered, "candidates"), ["cid", "dee"]);
    assert_eq!((filtered["total"].as_u64(), filtered["excluded_total"].as_u64()), (Some(2), Some(1)));
    for bad in ["0", "1001", "ten", "-1", "2.0"] {
        dialog(&format!("&limit={bad}")).await.problem(400, "bad_request");
    }
    // A transfer's holder is neither listed nor counted.
    c.post("/v1/conversations/c1/assign", SUPERVISOR, json!({"representative": "cid"})).await.expect(200);
    let path = "/v1/conversations/c1/candidates?action=transfer&target=representative&limit=1";
    let transfer = c.get(path, SUPERVISOR).await.expect(200).json;
    assert_eq!(ids(&transfer, "candidates"), ["ann"]);
    assert_eq!(transfer["total"], 2);
    let queues = c.get("/v1/conversations/c1/candidates?action=transfer&target=queue&limit=1", SUPERVISOR).await;
    let queues = queues.expect(200).json;
    assert_eq!(queues["candidates"].as_array().unwrap().len(), 1);
    assert_eq!(queues["total"], 2);
}
}

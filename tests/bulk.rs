//! `POST /v1/conversations/bulk`: each item as the single action, in order, on its own;
//! validation of the whole request; one answer per Idempotency-Key.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Daemon, INTEGRATION, SUPERVISOR, conversation_in, workdir};
use reqwest::Method;
use serde_json::{Value, json};

/// Representatives must be reachable and have room for the conversation.
const CAPACITY_RULES: &str = r#"
[[rule]]
id = "reachable-with-room"
description = "Available or busy, with free capacity for the conversation."
target = "representative"

[rule.require]
presence = ["available", "busy"]
capacity_for_conversation = true
"#;

async fn start_with_rules(rules: &str) -> Daemon {
    let dir = workdir("");
    std::fs::write(dir.path().join("rules/capacity.toml"), rules).unwrap();
    Daemon::start_in(dir).await
}

async fn feed_head(c: &common::Client) -> u64 {
    let mut after = 0;
    loop {
        let page = c.get(&format!("/v1/changes?after={after}&limit=1000"), SUPERVISOR).await.expect(200).json;
        let next = page["next_after"].as_u64().unwrap();
        if next == after {
            return after;
        }
        after = next;
    }
}

async fn history_actions(c: &common::Client, id: &str) -> Vec<String> {
    let h = c.get(&format!("/v1/conversations/{id}/history"), SUPERVISOR).await.expect(200).json;
    h["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect()
}

on_both_backends! {
async fn mixed_outcomes_come_back_per_item_in_order() {
    let daemon = start_with_rules(CAPACITY_RULES).await;
    let c = &daemon.client;
    c.seed_directory().await;
    c.put("/v1/representatives/kim", INTEGRATION,
        json!({"name": "Kim", "presence": "available", "capacity": 4, "queues": ["billing"]})).await.expect(201);
    for id in ["c1", "c2", "c4"] {
        conversation_in(c, id, "open").await;
    }
    conversation_in(c, "c3", "active").await;
    let head = feed_head(c).await;
    // Each conversation takes 2 units: kim (capacity 4) has room for the first two in
    // the request's order, not for the third.
    let ids = ["c1", "missing", "c3", "c2", "c4"];
    let a = c.post("/v1/conversations/bulk", SUPERVISOR,
        json!({"action": "assign", "ids": ids, "representative": "kim", "note": "backlog"})).await.expect(200);
    let results = a.json["results"].as_array().unwrap();
    let got: Vec<(&str, u64)> = results.iter().map(|r| (r["id"].as_str().unwrap(), r["status"].as_u64().unwrap())).collect();
    assert_eq!(got, vec![("c1", 200), ("missing", 404), ("c3", 409), ("c2", 200), ("c4", 422)], "{}", a.text);
    for r in results {
        if r["status"] == 200 {
            assert!(r.get("problem").is_none(), "{r}");
            assert_eq!(r["conversation"]["status"], "active");
            assert_eq!(r["conversation"]["representative"], "kim");
        } else {
            assert!(r.get("conversation").is_none(), "{r}");
            assert_eq!(r["problem"]["status"], r["status"], "{r}");
            assert!(r["problem"]["detail"].as_str().is_some_and(|d| !d.is_empty()), "{r}");
        }
    }
    assert_eq!(results[1]["problem"]["code"], "not_found");
    assert_eq!(results[2]["problem"]["code"], "invalid_transition");
    assert_eq!(results[4]["problem"]["code"], "not_eligible");
    assert_eq!(results[4]["problem"]["reasons"][0]["rule"], "reachable-with-room");
    // The applied ones are in history, by the caller, with the note; one change each.
    for id in ["c1", "c2"] {
        assert_eq!(history_actions(c, id).await, ["created", "assign"]);
        let h = c.get(&format!("/v1/conversations/{id}/history"), SUPERVISOR).await.json;
        assert_eq!(h["events"][1]["actor"], SUPERVISOR);
        assert_eq!(h["events"][1]["note"], "backlog");
    }
    assert_eq!(c.used_capacity("kim").await, 4, "exactly the two applied items count");
    assert_eq!(feed_head(c).await, head + 2, "one change per applied item");
    // The refused ones are unchanged.
    let c4 = c.get("/v1/conversations/c4", SUPERVISOR).await.json;
    assert_eq!((c4["status"].clone(), c4["version"].clone()), (json!("open"), json!(1)));
    assert_eq!(history_actions(c, "c3").await, ["created", "accept"]);
    // Release and remove in bulk, each item as the single action.
    let a = c.post("/v1/conversations/bulk", SUPERVISOR, json!({"action": "release", "ids": ["c2", "c4", "c1"]}))
        .await.expect(200);
    let statuses: Vec<&Value> = a.json["results"].as_array().unwrap().iter().map(|r| &r["status"]).collect();
    assert_eq!(statuses, [200, 409, 200]);
    assert_eq!(c.used_capacity("kim").await, 0);
    let a = c.post("/v1/conversations/bulk", SUPERVISOR, json!({"action": "remove", "ids": ["c4", "c1"]}))
        .await.expect(200);
    assert_eq!(a.json["results"][0]["conversation"]["closed_reason"], "removed");
    assert_eq!(a.json["results"][1]["conversation"]["status"], "closed");
}

async fn a_bad_request_is_refused_whole() {
    let daemon = Daemon::start().await;
    let c = &daemon.client;
    c.seed_directory().await;
    conversation_in(c, "c1", "active").await;
    let many: Vec<String> = (0..1001).map(|i| format!("c{i}")).collect();
    let bad = [
        (json!({"action": "release", "ids": []}), "1 to 1000"),
        (json!({"action": "release", "ids": many}), "1 to 1000"),
        (json!({"action": "release", "ids": ["c1", "c1"]}), "twice"),
        (json!({"action": "release", "ids": ["c1", "bad id"]}), "ids[1]"),
        (json!({"action": "release", "ids": ["c1", 7]}), "invalid type"),
        (json!({"action": "release", "ids": ["c1"], "representative": "ann"}), "no target"),
        (json!({"action": "remove", "ids": ["c1"], "queue": "billing"}), "no target"),
        (json!({"action": "assign", "ids": ["c1"]}), "need the target"),
        (json!({"action": "transfer", "ids": ["c1"], "representative": "ann", "queue": "billing"}), "not both"),
        (json!({"action": "close", "ids": ["c1"]}), "unknown variant"),
        (json!({"ids": ["c1"]}), "missing field `action`"),
        (json!({"action": "release", "ids": ["c1"], "if_match": 1}), "unknown field"),
    ];
    for (body, hint) in bad {
        let a = c.post("/v1/conversations/bulk", SUPERVISOR, body.clone()).await.problem(400, "bad_request");
        assert!(a.json["detail"].as_str().unwrap().contains(hint), "{body}: {}", a.text);
    }
    let body = json!({"action": "release", "ids": ["c1"]});
    let a = c.post_with("/v1/conversations/bulk", SUPERVISOR, &[("if-match", "\"2\"")], body.clone()).await;
    assert!(a.problem(400, "bad_request").json["detail"].as_str().unwrap().contains("If-Match"));
    c.post("/v1/conversations/bulk?dry_run=true", SUPERVISOR, body.clone()).await.problem(400, "bad_request");
    c.post("/v1/conversations/bulk", INTEGRATION, body.clone()).await.problem(403, "forbidden");
    c.send(Method::POST, "/v1/conversations/bulk", None, &[], None).await.problem(401, "unauthorized");
    // Nothing was applied by any of them.
    let conv = c.get("/v1/conversations/c1", SUPERVISOR).await.json;
    assert_eq!((conv["status"].clone(), conv["version"].clone()), (json!("active"), json!(2)));
}

async fn an_idempotency_key_covers_the_whole_request() {
    let daemon = Daemon::start().await;
    let c = &daemon.client;
    c.seed_directory().await;
    for id in ["c1", "c2"] {
        conversation_in(c, id, "active").await;
    }
    conversation_in(c, "c3", "open").await;
    let body = json!({"action": "release", "ids": ["c1", "c3", "c2"]});
    let key = [("idempotency-key", "bulk-1")];
    let first = c.post_with("/v1/conversations/bulk", SUPERVISOR, &key, body.clone()).await.expect(200);
    let statuses: Vec<&Value> = first.json["results"].as_array().unwrap().iter().map(|r| &r["status"]).collect();
    assert_eq!(statuses, [200, 409, 200]);
    let head = feed_head(c).await;
    // A retry is the first answer, item by item (the 409 too), and changes nothing.
    let again = c.post_with("/v1/conversations/bulk", SUPERVISOR, &key, body.clone()).await.expect(200);
    assert_eq!(again.json, first.json);
    assert_eq!(feed_head(c).await, head);
    assert_eq!(history_actions(c, "c1").await, ["created", "accept", "release"]);
    // The same key with another request is refused; another key runs it again.
    let other = json!({"action": "remove", "ids": ["c1"]});
    c.post_with("/v1/conversations/bulk", SUPERVISOR, &key, other).await.problem(409, "idempotency_key_reused");
    let fresh = c.post_with("/v1/conversations/bulk", SUPERVISOR, &[("idempotency-key", "bulk-2")], body).await;
    let fresh = fresh.expect(200).json;
    let statuses: Vec<&Value> = fresh["results"].as_array().unwrap().iter().map(|r| &r["status"]).collect();
    assert_eq!(statuses, [409, 409, 409], "all three are open now");
}

async fn a_bulk_transfer_to_a_queue_and_concurrent_copies_apply_once() {
    let daemon = Daemon::start().await;
    let c = &daemon.client;
    c.seed_directory().await;
    let ids: Vec<String> = (0..40).map(|i| format!("c{i}")).collect();
    for id in &ids {
        conversation_in(c, id, "active").await;
    }
    // Transfer to a queue is allowed again from `open`: only the key keeps copies of the
    // request from applying an item twice.
    let body = json!({"action": "transfer", "ids": ids, "queue": "support"});
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (c, body) = (c.clone(), body.clone());
            tokio::spawn(async move {
                c.post_with("/v1/conversations/bulk", SUPERVISOR, &[("idempotency-key", "same")], body).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap().expect(200).json);
    }
    for a in &answers {
        assert!(a["results"].as_array().unwrap().iter().all(|r| r["status"] == 200), "{a}");
    }
    for id in &ids {
        assert_eq!(history_actions(c, id).await, ["created", "accept", "transfer"], "{id}");
    }
    assert_eq!(c.used_capacity("ann").await, 0);
}
}

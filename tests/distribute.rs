//! `POST /v1/queues/{id}/distribute` and queue statistics: capacity respected exactly,
//! the serving order, dry runs that write nothing, concurrent supervisors, and counts
//! that match a recount, on a second daemon too.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Backend, Client, Daemon, INTEGRATION, SUPERVISOR, eventually, workdir};
use serde_json::{Value, json};

/// Reachable representatives with room for the conversation, the most free capacity first.
const RULES: &str = r#"
[[rule]]
id = "reachable-with-room"
description = "Available or busy, with free capacity for the conversation."
target = "representative"

[rule.require]
presence = ["available", "busy"]
capacity_for_conversation = true

[[rule.rank]]
by = "free_capacity"
weight = 1.0
"#;

async fn start() -> Daemon {
    let dir = workdir("");
    std::fs::write(dir.path().join("rules/routing.toml"), RULES).unwrap();
    Daemon::start_in(dir).await
}

async fn rep(c: &Client, id: &str, presence: &str, capacity: u32) {
    let body = json!({"name": id.to_uppercase(), "presence": presence, "capacity": capacity, "queues": ["billing"]});
    c.put(&format!("/v1/representatives/{id}"), INTEGRATION, body).await.expect(201);
}

async fn conv(c: &Client, id: &str, priority: u32, units: u32) {
    let body = json!({"id": id, "record": {"entity": "case", "id": id}, "queue": "billing",
                      "priority": priority, "capacity_units": units});
    c.post("/v1/conversations", INTEGRATION, body).await.expect(201);
}

async fn feed_head(c: &Client) -> u64 {
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

/// Every conversation (closed ones too), as listed.
async fn all_conversations(c: &Client) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor = String::new();
    loop {
        let q = "status=open&status=active&status=waiting&status=wrap_up&status=closed&limit=1000";
        let page = c.get(&format!("/v1/conversations?{q}{cursor}"), SUPERVISOR).await.expect(200).json;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return items,
        }
    }
}

/// The statistics the listing implies, per queue: counts by status and the oldest open.
async fn recount(c: &Client) -> BTreeMap<String, (Value, Value)> {
    let mut out: BTreeMap<String, (BTreeMap<&str, u64>, Option<String>)> = BTreeMap::new();
    let convs = all_conversations(c).await;
    for conv in &convs {
        let entry = out.entry(conv["queue"].as_str().unwrap().to_owned()).or_default();
        let status = conv["status"].as_str().unwrap();
        if status == "closed" {
            continue;
        }
        for s in ["open", "active", "waiting", "wrap_up"] {
            entry.0.entry(s).or_insert(0);
        }
        *entry.0.get_mut(status).unwrap() += 1;
        let created = conv["created_at"].as_str().unwrap().to_owned();
        if status == "open" && entry.1.as_ref().is_none_or(|o| created < *o) {
            entry.1 = Some(created);
        }
    }
    out.into_iter()
        .map(|(q, (counts, oldest))| {
            let counts = if counts.is_empty() {
                json!({"open": 0, "active": 0, "waiting": 0, "wrap_up": 0})
            } else {
                json!(counts)
            };
            (q, (counts, json!(oldest)))
        })
        .collect()
}

async fn stats_by_queue(c: &Client) -> BTreeMap<String, (Value, Value)> {
    let all = c.get("/v1/stats", INTEGRATION).await.expect(200).json;
    all["queues"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["conversations"].as_object().unwrap().values().any(|n| n != 0) || !q["oldest_open_at"].is_null())
        .map(|q| (q["queue"].as_str().unwrap().to_owned(), (q["conversations"].clone(), q["oldest_open_at"].clone())))
        .collect()
}

on_both_backends! {
async fn distribution_takes_priority_then_age_and_respects_capacity_exactly() {
    let daemon = start().await;
    let c = &daemon.client;
    c.put("/v1/queues/billing", INTEGRATION, json!({"name": "Billing"})).await.expect(201);
    rep(c, "r1", "available", 2).await;
    rep(c, "r2", "busy", 3).await;
    rep(c, "r3", "offline", 10).await;
    for (i, priority) in [2, 0, 1, 0, 2, 1, 0, 0].into_iter().enumerate() {
        conv(c, &format!("c{i}"), priority, 1).await;
    }
    let stats = c.get("/v1/queues/billing/stats", SUPERVISOR).await.expect(200).json;
    assert_eq!(stats["conversations"], json!({"open": 8, "active": 0, "waiting": 0, "wrap_up": 0}));
    assert_eq!(stats["representatives"], json!({"members": 3, "available": 1, "with_free_capacity": 2}));
    let c0 = c.get("/v1/conversations/c0", SUPERVISOR).await.json;
    assert_eq!(stats["oldest_open_at"], c0["created_at"]);
    // A dry run writes nothing.
    let head = feed_head(c).await;
    let dry = c.post("/v1/queues/billing/distribute", SUPERVISOR, json!({"dry_run": true, "max": 1000})).await;
    let dry = dry.expect(200).json;
    assert_eq!(feed_head(c).await, head);
    for i in 0..8 {
        let conv = c.get(&format!("/v1/conversations/c{i}"), SUPERVISOR).await.json;
        assert_eq!((conv["version"].clone(), conv["status"].clone()), (json!(1), json!("open")));
    }
    assert_eq!((c.used_capacity("r1").await, c.used_capacity("r2").await), (0, 0));
    // Priority 0 first (c1, c3, c6, c7), then 1 (c2, c5), then 2 (c0, c4); each goes to
    // the most free capacity left by the ones before it (ties by name).
    let pairs: Vec<(&str, &str)> = dry["assigned"].as_array().unwrap().iter()
        .map(|a| (a["conversation"].as_str().unwrap(), a["representative"].as_str().unwrap())).collect();
    assert_eq!(pairs, [("c1", "r2"), ("c3", "r1"), ("c6", "r2"), ("c7", "r1"), ("c2", "r2")], "{dry}");
    let left: Vec<&str> = dry["unassigned"].as_array().unwrap().iter().map(|u| u["conversation"].as_str().unwrap()).collect();
    assert_eq!(left, ["c5", "c0", "c4"]);
    let reason = dry["unassigned"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("no eligible representative") && reason.contains("reachable-with-room"), "{reason}");
    assert!(dry["ruleset"].as_str().is_some_and(|r| !r.is_empty()));
    // The real run does exactly what the dry run said.
    let real = c.post("/v1/queues/billing/distribute", SUPERVISOR, json!({"max": 1000})).await.expect(200).json;
    assert_eq!(real, dry);
    assert_eq!(feed_head(c).await, head + 5, "one change per assignment");
    assert_eq!((c.used_capacity("r1").await, c.used_capacity("r2").await, c.used_capacity("r3").await), (2, 3, 0));
    let h = c.get("/v1/conversations/c1/history", SUPERVISOR).await.json;
    assert_eq!(h["events"][1]["action"], "assign");
    assert_eq!(h["events"][1]["actor"], SUPERVISOR);
    for id in ["c5", "c0", "c4"] {
        assert_eq!(c.get(&format!("/v1/conversations/{id}"), SUPERVISOR).await.json["status"], "open");
    }
    let stats = c.get("/v1/queues/billing/stats", INTEGRATION).await.expect(200).json;
    assert_eq!(stats["conversations"], json!({"open": 3, "active": 5, "waiting": 0, "wrap_up": 0}));
    assert_eq!(stats["representatives"]["with_free_capacity"], 0);
    assert_eq!(stats["oldest_open_at"], c0["created_at"]);
    // Nothing left that fits: an empty body takes the defaults and assigns nothing.
    let again = c.post("/v1/queues/billing/distribute", SUPERVISOR, json!({})).await.expect(200).json;
    assert_eq!(again["assigned"], json!([]));
    assert_eq!(again["unassigned"].as_array().unwrap().len(), 3);
    let empty = c.send(reqwest::Method::POST, "/v1/queues/billing/distribute", Some(SUPERVISOR), &[], None).await;
    assert_eq!(empty.expect(200).json["unassigned"].as_array().unwrap().len(), 3);
}

async fn distribution_requests_are_validated() {
    let daemon = start().await;
    let c = &daemon.client;
    c.put("/v1/queues/billing", INTEGRATION, json!({"name": "Billing"})).await.expect(201);
    for body in [json!({"max": 0}), json!({"max": 1001}), json!({"max": 5.0}), json!({"max": true}),
                 json!({"dry_run": "yes"}), json!({"limit": 5}), json!([1])] {
        c.post("/v1/queues/billing/distribute", SUPERVISOR, body).await.problem(400, "bad_request");
    }
    let a = c.post_with("/v1/queues/billing/distribute", SUPERVISOR, &[("if-match", "\"1\"")], json!({})).await;
    a.problem(400, "bad_request");
    c.post("/v1/queues/billing/distribute?max=5", SUPERVISOR, json!({})).await.problem(400, "bad_request");
    c.post("/v1/queues/bad%20id/distribute", SUPERVISOR, json!({})).await.problem(400, "bad_request");
    c.post("/v1/queues/nowhere/distribute", SUPERVISOR, json!({})).await.problem(404, "not_found");
    c.post("/v1/queues/billing/distribute", INTEGRATION, json!({})).await.problem(403, "forbidden");
    c.get("/v1/queues/nowhere/stats", SUPERVISOR).await.problem(404, "not_found");
    c.get("/v1/queues/billing/stats?x=1", SUPERVISOR).await.problem(400, "bad_request");
    c.get("/v1/stats?queue=billing", SUPERVISOR).await.problem(400, "bad_request");
}

async fn concurrent_supervisors_never_assign_twice_or_overfill() {
    let daemon = start().await;
    let c = &daemon.client;
    c.put("/v1/queues/billing", INTEGRATION, json!({"name": "Billing"})).await.expect(201);
    for r in ["r1", "r2", "r3", "r4"] {
        rep(c, r, "available", 5).await;
    }
    let ids: Vec<String> = (0..40).map(|i| format!("c{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        conv(c, id, (i % 3) as u32, 1 + (i % 2) as u32).await;
    }
    // Two distributions, a bulk assign and single assigns, all at once, on one queue.
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.post("/v1/queues/billing/distribute", SUPERVISOR, json!({"max": 1000})).await.expect(200).json
        }));
    }
    let (c2, bulk_ids) = (c.clone(), ids.clone());
    tasks.push(tokio::spawn(async move {
        let body = json!({"action": "assign", "ids": bulk_ids, "representative": "r1"});
        c2.post("/v1/conversations/bulk", SUPERVISOR, body).await.expect(200).json
    }));
    for id in ids.iter().rev().take(10) {
        let (c, id) = (c.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            c.post(&format!("/v1/conversations/{id}/assign"), SUPERVISOR, json!({"representative": "r2"})).await.json
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut held: BTreeMap<String, i64> = BTreeMap::new();
    for id in &ids {
        let h = c.get(&format!("/v1/conversations/{id}/history"), SUPERVISOR).await.json;
        let assigns = h["events"].as_array().unwrap().iter().filter(|e| e["action"] == "assign").count();
        assert!(assigns <= 1, "{id} was assigned {assigns} times: {h}");
        let conv = c.get(&format!("/v1/conversations/{id}"), SUPERVISOR).await.json;
        if let Some(r) = conv["representative"].as_str() {
            *held.entry(r.to_owned()).or_default() += conv["capacity_units"].as_i64().unwrap();
        }
    }
    for r in ["r1", "r2", "r3", "r4"] {
        let used = c.used_capacity(r).await;
        assert_eq!(used, held.get(r).copied().unwrap_or(0), "{r}: used capacity is what it holds");
        assert!(used <= 5, "{r} is above its capacity: {used}");
    }
    // One more distribution leaves nothing open that would still fit anyone.
    c.post("/v1/queues/billing/distribute", SUPERVISOR, json!({"max": 1000})).await.expect(200);
    let mut smallest_open = i64::MAX;
    for id in &ids {
        let conv = c.get(&format!("/v1/conversations/{id}"), SUPERVISOR).await.json;
        if conv["status"] == "open" {
            smallest_open = smallest_open.min(conv["capacity_units"].as_i64().unwrap());
        }
    }
    for r in ["r1", "r2", "r3", "r4"] {
        let free = 5 - c.used_capacity(r).await;
        assert!(free < smallest_open, "{r} has {free} free units left and a conversation of {smallest_open} is open");
    }
}

async fn statistics_match_a_recount_after_a_mixed_workload() {
    let daemon = start().await;
    let c = &daemon.client;
    c.put("/v1/queues/billing", INTEGRATION, json!({"name": "Billing"})).await.expect(201);
    c.put("/v1/queues/support", INTEGRATION, json!({"name": "Support"})).await.expect(201);
    for r in ["r1", "r2", "r3"] {
        rep(c, r, "available", 50).await;
    }
    // A second daemon on the same database (PostgreSQL only: SQLite is one daemon's).
    let second = if common::backend() == Backend::Postgres {
        let config = std::fs::read_to_string(daemon.dir.path().join("switchboard.toml")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("switchboard.toml"), config).unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        std::fs::write(dir.path().join("rules/routing.toml"), RULES).unwrap();
        Some(Daemon::start_in(dir).await)
    } else {
        None
    };
    let ids: Vec<String> = (0..60).map(|i| format!("m{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        // Half of them through the second daemon where there is one.
        let on = second.as_ref().filter(|_| i % 2 == 1).map_or(c, |d| &d.client);
        conv(on, id, (i % 4) as u32, 1).await;
    }
    let act = |id: &str, path: &str, body: Value| {
        let (c, path) = (c.clone(), format!("/v1/conversations/{id}/{path}"));
        async move { c.post(&path, SUPERVISOR, body).await }
    };
    let event = |id: &str, body: Value| {
        let (c, path) = (c.clone(), format!("/v1/conversations/{id}/events"));
        async move { c.post(&path, INTEGRATION, body).await }
    };
    for (i, id) in ids.iter().enumerate() {
        let r = format!("r{}", 1 + i % 3);
        match i % 8 {
            0 => {}
            1 => { act(id, "assign", json!({"representative": r})).await.expect(200); }
            2 => {
                act(id, "assign", json!({"representative": r})).await.expect(200);
                event(id, json!({"type": "hold"})).await.expect(200);
            }
            3 => {
                event(id, json!({"type": "accept", "representative": r})).await.expect(200);
                event(id, json!({"type": "wrap_up"})).await.expect(200);
            }
            4 => { event(id, json!({"type": "accept", "representative": r})).await.expect(200);
                   event(id, json!({"type": "resolve"})).await.expect(200); }
            5 => { act(id, "remove", json!({})).await.expect(200); }
            6 => { act(id, "transfer", json!({"queue": "support"})).await.expect(200); }
            _ => {
                act(id, "assign", json!({"representative": r})).await.expect(200);
                act(id, "release", json!({})).await.expect(200);
            }
        }
    }
    let bulk = json!({"action": "assign", "ids": ["m08", "m16", "m24"], "representative": "r3"});
    c.post("/v1/conversations/bulk", SUPERVISOR, bulk).await.expect(200);
    c.post("/v1/queues/support/distribute", SUPERVISOR, json!({"max": 3})).await.expect(200);
    let expected = recount(c).await;
    assert_eq!(stats_by_queue(c).await, expected);
    assert!(expected["billing"].0["waiting"].as_u64().unwrap() > 0, "the workload covers every status");
    if let Some(second) = &second {
        // The second daemon's backlog follows the first's writes through the change feed.
        let c2 = second.client.clone();
        let want = expected.clone();
        eventually(Duration::from_secs(10), || {
            let (c2, want) = (c2.clone(), want.clone());
            async move { stats_by_queue(&c2).await == want }
        })
        .await;
        // And a write through the second shows on both.
        let c2 = &second.client;
        c2.post("/v1/conversations/bulk", SUPERVISOR, json!({"action": "remove", "ids": ["m00", "m01"]}))
            .await
            .expect(200);
        let want = recount(c).await;
        assert_eq!(stats_by_queue(c2).await, want);
        eventually(Duration::from_secs(10), || {
            let (c, want) = (c.clone(), want.clone());
            async move { stats_by_queue(&c).await == want }
        })
        .await;
    }
}
}

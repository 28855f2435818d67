//! Racing actions on one conversation: one winner per version, an unbroken history and
//! exact capacity accounting.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Daemon, INTEGRATION, SUPERVISOR, conversation_in};
use serde_json::{Value, json};

on_both_backends! {
async fn same_if_match_exactly_one_wins() {
    let daemon = Daemon::start().await;
    let c = daemon.client.clone();
    c.seed_directory().await;
    for i in 0..6 {
        c.put(&format!("/v1/representatives/r{i}"), INTEGRATION, json!({"name": format!("R{i}"), "capacity": 5}))
            .await
            .expect(201);
    }
    conversation_in(&c, "c1", "active").await;
    let version = c.get("/v1/conversations/c1", SUPERVISOR).await.json["version"].as_u64().unwrap();
    let etag = format!("\"{version}\"");
    let tasks: Vec<_> = (0..48)
        .map(|i| {
            let c = c.clone();
            let etag = etag.clone();
            tokio::spawn(async move {
                let body = json!({"representative": format!("r{}", i % 6)});
                c.post_with("/v1/conversations/c1/transfer", SUPERVISOR, &[("if-match", &etag)], body).await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let a = t.await.unwrap();
        match a.status.as_u16() {
            200 => ok += 1,
            412 => assert_eq!(a.code(), "version_mismatch"),
            other => panic!("unexpected {other}: {}", a.text),
        }
    }
    assert_eq!(ok, 1, "exactly one transfer with the same If-Match succeeds");
    let conv = c.get("/v1/conversations/c1", SUPERVISOR).await.json;
    assert_eq!(conv["version"], version + 1);
}

async fn without_if_match_history_is_one_chain_and_capacity_adds_up() {
    let daemon = Daemon::start().await;
    let c = daemon.client.clone();
    c.seed_directory().await;
    let reps: Vec<String> = (0..5).map(|i| format!("r{i}")).collect();
    for r in &reps {
        c.put(&format!("/v1/representatives/{r}"), INTEGRATION, json!({"name": r, "capacity": 10})).await.expect(201);
    }
    for i in 0..4 {
        c.create(&format!("c{i}")).await;
    }
    // Every task fires a mix of actions at the four conversations at once.
    let tasks: Vec<_> = (0..64)
        .map(|i: usize| {
            let c = c.clone();
            let rep = reps[i % reps.len()].clone();
            tokio::spawn(async move {
                let conv = format!("c{}", i % 4);
                let (action, body) = match i % 5 {
                    0 => ("assign", json!({"representative": rep})),
                    1 => ("transfer", json!({"representative": rep})),
                    2 => ("release", json!({})),
                    3 => ("transfer", json!({"queue": if i.is_multiple_of(2) { "billing" } else { "support" }})),
                    _ => ("transfer", json!({"representative": rep})),
                };
                let a = c.post(&format!("/v1/conversations/{conv}/{action}"), SUPERVISOR, body).await;
                assert!(matches!(a.status.as_u16(), 200 | 409), "{action}: {}", a.text);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut held: std::collections::HashMap<String, i64> = Default::default();
    for i in 0..4 {
        let id = format!("c{i}");
        let conv = c.get(&format!("/v1/conversations/{id}"), SUPERVISOR).await.json;
        let history = c.get(&format!("/v1/conversations/{id}/history"), SUPERVISOR).await.json;
        let events = history["events"].as_array().unwrap();
        assert_eq!(events.len() as u64, conv["version"].as_u64().unwrap(), "one event per version");
        for (n, pair) in events.windows(2).enumerate() {
            assert_eq!(pair[1]["seq"], n as u64 + 2);
            assert_eq!(pair[1]["from"], pair[0]["to"], "{id}: event {} does not start where {} ended", n + 2, n + 1);
        }
        let last: &Value = &events.last().unwrap()["to"];
        assert_eq!(last["status"], conv["status"]);
        assert_eq!(last["representative"], conv["representative"]);
        if conv["status"] == "active" {
            *held.entry(conv["representative"].as_str().unwrap().to_owned()).or_default() += 2;
        }
    }
    for r in &reps {
        assert_eq!(c.used_capacity(r).await, held.get(r).copied().unwrap_or(0), "{r}");
    }
}

async fn one_key_sent_many_times_at_once_is_applied_once() {
    let daemon = Daemon::start().await;
    let c = daemon.client.clone();
    c.seed_directory().await;
    for i in 0..4 {
        c.put(&format!("/v1/representatives/r{i}"), INTEGRATION, json!({"name": format!("R{i}"), "capacity": 50}))
            .await
            .expect(201);
        c.create(&format!("c{i}")).await;
    }
    // Eight copies of each of four requests at once: the copies share a write batch
    // (and each other's claims on the key) as often as not.
    let tasks: Vec<_> = (0..32)
        .map(|i: usize| {
            let c = c.clone();
            tokio::spawn(async move {
                let n = i % 4;
                let key = format!("k{n}");
                let body = json!({"representative": format!("r{n}")});
                let path = format!("/v1/conversations/c{n}/assign");
                (n, c.post_with(&path, SUPERVISOR, &[("idempotency-key", &key)], body).await)
            })
        })
        .collect();
    let mut answers: Vec<Vec<Value>> = vec![Vec::new(); 4];
    for t in tasks {
        let (n, a) = t.await.unwrap();
        assert_eq!(a.status.as_u16(), 200, "{}", a.text);
        answers[n].push(a.json);
    }
    for (n, answers) in answers.iter().enumerate() {
        assert!(answers.iter().all(|a| a == &answers[0]), "c{n}: every copy gets the first answer: {answers:?}");
        let conv = c.get(&format!("/v1/conversations/c{n}"), SUPERVISOR).await.json;
        assert_eq!(conv["version"], 2, "c{n} was assigned once");
        let history = c.get(&format!("/v1/conversations/c{n}/history"), SUPERVISOR).await.json;
        assert_eq!(history["events"].as_array().unwrap().len(), 2, "c{n}: created and assigned: {history}");
        assert_eq!(conv["representative"], format!("r{n}"));
        assert_eq!(c.used_capacity(&format!("r{n}")).await, conv["capacity_units"].as_i64().unwrap(), "r{n} counts it once");
    }
    let feed = c.get("/v1/changes?limit=1000", SUPERVISOR).await.json;
    let assigns = feed["items"].as_array().unwrap().iter().filter(|ch| ch["action"] == "assign").count();
    assert_eq!(assigns, 4, "one change per applied assignment: {feed}");
}
}

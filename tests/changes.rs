//! The change feed: what gets a position and what does not, paging, the event stream and
//! its resumption, on both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{ADMIN, Client, Daemon, INTEGRATION, SUPERVISOR, conversation_in};
use reqwest::Method;
use serde_json::{Value, json};

async fn all_changes(c: &Client) -> Vec<Value> {
    let page = c.get("/v1/changes?limit=1000", SUPERVISOR).await.expect(200).json;
    page["items"].as_array().unwrap().clone()
}

fn summary(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| {
            let version = i.get("version").map_or(String::new(), |v| format!("@{v}"));
            format!(
                "{} {} {}{version} by {}",
                i["kind"].as_str().unwrap(),
                i["id"].as_str().unwrap(),
                i["action"].as_str().unwrap(),
                i["actor"].as_str().unwrap()
            )
        })
        .collect()
}

/// Reads server-sent events from a stream until `n` events arrived: (id, event, data).
async fn read_events(resp: &mut reqwest::Response, n: usize) -> Vec<(String, String, Value)> {
    let mut events = Vec::new();
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while events.len() < n {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk()).await.expect("events in time").unwrap().unwrap();
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (String::new(), String::new(), Value::Null);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = serde_json::from_str(v.trim()).unwrap();
                }
            }
            if !id.is_empty() {
                events.push((id, event, data));
            }
        }
    }
    events
}

async fn stream(c: &Client, query: &str, last_event_id: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .get(format!("{}/v1/changes/stream{query}", c.base))
        .bearer_auth(SUPERVISOR)
        .header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    resp
}

on_both_backends! {
async fn every_change_gets_one_position_and_refusals_and_replays_none() {
    let daemon = Daemon::start().await;
    let c = &daemon.client;
    assert!(all_changes(c).await.is_empty(), "a new database has an empty feed");
    c.seed_directory().await;
    c.put("/v1/queues/billing", INTEGRATION, json!({"name": "Billing", "priority": 3})).await.expect(200);
    c.patch("/v1/representatives/bob", INTEGRATION, json!({"presence": "away"})).await.expect(200);
    conversation_in(c, "c1", "active").await;
    // Refused: no position.
    c.post("/v1/conversations/c1/assign", SUPERVISOR, json!({"representative": "ann"})).await.problem(409, "invalid_transition");
    c.patch("/v1/queues/nope", INTEGRATION, json!({"priority": 1})).await.problem(404, "not_found");
    // Replayed: no second position.
    let key = [("idempotency-key", "k-1")];
    c.post_with("/v1/conversations/c1/release", SUPERVISOR, &key, json!({})).await.expect(200);
    c.post_with("/v1/conversations/c1/release", SUPERVISOR, &key, json!({})).await.expect(200);
    c.post("/v1/rules/reload", ADMIN, json!({})).await.expect(200);
    let items = all_changes(c).await;
    let version = c.get("/v1/rules", SUPERVISOR).await.json["version"].as_str().unwrap().to_owned();
    assert_eq!(
        summary(&items),
        [
            "queue billing created@1 by demo-integration",
            "queue support created@1 by demo-integration",
            "representative ann created@1 by demo-integration",
            "representative bob created@1 by demo-integration",
            "queue billing replaced@2 by demo-integration",
            "representative bob updated@2 by demo-integration",
            "conversation c1 created@1 by demo-integration",
            "conversation c1 accept@2 by demo-integration",
            "conversation c1 release@3 by demo-supervisor",
            &format!("rules {version} reload by switchboard"),
        ]
    );
    let positions: Vec<u64> = items.iter().map(|i| i["position"].as_u64().unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert!(items.iter().all(|i| i["at"].as_str().is_some_and(|t| t.ends_with('Z'))), "{items:?}");
    assert!(items[9].get("version").is_none(), "a rules item has no version: {}", items[9]);
}

async fn the_feed_pages_with_next_after_and_checks_its_parameters() {
    let daemon = Daemon::start().await;
    let c = &daemon.client;
    c.seed_directory().await;
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = c.get(&format!("/v1/changes?after={after}&limit=3"), INTEGRATION).await.expect(200).json;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        if items.is_empty() {
            assert_eq!(page["next_after"], after, "an empty page keeps `after`");
            break;
        }
        after = page["next_after"].as_u64().unwrap();
        assert_eq!(items.last().unwrap()["position"], after);
        seen.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(seen, ["billing", "support", "ann", "bob"]);
    for bad in ["after=-1", "after=x", "after=9223372036854775808", "limit=0", "limit=1001", "limit=2.0", "from=3", "after=1&after=2"] {
        c.get(&format!("/v1/changes?{bad}"), SUPERVISOR).await.problem(400, "bad_request");
    }
    c.send(Method::GET, "/v1/changes", None, &[], None).await.problem(401, "unauthorized");
    c.get("/v1/changes/stream?limit=5", SUPERVISOR).await.problem(400, "bad_request");
    c.send(Method::GET, "/v1/changes/stream", Some(SUPERVISOR), &[("last-event-id", "seven")], None)
        .await
        .problem(400, "bad_request");
}

async fn the_stream_sends_new_changes_and_resumes_after_the_last_event_id() {
    let daemon = Daemon::start().await;
    let c = &daemon.client;
    c.seed_directory().await;
    let mut resp = stream(c, "", None).await;
    let first = read_events(&mut resp, 4).await;
    assert_eq!(first.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(), ["queue", "queue", "representative", "representative"]);
    for (id, _, data) in &first {
        assert_eq!(data["position"].to_string(), *id, "`id:` is the position");
    }
    // A change made now arrives on the open stream.
    c.create("c1").await;
    let next = read_events(&mut resp, 1).await;
    assert_eq!((next[0].1.as_str(), next[0].2["id"].as_str()), ("conversation", Some("c1")));
    drop(resp);
    // Resume after the second event: Last-Event-ID wins over ?after=.
    c.patch("/v1/representatives/ann", INTEGRATION, json!({"presence": "away"})).await.expect(200);
    let mut resumed = stream(c, "?after=0", Some(&first[1].0)).await;
    let rest = read_events(&mut resumed, 4).await;
    let ids: Vec<&str> = rest.iter().map(|e| e.2["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["ann", "bob", "c1", "ann"]);
    assert_eq!(rest[3].2["action"], "updated");
    let mut from_query = stream(c, &format!("?after={}", next[0].0), None).await;
    let last = read_events(&mut from_query, 1).await;
    assert_eq!(last[0].2["id"], "ann");
}
}

//! Durability with the real binary: a restart serves exactly what was acknowledged, and
//! `kill -9` right after acknowledged writes loses none of them.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{INTEGRATION, Process, SUPERVISOR};
use serde_json::json;

fn workdir() -> tempfile::TempDir {
    common::workdir("")
}

async fn snapshot(c: &common::Client, ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        out.push(c.get(&format!("/v1/conversations/{id}"), SUPERVISOR).await.expect(200).text);
        out.push(c.get(&format!("/v1/conversations/{id}/history"), SUPERVISOR).await.expect(200).text);
    }
    out.push(c.get("/v1/conversations?status=open&status=active&status=closed&limit=1000", SUPERVISOR).await.text);
    out.push(c.get("/v1/representatives", SUPERVISOR).await.text);
    out
}

/// The signal handlers are in place before the address is announced: a SIGTERM sent
/// the moment `listening on` appears stops the daemon gracefully (exit 0), never by the
/// signal's default action.
#[test]
fn sigterm_right_after_listening_exits_cleanly() {
    let dir = common::workdir("");
    for _ in 0..5 {
        let mut p = Process::spawn(dir.path());
        p.signal("-TERM");
        let status = p.wait(Duration::from_secs(20));
        assert!(status.success(), "SIGTERM right after `listening on` ended the daemon with {status}");
    }
}

/// History records the writer's own time, never earlier than the event before, whatever
/// time a request carries; the idempotency purge has its index.
#[tokio::test]
async fn history_time_comes_from_the_writer_and_never_goes_back() {
    use switchboard::domain::{Id, SupervisorAction};
    use switchboard::store::{self, Author, Command, WriteRequest};
    let dir = tempfile::tempdir().unwrap();
    let store = store::open("sqlite://sb.db", dir.path()).await.unwrap();
    let write = |command: Command, now: &str| WriteRequest {
        author: Author { name: "t".into(), token_digest: "t".into() },
        idempotency: None,
        command,
        ruleset: "t".into(),
        now: now.into(),
        now_ms: 0,
    };
    fn json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }
    let started = switchboard::clock::now().0;
    store
        .write(write(Command::PutQueue { id: Id::parse("q").unwrap(), input: json(json!({"name": "Q"})) }, "x"))
        .await
        .unwrap();
    let conv = json!({"id": "c", "record": {"entity": "case", "id": "c"}, "queue": "q"});
    store.write(write(Command::CreateConversation(json(conv)), "2099-01-01T00:00:00.000Z")).await.unwrap();
    let remove = Command::Supervise {
        id: Id::parse("c").unwrap(),
        action: SupervisorAction::Remove,
        if_match: None,
        note: None,
        expect: None,
    };
    store.write(write(remove, "2000-01-01T00:00:00.000Z")).await.unwrap();
    let events = store.history(&Id::parse("c").unwrap()).await.unwrap().unwrap();
    assert_eq!(events.len(), 2);
    assert!(events[0].at >= started && events[0].at.as_str() < "2099", "{:?}", events[0].at);
    assert!(events[1].at >= events[0].at, "{} then {}", events[0].at, events[1].at);
    drop(store);
    let db = rusqlite::Connection::open(dir.path().join("sb.db")).unwrap();
    let indexed: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'idempotency_created'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexed, 1, "the purge of expired idempotency keys has an index on their time");
}

/// Under a steady stream of writes (and reads beside them) the WAL stays bounded, and a
/// clean stop leaves it empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_wal_stays_bounded_under_load_and_is_emptied_on_a_clean_stop() {
    use switchboard::domain::{ConversationFilter, PageRequest};
    use switchboard::store::{self, Author, Command, WriteRequest};
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("sb.db-wal");
    let store = store::open("sqlite://sb.db", dir.path()).await.unwrap();
    let write = |command: Command| WriteRequest {
        author: Author { name: "t".into(), token_digest: "t".into() },
        idempotency: None,
        command,
        ruleset: "t".into(),
        now: String::new(),
        now_ms: 0,
    };
    let queue = serde_json::from_value(json!({"name": "Q"})).unwrap();
    store
        .write(write(Command::PutQueue { id: switchboard::domain::Id::parse("q").unwrap(), input: queue }))
        .await
        .unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, done) = (store.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let page = PageRequest { after: None, limit: 50 };
                store.conversations(ConversationFilter::default(), page).await.unwrap();
            }
        })
    };
    let mut largest = 0u64;
    let mut writers = tokio::task::JoinSet::new();
    for c in 0..40_000 {
        let store = store.clone();
        let conv = serde_json::from_value(json!({
            "id": format!("c{c}"), "record": {"entity": "case", "id": format!("CAS-{c}"), "title": "x".repeat(200)},
            "queue": "q", "attributes": {"note": "y".repeat(300)}
        }))
        .unwrap();
        writers.spawn(async move { store.write(write(Command::CreateConversation(conv))).await.unwrap() });
        if writers.len() >= 128 {
            writers.join_next().await;
        }
        if c % 500 == 0 {
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        }
    }
    while writers.join_next().await.is_some() {}
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.await.unwrap();
    assert!(largest <= 64 << 20, "the WAL reached {largest} bytes under load (bound: 64 MiB)");
    drop(store);
    let left = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert_eq!(left, 0, "a clean stop leaves an empty WAL");
}

on_both_backends! {
async fn sigterm_then_restart_serves_byte_identical_state() {
    let dir = workdir();
    let mut p = Process::spawn(dir.path());
    let c = p.client.clone();
    c.seed_directory().await;
    let ids: Vec<String> = (0..5).map(|i| format!("c{i}")).collect();
    for id in &ids {
        c.create(id).await;
    }
    c.post("/v1/conversations/c1/assign", SUPERVISOR, json!({"representative": "ann", "note": "vip"}))
        .await
        .expect(200);
    c.post("/v1/conversations/c2/remove", SUPERVISOR, json!({})).await.expect(200);
    c.post_with("/v1/conversations/c3/assign", SUPERVISOR, &[("idempotency-key", "once")], json!({"queue": "support"}))
        .await
        .expect(200);
    let before = snapshot(&c, &ids).await;
    p.signal("-TERM");
    assert!(p.wait(Duration::from_secs(20)).success(), "SIGTERM exits 0");

    let p2 = Process::spawn(dir.path());
    let after = snapshot(&p2.client, &ids).await;
    assert_eq!(before, after);
    // The idempotency key survived the restart: the repeat changes nothing.
    let again = p2
        .client
        .post_with(
            "/v1/conversations/c3/assign",
            SUPERVISOR,
            &[("idempotency-key", "once")],
            json!({"queue": "support"}),
        )
        .await
        .expect(200);
    assert_eq!(again.json["version"], 2);
    assert_eq!(snapshot(&p2.client, &ids).await, before);
}

async fn kill_9_loses_no_acknowledged_write() {
    let dir = workdir();
    let p = Process::spawn(dir.path());
    let c = p.client.clone();
    c.seed_directory().await;
    // Concurrent writers, so acknowledgements come from group commits of many writes.
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let c = c.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..25 {
                    let id = format!("w{w}-{i}");
                    let a = c
                        .post(
                            "/v1/conversations",
                            INTEGRATION,
                            json!({"id": id, "record": {"entity": "case", "id": "X"}, "queue": "billing"}),
                        )
                        .await;
                    assert_eq!(a.status.as_u16(), 201, "{}", a.text);
                    let a = c
                        .post(&format!("/v1/conversations/{id}/assign"), SUPERVISOR, json!({"representative": "ann"}))
                        .await;
                    assert_eq!(a.status.as_u16(), 200, "{}", a.text);
                    acked.push(id);
                }
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    p.signal("-KILL");
    drop(p);

    let p2 = Process::spawn(dir.path());
    for id in &acked {
        let conv = p2.client.get(&format!("/v1/conversations/{id}"), SUPERVISOR).await.expect(200).json;
        assert_eq!(conv["status"], "active", "{id}");
        assert_eq!(conv["representative"], "ann", "{id}");
    }
    assert_eq!(p2.client.used_capacity("ann").await, acked.len() as i64, "one unit each");
}
}

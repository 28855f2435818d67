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

#[tokio::test]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
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

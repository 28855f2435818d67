//! PostgreSQL restarted under load: the daemons recover without a restart of their own,
//! requests in flight fail with 503 (never another 5xx, never a dropped connection), and
//! nothing is half-applied. Its own test binary: restarting the server would disturb the
//! other tests' databases (cargo runs test binaries one at a time).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Backend, INTEGRATION, PgDatabase, Process, SUPERVISOR, config_for, eventually, on_backend};
use serde_json::json;

/// Restarts the local PostgreSQL cluster the way its operator would.
fn restart_postgresql() {
    let versions = std::fs::read_dir("/etc/postgresql").expect(
        "this test restarts the local PostgreSQL with pg_ctlcluster; /etc/postgresql is missing \
         (install Debian's postgresql package, or set SWITCHBOARD_TEST_NO_POSTGRES=1 to skip)",
    );
    let version = versions.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).max().unwrap();
    let status = std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .status()
        .expect("running pg_ctlcluster");
    assert!(status.success(), "pg_ctlcluster {version} main restart failed");
}

#[test]
fn daemons_recover_when_postgresql_restarts() {
    on_backend(Backend::Postgres, async {
        let db = PgDatabase::create();
        let dirs: Vec<_> = (0..2)
            .map(|_| {
                let dir = tempfile::tempdir().unwrap();
                std::fs::write(dir.path().join("switchboard.toml"), config_for(&db.url, "")).unwrap();
                std::fs::create_dir(dir.path().join("rules")).unwrap();
                dir
            })
            .collect();
        let daemons: Vec<Process> = dirs.iter().map(|d| Process::spawn(d.path())).collect();
        let clients: Vec<_> = daemons.iter().map(|d| d.client.clone()).collect();
        clients[0].put("/v1/queues/billing", INTEGRATION, json!({"name": "Billing"})).await.expect(201);

        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..6 {
            let (c, stop) = (clients[w % 2].clone(), stop.clone());
            tasks.spawn(async move {
                let (mut acked, mut unavailable) = (Vec::new(), 0);
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let id = format!("w{w}-{i}");
                    let body = json!({"id": id, "record": {"entity": "case", "id": id}, "queue": "billing"});
                    match c.try_post("/v1/conversations", INTEGRATION, body).await {
                        Some(201) => acked.push(id),
                        Some(503) => {
                            unavailable += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        other => panic!("during a PostgreSQL restart a write got {other:?}; only 201 or 503 are right"),
                    }
                }
                (acked, unavailable)
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        tokio::task::spawn_blocking(restart_postgresql).await.unwrap();
        // Both daemons serve writes again, without being restarted.
        for c in &clients {
            let c = c.clone();
            eventually(Duration::from_secs(30), || {
                let c = c.clone();
                async move { c.get("/v1/conversations?limit=1", SUPERVISOR).await.status == 200 }
            })
            .await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (mut acked, mut unavailable) = (Vec::new(), 0);
        while let Some(done) = tasks.join_next().await {
            let (a, u) = done.unwrap();
            acked.extend(a);
            unavailable += u;
        }
        eprintln!("{} writes acknowledged, {unavailable} answered 503 during the restart", acked.len());
        // Nothing acknowledged is lost; nothing is half-applied.
        for id in &acked {
            let history = clients[1].get(&format!("/v1/conversations/{id}/history"), SUPERVISOR).await.expect(200);
            let events = history.json["events"].as_array().map_or(0, Vec::len);
            assert_eq!(events, 1, "{id} has its creation in history");
        }
        for c in &clients {
            c.post(
                "/v1/conversations",
                INTEGRATION,
                json!({"record": {"entity": "case", "id": "x"}, "queue": "billing"}),
            )
            .await
            .expect(201);
        }
        drop(daemons);
    });
}

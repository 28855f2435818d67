//! PostgreSQL restarted under load: the daemons recover without a restart of their own,
//! requests in flight fail with 503 (never another 5xx, never a dropped connection), and
//! nothing is half-applied. Its own test binary: restarting the server would disturb the
//! other tests' databases (cargo runs test binaries one at a time).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Backend, INTEGRATION, PgDatabase, Process, SUPERVISOR, config_for, eventually, on_backend};
use serde_json::json;

/// The tests of this binary break PostgreSQL's side on purpose: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

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

/// Ends every server process serving the daemons' connections to `db`, as an operator's
/// `pg_terminate_backend` or a crashed backend would.
async fn terminate_backends(db: &PgDatabase) -> u64 {
    let server = common::postgres_server();
    let (client, connection) =
        tokio_postgres::connect(&format!("{server}/postgres"), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'switchboard'",
            &[&db.name],
        )
        .await
        .unwrap();
    rows.len() as u64
}

/// Creates conversations through `clients` until `stop`; returns the acknowledged ids and
/// how many answers were 503. Any other answer, or a dropped connection, fails the test.
fn load(
    clients: &[common::Client],
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: &mut tokio::task::JoinSet<(Vec<String>, u64)>,
) {
    for w in 0..6 {
        let (c, stop) = (clients[w % clients.len()].clone(), stop.clone());
        tasks.spawn(async move {
            let (mut acked, mut unavailable) = (Vec::new(), 0);
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let id = format!("w{w}-{i}-{}", uuid::Uuid::new_v4().simple());
                let body = json!({"id": id, "record": {"entity": "case", "id": id}, "queue": "billing"});
                match c.try_post("/v1/conversations", INTEGRATION, body).await {
                    Some(201) => acked.push(id),
                    Some(503) => {
                        unavailable += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => panic!("while PostgreSQL's side failed, a write got {other:?}; only 201 or 503 are right"),
                }
            }
            (acked, unavailable)
        });
    }
}

#[test]
fn killed_backend_connections_lose_nothing_acknowledged() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    on_backend(Backend::Postgres, async {
        let db = PgDatabase::create();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("switchboard.toml"), config_for(&db.url, "")).unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        let daemon = Process::spawn(dir.path());
        let clients = vec![daemon.client.clone()];
        clients[0].put("/v1/queues/billing", INTEGRATION, json!({"name": "Billing"})).await.expect(201);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        load(&clients, &stop, &mut tasks);
        let mut killed = 0;
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            killed += terminate_backends(&db).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut acked = Vec::new();
        while let Some(done) = tasks.join_next().await {
            acked.extend(done.unwrap().0);
        }
        assert!(killed > 0, "no backend connection was terminated");
        for id in &acked {
            let history = clients[0].get(&format!("/v1/conversations/{id}/history"), SUPERVISOR).await.expect(200);
            assert_eq!(history.json["events"].as_array().map_or(0, Vec::len), 1, "{id} has its creation in history");
        }
        drop(daemon);
    });
}

#[test]
fn daemons_recover_when_postgresql_restarts() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
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
        load(&clients, &stop, &mut tasks);
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

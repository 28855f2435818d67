//! Several daemons on one PostgreSQL database: the real binary three times, clients
//! spread across them, random concurrent actions under a capacity rule; then every
//! guarantee checked across daemons. Also: one daemon killed with SIGKILL mid-load.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::{Backend, Client, INTEGRATION, PgDatabase, Process, SUPERVISOR, config_for, eventually, on_backend};
use serde_json::{Value, json};

const CAPACITY_RULE: &str = r#"
[[rule]]
id = "room-for-it"
target = "representative"

[rule.require]
capacity_for_conversation = true
"#;

/// A folder with a config on `db` and the capacity rule.
fn daemon_dir(db: &PgDatabase) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("switchboard.toml"), config_for(&db.url, "")).unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("rules/capacity.toml"), CAPACITY_RULE).unwrap();
    dir
}

struct Cluster {
    // Dropped in this order: the daemons, their folders, then the database.
    daemons: Vec<Process>,
    _dirs: Vec<tempfile::TempDir>,
    _db: PgDatabase,
}

impl Cluster {
    fn start(n: usize) -> Self {
        let db = PgDatabase::create();
        let dirs: Vec<_> = (0..n).map(|_| daemon_dir(&db)).collect();
        let daemons = dirs.iter().map(|d| Process::spawn(d.path())).collect();
        Self { daemons, _dirs: dirs, _db: db }
    }

    fn client(&self, i: usize) -> Client {
        self.daemons[i % self.daemons.len()].client.clone()
    }
}

/// Every page of the change feed, as one daemon serves it.
async fn feed(c: &Client) -> Vec<Value> {
    let mut items = Vec::new();
    let mut after = 0;
    loop {
        let page = c.get(&format!("/v1/changes?after={after}&limit=1000"), SUPERVISOR).await.expect(200).json;
        let got = page["items"].as_array().unwrap().clone();
        if got.is_empty() {
            assert_eq!(page["next_after"], after, "an empty page keeps `after`");
            return items;
        }
        for item in &got {
            let position = item["position"].as_u64().unwrap();
            assert!(position > after, "positions only grow: {position} after {after}");
            after = position;
        }
        assert_eq!(page["next_after"], after);
        items.extend(got);
    }
}

async fn seed(c: &Client, reps: usize, convs: usize) {
    c.put("/v1/queues/billing", INTEGRATION, json!({"name": "Billing"})).await.expect(201);
    for r in 0..reps {
        let body = json!({"name": format!("Rep {r}"), "presence": "available", "capacity": 3, "queues": ["billing"]});
        c.put(&format!("/v1/representatives/r{r}"), INTEGRATION, body).await.expect(201);
    }
    for i in 0..convs {
        let body = json!({"id": format!("c{i}"), "record": {"entity": "case", "id": format!("CAS-{i}")},
                          "queue": "billing", "capacity_units": 1 + (i % 2)});
        c.post("/v1/conversations", INTEGRATION, body).await.expect(201);
    }
}

/// One random action, valid for the conversation's status as last read, on a random
/// conversation through one daemon; the acknowledged ones are returned as
/// (conversation, version).
async fn act(c: &Client, seed: u64, reps: usize, convs: usize) -> Option<(String, u64)> {
    let pick = |n: usize, salt: u64| ((seed.wrapping_mul(6364136223846793005).wrapping_add(salt)) >> 33) as usize % n;
    let id = format!("c{}", pick(convs, 1));
    let rep = format!("r{}", pick(reps, 2));
    let status = c.get(&format!("/v1/conversations/{id}"), SUPERVISOR).await.json["status"].as_str()?.to_owned();
    let coin = pick(8, 3);
    let (path, body) = match (status.as_str(), coin) {
        // Only supervisors' routed actions give work here: an integration's `accept`
        // reports a fact and is not subject to the rules, so it could exceed capacity.
        ("open", _) => (format!("/v1/conversations/{id}/assign"), json!({"representative": rep})),
        ("active", 0..=3) => (format!("/v1/conversations/{id}/transfer"), json!({"representative": rep})),
        ("active", 4 | 5) => (format!("/v1/conversations/{id}/release"), json!({})),
        ("active", 6) => (format!("/v1/conversations/{id}/events"), json!({"type": "hold"})),
        ("active", _) => (format!("/v1/conversations/{id}/events"), json!({"type": "wrap_up"})),
        ("waiting", 0..=3) => (format!("/v1/conversations/{id}/events"), json!({"type": "resume"})),
        ("waiting", _) => (format!("/v1/conversations/{id}/release"), json!({})),
        ("wrap_up", _) => (format!("/v1/conversations/{id}/events"), json!({"type": "resolve"})),
        _ => return None,
    };
    let token = if path.ends_with("/events") { INTEGRATION } else { SUPERVISOR };
    let a = c.post(&path, token, body).await;
    match a.status.as_u16() {
        200 => Some((id, a.json["version"].as_u64().unwrap())),
        // Another worker changed it first (409 status, 412), or the rules said no.
        409 | 412 | 422 => None,
        other => panic!("unexpected {other} for {path}: {}", a.text),
    }
}

/// The guarantees that must hold across daemons once the load has stopped.
async fn check_invariants(clients: &[Client], acknowledged: &[(String, u64)], reps: usize, convs: usize) {
    let c = &clients[0];
    // Capacity: each representative's used capacity is exactly what it holds, and the
    // rule kept it within capacity.
    let list = c
        .get(
            "/v1/conversations?status=open&status=active&status=waiting&status=wrap_up&status=closed&limit=1000",
            SUPERVISOR,
        )
        .await
        .expect(200)
        .json;
    let mut held: HashMap<String, i64> = HashMap::new();
    for conv in list["items"].as_array().unwrap() {
        let status = conv["status"].as_str().unwrap();
        if matches!(status, "active" | "waiting" | "wrap_up") {
            *held.entry(conv["representative"].as_str().unwrap().to_owned()).or_default() +=
                conv["capacity_units"].as_i64().unwrap();
        }
    }
    for r in 0..reps {
        let id = format!("r{r}");
        for client in clients {
            let rep = client.get(&format!("/v1/representatives/{id}"), SUPERVISOR).await.expect(200).json;
            let used = rep["used_capacity"].as_i64().unwrap();
            assert_eq!(used, held.get(&id).copied().unwrap_or(0), "used capacity of {id} is what it holds");
            assert!(used <= 3, "the capacity rule let {id} go over its capacity: {rep}");
        }
    }
    // History: one event per acknowledged action, each a link of a chain.
    let mut acked: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (id, version) in acknowledged {
        acked.entry(id.clone()).or_default().push(*version);
    }
    for i in 0..convs {
        let id = format!("c{i}");
        let conv = c.get(&format!("/v1/conversations/{id}"), SUPERVISOR).await.expect(200).json;
        let history = c.get(&format!("/v1/conversations/{id}/history"), SUPERVISOR).await.expect(200).json;
        let events = history["events"].as_array().unwrap().clone();
        assert_eq!(events.len() as u64, conv["version"].as_u64().unwrap(), "one event per version of {id}");
        for pair in events.windows(2) {
            assert_eq!(pair[1]["from"], pair[0]["to"], "the history of {id} is a chain: {pair:?}");
            assert!(pair[1]["at"].as_str() >= pair[0]["at"].as_str(), "time never goes back in {id}");
        }
        let mut versions = acked.remove(&id).unwrap_or_default();
        versions.sort_unstable();
        let before = versions.len();
        versions.dedup();
        assert_eq!(before, versions.len(), "two acknowledged answers for one version of {id}");
        for v in versions {
            assert!(v >= 2 && v as usize <= events.len(), "acknowledged version {v} of {id} is in its history");
        }
    }
    // The feed: the same from every daemon.
    let first = feed(c).await;
    for other in &clients[1..] {
        assert_eq!(feed(other).await, first, "every daemon serves the same change feed");
    }
}

#[test]
fn three_daemons_keep_every_guarantee_under_concurrent_load() {
    on_backend(Backend::Postgres, async {
        let cluster = Cluster::start(3);
        let clients: Vec<Client> = (0..3).map(|i| cluster.client(i)).collect();
        let (reps, convs) = (6, 40);
        seed(&clients[0], reps, convs).await;
        // Every daemon sees the directory written through the first.
        for c in &clients {
            let c = c.clone();
            eventually(Duration::from_secs(5), || {
                let c = c.clone();
                async move {
                    let a =
                        c.get("/v1/conversations/c0/candidates?action=assign&target=representative", SUPERVISOR).await;
                    a.json["total"].as_u64() == Some(reps as u64)
                }
            })
            .await;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..24u64 {
            let c = clients[worker as usize % 3].clone();
            tasks.spawn(async move {
                let mut acked = Vec::new();
                for step in 0..40u64 {
                    acked.extend(act(&c, worker * 1000 + step + 1, reps, convs).await);
                }
                acked
            });
        }
        // Meanwhile, If-Match races across daemons: one winner per version.
        for round in 0..5 {
            let id = format!("c{round}");
            let version =
                clients[0].get(&format!("/v1/conversations/{id}"), SUPERVISOR).await.json["version"].as_u64().unwrap();
            let etag = format!("\"{version}\"");
            let racers: Vec<_> = (0..9)
                .map(|i| {
                    let (c, etag, path) =
                        (clients[i % 3].clone(), etag.clone(), format!("/v1/conversations/{id}/remove"));
                    tokio::spawn(async move { c.post_with(&path, SUPERVISOR, &[("if-match", &etag)], json!({})).await })
                })
                .collect();
            let mut winners = 0;
            for r in racers {
                let a = r.await.unwrap();
                match a.status.as_u16() {
                    200 => winners += 1,
                    409 | 412 => {}
                    other => panic!("unexpected {other}: {}", a.text),
                }
            }
            assert!(winners <= 1, "{winners} daemons accepted version {version} of {id}");
        }
        let mut acknowledged = Vec::new();
        while let Some(done) = tasks.join_next().await {
            acknowledged.extend(done.unwrap());
        }
        // A guard on the test itself: the invariants below mean little over a handful.
        assert!(acknowledged.len() >= 20, "the load did little: {} actions acknowledged", acknowledged.len());
        check_invariants(&clients, &acknowledged, reps, convs).await;
    });
}

#[test]
fn a_change_through_one_daemon_reaches_the_others_candidates() {
    on_backend(Backend::Postgres, async {
        let cluster = Cluster::start(2);
        let (a, b) = (cluster.client(0), cluster.client(1));
        seed(&a, 2, 1).await;
        let dialog = "/v1/conversations/c0/candidates?action=assign&target=representative";
        eventually(Duration::from_secs(5), || {
            let b = b.clone();
            async move { b.get(dialog, SUPERVISOR).await.json["total"] == 2 }
        })
        .await;
        // Away through A: B stops offering r0 (no sleeps: B's dialog is polled).
        a.patch("/v1/representatives/r0", INTEGRATION, json!({"presence": "offline"})).await.expect(200);
        let rules =
            "[[rule]]\nid = \"present\"\ntarget = \"representative\"\n[rule.require]\npresence = [\"available\"]\n";
        // Both daemons load the same rule from their own folders.
        for d in &cluster._dirs {
            std::fs::write(d.path().join("rules/presence.toml"), rules).unwrap();
        }
        for c in [&a, &b] {
            c.post("/v1/rules/reload", common::ADMIN, json!({})).await.expect(200);
        }
        eventually(Duration::from_secs(5), || {
            let b = b.clone();
            async move {
                let ids: Vec<String> = b.get(dialog, SUPERVISOR).await.json["candidates"]
                    .as_array()
                    .map(|c| c.iter().map(|x| x["id"].as_str().unwrap_or("").to_owned()).collect())
                    .unwrap_or_default();
                ids == ["r1"]
            }
        })
        .await;
        // The reloads are in the feed, once per daemon that reloaded.
        let items = feed(&b).await;
        let version = b.get("/v1/rules", SUPERVISOR).await.json["version"].clone();
        let reloads: Vec<&Value> = items.iter().filter(|i| i["kind"] == "rules").collect();
        assert!(reloads.len() >= 2, "each daemon's reload is in the feed: {items:?}");
        assert_eq!(reloads.last().unwrap()["id"], version, "{reloads:?}");
        // A capacity change through B is what A's next decision is checked against.
        b.post("/v1/conversations/c0/assign", SUPERVISOR, json!({"representative": "r1"})).await.expect(200);
        eventually(Duration::from_secs(5), || {
            let a = a.clone();
            async move { a.used_capacity("r1").await == 1 }
        })
        .await;
    });
}

#[test]
fn killing_one_daemon_loses_nothing_acknowledged_and_the_others_serve() {
    on_backend(Backend::Postgres, async {
        let mut cluster = Cluster::start(2);
        let (a, b) = (cluster.client(0), cluster.client(1));
        a.put("/v1/queues/billing", INTEGRATION, json!({"name": "Billing"})).await.expect(201);
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..8 {
            let c = if w % 2 == 0 { a.clone() } else { b.clone() };
            tasks.spawn(async move {
                let mut acked = Vec::new();
                for i in 0..400 {
                    let id = format!("w{w}-{i}");
                    let body = json!({"id": id, "record": {"entity": "case", "id": id}, "queue": "billing"});
                    let sent = c.try_post("/v1/conversations", INTEGRATION, body).await;
                    match sent {
                        Some(201) => acked.push(id),
                        // The daemon was killed: this client stops.
                        None => return acked,
                        Some(other) => panic!("unexpected {other}"),
                    }
                }
                acked
            });
        }
        // Kill A once the load is under way.
        eventually(Duration::from_secs(30), || {
            let b = b.clone();
            async move {
                b.get("/v1/conversations?limit=1000", SUPERVISOR).await.json["items"].as_array().map_or(0, Vec::len)
                    >= 200
            }
        })
        .await;
        cluster.daemons[0].child.kill().unwrap();
        let mut acknowledged = Vec::new();
        while let Some(done) = tasks.join_next().await {
            acknowledged.extend(done.unwrap());
        }
        for id in &acknowledged {
            b.get(&format!("/v1/conversations/{id}"), SUPERVISOR).await.expect(200);
        }
        // B still serves writes.
        b.post(
            "/v1/conversations",
            INTEGRATION,
            json!({"id": "after", "record": {"entity": "case", "id": "x"}, "queue": "billing"}),
        )
        .await
        .expect(201);
        assert!(acknowledged.len() >= 200, "{} acknowledged", acknowledged.len());
    });
}

#[test]
fn a_reader_sees_every_change_once_in_order_while_two_daemons_commit() {
    on_backend(Backend::Postgres, async {
        let cluster = Cluster::start(2);
        let (a, b) = (cluster.client(0), cluster.client(1));
        a.put("/v1/queues/billing", INTEGRATION, json!({"name": "Billing"})).await.expect(201);
        let mut writers = tokio::task::JoinSet::new();
        for w in 0..8 {
            let c = if w % 2 == 0 { a.clone() } else { b.clone() };
            writers.spawn(async move {
                for i in 0..60 {
                    let id = format!("w{w}-{i}");
                    let body = json!({"id": id, "record": {"entity": "case", "id": id}, "queue": "billing"});
                    c.post("/v1/conversations", INTEGRATION, body).await.expect(201);
                }
            });
        }
        // Page with next_after while the writes commit on both daemons.
        let mut seen: Vec<Value> = Vec::new();
        let mut after = 0u64;
        loop {
            while let Some(done) = writers.try_join_next() {
                done.unwrap();
            }
            let finished = writers.is_empty();
            let page = b.get(&format!("/v1/changes?after={after}&limit=7"), SUPERVISOR).await.expect(200).json;
            let items = page["items"].as_array().unwrap();
            if items.is_empty() && finished {
                break;
            }
            for item in items {
                let position = item["position"].as_u64().unwrap();
                assert!(position > after, "position {position} seen after {after}");
                after = position;
                seen.push(item.clone());
            }
        }
        let full = feed(&a).await;
        assert_eq!(full.len(), 1 + 8 * 60);
        assert_eq!(seen, full, "the reader saw every change exactly once, in feed order");
    });
}

#[test]
fn a_decision_on_one_daemon_is_checked_against_what_another_just_committed() {
    on_backend(Backend::Postgres, async {
        let cluster = Cluster::start(2);
        let (a, b) = (cluster.client(0), cluster.client(1));
        a.put("/v1/queues/billing", INTEGRATION, json!({"name": "Billing"})).await.expect(201);
        for round in 0..10 {
            let rep = format!("r{round}");
            let body = json!({"name": rep, "presence": "available", "capacity": 2, "queues": ["billing"]});
            a.put(&format!("/v1/representatives/{rep}"), INTEGRATION, body).await.expect(201);
            for c in ["x", "y"] {
                let id = format!("{c}{round}");
                let body =
                    json!({"id": id, "record": {"entity": "case", "id": id}, "queue": "billing", "capacity_units": 2});
                a.post("/v1/conversations", INTEGRATION, body).await.expect(201);
            }
            // B must know the representative before it can route to it.
            eventually(Duration::from_secs(5), || {
                let b = b.clone();
                let rep = rep.clone();
                async move {
                    b.get(
                        &format!("/v1/conversations/y{round}/candidates?action=assign&target=representative"),
                        SUPERVISOR,
                    )
                    .await
                    .json["candidates"]
                        .as_array()
                        .is_some_and(|c| c.iter().any(|x| x["id"] == rep.as_str()))
                }
            })
            .await;
            // A fills the representative; B, asked right after (its feed reader may not have
            // brought A's change yet), must refuse for capacity, never accept.
            a.post(&format!("/v1/conversations/x{round}/assign"), SUPERVISOR, json!({"representative": rep}))
                .await
                .expect(200);
            let refused =
                b.post(&format!("/v1/conversations/y{round}/assign"), SUPERVISOR, json!({"representative": rep})).await;
            let refused = refused.problem(422, "not_eligible");
            assert_eq!(refused.json["reasons"][0]["rule"], "room-for-it", "{}", refused.text);
            assert_eq!(b.used_capacity(&rep).await, 2);
        }
        let metrics = b.send(reqwest::Method::GET, "/metrics", None, &[], None).await.text;
        let retried = metrics.lines().find(|l| l.starts_with("switchboard_decisions_retried_total")).unwrap_or("none");
        eprintln!("decisions made again on B (its state was behind A's commit): {retried}");
    });
}

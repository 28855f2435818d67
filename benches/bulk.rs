//! Bulk actions and distribution over HTTP, against a daemon of this build on a real
//! socket (SQLite in a temporary folder; `SWITCHBOARD_BENCH_DATABASE=postgres://...` for
//! PostgreSQL), with the demo rules of `rules/`.
//!
//! `cargo bench --bench bulk` prints, in one run:
//!
//! - releasing 1,000 held conversations with 1,000 single `POST .../release` calls from
//!   16 concurrent clients, against one `POST /v1/conversations/bulk` of 1,000, the median
//!   of 5 rounds each and their ratio;
//! - distributing 1,000 open conversations over 10,000 representatives
//!   (`POST /v1/queues/{id}/distribute`, dry and real), the median of 3 rounds;
//! - `GET /v1/queues/{id}/stats` over HTTP (10,000 representatives), and in process the
//!   backlog's part of it at 1,000,000 conversations, with the backlog's memory per
//!   conversation (resident memory before and after loading it).
//!
//! The demo's `plugins.toml` needs the built matchers (`plugins/build.sh`); without them
//! it is left out and the run says so.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

const CONCURRENCY: usize = 16;
const SUPERVISOR: &str = "bench-supervisor";
const INTEGRATION: &str = "bench-integration";

struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    async fn send(&self, method: reqwest::Method, path: &str, token: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn must(&self, method: reqwest::Method, path: &str, token: &str, body: Value) -> Value {
        let (status, answer) = self.send(method, path, token, &body).await;
        assert!((200..300).contains(&status), "{path}: {status} {answer}");
        answer
    }

    /// Runs `calls` at [`CONCURRENCY`]; every answer must be 2xx.
    async fn all(&self, calls: Vec<(reqwest::Method, String, &'static str, Value)>) {
        futures_util::stream::iter(calls)
            .map(|(m, path, token, body)| async move { self.must(m, &path, token, body).await })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn token(name: &str, role: &str) -> String {
    let digest = hex::encode(switchboard::auth::sha256(name.as_bytes()));
    format!("[[tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{digest}\"\n")
}

/// A folder with the config and the demo rules; whether the plugin rules are in.
fn workdir() -> (tempfile::TempDir, bool) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap_or_else(|e| panic!("{e}"));
    let dist = root.join("plugins/dist");
    let plugins = dist.join("vip-scoring.wasm").exists() && dist.join("language-match.wasm").exists();
    for entry in std::fs::read_dir(root.join("rules")).unwrap_or_else(|e| panic!("{e}")).flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".toml") && (plugins || name != "plugins.toml") {
            std::fs::copy(entry.path(), rules.join(&name)).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let database = std::env::var("SWITCHBOARD_BENCH_DATABASE").unwrap_or_else(|_| "sqlite://sb.db".to_owned());
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndatabase = \"{database}\"\nrules_dir = \"rules\"\nplugins_dir = \"{}\"\n{}{}",
        dist.display(),
        token(SUPERVISOR, "supervisor"),
        token(INTEGRATION, "integration")
    );
    std::fs::write(dir.path().join("switchboard.toml"), config).unwrap_or_else(|e| panic!("{e}"));
    (dir, plugins)
}

fn conversation(id: &str, queue: &str, priority: u32) -> Value {
    json!({"id": id, "record": {"entity": "email", "id": id}, "queue": queue, "priority": priority,
           "skills": {"billing": 3}})
}

async fn releases(http: &Http) -> (Vec<Duration>, Vec<Duration>) {
    use reqwest::Method;
    http.must(Method::PUT, "/v1/queues/rel", INTEGRATION, json!({"name": "Release bench"})).await;
    let reps: Vec<_> = (0..16)
        .map(|i| {
            let body = json!({"name": format!("Holder {i:02}"), "presence": "available", "capacity": 100_000,
                              "skills": {"billing": 8}, "queues": ["rel"]});
            (Method::PUT, format!("/v1/representatives/holder-{i:02}"), INTEGRATION, body)
        })
        .collect();
    http.all(reps).await;
    let (mut single, mut bulk) = (Vec::new(), Vec::new());
    for round in 0..5 {
        let ids: Vec<String> = (0..2000).map(|i| format!("rel-{round}-{i:04}")).collect();
        let creates = ids
            .iter()
            .map(|id| (Method::POST, "/v1/conversations".to_owned(), INTEGRATION, conversation(id, "rel", 0)));
        http.all(creates.collect()).await;
        let accepts = ids.iter().enumerate().map(|(i, id)| {
            let body = json!({"type": "accept", "representative": format!("holder-{:02}", i % 16)});
            (Method::POST, format!("/v1/conversations/{id}/events"), INTEGRATION, body)
        });
        http.all(accepts.collect()).await;
        let (one_by_one, together) = ids.split_at(1000);
        let calls = one_by_one
            .iter()
            .map(|id| (Method::POST, format!("/v1/conversations/{id}/release"), SUPERVISOR, json!({})))
            .collect();
        let start = Instant::now();
        http.all(calls).await;
        single.push(start.elapsed());
        let start = Instant::now();
        let answer = http
            .must(Method::POST, "/v1/conversations/bulk", SUPERVISOR, json!({"action": "release", "ids": together}))
            .await;
        bulk.push(start.elapsed());
        let applied = answer["results"].as_array().map_or(0, |r| r.iter().filter(|r| r["status"] == 200).count());
        assert_eq!(applied, 1000, "every item of the bulk release applies");
    }
    (single, bulk)
}

async fn distributions(http: &Http) -> (Vec<Duration>, Vec<Duration>, usize) {
    use reqwest::Method;
    http.must(Method::PUT, "/v1/queues/dist", INTEGRATION, json!({"name": "Distribution bench"})).await;
    let reps: Vec<_> = (0..10_000)
        .map(|i| {
            let presence = if i % 5 == 4 { "offline" } else { "available" };
            let body = json!({"name": format!("Rep {i:05}"), "presence": presence, "capacity": 1 + i % 3,
                              "skills": {"billing": 2 + i % 8, "english": 10}, "queues": ["dist"],
                              "user_groups": [if i % 4 == 0 { "tier-2" } else { "tier-1" }]});
            (Method::PUT, format!("/v1/representatives/rep-{i:05}"), INTEGRATION, body)
        })
        .collect();
    http.all(reps).await;
    let ids: Vec<String> = (0..1000).map(|i| format!("dist-{i:04}")).collect();
    let creates = ids.iter().enumerate().map(|(i, id)| {
        (Method::POST, "/v1/conversations".to_owned(), INTEGRATION, conversation(id, "dist", (i % 3) as u32))
    });
    http.all(creates.collect()).await;
    let (mut dry, mut real, mut assigned) = (Vec::new(), Vec::new(), 0);
    for _ in 0..3 {
        let start = Instant::now();
        http.must(Method::POST, "/v1/queues/dist/distribute", SUPERVISOR, json!({"max": 1000, "dry_run": true})).await;
        dry.push(start.elapsed());
        let start = Instant::now();
        let answer = http.must(Method::POST, "/v1/queues/dist/distribute", SUPERVISOR, json!({"max": 1000})).await;
        real.push(start.elapsed());
        let done: Vec<&str> = answer["assigned"]
            .as_array()
            .map(|a| a.iter().filter_map(|a| a["conversation"].as_str()).collect())
            .unwrap_or_default();
        assigned = done.len();
        // Back to open for the next round.
        http.must(Method::POST, "/v1/conversations/bulk", SUPERVISOR, json!({"action": "release", "ids": done})).await;
    }
    (dry, real, assigned)
}

/// Resident memory of this process, in bytes (Linux).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

/// The backlog at 1,000,000 conversations (20 queues, 4 priorities, 1 in 4 held): the
/// median time of one queue's counts, and bytes per conversation.
fn backlog_at_a_million() -> (Duration, u64) {
    use switchboard::domain::{Conversation, ConversationInput, Id, Status};
    let template: ConversationInput = serde_json::from_value(json!({
        "record": {"entity": "case", "id": "CAS-1"}, "queue": "q00", "priority": 0
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let n: u64 = 1_000_000;
    let make = |i: u64| {
        let mut input = template.clone();
        input.queue = Id::parse(&format!("q{:02}", i % 20)).unwrap_or_else(|e| panic!("{e}"));
        input.priority = (i % 4) as u32;
        let created = switchboard::clock::format_ms(1_780_000_000_000 + i as i64);
        let id = Id::parse(&uuid::Uuid::now_v7().to_string()).unwrap_or_else(|e| panic!("{e}"));
        let mut c = Conversation::create(id, input, created);
        if i % 4 == 3 {
            c.status = Status::Active;
        }
        c
    };
    let before = rss();
    let backlog = switchboard::routing::Backlog::load((0..n).map(make));
    let bytes = rss().saturating_sub(before) / n;
    let queue = Id::parse("q07").unwrap_or_else(|e| panic!("{e}"));
    let mut took = Vec::new();
    for _ in 0..1000 {
        let start = Instant::now();
        std::hint::black_box(backlog.counts(&queue));
        took.push(start.elapsed());
    }
    (median(took), bytes)
}

/// Whether to run `part` (`release`, `distribute`, `stats`): every part, or those named
/// on the command line (`cargo bench --bench bulk -- release`).
fn wanted(part: &str) -> bool {
    let named: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    named.is_empty() || named.iter().any(|n| part.contains(n.as_str()))
}

fn main() {
    if wanted("stats") {
        let (counts, bytes) = backlog_at_a_million();
        println!(
            "queue statistics at 1,000,000 conversations: a queue's counts {counts:.2?} (median of 1,000); \
             backlog memory about {bytes} bytes per conversation"
        );
    }
    let (dir, plugins) = workdir();
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(async {
        let config =
            switchboard::config::Config::load(&dir.path().join("switchboard.toml")).unwrap_or_else(|e| panic!("{e}"));
        let state = switchboard::daemon::build(&config).await.unwrap_or_else(|e| panic!("{e}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let base = format!("http://{}", listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(switchboard::daemon::serve(listener, state, async {
            let _ = stopped.await;
        }));
        let http = Http { base, client: reqwest::Client::new() };
        if !plugins {
            println!("(plugins/dist has no built matchers: the demo rules run without plugins.toml)");
        }
        if wanted("release") {
            let (single, bulk) = releases(&http).await;
            let (single, bulk) = (median(single), median(bulk));
            println!(
                "release 1,000 held conversations: 1,000 single calls at concurrency {CONCURRENCY} {single:.1?}, \
                 one bulk call {bulk:.1?} (median of 5): {:.1}x",
                single.as_secs_f64() / bulk.as_secs_f64()
            );
        }
        if wanted("distribute") || wanted("stats") {
            let (dry, real, assigned) = distributions(&http).await;
            println!(
                "distribute 1,000 open conversations over 10,000 representatives ({assigned} assigned): \
                 dry run {:.1?}, real run {:.1?} (median of 3)",
                median(dry),
                median(real)
            );
        }
        if wanted("stats") {
            let mut took = Vec::new();
            for _ in 0..200 {
                let start = Instant::now();
                http.must(reqwest::Method::GET, "/v1/queues/dist/stats", SUPERVISOR, Value::Null).await;
                took.push(start.elapsed());
            }
            println!(
                "GET /v1/queues/{{id}}/stats over HTTP, 10,000 representatives: {:.2?} (median of 200)",
                median(took)
            );
        }
        let _ = stop.send(());
        let _ = server.await;
    });
}

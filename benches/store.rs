//! Durable actions through the store (group commit) and the first page of the
//! *Ongoing record conversations* view over 100,000 conversations.
//!
//! `cargo bench --bench store`. Before the criterion groups, a paced run measures the
//! latency distribution (p50/p99) of actions arriving at a steady 1,000 per second.
//! `cargo bench --bench store -- wal_bound` measures the SQLite files after 1,000,000
//! writes under load instead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use serde_json::json;
use switchboard::domain::{ConversationFilter, Id, PageRequest, RoutingAction, SupervisorAction, Target};
use switchboard::routing::Unrestricted;
use switchboard::store::{self, Author, Command, Store, WriteRequest};

fn id(s: &str) -> Id {
    Id::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

fn request(command: Command) -> WriteRequest {
    WriteRequest {
        author: Author { name: "bench".into(), token_digest: "bench".into() },
        idempotency: None,
        command,
        ruleset: Unrestricted::VERSION.into(),
        now: "2026-11-23T00:00:00.000Z".into(),
        now_ms: 1_795_392_000_000,
    }
}

async fn write(store: &dyn Store, command: Command) {
    if let Err(e) = store.write(request(command)).await {
        panic!("write failed: {e}");
    }
}

/// A store with queues `q0`/`q1`, `reps` representatives and `convs` open conversations.
async fn populated(dir: &std::path::Path, reps: usize, convs: usize) -> Arc<dyn Store> {
    let store = store::open("sqlite://bench.db", dir).await.unwrap_or_else(|e| panic!("{e}"));
    for q in ["q0", "q1"] {
        let input = serde_json::from_value(json!({"name": q})).unwrap_or_else(|e| panic!("{e}"));
        write(store.as_ref(), Command::PutQueue { id: id(q), input }).await;
    }
    for r in 0..reps {
        let input = serde_json::from_value(json!({"name": format!("Rep {r}"), "capacity": 1000, "queues": ["q0"]}))
            .unwrap_or_else(|e| panic!("{e}"));
        write(store.as_ref(), Command::PutRepresentative { id: id(&format!("r{r}")), input }).await;
    }
    // Create conversations concurrently so group commit makes loading 100k quick.
    let mut pending = tokio::task::JoinSet::new();
    for c in 0..convs {
        let store = store.clone();
        pending.spawn(async move {
            let input = serde_json::from_value(json!({
                "id": format!("c{c}"), "record": {"entity": "case", "id": format!("CAS-{c}")}, "queue": "q0",
                "skills": {"billing": 3}, "attributes": {"tier": "gold"}
            }))
            .unwrap_or_else(|e| panic!("{e}"));
            write(store.as_ref(), Command::CreateConversation(input)).await;
        });
        if pending.len() >= 256 {
            pending.join_next().await;
        }
    }
    while pending.join_next().await.is_some() {}
    store
}

/// One action that always succeeds on an open conversation: assign to a queue.
fn action(conv: usize, flip: bool) -> Command {
    let queue = if flip { "q1" } else { "q0" };
    Command::Supervise {
        id: id(&format!("c{conv}")),
        action: SupervisorAction::Route(RoutingAction::Assign, Target::Queue(id(queue))),
        if_match: None,
        note: None,
        expect: None,
    }
}

fn durable_actions(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = rt.block_on(populated(dir.path(), 10, 1024));
    let mut group = c.benchmark_group("durable_actions");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    for concurrency in [1usize, 16, 64, 256] {
        group.bench_with_input(BenchmarkId::from_parameter(concurrency), &concurrency, |b, &concurrency| {
            b.to_async(&rt).iter_custom(|iters| {
                let store = store.clone();
                async move {
                    let start = Instant::now();
                    let mut tasks = tokio::task::JoinSet::new();
                    for w in 0..concurrency {
                        let store = store.clone();
                        let n = iters as usize / concurrency + usize::from(w < iters as usize % concurrency);
                        tasks.spawn(async move {
                            for i in 0..n {
                                write(store.as_ref(), action((w * 4 + i) % 1024, i % 2 == 1)).await;
                            }
                        });
                    }
                    while tasks.join_next().await.is_some() {}
                    start.elapsed()
                }
            });
        });
    }
    group.finish();
}

fn first_page(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = rt.block_on(async {
        let store = populated(dir.path(), 10, 100_000).await;
        // Close the oldest 50,000, so the default view must skip them.
        let mut tasks = tokio::task::JoinSet::new();
        for conv in 0..50_000 {
            let store = store.clone();
            tasks.spawn(async move {
                let cmd = Command::Supervise {
                    id: id(&format!("c{conv}")),
                    action: SupervisorAction::Remove,
                    if_match: None,
                    note: None,
                    expect: None,
                };
                write(store.as_ref(), cmd).await;
            });
            if tasks.len() >= 256 {
                tasks.join_next().await;
            }
        }
        while tasks.join_next().await.is_some() {}
        store
    });
    let mut group = c.benchmark_group("list_100k");
    for (name, filter) in [
        ("default_view", ConversationFilter::default()),
        ("queue_filter", ConversationFilter { queue: Some(id("q0")), ..ConversationFilter::default() }),
    ] {
        group.bench_function(BenchmarkId::new("first_page_100", name), |b| {
            b.to_async(&rt).iter(|| {
                let store = store.clone();
                let filter = filter.clone();
                async move {
                    let page = store.conversations(filter, PageRequest { after: None, limit: 100 }).await;
                    assert_eq!(page.map(|p| p.items.len()).unwrap_or(0), 100);
                }
            });
        });
    }
    group.finish();
}

/// Actions arriving at a steady rate: the latency each one sees, p50 and p99.
fn paced_latency() {
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (rate, seconds) = (1_000u64, 5u64);
    let mut latencies: Vec<Duration> = rt.block_on(async {
        let store = populated(dir.path(), 10, 1024).await;
        let mut tasks = tokio::task::JoinSet::new();
        let start = tokio::time::Instant::now();
        for i in 0..rate * seconds {
            tokio::time::sleep_until(start + Duration::from_micros(i * 1_000_000 / rate)).await;
            let store = store.clone();
            tasks.spawn(async move {
                let t = Instant::now();
                write(store.as_ref(), action(i as usize % 1024, i % 2 == 1)).await;
                t.elapsed()
            });
        }
        let mut out = Vec::new();
        while let Some(Ok(d)) = tasks.join_next().await {
            out.push(d);
        }
        out
    });
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "paced_latency/{rate}_per_s: n={} p50={:.2?} p99={:.2?} max={:.2?}",
        latencies.len(),
        pct(0.50),
        pct(0.99),
        latencies[latencies.len() - 1]
    );
}

/// The SQLite files after `writes` durable writes under load (64 writers and a reader
/// paging the view without pause): the largest WAL seen, and the files against the
/// database's own size. Issue #11's figure: WAL ≤ 64 MiB, files ≤ 1.5 × the database.
fn wal_bound(writes: usize) {
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let size = |name: &str| std::fs::metadata(dir.path().join(name)).map_or(0, |m| m.len());
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    let convs = 20_000;
    let (largest, elapsed, files) = rt.block_on(async {
        let store = populated(dir.path(), 10, convs).await;
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let page = PageRequest { after: None, limit: 50 };
                    let _ = store.conversations(ConversationFilter::default(), page).await;
                }
            })
        };
        let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let largest = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let writers = 64;
        for w in 0..writers {
            let (store, written, largest) = (store.clone(), written.clone(), largest.clone());
            let wal = dir.path().join("bench.db-wal");
            tasks.spawn(async move {
                // Each writer moves its own conversations between the two queues.
                let mine: Vec<usize> = (w..convs).step_by(writers).collect();
                for i in 0..(writes - convs) / writers {
                    write(store.as_ref(), action(mine[i % mine.len()], (i / mine.len()).is_multiple_of(2))).await;
                    if written.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1_000 == 0 {
                        let now = std::fs::metadata(&wal).map_or(0, |m| m.len());
                        largest.fetch_max(now, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let elapsed = start.elapsed();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = reader.await;
        let files = (size("bench.db"), size("bench.db-wal"), size("bench.db-shm"));
        drop(store);
        (largest.load(std::sync::atomic::Ordering::Relaxed), elapsed, files)
    });
    let (db, wal, shm) = files;
    println!(
        "wal_bound/{writes}_writes: {:.0} writes/s under load; largest WAL {:.1} MiB; at the end database {:.1} MiB, \
         WAL {:.1} MiB, shm {:.1} MiB: files {:.2}x the database; after a clean stop WAL {:.1} MiB",
        (writes - convs) as f64 / elapsed.as_secs_f64(),
        mib(largest),
        mib(db),
        mib(wal),
        mib(shm),
        (db + wal + shm) as f64 / db as f64,
        mib(size("bench.db-wal")),
    );
}

fn main() {
    // `cargo bench --bench store -- wal_bound` runs only the WAL measurement (1,000,000
    // writes, a few minutes; not part of the default run).
    if std::env::args().any(|a| a == "wal_bound") {
        wal_bound(1_000_000);
        return;
    }
    // `cargo bench --bench store -- paced_latency` runs only the paced measurement.
    // It runs first: the criterion groups leave large WAL files whose final checkpoint
    // would compete for the disk.
    let only_paced = std::env::args().any(|a| a == "paced_latency");
    if !std::env::args().any(|a| a == "--list") {
        paced_latency();
    }
    if !only_paced {
        let mut c = Criterion::default().configure_from_args();
        durable_actions(&mut c);
        first_page(&mut c);
        c.final_summary();
    }
}

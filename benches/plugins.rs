//! Plugin verdicts: per call and per candidate for batches of 1 to 10,000, through the
//! real host (conversion, lowering, the guest, lifting) with the `vip-scoring` example
//! (which reads only the candidates' user groups), and with a guest that ignores the
//! request (`noop_guest_call`: the interface's cost; `noop_guest_all_fields`: the same
//! asking for every candidate field). `convert_all_fields` is the host's cost of building
//! a request with every field from domain records. `plugin_pool/take_and_return` is what
//! a call pays for the pool of instances. `python_call` is the Python example
//! (`site_affinity`, a CPython interpreter in the component, reading the candidates'
//! attributes) on a conversation it acts on (about half the candidates excluded, the
//! others scored), `python_no_opinion` the same on one it leaves alone (the request
//! still crosses into Python objects).
//!
//! `cargo bench --bench plugins` (builds the plugins first with plugins/build.sh and
//! plugins/build-python.sh; `-- python` for the Python cases only).

use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput};
use switchboard::domain::{Conversation, Id, Representative, RoutingAction};
use switchboard::plugins::{FailurePolicy, Limits, PluginHost, representatives_request};

#[path = "common/synthetic.rs"]
mod synthetic;
use synthetic::{conversation, representatives};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = std::process::Command::new(root.join("plugins/build.sh")).status();
    assert!(built.is_ok_and(|s| s.success()), "plugins/build.sh failed");
    let built = std::process::Command::new(root.join("plugins/build-python.sh")).status();
    assert!(built.is_ok_and(|s| s.success()), "plugins/build-python.sh failed (it needs python3 with venv and pip)");
    // A generous deadline: the bench measures cost, not the sandbox.
    let limits = Limits { deadline_ms: 1_000, memory_mib: 256, fuel: u64::MAX / 2, ..Limits::default() };
    let host = PluginHost::new(limits, None).unwrap_or_else(|e| panic!("{e}"));
    let plugin =
        host.load("vip-scoring", &root.join("plugins/dist/vip-scoring.wasm")).unwrap_or_else(|e| panic!("{e}"));
    let config = r#"{"tiers":["gold","platinum"],"groups":["tier-2"],"boost":5.0}"#.to_owned();
    let using = plugin.with_config(config, FailurePolicy::FailClosed).unwrap_or_else(|e| panic!("{e}"));
    // A guest that answers without reading the request: the interface's own cost,
    // asking for no candidate field (`ok`) and for every one (`all`).
    let hostile = host
        .load("hostile", &root.join("plugins/target/wasm32-wasip2/release/hostile.wasm"))
        .unwrap_or_else(|e| panic!("{e}"));
    let noop = |mode: &str| {
        let config = format!(r#"{{"mode":"{mode}"}}"#);
        hostile.with_config(config, FailurePolicy::FailClosed).unwrap_or_else(|e| panic!("{e}"))
    };
    let (noop_none, noop_all) = (noop("ok"), noop("all"));
    let python = host
        .load("site-affinity", &root.join("plugins/target/python/site_affinity.wasm"))
        .unwrap_or_else(|e| panic!("{e}"))
        .with_config(r#"{"sites":{"pt":["lisbon"]},"require":true}"#.into(), FailurePolicy::FailClosed)
        .unwrap_or_else(|e| panic!("{e}"));
    let conv = conversation();
    let portuguese = portuguese_conversation();

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("plugin_evaluate");
    for n in [1usize, 10, 100, 1_000, 10_000] {
        let reps = representatives(n, 11);
        let refs: Vec<&Representative> = reps.iter().collect();
        let request = |needs| representatives_request(RoutingAction::Assign, 0, &conv, &refs, |_| 0.0, needs);
        group.throughput(Throughput::Elements(n as u64));
        for (name, using) in [("call", &using), ("noop_guest_call", &noop_none), ("noop_guest_all_fields", &noop_all)] {
            let req = request(using.needs);
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| std::hint::black_box(using.evaluate(&req).unwrap_or_else(|e| panic!("{e}"))));
            });
        }
        for (name, conv) in [("python_call", &portuguese), ("python_no_opinion", &conv)] {
            let req = representatives_request(RoutingAction::Assign, 0, conv, &refs, |_| 0.0, python.needs);
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| std::hint::black_box(python.evaluate(&req).unwrap_or_else(|e| panic!("{e}"))));
            });
        }
        group.bench_with_input(BenchmarkId::new("convert_and_call", n), &n, |b, _| {
            b.iter(|| std::hint::black_box(using.evaluate(&request(using.needs)).unwrap_or_else(|e| panic!("{e}"))));
        });
        group.bench_with_input(BenchmarkId::new("convert_all_fields", n), &n, |b, _| {
            b.iter(|| std::hint::black_box(request(noop_all.needs)));
        });
    }
    group.finish();

    // What a call pays for the pool: take an idle instance, give it back.
    c.bench_function("plugin_pool/take_and_return", |b| {
        b.iter(|| assert!(std::hint::black_box(using.pool_round_trip())));
    });
    c.final_summary();
}

/// A case of a customer in Portugal, for the Python example.
fn portuguese_conversation() -> Conversation {
    let input = serde_json::from_value(serde_json::json!({
        "record": {"entity": "case", "id": "CAS-1"}, "queue": "billing", "attributes": {"country": "pt"}
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    Conversation::create(Id::parse("c2").unwrap_or_else(|e| panic!("{e}")), input, String::new())
}

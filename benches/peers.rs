//! Peer benchmarks (issue #6): the demo's representative-eligibility policy evaluated by
//! Switchboard, by Cedar and by Rego (regorus) for the same conversation over the same
//! representatives. Before timing anything, each size checks that the three agree on the
//! eligible set (and panics with the difference if not). `benches/common/peers.rs` says
//! how each peer expresses the policy.
//!
//! For 100, 1,000 and 10,000 representatives, group `peers_<n>` times, per batch of `n`
//! (criterion's throughput is `n` elements, so time ÷ `n` is the time per candidate):
//! - `switchboard_pass`: the eligibility pass over a compiled candidate table (as
//!   `eligibility_pass` in `benches/rules.rs`);
//! - `switchboard_request`: what a candidates request does after reading the
//!   conversation, `Directory::rank_representatives` over the routing state in memory:
//!   pick the applicable rules, derive the conversation's columns, the pass, the scores,
//!   the ordering and the answer's entries (every eligible one: no `limit`), no HTTP;
//! - `cedar`: one `Request` and one `is_authorized` per representative (entities built
//!   once, untimed);
//! - `rego_vm`: one evaluation of the whole batch on regorus' VM (policy compiled to a
//!   program once, data loaded once, untimed);
//! - `rego_interpreter`: the same on regorus' interpreter.
//!
//! At the end it prints the time per candidate of each and each peer's ratio to
//! Switchboard, from criterion's saved medians of this run.
//!
//! `cargo bench --bench peers`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, Throughput};
use std::sync::Arc;

use switchboard::domain::{Representative, RepresentativeFilter};
use switchboard::routing::{Directory, Policy};

#[path = "common/peers.rs"]
mod peers;
#[path = "common/synthetic.rs"]
mod synthetic;

use peers::{Cedar, Rego};

/// The sizes measured.
const SIZES: [usize; 3] = [100, 1_000, 10_000];

/// The synthetic contact center's seed: the VIP billing case has eligible representatives
/// among the first 100 (it has none at some seeds).
const SEED: u64 = 3;

/// The functions of each group, in the order they run.
const FUNCTIONS: [&str; 5] = ["switchboard_pass", "switchboard_request", "cedar", "rego_vm", "rego_interpreter"];

/// Per size: the agreement check, then the five functions of group `peers_<n>`.
fn peers(c: &mut Criterion) {
    let set = peers::demo_rules();
    let conv = synthetic::conversation();
    let ctx = peers::assign(&conv);
    for n in SIZES {
        let reps = synthetic::representatives(n, SEED);
        let eligible = peers::assert_agree(&set, &conv, &reps, &format!("{n} representatives"));
        println!("{n} representatives: Switchboard, Cedar and Rego agree on {} eligible", eligible.len());

        let refs: Vec<&Representative> = reps.iter().collect();
        let table = set.representative_table(&refs);
        let cedar = Cedar::new(&conv, &reps);
        let mut rego = Rego::new(&conv, &reps);

        let mut group = c.benchmark_group(format!("peers_{n}"));
        group.throughput(Throughput::Elements(n as u64));
        let mut out = Vec::with_capacity(n);
        group.bench_function(FUNCTIONS[0], |b| {
            b.iter(|| {
                set.eligible_representatives(&ctx, &table, &mut out);
                std::hint::black_box(&out);
            });
        });
        let directory = Directory::load(reps.clone(), Vec::new());
        let policy: Arc<Box<dyn Policy>> = Arc::new(Box::new(set.clone()));
        let all = RepresentativeFilter::default();
        group.bench_function(FUNCTIONS[1], |b| {
            b.iter(|| std::hint::black_box(directory.rank_representatives(&policy, ctx, &all, None, None)))
        });
        // The peers take micro- to milliseconds a batch: fewer, shorter samples.
        group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(6));
        group.bench_function(FUNCTIONS[2], |b| {
            b.iter(|| (0..cedar.len()).filter(|&i| cedar.allowed(i)).count());
        });
        group.bench_function(FUNCTIONS[3], |b| b.iter(|| rego.run_vm()));
        group.bench_function(FUNCTIONS[4], |b| b.iter(|| rego.run_interpreter()));
        group.finish();
    }
}

/// Criterion's output folder, found as criterion finds it when run by `cargo bench`.
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from).join("criterion")
}

/// The median time per candidate (ns) of `function` at size `n`, if this run measured it.
fn per_candidate(n: usize, function: &str, since: SystemTime) -> Option<f64> {
    let path = criterion_dir().join(format!("peers_{n}")).join(function).join("new/estimates.json");
    let fresh = std::fs::metadata(&path).and_then(|m| m.modified()).is_ok_and(|t| t >= since);
    if !fresh {
        return None;
    }
    let estimates: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
    Some(estimates["median"]["point_estimate"].as_f64()? / n as f64)
}

/// Time per candidate of each function, and each peer's ratio to Switchboard's pass and
/// to its whole request.
fn print_ratios(since: SystemTime) {
    let mut lines = Vec::new();
    for n in SIZES {
        let t: Vec<Option<f64>> = FUNCTIONS.iter().map(|f| per_candidate(n, f, since)).collect();
        let shown: Vec<String> = FUNCTIONS
            .iter()
            .zip(&t)
            .map(|(f, t)| format!("{f} {}", t.map_or("-".into(), |t| format!("{t:.2}"))))
            .collect();
        lines.push(format!("{n:>6} representatives, ns/candidate (median): {}", shown.join(", ")));
        for (f, peer) in FUNCTIONS.iter().zip(&t).skip(2) {
            let (Some(peer), Some(pass), Some(request)) = (peer, t[0], t[1]) else { continue };
            lines.push(format!("        {f}: {:.0}x the pass, {:.0}x the whole request", peer / pass, peer / request));
        }
    }
    println!("\nPeers per candidate (from {}):", criterion_dir().display());
    for line in lines {
        println!("{line}");
    }
}

/// Runs the groups, then prints the per-candidate table and ratios.
fn main() {
    let started = SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    peers(&mut c);
    c.final_summary();
    print_ratios(started);
}

//! Rule evaluation: the eligibility pass per candidate over the demo's rules, the cost
//! of compiling candidates, explanations, rules that do not apply, and 1 to 1,000 rules
//! that all apply.
//!
//! `cargo bench --bench rules`.

use criterion::{BenchmarkId, Criterion, Throughput};
use switchboard::domain::{Representative, RoutingAction, TargetKind};
use switchboard::routing::{Policy, RoutingContext};
use switchboard::rules::{self, RuleSet, Source};

#[path = "common/synthetic.rs"]
mod synthetic;
use synthetic::{conversation, representatives};

fn demo_rules(extra_inapplicable: usize) -> RuleSet {
    // The declarative demo rules (the plugin rules are measured by the plugin bench).
    let mut sources = rules::read_dir(std::path::Path::new("rules")).unwrap_or_else(|e| panic!("{e:?}"));
    sources.retain(|s| !s.name.ends_with("plugins.toml"));
    let mut text = String::new();
    for i in 0..extra_inapplicable {
        text.push_str(&format!(
            "[[rule]]\nid = \"other-{i}\"\ntarget = \"representative\"\nwhen = {{ queue = [\"q{i}\"] }}\nrequire = {{ presence = [\"available\"], min_free_capacity = {i} }}\n"
        ));
    }
    sources.push(Source { name: "extra.toml".into(), text });
    rules::compile(&sources).unwrap_or_else(|e| panic!("{e:?}"))
}

fn eligibility(c: &mut Criterion) {
    let set = demo_rules(0);
    let conv = conversation();
    let ctx = RoutingContext {
        action: RoutingAction::Assign,
        conversation: &conv,
        explain: false,
        now_ms: switchboard::clock::now_ms(),
    };
    let applicable = set.applicable(&ctx, TargetKind::Representative);
    let conditions: usize = applicable.iter().map(|r| r.reqs.len()).sum();
    println!("demo rules: {} applicable, {} conditions in all", applicable.len(), conditions);

    let mut group = c.benchmark_group("eligibility_pass");
    for n in [100usize, 1_000, 10_000, 100_000] {
        let reps = representatives(n, 7);
        let refs: Vec<&Representative> = reps.iter().collect();
        let table = set.representative_table(&refs);
        let mut out = Vec::with_capacity(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                set.eligible_representatives(&ctx, &table, &mut out);
                std::hint::black_box(&out);
            });
        });
    }
    group.finish();

    let reps = representatives(10_000, 7);
    let refs: Vec<&Representative> = reps.iter().collect();
    let mut group = c.benchmark_group("per_request_10k");
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("compile_candidates", |b| {
        b.iter(|| std::hint::black_box(set.representative_table(&refs)));
    });
    group.bench_function("verdicts", |b| {
        b.iter(|| std::hint::black_box(set.representatives(ctx, &refs)));
    });
    group.bench_function("verdicts_explained", |b| {
        let ctx = RoutingContext { explain: true, ..ctx };
        b.iter(|| std::hint::black_box(set.representatives(ctx, &refs)));
    });
    group.finish();
}

/// Choosing the applicable rules and the pass over 10,000 representatives, for each
/// rule set `rule_set(k)`; prints how many are eligible with each.
fn rule_counts_10k(c: &mut Criterion, name: &str, counts: [usize; 4], rule_set: fn(usize) -> RuleSet) {
    let conv = conversation();
    let ctx = RoutingContext {
        action: RoutingAction::Assign,
        conversation: &conv,
        explain: false,
        now_ms: switchboard::clock::now_ms(),
    };
    let reps = representatives(10_000, 7);
    let refs: Vec<&Representative> = reps.iter().collect();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(10_000));
    for k in counts {
        let set = rule_set(k);
        let table = set.representative_table(&refs);
        let mut out = Vec::new();
        set.eligible_representatives(&ctx, &table, &mut out);
        println!("{name}/{k}: {} of 10000 eligible", out.iter().filter(|&&e| e).count());
        group.bench_with_input(BenchmarkId::from_parameter(k), &k, |b, _| {
            b.iter(|| {
                set.eligible_representatives(&ctx, &table, &mut out);
                std::hint::black_box(&out);
            });
        });
    }
    group.finish();
}

/// `n` rules that all apply to every conversation, each one requirement, cycling
/// through the kinds of requirement; lenient, so that most candidates meet them all and
/// every rule is evaluated for most candidates.
fn applicable_rule_set(n: usize) -> RuleSet {
    let requirements = [
        "presence = [\"available\", \"busy\", \"busy_dnd\", \"away\"]",
        "min_free_capacity = 0",
        "skills = { english = 0 }",
        "user_groups_any = [\"tier-1\", \"tier-2\", \"supervisors\"]",
        "capacity_for_conversation = true",
    ];
    let mut text = String::new();
    for i in 0..n {
        let require = requirements[i % requirements.len()];
        text.push_str(&format!("[[rule]]\nid = \"r{i}\"\ntarget = \"representative\"\nrequire = {{ {require} }}\n"));
    }
    rules::compile(&[Source { name: "many.toml".into(), text }]).unwrap_or_else(|e| panic!("{e:?}"))
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    eligibility(&mut c);
    // The demo's rules plus 0 to 1,000 that do not apply (`when` names other queues).
    rule_counts_10k(&mut c, "rules_that_do_not_apply_10k", [0, 10, 100, 1_000], demo_rules);
    rule_counts_10k(&mut c, "rules_that_apply_10k", [1, 10, 100, 1_000], applicable_rule_set);
    c.final_summary();
}

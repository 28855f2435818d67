//! WASM matcher plugins with real compiled components: verdicts end to end over HTTP,
//! and hostile guests that the sandbox must contain.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN, Daemon, INTEGRATION, SUPERVISOR, conversation_in, install_plugin};
use serde_json::{Value, json};

async fn daemon() -> Daemon {
    // A deadline with room for unoptimised test builds on a loaded machine.
    let config = "plugins_dir = \"plugins\"\nplugin_cache = \"cache\"\n[plugin_limits]\ndeadline_ms = 50\n";
    let daemon = Daemon::start_with(config).await;
    daemon.client.seed_directory().await;
    daemon
}

fn plugins_dir(d: &Daemon) -> std::path::PathBuf {
    d.dir.path().join("plugins")
}

fn write_rules(d: &Daemon, text: &str) {
    std::fs::write(d.dir.path().join("rules/plugins.toml"), text).unwrap();
}

async fn reload(d: &Daemon) -> Value {
    d.client.post("/v1/rules/reload", ADMIN, json!({})).await.expect(200).json
}

/// A daemon with the hostile guest installed and conversation `c1` open.
async fn hostile_daemon() -> Daemon {
    let d = daemon().await;
    install_plugin(&plugins_dir(&d), "hostile", "hostile");
    conversation_in(&d.client, "c1", "open").await;
    d
}

/// The candidates of `c1` (explained) once `rules` are written and reloaded.
async fn candidates_under(d: &Daemon, rules: &str) -> Value {
    write_rules(d, rules);
    reload(d).await;
    d.client.get(CANDIDATES, SUPERVISOR).await.expect(200).json
}

/// The first reason of the first excluded candidate.
fn first_reason(got: &Value) -> String {
    got["excluded"][0]["reasons"][0]["detail"].as_str().unwrap().to_owned()
}

fn ids(v: &Value, key: &str) -> Vec<String> {
    v[key].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect()
}

const CANDIDATES: &str = "/v1/conversations/c1/candidates?action=assign&target=representative&explain=true";

#[tokio::test]
async fn verdicts_change_eligibility_order_and_reasons() {
    let d = daemon().await;
    let c = &d.client;
    install_plugin(&plugins_dir(&d), "language_match", "language-match");
    install_plugin(&plugins_dir(&d), "vip_scoring", "vip-scoring");
    c.put(
        "/v1/representatives/cy",
        INTEGRATION,
        json!({"name": "Cy", "skills": {"spanish": 9}, "user_groups": ["tier-2"]}),
    )
    .await
    .expect(201);
    c.patch("/v1/representatives/ann", INTEGRATION, json!({"skills": {"billing": 8, "spanish": 6}})).await.expect(200);
    c.post(
        "/v1/conversations",
        INTEGRATION,
        json!({"id": "c1", "record": {"entity": "case", "id": "X"}, "queue": "billing",
               "attributes": {"language": "spanish", "customer_tier": "gold"}}),
    )
    .await
    .expect(201);
    let before = c.get(CANDIDATES, SUPERVISOR).await.expect(200).json;
    assert_eq!(ids(&before, "candidates"), ["ann", "bob", "cy"], "no rules: all, by name");

    write_rules(
        &d,
        r#"
[[rule]]
id = "speaks"
target = "representative"
plugin = { name = "language-match", config = { min_level = 6, weight = 1.0 } }

[[rule]]
id = "vip"
target = "representative"
plugin = { name = "vip-scoring", config = { tiers = ["gold"], groups = ["tier-2"], boost = 0.5 } }
"#,
    );
    let status = reload(&d).await;
    assert_eq!(status["plugins"].as_array().unwrap().len(), 2);
    assert_eq!(status["plugins"][0]["name"], "language-match");
    assert_eq!(status["plugins"][0]["sha256"].as_str().unwrap().len(), 64);

    let after = c.get(CANDIDATES, SUPERVISOR).await.expect(200).json;
    // cy: 9 (spanish) + 0.5 (tier-2) = 9.5; ann: 6 + 0.5 = 6.5; bob speaks no spanish.
    assert_eq!(ids(&after, "candidates"), ["cy", "ann"]);
    assert_eq!(after["candidates"][0]["score"], 9.5);
    assert_eq!(after["candidates"][1]["score"], 6.5);
    assert_eq!(
        after["excluded"],
        json!([{"id": "bob", "name": "Bob Stone", "reasons": [
            {"rule": "speaks", "detail": "plugin `language-match`: speaks `spanish` at 0, below 6"}]}])
    );
    // Where each score came from: the plugins' adjustments, then (below) a rank key's.
    assert_eq!(
        after["candidates"][0]["score_parts"],
        json!([{"rule": "speaks", "by": "plugin", "plugin": "language-match", "points": 9.0},
               {"rule": "vip", "by": "plugin", "plugin": "vip-scoring", "points": 0.5}])
    );
    let plain = c.get(&CANDIDATES.replace("&explain=true", ""), SUPERVISOR).await.expect(200).json;
    assert!(plain["candidates"][0].get("score_parts").is_none(), "parts only with explain: {plain}");
    std::fs::write(
        d.dir.path().join("rules/billing.toml"),
        "[[rule]]\nid = \"billing-first\"\ntarget = \"representative\"\n\
         [[rule.rank]]\nby = \"skill\"\nskill = \"billing\"\nweight = 0.5\n",
    )
    .unwrap();
    reload(&d).await;
    let ranked = c.get(CANDIDATES, SUPERVISOR).await.expect(200).json;
    // ann: 4 (billing 8 x 0.5) + 6 + 0.5; cy has no billing: 0 + 9 + 0.5.
    assert_eq!(ids(&ranked, "candidates"), ["ann", "cy"]);
    assert_eq!(ranked["candidates"][0]["score"], 10.5);
    let parts = ranked["candidates"][0]["score_parts"].as_array().unwrap();
    let key = parts.iter().find(|p| p["rule"] == "billing-first").unwrap();
    assert_eq!(
        key,
        &json!({"rule": "billing-first", "by": "skill", "skill": "billing", "value": 8.0, "weight": 0.5, "points": 4.0})
    );
    let sum: f64 = parts.iter().map(|p| p["points"].as_f64().unwrap()).sum();
    assert_eq!(sum, 10.5, "the parts add up to the score: {parts:?}");
    std::fs::remove_file(d.dir.path().join("rules/billing.toml")).unwrap();
    reload(&d).await;

    let refused = c.post("/v1/conversations/c1/assign", SUPERVISOR, json!({"representative": "bob"})).await;
    assert_eq!(refused.problem(422, "not_eligible").json["reasons"][0]["rule"], "speaks");
    c.post("/v1/conversations/c1/assign", SUPERVISOR, json!({"representative": "cy"})).await.expect(200);
    let metrics = c.get("/metrics", SUPERVISOR).await.text;
    assert!(metrics.contains(r#"switchboard_plugin_calls_total{plugin="language-match",outcome="ok"}"#), "{metrics}");
    // Each plugin's call durations: a histogram in /metrics, p50/p99 in GET /v1/rules.
    assert!(
        metrics.contains(r#"switchboard_plugin_call_duration_seconds_bucket{plugin="vip-scoring",le="0.000001"}"#),
        "{metrics}"
    );
    let rules = c.get("/v1/rules", SUPERVISOR).await.expect(200).json;
    for p in rules["plugins"].as_array().unwrap() {
        let (p50, p99) = (p["call_p50_us"].as_f64().unwrap(), p["call_p99_us"].as_f64().unwrap());
        assert!(0.0 < p50 && p50 <= p99, "{p}");
    }
}

/// A rule's `limits` replace the daemon's `[plugin_limits]` for that rule's calls only.
#[tokio::test]
async fn a_rule_sets_its_plugins_call_budget() {
    let d = hostile_daemon().await;
    let c = &d.client;
    let budget = |limits: &str| hostile_rule("loop", "fail_closed") + &format!("limits = {{ {limits} }}\n");
    // 1,000 + 10 per candidate (ann and bob): the endless loop stops at 1,020.
    let reason = first_reason(&candidates_under(&d, &budget("fuel = 1000, fuel_per_candidate = 10")).await);
    assert!(reason.contains("used up its fuel of 1020 instructions"), "{reason}");
    // Another rule of the same plugin keeps the daemon's budget (5,000,000 + 5,000 each):
    // the budgeted rule applies to emails only.
    let emails = budget("fuel = 1000, fuel_per_candidate = 10") + "[rule.when]\nentity = [\"email\"]\n";
    let other = hostile_rule("loop", "fail_closed").replace("id = \"hostile\"", "id = \"hostile-2\"");
    let case = candidates_under(&d, &format!("{emails}\n{other}")).await;
    assert!(first_reason(&case).contains("of 5010000 instructions"), "{case}");
    c.post(
        "/v1/conversations",
        INTEGRATION,
        json!({"id": "e1", "record": {"entity": "email", "id": "E-1"}, "queue": "billing"}),
    )
    .await
    .expect(201);
    let email = c.get(&CANDIDATES.replace("/c1/", "/e1/"), SUPERVISOR).await.expect(200).json;
    assert!(first_reason(&email).contains("of 1020 instructions"), "{email}");
    // A deadline out of range is refused where it is written, the rules in force kept.
    write_rules(&d, &budget("deadline_ms = 0"));
    let refused = c.post("/v1/rules/reload", ADMIN, json!({})).await.problem(422, "invalid_rules").json;
    let text = refused.to_string();
    assert!(text.contains("plugin `limits.deadline_ms` must be 1 to 60000"), "{text}");
    write_rules(&d, &budget("deadline = 5"));
    let refused = c.post("/v1/rules/reload", ADMIN, json!({})).await.problem(422, "invalid_rules").json;
    assert!(refused.to_string().contains("unknown field `deadline`"), "{refused}");
}

/// Each misdeed: the candidates are excluded with a reason naming the plugin (fail
/// closed), the instance is replaced, and the daemon keeps serving.
#[tokio::test]
async fn hostile_guests_are_contained() {
    let d = hostile_daemon().await;
    let c = &d.client;
    let cases = [
        ("loop", "used up its fuel of"),
        ("memory", "memory"),
        ("panic", "trapped"),
        ("oversized", "memory"),
        ("wrong-count", "returned 3 scores for 2 candidates"),
    ];
    for (mode, needle) in cases {
        let got = candidates_under(&d, &hostile_rule(mode, "fail_closed")).await;
        assert!(got["candidates"].as_array().unwrap().is_empty(), "{mode}: {got}");
        let reason = first_reason(&got);
        assert!(reason.starts_with("plugin `hostile` failed: "), "{mode}: {reason}");
        assert!(reason.contains(needle), "{mode}: `{reason}` lacks `{needle}`");
        assert!(!reason.contains('\n') && !reason.contains("backtrace"), "{mode}: `{reason}`");
        // The daemon serves normally: health, lists, and a second call (fresh instance).
        c.get("/healthz", SUPERVISOR).await.expect(200);
        c.get("/v1/conversations", SUPERVISOR).await.expect(200);
        let again = c.get(CANDIDATES, SUPERVISOR).await.expect(200).json;
        assert_eq!(first_reason(&again), reason, "{mode}");
    }
    // fail_open skips a failing plugin.
    let got = candidates_under(&d, &hostile_rule("panic", "fail_open")).await;
    assert_eq!(ids(&got, "candidates"), ["ann", "bob"]);
    // A well-behaved call after all that, and the failures are counted.
    write_rules(&d, &hostile_rule("print", "fail_closed"));
    let status = reload(&d).await;
    assert!(status["plugins"][0]["failures"].as_u64().unwrap() >= 10, "{status}");
    assert_eq!(status["plugins"][0]["breaker"], "closed", "{status}");
    let metrics = c.get("/metrics", SUPERVISOR).await.text;
    assert!(metrics.contains(r#"switchboard_plugin_calls_total{plugin="hostile",outcome="failed"}"#), "{metrics}");
    let got = c.get(CANDIDATES, SUPERVISOR).await.expect(200).json;
    assert_eq!(ids(&got, "candidates"), ["ann", "bob"], "{got}");
}

#[tokio::test]
async fn guests_are_granted_nothing() {
    let d = hostile_daemon().await;
    let got = candidates_under(&d, &hostile_rule("sandbox", "fail_closed")).await;
    assert_eq!(first_reason(&got), "plugin `hostile`: clock 0, env 0, args 0, fs denied, net denied");
}

/// The daemon's requests (built from its routing table's rows, not from records) reach a
/// guest whole: the `echo` guest answers what it read of each representative.
#[tokio::test]
async fn the_routing_table_sends_every_field() {
    let d = hostile_daemon().await;
    let got = candidates_under(&d, &hostile_rule("echo", "fail_closed")).await;
    let details: Vec<&str> = got["excluded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reasons"][0]["detail"].as_str().unwrap().trim_start_matches("plugin `hostile`: "))
        .collect();
    // The first candidate's reason starts with the conversation.
    let conversation = details.iter().find_map(|d| d.split_once(" | ")).map(|(c, _)| c);
    assert!(conversation.is_some_and(|c| c.starts_with("Assign at ") && c.contains(": c1 case in billing")), "{got}");
    let mut read: Vec<&str> = details.iter().map(|d| d.rsplit(" | ").next().unwrap()).collect();
    read.sort();
    assert_eq!(
        read,
        [
            "ann: Some(Available) capacity 3/3 idle 1440 skills [billing:8] queues [billing] \
             groups [tier-2] attributes []",
            "bob: Some(Busy) capacity 2/2 idle 1440 skills [networking:5] queues [support] \
             groups [tier-1] attributes []",
        ],
        "{got}"
    );
}

fn hostile_rule(mode: &str, on_failure: &str) -> String {
    format!(
        "[[rule]]\nid = \"hostile\"\ntarget = \"representative\"\n[rule.plugin]\nname = \"hostile\"\non_failure = \"{on_failure}\"\nconfig = {{ mode = \"{mode}\" }}\n"
    )
}

#[tokio::test]
async fn a_component_of_another_interface_version_is_refused_clearly() {
    let d = daemon().await;
    let c = &d.client;
    install_plugin(&plugins_dir(&d), "old_interface", "old-matcher");
    let failed = c.post("/v1/rules/reload", ADMIN, json!({})).await.problem(422, "invalid_rules");
    let message = failed.json["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains(
            "does not export `switchboard:matcher/matcher@0.3.0` (it exports `switchboard:matcher/matcher@0.0.9`)"
        ),
        "{message}"
    );
    assert!(failed.json["errors"][0]["file"].as_str().unwrap().ends_with("old-matcher.wasm"));
    // A rule naming a plugin that is not loaded is a validation error too.
    std::fs::remove_file(plugins_dir(&d).join("old-matcher.wasm")).unwrap();
    write_rules(&d, "[[rule]]\nid = \"x\"\ntarget = \"queue\"\nplugin = { name = \"nope\" }\n");
    let failed = c.post("/v1/rules/reload", ADMIN, json!({})).await.problem(422, "invalid_rules");
    let e = &failed.json["errors"][0];
    assert_eq!(
        (e["file"].as_str(), e["line"].as_u64(), e["column"].as_u64()),
        (Some("rules/plugins.toml"), Some(4), Some(19))
    );
    assert!(e["message"].as_str().unwrap().contains("plugin `nope` is not loaded"), "{e}");
    c.get("/healthz", SUPERVISOR).await.expect(200);
}

#[test]
fn a_restart_takes_compiled_code_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let wasm = common::built_plugins().join("vip_scoring.wasm");
    let limits = switchboard::plugins::Limits { deadline_ms: 50, ..Default::default() };
    let first = switchboard::plugins::PluginHost::new(limits, Some(cache.path())).unwrap();
    first.load("vip-scoring", &wasm).unwrap();
    let (hits, misses) = first.compile_cache_stats().unwrap();
    assert_eq!((hits, misses), (0, 1), "a cold cache compiles");
    drop(first);
    // A new host over the same folder is what a restarted daemon has.
    let second = switchboard::plugins::PluginHost::new(limits, Some(cache.path())).unwrap();
    second.load("vip-scoring", &wasm).unwrap();
    assert_eq!(second.compile_cache_stats(), Some((1, 0)), "the restart reads the compiled code");
    // Another file is compiled, not confused with the cached one.
    second.load("language-match", &common::built_plugins().join("language_match.wasm")).unwrap();
    assert_eq!(second.compile_cache_stats(), Some((1, 1)));
}

#[path = "common/wasm_patch.rs"]
mod wasm_patch;

use switchboard::domain::RoutingAction;
use switchboard::plugins::{
    BreakerState, FailurePolicy, Limits, PluginHost, PluginRequest, PluginUse, answer_budget, wit,
};

/// A request over `n` representatives that asks for nothing (the hostile guest reads
/// nothing).
fn request(n: usize) -> PluginRequest {
    let reps = synthetic::representatives(n, 3);
    let refs: Vec<&switchboard::domain::Representative> = reps.iter().collect();
    let conv = python_conversation();
    switchboard::plugins::representatives_request(RoutingAction::Assign, 0, &conv, &refs, |_| 0.0, wit::Needs::empty())
}

/// Limits for direct calls: a wall-clock deadline far beyond anything a loaded machine
/// takes, so that only the deterministic limits (fuel, memory, tables, answer size) decide.
fn direct_limits() -> Limits {
    Limits { deadline_ms: 60_000, init_deadline_ms: 60_000, ..Limits::default() }
}

fn hostile_use(limits: Limits, mode: &str) -> PluginUse {
    let host = PluginHost::new(limits, None).unwrap();
    let plugin = host.load("hostile", &common::built_plugins().join("hostile.wasm")).unwrap();
    plugin.with_config(format!(r#"{{"mode":"{mode}"}}"#), FailurePolicy::FailClosed).unwrap()
}

/// A failure as an API client sees it: one line, no backtrace, no host path.
fn assert_one_clean_line(what: &str) {
    assert!(!what.contains('\n') && !what.contains("backtrace") && !what.contains('/'), "`{what}`");
}

/// Answers far larger than the batch (the flood of exclusions, 10 MiB of scores, a 10
/// MiB reason) are refused before the host copies them: the lift may copy at most
/// `answer_budget(n)` bytes, and the instance stays within its memory limit.
#[test]
fn oversized_answers_are_refused_before_they_are_copied() {
    // Fuel enough to build the answers: the host must refuse them, not the fuel.
    let limits = Limits { fuel: 1_000_000_000, ..direct_limits() };
    for mode in ["flood", "flood-wide", "big-scores", "big-reason"] {
        let using = hostile_use(limits, mode);
        let e = using.evaluate(&request(2)).unwrap_err();
        let budget = answer_budget(2);
        assert_eq!(e.what, format!("answered more than {budget} bytes for 2 candidates (its answer was not read)"));
        assert!(budget < 20_000, "{mode}: the host copies at most {budget} bytes of this answer");
        let stats = using.plugin.stats();
        assert!(stats.peak_instance_memory <= limits.memory_mib << 20, "{mode}: {stats:?}");
        assert_eq!(stats.instances, 0, "{mode}: the instance that answered so is discarded");
    }
}

/// Memory and tables are limited per instance: extra memories are refused at
/// instantiation, and growing a table past the instance's limit traps the call.
#[test]
fn memories_and_tables_are_limited_per_instance() {
    let dir = tempfile::tempdir().unwrap();
    let built = std::fs::read(common::built_plugins().join("hostile.wasm")).unwrap();
    let host = PluginHost::new(direct_limits(), None).unwrap();
    let config = || r#"{"mode":"ok"}"#.to_owned();

    // 1 + 8 memories of 255 pages, each under the limit on its own.
    let path = dir.path().join("memories.wasm");
    std::fs::write(&path, wasm_patch::add_memories(&built, 8, 255)).unwrap();
    let plugin = host.load("memories", &path).unwrap();
    let e = plugin.with_config(config(), FailurePolicy::FailClosed).unwrap_err();
    assert_eq!(e.what, "declares more than 1 memory per instance and cannot be instantiated");

    // `table.grow` by a million elements at every call.
    let path = dir.path().join("tables.wasm");
    std::fs::write(&path, wasm_patch::grow_table_in_evaluate(&built, 1_000_000)).unwrap();
    let plugin = host.load("tables", &path).unwrap();
    let using = plugin.with_config(config(), FailurePolicy::FailClosed).unwrap();
    for _ in 0..2 {
        let e = using.evaluate(&request(2)).unwrap_err();
        assert_eq!(e.what, "exceeded its table limit of 10000 elements");
    }
    let stats = plugin.stats();
    assert_eq!((stats.instances, stats.instantiations, stats.failures), (0, 2, 2), "{stats:?}");
}

/// A guest that panics on every call: each failure is one line without a backtrace;
/// after `breaker_failures` in a row the plugin is backed off: calls fail at once,
/// without creating instances.
#[test]
fn a_plugin_that_keeps_failing_is_backed_off() {
    let limits = Limits { breaker_failures: 3, breaker_cooldown_ms: 3_600_000, ..direct_limits() };
    let using = hostile_use(limits, "panic");
    for _ in 0..3 {
        let e = using.evaluate(&request(2)).unwrap_err();
        assert_eq!(e.what, "trapped (a panic or abort in the guest)");
        assert_one_clean_line(&e.what);
    }
    assert_eq!(using.breaker(), BreakerState::Open);
    for _ in 0..5 {
        let e = using.evaluate(&request(2)).unwrap_err();
        assert_eq!(e.what, "is backed off after 3 consecutive failures (tried again after 3600000 ms)");
    }
    let stats = using.plugin.stats();
    assert_eq!(stats.breaker, BreakerState::Open);
    assert_eq!((stats.calls, stats.failures, stats.rejected), (8, 8, 5));
    // One instance at load, one for each of the two calls after a trap; none since.
    assert_eq!((stats.instantiations, stats.breaker_trips, stats.consecutive_failures), (3, 1, 3));
}

/// After the cool-down one trial call runs; a good answer closes the breaker.
#[test]
fn a_good_trial_closes_the_breaker() {
    // No cool-down: the call after the breaker opens is the trial.
    let limits = Limits { breaker_failures: 3, breaker_cooldown_ms: 0, ..direct_limits() };
    let using = hostile_use(limits, "flaky");
    for _ in 0..3 {
        let e = using.evaluate(&request(2)).unwrap_err();
        assert!(e.what.starts_with("returned 3 scores for 2 candidates"), "{}", e.what);
    }
    assert_eq!(using.breaker(), BreakerState::HalfOpen);
    using.evaluate(&request(2)).unwrap();
    assert_eq!(using.breaker(), BreakerState::Closed);
    let stats = using.plugin.stats();
    // A wrong answer does not cost the instance: one instance served all four calls.
    assert_eq!((stats.breaker_trips, stats.instantiations, stats.consecutive_failures), (1, 1, 0), "{stats:?}");
}

/// Creating an instance and its `init` run under their own budget: a guest whose `init`
/// takes many times a call's fuel is created, at load and again inside a call, and the
/// call still has its whole budget.
#[test]
fn creating_an_instance_is_not_charged_to_the_call() {
    let limits = Limits { fuel: 1_000_000, ..direct_limits() };
    let using = hostile_use(limits, "slow-init");
    using.evaluate(&request(2)).unwrap();
    assert_eq!(using.drop_idle_instances(), 1);
    // This call creates its instance first.
    using.evaluate(&request(2)).unwrap();
    let stats = using.plugin.stats();
    assert_eq!((stats.instantiations, stats.failures), (2, 0), "{stats:?}");
    assert!(stats.peak_call_fuel < limits.fuel, "{stats:?}");
}

/// The pool is bounded per plugin, over the rules using it: with room for one instance,
/// a second config replaces the first's idle instance, and back.
#[test]
fn the_pool_is_bounded_per_plugin() {
    let limits = Limits { instances: 1, ..direct_limits() };
    let host = PluginHost::new(limits, None).unwrap();
    let plugin = host.load("hostile", &common::built_plugins().join("hostile.wasm")).unwrap();
    let a = plugin.with_config(r#"{"mode":"ok"}"#.into(), FailurePolicy::FailClosed).unwrap();
    let b = plugin.with_config(r#"{"mode":"all"}"#.into(), FailurePolicy::FailClosed).unwrap();
    assert_eq!((plugin.stats().instances, plugin.stats().instantiations), (1, 2));
    b.evaluate(&request(2)).unwrap();
    a.evaluate(&request(2)).unwrap();
    a.evaluate(&request(2)).unwrap();
    let stats = plugin.stats();
    assert_eq!((stats.instances, stats.idle_instances, stats.instantiations), (1, 1, 3), "{stats:?}");
}

/// Fuel stops a runaway call deterministically, whatever the machine's load.
#[test]
fn fuel_stops_an_endless_loop() {
    let using = hostile_use(direct_limits(), "loop");
    let e = using.evaluate(&request(2)).unwrap_err();
    assert_eq!(e.what, "used up its fuel of 5010000 instructions and was stopped", "5,000,000 + 5,000 per candidate");
}

/// A file in the compiled-code cache that this daemon did not write for this component
/// is never loaded: a tampered file, or another component's file under this one's name,
/// is ignored and replaced. A cache whose key others could read is not used.
#[test]
fn the_code_cache_loads_only_what_it_wrote_for_the_component() {
    use std::os::unix::fs::PermissionsExt;

    let cache = tempfile::tempdir().unwrap();
    let limits = Limits { deadline_ms: 50, ..Default::default() };
    let vip = common::built_plugins().join("vip_scoring.wasm");
    let lang = common::built_plugins().join("language_match.wasm");
    let cached = || {
        let mut files: Vec<_> = std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
            .collect();
        files.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
        files
    };
    let first = PluginHost::new(limits, Some(cache.path())).unwrap();
    first.load("vip-scoring", &vip).unwrap();
    let vip_file = cached()[0].clone();
    first.load("language-match", &lang).unwrap();
    let lang_file = cached().into_iter().find(|p| *p != vip_file).unwrap();
    let key = std::fs::metadata(cache.path().join("cache.key")).unwrap();
    assert_eq!(key.permissions().mode() & 0o777, 0o600);

    // One byte of the code changed.
    let mut bytes = std::fs::read(&vip_file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&vip_file, &bytes).unwrap();
    let second = PluginHost::new(limits, Some(cache.path())).unwrap();
    second.load("vip-scoring", &vip).unwrap();
    assert_eq!((second.compile_cache_stats(), second.compile_cache_refused()), (Some((0, 1)), 1));
    // It was replaced by a good one.
    let third = PluginHost::new(limits, Some(cache.path())).unwrap();
    third.load("vip-scoring", &vip).unwrap();
    assert_eq!((third.compile_cache_stats(), third.compile_cache_refused()), (Some((1, 0)), 0));

    // Another component's (genuine) file under this one's name.
    std::fs::copy(&lang_file, &vip_file).unwrap();
    let fourth = PluginHost::new(limits, Some(cache.path())).unwrap();
    let plugin = fourth.load("vip-scoring", &vip).unwrap();
    assert_eq!((fourth.compile_cache_stats(), fourth.compile_cache_refused()), (Some((0, 1)), 1));
    // And it is vip-scoring that runs (it refuses a config without `tiers`).
    assert!(plugin.with_config("{}".into(), FailurePolicy::FailClosed).unwrap_err().what.contains("tiers"));

    // A key others can read: the cache is not used at all.
    std::fs::set_permissions(cache.path().join("cache.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let fifth = PluginHost::new(limits, Some(cache.path())).unwrap();
    fifth.load("vip-scoring", &vip).unwrap();
    assert_eq!(fifth.compile_cache_stats(), None);
}

#[test]
fn plugin_inspect_tells_what_a_component_is_and_whether_it_loads() {
    let dist = common::built_plugins();
    let inspect = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard")).args(args).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let file = dist.join("vip_scoring.wasm");
    let file = file.to_str().unwrap();
    let config = r#"{"attribute":"customer_tier","tiers":["gold"],"groups":["tier-2"]}"#;
    let (code, text) = inspect(&["plugin", "inspect", file, "--config", config, "--format", "json"]);
    assert_eq!(code, Some(0), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["exports"][0], switchboard::plugins::INTERFACE);
    assert_eq!(v["loadable"], true);
    assert_eq!(v["needs"], serde_json::json!(["user-groups"]), "what its init asked for: {v}");
    let bytes = std::fs::metadata(file).unwrap().len();
    assert_eq!(v["bytes"], bytes);
    // A config its init refuses, and a file that is no component: exit 1 with the reason.
    let lang = dist.join("language_match.wasm");
    let (code, text) = inspect(&["plugin", "inspect", lang.to_str().unwrap(), "--config", r#"{"min_level":11}"#]);
    assert_eq!(code, Some(1));
    assert!(text.contains("init      refused: ") && text.contains("min_level 11 is above 10"), "{text}");
    let (code, text) = inspect(&["plugin", "inspect", env!("CARGO_MANIFEST_DIR")]);
    assert_eq!(code, Some(1), "{text}");
}

#[path = "../benches/common/synthetic.rs"]
mod synthetic;

/// The Python example matcher (plugins/python/site_affinity.py, built by
/// plugins/build-python.sh with componentize-py) through the daemon's real host: it
/// instantiates with WASI granting nothing, refuses a bad config with its own message,
/// and its verdicts change eligibility, order and reasons. Its compiled code is kept in
/// plugins/target/python/compiled across runs: a debug build of the daemon takes minutes
/// to compile CPython (plugins/README.md, *Matchers in Python*).
#[tokio::test]
async fn a_python_matcher_runs_in_the_sandbox() {
    let built = common::built_python_plugins();
    let cache = built.join("compiled");
    let config =
        format!("plugins_dir = \"plugins\"\nplugin_cache = \"{}\"\n[plugin_limits]\n{PYTHON_LIMITS}", cache.display());
    // Installed before the start, which compiles it (a reload over HTTP would time out
    // compiling it for the first time in a debug build).
    let dir = common::workdir(&config);
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    std::fs::copy(built.join("site_affinity.wasm"), dir.path().join("plugins/site-affinity.wasm")).unwrap();
    let started = std::time::Instant::now();
    let d = Daemon::start_in(dir).await;
    eprintln!("the daemon started (compiling site-affinity or reading its cache) in {:?}", started.elapsed());
    let c = &d.client;
    c.seed_directory().await;
    c.patch("/v1/representatives/ann", INTEGRATION, json!({"attributes": {"site": "madrid"}})).await.expect(200);
    c.patch("/v1/representatives/bob", INTEGRATION, json!({"attributes": {"site": "lisbon"}})).await.expect(200);
    c.put("/v1/representatives/cy", INTEGRATION, json!({"name": "Cy", "attributes": {"site": "porto"}}))
        .await
        .expect(201);
    c.put("/v1/representatives/dee", INTEGRATION, json!({"name": "Dee"})).await.expect(201);
    c.post(
        "/v1/conversations",
        INTEGRATION,
        json!({"id": "c1", "record": {"entity": "case", "id": "X"}, "queue": "billing",
               "attributes": {"country": "pt"}}),
    )
    .await
    .expect(201);

    // A misspelt option: the rules are refused with the matcher's own message.
    let rule = |config: &str| {
        format!(
            "[[rule]]\nid = \"site\"\ntarget = \"representative\"\n[rule.plugin]\nname = \"site-affinity\"\nconfig = {config}\n"
        )
    };
    write_rules(&d, &rule(r#"{ sites = { pt = ["lisbon"] }, wieght = 2.0 }"#));
    let failed = c.post("/v1/rules/reload", ADMIN, json!({})).await.problem(422, "invalid_rules");
    let message = failed.json["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("invalid config: unknown field `wieght`, expected one of `attribute`"), "{message}");

    write_rules(&d, &rule(r#"{ sites = { pt = ["lisbon", "madrid"] }, weight = 4.0, require = true }"#));
    let status = reload(&d).await;
    assert_eq!(status["plugins"][0]["name"], "site-affinity", "{status}");
    let got = c.get(CANDIDATES, SUPERVISOR).await.expect(200).json;
    // bob is at the first site serving Portugal (4 points), ann at the second (4 / 2).
    assert_eq!(ids(&got, "candidates"), ["bob", "ann"], "{got}");
    assert_eq!(
        (got["candidates"][0]["score"].as_f64(), got["candidates"][1]["score"].as_f64()),
        (Some(4.0), Some(2.0))
    );
    let reasons: Vec<(&str, &str)> = got["excluded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), e["reasons"][0]["detail"].as_str().unwrap()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("cy", "plugin `site-affinity`: not at a site serving `pt` (lisbon, madrid)"),
            ("dee", "plugin `site-affinity`: has no `site`"),
        ]
    );
    let refused = c.post("/v1/conversations/c1/assign", SUPERVISOR, json!({"representative": "cy"})).await;
    assert_eq!(refused.problem(422, "not_eligible").json["reasons"][0]["rule"], "site");

    // Without `require`, the others stay eligible, after those at the serving sites.
    write_rules(&d, &rule(r#"{ sites = { pt = ["lisbon", "madrid"] }, weight = 4.0 }"#));
    reload(&d).await;
    let got = c.get(CANDIDATES, SUPERVISOR).await.expect(200).json;
    assert_eq!(ids(&got, "candidates"), ["bob", "ann", "cy", "dee"], "{got}");
    assert!(got["excluded"].as_array().unwrap().is_empty(), "{got}");
    let stats = &reload(&d).await["plugins"][0];
    eprintln!("site-affinity in the daemon: {stats}");
    assert!(stats["failures"] == 0 && stats["calls"].as_u64() >= Some(2), "{stats}");

    // A batch of 3,000 with every branch (half at a serving site, half excluded), from
    // the cache the daemon wrote: it needs more fuel per candidate than the defaults give
    // (about 10,000 instructions, plugins/README.md; the defaults cover about 900), and
    // fits them with the README's.
    const N: usize = 3_000;
    let conv = python_conversation();
    let reps = synthetic::representatives(N, 7);
    let refs: Vec<&switchboard::domain::Representative> = reps.iter().collect();
    let site = |k: usize| serde_json::to_value(&reps[k].input.attributes).unwrap()["site"].clone();
    let lisbon: Vec<u32> = (0..N as u32).filter(|&k| site(k as usize) == "lisbon").collect();
    let config = r#"{"sites":{"pt":["lisbon"]},"weight":4.0,"idle_weight":0.001,"require":true}"#;
    let python_limits: Limits = toml::from_str(PYTHON_LIMITS).unwrap();
    for (limits, enough) in [(python_limits, true), (Limits { deadline_ms: 60_000, ..Limits::default() }, false)] {
        let host = PluginHost::new(limits, Some(&cache)).unwrap();
        let plugin = host.load("site-affinity", &built.join("site_affinity.wasm")).unwrap();
        assert_eq!(host.compile_cache_stats(), Some((1, 0)), "compiled once, by the daemon");
        let using = plugin.with_config(config.into(), FailurePolicy::FailClosed).unwrap();
        assert_eq!(using.needs_names(), ["idle-time", "attributes"]);
        let request = switchboard::plugins::representatives_request(
            switchboard::domain::RoutingAction::Assign,
            0,
            &conv,
            &refs,
            |k| (k % 60) as f32,
            using.needs,
        );
        if !enough {
            let e = using.evaluate(&request).unwrap_err();
            assert_eq!(e.what, "used up its fuel of 20000000 instructions and was stopped");
            continue;
        }
        for _ in 0..3 {
            let v = using.evaluate(&request).unwrap();
            assert_eq!(v.excluded.len(), N - lisbon.len());
            assert_eq!(v.reasons, ["not at a site serving `pt` (lisbon)"]);
            let k = lisbon[1] as usize;
            assert_eq!(v.scores[k], 4.0 + 0.001 * (k % 60) as f64);
        }
        let stats = plugin.stats();
        eprintln!("site-affinity on {N}: {stats:?}");
        assert!(stats.peak_instance_memory <= 16 << 20, "CPython fits the default memory_mib: {stats:?}");
    }
}

/// The `[plugin_limits]` plugins/README.md gives for Python matchers (`fuel_per_candidate`),
/// with a deadline for a debug build on a loaded machine.
const PYTHON_LIMITS: &str = "deadline_ms = 1000\nfuel_per_candidate = 30000\n";

/// A conversation of a Portuguese customer, for the Python example.
fn python_conversation() -> switchboard::domain::Conversation {
    let input = serde_json::from_value(json!({
        "record": {"entity": "case", "id": "CAS-1"}, "queue": "billing", "attributes": {"country": "pt"}
    }))
    .unwrap();
    switchboard::domain::Conversation::create(switchboard::domain::Id::parse("c1").unwrap(), input, String::new())
}

/// Every field of a request reaches a guest as the host meant it: the `echo` test guest
/// reads each through the Rust SDK and answers it as text (one exclusion reason per
/// candidate), for representatives with every field, with none, and for queues.
#[test]
fn every_request_field_crosses_into_the_guest() {
    use switchboard::domain::{Conversation, Id, Queue, Representative};
    let using = hostile_use(direct_limits(), "echo");
    assert_eq!(
        using.needs_names(),
        ["presence", "capacity", "idle-time", "skills", "queues", "user-groups", "attributes", "candidate-ids"]
    );
    let id = |s: &str| Id::parse(s).unwrap();
    let rep = |name: &str, input: Value, used: i64| {
        Representative::new(id(name), serde_json::from_value(input).unwrap(), used, 1, String::new())
    };
    let ann = rep(
        "ann",
        json!({"name": "Ann", "presence": "available", "capacity": 3, "skills": {"billing": 8, "spanish": 3},
               "queues": ["billing", "vip"], "user_groups": ["tier-2"],
               "attributes": {"site": "lisbon", "seniority": 4.5, "remote": true}}),
        1,
    );
    let bob = rep("bob", json!({"name": "Bob", "presence": "busy_dnd", "capacity": 2}), 5);
    let mut conv = Conversation::create(
        id("c9"),
        serde_json::from_value(json!({
            "record": {"entity": "email", "id": "E-1"}, "queue": "billing", "priority": 2, "capacity_units": 2,
            "skills": {"billing": 5}, "intent": {"family": "billing", "group": "refunds"},
            "attributes": {"customer_tier": "gold", "vip": true, "spend": 12.5}
        }))
        .unwrap(),
        String::new(),
    );
    conv.representative = Some(id("bob"));
    let reasons =
        |v: wit::Verdicts| -> Vec<String> { v.reason_of.iter().map(|&r| v.reasons[r as usize].clone()).collect() };
    let request = switchboard::plugins::representatives_request(
        RoutingAction::Transfer,
        1_234_567,
        &conv,
        &[&ann, &bob],
        |k| 1.5 + k as f32,
        using.needs,
    );
    let conversation = "Transfer at 1234567: c9 email in billing priority 2 units 2 intent billing/refunds/- \
                        held by bob skills [billing:5] attributes [customer_tier=gold,spend=12.5,vip=true] | ";
    assert_eq!(
        reasons(using.evaluate(&request).unwrap()),
        [
            format!(
                "{conversation}ann: Some(Available) capacity 3/2 idle 1.5 skills [billing:8,spanish:3] \
                 queues [billing,vip] groups [tier-2] attributes [remote=true,seniority=4.5,site=lisbon]"
            ),
            "bob: Some(BusyDnd) capacity 2/-3 idle 2.5 skills [] queues [] groups [] attributes []".to_owned(),
        ]
    );

    let queue = |name: &str, input: Value| Queue {
        id: id(name),
        input: serde_json::from_value(input).unwrap(),
        version: 1,
        updated_at: String::new(),
    };
    let queues = [
        queue("billing", json!({"name": "Billing", "priority": 1})),
        queue("support", json!({"name": "Support desk", "priority": 7, "intent_based": true})),
    ];
    conv.representative = None;
    let v = using.judge_queues(RoutingAction::Assign, 5, &conv, &[&queues[0], &queues[1]]).unwrap();
    let reasons: Vec<String> = v.excluded.into_iter().map(|(_, r)| r.unwrap()).collect();
    assert_eq!(
        reasons,
        [
            "Assign at 5: c9 email in billing priority 2 units 2 intent billing/refunds/- held by - skills [billing:5] \
             attributes [customer_tier=gold,spend=12.5,vip=true] | billing: queue billing named Billing priority 1 \
             intent-based 0",
            "support: queue support named Support desk priority 7 intent-based 1",
        ]
    );
}

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
    let refused = c.post("/v1/conversations/c1/assign", SUPERVISOR, json!({"representative": "bob"})).await;
    assert_eq!(refused.problem(422, "not_eligible").json["reasons"][0]["rule"], "speaks");
    c.post("/v1/conversations/c1/assign", SUPERVISOR, json!({"representative": "cy"})).await.expect(200);
    let metrics = c.get("/metrics", SUPERVISOR).await.text;
    assert!(metrics.contains(r#"switchboard_plugin_calls_total{plugin="language-match",outcome="ok"}"#), "{metrics}");
}

/// Each misdeed: the candidates are excluded with a reason naming the plugin (fail
/// closed), the instance is replaced, and the daemon keeps serving.
#[tokio::test]
async fn hostile_guests_are_contained() {
    let d = daemon().await;
    let c = &d.client;
    install_plugin(&plugins_dir(&d), "hostile", "hostile");
    conversation_in(c, "c1", "open").await;
    let cases = [
        ("loop", "used up its fuel of 5000000 instructions"),
        ("memory", "memory"),
        ("panic", "trapped"),
        ("oversized", "memory"),
        ("wrong-count", "returned 3 scores for 2 candidates"),
    ];
    for (mode, needle) in cases {
        write_rules(&d, &hostile_rule(mode, "fail_closed"));
        reload(&d).await;
        let got = c.get(CANDIDATES, SUPERVISOR).await.expect(200).json;
        assert!(got["candidates"].as_array().unwrap().is_empty(), "{mode}: {got}");
        let reason = got["excluded"][0]["reasons"][0]["detail"].as_str().unwrap().to_owned();
        assert!(reason.starts_with("plugin `hostile` failed: "), "{mode}: {reason}");
        assert!(reason.contains(needle), "{mode}: `{reason}` lacks `{needle}`");
        // The daemon serves normally: health, lists, and a second call (fresh instance).
        c.get("/healthz", SUPERVISOR).await.expect(200);
        c.get("/v1/conversations", SUPERVISOR).await.expect(200);
        let again = c.get(CANDIDATES, SUPERVISOR).await.expect(200).json;
        assert_eq!(again["excluded"][0]["reasons"][0]["detail"].as_str().unwrap(), reason, "{mode}");
    }
    // fail_open skips a failing plugin.
    write_rules(&d, &hostile_rule("panic", "fail_open"));
    reload(&d).await;
    let got = c.get(CANDIDATES, SUPERVISOR).await.expect(200).json;
    assert_eq!(ids(&got, "candidates"), ["ann", "bob"]);
    // A well-behaved call after all that, and the failures are counted.
    write_rules(&d, &hostile_rule("print", "fail_closed"));
    let status = reload(&d).await;
    assert!(status["plugins"][0]["failures"].as_u64().unwrap() >= 10, "{status}");
    let got = c.get(CANDIDATES, SUPERVISOR).await.expect(200).json;
    assert_eq!(ids(&got, "candidates"), ["ann", "bob"], "{got}");
}

#[tokio::test]
async fn guests_are_granted_nothing() {
    let d = daemon().await;
    let c = &d.client;
    install_plugin(&plugins_dir(&d), "hostile", "hostile");
    conversation_in(c, "c1", "open").await;
    write_rules(&d, &hostile_rule("sandbox", "fail_closed"));
    reload(&d).await;
    let got = c.get(CANDIDATES, SUPERVISOR).await.expect(200).json;
    let reason = got["excluded"][0]["reasons"][0]["detail"].as_str().unwrap();
    assert_eq!(reason, "plugin `hostile`: clock 0, env 0, args 0, fs denied, net denied");
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
            "does not export `switchboard:matcher/matcher@0.2.0` (it exports `switchboard:matcher/matcher@0.0.9`)"
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

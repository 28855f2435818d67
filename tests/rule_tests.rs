//! `switchboard test` and `switchboard check --rules`, through the real binary: the demo
//! rules' own tests pass (plugins included), a draft that changes a rule fails with a
//! diff, a broken test file is reported as file:line:column, and JSON for tooling.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The demo config; its plugins built for real (plugins/build.sh).
fn demo_config() -> String {
    common::built_plugins();
    root().join("switchboard.toml").display().to_string()
}

fn switchboard(args: &[&str]) -> (Output, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard")).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// A copy of `rules/` (rule files and their tests) to edit as a draft.
fn draft() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    for sub in ["", "tests"] {
        std::fs::create_dir_all(rules.join(sub)).unwrap();
        for entry in std::fs::read_dir(root().join("rules").join(sub)).unwrap().flatten() {
            if entry.path().is_file() {
                std::fs::copy(entry.path(), rules.join(sub).join(entry.file_name())).unwrap();
            }
        }
    }
    (dir, rules)
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no `{from}`", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

#[test]
fn the_demo_rules_pass_their_own_tests() {
    let (out, stdout, stderr) = switchboard(&["test", "--config", &demo_config()]);
    assert!(out.status.success(), "{stdout}{stderr}");
    let tests = stdout.lines().filter(|l| l.starts_with("ok   rules/tests/")).count();
    assert!(tests >= 15, "a line per test: {stdout}");
    for file in ["presence", "skills", "vip", "intents", "plugins"] {
        assert!(stdout.contains(&format!("rules/tests/{file}.toml:")), "every demo rule file is tested: {stdout}");
    }
    let summary = stdout.lines().last().unwrap();
    assert!(summary.starts_with(&format!("ok: {tests} passed, 0 failed (rules version ")), "{summary}");
}

#[test]
fn a_draft_that_changes_a_rule_fails_with_a_diff_and_exit_1() {
    let (_dir, rules) = draft();
    // The operator drops `busy` from who may receive work.
    edit(&rules.join("presence.toml"), r#"presence = ["available", "busy"]"#, r#"presence = ["available"]"#);
    let rules_arg = rules.display().to_string();
    let (out, stdout, stderr) = switchboard(&["test", "--config", &demo_config(), "--rules", &rules_arg]);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("FAIL rules/tests/presence.toml:52: free capacity first, then idle time"),
        "the failing test by file, line and name: {stdout}"
    );
    assert!(stdout.contains("      expected: bob, ann\n      actual:   ann\n"), "expected against actual: {stdout}");
    assert!(
        stdout.contains("missing `bob`: excluded by `reachable-representatives` (presence `busy` is not one of"),
        "why the missing one is out: {stdout}"
    );
    assert!(stdout.contains("`bob` should score 5, but is excluded by `reachable-representatives`"), "{stdout}");
    assert!(stdout.lines().last().unwrap().starts_with("FAILED: "), "{stdout}");
    assert!(stderr.contains("rule tests failed"), "{stderr}");
    // The draft also passes `check` (it is valid, only different), with the config's plugins.
    let (out, stdout, stderr) = switchboard(&["check", "--config", &demo_config(), "--rules", &rules_arg]);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("from {rules_arg}")) && stdout.contains("vip-scoring"), "{stdout}");
}

#[test]
fn filter_and_json_output_for_tooling() {
    let (out, stdout, stderr) =
        switchboard(&["test", "--config", &demo_config(), "--filter", "vip.toml", "--format", "json"]);
    assert!(out.status.success(), "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["failed"], 0);
    assert_eq!(report["passed"], 3, "{report}");
    assert!(report["filtered_out"].as_u64().unwrap() >= 12, "{report}");
    let first = &report["tests"][0];
    assert_eq!(first["file"], "rules/tests/vip.toml");
    assert_eq!(first["name"], "a gold case goes to tier-2 only");
    assert_eq!(first["eligible"][0]["id"], "ann");
    assert_eq!(first["excluded"][0]["id"], "bob");
    assert!(first["excluded"][0]["reasons"][0].as_str().unwrap().starts_with("vip-cases-to-tier-2: "), "{first}");
    let (out, _, stderr) = switchboard(&["test", "--config", &demo_config(), "--filter", "no such test"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("no rule test matched the filter"), "{stderr}");
}

#[test]
fn every_error_of_a_test_file_is_located() {
    let (_dir, rules) = draft();
    std::fs::write(
        rules.join("tests/broken.toml"),
        r#"[[queue]]
id = "q"
name = "Q"

[[representative]]
id = "ann"
name = "Ann"

[[test]]
name = "names a stranger"
action = "assign"
target = "representative"
[test.conversation]
record = { entity = "case", id = "C-1" }
queue = "q"
[test.expect]
eligible = ["ann", "zed"]

[[test]]
name = "assigns a held conversation"
action = "assign"
target = "representative"
[test.conversation]
record = { entity = "case", id = "C-2" }
queue = "q"
status = "active"
representative = "ann"
[test.expect]
excluded = { q = "some-rule" }
"#,
    )
    .unwrap();
    std::fs::write(rules.join("tests/syntax.toml"), "[[test]]\nname = \"x\"\naction = \"asign\"\n").unwrap();
    let rules_arg = rules.display().to_string();
    let (out, stdout, stderr) = switchboard(&["test", "--config", &demo_config(), "--rules", &rules_arg]);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("the rule tests are invalid (4 errors):"), "{stderr}");
    assert!(
        stderr.contains("rules/tests/broken.toml:17:20: `zed` is not a representative of this file"),
        "an unknown id at its place: {stderr}"
    );
    assert!(
        stderr.contains("rules/tests/broken.toml:26:10: cannot assign a conversation that is `active`"),
        "the status that does not allow the action: {stderr}"
    );
    assert!(stderr.contains("rules/tests/broken.toml:29:18: `q` is not a representative of this file"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("rules/tests/")).collect();
    assert!(lines[1].contains(":26:") && lines[2].contains(":29:"), "in file order: {stderr}");
    assert!(
        stderr.contains("rules/tests/syntax.toml:3:10: unknown variant `asign`"),
        "another file's error too: {stderr}"
    );
}

#[test]
fn time_rules_are_tested_at_a_fixed_clock() {
    let (_dir, rules) = draft();
    std::fs::write(
        rules.join("after-hours.toml"),
        r#"[[rule]]
id = "night-needs-tier-2"
target = "representative"
[rule.when]
hours = { zone = "Europe/Lisbon", from = "20:00", to = "08:00" }
waiting_minutes = { max = 9 }
[rule.require]
user_groups_any = ["tier-2"]
"#,
    )
    .unwrap();
    std::fs::write(
        rules.join("tests/after-hours.toml"),
        r#"now = "2026-12-07T22:30:00Z"   # a Monday, 22:30 in Lisbon

[[queue]]
id = "q"
name = "Q"

[[representative]]
id = "ann"
name = "Ann"
presence = "available"
capacity = 2
user_groups = ["tier-2"]

[[representative]]
id = "bob"
name = "Bob"
presence = "available"
capacity = 2

[[test]]
name = "at night, tier-2 first"
action = "assign"
target = "representative"
[test.conversation]
record = { entity = "case", id = "C-1" }
queue = "q"
waiting_minutes = 9
[test.expect]
eligible = ["ann"]
excluded = { bob = "night-needs-tier-2" }

[[test]]
name = "after ten minutes, anyone"
action = "assign"
target = "representative"
[test.conversation]
record = { entity = "case", id = "C-2" }
queue = "q"
waiting_minutes = 10
[test.expect]
eligible = ["ann", "bob"]
"#,
    )
    .unwrap();
    let rules_arg = rules.display().to_string();
    let (out, stdout, stderr) = switchboard(&[
        "test",
        "--config",
        &demo_config(),
        "--rules",
        &rules_arg,
        "--filter",
        "after-hours",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["passed"], 2, "{report}");
    let reason = report["tests"][0]["excluded"][0]["reasons"][0].as_str().unwrap();
    assert!(
        reason.ends_with("(applies: waiting 9 min, at most 9; Mon 22:30 within every day 20:00-08:00 Europe/Lisbon)"),
        "the explanation names the time conditions: {reason}"
    );
}

//! `switchboard plugin test` and `switchboard plugin new`, run as the real binary on the
//! real components of plugins/ (built by plugins/build.sh).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn component(crate_name: &str) -> String {
    common::built_plugins().join(format!("{crate_name}.wasm")).display().to_string()
}

fn fixture(plugin: &str) -> String {
    root().join("plugins").join(plugin).join("fixture.toml").display().to_string()
}

fn switchboard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard")).args(args).output().unwrap()
}

fn texts(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn vip_scoring_on_its_fixture_prints_each_verdict_with_its_reason_and_score() {
    let out = switchboard(&["plugin", "test", &component("vip_scoring"), "--fixture", &fixture("vip-scoring")]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for line in [
        "plugin    `vip-scoring` (",
        "assign, 4 representatives\n",
        "needs     user-groups\n",
        "  ann  eligible  +5\n",
        "  bob  excluded  VIP customers need one of the groups tier-2\n",
        "  cid  excluded  VIP customers need one of the groups tier-2\n",
        "  dee  eligible  +5\n",
        "a call (median of 25;",
        "of linear memory at most (limit 16 MiB)\n",
        "expect    ok: 6 expectations met\n",
    ] {
        assert!(stdout.contains(line), "no `{line}` in:\n{stdout}");
    }
}

#[test]
fn json_output_has_verdicts_needs_time_fuel_and_memory() {
    let out = switchboard(&[
        "plugin",
        "test",
        &component("language_match"),
        "--fixture",
        &fixture("language-match"),
        "--repeat",
        "7",
        "--format",
        "json",
    ]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["plugin"], "language-match");
    assert_eq!(report["needs"], serde_json::json!(["skills"]));
    let verdicts: Vec<(String, bool, f64, Value)> = report["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap().to_owned(),
                v["eligible"].as_bool().unwrap(),
                v["score"].as_f64().unwrap(),
                v["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("ann".to_owned(), true, 3.0, Value::Null),
            ("bob".to_owned(), true, 5.0, Value::Null),
            ("cid".to_owned(), false, 0.0, "speaks `spanish` at 5, below 6".into()),
            ("dee".to_owned(), false, 0.0, "speaks `spanish` at 0, below 6".into()),
        ]
    );
    let timing = &report["timing"];
    assert_eq!(timing["calls"], 7);
    let (min, median, max) =
        (timing["min_us"].as_f64().unwrap(), timing["median_us"].as_f64().unwrap(), timing["max_us"].as_f64().unwrap());
    assert!(0.0 < min && min <= median && median <= max, "{timing}");
    assert!((timing["per_candidate_us"].as_f64().unwrap() - median / 4.0).abs() <= 0.001);
    let fuel = report["peak_call_fuel"].as_u64().unwrap();
    assert!(fuel > 0 && fuel < report["call_fuel_limit"].as_u64().unwrap(), "{report}");
    assert_eq!(report["call_fuel_limit"], 5_000_000 + 4 * 5_000);
    let memory = report["peak_instance_memory"].as_u64().unwrap();
    assert!(memory > 0 && memory <= report["memory_limit"].as_u64().unwrap(), "{report}");
    assert_eq!((report["passed"].as_bool(), report["checked"].as_bool()), (Some(true), Some(true)));
    assert_eq!(report["expectations"], 6);
}

#[test]
fn a_failed_expectation_exits_1_with_a_diff() {
    // A lower floor lets `cid` through, which the fixture says is excluded.
    let out = switchboard(&[
        "plugin",
        "test",
        &component("language_match"),
        "--fixture",
        &fixture("language-match"),
        "--config",
        r#"{"min_level": 5}"#,
    ]);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("config    {\"min_level\":5}\n"), "{stdout}");
    assert!(stdout.contains("  cid  eligible  +2.5\n"), "{stdout}");
    for diff in [
        "expect    FAILED: 3 of 6 expectations\n",
        "    eligible:\n      expected: ann, bob\n      actual:   ann, bob, cid\n    extra `cid`: eligible, score +2.5\n",
        "    `cid` excluded:\n      expected: excluded, the reason containing \"speaks `spanish` at 5, below 6\"\n      \
         actual:   eligible, score +2.5\n",
        "    `dee` excluded:\n      expected: excluded, the reason containing \"speaks `spanish` at 0, below 6\"\n      \
         actual:   excluded: speaks `spanish` at 0, below 5\n",
    ] {
        assert!(stdout.contains(diff), "no\n{diff}\nin:\n{stdout}");
    }
    assert!(stderr.contains("error: 3 of 6 expectations of "), "{stderr}");
}

#[test]
fn a_trapping_guest_shows_its_own_message_and_the_daemons() {
    let out = switchboard(&[
        "plugin",
        "test",
        &component("hostile"),
        "--fixture",
        &fixture("vip-scoring"),
        "--config",
        r#"{"mode":"panic"}"#,
    ]);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("guest     stderr: hostile matcher panics on purpose\n"), "{stdout}");
    assert!(
        stdout.contains("error     `hostile` failed in evaluate: trapped (a panic or abort in the guest)\n"),
        "{stdout}"
    );
    assert!(stdout.contains("expect    6 expectations not checked: the plugin failed\n"), "{stdout}");
    assert!(!stdout.contains("  ann  "), "no verdicts after a trap:\n{stdout}");
    assert!(stderr.contains("error: plugin `hostile` failed (call): trapped"), "{stderr}");
    // The daemon's log lines are the report's, not repeated on stderr.
    assert!(!stderr.contains("panics on purpose"), "{stderr}");
}

#[test]
fn fuel_and_the_deadline_stop_a_loop_with_the_limits_of_a_config_file() {
    let out = switchboard(&[
        "plugin",
        "test",
        &component("hostile"),
        "--fixture",
        &fixture("vip-scoring"),
        "--config",
        r#"{"mode":"loop"}"#,
    ]);
    let (stdout, _) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("failed in evaluate: used up its fuel of 5020000 instructions and was stopped"),
        "{stdout}"
    );
    assert!(stdout.contains("fuel      5,020,000 instructions at most in a call (limit 5,020,000)\n"), "{stdout}");
    // With fuel to spare, the deadline of the config file's [plugin_limits] stops it.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sb.toml");
    std::fs::write(&config, "[plugin_limits]\ndeadline_ms = 20\nfuel = 100000000000\n").unwrap();
    let out = switchboard(&[
        "plugin",
        "test",
        &component("hostile"),
        "--fixture",
        &fixture("vip-scoring"),
        "--config",
        r#"{"mode":"loop"}"#,
        "--config-file",
        config.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["error"]["stage"], "call");
    assert_eq!(report["error"]["what"], "ran past its deadline of 20 ms and was stopped");
    assert_eq!(report["deadline_ms"], 20);
    assert_eq!(report["passed"], false);
}

#[test]
fn a_refused_config_and_a_non_component_exit_1_saying_why() {
    let out = switchboard(&[
        "plugin",
        "test",
        &component("vip_scoring"),
        "--fixture",
        &fixture("vip-scoring"),
        "--config",
        r#"{"tiers": 1}"#,
    ]);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("failed in init: refused its config: invalid config: invalid type: integer `1`"),
        "{stdout}"
    );
    let out = switchboard(&[
        "plugin",
        "test",
        &component("vip_scoring"),
        "--fixture",
        &fixture("vip-scoring"),
        "--config",
        "[1]",
    ]);
    let (_, stderr) = texts(&out);
    assert!(stderr.contains("error: --config is not a JSON object: it is [1]"), "{stderr}");
    let readme = root().join("README.md");
    let out = switchboard(&["plugin", "test", readme.to_str().unwrap(), "--fixture", &fixture("vip-scoring")]);
    let (stdout, _) = texts(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("`README` cannot be loaded: not a valid WebAssembly component"), "{stdout}");
}

/// Writes `text` as a fixture in a temp folder.
fn write_fixture(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixture.toml");
    std::fs::write(&path, text).unwrap();
    let shown = path.display().to_string();
    (dir, shown)
}

#[test]
fn an_expected_failure_passes_and_an_unexpected_answer_fails() {
    let text = "config = { mode = \"panic\" }\n[conversation]\nrecord = { entity = \"case\", id = \"C-1\" }\n\
                queue = \"q\"\n\n[[representative]]\nid = \"ann\"\nname = \"Ann\"\n\n[expect]\nerror = \"trapped\"\n";
    let (_dir, path) = write_fixture(text);
    let out = switchboard(&["plugin", "test", &component("hostile"), "--fixture", &path]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("expect    ok: 1 expectations met\n"), "{stdout}");
    let out =
        switchboard(&["plugin", "test", &component("hostile"), "--fixture", &path, "--config", r#"{"mode":"ok"}"#]);
    let (stdout, _) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("expected: the plugin fails with \"trapped\"\n      actual:   it answered"), "{stdout}");
}

#[test]
fn queues_are_candidates_too() {
    let text = "action = \"transfer\"\ntarget = \"queue\"\nconfig = { mode = \"sandbox\" }\n\n[conversation]\n\
                record = { entity = \"case\", id = \"C-1\" }\nqueue = \"billing\"\nstatus = \"active\"\n\
                representative = \"ann\"\n\n[[representative]]\nid = \"ann\"\nname = \"Ann\"\n\n\
                [[queue]]\nid = \"billing\"\nname = \"Billing\"\n\n[[queue]]\nid = \"support\"\nname = \"Support\"\n\n\
                [expect]\nexcluded = { billing = \"net denied\", support = \"fs denied\" }\n";
    let (_dir, path) = write_fixture(text);
    let out = switchboard(&["plugin", "test", &component("hostile"), "--fixture", &path]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(": transfer, 2 queues\n"), "{stdout}");
    assert!(stdout.contains("  billing  excluded  clock 0, env 0, args 0, fs denied, net denied\n"), "{stdout}");
}

#[test]
fn a_bad_fixture_is_refused_with_every_error_located() {
    let text = "now = \"tomorrow\"\n[conversation]\nrecord = { entity = \"case\", id = \"C-1\" }\nqueue = \"q\"\n\n\
                [[representative]]\nid = \"ann\"\nname = \"Ann\"\n\n[expect]\nscores = { bob = 1.0 }\n";
    let (_dir, path) = write_fixture(text);
    let out = switchboard(&["plugin", "test", &component("vip_scoring"), "--fixture", &path]);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("the fixture is invalid (2 errors):"), "{stderr}");
    assert!(stderr.contains(&format!("{path}:1:7: `now` `tomorrow` is not an RFC 3339 time")), "{stderr}");
    assert!(stderr.contains(&format!("{path}:11:18: `bob` is not a representative of this file")), "{stderr}");
    let (_dir, typo) =
        write_fixture("[conversation]\nrecord = { entity = \"case\", id = \"C-1\" }\nqueue = \"q\"\nprority = 2\n");
    let out = switchboard(&["plugin", "test", &component("vip_scoring"), "--fixture", &typo]);
    let (_, stderr) = texts(&out);
    assert!(stderr.contains(&format!("{typo}:4:1: unknown field `prority`")), "{stderr}");
}

/// Copies the plugins workspace's sources (not its build output or installed components).
fn copy_workspace(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if ["target", "dist", "dist-test"].iter().any(|skip| name == *skip) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_workspace(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

#[test]
fn plugin_new_makes_a_crate_that_builds_and_passes_its_own_fixture() {
    // A copy of the workspace, so the repository's plugins/ is untouched; the build shares
    // plugins/target, where plugins/build.sh already compiled the SDK and its dependencies.
    let built = common::built_plugins();
    let target_dir = root().join("plugins/target");
    let tmp = tempfile::tempdir().unwrap();
    let workspace = tmp.path().join("plugins");
    copy_workspace(&root().join("plugins"), &workspace);
    let manifest_before = std::fs::read_to_string(workspace.join("Cargo.toml")).unwrap();
    let dir = workspace.to_str().unwrap();

    let out = switchboard(&["plugin", "new", "scaffold-check", "--dir", dir]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("created {dir}/scaffold-check\n")), "{stdout}");
    for file in ["Cargo.toml", "src/lib.rs", "fixture.toml", "README.md"] {
        assert!(workspace.join("scaffold-check").join(file).is_file(), "{file}");
    }
    let manifest = std::fs::read_to_string(workspace.join("Cargo.toml")).unwrap();
    let members_line = |text: &str| text.lines().find(|l| l.starts_with("members")).unwrap().to_owned();
    assert_eq!(
        manifest.replace(&members_line(&manifest), ""),
        manifest_before.replace(&members_line(&manifest_before), ""),
        "only `members` changes"
    );
    assert!(members_line(&manifest).ends_with(", \"scaffold-check\"]"), "{manifest}");
    let readme = std::fs::read_to_string(workspace.join("scaffold-check/README.md")).unwrap();
    assert!(readme.contains(&format!("--fixture {dir}/scaffold-check/fixture.toml")), "{readme}");

    // It builds as it stands.
    let build = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2", "-p", "scaffold-check", "--manifest-path"])
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .output()
        .unwrap();
    assert!(build.status.success(), "{}", String::from_utf8_lossy(&build.stderr));
    let wasm: PathBuf = built.join("scaffold_check.wasm");
    assert!(wasm.is_file());

    // And passes its own fixture through the daemon's host.
    let fixture = workspace.join("scaffold-check/fixture.toml");
    let out = switchboard(&["plugin", "test", wasm.to_str().unwrap(), "--fixture", fixture.to_str().unwrap()]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for line in [
        "needs     skills\n",
        "  ann  eligible  +7\n",
        "  bob  excluded  `billing` at 2, below 3\n",
        "  cid  excluded  no `billing` skill\n",
        "  dee  eligible  +3\n",
        "expect    ok: 6 expectations met\n",
    ] {
        assert!(stdout.contains(line), "no `{line}` in:\n{stdout}");
    }
    // Its init refuses a config it cannot use, as a rule's reload would.
    let out = switchboard(&[
        "plugin",
        "test",
        wasm.to_str().unwrap(),
        "--fixture",
        fixture.to_str().unwrap(),
        "--config",
        r#"{"skill":"billing","min_level":11}"#,
    ]);
    let (stdout, _) = texts(&out);
    assert!(stdout.contains("refused its config: min_level 11 is above 10"), "{stdout}");

    // A second time, or with a bad name: refused, and the workspace is left as it is.
    let again = switchboard(&["plugin", "new", "scaffold-check", "--dir", dir]);
    assert_eq!(again.status.code(), Some(1));
    assert!(texts(&again).1.contains("scaffold-check already exists"), "{}", texts(&again).1);
    let bad = switchboard(&["plugin", "new", "Scaffold_Check", "--dir", dir]);
    assert!(texts(&bad).1.contains("is not a usable plugin name: it must start with a lowercase letter"));
    assert_eq!(std::fs::read_to_string(workspace.join("Cargo.toml")).unwrap(), manifest);
    assert!(!workspace.join("Scaffold_Check").exists());
}

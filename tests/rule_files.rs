//! Rule-file validation: fixtures with the exact expected errors beside them, the
//! example rules, the JSON Schema, and `switchboard check`.
#![allow(clippy::unwrap_used)]

use std::path::Path;

mod common;

use switchboard::plugins::PluginSet;
use switchboard::rules::{self, Source};

fn source(path: &Path) -> Source {
    let name = format!("invalid/{}", path.file_name().unwrap().to_string_lossy());
    Source { name, text: std::fs::read_to_string(path).unwrap() }
}

/// Each `tests/fixtures/rules/invalid/X.toml` fails with exactly the lines of `X.err`,
/// and each folder `invalid/X/` (a file set, loaded as a rules folder) with those of
/// `invalid/X.err`. `BLESS=1 cargo test --test rule_files` rewrites the `.err` files.
#[test]
fn invalid_fixtures_fail_with_the_exact_messages() {
    let dir = Path::new("tests/fixtures/rules/invalid");
    let mut checked = 0;
    let mut paths: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    for path in paths {
        let outcome = if path.is_dir() {
            rules::load_dir(&path, &PluginSet::default())
        } else if path.extension().is_some_and(|e| e == "toml") {
            rules::compile(&[source(&path)])
        } else {
            continue;
        };
        let errors = match outcome {
            Ok(_) => panic!("{} compiled, but it is a fixture of invalid rules", path.display()),
            Err(errors) => errors,
        };
        let got: String = errors.iter().map(|e| format!("{e}\n")).collect();
        let expected_path = path.with_extension("err");
        if std::env::var_os("BLESS").is_some() {
            std::fs::write(&expected_path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("{} is missing (run with BLESS=1 to create it)", expected_path.display()));
        assert_eq!(got, want, "{}", path.display());
        checked += 1;
    }
    assert!(checked >= 16, "only {checked} fixtures found");
}

#[test]
fn every_error_of_a_file_set_comes_at_once() {
    let a = Source { name: "rules/a.toml".into(), text: "[[rule]]\nid = \"x\"\ntarget = \"queue\"\n".into() };
    let b = Source {
        name: "rules/b.toml".into(),
        text: "[[rule]]\nid = \"x\"\ntarget = \"representative\"\nrequire = { presence = [\"here\"] }\n".into(),
    };
    let c = Source { name: "rules/c.toml".into(), text: "[[rule]]\nid = \"x\"\ntarget = \"queue\"\n".into() };
    let errors = rules::compile(&[a, b, c]).unwrap_err();
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    // A type error in b's rule does not hide that its id is taken.
    assert_eq!(
        lines[0],
        "rules/b.toml:2:6: duplicate rule id `x` (first defined at rules/a.toml:2:6); rule ids must be unique across all files"
    );
    assert!(lines[1].starts_with("rules/b.toml:4:25: unknown variant `here`"), "{}", lines[1]);
    assert_eq!(
        lines[2],
        "rules/c.toml:2:6: duplicate rule id `x` (first defined at rules/a.toml:2:6); rule ids must be unique across all files"
    );
}

#[test]
fn the_example_rules_are_valid_and_the_schema_is_current() {
    common::built_plugins();
    let out = switchboard(&["check", "--config", "switchboard.toml"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let committed = std::fs::read_to_string("rules/schema.json").unwrap();
    assert_eq!(
        committed,
        rules::json_schema(),
        "rules/schema.json is stale: regenerate it with `cargo run -- schema > rules/schema.json`"
    );
}

#[test]
fn hidden_and_non_toml_files_are_not_rules() {
    for (name, is_rule) in
        [("vip.toml", true), (".vip.toml.swp", false), (".#vip.toml", false), ("vip.toml~", false), ("..data", false)]
    {
        assert_eq!(rules::is_rule_file(name), is_rule, "{name}");
    }
}

fn switchboard(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_switchboard")).args(args).output().unwrap()
}

#[test]
fn check_exits_0_with_a_summary_or_1_with_every_error() {
    common::built_plugins();
    let out = switchboard(&["check", "--config", "switchboard.toml"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("ok: ") && text.contains(" rules in "), "{text}");
    assert!(text.contains("2 plugins (language-match, vip-scoring)"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("sb.toml"), "").unwrap();
    std::fs::copy("tests/fixtures/rules/invalid/several_errors.toml", dir.path().join("rules/a.toml")).unwrap();
    std::fs::copy("tests/fixtures/rules/invalid/misspelt_presence.toml", dir.path().join("rules/b.toml")).unwrap();
    let out = switchboard(&["check", "--config", dir.path().join("sb.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("rules/a.toml:3:6: invalid rule id"), "{err}");
    assert!(err.contains("rules/b.toml:6:26: unknown variant `availble`"), "{err}");

    // The daemon refuses to start on the same rules, with the same errors.
    let out = switchboard(&["serve", "--config", dir.path().join("sb.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let serve_err = String::from_utf8(out.stderr).unwrap();
    assert!(serve_err.contains("rules/b.toml:6:26: unknown variant `availble`"), "{serve_err}");
}

#[test]
fn a_rule_with_other_errors_still_reports_a_missing_plugin() {
    let text = "[[rule]]\nid = \"x\"\ntarget = \"representative\"\nrequire = { presence = [] }\nplugin = { name = \"nope\" }\n";
    let errors = rules::compile(&[Source { name: "rules/a.toml".into(), text: text.into() }]).unwrap_err();
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].starts_with("rules/a.toml:4:24: rule `x`: `require.presence` is empty"), "{}", lines[0]);
    assert!(lines[1].starts_with("rules/a.toml:5:19: rule `x`: plugin `nope` is not loaded"), "{}", lines[1]);
}

#[test]
fn a_plugin_that_fails_to_load_does_not_hide_the_rules_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    std::fs::write(dir.path().join("sb.toml"), "plugins_dir = \"plugins\"\n").unwrap();
    std::fs::write(dir.path().join("plugins/broken.wasm"), b"not a component").unwrap();
    std::fs::copy("tests/fixtures/rules/invalid/misspelt_presence.toml", dir.path().join("rules/b.toml")).unwrap();
    let out = switchboard(&["check", "--config", dir.path().join("sb.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("plugins/broken.wasm:1:1:"), "the plugin's error: {err}");
    assert!(err.contains("rules/b.toml:6:26: unknown variant `availble`"), "and the rules' error: {err}");
}

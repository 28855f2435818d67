//! The `switchboard` command line: token generation and start-up errors.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn switchboard(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard")).args(args).output().unwrap()
}

#[test]
fn token_new_prints_a_token_and_the_stanza_with_its_digest() {
    let out = switchboard(&["token", "new", "--name", "alice", "--role", "supervisor"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let token = text.lines().find_map(|l| l.strip_prefix("token: ")).unwrap();
    let digest = text.lines().find_map(|l| l.strip_prefix("sha256 = ")).unwrap().trim_matches('"');
    let want: String = switchboard::auth::sha256(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(digest, want);
    assert!(text.contains("[[tokens]]\nname = \"alice\"\nrole = \"supervisor\"\n"), "{text}");
    // The stanza is valid config.
    let stanza = &text[text.find("[[tokens]]").unwrap()..];
    switchboard::config::Config::parse(stanza, "t.toml", std::path::Path::new(".")).unwrap();
    let other = switchboard(&["token", "new", "--name", "alice", "--role", "supervisor"]);
    assert_ne!(String::from_utf8(other.stdout).unwrap(), text, "every token is fresh");
}

#[test]
fn a_bad_role_is_refused_with_the_choices() {
    let out = switchboard(&["token", "new", "--name", "a", "--role", "boss"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("supervisor") && err.contains("integration") && err.contains("admin"), "{err}");
}

#[test]
fn serve_refuses_a_config_with_an_unknown_key_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sb.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:0\"\n\ndatabse = \"sqlite://x.db\"\n").unwrap();
    let out = switchboard(&["serve", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    let want = format!("{}:3:1: unknown field `databse`", path.display());
    assert!(err.contains(&want), "{err}");
}

#[test]
fn serve_explains_a_missing_config_file() {
    let out = switchboard(&["serve", "--config", "/nonexistent/sb.toml"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("/nonexistent/sb.toml: cannot read the config file"), "{err}");
}

#[test]
fn a_reader_that_goes_away_ends_the_output_not_the_command() {
    // `switchboard openapi | head -c 1`: the pipe closes long before the document ends.
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("openapi")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "exit {:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
}

//! `switchboard migrate`: creates and upgrades the schema on both backends, and a
//! database written by a newer Switchboard is refused with both versions named.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{Backend, backend, config_text};

fn switchboard(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard")).args(args).output().unwrap()
}

/// Marks the test's database as written by schema version 999.
async fn from_the_future(dir: &std::path::Path, url: &str) {
    match backend() {
        Backend::Sqlite => {
            let conn = rusqlite::Connection::open(dir.join("data/sb.db")).unwrap();
            conn.pragma_update(None, "user_version", 999).unwrap();
        }
        Backend::Postgres => {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client.batch_execute("UPDATE switchboard_schema SET version = 999").await.unwrap();
        }
    }
}

on_both_backends! {
async fn migrate_creates_the_schema_then_serve_refuses_a_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text("");
    let url = text.lines().find_map(|l| l.strip_prefix("database = ")).unwrap().trim_matches('"').to_owned();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(&config, &text).unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    let config = config.to_str().unwrap();

    let out = switchboard(&["migrate", "--config", config]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(said.starts_with("ok: the database") && said.contains("schema version"), "{said}");
    // Again: nothing to do, same answer.
    let again = switchboard(&["migrate", "--config", config]);
    assert_eq!(String::from_utf8(again.stdout).unwrap(), said);

    from_the_future(dir.path(), &url).await;
    for command in ["migrate", "serve"] {
        let out = switchboard(&[command, "--config", config]);
        assert!(!out.status.success(), "{command} accepted a newer schema");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("schema version 999, newer than this switchboard's"), "{command}: {err}");
    }
}
}

#[test]
fn a_database_url_of_another_kind_is_refused_with_the_two_forms() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(&config, "database = \"mysql://root@localhost/x\"\n").unwrap();
    let out = switchboard(&["migrate", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("`sqlite://PATH` or `postgres://USER@HOST:PORT/DB`"), "{err}");
}

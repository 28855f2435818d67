//! Decision records and `switchboard replay`, on both backends: each applied assign and
//! transfer keeps what the rules saw (refusals, replays and releases keep nothing), the
//! rule files in force are kept, and replaying against a draft reports what it would
//! refuse, by rule, and what it would score lower.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::path::Path;
use std::process::Command;

use common::{Daemon, SUPERVISOR};
use serde_json::{Value, json};

fn replay(dir: &Path, draft: &Path) -> (Value, String) {
    let args = |format: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["replay", "--config", dir.join("switchboard.toml").to_str().unwrap()])
            .args(["--rules", draft.to_str().unwrap(), "--format", format])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        stdout
    };
    (serde_json::from_str(&args("json")).unwrap(), args("text"))
}

/// A copy of the daemon's rules with `from` replaced by `to` in `file`.
fn draft(dir: &Path, name: &str, file: &str, from: &str, to: &str) -> std::path::PathBuf {
    let draft = dir.join(name);
    std::fs::create_dir_all(&draft).unwrap();
    for entry in std::fs::read_dir(dir.join("rules")).unwrap().flatten() {
        std::fs::copy(entry.path(), draft.join(entry.file_name())).unwrap();
    }
    let text = std::fs::read_to_string(draft.join(file)).unwrap();
    assert!(text.contains(from), "{file} has no `{from}`");
    std::fs::write(draft.join(file), text.replace(from, to)).unwrap();
    draft
}

on_both_backends! {
    async fn replay_reports_what_a_draft_would_refuse_and_rank_lower() {
        let daemon = Daemon::start_in(common::demo_workdir(None)).await;
        let c = &daemon.client;
        // Three decisions the rules allowed: two to representatives, one to a queue.
        c.post("/v1/conversations/c-1/assign", SUPERVISOR, json!({"representative": "ann"})).await.expect(200);
        c.post_with("/v1/conversations/c-7/assign", SUPERVISOR, &[("idempotency-key", "k-7")],
            json!({"representative": "carla"})).await.expect(200);
        // A replay of the same request decides nothing again.
        c.post_with("/v1/conversations/c-7/assign", SUPERVISOR, &[("idempotency-key", "k-7")],
            json!({"representative": "carla"})).await.expect(200);
        c.post("/v1/conversations/c-2/transfer", SUPERVISOR, json!({"queue": "tech-support"})).await.expect(200);
        // Refused (422) and rule-free actions keep no record.
        c.post("/v1/conversations/c-5/assign", SUPERVISOR, json!({"representative": "bob"})).await.expect(422);
        c.post("/v1/conversations/c-1/release", SUPERVISOR, json!({})).await.expect(200);
        let version = c.get("/v1/rules", SUPERVISOR).await.expect(200).json["version"].as_str().unwrap().to_owned();
        let dir = daemon.stop().await;

        // The operator drops `available` from who may receive work.
        let strict = draft(dir.path(), "strict", "presence.toml",
            r#"presence = ["available", "busy"]"#, r#"presence = ["busy"]"#);
        let (report, text) = replay(dir.path(), &strict);
        assert_eq!(report["records"], 3, "{report}");
        assert_eq!(report["versions"][&version], 3, "every record names the version that decided: {report}");
        assert_eq!(report["without_original"], 0, "the rule files in force were kept: {report}");
        assert_eq!(report["original_now_refuses"], 0, "{report}");
        assert_eq!(report["refused"], 2, "{report}");
        let by_rule = &report["refused_by_rule"][0];
        assert_eq!(by_rule["rule"], "reachable-representatives");
        assert_eq!(by_rule["count"], 2);
        let example = &by_rule["examples"][0];
        assert_eq!(example["conversation"], "c-1");
        assert_eq!(example["target"], "ann");
        assert!(example["detail"].as_str().unwrap().contains("presence `available` is not one of busy"), "{example}");
        assert_eq!(report["unchanged_or_higher"], 1, "the transfer to a queue is untouched: {report}");
        assert!(text.contains("the draft would refuse 2 (66.7%)") && text.contains("reachable-representatives: 2"), "{text}");

        // Halving the weight of free capacity keeps everyone, with lower scores.
        let lighter = draft(dir.path(), "lighter", "presence.toml",
            "by = \"free_capacity\"\nweight = 1.0", "by = \"free_capacity\"\nweight = 0.5");
        let (report, _) = replay(dir.path(), &lighter);
        assert_eq!(report["refused"], 0, "{report}");
        assert_eq!(report["lower"], 2, "{report}");
        assert!(report["lower_examples"][0]["detail"].as_str().unwrap().contains("under the draft"), "{report}");
    }

    async fn decision_records_older_than_the_retention_are_purged() {
        let daemon = Daemon::start_in(common::demo_workdir(None)).await;
        let c = &daemon.client;
        c.post("/v1/conversations/c-1/assign", SUPERVISOR, json!({"representative": "ann"})).await.expect(200);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        daemon.state.supervisor.purge_decisions(std::time::Duration::ZERO).await;
        c.post("/v1/conversations/c-7/assign", SUPERVISOR, json!({"representative": "carla"})).await.expect(200);
        let dir = daemon.stop().await;
        let same = draft(dir.path(), "same", "presence.toml", "weight = 1.0", "weight = 1.0");
        let (report, _) = replay(dir.path(), &same);
        assert_eq!(report["records"], 1, "the purged record is gone, the later one kept: {report}");
    }
}

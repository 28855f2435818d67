//! `switchboard bench`: the real binary drives a real daemon (its own child, or a
//! running one with `--target`) over HTTP, and reports what it measured.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{
    ADMIN, INTEGRATION, NO_POSTGRES, PgDatabase, Process, SUPERVISOR, config_for, install_demo_rules, install_plugin,
    workdir,
};
use reqwest::Method;
use serde_json::Value;

fn bench(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("bench")
        .args(args)
        .current_dir(dir)
        .env_remove("SWITCHBOARD_TOKEN")
        .env_remove("SWITCHBOARD_INTEGRATION_TOKEN")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The JSON report on stdout of a run that succeeded.
fn report(out: &Output) -> Value {
    assert!(out.status.success(), "bench failed:\n{}\n{}", text(&out.stdout), text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", text(&out.stdout)))
}

/// Latencies are answered calls' percentiles, in order; counts add up.
fn check_kind(report: &Value, kind: &str) -> u64 {
    let k = &report["kinds"][kind];
    let calls = k["calls"].as_u64().unwrap();
    let (ok, refusals, errors) =
        (k["ok"].as_u64().unwrap(), k["refusals"].as_u64().unwrap(), k["errors"].as_u64().unwrap());
    assert_eq!(ok + refusals + errors, calls, "{kind}: {k}");
    assert_eq!(errors, 0, "{kind}: {k}");
    if calls > 0 {
        let l = &k["latency_us"];
        let p: Vec<u64> = ["p50", "p90", "p99", "max"].iter().map(|q| l[q].as_u64().unwrap()).collect();
        assert!(p[0] > 0 && p.windows(2).all(|w| w[0] <= w[1]), "{kind}: percentiles out of order: {l}");
    } else {
        assert!(k["latency_us"].is_null(), "{kind}: {k}");
    }
    calls
}

#[test]
fn a_local_run_with_the_example_rules_and_plugins_reports_every_kind_as_json() {
    // What a user gets from `switchboard bench` in a checkout: ./rules and ./plugins/dist.
    let dir = tempfile::tempdir().unwrap();
    install_demo_rules(dir.path(), "plugins/dist");

    let args = ["--representatives", "60", "--queues", "3", "--conversations", "80", "--concurrency", "4"];
    let out =
        bench(dir.path(), &[&args[..], &["--duration", "2s", "--warmup", "200ms", "--seed", "7", "--json"]].concat());
    let r = report(&out);

    assert_eq!(r["parameters"]["seed"], 7);
    assert_eq!(r["parameters"]["representatives"], 60);
    assert_eq!(r["parameters"]["target"], "local");
    assert_eq!(r["populate"]["records"], 60 + 3 + 80);
    let plugins: Vec<&str> = r["rules"]["plugins"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(plugins, ["language-match", "vip-scoring"], "the daemon loaded the example plugins: {}", r["rules"]);
    assert!(r["rules"]["files"].as_array().unwrap().len() >= 5, "{}", r["rules"]);

    let mut total = 0;
    for kind in ["candidates", "assign", "transfer", "release", "remove"] {
        let calls = check_kind(&r, kind);
        assert!(calls > 0, "{kind} was never called in 2 s: {}", r["kinds"]);
        total += calls;
    }
    // Every remove is followed by a create, which keeps the pool of conversations full.
    assert_eq!(check_kind(&r, "create"), r["kinds"]["remove"]["calls"].as_u64().unwrap());
    total += r["kinds"]["create"]["calls"].as_u64().unwrap();
    assert_eq!(r["total"]["calls"].as_u64().unwrap(), total);
    assert_eq!(r["total"]["errors"], 0);
    assert!(r["measured_seconds"].as_f64().unwrap() >= 2.0);
    assert!(r["machine"]["cpus"].as_u64().unwrap() >= 1);
    // No progress bar or table in JSON mode: stdout is only the document.
    assert!(text(&out.stdout).trim_start().starts_with('{'));
}

#[test]
fn the_mix_decides_which_calls_are_made_and_the_table_names_them() {
    let dir = tempfile::tempdir().unwrap(); // no ./rules: the daemon runs with none
    let out = bench(
        dir.path(),
        &[
            "--representatives",
            "10",
            "--queues",
            "2",
            "--conversations",
            "10",
            "--concurrency",
            "2",
            "--duration",
            "500ms",
            "--warmup",
            "0s",
            "--mix",
            "candidates=1",
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("rules none: no ./rules here; pass --rules DIR"), "{stderr}");
    let header = stdout.lines().find(|l| l.starts_with("kind")).unwrap();
    for column in ["calls", "calls/s", "p50", "p90", "p99", "max", "refusals", "errors"] {
        assert!(header.split_whitespace().any(|c| c == column), "{header}");
    }
    let row = |kind: &str| -> Vec<String> {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(kind))
            .unwrap()
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert!(row("candidates")[1].parse::<u64>().unwrap() > 0, "{stdout}");
    for kind in ["assign", "transfer", "release", "remove", "create"] {
        assert_eq!(row(kind)[1], "0", "{kind} has weight 0: {stdout}");
        assert_eq!(row(kind)[3], "-", "no latency without calls: {stdout}");
    }
    assert!(stdout.contains("concurrency 2"), "{stdout}");
}

#[test]
fn a_run_against_a_running_daemon_cleans_up_after_itself() {
    let dir = workdir("");
    let daemon = Process::spawn(dir.path());
    let base = daemon.client.base.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Records that are not the run's must stay as they are.
    rt.block_on(async {
        daemon.client.seed_directory().await;
        daemon.client.create("mine").await;
    });

    let out = bench(
        dir.path(),
        &[
            "--target",
            &base,
            "--token",
            SUPERVISOR,
            "--integration-token",
            INTEGRATION,
            "--representatives",
            "12",
            "--queues",
            "2",
            "--conversations",
            "20",
            "--concurrency",
            "3",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--json",
        ],
    );
    let r = report(&out);
    let prefix = r["parameters"]["id_prefix"].as_str().unwrap().to_owned();
    assert!(prefix.starts_with("bench-42-"), "{prefix}");
    assert_eq!(r["parameters"]["target"].as_str().unwrap().trim_end_matches('/'), base);
    assert!(check_kind(&r, "candidates") > 0);
    assert!(text(&out.stderr).contains("cleaned up"), "{}", text(&out.stderr));

    rt.block_on(async {
        let c = &daemon.client;
        // None of the run's conversations is still ongoing; ours is.
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/conversations?limit=200&cursor={c}"),
                None => "/v1/conversations?limit=200".to_owned(),
            };
            let page = c.get(&path, SUPERVISOR).await.expect(200).json;
            ids.extend(page["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_owned()));
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(ids, ["mine"]);
        // The run's representatives are offline; the directory's are as they were.
        let rep = c.get(&format!("/v1/representatives/{prefix}r0"), SUPERVISOR).await;
        let reps = c.get("/v1/representatives?limit=200", ADMIN).await.expect(200).json;
        let mut seen = 0;
        for rep in reps["items"].as_array().unwrap() {
            let id = rep["id"].as_str().unwrap();
            if id.starts_with(&prefix) {
                seen += 1;
                assert_eq!(rep["presence"], "offline", "{rep}");
            }
        }
        assert_eq!(seen, 12, "{reps}; first rep: {:?}", rep.json);
        assert_eq!(c.get("/v1/representatives/ann", SUPERVISOR).await.expect(200).json["presence"], "available");
        // The dialog listed the real representatives too: none was ever given the run's
        // work (the histories of the run's conversations name only its own).
        assert_eq!((c.used_capacity("ann").await, c.used_capacity("bob").await), (0, 0));
        let mut assigned = 0;
        for i in 0..r["kinds"]["create"]["calls"].as_u64().unwrap() + 20 {
            let history = c.get(&format!("/v1/conversations/{prefix}c{i}/history"), SUPERVISOR).await;
            for event in history.json["events"].as_array().into_iter().flatten() {
                if let Some(rep) = event["to"]["representative"].as_str() {
                    assert!(rep.starts_with(&prefix), "{prefix}c{i} went to {rep}: {event}");
                    assigned += 1;
                }
            }
        }
        assert!(assigned > 0, "the run assigned nothing, so this proves nothing");
        let history = c.get("/v1/conversations/mine/history", SUPERVISOR).await.expect(200).json;
        assert_eq!(history["events"].as_array().unwrap().len(), 1, "{history}");
    });
}

/// The 2xx answers a daemon gave to the four supervisor actions, from its `/metrics`
/// (`http_requests_total` by method, route and status).
async fn actions_answered(client: &common::Client) -> u64 {
    let text = client.send(Method::GET, "/metrics", None, &[], None).await.expect(200).text;
    let actions =
        ["assign", "transfer", "release", "remove"].map(|a| format!("route=\"/v1/conversations/{{id}}/{a}\""));
    text.lines()
        .filter(|l| {
            l.starts_with("http_requests_total{") && l.contains("method=\"POST\"") && l.contains("status=\"200\"")
        })
        .filter(|l| actions.iter().any(|a| l.contains(a.as_str())))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}

#[test]
fn a_run_against_two_daemons_on_one_postgres_database_spreads_the_actions_over_both() {
    if std::env::var_os(NO_POSTGRES).is_some() {
        eprintln!("skipped: {NO_POSTGRES} is set, and this test needs PostgreSQL");
        return;
    }
    // Dropped last: after the daemons that use it.
    let db = PgDatabase::create();
    let dirs: Vec<_> = (0..2)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("switchboard.toml"), config_for(&db.url, "")).unwrap();
            std::fs::create_dir(dir.path().join("rules")).unwrap();
            dir
        })
        .collect();
    let daemons: Vec<Process> = dirs.iter().map(|d| Process::spawn(d.path())).collect();
    let bases: Vec<String> = daemons.iter().map(|d| d.client.base.clone()).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let before: Vec<u64> = daemons.iter().map(|d| rt.block_on(actions_answered(&d.client))).collect();
    assert_eq!(before, [0, 0]);

    let out = bench(
        dirs[0].path(),
        &[
            "--target",
            &bases[0],
            "--target",
            &bases[1],
            "--token",
            ADMIN,
            "--representatives",
            "12",
            "--queues",
            "2",
            "--conversations",
            "20",
            "--concurrency",
            "4",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--mix",
            "assign=25,transfer=25,release=25,remove=25",
            "--json",
        ],
    );
    let r = report(&out);
    let targets: Vec<&str> = r["parameters"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().trim_end_matches('/'))
        .collect();
    assert_eq!(targets, bases);
    assert_eq!(r["parameters"]["target"].as_str().unwrap().trim_end_matches('/'), bases[0]);
    let mut ok = 0;
    for kind in ["assign", "transfer", "release", "remove", "create"] {
        check_kind(&r, kind);
        ok += r["kinds"][kind]["ok"].as_u64().unwrap();
    }
    assert!(ok > 0, "no action succeeded: {}", r["kinds"]);
    assert_eq!(r["total"]["errors"], 0);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("2 targets") && stderr.contains("cleaned up"), "{stderr}");

    // Each daemon answered actions of the run itself, not only the first.
    let after: Vec<u64> = daemons.iter().map(|d| rt.block_on(actions_answered(&d.client))).collect();
    assert!(after.iter().all(|&n| n > 0), "actions answered per daemon: {after:?}");
    // Both serve one database: what the run left is the same through either.
    rt.block_on(async {
        let rep = format!("/v1/representatives/{}r0", r["parameters"]["id_prefix"].as_str().unwrap());
        let a = daemons[0].client.get(&rep, SUPERVISOR).await.expect(200).json;
        let b = daemons[1].client.get(&rep, SUPERVISOR).await.expect(200).json;
        assert_eq!(a["presence"], "offline", "{a}");
        assert_eq!(a["version"], b["version"], "{a} / {b}");
    });
}

#[test]
fn targets_that_do_not_share_a_database_are_refused() {
    // Two daemons, each on a SQLite file of its own.
    let (one, two) = (workdir(""), workdir(""));
    let (a, b) = (Process::spawn(one.path()), Process::spawn(two.path()));
    let targets = format!("{},{}", a.client.base, b.client.base);
    let out = bench(
        one.path(),
        &[
            "--target",
            &targets,
            "--token",
            ADMIN,
            "--representatives",
            "3",
            "--queues",
            "1",
            "--conversations",
            "4",
            "--concurrency",
            "2",
        ],
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{} does not know the conversation", b.client.base))
            && stderr.contains("every --target must serve the same database"),
        "{stderr}"
    );
    // The run still cleaned up what it created through the first.
    assert!(stderr.contains("cleaned up"), "{stderr}");
}

/// A small center for the runs below: `extra` after it.
fn tiny<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let base = ["--representatives", "30", "--queues", "2", "--conversations", "20", "--warmup", "0s", "--duration"];
    [&base[..], &["1s"], extra].concat()
}

#[test]
fn an_open_loop_run_with_a_limit_and_a_background_group_reports_each() {
    let dir = tempfile::tempdir().unwrap(); // no ./rules: every representative is a candidate
    let out = bench(
        dir.path(),
        &tiny(&[
            "--rate",
            "100",
            "--concurrency",
            "4",
            "--limit",
            "3",
            "--mix",
            "candidates=1",
            "--background",
            "put_queue=1,create=1",
            "--background-rate",
            "40",
            "--json",
        ]),
    );
    let r = report(&out);
    assert_eq!(r["parameters"]["limit"], 3);
    assert_eq!(r["parameters"]["rate"], 100);
    assert_eq!(r["parameters"]["background"], "create=1,put_queue=1");
    let rate = &r["rate"];
    assert_eq!(rate["target_per_s"], 100, "{rate}");
    let started = rate["started"].as_u64().unwrap();
    assert!(started > 0 && started <= rate["due"].as_u64().unwrap(), "{rate}");
    assert!(rate["late"].as_u64().unwrap() <= started, "{rate}");
    // Every call the open loop started is a candidates call (each found a conversation).
    assert_eq!(check_kind(&r, "candidates"), started);
    let listed = &r["kinds"]["candidates"]["representatives_listed"];
    assert!(listed["max"].as_u64().unwrap() <= 3, "the dialogs asked for 3: {listed}");
    assert!(listed["max"].as_u64().unwrap() > 0, "{listed}");
    assert!(listed["eligible_mean"].as_f64().unwrap() > 3.0, "more were eligible than listed: {listed}");

    let b = &r["background"];
    assert_eq!(b["rate"]["target_per_s"], 40, "{b}");
    for kind in ["put_queue", "create"] {
        let k = &b["kinds"][kind];
        assert!(k["calls"].as_u64().unwrap() > 0, "{kind} (background): {k}");
        assert_eq!(k["errors"], 0, "{kind} (background): {k}");
    }
    assert!(b["kinds"]["candidates"].is_null(), "only the background's own kinds: {b}");
    assert_eq!(r["kinds"]["put_queue"]["calls"], 0, "the main group made no writes: {}", r["kinds"]);
}

#[test]
fn the_slow_matcher_scenario_runs_with_background_rows_in_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let plugins = dir.path().join("plugins");
    install_plugin(&plugins, "slow", "slow");
    let rules = root.join("benches/scenarios/slow-matcher/rules");
    let (rules, plugins) = (rules.to_str().unwrap(), plugins.to_str().unwrap());
    let out = bench(
        dir.path(),
        &tiny(&[
            "--rules",
            rules,
            "--plugins",
            plugins,
            "--plugin-deadline",
            "500ms",
            "--mix",
            "candidates=50,assign=50",
            "--concurrency",
            "2",
            "--background",
            "put_queue=1,create=1",
            "--background-rate",
            "20",
        ]),
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("plugins: slow"), "the scenario's rule loaded the slow guest: {stderr}");
    assert!(stdout.starts_with("\nload: closed loop, 2 connections · candidates limit 50"), "{stdout}");
    let calls = |label: &str| -> u64 {
        let line = stdout.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no {label} row: {stdout}"));
        line[label.len()..].split_whitespace().next().unwrap().parse().unwrap()
    };
    assert!(calls("candidates ") > 0, "{stdout}");
    assert!(calls("put_queue (background) ") > 0, "{stdout}");
    assert!(calls("create (background) ") > 0, "{stdout}");
    assert!(stdout.contains("background: create=1,put_queue=1, open loop at 20 calls/s"), "{stdout}");
}

#[test]
fn a_restart_reports_start_up_time_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let out = bench(dir.path(), &tiny(&["--restart", "--mix", "candidates=1", "--concurrency", "2", "--json"]));
    let r = report(&out);
    let restart = &r["restart"];
    assert!(restart["startup_ms"].as_f64().unwrap() > 0.0, "{restart}");
    assert!(restart["rss_mib"].as_f64().unwrap() > 0.0, "{restart}");
    assert!(restart["rss_mib_before"].as_f64().unwrap() > 0.0, "{restart}");
    assert_eq!(r["parameters"]["restart"], true);
    // The calls after the restart reached the daemon on its new address.
    assert!(check_kind(&r, "candidates") > 0);
    assert!(text(&out.stderr).contains("restarted: listening after"), "{}", text(&out.stderr));
}

#[test]
fn bad_flags_and_bad_targets_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let err = |args: &[&str]| {
        let out = bench(dir.path(), args);
        assert!(!out.status.success(), "{args:?} should fail");
        text(&out.stderr)
    };
    let e = err(&["--mix", "candidates=5,lunch=2"]);
    assert!(e.contains("lunch") && e.contains("candidates, assign, transfer, release, remove"), "{e}");
    let e = err(&["--duration", "30"]);
    assert!(e.contains("30s"), "a duration without a unit suggests one: {e}");
    let e = err(&["--concurrency", "50", "--conversations", "10"]);
    assert!(e.contains("--concurrency 50 is more than --conversations 10"), "{e}");
    let e = err(&["--rules", "/nonexistent/rules"]);
    assert!(e.contains("--rules /nonexistent/rules: no such folder"), "{e}");
    let e = err(&["--target", "http://127.0.0.1:9"]);
    assert!(e.contains("--target needs --token"), "{e}");
    for limit in ["0", "1001", "many"] {
        let e = err(&["--limit", limit]);
        assert!(e.contains("from 1 to 1000") && e.contains("`all`"), "{e}");
    }
    let e = err(&["--rate", "0"]);
    assert!(e.contains("--rate") && e.contains("0"), "{e}");
    let e = err(&["--background", "put_queue=1"]);
    assert!(e.contains("--background-rate"), "a background group needs a rate: {e}");
    let e = err(&["--background-rate", "200"]);
    assert!(e.contains("--background"), "{e}");
    let e = err(&["--background", "put_queue=1,lunch=1", "--background-rate", "10"]);
    assert!(e.contains("unknown kind `lunch`") && e.contains("put_queue"), "{e}");
    let e = err(&["--restart", "--target", "http://127.0.0.1:9", "--token", ADMIN]);
    assert!(e.contains("--restart") && e.contains("--target"), "only a daemon started here can be restarted: {e}");
    let e = err(&["--plugin-deadline", "0ms"]);
    assert!(e.contains("1ms to 60s"), "{e}");

    // A running daemon that does not know the token, or whose token may not act.
    let work = workdir("");
    let daemon = Process::spawn(work.path());
    let base = daemon.client.base.clone();
    let e = err(&["--target", &base, "--token", "nobody", "--duration", "1s"]);
    assert!(e.contains("does not know the token"), "{e}");
    let e = err(&["--target", &base, "--token", SUPERVISOR, "--duration", "1s"]);
    assert!(e.contains("--integration-token"), "a supervisor token alone cannot create records: {e}");
    let e = err(&["--target", "http://127.0.0.1:9", "--token", ADMIN]);
    assert!(e.contains("cannot reach http://127.0.0.1:9"), "{e}");
    // Every target is checked before anything is created.
    let e = err(&["--target", &base, "--target", "http://127.0.0.1:9", "--token", ADMIN]);
    assert!(e.contains("cannot reach http://127.0.0.1:9"), "{e}");
    let e = err(&["--target", &format!("{base},{base}"), "--token", ADMIN]);
    assert!(e.contains("is given twice"), "{e}");
}

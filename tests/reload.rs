//! Hot reload: the watcher, SIGHUP and the API all feed one reload task; editor saves,
//! ConfigMap symlink swaps and plugin replacements are picked up, junk files are not,
//! and requests never fail or mix rule sets.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{ADMIN, Daemon, Process, SUPERVISOR, conversation_in, eventually, install_plugin};
use serde_json::{Value, json};

const AVAILABLE: &str =
    "[[rule]]\nid = \"reachable\"\ntarget = \"representative\"\nrequire = { presence = [\"available\"] }\n";
const ANY: &str =
    "[[rule]]\nid = \"reachable\"\ntarget = \"representative\"\nrequire = { presence = [\"available\", \"busy\"] }\n";

fn rules(d: &Daemon) -> PathBuf {
    d.dir.path().join("rules")
}

async fn status(d: &Daemon) -> Value {
    d.client.get("/v1/rules", SUPERVISOR).await.expect(200).json
}

async fn version(d: &Daemon) -> String {
    status(d).await["version"].as_str().unwrap().to_owned()
}

async fn reloads(d: &Daemon) -> u64 {
    status(d).await["reloads"].as_u64().unwrap()
}

/// Waits until the version in force satisfies `want`, and returns it. Generous: a reload
/// that brings a plugin compiles it (seconds in a debug build on a busy machine).
async fn until_version(d: &Daemon, want: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = version(d).await;
        if want(&v) {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "version still {v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn started() -> Daemon {
    let d = Daemon::start().await;
    d.client.seed_directory().await;
    d
}

#[tokio::test]
async fn rename_on_save_is_picked_up_and_junk_files_are_not() {
    let d = started().await;
    let v0 = version(&d).await;
    // An editor writes a temp file, then renames it over the rule file.
    std::fs::write(rules(&d).join(".presence.toml.tmp"), AVAILABLE).unwrap();
    std::fs::rename(rules(&d).join(".presence.toml.tmp"), rules(&d).join("presence.toml")).unwrap();
    let v1 = until_version(&d, |v| v != v0).await;
    assert_eq!(status(&d).await["files"], json!(["rules/presence.toml"]));

    // Swap, backup and lock files change nothing: no reload at all.
    let count = reloads(&d).await;
    for junk in [".presence.toml.swp", "presence.toml~", ".#presence.toml", ".presence.toml.swx"] {
        std::fs::write(rules(&d).join(junk), "not toml [[[").unwrap();
    }
    // Absence of a reload can only be observed over a window: several debounce periods.
    tokio::time::sleep(switchboard::reload::DEBOUNCE * 6).await;
    assert_eq!(reloads(&d).await, count, "junk files made a reload");
    assert_eq!(version(&d).await, v1);
}

#[tokio::test]
async fn delete_then_recreate() {
    let d = started().await;
    std::fs::write(rules(&d).join("presence.toml"), AVAILABLE).unwrap();
    let v1 = until_version(&d, |v| v != "empty").await;
    std::fs::remove_file(rules(&d).join("presence.toml")).unwrap();
    until_version(&d, |v| v == "empty").await;
    std::fs::write(rules(&d).join("presence.toml"), AVAILABLE).unwrap();
    assert_eq!(until_version(&d, |v| v != "empty").await, v1, "same content, same version");
}

#[tokio::test]
async fn a_burst_of_saves_is_one_reload() {
    let d = started().await;
    let before = reloads(&d).await;
    for i in 0..20 {
        let text = format!("{AVAILABLE}# save {i}\n");
        std::fs::write(rules(&d).join("presence.toml"), text).unwrap();
    }
    let want = until_version(&d, |v| v != "empty").await;
    eventually(Duration::from_secs(10), || async { reloads(&d).await > before }).await;
    tokio::time::sleep(switchboard::reload::DEBOUNCE * 6).await;
    let after = reloads(&d).await;
    assert!(after - before <= 2, "{} reloads for one burst", after - before);
    assert_eq!(version(&d).await, want);
}

#[tokio::test]
async fn a_half_written_file_is_rejected_then_accepted_once_complete() {
    let d = started().await;
    std::fs::write(rules(&d).join("presence.toml"), AVAILABLE).unwrap();
    let v1 = until_version(&d, |v| v != "empty").await;
    std::fs::write(rules(&d).join("presence.toml"), &ANY[..40]).unwrap();
    eventually(Duration::from_secs(10), || async { !status(&d).await["last_error"].is_null() }).await;
    let s = status(&d).await;
    assert_eq!(s["version"], v1.as_str(), "the rules in force stay");
    assert_eq!(s["last_error"]["file"], "rules/presence.toml");
    std::fs::write(rules(&d).join("presence.toml"), ANY).unwrap();
    let v2 = until_version(&d, |v| v != v1).await;
    assert_ne!(v2, "empty");
    assert!(status(&d).await["last_error"].is_null());
}

/// Kubernetes mounts a ConfigMap as `..data -> ..<timestamp>/` with each file a symlink
/// through `..data`, and updates it by swapping `..data` atomically.
#[cfg(unix)]
#[tokio::test]
async fn a_configmap_style_data_symlink_swap() {
    use std::os::unix::fs::symlink;
    let d = started().await;
    let dir = rules(&d);
    let mount = |name: &str, text: &str| {
        std::fs::create_dir(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("presence.toml"), text).unwrap();
    };
    mount("..2026_11_23_10_00_00.1", AVAILABLE);
    symlink("..2026_11_23_10_00_00.1", dir.join("..data")).unwrap();
    symlink("..data/presence.toml", dir.join("presence.toml")).unwrap();
    let v1 = until_version(&d, |v| v != "empty").await;
    mount("..2026_11_23_10_05_00.2", ANY);
    symlink("..2026_11_23_10_05_00.2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..2026_11_23_10_00_00.1")).unwrap();
    let v2 = until_version(&d, |v| v != v1).await;
    assert_ne!(v2, "empty");
    assert_eq!(status(&d).await["files"], json!(["rules/presence.toml"]));
}

/// Appends a custom section: another file (another SHA-256) with the same behaviour.
fn rebadge(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes.extend_from_slice(&[0x00, 0x05, 0x04, b't', b'e', b's', b't']);
    let tmp = path.with_extension("wasm.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn a_plugin_replaced_while_requests_use_it() {
    let d =
        Daemon::start_with("plugins_dir = \"plugins\"\nplugin_cache = \"cache\"\n[plugin_limits]\ndeadline_ms = 50\n")
            .await;
    let c = d.client.clone();
    c.seed_directory().await;
    conversation_in(&c, "c1", "open").await;
    let plugins = d.dir.path().join("plugins");
    install_plugin(&plugins, "vip_scoring", "vip-scoring");
    std::fs::write(
        rules(&d).join("vip.toml"),
        "[[rule]]\nid = \"vip\"\ntarget = \"representative\"\nplugin = { name = \"vip-scoring\", config = { tiers = [\"gold\"], groups = [\"tier-2\"] } }\n",
    )
    .unwrap();
    // The plugins folder did not exist when the daemon started: load through the API.
    let v1 =
        c.post("/v1/rules/reload", ADMIN, json!({})).await.expect(200).json["version"].as_str().unwrap().to_owned();
    let sha1 = status(&d).await["plugins"][0]["sha256"].as_str().unwrap().to_owned();

    let load = tokio::spawn({
        let c = c.clone();
        async move {
            let mut versions = std::collections::BTreeSet::new();
            for _ in 0..60 {
                let a = c.get("/v1/conversations/c1/candidates?action=assign&target=representative", SUPERVISOR).await;
                assert_eq!(a.status.as_u16(), 200, "{}", a.text);
                versions.insert(a.json["ruleset"].as_str().unwrap().to_owned());
            }
            versions
        }
    });
    rebadge(&plugins.join("vip-scoring.wasm"));
    let v2 =
        c.post("/v1/rules/reload", ADMIN, json!({})).await.expect(200).json["version"].as_str().unwrap().to_owned();
    let versions = load.await.unwrap();
    assert_ne!(v1, v2, "a new plugin file is a new rule-set version");
    assert!(versions.iter().all(|v| *v == v1 || *v == v2), "{versions:?}");
    let s = status(&d).await;
    assert_ne!(s["plugins"][0]["sha256"].as_str().unwrap(), sha1);
}

/// The rules folder deleted, then made again: the failed reload keeps the rules in force,
/// and the new folder is watched like the old one.
#[tokio::test]
async fn a_rules_folder_deleted_and_made_again_is_watched_again() {
    let d = started().await;
    std::fs::write(rules(&d).join("presence.toml"), AVAILABLE).unwrap();
    let v1 = until_version(&d, |v| v != "empty").await;
    std::fs::remove_dir_all(rules(&d)).unwrap();
    eventually(Duration::from_secs(10), || async { !status(&d).await["last_error"].is_null() }).await;
    assert_eq!(version(&d).await, v1, "a failed reload keeps the rules in force");
    std::fs::create_dir(rules(&d)).unwrap();
    std::fs::write(rules(&d).join("presence.toml"), ANY).unwrap();
    let v2 = until_version(&d, |v| v != v1 && v != "empty").await;
    // Watched again, not only reloaded once when it appeared.
    std::fs::write(rules(&d).join("presence.toml"), AVAILABLE).unwrap();
    assert_eq!(until_version(&d, |v| v != v2).await, v1);
    assert!(status(&d).await["last_error"].is_null());
}

/// `plugins_dir` two levels below anything that exists at start: a plugin dropped into
/// it once it is made is loaded without SIGHUP or the API.
#[tokio::test]
async fn a_plugins_folder_made_after_start_is_watched() {
    common::built_plugins();
    let d = Daemon::start_with("plugins_dir = \"plugins/dist\"\nplugin_cache = \"cache\"\n").await;
    let v0 = version(&d).await;
    assert_eq!(status(&d).await["plugins"], json!([]));
    install_plugin(&d.dir.path().join("plugins/dist"), "vip_scoring", "vip-scoring");
    let v1 = until_version(&d, |v| v != v0).await;
    assert_eq!(status(&d).await["plugins"][0]["name"], "vip-scoring", "version {v1}");
    // And it stays watched: a second plugin is picked up too.
    install_plugin(&d.dir.path().join("plugins/dist"), "language_match", "language-match");
    until_version(&d, |v| v != v1).await;
    assert_eq!(status(&d).await["plugins"].as_array().unwrap().len(), 2);
}

/// Exactly one `switchboard_rules_version_info` series, the version in force, after
/// several versions were loaded.
#[tokio::test]
async fn the_rules_version_metric_is_one_series() {
    let d = started().await;
    let mut v = version(&d).await;
    for text in [AVAILABLE, ANY, AVAILABLE] {
        std::fs::write(rules(&d).join("presence.toml"), text).unwrap();
        let before = v.clone();
        v = until_version(&d, |now| now != before).await;
    }
    let metrics = d.client.send(reqwest::Method::GET, "/metrics", None, &[], None).await.expect(200).text;
    let series: Vec<&str> = metrics.lines().filter(|l| l.starts_with("switchboard_rules_version_info{")).collect();
    assert_eq!(series, [format!("switchboard_rules_version_info{{version=\"{v}\"}} 1")], "{metrics}");
}

#[tokio::test]
async fn sighup_reloads_the_real_binary() {
    let dir = common::workdir("watch = false\n");
    let p = Process::spawn(dir.path());
    let c = p.client.clone();
    assert_eq!(c.get("/v1/rules", SUPERVISOR).await.json["version"], "empty");
    std::fs::write(dir.path().join("rules/presence.toml"), AVAILABLE).unwrap();
    p.signal("-HUP");
    eventually(Duration::from_secs(10), || {
        let c = c.clone();
        async move { c.get("/v1/rules", SUPERVISOR).await.json["version"] != "empty" }
    })
    .await;
}

/// Steady candidate queries and actions over real HTTP while 50 reloads alternate valid
/// and invalid rules: no request fails, and each answer names the old or the new rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reloads_under_load() {
    // Reloads come from the API here; the watcher would add its own (tested above).
    let d = Daemon::start_with("watch = false\n").await;
    d.client.seed_directory().await;
    let c = d.client.clone();
    std::fs::write(rules(&d).join("presence.toml"), AVAILABLE).unwrap();
    let va = d.client.post("/v1/rules/reload", ADMIN, json!({})).await.expect(200).json["version"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..20 {
        conversation_in(&c, &format!("c{i}"), "open").await;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn({
        let (c, stop) = (c.clone(), stop.clone());
        async move {
            let mut seen = std::collections::BTreeSet::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 2_000 {
                let conv = format!("c{}", n % 20);
                let q = c
                    .get(
                        &format!("/v1/conversations/{conv}/candidates?action=transfer&target=representative"),
                        SUPERVISOR,
                    )
                    .await;
                assert_eq!(q.status.as_u16(), 200, "{}", q.text);
                seen.insert(q.json["ruleset"].as_str().unwrap().to_owned());
                let a = c
                    .post(&format!("/v1/conversations/{conv}/transfer"), SUPERVISOR, json!({"queue": "billing"}))
                    .await;
                assert_eq!(a.status.as_u16(), 200, "{}", a.text);
                n += 1;
            }
            (seen, n)
        }
    });
    let mut vb = String::new();
    for i in 0..50 {
        let valid = i % 2 == 0;
        let text = if valid { if i % 4 == 0 { ANY } else { AVAILABLE } } else { "[[rule]]\nid = \"broken\"\n" };
        std::fs::write(rules(&d).join("presence.toml"), text).unwrap();
        let a = c.post("/v1/rules/reload", ADMIN, json!({})).await;
        if valid {
            let v = a.expect(200).json["version"].as_str().unwrap().to_owned();
            if v != va {
                vb = v;
            }
        } else {
            a.problem(422, "invalid_rules");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (seen, n) = load.await.unwrap();
    assert!(n > 0);
    assert!(seen.iter().all(|v| *v == va || *v == vb), "{seen:?} not within {va} / {vb}");
    // History names the rules each action ran under.
    let history = c.get("/v1/conversations/c0/history", SUPERVISOR).await.json;
    for e in history["events"].as_array().unwrap() {
        let v = e["ruleset"].as_str().unwrap();
        assert!(v == va || v == vb || v == "empty", "{v}");
    }
}

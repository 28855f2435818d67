//! How long after a save the new rules are in force: watcher, debounce, reload, swap.
//!
//! `cargo bench --bench reload` prints the median and worst of 30 saves.

use std::time::{Duration, Instant};

fn main() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path();
    std::fs::create_dir(path.join("rules")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(path.join("switchboard.toml"), "database = \"sqlite://sb.db\"\n").unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let mut took = rt.block_on(async {
        let config =
            switchboard::config::Config::load(&path.join("switchboard.toml")).unwrap_or_else(|e| panic!("{e}"));
        let state = switchboard::daemon::build(&config).await.unwrap_or_else(|e| panic!("{e}"));
        let routing = state.supervisor.clone();
        let mut took = Vec::new();
        for i in 0..30 {
            let before = routing.routing().status().version;
            let text =
                format!("[[rule]]\nid = \"r\"\ntarget = \"representative\"\nrequire = {{ min_free_capacity = {i} }}\n");
            let start = Instant::now();
            std::fs::write(path.join("rules/r.toml"), text).unwrap_or_else(|e| panic!("{e}"));
            while routing.routing().status().version == before {
                assert!(start.elapsed() < Duration::from_secs(10), "the save was not picked up");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            took.push(start.elapsed());
            // Let the watcher settle before the next save.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        took
    });
    took.sort();
    println!(
        "save -> rules in force (debounce {:?}): median {:.1?}, p90 {:.1?}, max {:.1?} over {} saves",
        switchboard::reload::DEBOUNCE,
        took[took.len() / 2],
        took[took.len() * 9 / 10],
        took[took.len() - 1],
        took.len()
    );
}

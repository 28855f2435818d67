//! A matcher that misbehaves on purpose, for the sandbox tests. Its config
//! `{"mode": "..."}` names the misdeed: `loop`, `memory`, `panic`, `oversized`,
//! `wrong-count`, `print`, `sandbox` (reports what it can reach as its exclusion
//! reason), or `ok` (behaves).

use std::sync::atomic::{AtomicU8, Ordering};

wit_bindgen::generate!({ world: "plugin", path: "../../wit" });

use exports::switchboard::matcher::matcher::Guest;
use switchboard::matcher::types::{Candidates, Request, Verdict};

static MODE: AtomicU8 = AtomicU8::new(0);
const MODES: [&str; 8] = ["ok", "loop", "memory", "panic", "oversized", "wrong-count", "print", "sandbox"];

struct Hostile;

fn count(request: &Request) -> usize {
    match &request.candidates {
        Candidates::Representatives(r) => r.len(),
        Candidates::Queues(q) => q.len(),
    }
}

impl Guest for Hostile {
    fn init(config: String) -> Result<(), String> {
        let mode = config
            .split("\"mode\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|m| MODES.iter().position(|x| *x == m))
            .ok_or_else(|| format!("unknown mode in {config}"))?;
        MODE.store(mode as u8, Ordering::Relaxed);
        Ok(())
    }

    fn evaluate(request: Request) -> Vec<Verdict> {
        let ok = || Verdict { eligible: true, score: 0.0, reason: None };
        match MODE.load(Ordering::Relaxed) {
            1 => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            2 => {
                // Ask for 64 MiB at once, then keep asking.
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(Vec::with_capacity(64 << 20));
                    std::hint::black_box(&hoard);
                }
            }
            3 => panic!("hostile matcher panics on purpose"),
            // 32 MiB of reason per candidate: more than an instance may hold.
            4 => (0..count(&request))
                .map(|_| Verdict { eligible: true, score: 0.0, reason: Some("x".repeat(32 << 20)) })
                .collect(),
            5 => (0..count(&request) + 1).map(|_| ok()).collect(),
            6 => {
                for i in 0..100 {
                    println!("hostile matcher line {i}");
                }
                (0..count(&request)).map(|_| ok()).collect()
            }
            7 => {
                let clock = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let env = std::env::vars().count();
                let args = std::env::args().count();
                let fs = if std::fs::read_dir("/").is_ok() { "readable" } else { "denied" };
                let net = if std::net::TcpStream::connect("127.0.0.1:1").is_ok() { "open" } else { "denied" };
                let reason = format!("clock {clock}, env {env}, args {args}, fs {fs}, net {net}");
                (0..count(&request)).map(|_| Verdict { eligible: false, score: 0.0, reason: Some(reason.clone()) }).collect()
            }
            _ => (0..count(&request)).map(|_| ok()).collect(),
        }
    }
}

export!(Hostile);

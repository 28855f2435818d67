//! A matcher that misbehaves on purpose, for the sandbox tests. Its config
//! `{"mode": "..."}` names the misdeed: `loop`, `memory`, `panic`, `oversized`,
//! `wrong-count`, `print`, `sandbox` (reports what it can reach as its exclusion
//! reason), or `ok` (behaves, reading nothing) and `all` (behaves, asking for every
//! candidate field: the bench's measure of a full request).

use std::sync::atomic::{AtomicU8, Ordering};

use switchboard_matcher::{Guest, Needs, Request, Verdicts, VerdictsBuilder};

static MODE: AtomicU8 = AtomicU8::new(0);
const MODES: [&str; 9] = ["ok", "loop", "memory", "panic", "oversized", "wrong-count", "print", "sandbox", "all"];

struct Hostile;

/// Excludes every candidate with `reason`.
fn exclude_all(request: &Request, reason: &str) -> Verdicts {
    let mut out = VerdictsBuilder::new(request.count as usize);
    for k in 0..request.count as usize {
        out.exclude(k, reason);
    }
    out.finish()
}

impl Guest for Hostile {
    fn init(config: String) -> Result<Needs, String> {
        let mode = config
            .split("\"mode\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|m| MODES.iter().position(|x| *x == m))
            .ok_or_else(|| format!("unknown mode in {config}"))?;
        MODE.store(mode as u8, Ordering::Relaxed);
        // `all` asks for every candidate field (the bench's measure of a full request).
        Ok(if MODES[mode] == "all" { Needs::from_bits_retain(0xff) } else { Needs::empty() })
    }

    fn evaluate(request: Request) -> Verdicts {
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
            // 32 MiB of reason: more than an instance may hold.
            4 => exclude_all(&request, &"x".repeat(32 << 20)),
            // One score too many.
            5 => Verdicts { scores: vec![1.0; request.count as usize + 1], ..Verdicts::all_eligible() },
            6 => {
                for i in 0..100 {
                    println!("hostile matcher line {i}");
                }
                Verdicts::all_eligible()
            }
            7 => {
                let clock = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let env = std::env::vars().count();
                let args = std::env::args().count();
                let fs = if std::fs::read_dir("/").is_ok() { "readable" } else { "denied" };
                let net = if std::net::TcpStream::connect("127.0.0.1:1").is_ok() { "open" } else { "denied" };
                exclude_all(&request, &format!("clock {clock}, env {env}, args {args}, fs {fs}, net {net}"))
            }
            _ => Verdicts::all_eligible(),
        }
    }
}

switchboard_matcher::export!(Hostile);

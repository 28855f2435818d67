//! A matcher that misbehaves on purpose, for the sandbox tests. Its config
//! `{"mode": "..."}` names the misdeed: `loop`, `memory`, `panic`, `oversized`,
//! `wrong-count`, `print`, `sandbox` (reports what it can reach as its exclusion
//! reason), or `ok` (behaves, reading nothing) and `all` (behaves, asking for every
//! candidate field: the bench's measure of a full request).
//!
//! Answers too big for the batch, which the host must refuse before copying them:
//! `flood` (candidate 0 excluded 100,000 times, each with its own reason), `flood-wide`
//! (400,000 times), `big-scores` (10 MiB of scores), `big-reason` (one 10 MiB reason).
//! `flaky` answers wrongly on an instance's first three calls, then well; `slow-init`
//! works hard in `init` (about 20 million instructions), then answers cheaply.
//!
//! `echo` asks for every field and excludes each candidate with, as its reason, what it
//! read of it through the SDK (candidate 0's reason starts with the conversation): the
//! tests' check that the host's encoding and the SDK's decoding agree on every field.

use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use std::fmt::Write;

use switchboard_matcher::{Candidates, Guest, Needs, Request, Value, Verdicts, VerdictsBuilder};

static MODE: AtomicU8 = AtomicU8::new(0);
const MODES: [&str; 16] = [
    "ok",
    "loop",
    "memory",
    "panic",
    "oversized",
    "wrong-count",
    "print",
    "sandbox",
    "all",
    "flood",
    "flood-wide",
    "big-scores",
    "big-reason",
    "flaky",
    "slow-init",
    "echo",
];
/// Calls this instance has answered (for `flaky`).
static CALLS: AtomicU32 = AtomicU32::new(0);

/// Candidate 0 excluded `times` times; with `reasons`, each time for its own reason.
fn flood(times: usize, reasons: bool) -> Verdicts {
    let (reason_of, reasons) = if reasons {
        ((0..times as u32).collect(), (0..times).map(|i| format!("reason {i:>33}")).collect())
    } else {
        (vec![0; times], vec!["flooded".to_string()])
    };
    Verdicts { excluded: vec![0; times], reason_of, reasons, scores: Vec::new() }
}

struct Hostile;

/// A value as text, symbols resolved.
fn value(request: &Request, v: Option<Value>) -> String {
    match v {
        Some(Value::Text(t)) => request.text(t).to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Boolean(b)) => b.to_string(),
        None => "-".to_owned(),
    }
}

/// Symbols as their texts, comma-separated.
fn texts(request: &Request, symbols: impl IntoIterator<Item = u32>) -> String {
    symbols.into_iter().map(|s| request.text(s)).collect::<Vec<_>>().join(",")
}

/// What the request says, candidate by candidate (see `echo` in the module's comment).
fn echo(request: &Request) -> Verdicts {
    let c = &request.conversation;
    let name = |s: Option<u32>| s.map_or("-", |s| request.text(s));
    let mut head = format!(
        "{:?} at {}: {} {} in {} priority {} units {} intent {}/{}/{} held by {} skills [{}] attributes [{}] | ",
        request.action,
        request.now_ms,
        request.text(c.id),
        request.text(c.entity),
        request.text(c.queue),
        c.priority,
        c.capacity_units,
        name(c.intent_family),
        name(c.intent_group),
        name(c.intent),
        name(c.representative),
        c.skills().map(|(s, l)| format!("{}:{l}", request.text(s))).collect::<Vec<_>>().join(","),
        c.attributes()
            .map(|(k, v)| format!("{}={}", request.text(k), value(request, Some(v))))
            .collect::<Vec<_>>()
            .join(","),
    );
    let mut out = VerdictsBuilder::new(request.count as usize);
    for k in 0..request.count as usize {
        let mut line = std::mem::take(&mut head);
        let id = request.candidate_id(k).unwrap_or("-");
        match &request.candidates {
            Candidates::Representatives(reps) => {
                let _ = write!(
                    line,
                    "{id}: {:?} capacity {}/{} idle {} skills [{}] queues [{}] groups [{}] attributes [{}]",
                    reps.presence_of(k),
                    reps.capacity.and_then(|c| c.get(k).copied()).unwrap_or(0),
                    reps.free_capacity_of(k).unwrap_or(0),
                    reps.idle_minutes.and_then(|m| m.get(k).copied()).unwrap_or(-1.0),
                    reps.skills_of(k).map(|(s, l)| format!("{}:{l}", request.text(s))).collect::<Vec<_>>().join(","),
                    texts(request, reps.queues_of(k).iter().copied()),
                    texts(request, reps.user_groups_of(k).iter().copied()),
                    reps.attributes_of(k)
                        .map(|(key, v)| format!("{}={}", request.text(key), value(request, Some(v))))
                        .collect::<Vec<_>>()
                        .join(","),
                );
            }
            Candidates::Queues(q) => {
                let _ = write!(
                    line,
                    "{id}: queue {} named {} priority {} intent-based {}",
                    q.ids.get(k).map_or("-", |&s| request.text(s)),
                    q.names.get(k).map_or("-", |&s| request.text(s)),
                    q.priorities.get(k).copied().unwrap_or(0),
                    q.intent_based.get(k).copied().unwrap_or(9),
                );
            }
        }
        out.exclude(k, &line);
    }
    out.finish()
}

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
        if MODES[mode] == "slow-init" {
            let mut n: u64 = 0;
            for i in 0..2_000_000u64 {
                n = std::hint::black_box(n.wrapping_add(i));
            }
        }
        // `all` asks for every candidate field (the bench's measure of a full request).
        Ok(if MODES[mode] == "all" || MODES[mode] == "echo" { Needs::from_bits_retain(0xff) } else { Needs::empty() })
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
                let clock =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let env = std::env::vars().count();
                let args = std::env::args().count();
                let fs = if std::fs::read_dir("/").is_ok() { "readable" } else { "denied" };
                let net = if std::net::TcpStream::connect("127.0.0.1:1").is_ok() { "open" } else { "denied" };
                exclude_all(&request, &format!("clock {clock}, env {env}, args {args}, fs {fs}, net {net}"))
            }
            9 => flood(100_000, true),
            10 => flood(400_000, false),
            11 => Verdicts { scores: vec![1.0; (10 << 20) / 8], ..Verdicts::all_eligible() },
            12 => Verdicts {
                excluded: vec![0],
                reason_of: vec![0],
                reasons: vec!["x".repeat(10 << 20)],
                scores: Vec::new(),
            },
            13 if CALLS.fetch_add(1, Ordering::Relaxed) < 3 => {
                Verdicts { scores: vec![1.0; request.count as usize + 1], ..Verdicts::all_eligible() }
            }
            15 => echo(&request),
            _ => Verdicts::all_eligible(),
        }
    }
}

switchboard_matcher::export!(Hostile);

//! A matcher that is slow on purpose, for `switchboard bench`
//! (`benches/scenarios/slow-matcher`): every call runs `spin` rounds of a
//! multiply-add chain the optimiser cannot remove, then lets every candidate
//! through, the order unchanged. Guests see a frozen clock, so the cost is set in
//! work, not time: docs/performance.md gives the calibration (about 4 ms per call
//! with `{"spin": 3900000}` on the reference machine).

use std::sync::atomic::{AtomicU64, Ordering};

use switchboard_matcher::{Guest, Needs, Request, Verdicts};

static SPIN: AtomicU64 = AtomicU64::new(0);

struct Slow;

impl Guest for Slow {
    fn init(config: String) -> Result<Needs, String> {
        // `{"spin": N}`: the only field, so no JSON parser is needed.
        let spin = config
            .split("\"spin\"")
            .nth(1)
            .map(|rest| rest.trim_start_matches([' ', ':']))
            .map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next().unwrap_or(""))
            .and_then(|digits| digits.parse::<u64>().ok())
            .ok_or_else(|| format!("config must be {{\"spin\": N}} with N a whole number of rounds, not {config}"))?;
        SPIN.store(spin, Ordering::Relaxed);
        Ok(Needs::empty())
    }

    fn evaluate(request: Request) -> Verdicts {
        let mut x = request.count as u64 | 1;
        for _ in 0..SPIN.load(Ordering::Relaxed) {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407));
        }
        // Depends on every round, so none of them can be skipped; never true in practice.
        if x == 0 {
            return Verdicts { scores: vec![0.0; request.count as usize], ..Verdicts::all_eligible() };
        }
        Verdicts::all_eligible()
    }
}

switchboard_matcher::export!(Slow);

//! Generated inputs for the rule-file compiler and the config parser, in every
//! `cargo test`: the seeds `cargo fuzz` starts from (the example rules, the invalid rule
//! fixtures, the config seeds), mutated the way a fuzzer does (bytes flipped, ranges cut
//! or repeated, TOML tokens inserted, files spliced), each result checked by the same
//! invariants as the fuzz targets (`fuzz/invariants.rs`): a rule set or errors located
//! inside the files, never a panic.
//!
//! Deterministic: a fixed seed, so a failure repeats; the failing input is printed.
//! `SWITCHBOARD_GENERATED_CASES` sets the number of inputs per target (default 20,000).
//! The coverage-guided fuzzer itself is `.ci/fuzz` (its instrumented build is too long
//! for every CI run).

use std::path::Path;

#[path = "../fuzz/invariants.rs"]
mod invariants;

/// Pieces of the rule and config formats, so mutations reach past the TOML parser.
#[rustfmt::skip]
const TOKENS: &[&str] = &[
    "[[rule]]\n", "[rule.when]\n", "[rule.require]\n", "[rule.rank]\n", "[rule.plugin]\n", "[[tokens]]\n",
    "[server_limits]\n", "id = ", "when.", "require.", "attributes", "priority", "entity", "action", "queue",
    "presence", "skills", "one_of", "gte", "lte", " = ", "\"", "'", "[", "]", "{", "}", ",", "=", ".", "\n", "#",
    "[]", "{}", "0", "-1", "11", "5.5", "1e308", "18446744073709551616", "true", "\"\"", "\"available\"",
    "\"assign\"", "\"\\u0000\"", "é", "🙂", "\r\n", "\t", "listen", "database", "rules_dir", "plugins_dir",
    "role", "sha256", "\"sqlite://x.db\"", "\"postgres://u@h:1/d\"", "\"127.0.0.1:0\"",
];

const DEFAULT_CASES: usize = 20_000;

/// xorshift64*: small, fast and enough to spread mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

fn cases() -> usize {
    std::env::var("SWITCHBOARD_GENERATED_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_CASES)
}

fn seeds(dirs: &[&str]) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seeds = Vec::new();
    for dir in dirs {
        let entries = std::fs::read_dir(root.join(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
        paths.sort();
        for path in paths {
            if path.extension().is_some_and(|x| x == "toml") {
                seeds.push(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
            }
        }
    }
    assert!(!seeds.is_empty(), "no seed files in {dirs:?}");
    seeds
}

/// One to four mutations of a seed (sometimes spliced with another, or joined to one by
/// a NUL byte: the rule target reads that as a second file).
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(7) {
            0 if len > 0 => {
                let at = rng.below(len);
                data[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(32)).min(len);
                data.drain(at..end);
            }
            2 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(64)).min(len);
                let copy = data[at..end].to_vec();
                let to = rng.below(data.len() + 1);
                data.splice(to..to, copy);
            }
            3 => {
                let to = rng.below(len + 1);
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                data.splice(to..to, token.iter().copied());
            }
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let (cut, from) = (rng.below(len + 1), rng.below(other.len() + 1));
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            5 => {
                data.push(0);
                data.extend_from_slice(&seeds[rng.below(seeds.len())]);
            }
            _ => data.truncate(rng.below(len + 1)),
        }
    }
    data
}

/// Runs `check` on the seeds themselves and then on `cases()` mutations; a panic names
/// the case and prints the input.
fn run(name: &str, seed: u64, seeds: &[Vec<u8>], check: fn(&str)) {
    let mut rng = Rng(seed);
    let inputs = seeds.iter().cloned().chain(std::iter::repeat_with(|| mutate(&mut rng, seeds)).take(cases()));
    let mut checked = 0usize;
    for (case, input) in inputs.enumerate() {
        // The daemon reads rule files and configs as UTF-8; other bytes never get here.
        let Ok(text) = String::from_utf8(input) else { continue };
        let outcome = std::panic::catch_unwind(|| check(&text));
        assert!(outcome.is_ok(), "{name}: case {case} broke an invariant (see the panic above); the input:\n{text:?}");
        checked += 1;
    }
    assert!(checked >= cases() / 2, "{name}: only {checked} inputs were UTF-8; the mutations need looking at");
}

#[test]
fn the_rule_compiler_locates_every_error_of_generated_rule_files() {
    let seeds = seeds(&["rules", "tests/fixtures/rules/invalid"]);
    run("rules", 0x5eed_0001, &seeds, invariants::check_rules);
}

#[test]
fn the_config_parser_locates_every_error_of_generated_configs() {
    let seeds = seeds(&["fuzz/seeds/config"]);
    run("config", 0x5eed_0002, &seeds, invariants::check_config);
}

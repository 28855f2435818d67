//! The rule-file loader and compiler on arbitrary text: every input is either a rule
//! set or a list of errors, each located inside one of the files. Never a panic.
//! An input is up to four files separated by NUL bytes (`invariants::rule_files`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, reason = "each target uses one of the checks")]
mod invariants {
    include!("../invariants.rs");
}

fuzz_target!(|data: &[u8]| {
    // Rule files are read as UTF-8 (`read_to_string`): other bytes never get here.
    if let Ok(text) = std::str::from_utf8(data) {
        invariants::check_rules(text);
    }
});

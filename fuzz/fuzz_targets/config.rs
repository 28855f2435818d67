//! The daemon's config parser on arbitrary text: a config or one located error, never
//! a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, reason = "each target uses one of the checks")]
mod invariants {
    include!("../invariants.rs");
}

fuzz_target!(|data: &[u8]| {
    // Config files are read as UTF-8 (`read_to_string`): other bytes never get here.
    if let Ok(text) = std::str::from_utf8(data) {
        invariants::check_config(text);
    }
});

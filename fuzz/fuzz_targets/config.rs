//! The daemon's config parser on arbitrary text: a config or one located error, never
//! a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use switchboard::config::Config;

fuzz_target!(|data: &[u8]| {
    // Config files are read as UTF-8 (`read_to_string`): other bytes never get here.
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::parse(text, "fuzz.toml", Path::new("/etc/switchboard")) {
        Ok(config) => {
            assert!(config.server_limits.problems().is_empty(), "accepted unusable limits: {:?}", config.server_limits);
        }
        Err(e) => {
            let message = e.to_string();
            let lines = text.split('\n').count();
            let located = message
                .strip_prefix("fuzz.toml:")
                .and_then(|rest| rest.split_once(':'))
                .and_then(|(line, _)| line.parse::<usize>().ok());
            let Some(line) = located else { panic!("an error without a location: {message}") };
            assert!(line >= 1 && line <= lines, "line {line} out of the file ({lines} lines): {message}");
        }
    }
});

//! The rule-file loader and compiler on arbitrary text: every input is either a rule
//! set or a list of errors, each located inside one of the files. Never a panic.
//!
//! An input is up to four files separated by NUL bytes, so cross-file checks
//! (duplicate ids, a syntax error in one file beside semantic errors in another) are
//! reached as well as single files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::routing::Policy;
use switchboard::rules::{Source, compile};

fuzz_target!(|data: &[u8]| {
    // Rule files are read as UTF-8 (`read_to_string`): other bytes never get here.
    let Ok(text) = std::str::from_utf8(data) else { return };
    let sources: Vec<Source> = text
        .split('\0')
        .take(4)
        .enumerate()
        .map(|(i, text)| Source { name: format!("rules/{i}.toml"), text: text.to_owned() })
        .collect();
    match compile(&sources) {
        Ok(rules) => {
            assert!(!rules.version().is_empty());
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "an error result with no error");
            for e in &errors {
                let Some(file) = sources.iter().find(|s| s.name == e.file) else {
                    panic!("error in a file that is not in the set: {e}");
                };
                let lines = file.text.split('\n').count();
                assert!(e.line >= 1 && e.line <= lines, "line out of the file ({lines} lines): {e}");
                assert!(e.column >= 1, "column 0: {e}");
                assert!(!e.message.trim().is_empty(), "an empty message: {e}");
            }
        }
    }
});

// What must hold for any input to the rule-file compiler and to the config parser.
// Shared by the `cargo fuzz` targets (fuzz/fuzz_targets/*.rs, by `include!`) and by the
// generated-input tests that `cargo test` runs (tests/generated_inputs.rs, as a module),
// so the coverage-guided fuzzer and CI check the same things.

use std::path::Path;

use switchboard::config::Config;
use switchboard::routing::Policy;
use switchboard::rules::{Source, compile};

/// Splits an input into up to four rule files at NUL bytes, so cross-file checks
/// (duplicate ids, a syntax error in one file beside semantic errors in another) are
/// reached as well as single files.
pub fn rule_files(text: &str) -> Vec<Source> {
    text.split('\0')
        .take(4)
        .enumerate()
        .map(|(i, text)| Source { name: format!("rules/{i}.toml"), text: text.to_owned() })
        .collect()
}

/// The rule-file loader and compiler: a rule set, or a non-empty list of errors each
/// located inside one of the files, with a message. Never a panic.
pub fn check_rules(text: &str) {
    let sources = rule_files(text);
    match compile(&sources) {
        Ok(rules) => assert!(!rules.version().is_empty(), "a rule set without a version"),
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
}

/// The config parser: a usable config, or one error located inside the file. Never a
/// panic.
pub fn check_config(text: &str) {
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
}

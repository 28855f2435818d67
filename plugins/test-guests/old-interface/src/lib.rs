//! Exports `switchboard:matcher/matcher@0.0.9`, which the host must refuse clearly.

wit_bindgen::generate!({ world: "plugin", path: "wit" });

use exports::switchboard::matcher::matcher::Guest;

struct Old;

impl Guest for Old {
    fn evaluate(candidates: Vec<u32>) -> Vec<bool> {
        candidates.iter().map(|_| true).collect()
    }
}

export!(Old);

//! Language match: when the conversation has a `language` attribute (e.g. `"spanish"`),
//! a representative must have that language as a skill at `min_level` or above; the
//! score adds `weight × proficiency`.
//!
//! ```toml
//! [rule.plugin]
//! name = "language-match"
//! config = { attribute = "language", min_level = 6, weight = 0.5 }
//! ```

use std::sync::OnceLock;

use serde::Deserialize;

wit_bindgen::generate!({ world: "plugin", path: "../wit" });

use exports::switchboard::matcher::matcher::Guest;
use switchboard::matcher::types::{Candidates, Request, Span, Value, Verdict};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_attribute")]
    attribute: String,
    #[serde(default = "default_min_level")]
    min_level: u8,
    #[serde(default = "default_weight")]
    weight: f64,
}

fn default_attribute() -> String {
    "language".into()
}

fn default_min_level() -> u8 {
    5
}

fn default_weight() -> f64 {
    0.5
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// The symbol of `name` in this request, if the request mentions it.
fn symbol(request: &Request, name: &str) -> Option<u32> {
    let mut start = 0;
    for (i, &end) in request.symbol_ends.iter().enumerate() {
        if request.symbol_text.get(start as usize..end as usize) == Some(name) {
            return Some(i as u32);
        }
        start = end;
    }
    None
}

/// The items of a shared list that a span points at.
fn slice<T>(list: &[T], span: Span) -> &[T] {
    list.get(span.start as usize..(span.start + span.len) as usize).unwrap_or(&[])
}

struct LanguageMatch;

impl Guest for LanguageMatch {
    fn init(config: String) -> Result<(), String> {
        let config: Config = serde_json::from_str(&config).map_err(|e| format!("invalid config: {e}"))?;
        if config.min_level > 10 {
            return Err(format!("min_level {} is above 10", config.min_level));
        }
        CONFIG.set(config).map_err(|_| "init was called twice".to_string())
    }

    fn evaluate(request: Request) -> Vec<Verdict> {
        let Some(config) = CONFIG.get() else {
            return Vec::new();
        };
        let key = symbol(&request, &config.attribute);
        let language = slice(&request.attributes, request.conversation.attributes).iter().find_map(|a| match a.value {
            Value::Text(t) if Some(a.key) == key => Some(t),
            _ => None,
        });
        match &request.candidates {
            Candidates::Representatives(reps) => reps
                .iter()
                .map(|rep| {
                    let Some(language) = language else {
                        return Verdict { eligible: true, score: 0.0, reason: None };
                    };
                    let level =
                        slice(&request.skills, rep.skills).iter().find(|s| s.skill == language).map_or(0, |s| s.level);
                    if level >= config.min_level {
                        Verdict { eligible: true, score: config.weight * f64::from(level), reason: None }
                    } else {
                        let start = if language == 0 { 0 } else { request.symbol_ends[language as usize - 1] };
                        let name =
                            &request.symbol_text[start as usize..request.symbol_ends[language as usize] as usize];
                        Verdict {
                            eligible: false,
                            score: 0.0,
                            reason: Some(format!("speaks `{name}` at {level}, below {}", config.min_level)),
                        }
                    }
                })
                .collect(),
            Candidates::Queues(queues) => {
                queues.iter().map(|_| Verdict { eligible: true, score: 0.0, reason: None }).collect()
            }
        }
    }
}

export!(LanguageMatch);

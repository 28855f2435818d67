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
use switchboard_matcher::{Candidates, Guest, Needs, Request, Value, Verdicts, VerdictsBuilder};

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

struct LanguageMatch;

impl Guest for LanguageMatch {
    fn init(config: String) -> Result<Needs, String> {
        let config: Config = serde_json::from_str(&config).map_err(|e| format!("invalid config: {e}"))?;
        if config.min_level > 10 {
            return Err(format!("min_level {} is above 10", config.min_level));
        }
        CONFIG.set(config).map_err(|_| "init was called twice".to_string())?;
        Ok(Needs::SKILLS)
    }

    fn evaluate(request: Request) -> Verdicts {
        let (Some(config), Candidates::Representatives(reps)) = (CONFIG.get(), &request.candidates) else {
            return Verdicts::all_eligible();
        };
        let language = request.symbol(&config.attribute).and_then(|key| match request.conversation_attribute(key) {
            Some(Value::Text(t)) => Some(t),
            _ => None,
        });
        let Some(language) = language else {
            return Verdicts::all_eligible();
        };
        let name = request.text(language);
        let mut out = VerdictsBuilder::new(request.count as usize);
        for k in 0..request.count as usize {
            let level = reps.skill_level(k, language).unwrap_or(0);
            if level >= config.min_level {
                out.add_score(k, config.weight * f64::from(level));
            } else {
                out.exclude(k, &format!("speaks `{name}` at {level}, below {}", config.min_level));
            }
        }
        out.finish()
    }
}

switchboard_matcher::export!(LanguageMatch);

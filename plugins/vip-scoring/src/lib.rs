//! VIP scoring: conversations whose customer tier attribute is one of `tiers` favour
//! representatives in one of `groups` by `boost` points; with `require = true`, the
//! others are excluded.
//!
//! ```toml
//! [rule.plugin]
//! name = "vip-scoring"
//! config = { attribute = "customer_tier", tiers = ["gold", "platinum"], groups = ["tier-2"], boost = 5.0 }
//! ```

use std::sync::OnceLock;

use serde::Deserialize;

wit_bindgen::generate!({ world: "plugin", path: "../wit" });

use exports::switchboard::matcher::matcher::Guest;
use switchboard::matcher::types::{Candidates, Request, Value, Verdict};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_attribute")]
    attribute: String,
    tiers: Vec<String>,
    groups: Vec<String>,
    #[serde(default = "default_boost")]
    boost: f64,
    #[serde(default)]
    require: bool,
}

fn default_attribute() -> String {
    "customer_tier".into()
}

fn default_boost() -> f64 {
    5.0
}

static CONFIG: OnceLock<Config> = OnceLock::new();

struct VipScoring;

impl Guest for VipScoring {
    fn init(config: String) -> Result<(), String> {
        let config: Config = serde_json::from_str(&config).map_err(|e| format!("invalid config: {e}"))?;
        CONFIG.set(config).map_err(|_| "init was called twice".to_string())
    }

    fn evaluate(request: Request) -> Vec<Verdict> {
        let Some(config) = CONFIG.get() else {
            return Vec::new();
        };
        // Resolve the configured names to this request's symbols once.
        let symbol = |name: &str| request.symbols.iter().position(|s| s == name).map(|i| i as u32);
        let attribute = symbol(&config.attribute);
        let tiers: Vec<u32> = config.tiers.iter().filter_map(|t| symbol(t)).collect();
        let groups: Vec<u32> = config.groups.iter().filter_map(|g| symbol(g)).collect();
        let vip = request
            .conversation
            .attributes
            .iter()
            .any(|a| Some(a.key) == attribute && matches!(a.value, Value::Text(t) if tiers.contains(&t)));
        match &request.candidates {
            Candidates::Representatives(reps) => reps
                .iter()
                .map(|rep| {
                    let in_group = rep.user_groups.iter().any(|g| groups.contains(g));
                    match (vip, in_group) {
                        (false, _) => Verdict { eligible: true, score: 0.0, reason: None },
                        (true, true) => Verdict { eligible: true, score: config.boost, reason: None },
                        (true, false) if config.require => Verdict {
                            eligible: false,
                            score: 0.0,
                            reason: Some(format!("VIP customers need one of the groups {}", config.groups.join(", "))),
                        },
                        (true, false) => Verdict { eligible: true, score: 0.0, reason: None },
                    }
                })
                .collect(),
            Candidates::Queues(queues) => {
                queues.iter().map(|_| Verdict { eligible: true, score: 0.0, reason: None }).collect()
            }
        }
    }
}

export!(VipScoring);

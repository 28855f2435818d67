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
use switchboard::matcher::types::{Candidates, Request, Span, Value, Verdict};

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
        let attribute = symbol(&request, &config.attribute);
        let tiers: Vec<u32> = config.tiers.iter().filter_map(|t| symbol(&request, t)).collect();
        let groups: Vec<u32> = config.groups.iter().filter_map(|g| symbol(&request, g)).collect();
        let vip = slice(&request.attributes, request.conversation.attributes)
            .iter()
            .any(|a| Some(a.key) == attribute && matches!(a.value, Value::Text(t) if tiers.contains(&t)));
        match &request.candidates {
            Candidates::Representatives(reps) => reps
                .iter()
                .map(|rep| {
                    let in_group = slice(&request.names, rep.user_groups).iter().any(|g| groups.contains(g));
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

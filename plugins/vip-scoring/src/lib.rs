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
use switchboard_matcher::{Candidates, Guest, Needs, Request, Value, Verdicts, VerdictsBuilder};

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
    fn init(config: String) -> Result<Needs, String> {
        let config: Config = serde_json::from_str(&config).map_err(|e| format!("invalid config: {e}"))?;
        CONFIG.set(config).map_err(|_| "init was called twice".to_string())?;
        Ok(Needs::USER_GROUPS)
    }

    fn evaluate(request: Request) -> Verdicts {
        let (Some(config), Candidates::Representatives(reps)) = (CONFIG.get(), &request.candidates) else {
            return Verdicts::all_eligible();
        };
        // Resolve the configured names to this request's symbols once.
        let tiers: Vec<u32> = config.tiers.iter().filter_map(|t| request.symbol(t)).collect();
        let vip = request
            .symbol(&config.attribute)
            .and_then(|key| request.conversation_attribute(key))
            .is_some_and(|v| matches!(v, Value::Text(t) if tiers.contains(&t)));
        if !vip {
            return Verdicts::all_eligible();
        }
        let groups: Vec<u32> = config.groups.iter().filter_map(|g| request.symbol(g)).collect();
        // The reason is written only when it can be given.
        let reason =
            config.require.then(|| format!("VIP customers need one of the groups {}", config.groups.join(", ")));
        let mut out = VerdictsBuilder::new(request.count as usize);
        for k in 0..request.count as usize {
            if reps.user_groups_of(k).iter().any(|g| groups.contains(g)) {
                out.add_score(k, config.boost);
            } else if let Some(reason) = &reason {
                out.exclude(k, reason);
            }
        }
        out.finish()
    }
}

switchboard_matcher::export!(VipScoring);

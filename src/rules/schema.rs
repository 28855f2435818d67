//! The rule file format, as serde types. One file holds any number of `[[rule]]`
//! tables. `docs/rules.md` is the reference; `rules/schema.json` is generated from
//! these types (`switchboard schema`) for editors.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::domain::{Presence, RoutingAction};

/// A rule file: `[[rule]]` tables.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Switchboard routing rules")]
pub struct RuleFile {
    /// The rules of this file. Every rule that applies to a request must be satisfied.
    #[serde(default)]
    #[schemars(with = "Vec<RuleDef>")]
    pub rule: Vec<Spanned<RuleDef>>,
}

/// The kind of target a rule constrains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetKindDef {
    Representative,
    Queue,
}

/// One rule: where it applies, what a target must meet, how targets rank.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    /// Unique across all files; named in explanations and `422` reasons.
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// What the rule is for, in a sentence.
    #[serde(default)]
    pub description: Option<String>,
    /// The kind of target this rule constrains and ranks.
    #[schemars(with = "TargetKindDef")]
    pub target: Spanned<TargetKindDef>,
    /// Where the rule applies; absent keys match every conversation.
    #[serde(default)]
    pub when: When,
    /// What a target must meet. Keys must fit `target`.
    #[serde(default)]
    pub require: Require,
    /// How eligible targets score: the sum of weight × value over the keys.
    #[serde(default)]
    #[schemars(with = "Vec<RankDef>")]
    pub rank: Vec<Spanned<RankDef>>,
    /// A WASM matcher plugin consulted for the targets the requirements let through.
    #[serde(default)]
    #[schemars(with = "Option<PluginRefDef>")]
    pub plugin: Option<Spanned<PluginRefDef>>,
}

/// A rule's use of a matcher plugin.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginRefDef {
    /// The plugin's name: its file name in `plugins_dir` without `.wasm`.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Passed to the plugin's `init`, as JSON.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    pub config: Option<toml::Table>,
    /// `fail_closed` (default: the plugin's candidates are excluded when it fails) or
    /// `fail_open` (the plugin is skipped when it fails).
    #[serde(default)]
    pub on_failure: Option<crate::plugins::FailurePolicy>,
    /// This rule's call budget for the plugin (`fuel`, `fuel_per_candidate`,
    /// `deadline_ms`), each figure replacing `[plugin_limits]`'s for these calls only.
    #[serde(default)]
    #[schemars(with = "Option<crate::plugins::CallBudget>")]
    pub limits: Option<Spanned<crate::plugins::CallBudget>>,
}

/// A number range; either bound may be left out.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub min: Option<u32>,
    pub max: Option<u32>,
}

/// An intent pattern; the keys given must all match.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntentPattern {
    pub family: Option<String>,
    pub group: Option<String>,
    pub intent: Option<String>,
}

/// A scalar in a rule: string, number or boolean.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Number(f64),
    String(String),
}

/// A condition on one attribute; every key given must hold.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub equals: Option<Scalar>,
    #[schemars(with = "Option<Vec<Scalar>>")]
    pub one_of: Option<Spanned<Vec<Scalar>>>,
    /// `true`: the attribute is set; `false`: it is not.
    pub exists: Option<bool>,
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
}

/// Where a rule applies: every key given must match the request and conversation.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// `assign`, `transfer` or both (default both).
    #[schemars(with = "Option<Vec<RoutingAction>>")]
    pub action: Option<Spanned<Vec<RoutingAction>>>,
    /// Record entities, e.g. `["case", "email"]`.
    #[schemars(with = "Option<Vec<String>>")]
    pub entity: Option<Spanned<Vec<String>>>,
    /// The conversation's queue is one of these.
    #[schemars(with = "Option<Vec<String>>")]
    pub queue: Option<Spanned<Vec<String>>>,
    /// The conversation's priority is within this range.
    #[schemars(with = "Option<Range>")]
    pub priority: Option<Spanned<Range>>,
    /// The conversation's intent matches this pattern.
    pub intent: Option<IntentPattern>,
    /// The conversation is (or is not) intent-based.
    pub intent_based: Option<bool>,
    /// Conditions on the conversation's attributes.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, Condition>")]
    pub attributes: BTreeMap<String, Spanned<Condition>>,
    /// Whole minutes since the conversation entered its queue (created, released or moved
    /// to a queue) are within this range, e.g. `{ min = 5 }`: relax or redirect as it waits.
    #[schemars(with = "Option<Range>")]
    pub waiting_minutes: Option<Spanned<Range>>,
    /// The request falls within these opening hours (its clock, in `zone`).
    #[schemars(with = "Option<Hours>")]
    pub hours: Option<Spanned<Hours>>,
}

/// Opening hours: on `days`, from `from` until `to` (local time in `zone`). A window
/// whose `to` is not after `from` runs past midnight into the next day.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hours {
    /// An IANA time zone, e.g. `Europe/Lisbon`.
    #[schemars(with = "String")]
    pub zone: Spanned<String>,
    /// The days the window starts on (default every day).
    #[schemars(with = "Option<Vec<Weekday>>")]
    pub days: Option<Spanned<Vec<Weekday>>>,
    /// `HH:MM`, 24-hour, local time.
    #[schemars(with = "String")]
    pub from: Spanned<String>,
    /// `HH:MM`, 24-hour, local time (`24:00` is the end of the day).
    #[schemars(with = "String")]
    pub to: Spanned<String>,
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// The depth to which a representative must handle the conversation's intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IntentLevel {
    Family,
    Group,
    Intent,
}

/// What a target must meet. Representative keys and queue keys; a rule uses the kind
/// its `target` names.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Require {
    // --- representatives ---
    /// Presence is one of these.
    #[schemars(with = "Option<Vec<Presence>>")]
    pub presence: Option<Spanned<Vec<Presence>>>,
    /// Has every skill the conversation requires, at its proficiency or above.
    #[schemars(with = "Option<bool>")]
    pub conversation_skills: Option<Spanned<bool>>,
    /// Has each named skill at this proficiency or above.
    #[schemars(with = "Option<BTreeMap<String, u8>>")]
    pub skills: Option<Spanned<BTreeMap<String, Spanned<u8>>>>,
    /// Free capacity covers the conversation's capacity units.
    #[schemars(with = "Option<bool>")]
    pub capacity_for_conversation: Option<Spanned<bool>>,
    /// Free capacity is at least this many units.
    #[schemars(with = "Option<i64>")]
    pub min_free_capacity: Option<Spanned<i64>>,
    /// Belongs to at least one of these user groups.
    #[schemars(with = "Option<Vec<String>>")]
    pub user_groups_any: Option<Spanned<Vec<String>>>,
    /// Belongs to every one of these user groups.
    #[schemars(with = "Option<Vec<String>>")]
    pub user_groups_all: Option<Spanned<Vec<String>>>,
    /// Is a member of the conversation's queue.
    #[schemars(with = "Option<bool>")]
    pub member_of_conversation_queue: Option<Spanned<bool>>,
    /// Is a member of at least one of these queues.
    #[schemars(with = "Option<Vec<String>>")]
    pub member_of_any: Option<Spanned<Vec<String>>>,
    /// Handles the conversation's intent down to this level (family, group or intent).
    #[schemars(with = "Option<IntentLevel>")]
    pub handles_intent: Option<Spanned<IntentLevel>>,
    /// Conditions on the representative's attributes.
    #[schemars(with = "Option<BTreeMap<String, Condition>>")]
    pub attributes: Option<Spanned<BTreeMap<String, Spanned<Condition>>>>,

    // --- queues ---
    /// The queue is (or is not) intent-based.
    #[schemars(with = "Option<bool>")]
    pub intent_based: Option<Spanned<bool>>,
    /// The queue's priority is within this range.
    #[schemars(with = "Option<Range>")]
    pub priority: Option<Spanned<Range>>,
    /// The queue's id is one of these.
    #[schemars(with = "Option<Vec<String>>")]
    pub ids: Option<Spanned<Vec<String>>>,
    /// The queue's name is one of these (exact).
    #[schemars(with = "Option<Vec<String>>")]
    pub names: Option<Spanned<Vec<String>>>,
}

/// What a rank key measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RankBy {
    /// The representative's proficiency (0-10) in `skill`.
    Skill,
    /// How closely the representative's skills fit the conversation's: 0 when every
    /// required skill is met exactly, minus the sum of differences otherwise.
    SkillMatch,
    /// The representative's free capacity, in units.
    FreeCapacity,
    /// Minutes since the representative was last given a conversation.
    IdleTime,
    /// Minus the queue's priority (a lower number is served first).
    QueuePriority,
}

/// One ranking key.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RankDef {
    pub by: RankBy,
    /// The skill, with `by = "skill"`.
    pub skill: Option<String>,
    /// Multiplies the value (default 1).
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

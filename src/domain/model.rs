//! The records the daemon serves: conversations, representatives, queues.
//! Pure data and validation; no I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};

use super::Id;

/// Where a conversation is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Active,
    Waiting,
    WrapUp,
    Closed,
}

impl Status {
    pub const ALL: [Status; 5] = [Status::Open, Status::Active, Status::Waiting, Status::WrapUp, Status::Closed];

    /// The statuses the *Ongoing record conversations* view shows by default.
    pub const ONGOING: [Status; 4] = [Status::Open, Status::Active, Status::Waiting, Status::WrapUp];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Active => "active",
            Status::Waiting => "waiting",
            Status::WrapUp => "wrap_up",
            Status::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether a representative holding a conversation in this status spends capacity on it.
    pub fn holds_capacity(self) -> bool {
        matches!(self, Status::Active | Status::Waiting | Status::WrapUp)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A representative's presence.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Available,
    Busy,
    BusyDnd,
    Away,
    #[default]
    Offline,
}

impl Presence {
    pub const ALL: [Presence; 5] =
        [Presence::Available, Presence::Busy, Presence::BusyDnd, Presence::Away, Presence::Offline];

    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Available => "available",
            Presence::Busy => "busy",
            Presence::BusyDnd => "busy_dnd",
            Presence::Away => "away",
            Presence::Offline => "offline",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Why a conversation was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClosedReason {
    Removed,
    Resolved,
}

/// A skill proficiency, 0 to 10.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "u64", into = "u8")]
#[schema(value_type = u8)]
pub struct Proficiency(u8);

impl Proficiency {
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u64> for Proficiency {
    type Error = String;
    fn try_from(v: u64) -> Result<Self, String> {
        u8::try_from(v)
            .ok()
            .filter(|v| *v <= 10)
            .map(Proficiency)
            .ok_or_else(|| format!("skill proficiency {v} is out of range (expected an integer 0-10)"))
    }
}

impl From<Proficiency> for u8 {
    fn from(p: Proficiency) -> u8 {
        p.0
    }
}

/// A record entity name such as `case`, `email` or `activity`: `^[a-z][a-z0-9_]{0,63}$`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "case")]
pub struct Entity(String);

impl Entity {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = s.len() <= 64
            && s.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "invalid record entity `{s}` (expected a lowercase name such as `case`, `email` or `activity`)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Entity {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<Entity> for String {
    fn from(e: Entity) -> String {
        e.0
    }
}

/// Free text kept in history: at most 1000 characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String)]
pub struct Note(String);

impl Note {
    pub const MAX_CHARS: usize = 1000;
}

impl TryFrom<String> for Note {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let n = s.chars().count();
        if n > Self::MAX_CHARS {
            Err(format!("note is {n} characters long (at most 1000 are allowed)"))
        } else {
            Ok(Self(s))
        }
    }
}

impl From<Note> for String {
    fn from(n: Note) -> String {
        n.0
    }
}

/// A short display text (names, titles): 1 to 200 characters, not blank.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String)]
pub struct Name(String);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let n = s.chars().count();
        if s.trim().is_empty() {
            Err("a name must not be empty or blank".to_owned())
        } else if n > 200 {
            Err(format!("a name is {n} characters long (at most 200 are allowed)"))
        } else {
            Ok(Self(s))
        }
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

/// An attribute value: a string, a number or a boolean (never null, an array or an object).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AttributeValue {
    Bool(bool),
    Number(serde_json::Number),
    String(String),
}

impl<'de> Deserialize<'de> for AttributeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Bool(b) => Ok(Self::Bool(b)),
            serde_json::Value::Number(n) => Ok(Self::Number(n)),
            serde_json::Value::String(s) => Ok(Self::String(s)),
            other => Err(D::Error::custom(format!(
                "invalid attribute value `{other}` (expected a string, number or boolean)"
            ))),
        }
    }
}

pub type Skills = BTreeMap<Id, Proficiency>;
pub type Attributes = BTreeMap<Id, AttributeValue>;

/// An intent: `family` is required, `group` and `intent` narrow it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    #[schema(value_type = String)]
    pub family: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub group: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub intent: Option<Id>,
}

/// The record a conversation was rerouted from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub entity: Entity,
    #[schema(value_type = String)]
    pub id: Id,
    #[serde(default)]
    pub title: Option<Name>,
}

/// What a client sends to create or replace a representative.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RepresentativeInput {
    pub name: Name,
    #[serde(default)]
    pub presence: Presence,
    #[serde(default)]
    #[schema(format = Int64, maximum = 4294967295.0)]
    pub capacity: u32,
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, u8>)]
    pub skills: Skills,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub queues: Vec<Id>,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub user_groups: Vec<Id>,
    #[serde(default)]
    pub intents: Vec<Intent>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: Attributes,
}

/// A representative as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Representative {
    #[schema(value_type = String)]
    pub id: Id,
    /// Shared: the store keeps one decoded copy per representative version, so reading
    /// the directory for a request does not rebuild every name, skill and group.
    #[serde(flatten)]
    #[schema(value_type = RepresentativeInput)]
    pub input: Arc<RepresentativeInput>,
    /// Capacity units of the conversations this representative holds.
    pub used_capacity: i64,
    /// `capacity - used_capacity`; negative when over-assigned.
    pub free_capacity: i64,
    pub version: u64,
    pub updated_at: String,
    /// When a conversation last started counting against this representative's capacity
    /// (Unix milliseconds); ranks by idle time.
    #[serde(skip)]
    pub last_assigned_ms: Option<i64>,
    /// Counts every change of the stored row (document, capacity, last assignment): the
    /// routing state in memory keeps the record with the highest revision it was given.
    #[serde(skip)]
    pub revision: u64,
}

/// Idle time counts up to a day; a representative never given work counts as a day idle.
pub const MAX_IDLE_MINUTES: f64 = 1440.0;

/// Minutes from `last_assigned_ms` (when a representative was last given work; `None`:
/// never) to `now_ms`, capped at [`MAX_IDLE_MINUTES`].
pub fn idle_minutes(last_assigned_ms: Option<i64>, now_ms: i64) -> f64 {
    match last_assigned_ms {
        None => MAX_IDLE_MINUTES,
        Some(at) => ((now_ms - at).max(0) as f64 / 60_000.0).min(MAX_IDLE_MINUTES),
    }
}

impl Representative {
    pub fn new(id: Id, input: RepresentativeInput, used_capacity: i64, version: u64, updated_at: String) -> Self {
        Self::with_shared_input(id, Arc::new(input), used_capacity, version, updated_at)
    }

    /// As [`Representative::new`], with an input decoded once and shared.
    pub fn with_shared_input(
        id: Id,
        input: Arc<RepresentativeInput>,
        used_capacity: i64,
        version: u64,
        updated_at: String,
    ) -> Self {
        let free_capacity = i64::from(input.capacity) - used_capacity;
        Self { id, input, used_capacity, free_capacity, version, updated_at, last_assigned_ms: None, revision: 0 }
    }
}

/// What a client sends to create or replace a queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueInput {
    pub name: Name,
    /// Lower is served first.
    #[serde(default)]
    #[schema(format = Int64, maximum = 4294967295.0)]
    pub priority: u32,
    #[serde(default)]
    pub intent_based: bool,
}

/// A queue as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Queue {
    #[schema(value_type = String)]
    pub id: Id,
    #[serde(flatten)]
    pub input: QueueInput,
    pub version: u64,
    pub updated_at: String,
}

/// What an integration sends to create a conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConversationInput {
    /// Generated when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub id: Option<Id>,
    pub record: Record,
    #[schema(value_type = String)]
    pub queue: Id,
    #[serde(default)]
    #[schema(format = Int64, maximum = 4294967295.0)]
    pub priority: u32,
    #[serde(default = "one")]
    #[schema(format = Int64, maximum = 4294967295.0)]
    pub capacity_units: u32,
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, u8>)]
    pub skills: Skills,
    #[serde(default)]
    pub intent: Option<Intent>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: Attributes,
}

fn one() -> u32 {
    1
}

/// A conversation as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Conversation {
    #[schema(value_type = String)]
    pub id: Id,
    pub record: Record,
    #[schema(value_type = String)]
    pub queue: Id,
    #[schema(format = Int64, maximum = 4294967295.0)]
    pub priority: u32,
    #[schema(format = Int64, maximum = 4294967295.0)]
    pub capacity_units: u32,
    #[schema(value_type = BTreeMap<String, u8>)]
    pub skills: Skills,
    pub intent: Option<Intent>,
    #[schema(value_type = Object)]
    pub attributes: Attributes,
    pub status: Status,
    #[schema(value_type = Option<String>)]
    pub representative: Option<Id>,
    pub intent_based: bool,
    pub closed_reason: Option<ClosedReason>,
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
    /// When it last entered its queue as `open`: created, released, or moved to a queue
    /// (routing rules count waiting minutes from it). Records written before this field
    /// existed have none; their `created_at` stands in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<String>,
}

impl Conversation {
    /// A new conversation, `open` in its queue at version 1.
    pub fn create(id: Id, input: ConversationInput, now: String) -> Self {
        Self {
            id,
            record: input.record,
            queue: input.queue,
            priority: input.priority,
            capacity_units: input.capacity_units,
            skills: input.skills,
            intent_based: input.intent.is_some(),
            intent: input.intent,
            attributes: input.attributes,
            status: Status::Open,
            representative: None,
            closed_reason: None,
            version: 1,
            created_at: now.clone(),
            updated_at: now.clone(),
            queued_at: Some(now),
        }
    }

    /// Whole minutes it has waited in its queue at `now_ms` (Unix milliseconds).
    pub fn waiting_minutes(&self, now_ms: i64) -> u32 {
        let since = crate::clock::parse_ms(self.queued_at.as_deref().unwrap_or(&self.created_at));
        since.map_or(0, |at| u32::try_from((now_ms - at).max(0) / 60_000).unwrap_or(u32::MAX))
    }

    /// The representative whose capacity this conversation spends, if any.
    pub fn capacity_holder(&self) -> Option<&Id> {
        self.representative.as_ref().filter(|_| self.status.holds_capacity())
    }

    pub fn placement(&self) -> Placement {
        Placement { status: self.status, queue: self.queue.clone(), representative: self.representative.clone() }
    }
}

/// Where a conversation stands: what history records before and after each change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Placement {
    pub status: Status,
    #[schema(value_type = String)]
    pub queue: Id,
    #[schema(value_type = Option<String>)]
    pub representative: Option<Id>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proficiency_is_an_integer_from_0_to_10() {
        assert!(serde_json::from_str::<Proficiency>("10").is_ok());
        assert!(serde_json::from_str::<Proficiency>("11").is_err());
        assert!(serde_json::from_str::<Proficiency>("5.0").is_err());
        assert!(serde_json::from_str::<Proficiency>("true").is_err());
        assert!(serde_json::from_str::<Proficiency>("-1").is_err());
    }

    #[test]
    fn attribute_values_are_scalars() {
        assert!(serde_json::from_str::<AttributeValue>("\"gold\"").is_ok());
        assert!(serde_json::from_str::<AttributeValue>("2.5").is_ok());
        assert!(serde_json::from_str::<AttributeValue>("false").is_ok());
        for bad in ["null", "[1]", "{}"] {
            let err = serde_json::from_str::<AttributeValue>(bad).unwrap_err();
            assert!(err.to_string().contains("expected a string, number or boolean"), "{err}");
        }
    }

    #[test]
    fn representative_defaults_follow_the_contract() {
        let rep: RepresentativeInput = serde_json::from_str(r#"{"name":"Ann"}"#).unwrap();
        assert_eq!(rep.presence, Presence::Offline);
        assert_eq!(rep.capacity, 0);
        assert!(rep.skills.is_empty() && rep.queues.is_empty() && rep.intents.is_empty());
    }

    #[test]
    fn free_capacity_goes_negative_when_over_assigned() {
        let input: RepresentativeInput = serde_json::from_str(r#"{"name":"Ann","capacity":1}"#).unwrap();
        let rep = Representative::new(Id::parse("ann").unwrap(), input, 3, 1, String::new());
        assert_eq!(rep.free_capacity, -2);
    }

    #[test]
    fn entity_is_a_lowercase_name() {
        assert!(Entity::parse("case").is_ok());
        assert!(Entity::parse("Case").is_err());
        assert!(Entity::parse("").is_err());
    }
}

/// Why a routing target was excluded: the rule and one sentence per failed requirement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reason {
    pub rule: String,
    pub detail: String,
}

/// One change in a conversation's append-only history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryEvent {
    /// 1, 2, 3, ... within the conversation.
    pub seq: u64,
    pub at: String,
    /// The `name` of the token that made the change.
    pub actor: String,
    pub action: super::HistoryAction,
    /// Null for `created`.
    pub from: Option<Placement>,
    pub to: Placement,
    /// The version of the routing rules in force.
    pub ruleset: String,
    #[schema(value_type = Option<String>)]
    pub note: Option<Note>,
}

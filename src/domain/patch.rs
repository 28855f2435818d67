//! PATCH bodies of representatives and queues: each given field replaces that field.

use serde::{Deserialize, Serialize};

use super::Id;
use super::{Attributes, Intent, Name, Presence, QueueInput, RepresentativeInput, Skills};

/// A PATCH of a representative: each given field replaces that field (`null` is refused:
/// leave a field out to keep it).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RepresentativePatch {
    #[schema(nullable = false)]
    pub name: Option<Name>,
    #[schema(nullable = false)]
    pub presence: Option<Presence>,
    #[schema(format = Int64, maximum = 4294967295.0, nullable = false)]
    pub capacity: Option<u32>,
    #[schema(value_type = Option<std::collections::BTreeMap<String, u8>>, nullable = false)]
    pub skills: Option<Skills>,
    #[schema(value_type = Option<Vec<String>>, nullable = false)]
    pub queues: Option<Vec<Id>>,
    #[schema(value_type = Option<Vec<String>>, nullable = false)]
    pub user_groups: Option<Vec<Id>>,
    #[schema(nullable = false)]
    pub intents: Option<Vec<Intent>>,
    #[schema(value_type = Option<Object>, nullable = false)]
    pub attributes: Option<Attributes>,
}

impl RepresentativePatch {
    pub fn apply(self, mut to: RepresentativeInput) -> RepresentativeInput {
        macro_rules! merge { ($($f:ident),*) => { $(if let Some(v) = self.$f { to.$f = v; })* } }
        merge!(name, presence, capacity, skills, queues, user_groups, intents, attributes);
        to
    }
}

/// A PATCH of a queue: each given field replaces that field (`null` is refused).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueuePatch {
    #[schema(nullable = false)]
    pub name: Option<Name>,
    #[schema(format = Int64, maximum = 4294967295.0, nullable = false)]
    pub priority: Option<u32>,
    #[schema(nullable = false)]
    pub intent_based: Option<bool>,
}

impl QueuePatch {
    pub fn apply(self, mut to: QueueInput) -> QueueInput {
        if let Some(v) = self.name {
            to.name = v;
        }
        if let Some(v) = self.priority {
            to.priority = v;
        }
        if let Some(v) = self.intent_based {
            to.intent_based = v;
        }
        to
    }
}

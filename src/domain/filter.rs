//! Filters of the list endpoints and of the Assign/Transfer dialogs.

use super::{Id, Presence, Queue, Representative, Status};

/// Narrows representatives; every field given must match.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RepresentativeFilter {
    /// Case-insensitive substring of the name (already lowercased).
    pub name: Option<String>,
    pub queue: Option<Id>,
    /// Has every one of these skills.
    pub skills: Vec<Id>,
    /// Any of these presences.
    pub presence: Vec<Presence>,
    pub user_group: Option<Id>,
    /// Matched within one entry of the representative's `intents`.
    pub intent_family: Option<Id>,
    pub intent_group: Option<Id>,
    pub intent: Option<Id>,
}

impl RepresentativeFilter {
    pub fn matches(&self, rep: &Representative) -> bool {
        let r = &rep.input;
        self.name.as_ref().is_none_or(|n| r.name.as_str().to_lowercase().contains(n.as_str()))
            && self.queue.as_ref().is_none_or(|q| r.queues.contains(q))
            && self.skills.iter().all(|s| r.skills.contains_key(s))
            && (self.presence.is_empty() || self.presence.contains(&r.presence))
            && self.user_group.as_ref().is_none_or(|g| r.user_groups.contains(g))
            && (self.intent_family.is_none() && self.intent_group.is_none() && self.intent.is_none()
                || r.intents.iter().any(|i| {
                    self.intent_family.as_ref().is_none_or(|f| &i.family == f)
                        && self.intent_group.as_ref().is_none_or(|g| i.group.as_ref() == Some(g))
                        && self.intent.as_ref().is_none_or(|x| i.intent.as_ref() == Some(x))
                }))
    }
}

/// Narrows queues; every field given must match.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueFilter {
    /// Case-insensitive substring of the name (already lowercased).
    pub name: Option<String>,
    pub intent_based: Option<bool>,
    pub priority: Option<u32>,
}

impl QueueFilter {
    pub fn matches(&self, queue: &Queue) -> bool {
        let q = &queue.input;
        self.name.as_ref().is_none_or(|n| q.name.as_str().to_lowercase().contains(n.as_str()))
            && self.intent_based.is_none_or(|b| q.intent_based == b)
            && self.priority.is_none_or(|p| q.priority == p)
    }
}

/// Filters of the *Ongoing record conversations* view.
#[derive(Clone, Debug, Default)]
pub struct ConversationFilter {
    /// Empty: every status but `closed`.
    pub statuses: Vec<Status>,
    pub queue: Option<Id>,
    pub representative: Option<Id>,
    pub entity: Option<String>,
    pub intent_based: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RepresentativeInput;

    fn rep(json: &str) -> Representative {
        let input: RepresentativeInput = serde_json::from_str(json).unwrap();
        Representative::new(Id::parse("r").unwrap(), input, 0, 1, String::new())
    }

    #[test]
    fn intent_filters_match_within_one_entry() {
        let r = rep(
            r#"{"name":"Ann","intents":[{"family":"billing","group":"refunds"},{"family":"tech","group":"setup"}]}"#,
        );
        let f = |fam: &str, grp: &str| RepresentativeFilter {
            intent_family: Some(Id::parse(fam).unwrap()),
            intent_group: Some(Id::parse(grp).unwrap()),
            ..Default::default()
        };
        assert!(f("billing", "refunds").matches(&r));
        assert!(!f("billing", "setup").matches(&r), "family and group come from different entries");
    }

    #[test]
    fn name_is_a_case_insensitive_substring_and_skills_are_all_of() {
        let r = rep(r#"{"name":"Ann Lee","skills":{"billing":3,"english":9}}"#);
        let by_name = RepresentativeFilter { name: Some("lee".into()), ..Default::default() };
        assert!(by_name.matches(&r));
        let skills = |s: &[&str]| RepresentativeFilter {
            skills: s.iter().map(|s| Id::parse(s).unwrap()).collect(),
            ..Default::default()
        };
        assert!(skills(&["billing", "english"]).matches(&r));
        assert!(!skills(&["billing", "french"]).matches(&r));
    }
}

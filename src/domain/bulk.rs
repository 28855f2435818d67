//! Bulk actions: one supervisor action over many conversations, each item on its own.

use serde::{Deserialize, Serialize};

use super::{Conversation, Id, RefusalRecord};

/// The most conversations one bulk request or one distribution may take.
pub const BULK_MAX: usize = 1000;

/// What became of one item of a bulk request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[expect(
    clippy::large_enum_variant,
    reason = "items are built once and moved into the answer; boxing would add an allocation per item"
)]
pub enum ItemResult {
    /// Applied: the conversation as it now is.
    Applied(Conversation),
    /// Refused, as the single action would have been.
    Refused(RefusalRecord),
    /// The store failed. `uncertain`: the commit itself failed, so the item may or may
    /// not be applied. A bulk answer with such an item is not remembered.
    Failed { uncertain: bool },
}

/// One item of a bulk answer, in the request's order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BulkItem {
    pub id: Id,
    pub result: ItemResult,
}

/// What a distribution of a queue's open conversations did (or, dry, would do).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Distribution {
    /// The version of the rules the plan was made under.
    pub ruleset: String,
    /// In the order the conversations were taken.
    pub assigned: Vec<Assignment>,
    /// In the order the conversations were taken.
    pub unassigned: Vec<Unassigned>,
}

/// A conversation given to its best candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Assignment {
    #[schema(value_type = String)]
    pub conversation: Id,
    #[schema(value_type = String)]
    pub representative: Id,
    /// The candidate's score when it was chosen.
    pub score: f64,
}

/// A conversation left open, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Unassigned {
    #[schema(value_type = String)]
    pub conversation: Id,
    /// A sentence: no eligible representative (with the rules' reasons), or what
    /// refused the assignment.
    pub reason: String,
}

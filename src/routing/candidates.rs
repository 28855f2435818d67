//! The Assign and Transfer dialogs' answer: eligible targets best first, and with
//! `explain` what the rules excluded and why.

use serde::Serialize;

use super::ScorePart;
use crate::domain::{Id, QueueFilter, Reason, RepresentativeFilter, RoutingAction, TargetKind};

/// What a candidates query asks for.
#[derive(Clone, Debug)]
pub struct CandidateQuery {
    pub action: RoutingAction,
    pub target: TargetKind,
    pub representatives: RepresentativeFilter,
    pub queues: QueueFilter,
    pub explain: bool,
    /// At most this many candidates (and excluded, with `explain`); all when `None`.
    pub limit: Option<usize>,
}

/// One eligible target.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Candidate {
    #[schema(value_type = String)]
    pub id: Id,
    pub name: String,
    pub score: f64,
    /// Only with `explain=true`: where the score came from, one part per rank key of each
    /// rule that applies and per plugin that scored; the parts add up to `score`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score_parts: Option<Vec<ScorePart>>,
}

/// One target the rules excluded, and why.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Excluded {
    #[schema(value_type = String)]
    pub id: Id,
    pub name: String,
    pub reasons: Vec<Reason>,
}

/// The Assign or Transfer dialog's list.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Candidates {
    #[schema(value_type = String)]
    pub conversation: Id,
    pub action: RoutingAction,
    pub target: TargetKind,
    /// The version of the rules that decided this list.
    pub ruleset: String,
    /// Best first; equal scores by name, then id. At most `limit`.
    pub candidates: Vec<Candidate>,
    /// Eligible targets after the filters (for a transfer, the holder is not counted).
    pub total: usize,
    /// Only with `explain=true`: by name, then id. At most `limit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded: Option<Vec<Excluded>>,
    /// Only with `explain=true`: how many targets the rules excluded after the filters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded_total: Option<usize>,
}

/// The ranked part of [`Candidates`], as the directory computes it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ranked {
    pub candidates: Vec<Candidate>,
    pub total: usize,
    pub excluded: Vec<Excluded>,
    pub excluded_total: usize,
}

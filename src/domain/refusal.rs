//! Why a request was refused: the domain's answers that are not a success.

use super::{Id, InvalidTransition, Reason};

/// A request the domain refuses. Each maps to one 4xx of the contract.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("{kind} `{id}` does not exist")]
    NotFound { kind: &'static str, id: Id },
    #[error("{0}")]
    BadRequest(String),
    #[error("If-Match names version {expected} but conversation `{id}` is at version {current}")]
    VersionMismatch { id: Id, expected: u64, current: u64 },
    #[error(transparent)]
    InvalidTransition(#[from] InvalidTransition),
    #[error("conversation `{conversation}` is already held by representative `{representative}`")]
    SameHolder { conversation: Id, representative: Id },
    #[error("a conversation with id `{0}` already exists")]
    AlreadyExists(Id),
    #[error("Idempotency-Key `{0}` was already used with a different request")]
    IdempotencyKeyReused(String),
    #[error(
        "conversation `{id}` or its target kept changing while the routing rules decided ({attempts} attempts); \
         nothing was applied, send the request again"
    )]
    Contended { id: Id, attempts: u32 },
    #[error("{kind} `{id}` is not eligible under the routing rules in force (version {ruleset})")]
    NotEligible { kind: &'static str, id: Id, ruleset: String, reasons: Vec<Reason> },
}

/// Which refusal it was, without its particulars: one per problem code of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    NotFound,
    BadRequest,
    VersionMismatch,
    InvalidTransition,
    AlreadyExists,
    IdempotencyKeyReused,
    NotEligible,
    Contended,
}

/// A refusal as it is remembered (an item of a bulk answer replayed from an
/// `Idempotency-Key`): its kind, its sentence and, for `not_eligible`, the rules' reasons.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RefusalRecord {
    pub kind: RefusalKind,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasons: Option<Vec<Reason>>,
}

impl Refusal {
    pub fn kind(&self) -> RefusalKind {
        match self {
            Refusal::NotFound { .. } => RefusalKind::NotFound,
            Refusal::BadRequest(_) => RefusalKind::BadRequest,
            Refusal::VersionMismatch { .. } => RefusalKind::VersionMismatch,
            Refusal::InvalidTransition(_) | Refusal::SameHolder { .. } => RefusalKind::InvalidTransition,
            Refusal::AlreadyExists(_) => RefusalKind::AlreadyExists,
            Refusal::IdempotencyKeyReused(_) => RefusalKind::IdempotencyKeyReused,
            Refusal::NotEligible { .. } => RefusalKind::NotEligible,
            Refusal::Contended { .. } => RefusalKind::Contended,
        }
    }
}

impl From<Refusal> for RefusalRecord {
    fn from(r: Refusal) -> Self {
        let (kind, detail) = (r.kind(), r.to_string());
        let reasons = match r {
            Refusal::NotEligible { reasons, .. } => Some(reasons),
            _ => None,
        };
        Self { kind, detail, reasons }
    }
}

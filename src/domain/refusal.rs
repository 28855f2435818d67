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

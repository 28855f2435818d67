//! Durable state: conversations, their history, representatives, queues and
//! idempotency keys.
//!
//! Every change is one database transaction that checks versions, applies the status
//! table, moves capacity and appends history together ([`command::execute`]), so a
//! second daemon on a shared database (a PostgreSQL backend) would stay correct. A `2xx`
//! is sent only after that transaction is durable. Reads see committed state only.

mod command;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::{
    Conversation, ConversationInput, HistoryEvent, Id, LifecycleEvent, Note, Queue, QueueFilter, QueueInput, Refusal,
    Representative, RepresentativeFilter, RepresentativeInput, Status, SupervisorAction,
};
use crate::routing::Policy;

pub use command::{QueuePatch, RepresentativePatch};
pub use sqlite::SqliteStore;

/// A failure of the store itself (not a refusal of the request).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("stored record is unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("invalid database url `{0}` (expected `sqlite://PATH`)")]
    BadUrl(String),
    #[error("cannot create the database folder `{path}`: {source}")]
    Folder { path: String, source: std::io::Error },
    #[error("committing the write failed: {0}")]
    Commit(String),
    #[error("the store is shutting down")]
    Closed,
}

/// Who makes a change: the token's name (recorded in history) and the digest that
/// scopes its idempotency keys.
#[derive(Clone, Debug)]
pub struct Author {
    pub name: String,
    pub token_digest: String,
}

/// An `Idempotency-Key` with the fingerprint of the request that carried it.
#[derive(Clone, Debug)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: String,
}

/// A change to apply.
#[derive(Clone, Debug)]
pub enum Command {
    CreateConversation(ConversationInput),
    Supervise { id: Id, action: SupervisorAction, if_match: Option<u64>, note: Option<Note> },
    Lifecycle { id: Id, event: LifecycleEvent, if_match: Option<u64>, note: Option<Note> },
    PutRepresentative { id: Id, input: RepresentativeInput },
    PatchRepresentative { id: Id, patch: RepresentativePatch },
    PutQueue { id: Id, input: QueueInput },
    PatchQueue { id: Id, patch: QueuePatch },
}

/// One write: the change, who makes it, and the routing rules it is checked against.
#[derive(Clone)]
pub struct WriteRequest {
    pub author: Author,
    pub idempotency: Option<Idempotency>,
    pub command: Command,
    pub policy: Arc<Box<dyn Policy>>,
    /// RFC 3339, UTC, milliseconds.
    pub now: String,
    /// The same instant in Unix milliseconds.
    pub now_ms: i64,
}

/// What a write produced. Stored with its idempotency key and replayed as it was.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[expect(
    clippy::large_enum_variant,
    reason = "one Outcome per write, moved once to its caller; boxing would add an allocation per write"
)]
pub enum Outcome {
    Conversation { conversation: Conversation, created: bool },
    Representative { representative: Representative, created: bool },
    Queue { queue: Queue, created: bool },
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

/// A page request: items after `after` (a position from a previous page), at most `limit`.
#[derive(Clone, Copy, Debug)]
pub struct PageRequest {
    pub after: Option<i64>,
    pub limit: usize,
}

/// A page of items, oldest first, and the position to continue from.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<i64>,
}

/// The store the service runs on. SQLite is the embedded default.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies one change atomically and durably.
    async fn write(&self, request: WriteRequest) -> Result<Outcome, StoreError>;

    async fn conversation(&self, id: &Id) -> Result<Option<Conversation>, StoreError>;
    async fn conversations(
        &self,
        filter: ConversationFilter,
        page: PageRequest,
    ) -> Result<Page<Conversation>, StoreError>;
    /// `None` when the conversation does not exist.
    async fn history(&self, id: &Id) -> Result<Option<Vec<HistoryEvent>>, StoreError>;

    async fn representative(&self, id: &Id) -> Result<Option<Representative>, StoreError>;
    async fn representatives(
        &self,
        filter: RepresentativeFilter,
        page: PageRequest,
    ) -> Result<Page<Representative>, StoreError>;

    async fn queue(&self, id: &Id) -> Result<Option<Queue>, StoreError>;
    async fn queues(&self, filter: QueueFilter, page: PageRequest) -> Result<Page<Queue>, StoreError>;

    /// Whether nothing has been stored yet (demo data is loaded only then).
    async fn is_empty(&self) -> Result<bool, StoreError>;
}

/// Opens the store a `database` URL names.
pub fn open(url: &str, base: &std::path::Path) -> Result<Arc<dyn Store>, StoreError> {
    let path = url.strip_prefix("sqlite://").ok_or_else(|| StoreError::BadUrl(url.to_owned()))?;
    if path.is_empty() {
        return Err(StoreError::BadUrl(url.to_owned()));
    }
    Ok(Arc::new(SqliteStore::open(&base.join(path))?))
}

//! Durable state: conversations, their history, representatives, queues and
//! idempotency keys.
//!
//! Every change is one database transaction that checks versions, applies the status
//! table, moves capacity and appends history together ([`command::execute`]), so a
//! second daemon on a shared database (a PostgreSQL backend) would stay correct. A `2xx`
//! is sent only after that transaction is durable. Reads see committed state only.
//!
//! The store knows no routing policy. Eligibility is decided above it, against the
//! routing state in memory; a write that relied on a decision carries what the decision
//! read ([`Expect`]: the conversation's version, the target's version, its used
//! capacity) and the store re-checks those inside the transaction. If any changed the
//! write fails with [`StoreError::Stale`] and nothing is applied, so the caller decides
//! again. This is the scheduler's "bind with a precondition".

mod command;
mod feed;
mod postgres;
mod rows;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::{
    BulkItem, Conversation, ConversationFilter, ConversationInput, Distribution, HistoryEvent, Id, LifecycleEvent,
    Note, Page, PageRequest, Queue, QueueFilter, QueueInput, QueuePatch, Refusal, Representative, RepresentativeFilter,
    RepresentativeInput, RepresentativePatch, RoutingAction, SupervisorAction,
};

pub use feed::{Change, ChangeKind, NewChange};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// A failure of the store itself (not a refusal of the request).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection to the database could be had (it is down or restarting).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database was written by a newer Switchboard.
    #[error(
        "the database is at schema version {found}, newer than this switchboard's {known}: \
         run a switchboard at least as new as the one that wrote it"
    )]
    NewerSchema { found: i64, known: i64 },
    #[error("stored record is unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("invalid database url `{0}` (expected `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`)")]
    BadUrl(String),
    #[error("cannot create the database folder `{path}`: {source}")]
    Folder { path: String, source: std::io::Error },
    #[error("committing the write failed: {0}")]
    Commit(String),
    #[error("the store is shutting down")]
    Closed,
    /// The write failed inside the store before its commit; nothing was applied.
    #[error("{0}; it was not applied")]
    Failed(String),
    /// A fact the write's decision relied on changed before it committed; nothing was
    /// applied. The caller decides again against fresh state.
    #[error("{0} changed since the decision; nothing was applied")]
    Stale(&'static str),
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
    Supervise {
        id: Id,
        action: SupervisorAction,
        if_match: Option<u64>,
        note: Option<Note>,
        expect: Option<Expect>,
    },
    Lifecycle {
        id: Id,
        event: LifecycleEvent,
        if_match: Option<u64>,
        note: Option<Note>,
    },
    PutRepresentative {
        id: Id,
        input: RepresentativeInput,
    },
    PatchRepresentative {
        id: Id,
        patch: RepresentativePatch,
    },
    PutQueue {
        id: Id,
        input: QueueInput,
    },
    PatchQueue {
        id: Id,
        patch: QueuePatch,
    },
    /// A new rule set came into force: only a change-feed item.
    RulesReloaded {
        version: String,
    },
    /// Remembers an answer under the write's `Idempotency-Key` and changes nothing else
    /// (a bulk request's whole answer, once its items are committed).
    Remember(Box<Outcome>),
    /// Keeps the rule files of a rule-set version (once per version), so decisions made
    /// under it can be evaluated again (`switchboard replay`). Not a feed item.
    RecordRuleset {
        version: String,
        files: Vec<RuleFile>,
    },
    /// Forgets the decision records made before `before_ms` (Unix milliseconds).
    PurgeDecisions {
        before_ms: i64,
    },
}

/// One rule file of a recorded rule set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleFile {
    pub name: String,
    pub text: String,
}

/// What the rules saw when they let a conversation go to its target: kept beside
/// history for each applied assign and transfer (a decision log, as OPA keeps one), and
/// read back by `switchboard replay`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// The decision's clock (Unix milliseconds): idle time, waiting and hours were read at it.
    pub at_ms: i64,
    pub action: RoutingAction,
    /// The rule-set version that decided.
    pub ruleset: String,
    /// The conversation as it was.
    pub conversation: Conversation,
    pub target: DecidedTarget,
    /// The target's score under those rules.
    pub score: f64,
}

/// The chosen target's routing facts as the rules saw them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DecidedTarget {
    /// With the capacity the decision counted (a bulk's earlier items included) and when
    /// the representative was last given work (Unix milliseconds; ranks by idle time).
    Representative {
        record: Representative,
        last_assigned_ms: Option<i64>,
    },
    Queue {
        record: Queue,
    },
}

/// What a routing decision read, re-checked inside the write's transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct Expect {
    /// The conversation's version the decision saw.
    pub conversation_version: u64,
    /// The target's version the decision saw (its doc: presence, skills, capacity, ...).
    pub target_version: u64,
    /// What the decision relied on of the target representative's used capacity.
    pub used_capacity: UsedCapacity,
    /// What the rules saw, written as a decision record when the write applies.
    pub record: Option<Arc<DecisionRecord>>,
}

/// How much of a representative's used capacity a decision relied on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsedCapacity {
    /// Nothing (no rule read free capacity).
    Any,
    /// At most this much (a rule required free capacity; less use keeps it true).
    AtMost(i64),
    /// Exactly this much (a matcher read the exact figure).
    Exactly(i64),
}

impl UsedCapacity {
    pub fn holds(self, used: i64) -> bool {
        match self {
            UsedCapacity::Any => true,
            UsedCapacity::AtMost(n) => used <= n,
            UsedCapacity::Exactly(n) => used == n,
        }
    }
}

/// One write: the change, who makes it, and when.
#[derive(Clone, Debug)]
pub struct WriteRequest {
    pub author: Author,
    pub idempotency: Option<Idempotency>,
    pub command: Command,
    /// The version of the routing rules in force, recorded in history.
    pub ruleset: String,
    /// RFC 3339, UTC, milliseconds. The SQLite store records its own time, taken in its
    /// writer (never earlier than the write before), in place of this.
    pub now: String,
    /// The same instant in Unix milliseconds.
    pub now_ms: i64,
}

/// A committed write: its outcome, and the directory records it changed (as they are
/// after it), so the routing state in memory can follow without reading the store.
#[derive(Clone, Debug)]
pub struct Applied {
    pub outcome: Outcome,
    /// The change-feed position of the write's last change (`None` for a replay).
    pub position: Option<u64>,
    /// Every representative whose document, capacity or last assignment changed, each
    /// with its `revision` (records arriving out of order are applied by revision).
    pub representatives: Vec<Representative>,
    /// Every queue the write created or changed.
    pub queues: Vec<Queue>,
}

/// What a write produced. Stored with its idempotency key and replayed as it was.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[expect(
    clippy::large_enum_variant,
    reason = "one Outcome per write, moved once to its caller; boxing would add an allocation per write"
)]
pub enum Outcome {
    Conversation {
        conversation: Conversation,
        created: bool,
    },
    Representative {
        representative: Representative,
        created: bool,
    },
    Queue {
        queue: Queue,
        created: bool,
    },
    Rules {
        version: String,
    },
    /// A bulk request's answer, item by item (each item committed as its own write).
    Bulk {
        items: Vec<BulkItem>,
    },
    /// A queue distribution's answer.
    Distribution(Distribution),
}

/// The store the service runs on. SQLite is the embedded default.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies one change atomically and durably.
    async fn write(&self, request: WriteRequest) -> Result<Applied, StoreError>;

    /// The fingerprint and outcome remembered for `(token, key)`, if any.
    async fn idempotent(&self, token: &str, key: &str) -> Result<Option<(String, Outcome)>, StoreError>;

    /// Every representative and queue, oldest first: the routing state is loaded from this
    /// once at start.
    async fn directory(&self) -> Result<(Vec<Representative>, Vec<Queue>), StoreError>;

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

    /// The change feed after `after`, in position order, at most `limit` items.
    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError>;

    /// The last position of the feed (0 when empty).
    async fn feed_head(&self) -> Result<u64, StoreError>;

    /// Decision records made in `[since_ms, until_ms)`, after record `after` (its
    /// sequence number), oldest first, at most `limit`: `(seq, record)`.
    async fn decisions(
        &self,
        since_ms: i64,
        until_ms: i64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, DecisionRecord)>, StoreError>;

    /// The rule files of a recorded rule-set version.
    async fn ruleset(&self, version: &str) -> Result<Option<Vec<RuleFile>>, StoreError>;

    /// The named representatives and queues as stored now (unknown ids are left out).
    async fn records(&self, reps: &[Id], queues: &[Id]) -> Result<(Vec<Representative>, Vec<Queue>), StoreError> {
        let mut found = (Vec::new(), Vec::new());
        for id in reps {
            found.0.extend(self.representative(id).await?);
        }
        for id in queues {
            found.1.extend(self.queue(id).await?);
        }
        Ok(found)
    }

    /// The named conversations as stored now (unknown ids are left out).
    async fn conversations_named(&self, ids: &[Id]) -> Result<Vec<Conversation>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            found.extend(self.conversation(id).await?);
        }
        Ok(found)
    }

    /// Whether the store can take writes: `Err` says why not (its writer stopped).
    fn health(&self) -> Result<(), String> {
        Ok(())
    }

    /// Whether other daemons may write to the same database (their changes then reach
    /// this one's routing state through the change feed).
    fn shared(&self) -> bool {
        false
    }
}

/// A `database` URL, parsed.
pub enum Database {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Database {
    pub fn parse(url: &str, base: &std::path::Path) -> Result<Self, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::BadUrl(url.to_owned()));
            }
            return Ok(Database::Sqlite(base.join(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Database::Postgres(url.to_owned()));
        }
        Err(StoreError::BadUrl(url.to_owned()))
    }
}

/// Opens the store a `database` URL names, creating or upgrading its schema.
pub async fn open(url: &str, base: &std::path::Path) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match Database::parse(url, base)? {
        Database::Sqlite(path) => Arc::new(SqliteStore::open(&path)?),
        Database::Postgres(url) => Arc::new(PostgresStore::open(&url).await?),
    })
}

/// Creates or upgrades the schema of the database `url` names and returns the schema
/// version it is at now.
pub async fn migrate(url: &str, base: &std::path::Path) -> Result<i64, StoreError> {
    match Database::parse(url, base)? {
        Database::Sqlite(path) => sqlite::migrate_file(&path),
        Database::Postgres(url) => postgres::migrate_url(&url).await,
    }
}

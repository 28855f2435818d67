//! The change feed: every committed change, numbered in commit order.
//!
//! A write's changes are described by the command that makes them ([`NewChange`]); the
//! backend numbers them as it commits, so that positions appear in commit order: a
//! reader that has seen position N never later sees a smaller one. SQLite has one
//! writer, whose transactions commit in the order they are numbered. PostgreSQL takes
//! the numbers from a one-row counter as the last statement of each transaction, and the
//! counter's row lock is held until that transaction's commit is durable, so the next
//! transaction to number its changes commits after it (see `postgres.rs`).

use serde::Serialize;

/// What a feed item is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Conversation,
    Representative,
    Queue,
    Rules,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Conversation => "conversation",
            ChangeKind::Representative => "representative",
            ChangeKind::Queue => "queue",
            ChangeKind::Rules => "rules",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "conversation" => ChangeKind::Conversation,
            "representative" => ChangeKind::Representative,
            "queue" => ChangeKind::Queue,
            "rules" => ChangeKind::Rules,
            _ => return None,
        })
    }
}

/// A change as a command describes it, before it has a position.
#[derive(Clone, Debug, PartialEq)]
pub struct NewChange {
    pub at: String,
    pub kind: ChangeKind,
    pub id: String,
    pub action: String,
    pub version: Option<u64>,
    pub actor: String,
    /// The representatives whose capacity the change moved (a conversation's), so a
    /// daemon following the feed knows which records to read again.
    pub touched: Vec<String>,
}

/// One item of the change feed.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Change {
    pub position: u64,
    pub at: String,
    pub kind: ChangeKind,
    pub id: String,
    /// A conversation's history action; `created`, `replaced` or `updated` for a
    /// representative or queue; `reload` for rules.
    pub action: String,
    /// The record's version after the change (conversations, representatives, queues).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    pub actor: String,
    #[serde(skip)]
    pub touched: Vec<String>,
}

impl Change {
    pub fn numbered(position: u64, c: NewChange) -> Self {
        Change {
            position,
            at: c.at,
            kind: c.kind,
            id: c.id,
            action: c.action,
            version: c.version,
            actor: c.actor,
            touched: c.touched,
        }
    }
}

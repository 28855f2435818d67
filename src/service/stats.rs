//! Queue statistics: what a supervisor looks at before distributing, read from the state
//! in memory (the backlog's counts, the directory's members), never from the store.

use serde::Serialize;

use super::{ServiceError, Supervisor};
use crate::domain::{Id, Refusal};
use crate::routing::{Members, QueueCounts};

/// A queue's conversations by status (closed ones are not counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ConversationCounts {
    pub open: u64,
    pub active: u64,
    pub waiting: u64,
    pub wrap_up: u64,
}

/// One queue's statistics.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct QueueStats {
    #[schema(value_type = String)]
    pub queue: Id,
    pub conversations: ConversationCounts,
    /// When the oldest `open` conversation was created; `null` when none is open.
    pub oldest_open_at: Option<String>,
    pub representatives: Members,
    /// When these figures were read.
    pub at: String,
}

/// `{"queues": [...]}`, in id order.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub queues: Vec<QueueStats>,
}

fn queue_stats(queue: Id, counts: QueueCounts, representatives: Members, at: &str) -> QueueStats {
    QueueStats {
        queue,
        conversations: ConversationCounts {
            open: counts.open,
            active: counts.active,
            waiting: counts.waiting,
            wrap_up: counts.wrap_up,
        },
        oldest_open_at: counts.oldest_open_ms.map(crate::clock::format_ms),
        representatives,
        at: at.to_owned(),
    }
}

impl Supervisor {
    /// One queue's statistics (`404` when it does not exist).
    pub fn queue_stats(&self, id: &Id) -> Result<QueueStats, ServiceError> {
        if self.directory.queue(id).is_none() {
            return Err(Refusal::NotFound { kind: "queue", id: id.clone() }.into());
        }
        let members = self.directory.members_of(id);
        let at = crate::clock::now().0;
        Ok(queue_stats(id.clone(), self.backlog.counts(id), members, &at))
    }

    /// Every queue's statistics, in id order.
    pub fn stats(&self) -> Stats {
        let mut members = self.directory.members();
        let at = crate::clock::now().0;
        let queues = self
            .directory
            .queue_ids()
            .into_iter()
            .map(|id| {
                let counts = self.backlog.counts(&id);
                let m = members.remove(&id).unwrap_or_default();
                queue_stats(id, counts, m, &at)
            })
            .collect();
        Stats { queues }
    }
}

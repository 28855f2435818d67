//! Demo data: a JSON file of queues, representatives, conversations and the actions
//! that bring them into varied statuses. Loaded through the service, like any client's
//! writes, into a database that is empty at start.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::{Actor, Role};
use crate::domain::{ConversationInput, Id, LifecycleEvent, QueueInput, RepresentativeInput};
use crate::service::{ServiceError, Supervisor};

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("{path}: cannot read the seed file: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: invalid seed file: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("{path}: loading `{item}` failed: {source}")]
    Apply { path: PathBuf, item: String, source: ServiceError },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedFile {
    queues: Vec<WithId<QueueInput>>,
    representatives: Vec<WithId<RepresentativeInput>>,
    conversations: Vec<ConversationInput>,
    /// Lifecycle events applied after the conversations exist, in order.
    #[serde(default)]
    events: Vec<SeedEvent>,
}

#[derive(Debug, Deserialize)]
struct WithId<T> {
    id: Id,
    #[serde(flatten)]
    input: T,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedEvent {
    conversation: Id,
    event: LifecycleEvent,
}

/// Loads the seed file through `supervisor`; returns how many records it wrote.
pub async fn load(supervisor: &Supervisor, path: &Path) -> Result<usize, SeedError> {
    let text = std::fs::read_to_string(path).map_err(|source| SeedError::Read { path: path.into(), source })?;
    let seed: SeedFile =
        serde_json::from_str(&text).map_err(|source| SeedError::Parse { path: path.into(), source })?;
    let actor = Actor { name: "seed".into(), role: Role::Admin, token_digest: "seed".into() };
    let fail = |item: String| move |source| SeedError::Apply { path: path.into(), item, source };
    let mut written = 0;
    for q in seed.queues {
        let item = format!("queue {}", q.id);
        supervisor.put_queue(&actor, None, q.id, q.input).await.map_err(fail(item))?;
        written += 1;
    }
    for r in seed.representatives {
        let item = format!("representative {}", r.id);
        supervisor.put_representative(&actor, None, r.id, r.input).await.map_err(fail(item))?;
        written += 1;
    }
    for c in seed.conversations {
        let item = format!("conversation {}", c.id.as_ref().map_or("(new)", Id::as_str));
        supervisor.create_conversation(&actor, None, c).await.map_err(fail(item))?;
        written += 1;
    }
    for e in seed.events {
        let item = format!("event on {}", e.conversation);
        supervisor.lifecycle(&actor, None, e.conversation, e.event, None, None).await.map_err(fail(item))?;
    }
    Ok(written)
}

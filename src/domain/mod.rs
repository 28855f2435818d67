//! The domain: conversations, representatives, queues and the status model.
//! Pure types and functions; nothing here does I/O.

mod bulk;
mod filter;
mod id;
mod model;
mod page;
mod patch;
mod refusal;
mod transition;

pub use bulk::{Assignment, BULK_MAX, BulkItem, Distribution, ItemResult, Unassigned};
pub use filter::{ConversationFilter, QueueFilter, RepresentativeFilter};
pub use id::{Id, IdError};
pub use model::*;
pub use page::{Page, PageRequest};
pub use patch::{QueuePatch, RepresentativePatch};
pub use refusal::{Refusal, RefusalKind, RefusalRecord};
pub use transition::*;

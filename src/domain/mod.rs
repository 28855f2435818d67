//! The domain: conversations, representatives, queues and the status model.
//! Pure types and functions; nothing here does I/O.

mod filter;
mod id;
mod model;
mod refusal;
mod transition;

pub use filter::{QueueFilter, RepresentativeFilter};
pub use id::{Id, IdError};
pub use model::*;
pub use refusal::Refusal;
pub use transition::*;

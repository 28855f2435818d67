//! Eligibility and ranking of assign/transfer targets.
//!
//! The service asks the [`Policy`] in force which targets a conversation may go to. A
//! policy is an immutable snapshot: a request loads it once from [`Routing`] and uses it
//! from start to end, so an answer never mixes two rule sets. With no rules loaded the
//! policy is [`Unrestricted`]: every target is eligible, as the contract says.

use std::sync::Arc;

pub use crate::domain::Reason;
use crate::domain::{Conversation, Queue, Representative, RoutingAction};
use arc_swap::ArcSwap;

/// What a policy evaluates a batch of targets for.
#[derive(Clone, Copy, Debug)]
pub struct RoutingContext<'a> {
    pub action: RoutingAction,
    pub conversation: &'a Conversation,
}

/// A policy's answer for one target.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Eligible { score: f64 },
    Excluded { reasons: Vec<Reason> },
}

/// A compiled set of routing rules. Batches let an implementation amortise work per call.
pub trait Policy: Send + Sync + 'static {
    /// The version of the rules in force, recorded in history and candidate answers.
    fn version(&self) -> &str;
    /// One verdict per representative, in the order given.
    fn representatives(&self, ctx: RoutingContext<'_>, reps: &[&Representative]) -> Vec<Verdict>;
    /// One verdict per queue, in the order given.
    fn queues(&self, ctx: RoutingContext<'_>, queues: &[&Queue]) -> Vec<Verdict>;
}

/// The policy with no rules: every target is eligible with score 0.
#[derive(Debug, Default)]
pub struct Unrestricted;

impl Unrestricted {
    pub const VERSION: &'static str = "empty";
}

impl Policy for Unrestricted {
    fn version(&self) -> &str {
        Self::VERSION
    }

    fn representatives(&self, _: RoutingContext<'_>, reps: &[&Representative]) -> Vec<Verdict> {
        vec![Verdict::Eligible { score: 0.0 }; reps.len()]
    }

    fn queues(&self, _: RoutingContext<'_>, queues: &[&Queue]) -> Vec<Verdict> {
        vec![Verdict::Eligible { score: 0.0 }; queues.len()]
    }
}

/// The policy in force, swapped atomically as a whole.
pub struct Routing {
    current: ArcSwap<Box<dyn Policy>>,
}

impl Routing {
    pub fn new(policy: Box<dyn Policy>) -> Self {
        Self { current: ArcSwap::from_pointee(policy) }
    }

    /// The snapshot a request uses from start to end.
    pub fn snapshot(&self) -> Arc<Box<dyn Policy>> {
        self.current.load_full()
    }

    pub fn replace(&self, policy: Box<dyn Policy>) {
        self.current.store(Arc::new(policy));
    }
}

impl Default for Routing {
    fn default() -> Self {
        Self::new(Box::new(Unrestricted))
    }
}

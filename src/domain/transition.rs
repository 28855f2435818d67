//! The status model: which action is allowed from which status, and where it leads.
//! This is the contract's status table, cell by cell, as pure functions.

use serde::{Deserialize, Serialize};

use super::{ClosedReason, Conversation, Id, Placement, Status};

/// Where an assign or transfer sends a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Representative(Id),
    Queue(Id),
}

impl Target {
    pub fn kind(&self) -> TargetKind {
        match self {
            Target::Representative(_) => TargetKind::Representative,
            Target::Queue(_) => TargetKind::Queue,
        }
    }

    pub fn id(&self) -> &Id {
        match self {
            Target::Representative(id) | Target::Queue(id) => id,
        }
    }
}

/// The two kinds of target the Assign and Transfer dialogs offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Representative,
    Queue,
}

/// The two actions that pick a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoutingAction {
    Assign,
    Transfer,
}

impl RoutingAction {
    /// Whether a conversation in `status` may be assigned or transferred at all.
    pub fn allowed_from(self, status: Status) -> bool {
        match self {
            RoutingAction::Assign => status == Status::Open,
            RoutingAction::Transfer => matches!(status, Status::Open | Status::Active | Status::Waiting),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RoutingAction::Assign => "assign",
            RoutingAction::Transfer => "transfer",
        }
    }
}

/// A supervisor's action on one conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SupervisorAction {
    Route(RoutingAction, Target),
    Release,
    Remove,
}

/// An integration's lifecycle event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LifecycleEvent {
    Accept {
        #[schema(value_type = String)]
        representative: Id,
    },
    Hold,
    Resume,
    WrapUp,
    Resolve,
}

/// Every kind of change history records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HistoryAction {
    Created,
    Assign,
    Transfer,
    Release,
    Remove,
    Accept,
    Hold,
    Resume,
    WrapUp,
    Resolve,
}

impl HistoryAction {
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryAction::Created => "created",
            HistoryAction::Assign => "assign",
            HistoryAction::Transfer => "transfer",
            HistoryAction::Release => "release",
            HistoryAction::Remove => "remove",
            HistoryAction::Accept => "accept",
            HistoryAction::Hold => "hold",
            HistoryAction::Resume => "resume",
            HistoryAction::WrapUp => "wrap_up",
            HistoryAction::Resolve => "resolve",
        }
    }
}

impl SupervisorAction {
    pub fn history_action(&self) -> HistoryAction {
        match self {
            SupervisorAction::Route(RoutingAction::Assign, _) => HistoryAction::Assign,
            SupervisorAction::Route(RoutingAction::Transfer, _) => HistoryAction::Transfer,
            SupervisorAction::Release => HistoryAction::Release,
            SupervisorAction::Remove => HistoryAction::Remove,
        }
    }
}

impl LifecycleEvent {
    pub fn history_action(&self) -> HistoryAction {
        match self {
            LifecycleEvent::Accept { .. } => HistoryAction::Accept,
            LifecycleEvent::Hold => HistoryAction::Hold,
            LifecycleEvent::Resume => HistoryAction::Resume,
            LifecycleEvent::WrapUp => HistoryAction::WrapUp,
            LifecycleEvent::Resolve => HistoryAction::Resolve,
        }
    }
}

/// An action the conversation's status does not allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a conversation that is `{status}`{hint}")]
pub struct InvalidTransition {
    pub action: &'static str,
    pub status: Status,
    pub hint: &'static str,
}

/// The placement after a change, and why it was closed if it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Next {
    pub placement: Placement,
    pub closed_reason: Option<ClosedReason>,
}

fn refuse(action: HistoryAction, status: Status) -> InvalidTransition {
    let hint = match (action, status) {
        (HistoryAction::Assign, Status::Active | Status::Waiting) => " (use transfer to move a held conversation)",
        (HistoryAction::Release, Status::Open) => " (it is already unassigned)",
        (_, Status::Closed) => " (it is closed)",
        _ => "",
    };
    InvalidTransition { action: action.as_str(), status, hint }
}

/// The contract's status table for the four supervisor actions.
pub fn supervise(conv: &Conversation, action: &SupervisorAction) -> Result<Next, InvalidTransition> {
    use Status::*;
    let status = conv.status;
    let denied = || Err(refuse(action.history_action(), status));
    let at = |status, queue: &Id, representative: Option<&Id>| {
        Ok(Next {
            placement: Placement { status, queue: queue.clone(), representative: representative.cloned() },
            closed_reason: None,
        })
    };
    match action {
        SupervisorAction::Route(kind, target) => {
            if !kind.allowed_from(status) {
                return denied();
            }
            match target {
                Target::Representative(rep) => at(Active, &conv.queue, Some(rep)),
                Target::Queue(queue) => at(Open, queue, None),
            }
        }
        SupervisorAction::Release => match status {
            Active | Waiting => at(Open, &conv.queue, None),
            Open | WrapUp | Closed => denied(),
        },
        SupervisorAction::Remove => match status {
            Closed => denied(),
            Open | Active | Waiting | WrapUp => Ok(Next {
                placement: Placement { status: Closed, queue: conv.queue.clone(), representative: None },
                closed_reason: Some(ClosedReason::Removed),
            }),
        },
    }
}

/// The lifecycle events an integration reports.
pub fn lifecycle(conv: &Conversation, event: &LifecycleEvent) -> Result<Next, InvalidTransition> {
    use Status::*;
    let status = conv.status;
    let to = |status, representative: Option<&Id>, closed_reason| {
        Ok(Next {
            placement: Placement { status, queue: conv.queue.clone(), representative: representative.cloned() },
            closed_reason,
        })
    };
    let held = conv.representative.as_ref();
    match (event, status) {
        (LifecycleEvent::Accept { representative }, Open) => to(Active, Some(representative), None),
        (LifecycleEvent::Hold, Active) => to(Waiting, held, None),
        (LifecycleEvent::Resume, Waiting) => to(Active, held, None),
        (LifecycleEvent::WrapUp, Active) => to(WrapUp, held, None),
        (LifecycleEvent::Resolve, Active | Waiting | WrapUp) => to(Closed, held, Some(ClosedReason::Resolved)),
        _ => Err(refuse(event.history_action(), status)),
    }
}

/// The capacity moves a change implies: units leave the old holder and reach the new one.
pub fn capacity_moves(before: &Conversation, after: &Conversation) -> Vec<(Id, i64)> {
    let units = i64::from(before.capacity_units);
    match (before.capacity_holder(), after.capacity_holder()) {
        (a, b) if a == b => Vec::new(),
        (a, b) => a.map(|id| (id.clone(), -units)).into_iter().chain(b.map(|id| (id.clone(), units))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ConversationInput;

    fn id(s: &str) -> Id {
        Id::parse(s).unwrap()
    }

    fn conv(status: Status, rep: Option<&str>) -> Conversation {
        let input: ConversationInput =
            serde_json::from_str(r#"{"record":{"entity":"case","id":"CAS-1"},"queue":"q1","capacity_units":2}"#)
                .unwrap();
        let mut c = Conversation::create(id("c1"), input, "t".into());
        c.status = status;
        c.representative = rep.map(id);
        c
    }

    fn held(status: Status) -> Conversation {
        conv(status, if status == Status::Open { None } else { Some("ann") })
    }

    fn actions() -> Vec<(&'static str, SupervisorAction)> {
        vec![
            ("assign>rep", SupervisorAction::Route(RoutingAction::Assign, Target::Representative(id("bob")))),
            ("assign>queue", SupervisorAction::Route(RoutingAction::Assign, Target::Queue(id("q2")))),
            ("transfer>rep", SupervisorAction::Route(RoutingAction::Transfer, Target::Representative(id("bob")))),
            ("transfer>queue", SupervisorAction::Route(RoutingAction::Transfer, Target::Queue(id("q2")))),
            ("release", SupervisorAction::Release),
            ("remove", SupervisorAction::Remove),
        ]
    }

    /// The contract's table: `None` is a 409, `Some((status, queue, rep))` the result.
    fn expected(from: Status, action: &str) -> Option<(Status, &'static str, Option<&'static str>)> {
        use Status::*;
        match (from, action) {
            (Open, "assign>rep") | (Open | Active | Waiting, "transfer>rep") => Some((Active, "q1", Some("bob"))),
            (Open, "assign>queue") | (Open | Active | Waiting, "transfer>queue") => Some((Open, "q2", None)),
            (Active | Waiting, "release") => Some((Open, "q1", None)),
            (Open | Active | Waiting | WrapUp, "remove") => Some((Closed, "q1", None)),
            _ => None,
        }
    }

    #[test]
    fn every_cell_of_the_status_table() {
        for from in Status::ALL {
            for (name, action) in actions() {
                let got = supervise(&held(from), &action).ok().map(|n| n.placement);
                let want = expected(from, name).map(|(status, queue, rep)| Placement {
                    status,
                    queue: id(queue),
                    representative: rep.map(id),
                });
                assert_eq!(got, want, "{from} + {name}");
            }
        }
    }

    #[test]
    fn remove_records_the_reason() {
        let next = supervise(&held(Status::Active), &SupervisorAction::Remove).unwrap();
        assert_eq!(next.closed_reason, Some(ClosedReason::Removed));
    }

    #[test]
    fn lifecycle_events() {
        use Status::*;
        let accept = LifecycleEvent::Accept { representative: id("bob") };
        let cases = [
            (Open, accept.clone(), Some(Active)),
            (Active, LifecycleEvent::Hold, Some(Waiting)),
            (Waiting, LifecycleEvent::Resume, Some(Active)),
            (Active, LifecycleEvent::WrapUp, Some(WrapUp)),
            (Active, LifecycleEvent::Resolve, Some(Closed)),
            (Waiting, LifecycleEvent::Resolve, Some(Closed)),
            (WrapUp, LifecycleEvent::Resolve, Some(Closed)),
            (Active, accept, None),
            (Open, LifecycleEvent::Hold, None),
            (Waiting, LifecycleEvent::WrapUp, None),
            (Closed, LifecycleEvent::Resolve, None),
            (Open, LifecycleEvent::Resolve, None),
        ];
        for (from, event, want) in cases {
            let got = lifecycle(&held(from), &event).ok().map(|n| n.placement.status);
            assert_eq!(got, want, "{from} + {event:?}");
        }
        let resolved = lifecycle(&held(Active), &LifecycleEvent::Resolve).unwrap();
        assert_eq!(resolved.placement.representative, Some(id("ann")), "the resolver is kept");
    }

    #[test]
    fn capacity_follows_the_holder() {
        let before = held(Status::Active);
        let mut after = before.clone();
        after.representative = Some(id("bob"));
        assert_eq!(capacity_moves(&before, &after), vec![(id("ann"), -2), (id("bob"), 2)]);
        after.status = Status::Closed; // resolved: the representative is kept but holds nothing
        after.representative = Some(id("ann"));
        assert_eq!(capacity_moves(&before, &after), vec![(id("ann"), -2)]);
        assert!(capacity_moves(&before, &before).is_empty());
    }
}

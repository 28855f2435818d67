//! How one write runs inside a database transaction, independent of the backend.
//!
//! A backend provides [`Tx`] (load and save primitives inside its transaction); the
//! checks run here in the contract's order: idempotency → 404 (conversation) → 412 →
//! 409 (status) → 404 (target) → 409 (current holder). Eligibility (422) was decided
//! above the store; what that decision read is re-checked here ([`Expect`]).

use super::{Command, Expect, Idempotency, Outcome, StoreError, WriteRequest};
use crate::domain::{
    self, Conversation, HistoryAction, HistoryEvent, Id, Next, Queue, QueueInput, Refusal, Representative,
    RepresentativeInput, SupervisorAction, Target,
};

/// The primitives a backend offers inside one transaction.
pub trait Tx {
    fn conversation(&mut self, id: &Id) -> Result<Option<Conversation>, StoreError>;
    fn insert_conversation(&mut self, conv: &Conversation) -> Result<(), StoreError>;
    fn update_conversation(&mut self, conv: &Conversation) -> Result<(), StoreError>;
    fn last_history_seq(&mut self, id: &Id) -> Result<u64, StoreError>;
    fn append_history(&mut self, conversation: &Id, event: &HistoryEvent) -> Result<(), StoreError>;

    fn representative(&mut self, id: &Id) -> Result<Option<Representative>, StoreError>;
    /// Writes the representative's own fields; `used_capacity` is left as stored.
    fn put_representative(
        &mut self,
        id: &Id,
        input: &RepresentativeInput,
        now: &str,
    ) -> Result<Representative, StoreError>;
    /// `used_capacity += delta`, computed by the database; a positive delta also records
    /// `now_ms` as the time the representative was last given work. Returns the
    /// representative as it now is.
    fn add_used_capacity(&mut self, id: &Id, delta: i64, now_ms: i64) -> Result<Option<Representative>, StoreError>;

    fn queue(&mut self, id: &Id) -> Result<Option<Queue>, StoreError>;
    fn put_queue(&mut self, id: &Id, input: &QueueInput, now: &str) -> Result<Queue, StoreError>;

    /// The fingerprint and outcome remembered for `(token, key)`, if any.
    fn idempotent(&mut self, token: &str, key: &str) -> Result<Option<(String, Outcome)>, StoreError>;
    fn remember(&mut self, token: &str, key: &Idempotency, outcome: &Outcome) -> Result<(), StoreError>;
}

/// What one write did: its outcome and the directory records it changed.
#[derive(Debug, Default)]
pub struct Effects {
    pub representatives: Vec<Representative>,
    pub queues: Vec<Queue>,
}

/// Runs one write. On `Err` the caller rolls the transaction (or savepoint) back.
pub fn execute(tx: &mut dyn Tx, req: WriteRequest) -> Result<(Outcome, Effects), StoreError> {
    let token = req.author.token_digest.clone();
    if let Some(idem) = &req.idempotency
        && let Some((fingerprint, outcome)) = tx.idempotent(&token, &idem.key)?
    {
        return if fingerprint == idem.fingerprint {
            Ok((outcome, Effects::default()))
        } else {
            Err(Refusal::IdempotencyKeyReused(idem.key.clone()).into())
        };
    }
    let idempotency = req.idempotency.clone();
    let mut effects = Effects::default();
    let outcome = run(tx, req, &mut effects)?;
    if let Some(idem) = idempotency {
        tx.remember(&token, &idem, &outcome)?;
    }
    Ok((outcome, effects))
}

fn run(tx: &mut dyn Tx, req: WriteRequest, effects: &mut Effects) -> Result<Outcome, StoreError> {
    let WriteRequest { author, command, ruleset, now, now_ms, .. } = req;
    match command {
        Command::CreateConversation(input) => {
            let id = match &input.id {
                Some(id) => id.clone(),
                None => generated_id()?,
            };
            if tx.queue(&input.queue)?.is_none() {
                return Err(Refusal::BadRequest(format!(
                    "queue `{}` does not exist (create it with PUT /v1/queues/{})",
                    input.queue, input.queue
                ))
                .into());
            }
            if tx.conversation(&id)?.is_some() {
                return Err(Refusal::AlreadyExists(id).into());
            }
            let conv = Conversation::create(id, input, now.clone());
            tx.insert_conversation(&conv)?;
            let event = HistoryEvent {
                seq: 1,
                at: now,
                actor: author.name,
                action: HistoryAction::Created,
                from: None,
                to: conv.placement(),
                ruleset,
                note: None,
            };
            tx.append_history(&conv.id, &event)?;
            Ok(Outcome::Conversation { conversation: conv, created: true })
        }
        Command::Supervise { id, action, if_match, note, expect } => {
            let conv = load(tx, &id, if_match)?;
            if let Some(expect) = &expect
                && expect.conversation_version != conv.version
            {
                return Err(StoreError::Stale("the conversation"));
            }
            let next = domain::supervise(&conv, &action).map_err(Refusal::from)?;
            if let SupervisorAction::Route(_, target) = &action {
                check_target(tx, &conv, target, expect.as_ref())?;
            }
            let history = action.history_action();
            let change_ = Change { actor: author.name, ruleset, note, now, now_ms };
            let conv = change(tx, conv, next, history, change_, effects)?;
            Ok(Outcome::Conversation { conversation: conv, created: false })
        }
        Command::Lifecycle { id, event, if_match, note } => {
            let conv = load(tx, &id, if_match)?;
            let next = domain::lifecycle(&conv, &event).map_err(Refusal::from)?;
            if let domain::LifecycleEvent::Accept { representative } = &event
                && tx.representative(representative)?.is_none()
            {
                return Err(Refusal::NotFound { kind: "representative", id: representative.clone() }.into());
            }
            let history = event.history_action();
            let change_ = Change { actor: author.name, ruleset, note, now, now_ms };
            let conv = change(tx, conv, next, history, change_, effects)?;
            Ok(Outcome::Conversation { conversation: conv, created: false })
        }
        Command::PutRepresentative { id, input } => {
            let created = tx.representative(&id)?.is_none();
            check_queues(tx, &input.queues)?;
            let representative = tx.put_representative(&id, &input, &now)?;
            effects.representatives.push(representative.clone());
            Ok(Outcome::Representative { representative, created })
        }
        Command::PatchRepresentative { id, patch } => {
            let current =
                tx.representative(&id)?.ok_or_else(|| Refusal::NotFound { kind: "representative", id: id.clone() })?;
            let input = patch.apply(std::sync::Arc::unwrap_or_clone(current.input));
            check_queues(tx, &input.queues)?;
            let representative = tx.put_representative(&id, &input, &now)?;
            effects.representatives.push(representative.clone());
            Ok(Outcome::Representative { representative, created: false })
        }
        Command::PutQueue { id, input } => {
            let created = tx.queue(&id)?.is_none();
            let queue = tx.put_queue(&id, &input, &now)?;
            effects.queues.push(queue.clone());
            Ok(Outcome::Queue { queue, created })
        }
        Command::PatchQueue { id, patch } => {
            let current = tx.queue(&id)?.ok_or_else(|| Refusal::NotFound { kind: "queue", id: id.clone() })?;
            let queue = tx.put_queue(&id, &patch.apply(current.input), &now)?;
            effects.queues.push(queue.clone());
            Ok(Outcome::Queue { queue, created: false })
        }
    }
}

fn generated_id() -> Result<Id, StoreError> {
    // A UUIDv7 is time-ordered and always a valid id.
    Id::parse(&uuid::Uuid::now_v7().to_string()).map_err(|e| StoreError::Refused(Refusal::BadRequest(e.to_string())))
}

fn check_queues(tx: &mut dyn Tx, queues: &[Id]) -> Result<(), StoreError> {
    for q in queues {
        if tx.queue(q)?.is_none() {
            return Err(Refusal::BadRequest(format!(
                "`queues` names queue `{q}`, which does not exist (create it first with PUT /v1/queues/{q})"
            ))
            .into());
        }
    }
    Ok(())
}

/// Loads a conversation and applies `If-Match`.
fn load(tx: &mut dyn Tx, id: &Id, if_match: Option<u64>) -> Result<Conversation, StoreError> {
    let conv = tx.conversation(id)?.ok_or_else(|| Refusal::NotFound { kind: "conversation", id: id.clone() })?;
    match if_match {
        Some(expected) if expected != conv.version => {
            Err(Refusal::VersionMismatch { id: id.clone(), expected, current: conv.version }.into())
        }
        _ => Ok(conv),
    }
}

/// The target must exist and must not be the current holder (transfer); with an
/// [`Expect`], it must still be as the decision saw it.
fn check_target(
    tx: &mut dyn Tx,
    conv: &Conversation,
    target: &Target,
    expect: Option<&Expect>,
) -> Result<(), StoreError> {
    match target {
        Target::Representative(id) => {
            let rep =
                tx.representative(id)?.ok_or_else(|| Refusal::NotFound { kind: "representative", id: id.clone() })?;
            if conv.representative.as_ref() == Some(id) && conv.status != domain::Status::Open {
                return Err(Refusal::SameHolder { conversation: conv.id.clone(), representative: id.clone() }.into());
            }
            if let Some(expect) = expect
                && (expect.target_version != rep.version || !expect.used_capacity.holds(rep.used_capacity))
            {
                return Err(StoreError::Stale("the representative"));
            }
        }
        Target::Queue(id) => {
            let queue = tx.queue(id)?.ok_or_else(|| Refusal::NotFound { kind: "queue", id: id.clone() })?;
            if let Some(expect) = expect
                && expect.target_version != queue.version
            {
                return Err(StoreError::Stale("the queue"));
            }
        }
    }
    Ok(())
}

struct Change {
    actor: String,
    ruleset: String,
    note: Option<domain::Note>,
    now: String,
    now_ms: i64,
}

/// Writes the conversation's new placement, moves capacity and appends history.
fn change(
    tx: &mut dyn Tx,
    before: Conversation,
    next: Next,
    action: HistoryAction,
    c: Change,
    effects: &mut Effects,
) -> Result<Conversation, StoreError> {
    let mut after = before.clone();
    after.status = next.placement.status;
    after.queue = next.placement.queue.clone();
    after.representative = next.placement.representative.clone();
    after.closed_reason = next.closed_reason;
    after.version += 1;
    after.updated_at = c.now.clone();
    tx.update_conversation(&after)?;
    for (rep, delta) in domain::capacity_moves(&before, &after) {
        if let Some(rep) = tx.add_used_capacity(&rep, delta, c.now_ms)? {
            effects.representatives.push(rep);
        }
    }
    let seq = tx.last_history_seq(&after.id)? + 1;
    let event = HistoryEvent {
        seq,
        at: c.now,
        actor: c.actor,
        action,
        from: Some(before.placement()),
        to: next.placement,
        ruleset: c.ruleset,
        note: c.note,
    };
    tx.append_history(&after.id, &event)?;
    Ok(after)
}

//! How one write runs inside a database transaction, independent of the backend.
//!
//! A backend provides [`Tx`] (load and save primitives inside its transaction); the
//! checks run here in the contract's order: idempotency → 404 (conversation) → 412 →
//! 409 (status) → 404 (target) → 409 (current holder). Eligibility (422) was decided
//! above the store; what that decision read is re-checked here ([`Expect`]).
//!
//! Every check runs before the first write of a command: a refused command has written
//! nothing, so a backend that runs several commands in one transaction need not undo
//! anything when one of them is refused. Each applied command also describes what it
//! changed for the change feed ([`Effects::changes`]); the backend gives those their
//! positions as it commits.
//!
//! The primitives are `async` for PostgreSQL, whose every statement is a round trip;
//! SQLite's complete at once (see `sqlite::now_or_error`).

use super::{
    ChangeKind, Command, DecisionRecord, Expect, Idempotency, NewChange, Outcome, RuleFile, StoreError, WriteRequest,
};
use crate::domain::{
    self, Conversation, HistoryAction, HistoryEvent, Id, Next, Queue, QueueInput, Refusal, Representative,
    RepresentativeInput, SupervisorAction, Target,
};

/// The primitives a backend offers inside one transaction. Reads of a conversation or a
/// representative lock its row until the transaction ends where the backend has row
/// locks (several daemons on one database); [`Tx::share_queue`] and
/// [`Tx::lock_queue`] hold a queue's.
#[allow(
    async_fn_in_trait,
    reason = "used through generics inside the store only; no Send bound is wanted (SQLite's connection is not Sync)"
)]
pub trait Tx {
    async fn conversation(&mut self, id: &Id) -> Result<Option<Conversation>, StoreError>;
    async fn insert_conversation(&mut self, conv: &Conversation) -> Result<(), StoreError>;
    async fn update_conversation(&mut self, conv: &Conversation) -> Result<(), StoreError>;
    async fn last_history_seq(&mut self, id: &Id) -> Result<u64, StoreError>;
    async fn append_history(&mut self, conversation: &Id, event: &HistoryEvent) -> Result<(), StoreError>;

    async fn representative(&mut self, id: &Id) -> Result<Option<Representative>, StoreError>;
    /// Writes the representative's own fields; `used_capacity` is left as stored.
    async fn put_representative(
        &mut self,
        id: &Id,
        input: &RepresentativeInput,
        now: &str,
    ) -> Result<Representative, StoreError>;
    /// `used_capacity += delta`, computed by the database; a positive delta also records
    /// `now_ms` as the time the representative was last given work. Returns the
    /// representative as it now is.
    async fn add_used_capacity(
        &mut self,
        id: &Id,
        delta: i64,
        now_ms: i64,
    ) -> Result<Option<Representative>, StoreError>;

    async fn queue(&mut self, id: &Id) -> Result<Option<Queue>, StoreError>;
    /// As [`Tx::queue`], and no other transaction changes the queue until this one ends
    /// (a write that relied on its version); others may hold it so too.
    async fn share_queue(&mut self, id: &Id) -> Result<Option<Queue>, StoreError>;
    /// As [`Tx::queue`], held for this transaction to change it.
    async fn lock_queue(&mut self, id: &Id) -> Result<Option<Queue>, StoreError>;
    async fn put_queue(&mut self, id: &Id, input: &QueueInput, now: &str) -> Result<Queue, StoreError>;

    /// The fingerprint and outcome remembered for `(token, key)`, if any. Where several
    /// daemons share the database, this also claims the key until the transaction ends,
    /// so a retry of the same request sent to another daemon waits for this one and then
    /// replays its answer.
    async fn idempotent(&mut self, token: &str, key: &str) -> Result<Option<(String, Outcome)>, StoreError>;
    async fn remember(&mut self, token: &str, key: &Idempotency, outcome: &Outcome) -> Result<(), StoreError>;

    /// Appends a decision record (in the transaction of the write it explains).
    async fn record_decision(&mut self, record: &DecisionRecord) -> Result<(), StoreError>;
    /// Keeps a rule-set version's files unless that version is kept already.
    async fn record_ruleset(&mut self, version: &str, files: &[RuleFile]) -> Result<(), StoreError>;
    /// Deletes the decision records made before `before_ms`.
    async fn purge_decisions(&mut self, before_ms: i64) -> Result<(), StoreError>;
}

/// What one write did: the directory records it changed and its changes for the feed.
#[derive(Debug, Default)]
pub struct Effects {
    pub representatives: Vec<Representative>,
    pub queues: Vec<Queue>,
    pub changes: Vec<NewChange>,
}

/// Runs one write. On `Err` nothing was written by it (every check comes before the
/// first write); the caller still rolls back its savepoint or transaction, which also
/// releases an idempotency claim.
pub async fn execute<T: Tx>(tx: &mut T, req: WriteRequest) -> Result<(Outcome, Effects), StoreError> {
    let token = req.author.token_digest.clone();
    if let Some(idem) = &req.idempotency
        && let Some((fingerprint, outcome)) = tx.idempotent(&token, &idem.key).await?
    {
        return if fingerprint == idem.fingerprint {
            Ok((outcome, Effects::default()))
        } else {
            Err(Refusal::IdempotencyKeyReused(idem.key.clone()).into())
        };
    }
    let idempotency = req.idempotency.clone();
    let mut effects = Effects::default();
    let outcome = run(tx, req, &mut effects).await?;
    if let Some(idem) = idempotency {
        tx.remember(&token, &idem, &outcome).await?;
    }
    Ok((outcome, effects))
}

async fn run<T: Tx>(tx: &mut T, req: WriteRequest, effects: &mut Effects) -> Result<Outcome, StoreError> {
    let WriteRequest { author, command, ruleset, now, now_ms, .. } = req;
    let feed = |kind, id: &str, action: &str, version: Option<u64>| NewChange {
        at: now.clone(),
        kind,
        id: id.to_owned(),
        action: action.to_owned(),
        version,
        actor: author.name.clone(),
        touched: Vec::new(),
    };
    match command {
        Command::CreateConversation(input) => {
            let id = match &input.id {
                Some(id) => id.clone(),
                None => generated_id()?,
            };
            if tx.queue(&input.queue).await?.is_none() {
                return Err(Refusal::BadRequest(format!(
                    "queue `{}` does not exist (create it with PUT /v1/queues/{})",
                    input.queue, input.queue
                ))
                .into());
            }
            if tx.conversation(&id).await?.is_some() {
                return Err(Refusal::AlreadyExists(id).into());
            }
            let conv = Conversation::create(id, input, now.clone());
            effects.changes.push(feed(ChangeKind::Conversation, conv.id.as_str(), "created", Some(conv.version)));
            tx.insert_conversation(&conv).await?;
            let event = HistoryEvent {
                seq: 1,
                at: now.clone(),
                actor: author.name.clone(),
                action: HistoryAction::Created,
                from: None,
                to: conv.placement(),
                ruleset,
                note: None,
            };
            tx.append_history(&conv.id, &event).await?;
            Ok(Outcome::Conversation { conversation: conv, created: true })
        }
        Command::Supervise { id, action, if_match, note, expect } => {
            let conv = load(tx, &id, if_match).await?;
            if let Some(expect) = &expect
                && expect.conversation_version != conv.version
            {
                return Err(StoreError::Stale("the conversation"));
            }
            let next = domain::supervise(&conv, &action).map_err(Refusal::from)?;
            if let SupervisorAction::Route(_, target) = &action {
                check_target(tx, &conv, target, expect.as_ref()).await?;
            }
            let history = action.history_action();
            let change_ = Change { actor: author.name.clone(), ruleset, note, now: now.clone(), now_ms };
            let conv = change(tx, conv, next, history, change_, effects).await?;
            if let Some(record) = expect.as_ref().and_then(|e| e.record.as_deref()) {
                tx.record_decision(record).await?;
            }
            Ok(Outcome::Conversation { conversation: conv, created: false })
        }
        Command::Lifecycle { id, event, if_match, note } => {
            let conv = load(tx, &id, if_match).await?;
            let next = domain::lifecycle(&conv, &event).map_err(Refusal::from)?;
            if let domain::LifecycleEvent::Accept { representative } = &event
                && tx.representative(representative).await?.is_none()
            {
                return Err(Refusal::NotFound { kind: "representative", id: representative.clone() }.into());
            }
            let history = event.history_action();
            let change_ = Change { actor: author.name.clone(), ruleset, note, now: now.clone(), now_ms };
            let conv = change(tx, conv, next, history, change_, effects).await?;
            Ok(Outcome::Conversation { conversation: conv, created: false })
        }
        Command::PutRepresentative { id, input } => {
            let created = tx.representative(&id).await?.is_none();
            check_queues(tx, &input.queues).await?;
            let representative = tx.put_representative(&id, &input, &now).await?;
            let action = if created { "created" } else { "replaced" };
            effects.changes.push(feed(ChangeKind::Representative, id.as_str(), action, Some(representative.version)));
            effects.representatives.push(representative.clone());
            Ok(Outcome::Representative { representative, created })
        }
        Command::PatchRepresentative { id, patch } => {
            let current = tx
                .representative(&id)
                .await?
                .ok_or_else(|| Refusal::NotFound { kind: "representative", id: id.clone() })?;
            let input = patch.apply(std::sync::Arc::unwrap_or_clone(current.input));
            check_queues(tx, &input.queues).await?;
            let representative = tx.put_representative(&id, &input, &now).await?;
            effects.changes.push(feed(
                ChangeKind::Representative,
                id.as_str(),
                "updated",
                Some(representative.version),
            ));
            effects.representatives.push(representative.clone());
            Ok(Outcome::Representative { representative, created: false })
        }
        Command::PutQueue { id, input } => {
            let created = tx.lock_queue(&id).await?.is_none();
            let queue = tx.put_queue(&id, &input, &now).await?;
            let action = if created { "created" } else { "replaced" };
            effects.changes.push(feed(ChangeKind::Queue, id.as_str(), action, Some(queue.version)));
            effects.queues.push(queue.clone());
            Ok(Outcome::Queue { queue, created })
        }
        Command::PatchQueue { id, patch } => {
            let current =
                tx.lock_queue(&id).await?.ok_or_else(|| Refusal::NotFound { kind: "queue", id: id.clone() })?;
            let queue = tx.put_queue(&id, &patch.apply(current.input), &now).await?;
            effects.changes.push(feed(ChangeKind::Queue, id.as_str(), "updated", Some(queue.version)));
            effects.queues.push(queue.clone());
            Ok(Outcome::Queue { queue, created: false })
        }
        Command::RulesReloaded { version } => {
            effects.changes.push(feed(ChangeKind::Rules, &version, "reload", None));
            Ok(Outcome::Rules { version })
        }
        Command::Remember(outcome) => Ok(*outcome),
        Command::RecordRuleset { version, files } => {
            tx.record_ruleset(&version, &files).await?;
            Ok(Outcome::Rules { version })
        }
        Command::PurgeDecisions { before_ms } => {
            tx.purge_decisions(before_ms).await?;
            Ok(Outcome::Rules { version: String::new() })
        }
    }
}

fn generated_id() -> Result<Id, StoreError> {
    // A UUIDv7 is time-ordered and always a valid id.
    Id::parse(&uuid::Uuid::now_v7().to_string()).map_err(|e| StoreError::Refused(Refusal::BadRequest(e.to_string())))
}

async fn check_queues<T: Tx>(tx: &mut T, queues: &[Id]) -> Result<(), StoreError> {
    for q in queues {
        if tx.queue(q).await?.is_none() {
            return Err(Refusal::BadRequest(format!(
                "`queues` names queue `{q}`, which does not exist (create it first with PUT /v1/queues/{q})"
            ))
            .into());
        }
    }
    Ok(())
}

/// Loads a conversation and applies `If-Match`.
async fn load<T: Tx>(tx: &mut T, id: &Id, if_match: Option<u64>) -> Result<Conversation, StoreError> {
    let conv = tx.conversation(id).await?.ok_or_else(|| Refusal::NotFound { kind: "conversation", id: id.clone() })?;
    match if_match {
        Some(expected) if expected != conv.version => {
            Err(Refusal::VersionMismatch { id: id.clone(), expected, current: conv.version }.into())
        }
        _ => Ok(conv),
    }
}

/// The target must exist and must not be the current holder (transfer); with an
/// [`Expect`], it must still be as the decision saw it.
async fn check_target<T: Tx>(
    tx: &mut T,
    conv: &Conversation,
    target: &Target,
    expect: Option<&Expect>,
) -> Result<(), StoreError> {
    match target {
        Target::Representative(id) => {
            let rep = tx
                .representative(id)
                .await?
                .ok_or_else(|| Refusal::NotFound { kind: "representative", id: id.clone() })?;
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
            let queue = match expect {
                Some(_) => tx.share_queue(id).await?,
                None => tx.queue(id).await?,
            };
            let queue = queue.ok_or_else(|| Refusal::NotFound { kind: "queue", id: id.clone() })?;
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
async fn change<T: Tx>(
    tx: &mut T,
    before: Conversation,
    next: Next,
    action: HistoryAction,
    c: Change,
    effects: &mut Effects,
) -> Result<Conversation, StoreError> {
    // History never goes back in time within a conversation, whichever daemon (and
    // clock) made the change before this one. Both are RFC 3339 UTC with milliseconds,
    // so they compare as text.
    let at = if c.now < before.updated_at { before.updated_at.clone() } else { c.now };
    let mut after = before.clone();
    after.status = next.placement.status;
    after.queue = next.placement.queue.clone();
    after.representative = next.placement.representative.clone();
    after.closed_reason = next.closed_reason;
    after.version += 1;
    after.updated_at = at.clone();
    if after.status == domain::Status::Open && (before.status != domain::Status::Open || before.queue != after.queue) {
        after.queued_at = Some(at.clone());
    }
    tx.update_conversation(&after).await?;
    let mut touched = Vec::new();
    for (rep, delta) in domain::capacity_moves(&before, &after) {
        if let Some(rep) = tx.add_used_capacity(&rep, delta, c.now_ms).await? {
            touched.push(rep.id.as_str().to_owned());
            effects.representatives.push(rep);
        }
    }
    let seq = tx.last_history_seq(&after.id).await? + 1;
    effects.changes.push(NewChange {
        at: at.clone(),
        kind: ChangeKind::Conversation,
        id: after.id.as_str().to_owned(),
        action: action.as_str().to_owned(),
        version: Some(after.version),
        actor: c.actor.clone(),
        touched,
    });
    let event = HistoryEvent {
        seq,
        at,
        actor: c.actor,
        action,
        from: Some(before.placement()),
        to: next.placement,
        ruleset: c.ruleset,
        note: c.note,
    };
    tx.append_history(&after.id, &event).await?;
    Ok(after)
}

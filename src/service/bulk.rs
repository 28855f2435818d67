//! Bulk actions: one supervisor action over up to [`domain::BULK_MAX`] conversations.
//!
//! Each item is the single action, with its own checks, rules and history event, and its
//! own write: one refused item never undoes another. What makes a bulk cheap is how the
//! writes reach the store. The items are decided first (assign and transfer through the
//! same [`judge`] as the single action, one after another so each sees the capacity the
//! earlier ones will use), then their writes are submitted together, and the store's
//! group commit puts them in a few durable transactions. A write whose decision went stale
//! before it committed is decided again, as a single action would be.
//!
//! Writes that do not depend on each other go in one wave. Decisions that relied on the
//! target representative's capacity do depend on each other (the second assumed the first
//! committed), so those commit one wave each, in the request's order, and a stale one
//! sends every later one back to be decided again: the items keep the request's order
//! exactly as a client sending them one by one would see it.
//!
//! `Idempotency-Key` covers the whole request. Each item's write carries a key of its own
//! derived from it (the request's key, a newline, the item's index: no client key can
//! contain a newline), so a copy of the request running at the same time, or a retry
//! after a failure, replays each item that already committed instead of applying it again.
//! Once every item has an answer, the whole answer is remembered under the request's key
//! by one more write ([`Command::Remember`]); a retry then gets it back as it was. An
//! answer with an item the store failed is not remembered: its retry runs again, and the
//! items that did commit replay through their own keys.

use std::sync::Arc;

use futures_util::future::join_all;

use super::{DECISION_ATTEMPTS, Resolved, ServiceError, Supervisor, judge};
use crate::auth::Actor;
use crate::domain::{
    self, BulkItem, Conversation, Id, ItemResult, Note, Refusal, RoutingAction, SupervisorAction, Target,
};
use crate::routing::Policy;
use crate::store::{Command, Expect, Idempotency, Outcome, StoreError, UsedCapacity};

/// One bulk request, validated: 1 to [`domain::BULK_MAX`] distinct conversations.
#[derive(Clone, Debug)]
pub struct BulkRequest {
    pub action: SupervisorAction,
    pub ids: Vec<Id>,
    pub note: Option<Note>,
}

/// Each item's answer so far.
type Answers = Vec<Option<Result<Outcome, ServiceError>>>;

/// A decided write waiting for its wave.
struct Decided {
    index: usize,
    expect: Expect,
}

impl Supervisor {
    /// Applies `request.action` to each conversation, in order, each on its own.
    pub async fn bulk(
        &self,
        actor: &Actor,
        idem: Option<Idempotency>,
        request: BulkRequest,
    ) -> Result<Vec<BulkItem>, ServiceError> {
        if let Some(first) = self.replay(actor, idem.as_ref()).await? {
            return match (first, idem) {
                (Outcome::Bulk { items }, _) => Ok(items),
                // The same fingerprint names the same method and path: this cannot be.
                (_, key) => Err(Refusal::IdempotencyKeyReused(key.map(|k| k.key).unwrap_or_default()).into()),
            };
        }
        let label = request.action.history_action().as_str();
        let keys: Vec<Option<Idempotency>> = (0..request.ids.len()).map(|i| item_key(idem.as_ref(), i)).collect();
        let mut answers: Answers = (0..request.ids.len()).map(|_| None).collect();
        match &request.action {
            SupervisorAction::Route(kind, target) => {
                self.bulk_route(actor, &request, (*kind, target), &keys, &mut answers).await;
            }
            SupervisorAction::Release | SupervisorAction::Remove => {
                let ruleset = self.routing.snapshot().version().to_owned();
                let writes = request.ids.iter().zip(&keys).map(|(id, key)| {
                    let command = Command::Supervise {
                        id: id.clone(),
                        action: request.action.clone(),
                        if_match: None,
                        note: request.note.clone(),
                        expect: None,
                    };
                    self.commit(actor, key.clone(), command, ruleset.clone())
                });
                for (answer, result) in answers.iter_mut().zip(join_all(writes).await) {
                    *answer = Some(result);
                }
            }
        }
        let mut items = Vec::with_capacity(answers.len());
        let mut remembered = true;
        for ((id, answer), key) in request.ids.into_iter().zip(answers).zip(&keys) {
            let result = answer.unwrap_or_else(|| Err(Refusal::Contended { id: id.clone(), attempts: 0 }.into()));
            // A copy of this request may have committed the item meanwhile.
            let result = self.first_answer_if_refused(actor, key.as_ref(), result).await?;
            let result = self.finish(label, result);
            let result = match result {
                Ok(Outcome::Conversation { conversation, .. }) => ItemResult::Applied(conversation),
                Ok(_) => ItemResult::Failed { uncertain: false },
                Err(ServiceError::Refused(r)) => ItemResult::Refused(r.into()),
                Err(ServiceError::Internal(e)) => {
                    remembered = false;
                    ItemResult::Failed { uncertain: matches!(e, StoreError::Commit(_)) }
                }
            };
            items.push(BulkItem { id, result });
        }
        match idem {
            Some(idem) if remembered => self.remember(actor, idem, items).await,
            _ => Ok(items),
        }
    }

    /// Remembers a bulk answer under its key; if a copy of the request remembered its own
    /// first, that one is the answer.
    async fn remember(
        &self,
        actor: &Actor,
        idem: Idempotency,
        items: Vec<BulkItem>,
    ) -> Result<Vec<BulkItem>, ServiceError> {
        let command = Command::Remember(Box::new(Outcome::Bulk { items: items.clone() }));
        match self.commit(actor, Some(idem), command, String::new()).await {
            Ok(Outcome::Bulk { items }) => Ok(items),
            Ok(_) => Ok(items),
            Err(ServiceError::Internal(e)) => {
                // Every item is durable; only the replay of this answer is lost, and a
                // retry replays each committed item through its own key.
                tracing::warn!(error = %e, "remembering a bulk answer failed");
                Ok(items)
            }
            Err(refused) => Err(refused),
        }
    }

    /// Assign or transfer each conversation to one target: decide in order, commit in
    /// waves, decide again what went stale.
    async fn bulk_route(
        &self,
        actor: &Actor,
        request: &BulkRequest,
        (kind, target): (RoutingAction, &Target),
        keys: &[Option<Idempotency>],
        answers: &mut Answers,
    ) {
        let mut pending: Vec<usize> = (0..request.ids.len()).collect();
        for _ in 0..DECISION_ATTEMPTS {
            if pending.is_empty() {
                return;
            }
            let policy = self.routing.snapshot();
            let reads = join_all(pending.iter().map(|&i| self.conversation(&request.ids[i]))).await;
            let mut convs: Vec<(usize, Conversation)> = Vec::with_capacity(pending.len());
            for (&i, read) in pending.iter().zip(reads) {
                match read.and_then(|c| {
                    domain::supervise(&c, &request.action).map_err(Refusal::from)?;
                    Ok(c)
                }) {
                    Ok(c) => convs.push((i, c)),
                    Err(e) => answers[i] = Some(Err(e)),
                }
            }
            let resolved = self.resolve(target);
            let (decided, refused) = match self.decide_all(&policy, kind, convs, resolved).await {
                Ok(d) => d,
                Err(e) => {
                    for &i in &pending {
                        answers[i].get_or_insert_with(|| Err(ServiceError::Internal(StoreError::Closed)));
                    }
                    tracing::error!(error = %e, "deciding a bulk action failed");
                    return;
                }
            };
            for (i, refusal) in refused {
                answers[i] = Some(Err(refusal.into()));
            }
            pending = self.commit_waves(actor, request, &policy, keys, decided, answers).await;
            if !pending.is_empty() {
                metrics::counter!("switchboard_decisions_retried_total").increment(pending.len() as u64);
                if let Err(e) = self.refresh(target).await {
                    tracing::warn!(error = %e, "reading the bulk action's target again failed");
                }
            }
        }
        for i in pending {
            answers[i] =
                Some(Err(Refusal::Contended { id: request.ids[i].clone(), attempts: DECISION_ATTEMPTS }.into()));
        }
    }

    /// Decides every conversation in order, each seeing the capacity the earlier ones
    /// will take from the target. Returns the decided writes in waves (see the module
    /// documentation) and the refusals.
    async fn decide_all(
        &self,
        policy: &Arc<Box<dyn Policy>>,
        kind: RoutingAction,
        convs: Vec<(usize, Conversation)>,
        resolved: Result<Resolved, Refusal>,
    ) -> Result<(Vec<Vec<Decided>>, Vec<(usize, Refusal)>), ServiceError> {
        let policy = policy.clone();
        self.decide(move || {
            let mut waves: Vec<Vec<Decided>> = vec![Vec::new()];
            let mut refused = Vec::new();
            // Units the earlier items will have added to the target representative.
            let mut planned = 0i64;
            // From the first decision that relied on the target's capacity on, each write
            // waits for the one before it.
            let mut in_order = false;
            for (index, conv) in convs {
                match resolved.clone().and_then(|target| judge(&policy, kind, &conv, &target, planned)) {
                    Ok(expect) => {
                        in_order |= expect.used_capacity != UsedCapacity::Any;
                        if in_order && waves.last().is_some_and(|w| !w.is_empty()) {
                            waves.push(Vec::new());
                        }
                        if let Some(wave) = waves.last_mut() {
                            wave.push(Decided { index, expect });
                        }
                        planned += i64::from(conv.capacity_units);
                    }
                    Err(r) => refused.push((index, r)),
                }
            }
            (waves, refused)
        })
        .await
    }

    /// Commits the decided writes wave by wave, each wave's writes submitted together.
    /// Returns the items to decide again: the stale ones, and after a stale wave every
    /// later one (it relied on the stale one committing first).
    async fn commit_waves(
        &self,
        actor: &Actor,
        request: &BulkRequest,
        policy: &Arc<Box<dyn Policy>>,
        keys: &[Option<Idempotency>],
        waves: Vec<Vec<Decided>>,
        answers: &mut Answers,
    ) -> Vec<usize> {
        let mut again = Vec::new();
        for wave in waves {
            if !again.is_empty() {
                again.extend(wave.iter().map(|d| d.index));
                continue;
            }
            let writes = wave.iter().map(|d| {
                let command = Command::Supervise {
                    id: request.ids[d.index].clone(),
                    action: request.action.clone(),
                    if_match: None,
                    note: request.note.clone(),
                    expect: Some(d.expect.clone()),
                };
                self.commit(actor, keys[d.index].clone(), command, policy.version().to_owned())
            });
            for (d, result) in wave.iter().zip(join_all(writes).await) {
                match result {
                    Err(ServiceError::Internal(StoreError::Stale(_))) => again.push(d.index),
                    other => answers[d.index] = Some(other),
                }
            }
        }
        again.sort_unstable();
        again
    }
}

/// The key of item `index` of a request carrying `idem`.
fn item_key(idem: Option<&Idempotency>, index: usize) -> Option<Idempotency> {
    idem.map(|k| Idempotency { key: format!("{}\n{index}", k.key), fingerprint: k.fingerprint.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_keys_cannot_be_a_clients_key() {
        let idem = Idempotency { key: "k-1".to_owned(), fingerprint: "f".to_owned() };
        let key = item_key(Some(&idem), 7).unwrap();
        assert_eq!(key.key, "k-1\n7");
        assert_eq!(key.fingerprint, "f");
        assert!(key.key.bytes().any(|b| !(b.is_ascii_graphic() || b == b' ')), "a client key is visible ASCII only");
        assert!(item_key(None, 7).is_none());
    }
}

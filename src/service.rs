//! The supervisor's operations: what each API call does, independent of HTTP.
//!
//! A call loads the routing snapshot once ([`Routing::snapshot`]) and hands it to the
//! store, so the checks inside the write transaction and the answer use the same rules.

use std::sync::Arc;

use serde::Serialize;

use crate::auth::Actor;
use crate::domain::{
    Conversation, ConversationInput, HistoryEvent, Id, LifecycleEvent, Note, Queue, QueueFilter, QueueInput, Reason,
    Refusal, Representative, RepresentativeFilter, RepresentativeInput, RoutingAction, SupervisorAction, TargetKind,
};
use crate::routing::{Routing, RoutingContext, Verdict};
use crate::store::{
    Author, Command, ConversationFilter, Idempotency, Outcome, Page, PageRequest, QueuePatch, RepresentativePatch,
    Store, StoreError, WriteRequest,
};

/// Why a call failed: the domain refused it, or something broke inside.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Internal(StoreError),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Refused(r) => ServiceError::Refused(r),
            other => ServiceError::Internal(other),
        }
    }
}

/// What a candidates query asks for.
#[derive(Clone, Debug)]
pub struct CandidateQuery {
    pub action: RoutingAction,
    pub target: TargetKind,
    pub representatives: RepresentativeFilter,
    pub queues: QueueFilter,
    pub explain: bool,
}

/// One eligible target.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Candidate {
    #[schema(value_type = String)]
    pub id: Id,
    pub name: String,
    pub score: f64,
}

/// One target the rules excluded, and why.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Excluded {
    #[schema(value_type = String)]
    pub id: Id,
    pub name: String,
    pub reasons: Vec<Reason>,
}

/// The Assign or Transfer dialog's list.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Candidates {
    #[schema(value_type = String)]
    pub conversation: Id,
    pub action: RoutingAction,
    pub target: TargetKind,
    /// The version of the rules that decided this list.
    pub ruleset: String,
    /// Best first; equal scores by name, then id.
    pub candidates: Vec<Candidate>,
    /// Only with `explain=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded: Option<Vec<Excluded>>,
}

/// A target of either kind, for ranking.
struct Entry {
    id: Id,
    name: String,
    verdict: Verdict,
}

/// The supervisor's operations on the store, under the routing rules in force.
pub struct Supervisor {
    store: Arc<dyn Store>,
    routing: Arc<Routing>,
}

/// Now, as RFC 3339 UTC with milliseconds and as Unix milliseconds.
pub fn now() -> (String, i64) {
    let t = time::OffsetDateTime::now_utc();
    let t = t.replace_nanosecond(t.millisecond() as u32 * 1_000_000).unwrap_or(t);
    let ms = (t.unix_timestamp_nanos() / 1_000_000) as i64;
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    (t.format(&format).unwrap_or_default(), ms)
}

fn record_action(action: &'static str, result: &Result<Outcome, ServiceError>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(ServiceError::Refused(r)) => refusal_label(r),
        Err(ServiceError::Internal(_)) => "error",
    };
    metrics::counter!("switchboard_actions_total", "action" => action, "outcome" => outcome).increment(1);
}

fn refusal_label(r: &Refusal) -> &'static str {
    match r {
        Refusal::NotFound { .. } => "not_found",
        Refusal::BadRequest(_) => "bad_request",
        Refusal::VersionMismatch { .. } => "version_mismatch",
        Refusal::InvalidTransition(_) | Refusal::SameHolder { .. } => "invalid_transition",
        Refusal::AlreadyExists(_) => "already_exists",
        Refusal::IdempotencyKeyReused(_) => "idempotency_key_reused",
        Refusal::NotEligible { .. } => "not_eligible",
    }
}

impl Supervisor {
    pub fn new(store: Arc<dyn Store>, routing: Arc<Routing>) -> Self {
        Self { store, routing }
    }

    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    async fn write(
        &self,
        actor: &Actor,
        idempotency: Option<Idempotency>,
        label: &'static str,
        command: Command,
    ) -> Result<Outcome, ServiceError> {
        let now = now();
        let request = WriteRequest {
            author: Author { name: actor.name.clone(), token_digest: actor.token_digest.clone() },
            idempotency,
            command,
            policy: self.routing.snapshot(),
            now: now.0,
            now_ms: now.1,
        };
        let result = self.store.write(request).await.map_err(ServiceError::from);
        record_action(label, &result);
        if let Err(ServiceError::Internal(e)) = &result {
            tracing::error!(error = %e, action = label, "write failed");
        }
        result
    }

    pub async fn create_conversation(
        &self,
        actor: &Actor,
        idem: Option<Idempotency>,
        input: ConversationInput,
    ) -> Result<Outcome, ServiceError> {
        self.write(actor, idem, "create", Command::CreateConversation(input)).await
    }

    pub async fn supervise(
        &self,
        actor: &Actor,
        idem: Option<Idempotency>,
        id: Id,
        action: SupervisorAction,
        if_match: Option<u64>,
        note: Option<Note>,
    ) -> Result<Outcome, ServiceError> {
        let label = action.history_action().as_str();
        self.write(actor, idem, label, Command::Supervise { id, action, if_match, note }).await
    }

    pub async fn lifecycle(
        &self,
        actor: &Actor,
        idem: Option<Idempotency>,
        id: Id,
        event: LifecycleEvent,
        if_match: Option<u64>,
        note: Option<Note>,
    ) -> Result<Outcome, ServiceError> {
        let label = event.history_action().as_str();
        self.write(actor, idem, label, Command::Lifecycle { id, event, if_match, note }).await
    }

    pub async fn put_representative(
        &self,
        actor: &Actor,
        idem: Option<Idempotency>,
        id: Id,
        input: RepresentativeInput,
    ) -> Result<Outcome, ServiceError> {
        self.write(actor, idem, "put_representative", Command::PutRepresentative { id, input }).await
    }

    pub async fn patch_representative(
        &self,
        actor: &Actor,
        idem: Option<Idempotency>,
        id: Id,
        patch: RepresentativePatch,
    ) -> Result<Outcome, ServiceError> {
        self.write(actor, idem, "patch_representative", Command::PatchRepresentative { id, patch }).await
    }

    pub async fn put_queue(
        &self,
        actor: &Actor,
        idem: Option<Idempotency>,
        id: Id,
        input: QueueInput,
    ) -> Result<Outcome, ServiceError> {
        self.write(actor, idem, "put_queue", Command::PutQueue { id, input }).await
    }

    pub async fn patch_queue(
        &self,
        actor: &Actor,
        idem: Option<Idempotency>,
        id: Id,
        patch: QueuePatch,
    ) -> Result<Outcome, ServiceError> {
        self.write(actor, idem, "patch_queue", Command::PatchQueue { id, patch }).await
    }

    pub async fn conversation(&self, id: &Id) -> Result<Conversation, ServiceError> {
        self.store
            .conversation(id)
            .await?
            .ok_or_else(|| Refusal::NotFound { kind: "conversation", id: id.clone() }.into())
    }

    pub async fn conversations(
        &self,
        filter: ConversationFilter,
        page: PageRequest,
    ) -> Result<Page<Conversation>, ServiceError> {
        Ok(self.store.conversations(filter, page).await?)
    }

    pub async fn history(&self, id: &Id) -> Result<Vec<HistoryEvent>, ServiceError> {
        self.store.history(id).await?.ok_or_else(|| Refusal::NotFound { kind: "conversation", id: id.clone() }.into())
    }

    pub async fn representative(&self, id: &Id) -> Result<Representative, ServiceError> {
        self.store
            .representative(id)
            .await?
            .ok_or_else(|| Refusal::NotFound { kind: "representative", id: id.clone() }.into())
    }

    pub async fn representatives(
        &self,
        filter: RepresentativeFilter,
        page: PageRequest,
    ) -> Result<Page<Representative>, ServiceError> {
        Ok(self.store.representatives(filter, page).await?)
    }

    pub async fn queue(&self, id: &Id) -> Result<Queue, ServiceError> {
        self.store.queue(id).await?.ok_or_else(|| Refusal::NotFound { kind: "queue", id: id.clone() }.into())
    }

    pub async fn queues(&self, filter: QueueFilter, page: PageRequest) -> Result<Page<Queue>, ServiceError> {
        Ok(self.store.queues(filter, page).await?)
    }

    /// The Assign or Transfer dialog: eligible targets, best first.
    pub async fn candidates(&self, id: &Id, query: CandidateQuery) -> Result<Candidates, ServiceError> {
        let policy = self.routing.snapshot();
        let conv = self.conversation(id).await?;
        if !query.action.allowed_from(conv.status) {
            let action = match query.action {
                RoutingAction::Assign => crate::domain::HistoryAction::Assign,
                RoutingAction::Transfer => crate::domain::HistoryAction::Transfer,
            };
            return Err(Refusal::InvalidTransition(crate::domain::InvalidTransition {
                action: action.as_str(),
                status: conv.status,
                hint: "",
            })
            .into());
        }
        let everything = PageRequest { after: None, limit: usize::MAX };
        enum Targets {
            Representatives(Vec<Representative>),
            Queues(Vec<Queue>),
        }
        let targets = match query.target {
            TargetKind::Representative => {
                let mut reps = self.store.representatives(query.representatives.clone(), everything).await?.items;
                if query.action == RoutingAction::Transfer {
                    reps.retain(|r| conv.representative.as_ref() != Some(&r.id));
                }
                Targets::Representatives(reps)
            }
            TargetKind::Queue => Targets::Queues(self.store.queues(query.queues.clone(), everything).await?.items),
        };
        // Rules may call plugins, which block: evaluate off the async workers.
        let (action, explain) = (query.action, query.explain);
        let evaluated = policy.clone();
        let (conv, entries) = tokio::task::spawn_blocking(move || {
            let ctx = RoutingContext { action, conversation: &conv, explain };
            let entries: Vec<Entry> = match &targets {
                Targets::Representatives(reps) => {
                    let refs: Vec<&Representative> = reps.iter().collect();
                    let verdicts = evaluated.representatives(ctx, &refs);
                    reps.iter()
                        .zip(verdicts)
                        .map(|(r, verdict)| Entry { id: r.id.clone(), name: r.input.name.as_str().to_owned(), verdict })
                        .collect()
                }
                Targets::Queues(queues) => {
                    let refs: Vec<&Queue> = queues.iter().collect();
                    let verdicts = evaluated.queues(ctx, &refs);
                    queues
                        .iter()
                        .zip(verdicts)
                        .map(|(q, verdict)| Entry { id: q.id.clone(), name: q.input.name.as_str().to_owned(), verdict })
                        .collect()
                }
            };
            (conv, entries)
        })
        .await
        .map_err(|_| ServiceError::Internal(StoreError::Closed))?;
        let mut candidates = Vec::new();
        let mut excluded = Vec::new();
        for Entry { id, name, verdict } in entries {
            match verdict {
                Verdict::Eligible { score } => candidates.push(Candidate { id, name, score }),
                Verdict::Excluded { reasons } => excluded.push(Excluded { id, name, reasons }),
            }
        }
        candidates.sort_by(|a, b| {
            b.score.total_cmp(&a.score).then_with(|| a.name.cmp(&b.name)).then_with(|| a.id.cmp(&b.id))
        });
        Ok(Candidates {
            conversation: conv.id,
            action: query.action,
            target: query.target,
            ruleset: policy.version().to_owned(),
            candidates,
            excluded: query.explain.then_some(excluded),
        })
    }
}

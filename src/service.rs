//! The supervisor's operations: what each API call does, independent of HTTP.
//!
//! Decide above, commit below. A call takes the routing snapshot in force once. For an
//! assign or transfer it reads the conversation, runs the contract's checks, and asks
//! the policy about the target against the routing state in memory ([`Directory`]), on
//! a bounded pool of blocking threads, never on the store's writer. The write it then
//! hands the store carries what the decision read ([`Expect`]); if that changed before
//! the commit, the store applies nothing and the call decides again (a bounded number of
//! times). Every committed write's changed representatives and queues are applied to the
//! directory before the answer is sent.

mod bulk;
mod distribute;
mod stats;

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::auth::Actor;
use crate::domain::{
    self, Conversation, ConversationFilter, ConversationInput, HistoryEvent, Id, LifecycleEvent, Note, Page,
    PageRequest, Queue, QueueFilter, QueueInput, QueuePatch, Refusal, Representative, RepresentativeFilter,
    RepresentativeInput, RepresentativePatch, RoutingAction, SupervisorAction, Target, TargetKind,
};
use crate::routing::{Backlog, CapacityReliance, Directory, Policy, Routing, RoutingContext, Verdict};
use crate::store::{
    Applied, Author, Change, ChangeKind, Command, DecidedTarget, DecisionRecord, Expect, RuleFile, Store, StoreError,
    UsedCapacity, WriteRequest,
};

pub use crate::routing::{Candidate, CandidateQuery, Candidates, Excluded};
pub use crate::store::{Idempotency, Outcome};
pub use bulk::BulkRequest;
pub use distribute::DistributeRequest;
pub use stats::{ConversationCounts, QueueStats, Stats};

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

/// How many times an assign or transfer is decided again when what it relied on changed
/// before it committed.
const DECISION_ATTEMPTS: u32 = 8;

/// The supervisor's operations on the store, under the routing rules in force.
pub struct Supervisor {
    store: Arc<dyn Store>,
    routing: Arc<Routing>,
    directory: Arc<Directory>,
    /// The conversations that are not closed, per queue (statistics, distribution).
    backlog: Arc<Backlog>,
    /// Bounds the routing decisions (rules and plugins) running at once.
    deciders: Arc<Semaphore>,
    /// The last change-feed position this daemon knows of: its own commits, and (on a
    /// shared database) what the follower read. Feed streams wait on it.
    feed_tip: tokio::sync::watch::Sender<u64>,
}

/// How often a daemon on a shared database reads the change feed for the other daemons'
/// writes (so a change made through one is in every other's candidates within 100 ms).
pub const FOLLOW_INTERVAL: std::time::Duration = std::time::Duration::from_millis(25);

/// The actor of feed items the daemon makes itself (rules reloads).
pub const DAEMON_ACTOR: &str = "switchboard";

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
        Refusal::Contended { .. } => "conflict",
    }
}

impl Supervisor {
    /// Loads the routing state from the store; the daemon serves once this returns.
    pub async fn start(store: Arc<dyn Store>, routing: Arc<Routing>) -> Result<Self, ServiceError> {
        let started = std::time::Instant::now();
        // The feed's head before the listing: following the feed from here then misses
        // nothing written meanwhile (what it brings again is applied by revision).
        let head = store.feed_head().await?;
        let (representatives, queues) = store.directory().await?;
        let directory = Arc::new(Directory::load(representatives, queues));
        directory.warm(&routing.snapshot());
        let (reps, queues) = directory.len();
        tracing::info!(
            representatives = reps,
            queues,
            ms = started.elapsed().as_millis() as u64,
            "routing state loaded from the store"
        );
        // Decisions are CPU work (the rules' pass, matchers): one per core, so a matcher's
        // wall-clock deadline is not spent waiting for a core another decision holds.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let started = std::time::Instant::now();
        let backlog = Arc::new(Backlog::load(open_conversations(store.as_ref()).await?));
        tracing::info!(
            conversations = backlog.len(),
            ms = started.elapsed().as_millis() as u64,
            "conversations not closed loaded from the store"
        );
        let (feed_tip, _) = tokio::sync::watch::channel(head);
        Ok(Self { store, routing, directory, backlog, deciders: Arc::new(Semaphore::new(cores)), feed_tip })
    }

    /// On a shared database, follows the change feed for as long as the supervisor
    /// lives, applying the other daemons' changes to the routing state.
    pub fn follow(self: &Arc<Self>) {
        if !self.store.shared() {
            return;
        }
        let me = Arc::downgrade(self);
        let mut after = *self.feed_tip.borrow();
        tokio::spawn(async move {
            let mut failing = false;
            let mut tick = tokio::time::interval(FOLLOW_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(me) = me.upgrade() else { return };
                match me.catch_up(after).await {
                    Ok(next) => {
                        if failing {
                            tracing::info!(position = next, "following the change feed again");
                        }
                        failing = false;
                        after = next;
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "reading the change feed failed; retrying");
                        }
                        failing = true;
                    }
                }
            }
        });
    }

    /// Reads the feed after `after` to its end, applies the records it names to the
    /// routing state, and returns the last position read.
    async fn catch_up(&self, mut after: u64) -> Result<u64, StoreError> {
        loop {
            let items = self.store.changes(after, 1000).await?;
            let Some(last) = items.last().map(|c| c.position) else { return Ok(after) };
            let (mut reps, mut queues, mut convs) = (Vec::new(), Vec::new(), Vec::new());
            for item in &items {
                match item.kind {
                    ChangeKind::Representative => reps.push(item.id.as_str()),
                    ChangeKind::Queue => queues.push(item.id.as_str()),
                    ChangeKind::Conversation => {
                        reps.extend(item.touched.iter().map(String::as_str));
                        // Read again only what the backlog does not hold as new already.
                        let held = self.backlog.version(&item.id);
                        let closes = matches!(item.action.as_str(), "remove" | "resolve");
                        if held.is_some_and(|v| v < item.version.unwrap_or(u64::MAX)) || (held.is_none() && !closes) {
                            convs.push(item.id.as_str());
                        }
                    }
                    ChangeKind::Rules => {}
                }
            }
            convs.sort_unstable();
            convs.dedup();
            self.reread_conversations(convs).await?;
            reps.sort_unstable();
            reps.dedup();
            queues.sort_unstable();
            queues.dedup();
            let ids = |v: Vec<&str>| -> Vec<Id> { v.into_iter().filter_map(|id| Id::parse(id).ok()).collect() };
            let (reps, queues) = self.store.records(&ids(reps), &ids(queues)).await?;
            self.directory.apply(reps, queues);
            self.advance_feed(last);
            after = last;
            if items.len() < 1000 {
                return Ok(after);
            }
        }
    }

    /// Reads the named conversations from the store into the backlog, in one read.
    async fn reread_conversations(&self, ids: Vec<&str>) -> Result<(), StoreError> {
        let ids: Vec<Id> = ids.into_iter().filter_map(|id| Id::parse(id).ok()).collect();
        let found = self.store.conversations_named(&ids).await?;
        let mut missing: std::collections::HashSet<&Id> = ids.iter().collect();
        for conv in &found {
            missing.remove(&conv.id);
            self.backlog.apply_read(conv);
        }
        for id in missing {
            self.backlog.forget(id);
        }
        Ok(())
    }

    fn advance_feed(&self, position: u64) {
        self.feed_tip.send_if_modified(|tip| {
            let newer = position > *tip;
            if newer {
                *tip = position;
            }
            newer
        });
    }

    /// Whether the store can take writes (`/healthz`).
    pub fn store_health(&self) -> Result<(), String> {
        self.store.health()
    }

    /// The last change-feed position this daemon knows of (see `feed_tip`).
    pub fn feed_head(&self) -> u64 {
        *self.feed_tip.borrow()
    }

    /// Wakes when the feed may have items after the position last seen.
    pub fn feed_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.feed_tip.subscribe()
    }

    /// The change feed after `after`, at most `limit` items.
    pub async fn changes(&self, after: u64, limit: usize) -> Result<Vec<Change>, ServiceError> {
        Ok(self.store.changes(after, limit).await?)
    }

    /// Keeps the rule files of the rule set in force beside the decisions made under it
    /// (once per version; a fixed policy has none).
    pub async fn record_ruleset(&self) {
        let (version, sources) = self.routing.rule_files();
        if sources.is_empty() {
            return;
        }
        let files = sources.iter().map(|s| RuleFile { name: s.name.clone(), text: s.text.clone() }).collect();
        let actor = Actor::daemon(DAEMON_ACTOR);
        if let Err(e) = self.commit(&actor, None, Command::RecordRuleset { version, files }, String::new()).await {
            tracing::warn!(error = %e, "the rule files in force could not be kept for replay");
        }
    }

    /// Forgets the decision records older than `retention`.
    pub async fn purge_decisions(&self, retention: std::time::Duration) {
        let before_ms = crate::clock::now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let actor = Actor::daemon(DAEMON_ACTOR);
        if let Err(e) = self.commit(&actor, None, Command::PurgeDecisions { before_ms }, String::new()).await {
            tracing::warn!(error = %e, "purging old decision records failed");
        }
    }

    /// Records in the change feed that rule set `version` came into force.
    pub async fn rules_reloaded(&self, version: String) {
        self.record_ruleset().await;
        let actor = Actor::daemon(DAEMON_ACTOR);
        let result = self.commit(&actor, None, Command::RulesReloaded { version }, String::new()).await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "the rules reload could not be recorded in the change feed");
        }
    }

    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    /// The routing state in memory.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Runs a routing decision (rules, plugins) on the bounded pool, off the async workers.
    async fn decide<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, ServiceError> {
        let _permit = self.deciders.acquire().await.map_err(|_| ServiceError::Internal(StoreError::Closed))?;
        tokio::task::spawn_blocking(f).await.map_err(|_| ServiceError::Internal(StoreError::Closed))
    }

    /// Commits one write and applies what it changed to the routing state.
    async fn commit(
        &self,
        actor: &Actor,
        idempotency: Option<Idempotency>,
        command: Command,
        ruleset: String,
    ) -> Result<Outcome, ServiceError> {
        let (now, now_ms) = crate::clock::now();
        let request = WriteRequest {
            author: Author { name: actor.name.clone(), token_digest: actor.token_digest.clone() },
            idempotency,
            command,
            ruleset,
            now,
            now_ms,
        };
        let Applied { outcome, position, representatives, queues } = self.store.write(request).await?;
        self.directory.apply(representatives, queues);
        if let Outcome::Conversation { conversation, .. } = &outcome {
            self.backlog.apply(conversation);
        }
        if let Some(position) = position {
            self.advance_feed(position);
        }
        Ok(outcome)
    }

    async fn write(
        &self,
        actor: &Actor,
        idempotency: Option<Idempotency>,
        label: &'static str,
        command: Command,
    ) -> Result<Outcome, ServiceError> {
        let ruleset = self.routing.snapshot().version().to_owned();
        let result = self.commit(actor, idempotency, command, ruleset).await;
        self.finish(label, result)
    }

    fn finish(&self, label: &'static str, result: Result<Outcome, ServiceError>) -> Result<Outcome, ServiceError> {
        record_action(label, &result);
        if let Err(ServiceError::Internal(e)) = &result {
            tracing::error!(error = %e, action = label, "write failed");
        }
        result
    }

    /// The first answer to a request carrying an `Idempotency-Key` already used, if any.
    async fn replay(&self, actor: &Actor, idem: Option<&Idempotency>) -> Result<Option<Outcome>, ServiceError> {
        let Some(idem) = idem else { return Ok(None) };
        match self.store.idempotent(&actor.token_digest, &idem.key).await? {
            None => Ok(None),
            Some((fingerprint, outcome)) if fingerprint == idem.fingerprint => Ok(Some(outcome)),
            Some(_) => Err(Refusal::IdempotencyKeyReused(idem.key.clone()).into()),
        }
    }

    /// Decides whether `conv` may go to `target`: the target must exist (404), not be
    /// the holder (409), and be eligible (422). Returns what the decision relied on.
    async fn decide_target(
        &self,
        policy: &Arc<Box<dyn Policy>>,
        action: RoutingAction,
        conv: &Conversation,
        target: &Target,
    ) -> Result<Expect, ServiceError> {
        let resolved = self.resolve(target)?;
        let (policy, conv) = (policy.clone(), conv.clone());
        Ok(self.decide(move || judge(&policy, action, &conv, &resolved, 0)).await??)
    }

    /// The target as the routing state in memory holds it (`404` when it does not exist).
    fn resolve(&self, target: &Target) -> Result<Resolved, Refusal> {
        match target {
            Target::Representative(id) => self
                .directory
                .representative(id)
                .map(Resolved::Representative)
                .ok_or_else(|| Refusal::NotFound { kind: "representative", id: id.clone() }),
            Target::Queue(id) => self
                .directory
                .queue(id)
                .map(Resolved::Queue)
                .ok_or_else(|| Refusal::NotFound { kind: "queue", id: id.clone() }),
        }
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
        let SupervisorAction::Route(kind, target) = &action else {
            return self
                .write(actor, idem, label, Command::Supervise { id, action, if_match, note, expect: None })
                .await;
        };
        let result = self.route(actor, idem.clone(), &id, (*kind, target), &action, if_match, note).await;
        self.finish(label, result)
    }

    /// An assign or transfer: decide against the state in memory, then commit with what
    /// the decision relied on; decide again while that keeps changing.
    #[expect(clippy::too_many_arguments, reason = "the parts of one action request, passed through once")]
    async fn route(
        &self,
        actor: &Actor,
        idem: Option<Idempotency>,
        id: &Id,
        (kind, target): (RoutingAction, &Target),
        action: &SupervisorAction,
        if_match: Option<u64>,
        note: Option<Note>,
    ) -> Result<Outcome, ServiceError> {
        if let Some(first) = self.replay(actor, idem.as_ref()).await? {
            return Ok(first);
        }
        let decided: Result<Outcome, ServiceError> = async {
            for _ in 0..DECISION_ATTEMPTS {
                let policy = self.routing.snapshot();
                let conv = self.conversation(id).await?;
                if let Some(expected) = if_match
                    && expected != conv.version
                {
                    return Err(Refusal::VersionMismatch { id: id.clone(), expected, current: conv.version }.into());
                }
                domain::supervise(&conv, action).map_err(Refusal::from)?;
                let expect = self.decide_target(&policy, kind, &conv, target).await?;
                let command = Command::Supervise {
                    id: id.clone(),
                    action: action.clone(),
                    if_match,
                    note: note.clone(),
                    expect: Some(expect),
                };
                match self.commit(actor, idem.clone(), command, policy.version().to_owned()).await {
                    Err(ServiceError::Internal(StoreError::Stale(what))) => {
                        metrics::counter!("switchboard_decisions_retried_total").increment(1);
                        tracing::debug!(conversation = %id, "{what} changed before the commit; deciding again");
                        // Another daemon may have made the change, and this one's feed reader
                        // may not have brought it yet: read the target as stored now.
                        self.refresh(target).await?;
                    }
                    other => return other,
                }
            }
            Err(Refusal::Contended { id: id.clone(), attempts: DECISION_ATTEMPTS }.into())
        }
        .await;
        self.first_answer_if_refused(actor, idem.as_ref(), decided).await?
    }

    /// `result`, unless it is a refusal and a copy of the request (the same
    /// `Idempotency-Key`) committed while this one was being decided: then the copy's
    /// answer, as the client would have had it a moment later. The copy's effect and its
    /// answer are committed together, so a decision that saw the one finds the other.
    async fn first_answer_if_refused(
        &self,
        actor: &Actor,
        idem: Option<&Idempotency>,
        result: Result<Outcome, ServiceError>,
    ) -> Result<Result<Outcome, ServiceError>, ServiceError> {
        if let Err(ServiceError::Refused(_)) = &result
            && let Some(first) = self.replay(actor, idem).await?
        {
            return Ok(Ok(first));
        }
        Ok(result)
    }

    /// Reads `target` from the store into the routing state.
    async fn refresh(&self, target: &Target) -> Result<(), ServiceError> {
        let (reps, queues) = match target {
            Target::Representative(id) => self.store.records(std::slice::from_ref(id), &[]).await?,
            Target::Queue(id) => self.store.records(&[], std::slice::from_ref(id)).await?,
        };
        self.directory.apply(reps, queues);
        Ok(())
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

    /// The Assign or Transfer dialog: eligible targets, best first, from the routing
    /// state in memory.
    pub async fn candidates(&self, id: &Id, query: CandidateQuery) -> Result<Candidates, ServiceError> {
        let policy = self.routing.snapshot();
        let conv = self.conversation(id).await?;
        if !query.action.allowed_from(conv.status) {
            let action = match query.action {
                RoutingAction::Assign => domain::HistoryAction::Assign,
                RoutingAction::Transfer => domain::HistoryAction::Transfer,
            };
            return Err(Refusal::InvalidTransition(domain::InvalidTransition {
                action: action.as_str(),
                status: conv.status,
                hint: "",
            })
            .into());
        }
        let directory = self.directory.clone();
        let ruleset = policy.version().to_owned();
        let (conv, query, ranked) = self
            .decide(move || {
                let ctx = RoutingContext {
                    action: query.action,
                    conversation: &conv,
                    explain: query.explain,
                    now_ms: crate::clock::now_ms(),
                };
                let ranked = match query.target {
                    TargetKind::Representative => {
                        let holder = conv.representative.as_ref().filter(|_| query.action == RoutingAction::Transfer);
                        directory.rank_representatives(&policy, ctx, &query.representatives, holder, query.limit)
                    }
                    TargetKind::Queue => directory.rank_queues(&policy, ctx, &query.queues, query.limit),
                };
                (conv, query, ranked)
            })
            .await?;
        Ok(Candidates {
            conversation: conv.id,
            action: query.action,
            target: query.target,
            ruleset,
            candidates: ranked.candidates,
            total: ranked.total,
            excluded: query.explain.then_some(ranked.excluded),
            excluded_total: query.explain.then_some(ranked.excluded_total),
        })
    }
}

/// A routing target found in the routing state.
#[derive(Clone)]
enum Resolved {
    Representative(Arc<Representative>),
    Queue(Arc<Queue>),
}

/// Whether `conv` may go to `target`, the target not being its holder (409) and being
/// eligible under `policy` (422), as if the representative already used `planned` more
/// capacity units (decisions taken one after another before any of them commits). Returns
/// what the decision relied on. Runs the policy: call it off the async workers.
fn judge(
    policy: &Arc<Box<dyn Policy>>,
    action: RoutingAction,
    conv: &Conversation,
    target: &Resolved,
    planned: i64,
) -> Result<Expect, Refusal> {
    let ctx = RoutingContext { action, conversation: conv, explain: true, now_ms: crate::clock::now_ms() };
    let (verdict, target_version, used_capacity, id, kind, seen) = match target {
        Resolved::Representative(rep) => {
            if conv.representative.as_ref() == Some(&rep.id) && conv.status != domain::Status::Open {
                return Err(Refusal::SameHolder { conversation: conv.id.clone(), representative: rep.id.clone() });
            }
            let mut judged = (**rep).clone();
            judged.used_capacity += planned;
            judged.free_capacity -= planned;
            let verdict = policy.representatives(ctx, &[&judged]).pop();
            let used = match policy.capacity_reliance(&ctx) {
                CapacityReliance::None => UsedCapacity::Any,
                CapacityReliance::FreeAtLeast(n) => UsedCapacity::AtMost(i64::from(rep.input.capacity) - n),
                CapacityReliance::Exact => UsedCapacity::Exactly(rep.used_capacity + planned),
            };
            let last_assigned_ms = judged.last_assigned_ms;
            let seen = DecidedTarget::Representative { record: judged, last_assigned_ms };
            (verdict, rep.version, used, &rep.id, "representative", seen)
        }
        Resolved::Queue(queue) => {
            let verdict = policy.queues(ctx, &[queue.as_ref()]).pop();
            let seen = DecidedTarget::Queue { record: (**queue).clone() };
            (verdict, queue.version, UsedCapacity::Any, &queue.id, "queue", seen)
        }
    };
    let reasons = match verdict {
        Some(Verdict::Eligible { score, .. }) => {
            let record = Some(decision_record(policy, &ctx, seen, score));
            return Ok(Expect { conversation_version: conv.version, target_version, used_capacity, record });
        }
        Some(Verdict::Excluded { reasons }) => reasons,
        None => Vec::new(),
    };
    Err(Refusal::NotEligible { kind, id: id.clone(), ruleset: policy.version().to_owned(), reasons })
}

/// What the rules saw for a target they let through, to keep as a decision record.
pub(crate) fn decision_record(
    policy: &Arc<Box<dyn Policy>>,
    ctx: &RoutingContext<'_>,
    target: DecidedTarget,
    score: f64,
) -> Arc<DecisionRecord> {
    Arc::new(DecisionRecord {
        at_ms: ctx.now_ms,
        action: ctx.action,
        ruleset: policy.version().to_owned(),
        conversation: ctx.conversation.clone(),
        target,
        score,
    })
}

/// Every conversation that is not closed, as the store holds it now.
async fn open_conversations(store: &dyn Store) -> Result<Vec<Conversation>, StoreError> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store.conversations(ConversationFilter::default(), PageRequest { after, limit: 10_000 }).await?;
        all.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(all),
        }
    }
}

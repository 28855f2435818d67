//! Distribution: a queue's open conversations, each to its best candidate.
//!
//! Plan, then bind, as the scheduler does. The plan takes at most `max` of the queue's
//! open conversations in the order they are served (the [`Backlog`](crate::routing::Backlog)
//! holds that order), and for each asks the candidates ranking of the Assign dialog
//! (`action=assign&target=representative`) for its first, on a private copy of the
//! routing state on which each planned assignment already took its capacity (and reset
//! its representative's idle time), so each conversation sees what the earlier ones
//! used. A dry run answers the plan.
//!
//! The real run commits the plan's assignments as writes carrying what each decision
//! relied on ([`Expect`]): the conversation's version and the representative's version
//! and capacity as the plan left them. Assignments to different representatives do not
//! depend on each other and are submitted together (the store's group commit batches
//! them); the second assignment to one representative waits for the first (a wave per
//! rank). What a concurrent change made stale, and everything planned after it, is
//! planned again against the state then. So a supervisor acting on the same queue at the
//! same time can never make a conversation assigned twice or a capacity rule broken: the
//! store refuses any write whose facts changed.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::join_all;

use super::{DECISION_ATTEMPTS, ServiceError, Supervisor, decision_record, record_action};
use crate::auth::Actor;
use crate::domain::{
    Assignment, Conversation, Distribution, Id, Refusal, Representative, RepresentativeFilter, RoutingAction, Status,
    SupervisorAction, Target, Unassigned,
};
use crate::routing::{CapacityReliance, Directory, Policy, RoutingContext};
use crate::store::{Command, DecidedTarget, Expect, Idempotency, Outcome, StoreError, UsedCapacity};

/// A distribution request, validated.
#[derive(Clone, Copy, Debug)]
pub struct DistributeRequest {
    /// 1 to [`crate::domain::BULK_MAX`].
    pub max: usize,
    pub dry_run: bool,
}

/// What the plan says of one conversation.
enum Step {
    Assign { representative: Id, score: f64, expect: Expect },
    Leave { reason: String },
}

impl Supervisor {
    /// Distributes (or, dry, plans) the queue's open conversations.
    pub async fn distribute(
        &self,
        actor: &Actor,
        idem: Option<Idempotency>,
        queue: &Id,
        request: DistributeRequest,
    ) -> Result<Distribution, ServiceError> {
        if self.directory.queue(queue).is_none() {
            return Err(Refusal::NotFound { kind: "queue", id: queue.clone() }.into());
        }
        let idem = idem.filter(|_| !request.dry_run);
        if let Some(first) = self.replay(actor, idem.as_ref()).await? {
            return match first {
                Outcome::Distribution(d) => Ok(d),
                _ => Err(Refusal::IdempotencyKeyReused(idem.map(|k| k.key).unwrap_or_default()).into()),
            };
        }
        let policy = self.routing.snapshot();
        let ids = self.backlog.open_in_order(queue, request.max);
        let convs: Vec<Conversation> = join_all(ids.iter().map(|id| self.store.conversation(id)))
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .filter(|c| c.status == Status::Open && &c.queue == queue)
            .collect();
        let plan = self.plan(&policy, convs.clone()).await?;
        if request.dry_run {
            return Ok(answer(policy.version(), &convs, plan.into_iter().map(Some).collect()));
        }
        let done = self.bind(actor, idem.as_ref(), &policy, convs.clone(), plan).await?;
        let distribution = answer(policy.version(), &convs, done);
        match idem {
            Some(idem) => self.remember_distribution(actor, idem, distribution).await,
            None => Ok(distribution),
        }
    }

    async fn remember_distribution(
        &self,
        actor: &Actor,
        idem: Idempotency,
        distribution: Distribution,
    ) -> Result<Distribution, ServiceError> {
        let command = Command::Remember(Box::new(Outcome::Distribution(distribution.clone())));
        match self.commit(actor, Some(idem), command, String::new()).await {
            Ok(Outcome::Distribution(first)) => Ok(first),
            Ok(_) => Ok(distribution),
            Err(ServiceError::Internal(e)) => {
                tracing::warn!(error = %e, "remembering a distribution's answer failed");
                Ok(distribution)
            }
            Err(refused) => Err(refused),
        }
    }

    /// The plan for `convs`, in order, on a copy of the routing state.
    async fn plan(&self, policy: &Arc<Box<dyn Policy>>, convs: Vec<Conversation>) -> Result<Vec<Step>, ServiceError> {
        let scratch = self.directory.snapshot();
        let policy = policy.clone();
        self.decide(move || plan_on(&scratch, &policy, &convs)).await
    }

    /// Commits the plan's assignments in waves; plans again what went stale. Returns each
    /// conversation's final step (`None`: it kept changing).
    async fn bind(
        &self,
        actor: &Actor,
        idem: Option<&Idempotency>,
        policy: &Arc<Box<dyn Policy>>,
        convs: Vec<Conversation>,
        plan: Vec<Step>,
    ) -> Result<Vec<Option<Step>>, ServiceError> {
        let mut done: Vec<Option<Step>> = (0..convs.len()).map(|_| None).collect();
        // Indexes of `convs` still to commit, with their steps.
        let mut todo: Vec<(usize, Step)> = plan.into_iter().enumerate().collect();
        for attempt in 0..DECISION_ATTEMPTS {
            let mut waves: Vec<Vec<(usize, Id, f64, Expect)>> = Vec::new();
            let mut rank: HashMap<Id, usize> = HashMap::new();
            for (i, step) in todo {
                match step {
                    Step::Assign { representative, score, expect } => {
                        let k = rank.entry(representative.clone()).or_insert(0);
                        if waves.len() <= *k {
                            waves.push(Vec::new());
                        }
                        waves[*k].push((i, representative, score, expect));
                        *k += 1;
                    }
                    leave @ Step::Leave { .. } => done[i] = Some(leave),
                }
            }
            let mut again: Vec<usize> = Vec::new();
            let mut stale_reps: Vec<Id> = Vec::new();
            for wave in waves {
                if !again.is_empty() {
                    again.extend(wave.iter().map(|w| w.0));
                    continue;
                }
                let writes = wave.iter().map(|(i, rep, _, expect)| {
                    let conv = &convs[*i];
                    let command = Command::Supervise {
                        id: conv.id.clone(),
                        action: SupervisorAction::Route(RoutingAction::Assign, Target::Representative(rep.clone())),
                        if_match: None,
                        note: None,
                        expect: Some(expect.clone()),
                    };
                    let key = idem.map(|k| Idempotency {
                        key: format!("{}\n{}", k.key, conv.id),
                        fingerprint: k.fingerprint.clone(),
                    });
                    self.commit(actor, key, command, policy.version().to_owned())
                });
                let results = join_all(writes).await;
                for ((i, rep, score, expect), result) in wave.into_iter().zip(results) {
                    match result {
                        Err(ServiceError::Internal(StoreError::Stale(_))) => {
                            again.push(i);
                            stale_reps.push(rep);
                        }
                        result => {
                            record_action("assign", &result);
                            done[i] = Some(match result {
                                Ok(Outcome::Conversation { conversation, .. }) => {
                                    let representative = conversation.representative.unwrap_or(rep);
                                    Step::Assign { representative, score, expect }
                                }
                                Ok(_) => Step::Leave { reason: "the assignment answered nothing".to_owned() },
                                Err(ServiceError::Refused(r)) => Step::Leave { reason: left_because(&r) },
                                Err(ServiceError::Internal(e)) => {
                                    tracing::error!(error = %e, conversation = %convs[i].id, "distribution: write failed");
                                    Step::Leave { reason: store_failed(&e) }
                                }
                            });
                        }
                    }
                }
            }
            if again.is_empty() {
                break;
            }
            metrics::counter!("switchboard_decisions_retried_total").increment(again.len() as u64);
            tracing::debug!(attempt, conversations = again.len(), "distribution: planning again what went stale");
            stale_reps.sort_unstable();
            stale_reps.dedup();
            let (reps, _) = self.store.records(&stale_reps, &[]).await?;
            self.directory.apply(reps, Vec::new());
            again.sort_unstable();
            // Read the conversations again: another supervisor may have taken them.
            let mut fresh = Vec::with_capacity(again.len());
            let mut places = Vec::with_capacity(again.len());
            for &i in &again {
                match self.store.conversation(&convs[i].id).await? {
                    Some(c) if c.status == Status::Open && c.queue == convs[i].queue => {
                        fresh.push(c);
                        places.push(i);
                    }
                    Some(c) => {
                        done[i] = Some(Step::Leave {
                            reason: format!("it was no longer open in its queue (it is `{}` now)", c.status.as_str()),
                        });
                    }
                    None => done[i] = Some(Step::Leave { reason: "it no longer exists".to_owned() }),
                }
            }
            let plan = self.plan(policy, fresh).await?;
            todo = places.into_iter().zip(plan).collect();
            if attempt + 1 == DECISION_ATTEMPTS {
                break;
            }
        }
        Ok(done)
    }
}

/// Plans each conversation in order on `scratch`, which each planned assignment changes.
fn plan_on(scratch: &Directory, policy: &Arc<Box<dyn Policy>>, convs: &[Conversation]) -> Vec<Step> {
    let everyone = RepresentativeFilter::default();
    let now_ms = crate::clock::now_ms();
    convs
        .iter()
        .map(|conv| {
            let ctx = RoutingContext {
                action: RoutingAction::Assign,
                conversation: conv,
                explain: false,
                now_ms: crate::clock::now_ms(),
            };
            let ranked = scratch.rank_representatives(policy, ctx, &everyone, None, Some(1));
            let Some(best) = ranked.candidates.into_iter().next() else {
                return Step::Leave { reason: no_candidate(scratch, policy, conv) };
            };
            let Some(rep) = scratch.representative(&best.id) else {
                return Step::Leave { reason: format!("representative `{}` vanished while planning", best.id) };
            };
            let used_capacity = match policy.capacity_reliance(&ctx) {
                CapacityReliance::None => UsedCapacity::Any,
                CapacityReliance::FreeAtLeast(n) => UsedCapacity::AtMost(i64::from(rep.input.capacity) - n),
                CapacityReliance::Exact => UsedCapacity::Exactly(rep.used_capacity),
            };
            let seen = DecidedTarget::Representative { record: (*rep).clone(), last_assigned_ms: rep.last_assigned_ms };
            let record = Some(decision_record(policy, &ctx, seen, best.score));
            let expect =
                Expect { conversation_version: conv.version, target_version: rep.version, used_capacity, record };
            scratch.apply(vec![planned(&rep, conv, now_ms)], Vec::new());
            Step::Assign { representative: best.id, score: best.score, expect }
        })
        .collect()
}

/// The representative as it will be once `conv` is assigned to it.
fn planned(rep: &Representative, conv: &Conversation, now_ms: i64) -> Representative {
    let mut r = rep.clone();
    let units = i64::from(conv.capacity_units);
    r.used_capacity += units;
    r.free_capacity -= units;
    if units > 0 {
        r.last_assigned_ms = Some(now_ms);
    }
    r.revision += 1;
    r
}

/// Why no representative can take `conv`: the rules' reasons for the first excluded (by
/// name), or that there is no representative at all.
fn no_candidate(scratch: &Directory, policy: &Arc<Box<dyn Policy>>, conv: &Conversation) -> String {
    let ctx = RoutingContext {
        action: RoutingAction::Assign,
        conversation: conv,
        explain: true,
        now_ms: crate::clock::now_ms(),
    };
    let ranked = scratch.rank_representatives(policy, ctx, &RepresentativeFilter::default(), None, Some(1));
    let Some(first) = ranked.excluded.first() else {
        return "no eligible representative: there are no representatives".to_owned();
    };
    let reasons: Vec<String> = first.reasons.iter().map(|r| format!("{} ({})", r.detail, r.rule)).collect();
    let reasons = if reasons.is_empty() { "excluded".to_owned() } else { reasons.join("; ") };
    format!(
        "no eligible representative: the rules in force exclude all {} representatives; the first by name, `{}` ({}): {}",
        ranked.excluded_total, first.id, first.name, reasons
    )
}

/// Why a planned assignment failed in the store.
fn store_failed(e: &StoreError) -> String {
    if matches!(e, StoreError::Commit(_)) {
        "the database failed while committing the assignment: it may or may not be applied; read the conversation back"
            .to_owned()
    } else {
        "the store could not apply the assignment; it was not applied".to_owned()
    }
}

/// Why a planned assignment was refused when it was committed.
fn left_because(r: &Refusal) -> String {
    format!("the assignment was refused: {r}")
}

/// The answer: each taken conversation, in order, assigned or left with its reason.
fn answer(ruleset: &str, convs: &[Conversation], steps: Vec<Option<Step>>) -> Distribution {
    let mut d = Distribution { ruleset: ruleset.to_owned(), assigned: Vec::new(), unassigned: Vec::new() };
    for (conv, step) in convs.iter().zip(steps) {
        match step {
            Some(Step::Assign { representative, score, .. }) => {
                d.assigned.push(Assignment { conversation: conv.id.clone(), representative, score });
            }
            Some(Step::Leave { reason }) => d.unassigned.push(Unassigned { conversation: conv.id.clone(), reason }),
            None => d.unassigned.push(Unassigned {
                conversation: conv.id.clone(),
                reason: Refusal::Contended { id: conv.id.clone(), attempts: DECISION_ATTEMPTS }.to_string(),
            }),
        }
    }
    d
}

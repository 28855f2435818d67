//! The routing state in memory: every representative and queue, with the rules' table
//! of representatives kept current, so a candidates request reads nothing from the store.
//!
//! Lifecycle, as client-go's informers do it: [`Directory::load`] lists the store once at
//! start; after that every committed write that changed a representative or a queue is
//! applied with [`Directory::apply`] (one code path for every change), before its answer
//! is sent, so capacity and idle time are as fresh as the last acknowledged write. Where
//! other daemons write to the same database, their changes arrive through the same call
//! from the change feed (`Supervisor::follow`). A representative is replaced only by a
//! record of a higher or equal `revision` (a queue: `version`), so a record that arrives
//! late (two answers may race back, or the feed brings a change already applied) never
//! replaces a newer one.
//!
//! Readers take a read lock for the rule pass, which compares integers over columns
//! (tens of microseconds at 10,000 representatives), then release it before any plugin
//! runs: each plugin's request is built from the table under the read lock, then the
//! lock is released while the plugin judges it. A writer holds the write lock
//! only to replace a record and recompile its row.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::candidates::Ranked;
use super::{Candidate, Excluded, Policy, RoutingContext, ScorePart, Verdict};
use crate::domain::{Id, Presence, Queue, QueueFilter, Reason, Representative, RepresentativeFilter};
use crate::rules::{RepTable, TableRows};

/// A queue's members: representatives listing it, those `available`, and those
/// `available` or `busy` with free capacity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Members {
    pub members: u64,
    pub available: u64,
    pub with_free_capacity: u64,
}

impl Members {
    /// Counts `rep`, a member of the queue.
    fn count(&mut self, rep: &Representative) {
        let available = rep.input.presence == Presence::Available;
        let reachable = available || rep.input.presence == Presence::Busy;
        self.members += 1;
        self.available += u64::from(available);
        self.with_free_capacity += u64::from(reachable && rep.free_capacity > 0);
    }
}

/// The routing state of one daemon.
#[derive(Default)]
pub struct Directory {
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    reps: Vec<Arc<Representative>>,
    rep_slots: HashMap<Id, usize>,
    queues: Vec<Arc<Queue>>,
    queue_slots: HashMap<Id, usize>,
    /// Each representative's place in (name, id) order; `None` after a name changed.
    name_rank: Option<Vec<u32>>,
    /// The table of the rule set last evaluated, kept current row by row.
    compiled: Option<Compiled>,
}

struct Compiled {
    /// The policy snapshot the table is compiled for (identity, and keeps it alive).
    policy: Arc<Box<dyn Policy>>,
    table: RepTable,
}

impl State {
    fn compiled_for(&self, policy: &Arc<Box<dyn Policy>>) -> Option<&RepTable> {
        self.compiled.as_ref().filter(|c| Arc::ptr_eq(&c.policy, policy)).map(|c| &c.table)
    }

    fn ranks(&self) -> Vec<u32> {
        name_ranks(&self.reps, |r| (r.input.name.as_str(), &r.id))
    }

    fn upsert_representative(&mut self, rep: Representative) {
        let rep = Arc::new(rep);
        let slot = match self.rep_slots.get(&rep.id) {
            Some(&slot) => {
                if self.reps[slot].revision > rep.revision {
                    return;
                }
                if self.reps[slot].input.name != rep.input.name {
                    self.name_rank = None;
                }
                self.reps[slot] = rep.clone();
                slot
            }
            None => {
                let slot = self.reps.len();
                self.rep_slots.insert(rep.id.clone(), slot);
                self.reps.push(rep.clone());
                self.name_rank = None;
                slot
            }
        };
        if let Some(c) = &mut self.compiled
            && let Some(rules) = c.policy.as_rules()
        {
            rules.set_rep(&mut c.table, slot, &rep);
        }
    }

    fn upsert_queue(&mut self, queue: Queue) {
        match self.queue_slots.get(&queue.id) {
            Some(&slot) => {
                if self.queues[slot].version <= queue.version {
                    self.queues[slot] = Arc::new(queue);
                }
            }
            None => {
                self.queue_slots.insert(queue.id.clone(), self.queues.len());
                self.queues.push(Arc::new(queue));
            }
        }
    }
}

/// A candidate on its way to the answer: its row, its place by name, its score.
#[derive(Clone, Copy)]
struct Scored {
    row: usize,
    rank: u32,
    score: f64,
}

/// Best first (score descending, then name and id), at most `limit`.
fn best(mut v: Vec<Scored>, limit: Option<usize>) -> Vec<Scored> {
    let order = |a: &Scored, b: &Scored| b.score.total_cmp(&a.score).then(a.rank.cmp(&b.rank));
    if let Some(k) = limit.filter(|&k| k < v.len()) {
        v.select_nth_unstable_by(k, order);
        v.truncate(k);
    }
    v.sort_unstable_by(order);
    v
}

/// By name and id, at most `limit`.
fn by_name<T>(mut v: Vec<(u32, T)>, limit: Option<usize>) -> Vec<(u32, T)> {
    if let Some(k) = limit.filter(|&k| k < v.len()) {
        v.select_nth_unstable_by_key(k, |e| e.0);
        v.truncate(k);
    }
    v.sort_unstable_by_key(|e| e.0);
    v
}

fn candidate(rep: &Representative, score: f64, score_parts: Option<Vec<ScorePart>>) -> Candidate {
    Candidate { id: rep.id.clone(), name: rep.input.name.as_str().to_owned(), score, score_parts }
}

fn excluded(rep: &Representative, reasons: Vec<Reason>) -> Excluded {
    Excluded { id: rep.id.clone(), name: rep.input.name.as_str().to_owned(), reasons }
}

/// Each item's place in (name, id) order, the order of equal scores and of `excluded`.
fn name_ranks<T>(items: &[T], key: impl Fn(&T) -> (&str, &Id)) -> Vec<u32> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_unstable_by(|&a, &b| key(&items[a]).cmp(&key(&items[b])));
    let mut rank = vec![0u32; order.len()];
    for (place, i) in order.into_iter().enumerate() {
        rank[i] = place as u32;
    }
    rank
}

impl Directory {
    /// The state as the store holds it at start.
    pub fn load(representatives: Vec<Representative>, queues: Vec<Queue>) -> Self {
        let dir = Self::default();
        {
            let mut s = dir.write();
            for q in queues {
                s.upsert_queue(q);
            }
            for r in representatives {
                s.upsert_representative(r);
            }
        }
        dir
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies what a committed write changed, each record as it is after the write (or
    /// later: a record read from the store after a feed item).
    pub fn apply(&self, representatives: Vec<Representative>, queues: Vec<Queue>) {
        if representatives.is_empty() && queues.is_empty() {
            return;
        }
        let mut s = self.write();
        for q in queues {
            s.upsert_queue(q);
        }
        for r in representatives {
            s.upsert_representative(r);
        }
    }

    pub fn representative(&self, id: &Id) -> Option<Arc<Representative>> {
        let s = self.read();
        s.rep_slots.get(id).map(|&slot| s.reps[slot].clone())
    }

    pub fn queue(&self, id: &Id) -> Option<Arc<Queue>> {
        let s = self.read();
        s.queue_slots.get(id).map(|&slot| s.queues[slot].clone())
    }

    /// Every representative and queue, oldest first (for comparing with the store).
    pub fn records(&self) -> (Vec<Representative>, Vec<Queue>) {
        let s = self.read();
        (s.reps.iter().map(|r| (**r).clone()).collect(), s.queues.iter().map(|q| (**q).clone()).collect())
    }

    /// The members of each queue (representatives listing it), counted in one pass.
    pub fn members(&self) -> HashMap<Id, Members> {
        let s = self.read();
        let mut out: HashMap<Id, Members> = HashMap::with_capacity(s.queues.len());
        for rep in &s.reps {
            for queue in &rep.input.queues {
                out.entry(queue.clone()).or_default().count(rep);
            }
        }
        out
    }

    /// The members of one queue: a pass over the representatives that builds no table.
    pub fn members_of(&self, queue: &Id) -> Members {
        let s = self.read();
        let mut members = Members::default();
        for rep in s.reps.iter().filter(|r| r.input.queues.contains(queue)) {
            members.count(rep);
        }
        members
    }

    /// Every queue, in id order.
    pub fn queue_ids(&self) -> Vec<Id> {
        let mut ids: Vec<Id> = self.read().queues.iter().map(|q| q.id.clone()).collect();
        ids.sort_unstable();
        ids
    }

    /// A copy of the state (records are shared, the rules' table copied), to plan on:
    /// what the copy is told does not reach this one.
    pub fn snapshot(&self) -> Self {
        let s = self.read();
        let copy = Self::default();
        {
            let mut w = copy.write();
            w.reps = s.reps.clone();
            w.rep_slots = s.rep_slots.clone();
            w.queues = s.queues.clone();
            w.queue_slots = s.queue_slots.clone();
            w.name_rank = s.name_rank.clone();
            w.compiled = s.compiled.as_ref().map(|c| Compiled { policy: c.policy.clone(), table: c.table.clone() });
        }
        copy
    }

    /// How many representatives and queues are held.
    pub fn len(&self) -> (usize, usize) {
        let s = self.read();
        (s.reps.len(), s.queues.len())
    }

    /// Compiles the name order and `policy`'s table now, so the first request after start
    /// does not pay for it.
    pub fn warm(&self, policy: &Arc<Box<dyn Policy>>) {
        drop(self.fresh(policy));
    }

    /// A read lock on a state whose name order and table for `policy` are current. A
    /// writer may slip in between the refresh and the read lock; then the caller builds
    /// what is stale for itself ([`Fresh`]).
    fn fresh(&self, policy: &Arc<Box<dyn Policy>>) -> RwLockReadGuard<'_, State> {
        let needs =
            |s: &State| s.name_rank.is_none() || (policy.as_rules().is_some() && s.compiled_for(policy).is_none());
        let s = self.read();
        if !needs(&s) {
            return s;
        }
        drop(s);
        {
            let mut w = self.write();
            if w.name_rank.is_none() {
                w.name_rank = Some(w.ranks());
            }
            if let Some(rules) = policy.as_rules()
                && w.compiled_for(policy).is_none()
            {
                let refs: Vec<&Representative> = w.reps.iter().map(Arc::as_ref).collect();
                let table = rules.representative_table(&refs);
                w.compiled = Some(Compiled { policy: policy.clone(), table });
            }
        }
        self.read()
    }

    /// The representatives a conversation may go to, ranked, and (with `explain`) those
    /// the rules excluded. `holder` is left out (a transfer's current representative).
    /// Runs plugins: call it off the async workers.
    pub fn rank_representatives(
        &self,
        policy: &Arc<Box<dyn Policy>>,
        ctx: RoutingContext<'_>,
        filter: &RepresentativeFilter,
        holder: Option<&Id>,
        limit: Option<usize>,
    ) -> Ranked {
        let s = self.fresh(policy);
        let own_rank;
        let rank: &[u32] = match &s.name_rank {
            Some(r) => r,
            None => {
                own_rank = s.ranks();
                &own_rank
            }
        };
        let filtered = *filter != RepresentativeFilter::default();
        let scope: Option<Vec<bool>> = (filtered || holder.is_some())
            .then(|| s.reps.iter().map(|r| Some(&r.id) != holder && (!filtered || filter.matches(r))).collect());
        let in_scope = |i: usize| scope.as_ref().is_none_or(|sc| sc[i]);
        let Some(rules) = policy.as_rules() else {
            // A policy without a table: ask it about the representatives in scope.
            let rows: Vec<usize> = (0..s.reps.len()).filter(|&i| in_scope(i)).collect();
            let reps: Vec<Arc<Representative>> = rows.iter().map(|&i| s.reps[i].clone()).collect();
            let ranks: Vec<u32> = rows.iter().map(|&i| rank[i]).collect();
            drop(s);
            let refs: Vec<&Representative> = reps.iter().map(Arc::as_ref).collect();
            let verdicts = policy.representatives(ctx, &refs);
            return assemble(&reps, &ranks, verdicts, ctx.explain, limit);
        };
        let own_table;
        let table = match s.compiled_for(policy) {
            Some(t) => t,
            None => {
                let refs: Vec<&Representative> = s.reps.iter().map(Arc::as_ref).collect();
                own_table = rules.representative_table(&refs);
                &own_table
            }
        };
        let pass = rules.pass_representatives(&ctx, table, scope.as_deref());
        let eligible: Vec<usize> = (0..s.reps.len()).filter(|&i| pass.eligible[i]).collect();
        let refused: Vec<usize> = (0..s.reps.len()).filter(|&i| in_scope(i) && !pass.eligible[i]).collect();
        let scored: Vec<Scored> = eligible
            .iter()
            .enumerate()
            .map(|(k, &i)| Scored { row: k, rank: rank[i], score: rules.rep_score(&pass, table, i) })
            .collect();
        // Rules' exclusions: only the first `limit` by name need their reasons.
        let mut out_excluded: Vec<(u32, Excluded)> = if ctx.explain {
            let firsts = by_name(refused.iter().map(|&i| (rank[i], i)).collect(), limit);
            firsts
                .into_iter()
                .map(|(r, i)| {
                    let reasons = rules.explain_representative(&pass, table, i, ctx.conversation, &s.reps[i]);
                    (r, excluded(&s.reps[i], reasons))
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut excluded_total = refused.len();
        let parts_of = |k: usize| ctx.explain.then(|| rules.rep_score_parts(&pass, table, eligible[k]));
        if !pass.has_plugins() {
            let candidates =
                best(scored, limit).into_iter().map(|c| candidate(&s.reps[eligible[c.row]], c.score, parts_of(c.row)));
            return Ranked {
                candidates: candidates.collect(),
                total: eligible.len(),
                excluded: out_excluded.into_iter().map(|(_, e)| e).collect(),
                excluded_total,
            };
        }
        let (rules_applied, now_ms) = (pass.rules.clone(), pass.now_ms());
        // The rank keys' parts, with `explain`, while the table is at hand (which of these
        // rows make the answer is known only after the plugins).
        let mut rule_parts: Vec<Option<Vec<ScorePart>>> =
            if ctx.explain { (0..eligible.len()).map(parts_of).collect() } else { Vec::new() };
        drop(s);
        // Each plugin's request is built under the read lock, from the table, and judged
        // after it is released. Rows never move (representatives are never deleted), so
        // the rows still name the same representatives.
        let verdicts = rules.consult_plugins(&ctx, &rules_applied, &eligible, |using, batch| {
            let s = self.read();
            let (conv, action) = (ctx.conversation, ctx.action);
            match s.compiled_for(policy) {
                Some(table) => {
                    let src = TableRows { table, now_ms, id_of: |i: usize| s.reps[i].id.as_str() };
                    using.request(action, now_ms, conv, &src, batch)
                }
                // The rules were reloaded meanwhile: compile just these rows.
                None => {
                    let reps: Vec<&Representative> = batch.iter().map(|&i| s.reps[i].as_ref()).collect();
                    let table = rules.representative_table(&reps);
                    let src = TableRows { table: &table, now_ms, id_of: |k: usize| reps[k].id.as_str() };
                    using.request(action, now_ms, conv, &src, &(0..reps.len()).collect::<Vec<_>>())
                }
            }
        });
        let mut kept = Vec::with_capacity(scored.len());
        let mut dropped = Vec::new();
        for (k, mut c) in scored.into_iter().enumerate() {
            if verdicts.eligible[k] {
                c.score += verdicts.scores[k];
                kept.push(c);
            } else {
                dropped.push((c.rank, k));
            }
        }
        excluded_total += dropped.len();
        let total = kept.len();
        let best = best(kept, limit);
        let dropped = if ctx.explain { by_name(dropped, limit) } else { Vec::new() };
        // Rows never move and representatives are never deleted: the slots still name
        // the same representatives (a rename since is shown as it is now).
        let s = self.read();
        let candidates = best
            .into_iter()
            .map(|c| {
                let parts = rule_parts.get_mut(c.row).and_then(Option::take).map(|mut parts| {
                    parts.extend_from_slice(&verdicts.parts[c.row]);
                    parts
                });
                candidate(&s.reps[eligible[c.row]], c.score, parts)
            })
            .collect();
        for (rank, k) in dropped {
            out_excluded.push((rank, excluded(&s.reps[eligible[k]], verdicts.reasons[k].clone())));
        }
        Ranked {
            candidates,
            total,
            excluded: by_name(out_excluded, limit).into_iter().map(|(_, e)| e).collect(),
            excluded_total,
        }
    }

    /// The queues a conversation may go to, ranked, and (with `explain`) those the rules
    /// excluded. Runs plugins: call it off the async workers.
    pub fn rank_queues(
        &self,
        policy: &Arc<Box<dyn Policy>>,
        ctx: RoutingContext<'_>,
        filter: &QueueFilter,
        limit: Option<usize>,
    ) -> Ranked {
        let queues: Vec<Arc<Queue>> = self.read().queues.iter().filter(|q| filter.matches(q)).cloned().collect();
        let ranks = name_ranks(&queues, |q| (q.input.name.as_str(), &q.id));
        let refs: Vec<&Queue> = queues.iter().map(Arc::as_ref).collect();
        let verdicts = policy.queues(ctx, &refs);
        let named = |i: usize| (queues[i].id.clone(), queues[i].input.name.as_str().to_owned());
        assemble_named(named, &ranks, verdicts, ctx.explain, limit)
    }
}

/// The answer from one verdict per representative.
fn assemble(
    reps: &[Arc<Representative>],
    ranks: &[u32],
    verdicts: Vec<Verdict>,
    explain: bool,
    limit: Option<usize>,
) -> Ranked {
    let named = |i: usize| (reps[i].id.clone(), reps[i].input.name.as_str().to_owned());
    assemble_named(named, ranks, verdicts, explain, limit)
}

/// The answer from one verdict per target; `named(i)` is target `i`'s id and name,
/// asked only for the targets in the answer.
fn assemble_named(
    named: impl Fn(usize) -> (Id, String),
    ranks: &[u32],
    verdicts: Vec<Verdict>,
    explain: bool,
    limit: Option<usize>,
) -> Ranked {
    let mut scored = Vec::new();
    let mut refused = Vec::new();
    let mut parts_of = Vec::new();
    for (i, verdict) in verdicts.into_iter().enumerate() {
        match verdict {
            Verdict::Eligible { score, parts } => {
                scored.push(Scored { row: parts_of.len(), rank: ranks[i], score });
                parts_of.push((i, parts));
            }
            Verdict::Excluded { reasons } => refused.push((ranks[i], (i, reasons))),
        }
    }
    let (total, excluded_total) = (scored.len(), refused.len());
    let candidates = best(scored, limit)
        .into_iter()
        .map(|c| {
            let (i, parts) = std::mem::take(&mut parts_of[c.row]);
            let (id, name) = named(i);
            Candidate { id, name, score: c.score, score_parts: explain.then_some(parts) }
        })
        .collect();
    let excluded = if explain {
        by_name(refused, limit)
            .into_iter()
            .map(|(_, (i, reasons))| {
                let (id, name) = named(i);
                Excluded { id, name, reasons }
            })
            .collect()
    } else {
        Vec::new()
    };
    Ranked { candidates, total, excluded, excluded_total }
}

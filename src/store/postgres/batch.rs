//! A batch of writes in one PostgreSQL transaction: lock everything it will touch, in
//! one fixed order, with a few set-based statements; run the commands on those rows in
//! memory ([`command::execute`] through [`BatchTx`]); write what they changed with a few
//! more. A batch of 64 writes costs about ten statements instead of several per write.
//!
//! Lock order, the same in every daemon: idempotency keys (sorted), conversations,
//! representatives (the targets, the conversations' holders, the ones written), queues
//! written (`FOR UPDATE`), queues a routing decision relied on (`FOR SHARE`), and the
//! feed's counter last (see `number_changes`). Two batches that touch the same rows wait
//! for each other in that order instead of deadlocking. A command that reads something
//! the batch did not foresee reads and locks it then (a deadlock there is detected by
//! PostgreSQL and the batch's writes run again one by one).
//!
//! Writes to a row already locked by this transaction cannot fail a check the store did
//! not make; the conversation's update still carries its version as a guard.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, LazyLock};

use futures_util::future::{join_all, try_join_all};
use tokio_postgres::types::ToSql;

use super::super::command::Tx;
use super::super::{
    Command, DecisionRecord, Idempotency, NewChange, Outcome, RuleFile, StoreError, WriteRequest, rows,
};
use super::{Failed, QUEUE_COLUMNS, REP_COLUMNS, queue_from_row, rep_from_row, unix_now};
use crate::domain::{
    Conversation, HistoryEvent, Id, LifecycleEvent, Queue, QueueInput, Representative, RepresentativeInput,
    SupervisorAction, Target,
};

/// A pooled connection; a batch sends `BEGIN` and `COMMIT` itself, in its pipelines.
type Conn = deadpool_postgres::ClientWrapper;

/// A row as the batch sees it.
struct Slot<T> {
    /// The version stored when the batch read it; `None`: there was no such row.
    stored: Option<u64>,
    current: Option<T>,
    /// Written by a command of this batch.
    changed: bool,
}

impl<T> Slot<T> {
    fn read(current: Option<T>, version: impl Fn(&T) -> u64) -> Self {
        Slot { stored: current.as_ref().map(version), current, changed: false }
    }
}

/// How firmly a queue row is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Lock {
    None,
    Share,
    Update,
}

impl Lock {
    fn clause(self) -> &'static str {
        match self {
            Lock::None => "",
            Lock::Share => " FOR SHARE",
            Lock::Update => " FOR UPDATE",
        }
    }
}

enum KeyState {
    /// Inserted by this batch; no command holds it.
    Free,
    /// Claimed by the command running now.
    Claimed,
    /// Answered, by an earlier transaction or by a command of this batch.
    Answered { fingerprint: String, outcome: Box<Outcome> },
}

struct Key {
    /// This batch inserted the row (it updates or deletes it at the end).
    inserted: bool,
    state: KeyState,
}

type KeyId = (String, String);

/// [`Tx`] over the rows a batch locked, in memory; [`BatchTx::flush`] writes them back.
pub(super) struct BatchTx<'a> {
    conn: &'a Conn,
    conversations: HashMap<Id, Slot<Conversation>>,
    /// Conversations created, in order (their `seq` gives listings their order).
    created: Vec<Id>,
    /// The last history `seq` of each conversation the batch read or wrote.
    history_seq: HashMap<Id, u64>,
    history: Vec<(Id, u64, String)>,
    representatives: HashMap<Id, Slot<Representative>>,
    /// Representatives whose document changed, and those created, in order.
    rep_docs: BTreeSet<Id>,
    reps_created: Vec<Id>,
    queues: HashMap<Id, (Slot<Queue>, Lock)>,
    queues_created: Vec<Id>,
    keys: HashMap<KeyId, Key>,
    /// The key the running command claimed.
    claim: Option<KeyId>,
    /// Decision records to append: `(at_ms, doc)`.
    decisions: Vec<(i64, String)>,
    /// Rule sets to keep: `(version, files)`.
    rulesets: Vec<(String, String)>,
    /// Decision records before this instant are deleted.
    purge_before: Option<i64>,
}

/// What the batch's commands will read, by kind.
#[derive(Default)]
struct Foreseen {
    keys: BTreeSet<KeyId>,
    conversations: BTreeSet<Id>,
    representatives: BTreeSet<Id>,
    queues: BTreeMap<Id, Lock>,
}

impl Foreseen {
    fn of(requests: &[WriteRequest]) -> Self {
        let mut f = Foreseen::default();
        for r in requests {
            if let Some(idem) = &r.idempotency {
                f.keys.insert((r.author.token_digest.clone(), idem.key.clone()));
            }
            match &r.command {
                Command::CreateConversation(input) => {
                    f.queue(&input.queue, Lock::None);
                    if let Some(id) = &input.id {
                        f.conversations.insert(id.clone());
                    }
                }
                Command::Supervise { id, action, expect, .. } => {
                    f.conversations.insert(id.clone());
                    match action {
                        SupervisorAction::Route(_, Target::Representative(rep)) => {
                            f.representatives.insert(rep.clone());
                        }
                        SupervisorAction::Route(_, Target::Queue(q)) => {
                            f.queue(q, if expect.is_some() { Lock::Share } else { Lock::None });
                        }
                        SupervisorAction::Release | SupervisorAction::Remove => {}
                    }
                }
                Command::Lifecycle { id, event, .. } => {
                    f.conversations.insert(id.clone());
                    if let LifecycleEvent::Accept { representative } = event {
                        f.representatives.insert(representative.clone());
                    }
                }
                Command::PutRepresentative { id, input } => {
                    f.representatives.insert(id.clone());
                    for q in &input.queues {
                        f.queue(q, Lock::None);
                    }
                }
                Command::PatchRepresentative { id, patch } => {
                    f.representatives.insert(id.clone());
                    for q in patch.queues.iter().flatten() {
                        f.queue(q, Lock::None);
                    }
                }
                Command::PutQueue { id, .. } | Command::PatchQueue { id, .. } => f.queue(id, Lock::Update),
                Command::RulesReloaded { .. }
                | Command::Remember(_)
                | Command::RecordRuleset { .. }
                | Command::PurgeDecisions { .. } => {}
            }
        }
        f
    }

    fn queue(&mut self, id: &Id, lock: Lock) {
        let held = self.queues.entry(id.clone()).or_insert(lock);
        *held = (*held).max(lock);
    }
}

/// One statement of a pipeline: its text and its parameters, owned.
///
/// The writer's sessions plan each statement once (`force_generic_plan`), often while the
/// tables are still empty, so every statement selects its rows through an index
/// condition (`id = ANY($1)`, also beside a join with `UNNEST`): a plan made for an empty
/// table would otherwise scan the whole table on every batch from then on.
type Statement = (&'static str, Vec<Box<dyn ToSql + Sync + Send>>);

/// Sends `statements` together (one round trip; PostgreSQL runs them in this order) and
/// answers each one's rows. Every statement is prepared first (once per connection), so
/// no statement waits for a preparation while a later one is already sent.
async fn pipeline(conn: &Conn, statements: &[Statement]) -> Result<Vec<Vec<tokio_postgres::Row>>, StoreError> {
    send(conn, statements).await?.into_iter().map(|answer| answer.map_err(StoreError::from)).collect()
}

/// [`pipeline`]'s sending, with each statement's own answer (after an error PostgreSQL
/// answers the statements behind it with errors too). `Err`: a statement could not be
/// prepared, and nothing was run.
async fn send(
    conn: &Conn,
    statements: &[Statement],
) -> Result<Vec<Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>>, tokio_postgres::Error> {
    let prepared = try_join_all(statements.iter().map(|(sql, _)| conn.prepare_cached(sql))).await?;
    let params: Vec<Vec<&(dyn ToSql + Sync)>> = statements
        .iter()
        .map(|(_, params)| params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect())
        .collect();
    Ok(join_all(prepared.iter().zip(&params).map(|(stmt, params)| conn.query(stmt, params))).await)
}

fn strings<T>(items: &[T], f: impl Fn(&T) -> &str) -> Vec<String> {
    items.iter().map(|i| f(i).to_owned()).collect()
}

const CLAIM_KEYS: &str = "INSERT INTO idempotency (token, key, fingerprint, outcome, created)
    SELECT u.t, u.k, '', NULL, $3 FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY AS u(t, k, n) ORDER BY u.n
    ON CONFLICT (token, key) DO NOTHING RETURNING token, key";
const READ_KEYS: &str = "SELECT i.token, i.key, i.fingerprint, i.outcome FROM idempotency i
    JOIN UNNEST($1::text[], $2::text[]) AS u(t, k) ON i.token = u.t AND i.key = u.k
    WHERE i.token = ANY($1) AND i.key = ANY($2)";
/// No ids, for a statement's array parameter.
const NO_IDS: &[&str] = &[];

static LOCK_REPRESENTATIVES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {REP_COLUMNS} FROM representatives WHERE id = ANY(ARRAY(
             SELECT unnest($1::text[])
             UNION SELECT representative FROM conversations WHERE id = ANY($2) AND representative IS NOT NULL))
         ORDER BY id FOR UPDATE"
    )
});
const LOCK_CONVERSATIONS: &str =
    "SELECT c.doc, (SELECT COALESCE(MAX(h.seq), 0) FROM history h WHERE h.conversation = c.id)
    FROM conversations c WHERE c.id = ANY($1) ORDER BY c.id FOR UPDATE";

impl<'a> BatchTx<'a> {
    /// Begins a transaction on `conn` and locks and reads what `requests` will touch, in
    /// the module's lock order, in one round trip. On `Err` the connection may be inside
    /// an aborted transaction: it must not go back to the pool.
    pub(super) async fn lock(conn: &'a Conn, requests: &[WriteRequest]) -> Result<Self, StoreError> {
        let foreseen = Foreseen::of(requests);
        let mut batch = BatchTx {
            conn,
            conversations: HashMap::new(),
            created: Vec::new(),
            history_seq: HashMap::new(),
            history: Vec::new(),
            representatives: HashMap::new(),
            rep_docs: BTreeSet::new(),
            reps_created: Vec::new(),
            queues: HashMap::new(),
            queues_created: Vec::new(),
            keys: HashMap::new(),
            claim: None,
            decisions: Vec::new(),
            rulesets: Vec::new(),
            purge_before: None,
        };
        let mut statements: Vec<Statement> = vec![("BEGIN", Vec::new())];
        let keys: Vec<&KeyId> = foreseen.keys.iter().collect();
        if !keys.is_empty() {
            let tokens = strings(&keys, |k| &k.0);
            let names = strings(&keys, |k| &k.1);
            statements
                .push((CLAIM_KEYS, vec![Box::new(tokens.clone()), Box::new(names.clone()), Box::new(unix_now())]));
            statements.push((READ_KEYS, vec![Box::new(tokens), Box::new(names)]));
        }
        let conversations: Vec<String> = foreseen.conversations.iter().map(|id| id.as_str().to_owned()).collect();
        if !conversations.is_empty() {
            statements.push((LOCK_CONVERSATIONS, vec![Box::new(conversations.clone())]));
        }
        let reps: Vec<String> = foreseen.representatives.iter().map(|id| id.as_str().to_owned()).collect();
        if !reps.is_empty() || !conversations.is_empty() {
            // With the conversations' holders, as locked by the statement before.
            statements.push((&LOCK_REPRESENTATIVES, vec![Box::new(reps.clone()), Box::new(conversations.clone())]));
        }
        let mut queue_locks = Vec::new();
        for lock in [Lock::Update, Lock::Share, Lock::None] {
            let ids: Vec<String> =
                foreseen.queues.iter().filter(|(_, l)| **l == lock).map(|(id, _)| id.as_str().to_owned()).collect();
            if !ids.is_empty() {
                statements.push((queue_sql(lock), vec![Box::new(ids)]));
                queue_locks.push(lock);
            }
        }

        let mut answers = pipeline(conn, &statements).await?.into_iter().skip(1);
        if !keys.is_empty() {
            for row in answers.next().unwrap_or_default() {
                let id = (row.try_get::<_, String>(0)?, row.try_get::<_, String>(1)?);
                batch.keys.insert(id, Key { inserted: true, state: KeyState::Free });
            }
            for row in answers.next().unwrap_or_default() {
                let id = (row.try_get::<_, String>(0)?, row.try_get::<_, String>(1)?);
                if batch.keys.contains_key(&id) {
                    continue;
                }
                let state = answered(&id.1, row.try_get(2)?, row.try_get(3)?)?;
                batch.keys.insert(id, Key { inserted: false, state });
            }
        }
        if !conversations.is_empty() {
            for row in answers.next().unwrap_or_default() {
                let conv: Conversation = rows::decode(row.try_get(0)?)?;
                batch.history_seq.insert(conv.id.clone(), row.try_get::<_, i64>(1)? as u64);
                batch.conversations.insert(conv.id.clone(), Slot::read(Some(conv), |c| c.version));
            }
            for id in &foreseen.conversations {
                batch.conversations.entry(id.clone()).or_insert_with(|| Slot::read(None, |c| c.version));
            }
        }
        if !reps.is_empty() || !conversations.is_empty() {
            for row in answers.next().unwrap_or_default() {
                let rep = rep_from_row(&row)?;
                batch.representatives.insert(rep.id.clone(), Slot::read(Some(rep), |r| r.version));
            }
            for id in &foreseen.representatives {
                batch.representatives.entry(id.clone()).or_insert_with(|| Slot::read(None, |r| r.version));
            }
        }
        for lock in queue_locks {
            for row in answers.next().unwrap_or_default() {
                let queue = queue_from_row(&row)?;
                batch.queues.insert(queue.id.clone(), (Slot::read(Some(queue), |q| q.version), lock));
            }
        }
        for (id, lock) in foreseen.queues {
            batch.queues.entry(id).or_insert_with(|| (Slot::read(None, |q| q.version), lock));
        }
        Ok(batch)
    }

    /// The running command was refused: the key it claimed is free again.
    pub(super) fn refused(&mut self) {
        if let Some(id) = self.claim.take()
            && let Some(key) = self.keys.get_mut(&id)
        {
            key.state = KeyState::Free;
        }
    }

    /// Writes everything the batch's commands changed, numbers `changes` for the feed and
    /// commits, in one round trip; answers the position before the first change. On `Err`
    /// the connection must not go back to the pool.
    pub(super) async fn commit(&self, changes: &[NewChange]) -> Result<u64, Failed> {
        let mut statements = Vec::new();
        self.write_conversations(&mut statements).map_err(Failed::RolledBack)?;
        self.write_representatives(&mut statements).map_err(Failed::RolledBack)?;
        self.write_queues(&mut statements).map_err(Failed::RolledBack)?;
        self.write_keys(&mut statements).map_err(Failed::RolledBack)?;
        self.write_decisions(&mut statements);
        let updated = self.conversations.values().filter(|s| s.changed && s.stored.is_some()).count();
        let numbering = !changes.is_empty();
        if numbering {
            statements.push(number_changes(changes));
        }
        statements.push(("COMMIT", Vec::new()));
        let mut answers = send(self.conn, &statements).await.map_err(|e| Failed::RolledBack(e.into()))?;
        let committed = answers.pop().unwrap_or(Ok(Vec::new()));
        let mut unknown = None;
        let mut writes = Vec::with_capacity(answers.len());
        for answer in answers {
            match answer {
                // The server refused a statement: the transaction is aborted, and the
                // COMMIT sent behind it rolled it back.
                Err(e) if e.as_db_error().is_some() => return Err(Failed::RolledBack(e.into())),
                Err(e) => unknown = Some(e),
                Ok(rows) => writes.push(rows),
            }
        }
        match committed {
            // Even an error answered to COMMIT itself (the server ending the session as it
            // commits, say) leaves the outcome open: the commit may be durable.
            Err(e) => return Err(Failed::Unknown(e.into())),
            Ok(_) if unknown.is_some() => {
                return Err(Failed::Unknown(unknown.map_or(StoreError::Closed, StoreError::from)));
            }
            Ok(_) => {}
        }
        if updated > 0 {
            // The conversations' update is the first statement when nothing was created,
            // else the second; it returns a row per conversation it changed. Under the
            // row locks anything else is a bug, but the batch is committed by now.
            let at = usize::from(!self.created.is_empty());
            let n = writes.get(at).map_or(0, Vec::len);
            if n != updated {
                tracing::error!(updated, n, "conversations changed under their row locks");
            }
        }
        if !numbering {
            return Ok(0);
        }
        let positions = writes.last().map(|rows| rows.iter().map(|r| r.get::<_, i64>(0)).min()).unwrap_or_default();
        Ok(positions.map_or(0, |first| (first - 1) as u64))
    }

    fn write_conversations(&self, out: &mut Vec<Statement>) -> Result<(), StoreError> {
        let created: Vec<&Conversation> =
            self.created.iter().filter_map(|id| self.conversations.get(id)?.current.as_ref()).collect();
        if !created.is_empty() {
            let docs = created.iter().map(serde_json::to_string).collect::<Result<Vec<_>, _>>()?;
            let rep: Vec<Option<String>> =
                created.iter().map(|c| c.representative.as_ref().map(|r| r.as_str().to_owned())).collect();
            let intent: Vec<bool> = created.iter().map(|c| c.intent_based).collect();
            let version: Vec<i64> = created.iter().map(|c| c.version as i64).collect();
            out.push((
                "INSERT INTO conversations (id, status, queue, representative, entity, intent_based, version, doc)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[],
                                      $7::int8[], $8::text[])",
                vec![
                    Box::new(strings(&created, |c| c.id.as_str())),
                    Box::new(strings(&created, |c| c.status.as_str())),
                    Box::new(strings(&created, |c| c.queue.as_str())),
                    Box::new(rep),
                    Box::new(strings(&created, |c| c.record.entity.as_str())),
                    Box::new(intent),
                    Box::new(version),
                    Box::new(docs),
                ],
            ));
        }
        let updated: Vec<(&Conversation, u64)> = self
            .conversations
            .values()
            .filter(|s| s.changed)
            .filter_map(|s| Some((s.current.as_ref()?, s.stored?)))
            .collect();
        if !updated.is_empty() {
            let docs = updated.iter().map(|(c, _)| serde_json::to_string(c)).collect::<Result<Vec<_>, _>>()?;
            let rep: Vec<Option<String>> =
                updated.iter().map(|(c, _)| c.representative.as_ref().map(|r| r.as_str().to_owned())).collect();
            let version: Vec<i64> = updated.iter().map(|(c, _)| c.version as i64).collect();
            let stored: Vec<i64> = updated.iter().map(|(_, v)| *v as i64).collect();
            out.push((
                "UPDATE conversations AS c SET status = v.status, queue = v.queue,
                     representative = v.representative, version = v.version, doc = v.doc
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::text[], $7::int8[])
                      AS v(id, status, queue, representative, version, doc, stored)
                 WHERE c.id = v.id AND c.version = v.stored AND c.id = ANY($1)
                 RETURNING c.id",
                vec![
                    Box::new(strings(&updated, |(c, _)| c.id.as_str())),
                    Box::new(strings(&updated, |(c, _)| c.status.as_str())),
                    Box::new(strings(&updated, |(c, _)| c.queue.as_str())),
                    Box::new(rep),
                    Box::new(version),
                    Box::new(docs),
                    Box::new(stored),
                ],
            ));
        }
        if !self.history.is_empty() {
            let seqs: Vec<i64> = self.history.iter().map(|(_, s, _)| *s as i64).collect();
            out.push((
                "INSERT INTO history (conversation, seq, doc) SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[])",
                vec![
                    Box::new(strings(&self.history, |(id, _, _)| id.as_str())),
                    Box::new(seqs),
                    Box::new(strings(&self.history, |(_, _, d)| d.as_str())),
                ],
            ));
        }
        Ok(())
    }

    fn write_representatives(&self, out: &mut Vec<Statement>) -> Result<(), StoreError> {
        let created: Vec<&Representative> =
            self.reps_created.iter().filter_map(|id| self.representatives.get(id)?.current.as_ref()).collect();
        let updated: Vec<&Representative> = self
            .representatives
            .values()
            .filter(|s| s.changed && s.stored.is_some())
            .filter_map(|s| s.current.as_ref())
            .collect();
        for (reps, sql) in [
            (
                created,
                "INSERT INTO representatives (id, used_capacity, version, revision, updated_at, last_assigned_ms, doc)
                 SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::text[], $6::int8[], $7::text[])",
            ),
            (
                updated,
                "UPDATE representatives AS r SET used_capacity = v.used_capacity, version = v.version,
                     revision = v.revision, updated_at = v.updated_at, last_assigned_ms = v.last_assigned_ms,
                     doc = COALESCE(v.doc, r.doc)
                 FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::text[], $6::int8[], $7::text[])
                      AS v(id, used_capacity, version, revision, updated_at, last_assigned_ms, doc)
                 WHERE r.id = v.id AND r.id = ANY($1)",
            ),
        ] {
            if reps.is_empty() {
                continue;
            }
            // The document only where it changed: most writes move capacity only.
            let docs = reps
                .iter()
                .map(|r| self.rep_docs.contains(&r.id).then(|| serde_json::to_string(&*r.input)).transpose())
                .collect::<Result<Vec<Option<String>>, _>>()?;
            let used: Vec<i64> = reps.iter().map(|r| r.used_capacity).collect();
            let version: Vec<i64> = reps.iter().map(|r| r.version as i64).collect();
            let revision: Vec<i64> = reps.iter().map(|r| r.revision as i64).collect();
            let last: Vec<Option<i64>> = reps.iter().map(|r| r.last_assigned_ms).collect();
            out.push((
                sql,
                vec![
                    Box::new(strings(&reps, |r| r.id.as_str())),
                    Box::new(used),
                    Box::new(version),
                    Box::new(revision),
                    Box::new(strings(&reps, |r| r.updated_at.as_str())),
                    Box::new(last),
                    Box::new(docs),
                ],
            ));
        }
        Ok(())
    }

    fn write_queues(&self, out: &mut Vec<Statement>) -> Result<(), StoreError> {
        let created: Vec<&Queue> =
            self.queues_created.iter().filter_map(|id| self.queues.get(id)?.0.current.as_ref()).collect();
        let updated: Vec<&Queue> = self
            .queues
            .values()
            .filter(|(s, _)| s.changed && s.stored.is_some())
            .filter_map(|(s, _)| s.current.as_ref())
            .collect();
        for (queues, sql) in [
            (
                created,
                "INSERT INTO queues (id, version, updated_at, doc)
                 SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[])",
            ),
            (
                updated,
                "UPDATE queues AS q SET version = v.version, updated_at = v.updated_at, doc = v.doc
                 FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[]) AS v(id, version, updated_at, doc)
                 WHERE q.id = v.id AND q.id = ANY($1)",
            ),
        ] {
            if queues.is_empty() {
                continue;
            }
            let docs = queues.iter().map(|q| serde_json::to_string(&q.input)).collect::<Result<Vec<_>, _>>()?;
            let version: Vec<i64> = queues.iter().map(|q| q.version as i64).collect();
            out.push((
                sql,
                vec![
                    Box::new(strings(&queues, |q| q.id.as_str())),
                    Box::new(version),
                    Box::new(strings(&queues, |q| q.updated_at.as_str())),
                    Box::new(docs),
                ],
            ));
        }
        Ok(())
    }

    fn write_decisions(&self, out: &mut Vec<Statement>) {
        if let Some(before) = self.purge_before {
            out.push(("DELETE FROM decisions WHERE at_ms < $1", vec![Box::new(before)]));
        }
        if !self.decisions.is_empty() {
            let at: Vec<i64> = self.decisions.iter().map(|(at, _)| *at).collect();
            out.push((
                "INSERT INTO decisions (at_ms, doc) SELECT * FROM UNNEST($1::int8[], $2::text[])",
                vec![Box::new(at), Box::new(strings(&self.decisions, |(_, d)| d.as_str()))],
            ));
        }
        if !self.rulesets.is_empty() {
            out.push((
                "INSERT INTO rulesets (version, files) SELECT * FROM UNNEST($1::text[], $2::text[])
                 ON CONFLICT (version) DO NOTHING",
                vec![
                    Box::new(strings(&self.rulesets, |(v, _)| v.as_str())),
                    Box::new(strings(&self.rulesets, |(_, f)| f.as_str())),
                ],
            ));
        }
    }

    fn write_keys(&self, out: &mut Vec<Statement>) -> Result<(), StoreError> {
        let mut answered: Vec<(&KeyId, &str, String)> = Vec::new();
        let mut freed: Vec<&KeyId> = Vec::new();
        for (id, key) in &self.keys {
            match &key.state {
                KeyState::Answered { fingerprint, outcome } if key.inserted => {
                    answered.push((id, fingerprint, serde_json::to_string(outcome)?));
                }
                // Claimed by this batch and never answered: free again for the next try.
                KeyState::Free | KeyState::Claimed if key.inserted => freed.push(id),
                _ => {}
            }
        }
        if !answered.is_empty() {
            out.push((
                "UPDATE idempotency AS i SET fingerprint = v.f, outcome = v.o, created = $5
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS v(t, k, f, o)
                 WHERE i.token = v.t AND i.key = v.k AND i.token = ANY($1) AND i.key = ANY($2)",
                vec![
                    Box::new(strings(&answered, |(id, _, _)| &id.0)),
                    Box::new(strings(&answered, |(id, _, _)| &id.1)),
                    Box::new(strings(&answered, |(_, f, _)| f)),
                    Box::new(strings(&answered, |(_, _, o)| o)),
                    Box::new(unix_now()),
                ],
            ));
        }
        if !freed.is_empty() {
            out.push((
                "DELETE FROM idempotency AS i USING UNNEST($1::text[], $2::text[]) AS v(t, k)
                 WHERE i.token = v.t AND i.key = v.k AND i.token = ANY($1) AND i.key = ANY($2)",
                vec![Box::new(strings(&freed, |id| &id.0)), Box::new(strings(&freed, |id| &id.1))],
            ));
        }
        Ok(())
    }

    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let stmt = self.conn.prepare_cached(sql).await?;
        Ok(self.conn.query(&stmt, params).await?)
    }

    async fn one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<tokio_postgres::Row>, StoreError> {
        let stmt = self.conn.prepare_cached(sql).await?;
        Ok(self.conn.query_opt(&stmt, params).await?)
    }

    async fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let stmt = self.conn.prepare_cached(sql).await?;
        Ok(self.conn.execute(&stmt, params).await?)
    }

    async fn rep_slot(&mut self, id: &Id) -> Result<&mut Slot<Representative>, StoreError> {
        let mut read = None;
        if !self.representatives.contains_key(id) {
            // Not foreseen: read and lock it now, as the batch's lock did.
            let ids: &[&str] = &[id.as_str()];
            let rows = self.query(&LOCK_REPRESENTATIVES, &[&ids, &NO_IDS]).await?;
            read = rows.first().map(rep_from_row).transpose()?;
        }
        Ok(self.representatives.entry(id.clone()).or_insert_with(|| Slot::read(read, |r| r.version)))
    }

    async fn queue_slot(&mut self, id: &Id, lock: Lock) -> Result<&mut Slot<Queue>, StoreError> {
        let held = self.queues.get(id).map(|(s, l)| (*l, s.changed));
        // A queue this batch changed is already held for update.
        if held.is_none_or(|(l, changed)| l < lock && !changed) {
            let ids: &[&str] = &[id.as_str()];
            let queue = self.query(queue_sql(lock), &[&ids]).await?.first().map(queue_from_row).transpose()?;
            self.queues.insert(id.clone(), (Slot::read(queue, |q| q.version), lock));
        }
        Ok(&mut self.queues.entry(id.clone()).or_insert_with(|| (Slot::read(None, |q| q.version), lock)).0)
    }
}

fn answered(key: &str, fingerprint: String, outcome: Option<String>) -> Result<KeyState, StoreError> {
    match outcome {
        Some(outcome) => Ok(KeyState::Answered { fingerprint, outcome: Box::new(rows::decode(&outcome)?) }),
        // A refused write deletes its claim, and a claim is only seen once committed.
        None => Err(StoreError::Commit(format!("idempotency key `{key}` is claimed without an answer"))),
    }
}

impl Tx for BatchTx<'_> {
    async fn conversation(&mut self, id: &Id) -> Result<Option<Conversation>, StoreError> {
        if !self.conversations.contains_key(id) {
            let ids: &[&str] = &[id.as_str()];
            let rows = self.query(LOCK_CONVERSATIONS, &[&ids]).await?;
            let conv = match rows.first() {
                Some(row) => {
                    self.history_seq.insert(id.clone(), row.try_get::<_, i64>(1)? as u64);
                    Some(rows::decode::<Conversation>(row.try_get(0)?)?)
                }
                None => None,
            };
            self.conversations.insert(id.clone(), Slot::read(conv, |c| c.version));
        }
        Ok(self.conversations[id].current.clone())
    }

    async fn insert_conversation(&mut self, c: &Conversation) -> Result<(), StoreError> {
        let slot = self.conversations.entry(c.id.clone()).or_insert_with(|| Slot::read(None, |c| c.version));
        if slot.current.is_some() || slot.stored.is_some() {
            return Err(StoreError::Commit(format!("conversation `{}` exists already", c.id)));
        }
        slot.current = Some(c.clone());
        slot.changed = true;
        self.created.push(c.id.clone());
        self.history_seq.insert(c.id.clone(), 0);
        Ok(())
    }

    async fn update_conversation(&mut self, c: &Conversation) -> Result<(), StoreError> {
        let slot = self
            .conversations
            .get_mut(&c.id)
            .filter(|s| s.current.as_ref().is_some_and(|before| before.version + 1 == c.version))
            .ok_or_else(|| StoreError::Commit(format!("conversation `{}` changed under its row lock", c.id)))?;
        slot.current = Some(c.clone());
        slot.changed = true;
        Ok(())
    }

    async fn last_history_seq(&mut self, id: &Id) -> Result<u64, StoreError> {
        if let Some(seq) = self.history_seq.get(id) {
            return Ok(*seq);
        }
        let row =
            self.one("SELECT COALESCE(MAX(seq), 0) FROM history WHERE conversation = $1", &[&id.as_str()]).await?;
        let seq = row.map(|r| r.try_get::<_, i64>(0)).transpose()?.unwrap_or(0) as u64;
        self.history_seq.insert(id.clone(), seq);
        Ok(seq)
    }

    async fn append_history(&mut self, conversation: &Id, e: &HistoryEvent) -> Result<(), StoreError> {
        self.history.push((conversation.clone(), e.seq, serde_json::to_string(e)?));
        self.history_seq.insert(conversation.clone(), e.seq);
        Ok(())
    }

    async fn representative(&mut self, id: &Id) -> Result<Option<Representative>, StoreError> {
        Ok(self.rep_slot(id).await?.current.clone())
    }

    async fn put_representative(
        &mut self,
        id: &Id,
        input: &RepresentativeInput,
        now: &str,
    ) -> Result<Representative, StoreError> {
        let slot = self.rep_slot(id).await?;
        let input = Arc::new(input.clone());
        let rep = match &slot.current {
            Some(before) => {
                let mut rep = Representative::with_shared_input(
                    id.clone(),
                    input,
                    before.used_capacity,
                    before.version + 1,
                    now.to_owned(),
                );
                rep.last_assigned_ms = before.last_assigned_ms;
                rep.revision = before.revision + 1;
                rep
            }
            None => {
                let mut rep = Representative::with_shared_input(id.clone(), input, 0, 1, now.to_owned());
                rep.revision = 1;
                rep
            }
        };
        let created = slot.current.is_none() && slot.stored.is_none() && !slot.changed;
        slot.current = Some(rep.clone());
        slot.changed = true;
        if created {
            self.reps_created.push(id.clone());
        }
        self.rep_docs.insert(id.clone());
        Ok(rep)
    }

    async fn add_used_capacity(
        &mut self,
        id: &Id,
        delta: i64,
        now_ms: i64,
    ) -> Result<Option<Representative>, StoreError> {
        let slot = self.rep_slot(id).await?;
        let Some(before) = &slot.current else { return Ok(None) };
        let mut rep = Representative::with_shared_input(
            id.clone(),
            Arc::clone(&before.input),
            before.used_capacity + delta,
            before.version,
            before.updated_at.clone(),
        );
        rep.revision = before.revision + 1;
        rep.last_assigned_ms = if delta > 0 { Some(now_ms) } else { before.last_assigned_ms };
        slot.current = Some(rep.clone());
        slot.changed = true;
        Ok(Some(rep))
    }

    async fn queue(&mut self, id: &Id) -> Result<Option<Queue>, StoreError> {
        // Not locked: creating a conversation in a queue must not queue behind every
        // other creation in it. Queues are never deleted.
        Ok(self.queue_slot(id, Lock::None).await?.current.clone())
    }

    async fn share_queue(&mut self, id: &Id) -> Result<Option<Queue>, StoreError> {
        Ok(self.queue_slot(id, Lock::Share).await?.current.clone())
    }

    async fn lock_queue(&mut self, id: &Id) -> Result<Option<Queue>, StoreError> {
        Ok(self.queue_slot(id, Lock::Update).await?.current.clone())
    }

    async fn put_queue(&mut self, id: &Id, input: &QueueInput, now: &str) -> Result<Queue, StoreError> {
        let slot = self.queue_slot(id, Lock::Update).await?;
        let version = slot.current.as_ref().map_or(1, |q| q.version + 1);
        let queue = Queue { id: id.clone(), input: input.clone(), version, updated_at: now.to_owned() };
        let created = slot.current.is_none() && slot.stored.is_none() && !slot.changed;
        slot.current = Some(queue.clone());
        slot.changed = true;
        if created {
            self.queues_created.push(id.clone());
        }
        Ok(queue)
    }

    async fn idempotent(&mut self, token: &str, key: &str) -> Result<Option<(String, Outcome)>, StoreError> {
        let id = (token.to_owned(), key.to_owned());
        if !self.keys.contains_key(&id) {
            // Not foreseen: claim it now.
            let claimed = self
                .exec(
                    "INSERT INTO idempotency (token, key, fingerprint, outcome, created) VALUES ($1, $2, '', NULL, $3)
                     ON CONFLICT (token, key) DO NOTHING",
                    &[&token, &key, &unix_now()],
                )
                .await?;
            let state = if claimed == 1 {
                KeyState::Free
            } else {
                let row = self
                    .one("SELECT fingerprint, outcome FROM idempotency WHERE token = $1 AND key = $2", &[&token, &key])
                    .await?
                    .ok_or_else(|| StoreError::Commit(format!("idempotency key `{key}` vanished while claimed")))?;
                answered(key, row.try_get(0)?, row.try_get(1)?)?
            };
            self.keys.insert(id.clone(), Key { inserted: claimed == 1, state });
        }
        let Some(slot) = self.keys.get_mut(&id) else {
            return Err(StoreError::Commit(format!("idempotency key `{key}` vanished from the batch")));
        };
        match &slot.state {
            KeyState::Free => {
                slot.state = KeyState::Claimed;
                self.claim = Some(id);
                Ok(None)
            }
            // Commands run one after another; the one that claimed it has finished.
            KeyState::Claimed => Err(StoreError::Commit(format!("idempotency key `{key}` is claimed twice"))),
            KeyState::Answered { fingerprint, outcome } => Ok(Some((fingerprint.clone(), (**outcome).clone()))),
        }
    }

    async fn remember(&mut self, token: &str, key: &Idempotency, outcome: &Outcome) -> Result<(), StoreError> {
        let id = (token.to_owned(), key.key.clone());
        let slot = self
            .keys
            .get_mut(&id)
            .ok_or_else(|| StoreError::Commit(format!("idempotency key `{}` was never claimed", key.key)))?;
        slot.state = KeyState::Answered { fingerprint: key.fingerprint.clone(), outcome: Box::new(outcome.clone()) };
        self.claim = None;
        Ok(())
    }

    async fn record_decision(&mut self, record: &DecisionRecord) -> Result<(), StoreError> {
        self.decisions.push((record.at_ms, serde_json::to_string(record)?));
        Ok(())
    }

    async fn record_ruleset(&mut self, version: &str, files: &[RuleFile]) -> Result<(), StoreError> {
        if !self.rulesets.iter().any(|(v, _)| v == version) {
            self.rulesets.push((version.to_owned(), serde_json::to_string(files)?));
        }
        Ok(())
    }

    async fn purge_decisions(&mut self, before_ms: i64) -> Result<(), StoreError> {
        self.purge_before = Some(self.purge_before.map_or(before_ms, |b| b.max(before_ms)));
        Ok(())
    }
}

fn queue_sql(lock: Lock) -> &'static str {
    static SQL: LazyLock<[String; 3]> = LazyLock::new(|| {
        [Lock::None, Lock::Share, Lock::Update]
            .map(|l| format!("SELECT {QUEUE_COLUMNS} FROM queues WHERE id = ANY($1) ORDER BY id{}", l.clause()))
    });
    &SQL[lock as usize]
}

/// Numbers the batch's changes from the feed's counter and stores them; answers their
/// positions. The last statement before `COMMIT`: the counter's row stays locked until
/// the commit is durable, which keeps positions in commit order.
fn number_changes(changes: &[NewChange]) -> Statement {
    let version: Vec<Option<i64>> = changes.iter().map(|c| c.version.map(|v| v as i64)).collect();
    let touched: Vec<String> = changes.iter().map(|c| c.touched.join(",")).collect();
    (
        "WITH head AS (UPDATE feed_head SET position = position + $1 RETURNING position - $1 AS base)
         INSERT INTO changes (position, at, kind, id, action, version, actor, touched)
         SELECT head.base + c.n, c.at, c.kind, c.id, c.action, c.version, c.actor, c.touched
         FROM head, UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::text[], $8::text[])
              WITH ORDINALITY AS c(at, kind, id, action, version, actor, touched, n)
         RETURNING position",
        vec![
            Box::new(changes.len() as i64),
            Box::new(strings(changes, |c| c.at.as_str())),
            Box::new(strings(changes, |c| c.kind.as_str())),
            Box::new(strings(changes, |c| c.id.as_str())),
            Box::new(strings(changes, |c| c.action.as_str())),
            Box::new(version),
            Box::new(strings(changes, |c| c.actor.as_str())),
            Box::new(touched),
        ],
    )
}

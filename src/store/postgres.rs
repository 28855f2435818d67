//! The PostgreSQL store: several daemons on one database.
//!
//! Writes run the same commands as SQLite's ([`command::execute`]) inside PostgreSQL
//! transactions, at `READ COMMITTED` with row locks: a transaction locks the
//! conversations and the representatives its commands will change `FOR UPDATE`, so two
//! daemons acting on one conversation or one representative take turns, and the second
//! sees what the first committed (its version, its capacity) before it checks anything.
//! The versions and capacity a routing decision relied on are re-checked under those
//! locks (`Expect`); a queue a decision relied on is held `FOR SHARE`.
//!
//! Like SQLite's writer, each daemon commits in batches (group commit): its writer task
//! takes the writes waiting and runs them in one transaction
//! ([`batch`]: lock in a fixed order, decide in memory, write in bulk, commit once).
//! Every check of a command comes before its first write, so a refused command leaves
//! nothing to undo; a database error (a deadlock with a write the batch did not foresee,
//! a unique key taken by another daemon) rolls the batch back and its writes are run
//! again one per transaction.
//!
//! The change feed's positions must appear in commit order across daemons. Sequences
//! cannot give that (a number is taken before the commit, and commits finish in any
//! order), so each transaction numbers its changes as its last statement from a one-row
//! counter (`feed_head`). The counter's row lock is held until the transaction's commit
//! is durable, so the next transaction that numbers changes gets larger numbers and
//! commits after it: a reader never sees a position and later a smaller one. The lock is
//! held for one statement and the commit's flush, once per batch, not per write.

mod batch;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::FutureExt;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use batch::BatchTx;

use super::command;
use super::rows::{self, RepRow};
use super::{
    Applied, Change, ChangeKind, DecisionRecord, NewChange, Outcome, RuleFile, Store, StoreError, WriteRequest,
};
use crate::domain::{
    Conversation, ConversationFilter, HistoryEvent, Id, Page, PageRequest, Queue, QueueFilter, Representative,
    RepresentativeFilter, RepresentativeInput,
};

/// Schema migrations, applied in order; `switchboard_schema.version` counts those applied.
/// The schema is SQLite's (version 4) in PostgreSQL's types, plus the feed's counter.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE conversations (
    seq            BIGSERIAL PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    status         TEXT NOT NULL,
    queue          TEXT NOT NULL,
    representative TEXT,
    entity         TEXT NOT NULL,
    intent_based   BOOLEAN NOT NULL,
    version        BIGINT NOT NULL,
    doc            TEXT NOT NULL
);
CREATE INDEX conversations_ongoing ON conversations(seq) WHERE status <> 'closed';
CREATE INDEX conversations_queue ON conversations(queue, seq);
CREATE INDEX conversations_representative ON conversations(representative, seq);
CREATE INDEX conversations_ongoing_queue ON conversations(queue, seq) WHERE status <> 'closed';
CREATE INDEX conversations_ongoing_representative ON conversations(representative, seq) WHERE status <> 'closed';
CREATE TABLE history (
    conversation TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    doc          TEXT NOT NULL,
    PRIMARY KEY (conversation, seq)
);
CREATE TABLE representatives (
    seq              BIGSERIAL PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    used_capacity    BIGINT NOT NULL DEFAULT 0,
    version          BIGINT NOT NULL,
    revision         BIGINT NOT NULL DEFAULT 1,
    updated_at       TEXT NOT NULL,
    doc              TEXT NOT NULL,
    last_assigned_ms BIGINT
);
CREATE TABLE queues (
    seq        BIGSERIAL PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    version    BIGINT NOT NULL,
    updated_at TEXT NOT NULL,
    doc        TEXT NOT NULL
);
CREATE TABLE idempotency (
    token       TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    outcome     TEXT,
    created     BIGINT NOT NULL,
    PRIMARY KEY (token, key)
);
CREATE INDEX idempotency_created ON idempotency(created);
CREATE TABLE changes (
    position BIGINT PRIMARY KEY,
    at       TEXT NOT NULL,
    kind     TEXT NOT NULL,
    id       TEXT NOT NULL,
    action   TEXT NOT NULL,
    version  BIGINT,
    actor    TEXT NOT NULL,
    touched  TEXT NOT NULL DEFAULT ''
);
CREATE TABLE feed_head (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    position  BIGINT NOT NULL
);
INSERT INTO feed_head (position) VALUES (0);
"#,
    // Decision records and the rule files of each rule-set version (`switchboard replay`).
    r#"
CREATE TABLE decisions (
    seq   BIGSERIAL PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    doc   TEXT NOT NULL
);
CREATE INDEX decisions_at ON decisions(at_ms);
CREATE TABLE rulesets (
    version TEXT PRIMARY KEY,
    files   TEXT NOT NULL
);
"#,
];

/// Serialises schema changes between daemons starting at once (a session advisory lock).
const MIGRATION_LOCK: i64 = 0x5357_4254_4348; // "SWBTCH"

/// Writer tasks per daemon, each with its own connection and batches. One: on two cores
/// a single writer's batches grow with the load (group commit) and cost the server the
/// least per write; 2 and 4 writers measured about 10% and 33% fewer actions/s
/// (docs/performance.md, "Several daemons on PostgreSQL").
const WRITERS: usize = 1;
/// Writes committed together at most.
const MAX_BATCH: usize = 64;
/// Connections per daemon for reads (the writers have their own).
const POOL_SIZE: usize = 24;
/// Every session: a 2xx means on disk, whatever the server's default.
const READER_OPTIONS: &str = "-c synchronous_commit=on";
/// The writers' statements are fixed and select rows by id (or arrays of ids): a plan
/// made per execution (PostgreSQL's default for the first runs of a prepared statement,
/// and later whenever it guesses it cheaper) never differs from the generic one and cost
/// about a tenth of the server's time under load.
const WRITER_OPTIONS: &str = "-c synchronous_commit=on -c plan_cache_mode=force_generic_plan";
/// A write that meets a deadlock or a key another daemon took is run again this often.
const ATTEMPTS: u32 = 5;
/// Idempotency keys are kept at least this long.
const KEY_TTL: Duration = Duration::from_secs(24 * 3600);

const REP_COLUMNS: &str = "id, doc, used_capacity, version, updated_at, last_assigned_ms, revision";
const QUEUE_COLUMNS: &str = "id, doc, version, updated_at";
const CHANGE_COLUMNS: &str = "position, at, kind, id, action, version, actor, touched";

struct Job {
    request: WriteRequest,
    reply: oneshot::Sender<Result<Applied, StoreError>>,
}

pub struct PostgresStore {
    pool: Pool,
    /// Writer tasks still running.
    writers: Arc<std::sync::atomic::AtomicUsize>,
    jobs: mpsc::Sender<Job>,
    /// Ends the writer and purge tasks when the store is dropped.
    _tasks: Vec<tokio::task::AbortHandle>,
    stop: Option<tokio::sync::watch::Sender<()>>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // The writers finish the batch they are committing (its callers get its answers),
        // then stop.
        self.stop = None;
    }
}

fn pool(url: &str, size: usize, options: &str) -> Result<Pool, StoreError> {
    let mut config = tokio_postgres::Config::from_str(url).map_err(|e| StoreError::BadUrl(format!("{url}: {e}")))?;
    config.connect_timeout(Duration::from_secs(5));
    config.options(options);
    if config.get_application_name().is_none() {
        config.application_name("switchboard");
    }
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| StoreError::Unavailable(e.to_string()))
}

async fn client(pool: &Pool) -> Result<deadpool_postgres::Client, StoreError> {
    pool.get().await.map_err(|e| StoreError::Unavailable(e.to_string()))
}

/// `switchboard migrate` on PostgreSQL.
pub(super) async fn migrate_url(url: &str) -> Result<i64, StoreError> {
    let pool = pool(url, 1, READER_OPTIONS)?;
    migrate(&pool).await
}

/// Applies the migrations the database lacks, one daemon at a time; refuses a database
/// of a newer schema. Returns the schema version it is at.
async fn migrate(pool: &Pool) -> Result<i64, StoreError> {
    let mut conn = client(pool).await?;
    conn.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
    let result = apply_migrations(&mut conn).await;
    conn.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await?;
    result
}

async fn apply_migrations(conn: &mut deadpool_postgres::Client) -> Result<i64, StoreError> {
    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS switchboard_schema (version BIGINT NOT NULL);
         INSERT INTO switchboard_schema (version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM switchboard_schema);",
    )
    .await?;
    let applied: i64 = conn.query_one("SELECT version FROM switchboard_schema", &[]).await?.get(0);
    let known = MIGRATIONS.len() as i64;
    if applied > known {
        return Err(StoreError::NewerSchema { found: applied, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(applied).unwrap_or(0)) {
        let tx = conn.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute("UPDATE switchboard_schema SET version = $1", &[&(i as i64 + 1)]).await?;
        tx.commit().await?;
    }
    Ok(known)
}

impl PostgresStore {
    /// Connects, migrates the schema and starts the writers.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let pool = pool(url, POOL_SIZE, READER_OPTIONS)?;
        migrate(&pool).await?;
        let writer_pool = self::pool(url, WRITERS, WRITER_OPTIONS)?;
        let (jobs, rx) = mpsc::channel::<Job>(4096);
        let rx = Arc::new(Mutex::new(rx));
        let (stop, stopped) = tokio::sync::watch::channel(());
        let mut tasks = Vec::new();
        let writers = Arc::new(std::sync::atomic::AtomicUsize::new(WRITERS));
        for _ in 0..WRITERS {
            let (pool, rx, stopped, live) = (writer_pool.clone(), rx.clone(), stopped.clone(), writers.clone());
            tasks.push(
                tokio::spawn(async move {
                    write_loop(pool, rx, stopped).await;
                    live.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                })
                .abort_handle(),
            );
        }
        tasks.push(tokio::spawn(purge_loop(pool.clone(), stopped)).abort_handle());
        Ok(Self { pool, writers, jobs, _tasks: tasks, stop: Some(stop) })
    }

    async fn conn(&self) -> Result<deadpool_postgres::Client, StoreError> {
        client(&self.pool).await
    }
}

async fn purge_loop(pool: Pool, mut stopped: tokio::sync::watch::Receiver<()>) {
    loop {
        let cutoff = unix_now() - KEY_TTL.as_secs() as i64;
        let purged = async {
            let conn = client(&pool).await?;
            conn.execute("DELETE FROM idempotency WHERE created < $1", &[&cutoff]).await?;
            Ok::<_, StoreError>(())
        };
        if let Err(e) = purged.await {
            tracing::warn!(error = %e, "purging expired idempotency keys failed");
        }
        tokio::select! {
            _ = stopped.changed() => return,
            () = tokio::time::sleep(Duration::from_secs(600)) => {}
        }
    }
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// One writer: takes the writes waiting (up to [`MAX_BATCH`]), commits them together,
/// answers each.
async fn write_loop(pool: Pool, rx: Arc<Mutex<mpsc::Receiver<Job>>>, mut stopped: tokio::sync::watch::Receiver<()>) {
    loop {
        let batch = {
            let mut rx = tokio::select! {
                rx = rx.lock() => rx,
                _ = stopped.changed() => return,
            };
            let Some(first) = (tokio::select! {
                job = rx.recv() => job,
                _ = stopped.changed() => return,
            }) else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        // A panic (a bug) fails this batch only: its transaction is rolled back when the
        // dropped connection's transaction ends, and the writer goes on.
        let results = match std::panic::AssertUnwindSafe(commit_batch(&pool, &batch)).catch_unwind().await {
            Ok(results) => results,
            Err(_) => {
                tracing::error!(writes = batch.len(), "a batch panicked inside the store; it was rolled back");
                batch.iter().map(|_| Err(StoreError::Failed("the write failed inside the store".into()))).collect()
            }
        };
        for (job, result) in batch.into_iter().zip(results) {
            // The client may have gone; its change is durable all the same.
            let _ = job.reply.send(result);
        }
    }
}

/// How a batch ended when it did not commit.
enum Failed {
    /// Rolled back before `COMMIT` was sent: nothing of it was applied.
    RolledBack(StoreError),
    /// `COMMIT` was sent and no answer came: the writes may or may not be applied.
    Unknown(StoreError),
}

async fn commit_batch(pool: &Pool, batch: &[Job]) -> Vec<Result<Applied, StoreError>> {
    let requests: Vec<&WriteRequest> = batch.iter().map(|j| &j.request).collect();
    match run_batch(pool, &requests).await {
        Ok(results) => results,
        Err(Failed::Unknown(e)) => unknown(batch.len(), &e),
        Err(Failed::RolledBack(e)) => {
            tracing::debug!(error = %e, writes = batch.len(), "a batch was rolled back; running its writes one by one");
            let mut results = Vec::with_capacity(batch.len());
            for request in requests {
                results.push(run_alone(pool, request).await);
            }
            results
        }
    }
}

fn unknown(n: usize, e: &StoreError) -> Vec<Result<Applied, StoreError>> {
    tracing::error!(error = %e, writes = n, "the connection failed during COMMIT; the outcome of these writes is unknown");
    (0..n)
        .map(|_| {
            Err(StoreError::Commit(format!(
                "the database connection failed while committing ({e}); the change may or may not be applied: \
                 read it back, or retry with the same Idempotency-Key"
            )))
        })
        .collect()
}

/// One write in its own transaction, again while it meets a deadlock, a serialization
/// failure or a key another daemon committed first.
async fn run_alone(pool: &Pool, request: &WriteRequest) -> Result<Applied, StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match run_batch(pool, &[request]).await {
            Ok(mut results) => return results.pop().unwrap_or(Err(StoreError::Closed)),
            Err(Failed::Unknown(e)) => return unknown(1, &e).pop().unwrap_or(Err(StoreError::Closed)),
            Err(Failed::RolledBack(e)) if attempt < ATTEMPTS && retryable(&e) => {
                tracing::debug!(error = %e, attempt, "write rolled back; running it again");
            }
            Err(Failed::RolledBack(e)) => return Err(e),
        }
    }
}

/// Deadlock, serialization failure, a unique key taken by a concurrent transaction, or a
/// connection that broke before `COMMIT` was sent (the server rolled it back).
fn retryable(e: &StoreError) -> bool {
    use tokio_postgres::error::SqlState;
    let StoreError::Postgres(e) = e else { return false };
    e.is_closed()
        || e.code().is_some_and(|c| {
            *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::UNIQUE_VIOLATION
            // The server ended the session (an operator, a restart): the pool gives a new one.
            || *c == SqlState::ADMIN_SHUTDOWN
            || *c == SqlState::CRASH_SHUTDOWN
        })
}

/// Runs the writes in one transaction and commits it. A refused write is answered and
/// the others go on (it wrote nothing); a database error rolls the whole batch back.
async fn run_batch(pool: &Pool, requests: &[&WriteRequest]) -> Result<Vec<Result<Applied, StoreError>>, Failed> {
    let mut session = Session(Some(client(pool).await.map_err(Failed::RolledBack)?));
    let Some(conn) = session.0.as_deref() else { return Err(Failed::RolledBack(StoreError::Closed)) };
    let requests: Vec<WriteRequest> = requests
        .iter()
        .map(|r| {
            let mut r = (*r).clone();
            (r.now, r.now_ms) = crate::clock::now();
            r
        })
        .collect();
    let mut batch = BatchTx::lock(conn, &requests).await.map_err(Failed::RolledBack)?;
    let mut results = Vec::with_capacity(requests.len());
    let mut changes: Vec<NewChange> = Vec::new();
    // Per result: how many of `changes` are its own.
    let mut counts = Vec::with_capacity(requests.len());
    for request in requests {
        match command::execute(&mut batch, request).await {
            Ok((outcome, effects)) => {
                counts.push(effects.changes.len());
                changes.extend(effects.changes);
                results.push(Ok(Applied {
                    outcome,
                    position: None,
                    representatives: effects.representatives,
                    queues: effects.queues,
                }));
            }
            Err(e @ (StoreError::Postgres(_) | StoreError::Unavailable(_))) => return Err(Failed::RolledBack(e)),
            Err(refused) => {
                batch.refused();
                counts.push(0);
                results.push(Err(refused));
            }
        }
    }
    let mut next = batch.commit(&changes).await?;
    drop(batch);
    for (result, n) in results.iter_mut().zip(counts) {
        if let Ok(applied) = result
            && n > 0
        {
            next += n as u64;
            applied.position = Some(next);
        }
    }
    session.finished();
    Ok(results)
}

/// A writer's connection for one batch. Unless the batch committed, the connection may be
/// inside a transaction (open or aborted): it is closed instead of going back to the pool,
/// and the server rolls back whatever it held.
struct Session(Option<deadpool_postgres::Client>);

impl Session {
    /// The batch committed: the connection is idle and goes back to the pool.
    fn finished(&mut self) {
        drop(self.0.take());
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(deadpool_postgres::Client::take(conn));
        }
    }
}

/// A representative from `REP_COLUMNS`, starting at column `first`.
fn rep_at(row: &tokio_postgres::Row, first: usize) -> Result<Representative, StoreError> {
    let doc: &str = row.try_get(first + 1)?;
    rows::representative(RepRow {
        id: row.try_get(first)?,
        input: Arc::new(rows::decode::<RepresentativeInput>(doc)?),
        used_capacity: row.try_get(first + 2)?,
        version: row.try_get(first + 3)?,
        updated_at: row.try_get(first + 4)?,
        last_assigned_ms: row.try_get(first + 5)?,
        revision: row.try_get(first + 6)?,
    })
}

fn rep_from_row(row: &tokio_postgres::Row) -> Result<Representative, StoreError> {
    rep_at(row, 0)
}

/// A queue from `QUEUE_COLUMNS`, starting at column `first`.
fn queue_at(row: &tokio_postgres::Row, first: usize) -> Result<Queue, StoreError> {
    rows::queue(row.try_get(first)?, row.try_get(first + 1)?, row.try_get(first + 2)?, row.try_get(first + 3)?)
}

fn queue_from_row(row: &tokio_postgres::Row) -> Result<Queue, StoreError> {
    queue_at(row, 0)
}

fn change_from_row(row: &tokio_postgres::Row) -> Result<Change, StoreError> {
    let kind: &str = row.try_get(2)?;
    let touched: &str = row.try_get(7)?;
    Ok(Change {
        position: row.try_get::<_, i64>(0)? as u64,
        at: row.try_get(1)?,
        kind: ChangeKind::parse(kind).ok_or_else(|| StoreError::Commit(format!("unknown change kind `{kind}`")))?,
        id: row.try_get(3)?,
        action: row.try_get(4)?,
        version: row.try_get::<_, Option<i64>>(5)?.map(|v| v as u64),
        actor: row.try_get(6)?,
        touched: touched.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect(),
    })
}

#[async_trait]
impl Store for PostgresStore {
    async fn write(&self, request: WriteRequest) -> Result<Applied, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job { request, reply }).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn idempotent(&self, token: &str, key: &str) -> Result<Option<(String, Outcome)>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached(
                "SELECT fingerprint, outcome FROM idempotency WHERE token = $1 AND key = $2 AND outcome IS NOT NULL",
            )
            .await?;
        let row = conn.query_opt(&stmt, &[&token, &key]).await?;
        row.map(|r| {
            let outcome: &str = r.try_get(1)?;
            Ok((r.try_get(0)?, rows::decode(outcome)?))
        })
        .transpose()
    }

    async fn directory(&self) -> Result<(Vec<Representative>, Vec<Queue>), StoreError> {
        let conn = self.conn().await?;
        let reps = conn.query(&format!("SELECT {REP_COLUMNS} FROM representatives ORDER BY seq"), &[]).await?;
        let queues = conn.query(&format!("SELECT {QUEUE_COLUMNS} FROM queues ORDER BY seq"), &[]).await?;
        Ok((
            reps.iter().map(rep_from_row).collect::<Result<_, _>>()?,
            queues.iter().map(queue_from_row).collect::<Result<_, _>>()?,
        ))
    }

    async fn conversation(&self, id: &Id) -> Result<Option<Conversation>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached("SELECT doc FROM conversations WHERE id = $1").await?;
        let row = conn.query_opt(&stmt, &[&id.as_str()]).await?;
        row.map(|r| rows::decode(r.try_get(0)?)).transpose()
    }

    async fn conversations(
        &self,
        filter: ConversationFilter,
        page: PageRequest,
    ) -> Result<Page<Conversation>, StoreError> {
        let after = page.after.unwrap_or(0);
        let mut sql = String::from("SELECT seq, doc FROM conversations WHERE seq > $1");
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(after)];
        if filter.statuses.is_empty() {
            // Matches the partial index `conversations_ongoing`.
            sql.push_str(" AND status <> 'closed'");
        } else {
            let statuses: Vec<String> = filter.statuses.iter().map(|s| s.as_str().to_owned()).collect();
            args.push(Box::new(statuses));
            sql.push_str(" AND status = ANY($2)");
        }
        let mut arg = |sql: &mut String, column: &str, v: Box<dyn ToSql + Sync + Send>| {
            args.push(v);
            sql.push_str(&format!(" AND {column} = ${}", args.len()));
        };
        if let Some(q) = &filter.queue {
            arg(&mut sql, "queue", Box::new(q.as_str().to_owned()));
        }
        if let Some(r) = &filter.representative {
            arg(&mut sql, "representative", Box::new(r.as_str().to_owned()));
        }
        if let Some(e) = &filter.entity {
            arg(&mut sql, "entity", Box::new(e.clone()));
        }
        if let Some(b) = filter.intent_based {
            arg(&mut sql, "intent_based", Box::new(b));
        }
        sql.push_str(&format!(" ORDER BY seq LIMIT {}", page.limit.saturating_add(1)));
        let conn = self.conn().await?;
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref() as &(dyn ToSql + Sync)).collect();
        let rows = conn.query(&sql, &params).await?;
        let mut items = Vec::with_capacity(rows.len());
        let mut seqs = Vec::with_capacity(rows.len());
        for row in &rows {
            seqs.push(row.try_get::<_, i64>(0)?);
            items.push(rows::decode::<Conversation>(row.try_get(1)?)?);
        }
        let next = if items.len() > page.limit {
            items.truncate(page.limit);
            seqs.get(page.limit.saturating_sub(1)).copied()
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn history(&self, id: &Id) -> Result<Option<Vec<HistoryEvent>>, StoreError> {
        let conn = self.conn().await?;
        let exists = conn.prepare_cached("SELECT 1 FROM conversations WHERE id = $1").await?;
        if conn.query_opt(&exists, &[&id.as_str()]).await?.is_none() {
            return Ok(None);
        }
        let stmt = conn.prepare_cached("SELECT doc FROM history WHERE conversation = $1 ORDER BY seq").await?;
        let rows = conn.query(&stmt, &[&id.as_str()]).await?;
        rows.iter().map(|r| rows::decode(r.try_get(0)?)).collect::<Result<_, _>>().map(Some)
    }

    async fn representative(&self, id: &Id) -> Result<Option<Representative>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(&format!("SELECT {REP_COLUMNS} FROM representatives WHERE id = $1")).await?;
        conn.query_opt(&stmt, &[&id.as_str()]).await?.as_ref().map(rep_from_row).transpose()
    }

    async fn representatives(
        &self,
        filter: RepresentativeFilter,
        page: PageRequest,
    ) -> Result<Page<Representative>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached(&format!("SELECT seq, {REP_COLUMNS} FROM representatives WHERE seq > $1 ORDER BY seq"))
            .await?;
        let after = page.after.unwrap_or(0);
        let rows = conn.query(&stmt, &[&after]).await?;
        scan(&rows, page.limit, |row| {
            let rep = rep_at(row, 1)?;
            Ok(filter.matches(&rep).then_some(rep))
        })
    }

    async fn queue(&self, id: &Id) -> Result<Option<Queue>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(&format!("SELECT {QUEUE_COLUMNS} FROM queues WHERE id = $1")).await?;
        conn.query_opt(&stmt, &[&id.as_str()]).await?.as_ref().map(queue_from_row).transpose()
    }

    async fn queues(&self, filter: QueueFilter, page: PageRequest) -> Result<Page<Queue>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached(&format!("SELECT seq, {QUEUE_COLUMNS} FROM queues WHERE seq > $1 ORDER BY seq"))
            .await?;
        let after = page.after.unwrap_or(0);
        let rows = conn.query(&stmt, &[&after]).await?;
        scan(&rows, page.limit, |row| {
            let q = queue_at(row, 1)?;
            Ok(filter.matches(&q).then_some(q))
        })
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .query_one(
                "SELECT NOT EXISTS (SELECT 1 FROM queues) AND NOT EXISTS (SELECT 1 FROM representatives)
                     AND NOT EXISTS (SELECT 1 FROM conversations)",
                &[],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached(&format!(
                "SELECT {CHANGE_COLUMNS} FROM changes WHERE position > $1 ORDER BY position LIMIT $2"
            ))
            .await?;
        let rows = conn.query(&stmt, &[&(after as i64), &(limit as i64)]).await?;
        rows.iter().map(change_from_row).collect()
    }

    async fn decisions(
        &self,
        since_ms: i64,
        until_ms: i64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, DecisionRecord)>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached(
                "SELECT seq, doc FROM decisions WHERE at_ms >= $1 AND at_ms < $2 AND seq > $3 ORDER BY seq LIMIT $4",
            )
            .await?;
        let rows = conn.query(&stmt, &[&since_ms, &until_ms, &(after as i64), &(limit as i64)]).await?;
        rows.iter().map(|r| Ok((r.try_get::<_, i64>(0)? as u64, rows::decode(r.try_get(1)?)?))).collect()
    }

    async fn ruleset(&self, version: &str) -> Result<Option<Vec<RuleFile>>, StoreError> {
        let conn = self.conn().await?;
        let row = conn.query_opt("SELECT files FROM rulesets WHERE version = $1", &[&version]).await?;
        row.map(|r| rows::decode(r.try_get(0)?)).transpose()
    }

    async fn feed_head(&self) -> Result<u64, StoreError> {
        let conn = self.conn().await?;
        let row = conn.query_one("SELECT position FROM feed_head", &[]).await?;
        Ok(row.try_get::<_, i64>(0)? as u64)
    }

    async fn records(&self, reps: &[Id], queues: &[Id]) -> Result<(Vec<Representative>, Vec<Queue>), StoreError> {
        let conn = self.conn().await?;
        let rep_ids: Vec<&str> = reps.iter().map(Id::as_str).collect();
        let queue_ids: Vec<&str> = queues.iter().map(Id::as_str).collect();
        let mut found = (Vec::new(), Vec::new());
        if !rep_ids.is_empty() {
            let stmt =
                conn.prepare_cached(&format!("SELECT {REP_COLUMNS} FROM representatives WHERE id = ANY($1)")).await?;
            for row in conn.query(&stmt, &[&rep_ids]).await? {
                found.0.push(rep_from_row(&row)?);
            }
        }
        if !queue_ids.is_empty() {
            let stmt = conn.prepare_cached(&format!("SELECT {QUEUE_COLUMNS} FROM queues WHERE id = ANY($1)")).await?;
            for row in conn.query(&stmt, &[&queue_ids]).await? {
                found.1.push(queue_from_row(&row)?);
            }
        }
        Ok(found)
    }

    async fn conversations_named(&self, ids: &[Id]) -> Result<Vec<Conversation>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.conn().await?;
        let ids: Vec<&str> = ids.iter().map(Id::as_str).collect();
        let stmt = conn.prepare_cached("SELECT doc FROM conversations WHERE id = ANY($1)").await?;
        conn.query(&stmt, &[&ids]).await?.iter().map(|row| rows::decode(row.try_get(0)?)).collect()
    }

    fn shared(&self) -> bool {
        true
    }

    fn health(&self) -> Result<(), String> {
        match self.writers.load(std::sync::atomic::Ordering::Relaxed) {
            0 => Err("no PostgreSQL writer is running; restart the daemon".into()),
            _ => Ok(()),
        }
    }
}

/// A page of `limit` items from rows in `seq` order, keeping those `build` returns.
fn scan<T>(
    rows: &[tokio_postgres::Row],
    limit: usize,
    mut build: impl FnMut(&tokio_postgres::Row) -> Result<Option<T>, StoreError>,
) -> Result<Page<T>, StoreError> {
    let mut items = Vec::new();
    let mut last_seq = 0;
    for row in rows {
        let seq: i64 = row.try_get(0)?;
        let Some(item) = build(row)? else { continue };
        if items.len() == limit {
            return Ok(Page { items, next: Some(last_seq) });
        }
        items.push(item);
        last_seq = seq;
    }
    Ok(Page { items, next: None })
}

//! The embedded SQLite store.
//!
//! One writer thread owns the only write connection. It takes every write waiting on
//! its channel, runs each in its own savepoint of one transaction, commits once (WAL,
//! `synchronous=FULL`: the commit is fsynced) and only then answers them all. That is
//! group commit: one fsync acknowledges a whole batch, so throughput is not capped by
//! the disk's fsync rate while each answer still means "on disk". Readers use their own
//! connections and see only committed transactions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::command::{self, Tx};
use super::rows::{self, decode};
use super::{
    Applied, Change, ChangeKind, DecisionRecord, Idempotency, NewChange, Outcome, RuleFile, Store, StoreError,
    WriteRequest,
};
use crate::domain::{
    Conversation, ConversationFilter, HistoryEvent, Id, Page, PageRequest, Queue, QueueFilter, QueueInput,
    Representative, RepresentativeFilter, RepresentativeInput, Status,
};

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE conversations (
    seq            INTEGER PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    status         TEXT NOT NULL,
    queue          TEXT NOT NULL,
    representative TEXT,
    entity         TEXT NOT NULL,
    intent_based   INTEGER NOT NULL,
    version        INTEGER NOT NULL,
    doc            TEXT NOT NULL
);
CREATE INDEX conversations_ongoing ON conversations(seq) WHERE status <> 'closed';
CREATE INDEX conversations_queue ON conversations(queue, seq);
CREATE INDEX conversations_representative ON conversations(representative, seq);
CREATE INDEX conversations_ongoing_queue ON conversations(queue, seq) WHERE status <> 'closed';
CREATE INDEX conversations_ongoing_representative ON conversations(representative, seq) WHERE status <> 'closed';
CREATE TABLE history (
    conversation TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    doc          TEXT NOT NULL,
    PRIMARY KEY (conversation, seq)
) WITHOUT ROWID;
CREATE TABLE representatives (
    seq           INTEGER PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    used_capacity INTEGER NOT NULL DEFAULT 0,
    version       INTEGER NOT NULL,
    updated_at    TEXT NOT NULL,
    doc           TEXT NOT NULL
);
CREATE TABLE queues (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    version    INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    doc        TEXT NOT NULL
);
CREATE TABLE idempotency (
    token       TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    created     INTEGER NOT NULL,
    PRIMARY KEY (token, key)
) WITHOUT ROWID;
"#,
    r#"
ALTER TABLE representatives ADD COLUMN last_assigned_ms INTEGER;
"#,
    // The hourly purge of expired idempotency keys read the whole table.
    r#"
CREATE INDEX idempotency_created ON idempotency(created);
"#,
    // The change feed, and a revision per representative row for the routing state.
    r#"
ALTER TABLE representatives ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
CREATE TABLE changes (
    position INTEGER PRIMARY KEY,
    at       TEXT NOT NULL,
    kind     TEXT NOT NULL,
    id       TEXT NOT NULL,
    action   TEXT NOT NULL,
    version  INTEGER,
    actor    TEXT NOT NULL,
    touched  TEXT NOT NULL DEFAULT ''
);
"#,
    // Decision records (what the rules saw for each applied assign and transfer) and the
    // rule files of each rule-set version, for `switchboard replay`.
    r#"
CREATE TABLE decisions (
    seq   INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    doc   TEXT NOT NULL
);
CREATE INDEX decisions_at ON decisions(at_ms);
CREATE TABLE rulesets (
    version TEXT PRIMARY KEY,
    files   TEXT NOT NULL
) WITHOUT ROWID;
"#,
];

/// Writes committed together at most; bounds the latency a batch adds.
const MAX_BATCH: usize = 256;
/// Idempotency keys are kept at least this long.
const KEY_TTL: Duration = Duration::from_secs(24 * 3600);

struct Job {
    request: WriteRequest,
    reply: oneshot::Sender<Result<Applied, StoreError>>,
}

pub struct SqliteStore {
    /// Why the writer stopped taking writes (a failed commit), if it did.
    writer_stopped: Arc<Mutex<Option<String>>>,
    /// `None` once the store is closing.
    writer: Option<mpsc::Sender<Job>>,
    readers: Arc<ReaderPool>,
    inputs: Arc<InputCache>,
    /// Dropped to stop the checkpoint thread.
    stop_checkpoints: Option<std::sync::mpsc::Sender<()>>,
    /// The writer and checkpoint threads, joined when the store is dropped so the last
    /// checkpoint (which empties the WAL) finishes before the process exits.
    writer_thread: Option<std::thread::JoinHandle<()>>,
    checkpoint_thread: Option<std::thread::JoinHandle<()>>,
}

/// A WAL larger than this is checkpointed and truncated by the checkpoint thread (the
/// writer waits for it, for the milliseconds it takes readers to move off the WAL); below
/// it, checkpoints never block a write.
const WAL_LIMIT: u64 = 40 << 20;
/// If writes outrun the checkpoint thread (each checkpoint copies pages and fsyncs), the
/// writer itself truncates the WAL past this size before it takes more writes:
/// backpressure, so the WAL is bounded whatever the load.
const WAL_HARD_LIMIT: u64 = 56 << 20;

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel ends the writer once it has answered every write sent,
        // then the checkpoint thread's last checkpoint truncates the WAL.
        self.writer = None;
        if let Some(writer) = self.writer_thread.take() {
            let _ = writer.join();
        }
        self.stop_checkpoints = None;
        if let Some(checkpoints) = self.checkpoint_thread.take() {
            let _ = checkpoints.join();
        }
    }
}

/// Representatives' stored documents, decoded once per version. A representative's `doc`
/// and `version` change together (every PUT or PATCH bumps the version in the statement
/// that writes the doc, and versions never go back), so a decoded doc is valid for as
/// long as the row shows the version it was decoded at. Capacity and idle time are
/// columns of their own and always read fresh. Listing the directory, which every
/// candidates request does, then decodes only what changed since the last request.
/// Sound because representatives are never deleted: a delete, if one is ever added, must
/// evict the entry (a re-created representative would start again at version 1).
#[derive(Default)]
struct InputCache {
    entries: Mutex<HashMap<String, (i64, Arc<RepresentativeInput>)>>,
}

impl InputCache {
    /// The input of representative `id` at `version`, decoding `doc` only when it is not
    /// cached at that version.
    fn get(&self, id: &str, version: i64, doc: &str) -> Result<Arc<RepresentativeInput>, StoreError> {
        let lock = || self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((v, input)) = lock().get(id)
            && *v == version
        {
            return Ok(input.clone());
        }
        let input: Arc<RepresentativeInput> = Arc::new(decode(doc)?);
        lock().insert(id.to_owned(), (version, input.clone()));
        Ok(input)
    }
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        create_folder(path)?;
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Each write of a batch runs in a savepoint, whose journal SQLite otherwise keeps
        // in a temporary file it opens, writes and closes per batch.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        migrate(&mut conn)?;
        purge_expired_keys(&conn)?;
        // Checkpoints run on their own thread, so a commit never waits for one.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = Connection::open(path)?;
        checkpointer.busy_timeout(Duration::from_secs(5))?;

        let (tx, rx) = mpsc::channel(4096);
        let inputs: Arc<InputCache> = Arc::default();
        let cache = inputs.clone();
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        let readers = Arc::new(ReaderPool {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            gate: std::sync::RwLock::new(()),
        });
        let (writer_wal, writer_readers) = (wal.clone(), readers.clone());
        let writer_stopped: Arc<Mutex<Option<String>>> = Arc::default();
        let stopped_by_writer = writer_stopped.clone();
        let writer = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(conn, &writer_wal, &writer_readers, rx, &cache, &stopped_by_writer))
            .map_err(|e| StoreError::Folder { path: "writer thread".into(), source: e })?;
        let (stop, stopped) = std::sync::mpsc::channel();
        let checkpoints = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn({
                let readers = readers.clone();
                move || checkpoint_loop(checkpointer, &wal, &readers, &stopped)
            })
            .map_err(|e| StoreError::Folder { path: "checkpoint thread".into(), source: e })?;
        Ok(Self {
            writer_stopped,
            writer: Some(tx),
            readers,
            inputs,
            stop_checkpoints: Some(stop),
            writer_thread: Some(writer),
            checkpoint_thread: Some(checkpoints),
        })
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            let result = {
                let _reading = pool.gate.read().unwrap_or_else(|e| e.into_inner());
                f(&conn)
            };
            pool.give_back(conn);
            result
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

/// Applies the migrations the file lacks; refuses a file of a newer schema. Returns the
/// schema version the file is at.
fn migrate(conn: &mut Connection) -> Result<i64, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let applied: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if applied > known {
        return Err(StoreError::NewerSchema { found: applied, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(applied).unwrap_or(0)) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
    }
    tx.commit()?;
    Ok(known)
}

/// `switchboard migrate` on a SQLite file: creates it (and its folder) or upgrades it.
pub(super) fn migrate_file(path: &Path) -> Result<i64, StoreError> {
    create_folder(path)?;
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    migrate(&mut conn)
}

fn create_folder(path: &Path) -> Result<(), StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|source| StoreError::Folder { path: dir.display().to_string(), source })?;
    }
    Ok(())
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn purge_expired_keys(conn: &Connection) -> Result<(), StoreError> {
    let cutoff = unix_now() - KEY_TTL.as_secs() as i64;
    conn.execute("DELETE FROM idempotency WHERE created < ?1", [cutoff])?;
    Ok(())
}

/// Copies the WAL back into the database file while writes go on (PASSIVE never blocks
/// the writer). A PASSIVE checkpoint cannot restart the WAL while readers use it, so under
/// steady reads and writes the file would only grow: past [`WAL_LIMIT`] a TRUNCATE
/// checkpoint waits for the readers, restarts the WAL and shrinks the file. When the store
/// is dropped, a last TRUNCATE leaves an empty WAL.
fn checkpoint_loop(conn: Connection, wal: &Path, readers: &ReaderPool, stopped: &std::sync::mpsc::Receiver<()>) {
    let checkpoint = |mode: &str| -> Option<(i64, i64)> {
        let sql = format!("PRAGMA wal_checkpoint({mode})");
        match conn.query_row(&sql, [], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))) {
            Ok(frames) => Some(frames),
            Err(e) => {
                tracing::warn!(error = %e, mode, "WAL checkpoint failed; it will be retried");
                None
            }
        }
    };
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(Duration::from_millis(100)) {
        // Truncate right after a PASSIVE that copied every frame: the TRUNCATE then has
        // (almost) nothing left to copy, so the writer waits for it only briefly.
        let caught_up = checkpoint("PASSIVE").is_some_and(|(log, copied)| log == copied);
        if caught_up && std::fs::metadata(wal).is_ok_and(|m| m.len() > WAL_LIMIT) {
            readers.truncate_wal(&conn);
        }
    }
    checkpoint("TRUNCATE");
}

/// The time writes are recorded at, read by the writer itself: requests reach it in any
/// order of their own clocks, and the wall clock may step back, yet a conversation's
/// history must never go back in time. Each stamp is at least the previous one.
#[derive(Default)]
struct Stamp {
    last_ms: i64,
}

impl Stamp {
    fn next(&mut self) -> (String, i64) {
        let now = time::OffsetDateTime::now_utc();
        let ms = ((now.unix_timestamp_nanos() / 1_000_000) as i64).max(self.last_ms);
        self.last_ms = ms;
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(now);
        let format =
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
        (at.format(&format).unwrap_or_default(), ms)
    }
}

fn write_loop(
    mut conn: Connection,
    wal: &Path,
    readers: &ReaderPool,
    mut rx: mpsc::Receiver<Job>,
    inputs: &InputCache,
    stopped: &Mutex<Option<String>>,
) {
    let mut last_purge = Instant::now();
    let mut stamp = Stamp::default();
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (results, fatal) = contained(&mut conn, &batch, inputs, &mut stamp);
        for (job, result) in batch.into_iter().zip(results) {
            // The client may have gone; its change is durable all the same.
            let _ = job.reply.send(result);
        }
        if let Some(why) = fatal {
            // The connection's state after a failed commit is not to be trusted: take no
            // more writes. `/healthz` says so, and a restart recovers from the WAL.
            tracing::error!("the SQLite writer stopped: {why}; restart the daemon");
            *stopped.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
            return;
        }
        if std::fs::metadata(wal).is_ok_and(|m| m.len() > WAL_HARD_LIMIT) {
            readers.truncate_wal(&conn);
        }
        if last_purge.elapsed() > Duration::from_secs(600) {
            last_purge = Instant::now();
            if let Err(e) = purge_expired_keys(&conn) {
                tracing::warn!(error = %e, "purging expired idempotency keys failed");
            }
        }
    }
}

/// Commits a batch; a panic inside it (a bug) is contained: the batch's transaction is
/// rolled back as the panic unwinds, and its writes run again one by one, so only the
/// write that panics fails. Returns the answers and, when a commit failed, why the writer
/// must stop.
fn contained(
    conn: &mut Connection,
    batch: &[Job],
    inputs: &InputCache,
    stamp: &mut Stamp,
) -> (Vec<Result<Applied, StoreError>>, Option<String>) {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    match catch_unwind(AssertUnwindSafe(|| commit_batch(conn, batch, inputs, stamp))) {
        Ok(done) => done,
        Err(_) if batch.len() == 1 => {
            tracing::error!("a write panicked inside the store; it was rolled back");
            (vec![Err(StoreError::Failed("the write failed inside the store".into()))], None)
        }
        Err(_) => {
            tracing::error!(writes = batch.len(), "a batch panicked inside the store; running its writes one by one");
            let mut results = Vec::with_capacity(batch.len());
            for job in batch {
                let (mut one, fatal) = contained(conn, std::slice::from_ref(job), inputs, stamp);
                results.push(one.pop().unwrap_or(Err(StoreError::Closed)));
                if fatal.is_some() {
                    results.extend(
                        (results.len()..batch.len()).map(|_| Err(StoreError::Failed("the store stopped".into()))),
                    );
                    return (results, fatal);
                }
            }
            (results, None)
        }
    }
}

/// Runs each job in its own savepoint and commits the batch once. When the commit itself
/// fails the outcome is unknown (an fsync error may leave the data written or not): the
/// answers say so, and the second value asks the writer to stop.
fn commit_batch(
    conn: &mut Connection,
    batch: &[Job],
    inputs: &InputCache,
    stamp: &mut Stamp,
) -> (Vec<Result<Applied, StoreError>>, Option<String>) {
    match run_batch(conn, batch, inputs, stamp) {
        Ok(results) => (results, None),
        Err(Failed::Before(e)) => {
            tracing::error!(error = %e, "a batch of writes failed before its commit; none of it was applied");
            (batch.iter().map(|_| Err(StoreError::Failed(e.to_string()))).collect(), None)
        }
        Err(Failed::Commit(e)) => {
            let why = format!("a commit failed ({e})");
            (batch.iter().map(|_| Err(StoreError::Commit(e.to_string()))).collect(), Some(why))
        }
    }
}

enum Failed {
    Before(rusqlite::Error),
    Commit(rusqlite::Error),
}

fn run_batch(
    conn: &mut Connection,
    batch: &[Job],
    inputs: &InputCache,
    stamp: &mut Stamp,
) -> Result<Vec<Result<Applied, StoreError>>, Failed> {
    let before = Failed::Before;
    let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(before)?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        #[cfg(test)]
        tests::inject(&job.request);
        let mut sp = tx.savepoint().map_err(before)?;
        let mut request = job.request.clone();
        (request.now, request.now_ms) = stamp.next();
        let result =
            now_or_error(command::execute(&mut SqliteTx(&mut sp, inputs), request)).and_then(|(outcome, effects)| {
                // One writer: the feed's positions are numbered in commit order.
                let mut position = None;
                for change in effects.changes {
                    position = Some(append_change(&sp, &change)?);
                }
                Ok(Applied { outcome, position, representatives: effects.representatives, queues: effects.queues })
            });
        if result.is_err() {
            sp.rollback().map_err(before)?;
        }
        sp.commit().map_err(before)?;
        results.push(result);
    }
    #[cfg(test)]
    if batch.iter().any(|j| j.request.author.name == tests::FAIL_COMMIT) {
        return Err(Failed::Commit(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR_FSYNC),
            Some("injected fsync failure".into()),
        )));
    }
    tx.commit().map_err(Failed::Commit)?;
    Ok(results)
}

/// Runs a command's future to its end at once: SQLite's primitives never wait, so the
/// future is ready on its first poll. One that is not would be a bug (a primitive that
/// awaits something): it is refused as a failed write, never blocked on.
fn now_or_error<T>(future: impl std::future::Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(result) => result,
        std::task::Poll::Pending => {
            Err(StoreError::Commit("a SQLite write waited on something; it was not applied".into()))
        }
    }
}

fn append_change(conn: &Connection, c: &NewChange) -> Result<u64, StoreError> {
    let position: i64 = conn
        .prepare_cached(
            "INSERT INTO changes (at, kind, id, action, version, actor, touched) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             RETURNING position",
        )?
        .query_row(
            params![c.at, c.kind.as_str(), c.id, c.action, c.version.map(|v| v as i64), c.actor, c.touched.join(",")],
            |r| r.get(0),
        )?;
    Ok(position as u64)
}

fn read_changes(conn: &Connection, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT position, at, kind, id, action, version, actor, touched FROM changes
         WHERE position > ?1 ORDER BY position LIMIT ?2",
    )?;
    let mut rows = stmt.query(params![after as i64, limit as i64])?;
    let mut items = Vec::new();
    while let Some(row) = rows.next()? {
        let kind: String = row.get(2)?;
        let touched: String = row.get(7)?;
        items.push(Change {
            position: row.get::<_, i64>(0)? as u64,
            at: row.get(1)?,
            kind: ChangeKind::parse(&kind)
                .ok_or_else(|| StoreError::Commit(format!("unknown change kind `{kind}`")))?,
            id: row.get(3)?,
            action: row.get(4)?,
            version: row.get::<_, Option<i64>>(5)?.map(|v| v as u64),
            actor: row.get(6)?,
            touched: touched.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect(),
        });
    }
    Ok(items)
}

/// [`Tx`] on a SQLite savepoint, decoding representatives through the shared cache.
struct SqliteTx<'a, 'b>(&'a mut rusqlite::Savepoint<'b>, &'a InputCache);

type RepRow = (String, String, i64, i64, String, Option<i64>, i64);

fn representative_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RepRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?))
}

/// A representative from its row, its document decoded through `inputs` when given.
fn build_representative(
    inputs: Option<&InputCache>,
    (id, doc, used_capacity, version, updated_at, last_assigned_ms, revision): RepRow,
) -> Result<Representative, StoreError> {
    let input = match inputs {
        Some(cache) => cache.get(&id, version, &doc)?,
        None => Arc::new(decode(&doc)?),
    };
    rows::representative(rows::RepRow {
        id: &id,
        input,
        used_capacity,
        version,
        updated_at,
        last_assigned_ms,
        revision,
    })
}

fn queue_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, i64, String)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn build_queue((id, doc, version, updated_at): (String, String, i64, String)) -> Result<Queue, StoreError> {
    rows::queue(&id, &doc, version, updated_at)
}

const REP_COLUMNS: &str = "id, doc, used_capacity, version, updated_at, last_assigned_ms, revision";
const QUEUE_COLUMNS: &str = "id, doc, version, updated_at";

fn get_representative(conn: &Connection, id: &Id) -> Result<Option<Representative>, StoreError> {
    let sql = format!("SELECT {REP_COLUMNS} FROM representatives WHERE id = ?1");
    let row = conn.prepare_cached(&sql)?.query_row([id.as_str()], representative_from_row).optional()?;
    row.map(|r| build_representative(None, r)).transpose()
}

fn get_queue(conn: &Connection, id: &Id) -> Result<Option<Queue>, StoreError> {
    let sql = format!("SELECT {QUEUE_COLUMNS} FROM queues WHERE id = ?1");
    let row = conn.prepare_cached(&sql)?.query_row([id.as_str()], queue_from_row).optional()?;
    row.map(build_queue).transpose()
}

fn get_conversation(conn: &Connection, id: &Id) -> Result<Option<Conversation>, StoreError> {
    let doc: Option<String> = conn
        .prepare_cached("SELECT doc FROM conversations WHERE id = ?1")?
        .query_row([id.as_str()], |r| r.get(0))
        .optional()?;
    doc.as_deref().map(decode).transpose()
}

fn get_idempotent(conn: &Connection, token: &str, key: &str) -> Result<Option<(String, Outcome)>, StoreError> {
    let row: Option<(String, String)> = conn
        .prepare_cached("SELECT fingerprint, outcome FROM idempotency WHERE token = ?1 AND key = ?2")?
        .query_row([token, key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(fp, outcome)| Ok((fp, decode(&outcome)?))).transpose()
}

impl Tx for SqliteTx<'_, '_> {
    async fn conversation(&mut self, id: &Id) -> Result<Option<Conversation>, StoreError> {
        get_conversation(self.0, id)
    }

    async fn insert_conversation(&mut self, c: &Conversation) -> Result<(), StoreError> {
        self.0
            .prepare_cached(
                "INSERT INTO conversations (id, status, queue, representative, entity, intent_based, version, doc)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                c.id.as_str(),
                c.status.as_str(),
                c.queue.as_str(),
                c.representative.as_ref().map(Id::as_str),
                c.record.entity.as_str(),
                c.intent_based,
                c.version as i64,
                serde_json::to_string(c)?,
            ])?;
        Ok(())
    }

    async fn update_conversation(&mut self, c: &Conversation) -> Result<(), StoreError> {
        // The version guard makes the update fail loudly if anything raced it.
        let changed = self
            .0
            .prepare_cached(
                "UPDATE conversations SET status = ?2, queue = ?3, representative = ?4, version = ?5, doc = ?6
                 WHERE id = ?1 AND version = ?5 - 1",
            )?
            .execute(params![
                c.id.as_str(),
                c.status.as_str(),
                c.queue.as_str(),
                c.representative.as_ref().map(Id::as_str),
                c.version as i64,
                serde_json::to_string(c)?,
            ])?;
        if changed == 1 { Ok(()) } else { Err(StoreError::Database(rusqlite::Error::QueryReturnedNoRows)) }
    }

    async fn last_history_seq(&mut self, id: &Id) -> Result<u64, StoreError> {
        let seq: i64 = self
            .0
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM history WHERE conversation = ?1")?
            .query_row([id.as_str()], |r| r.get(0))?;
        Ok(seq as u64)
    }

    async fn append_history(&mut self, conversation: &Id, e: &HistoryEvent) -> Result<(), StoreError> {
        self.0.prepare_cached("INSERT INTO history (conversation, seq, doc) VALUES (?1, ?2, ?3)")?.execute(params![
            conversation.as_str(),
            e.seq as i64,
            serde_json::to_string(e)?
        ])?;
        Ok(())
    }

    async fn representative(&mut self, id: &Id) -> Result<Option<Representative>, StoreError> {
        get_representative(self.0, id)
    }

    async fn put_representative(
        &mut self,
        id: &Id,
        input: &RepresentativeInput,
        now: &str,
    ) -> Result<Representative, StoreError> {
        self.0
            .prepare_cached(
                "INSERT INTO representatives (id, version, updated_at, doc) VALUES (?1, 1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET version = version + 1, revision = revision + 1,
                 updated_at = ?2, doc = ?3",
            )?
            .execute(params![id.as_str(), now, serde_json::to_string(input)?])?;
        get_representative(self.0, id)?.ok_or(StoreError::Database(rusqlite::Error::QueryReturnedNoRows))
    }

    async fn add_used_capacity(
        &mut self,
        id: &Id,
        delta: i64,
        now_ms: i64,
    ) -> Result<Option<Representative>, StoreError> {
        let sql = format!(
            "UPDATE representatives SET used_capacity = used_capacity + ?2, revision = revision + 1,
             last_assigned_ms = CASE WHEN ?2 > 0 THEN ?3 ELSE last_assigned_ms END WHERE id = ?1
             RETURNING {REP_COLUMNS}"
        );
        let row = self.0.prepare_cached(&sql)?.query_row(params![id.as_str(), delta, now_ms], representative_from_row);
        row.optional()?.map(|row| build_representative(Some(self.1), row)).transpose()
    }

    async fn queue(&mut self, id: &Id) -> Result<Option<Queue>, StoreError> {
        get_queue(self.0, id)
    }

    async fn share_queue(&mut self, id: &Id) -> Result<Option<Queue>, StoreError> {
        // The writer's transaction already excludes every other writer.
        get_queue(self.0, id)
    }

    async fn lock_queue(&mut self, id: &Id) -> Result<Option<Queue>, StoreError> {
        // The writer's transaction already excludes every other writer.
        get_queue(self.0, id)
    }

    async fn put_queue(&mut self, id: &Id, input: &QueueInput, now: &str) -> Result<Queue, StoreError> {
        self.0
            .prepare_cached(
                "INSERT INTO queues (id, version, updated_at, doc) VALUES (?1, 1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET version = version + 1, updated_at = ?2, doc = ?3",
            )?
            .execute(params![id.as_str(), now, serde_json::to_string(input)?])?;
        get_queue(self.0, id)?.ok_or(StoreError::Database(rusqlite::Error::QueryReturnedNoRows))
    }

    async fn idempotent(&mut self, token: &str, key: &str) -> Result<Option<(String, Outcome)>, StoreError> {
        get_idempotent(self.0, token, key)
    }

    async fn remember(&mut self, token: &str, key: &Idempotency, outcome: &Outcome) -> Result<(), StoreError> {
        self.0
            .prepare_cached(
                "INSERT INTO idempotency (token, key, fingerprint, outcome, created) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![token, key.key, key.fingerprint, serde_json::to_string(outcome)?, unix_now()])?;
        Ok(())
    }

    async fn record_decision(&mut self, record: &DecisionRecord) -> Result<(), StoreError> {
        self.0
            .prepare_cached("INSERT INTO decisions (at_ms, doc) VALUES (?1, ?2)")?
            .execute(params![record.at_ms, serde_json::to_string(record)?])?;
        Ok(())
    }

    async fn record_ruleset(&mut self, version: &str, files: &[RuleFile]) -> Result<(), StoreError> {
        self.0
            .prepare_cached("INSERT OR IGNORE INTO rulesets (version, files) VALUES (?1, ?2)")?
            .execute(params![version, serde_json::to_string(files)?])?;
        Ok(())
    }

    async fn purge_decisions(&mut self, before_ms: i64) -> Result<(), StoreError> {
        self.0.prepare_cached("DELETE FROM decisions WHERE at_ms < ?1")?.execute([before_ms])?;
        Ok(())
    }
}

/// Read-only connections, opened on demand and reused.
struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// Held shared by every read, exclusively by a checkpoint that truncates the WAL: a
    /// WAL can only restart when no reader is on it, and a steady stream of short reads
    /// would otherwise starve that checkpoint forever (the WAL then grows without bound).
    gate: std::sync::RwLock<()>,
}

impl ReaderPool {
    /// Runs a TRUNCATE checkpoint on `conn` with the readers held off.
    fn truncate_wal(&self, conn: &Connection) {
        let _no_readers = self.gate.write().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "truncating the WAL failed; it will be retried");
        }
    }
}

impl ReaderPool {
    fn take(&self) -> Result<Connection, StoreError> {
        if let Some(conn) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < 16
        {
            idle.push(conn);
        }
    }
}

/// Scans a table oldest first from `after`, keeping the rows `keep` accepts.
fn scan<T>(
    conn: &Connection,
    sql: &str,
    page: PageRequest,
    mut build: impl FnMut(&rusqlite::Row<'_>) -> Result<T, StoreError>,
    keep: impl Fn(&T) -> bool,
) -> Result<Page<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query([page.after.unwrap_or(0)])?;
    let mut items = Vec::new();
    let mut last_seq = 0;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get("seq")?;
        let item = build(row)?;
        if !keep(&item) {
            continue;
        }
        if items.len() == page.limit {
            return Ok(Page { items, next: Some(last_seq) });
        }
        items.push(item);
        last_seq = seq;
    }
    Ok(Page { items, next: None })
}

#[async_trait]
impl Store for SqliteStore {
    async fn write(&self, request: WriteRequest) -> Result<Applied, StoreError> {
        let (reply, answer) = oneshot::channel();
        let writer = self.writer.as_ref().ok_or(StoreError::Closed)?;
        writer.send(Job { request, reply }).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn idempotent(&self, token: &str, key: &str) -> Result<Option<(String, Outcome)>, StoreError> {
        let (token, key) = (token.to_owned(), key.to_owned());
        self.read(move |conn| get_idempotent(conn, &token, &key)).await
    }

    async fn directory(&self) -> Result<(Vec<Representative>, Vec<Queue>), StoreError> {
        let everything = PageRequest { after: None, limit: usize::MAX };
        let reps = self.representatives(RepresentativeFilter::default(), everything).await?.items;
        let queues = self.queues(QueueFilter::default(), everything).await?.items;
        Ok((reps, queues))
    }

    async fn conversation(&self, id: &Id) -> Result<Option<Conversation>, StoreError> {
        let id = id.clone();
        self.read(move |c| get_conversation(c, &id)).await
    }

    async fn conversations(
        &self,
        filter: ConversationFilter,
        page: PageRequest,
    ) -> Result<Page<Conversation>, StoreError> {
        self.read(move |conn| {
            let mut sql = String::from("SELECT seq, doc FROM conversations WHERE seq > ?1");
            let mut args: Vec<rusqlite::types::Value> = vec![page.after.unwrap_or(0).into()];
            let mut arg = |sql: &mut String, clause: &str, v: rusqlite::types::Value| {
                args.push(v);
                sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
            };
            if filter.statuses.is_empty() {
                // Matches the partial index `conversations_ongoing`.
                sql.push_str(" AND status <> 'closed'");
            } else {
                let mut statuses: Vec<Status> = filter.statuses.clone();
                statuses.dedup();
                let list: Vec<String> = statuses.iter().map(|s| format!("'{}'", s.as_str())).collect();
                sql.push_str(&format!(" AND status IN ({})", list.join(",")));
            }
            if let Some(q) = &filter.queue {
                arg(&mut sql, " AND queue = ?", q.as_str().to_owned().into());
            }
            if let Some(r) = &filter.representative {
                arg(&mut sql, " AND representative = ?", r.as_str().to_owned().into());
            }
            if let Some(e) = &filter.entity {
                arg(&mut sql, " AND entity = ?", e.clone().into());
            }
            if let Some(b) = filter.intent_based {
                arg(&mut sql, " AND intent_based = ?", i64::from(b).into());
            }
            sql.push_str(&format!(" ORDER BY seq LIMIT {}", page.limit + 1));
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
            let mut items = Vec::new();
            let mut seqs = Vec::new();
            while let Some(row) = rows.next()? {
                let doc: String = row.get(1)?;
                seqs.push(row.get::<_, i64>(0)?);
                items.push(decode::<Conversation>(&doc)?);
            }
            let next = if items.len() > page.limit {
                items.truncate(page.limit);
                seqs.get(page.limit - 1).copied()
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }

    async fn history(&self, id: &Id) -> Result<Option<Vec<HistoryEvent>>, StoreError> {
        let id = id.clone();
        self.read(move |conn| {
            if get_conversation(conn, &id)?.is_none() {
                return Ok(None);
            }
            let mut stmt = conn.prepare_cached("SELECT doc FROM history WHERE conversation = ?1 ORDER BY seq")?;
            let docs = stmt.query_map([id.as_str()], |r| r.get::<_, String>(0))?;
            let mut events = Vec::new();
            for doc in docs {
                events.push(decode(&doc?)?);
            }
            Ok(Some(events))
        })
        .await
    }

    async fn representative(&self, id: &Id) -> Result<Option<Representative>, StoreError> {
        let id = id.clone();
        self.read(move |c| get_representative(c, &id)).await
    }

    async fn representatives(
        &self,
        filter: RepresentativeFilter,
        page: PageRequest,
    ) -> Result<Page<Representative>, StoreError> {
        let inputs = self.inputs.clone();
        self.read(move |conn| {
            let sql = format!("SELECT seq, {REP_COLUMNS} FROM representatives WHERE seq > ?1 ORDER BY seq");
            scan(
                conn,
                &sql,
                page,
                |row| {
                    let text = |i: usize| -> Result<&str, StoreError> {
                        row.get_ref(i)?.as_str().map_err(|e| {
                            StoreError::Database(rusqlite::Error::FromSqlConversionFailure(
                                i,
                                rusqlite::types::Type::Text,
                                Box::new(e),
                            ))
                        })
                    };
                    let (id, version) = (text(1)?, row.get::<_, i64>(4)?);
                    rows::representative(rows::RepRow {
                        id,
                        input: inputs.get(id, version, text(2)?)?,
                        used_capacity: row.get(3)?,
                        version,
                        updated_at: row.get(5)?,
                        last_assigned_ms: row.get(6)?,
                        revision: row.get(7)?,
                    })
                },
                |rep| filter.matches(rep),
            )
        })
        .await
    }

    async fn queue(&self, id: &Id) -> Result<Option<Queue>, StoreError> {
        let id = id.clone();
        self.read(move |c| get_queue(c, &id)).await
    }

    async fn queues(&self, filter: QueueFilter, page: PageRequest) -> Result<Page<Queue>, StoreError> {
        self.read(move |conn| {
            let sql = format!("SELECT seq, {QUEUE_COLUMNS} FROM queues WHERE seq > ?1 ORDER BY seq");
            scan(
                conn,
                &sql,
                page,
                |row| build_queue((row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)),
                |q| filter.matches(q),
            )
        })
        .await
    }

    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        self.read(move |conn| read_changes(conn, after, limit)).await
    }

    async fn decisions(
        &self,
        since_ms: i64,
        until_ms: i64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, DecisionRecord)>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, doc FROM decisions WHERE at_ms >= ?1 AND at_ms < ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
            )?;
            let mut rows = stmt.query(params![since_ms, until_ms, after as i64, limit as i64])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let doc: String = row.get(1)?;
                out.push((row.get::<_, i64>(0)? as u64, decode(&doc)?));
            }
            Ok(out)
        })
        .await
    }

    async fn ruleset(&self, version: &str) -> Result<Option<Vec<RuleFile>>, StoreError> {
        let version = version.to_owned();
        self.read(move |conn| {
            let files: Option<String> = conn
                .prepare_cached("SELECT files FROM rulesets WHERE version = ?1")?
                .query_row([version], |r| r.get(0))
                .optional()?;
            files.map(|f| decode(&f)).transpose()
        })
        .await
    }

    async fn feed_head(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            let head: i64 = conn.query_row("SELECT COALESCE(MAX(position), 0) FROM changes", [], |r| r.get(0))?;
            Ok(head as u64)
        })
        .await
    }

    fn health(&self) -> Result<(), String> {
        if let Some(why) = self.writer_stopped.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return Err(format!("the SQLite writer stopped: {why}; restart the daemon"));
        }
        if self.writer_thread.as_ref().is_none_or(std::thread::JoinHandle::is_finished) {
            return Err("the SQLite writer is not running; restart the daemon".into());
        }
        Ok(())
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        self.read(|conn| {
            let n: i64 = conn.query_row(
                "SELECT (SELECT COUNT(*) FROM queues) + (SELECT COUNT(*) FROM representatives)
                      + (SELECT COUNT(*) FROM conversations)",
                [],
                |r| r.get(0),
            )?;
            Ok(n == 0)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    //! The writer's containment, with faults injected by the author's name (test builds only).
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::store::{Author, Command};

    pub const PANIC: &str = "test-panic-in-writer";
    pub const FAIL_COMMIT: &str = "test-commit-fails";

    pub fn inject(request: &WriteRequest) {
        if request.author.name == PANIC {
            panic!("injected panic in the writer");
        }
    }

    fn put_queue(author: &str, id: &str) -> WriteRequest {
        let input: QueueInput = serde_json::from_value(serde_json::json!({"name": id})).unwrap();
        WriteRequest {
            author: Author { name: author.into(), token_digest: "t".into() },
            idempotency: None,
            command: Command::PutQueue { id: Id::parse(id).unwrap(), input },
            ruleset: "r".into(),
            now: String::new(),
            now_ms: 0,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_write_fails_alone_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("sb.db")).unwrap());
        // Sent together so they share batches with the panicking one.
        let mut writes = tokio::task::JoinSet::new();
        for i in 0..20 {
            let store = store.clone();
            let author = if i == 7 { PANIC } else { "someone" };
            writes.spawn(async move { (i, store.write(put_queue(author, &format!("q{i}"))).await) });
        }
        while let Some(done) = writes.join_next().await {
            let (i, result) = done.unwrap();
            match (i, result) {
                (7, Err(StoreError::Failed(_))) => {}
                (7, other) => panic!("the panicking write answered {other:?}"),
                (_, Ok(_)) => {}
                (i, Err(e)) => panic!("write {i} failed beside the panicking one: {e}"),
            }
        }
        assert!(store.health().is_ok());
        store.write(put_queue("someone", "after")).await.unwrap();
        let queues = store.queues(Default::default(), PageRequest { after: None, limit: 100 }).await.unwrap();
        assert_eq!(queues.items.len(), 20, "19 queues and `after`, not the panicking one");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_commit_answers_unknown_and_stops_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("sb.db")).unwrap();
        store.write(put_queue("someone", "q0")).await.unwrap();
        assert!(store.health().is_ok());
        match store.write(put_queue(FAIL_COMMIT, "q1")).await {
            Err(StoreError::Commit(_)) => {}
            other => panic!("a failed commit answered {other:?}, not an unknown outcome"),
        }
        match store.write(put_queue("someone", "q2")).await {
            Err(StoreError::Closed) => {}
            other => panic!("the writer took a write after a failed commit: {other:?}"),
        }
        let health = store.health().unwrap_err();
        assert!(health.contains("a commit failed") && health.contains("restart the daemon"), "{health}");
    }
}

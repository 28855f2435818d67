//! Populating the daemon and driving it: `C` workers share a pool of the run's open and
//! held conversations and each takes one out for the length of a call, so no two calls
//! of the run race on one conversation.
//!
//! What a worker does for each kind of the mix:
//!
//! - **candidates**: opens the Assign dialog of an open conversation or the Transfer
//!   dialog of a held one (`target=queue` one time in five), and keeps the first few
//!   representatives it proposes on the conversation.
//! - **assign** (open conversations) and **transfer** (held ones, else open): to one of
//!   the top three representatives of the conversation's last candidates answer, as a
//!   supervisor picking from the dialog; without one, to a representative picked at
//!   random, which the rules may refuse. One assign in ten and one transfer in four go to
//!   a queue instead (an intent-based queue for an intent-based conversation).
//! - **release**: a held conversation back to its queue.
//! - **remove**: any conversation; then a new one is created (reported as `create`) so
//!   the pool keeps its size.
//! - **create**: a new conversation, which joins the pool.
//! - **put_queue**: `PUT` one of the run's queues, half the time with its priority
//!   changed: a directory write that no conversation waits on.
//! - **bulk**: up to [`BULK_BATCH`] held conversations released in one
//!   `POST /v1/conversations/bulk`; each goes back to the pool as its item shows it.
//! - **distribute**: `POST /v1/queues/{id}/distribute` of up to [`BULK_BATCH`] open
//!   conversations of one of the run's queues. It acts on the queue, not on conversations
//!   taken out of the pool: a worker holding one it assigned gets a `412` on its next
//!   action and re-reads it (a refusal, as below).
//!
//! The main group runs closed loop here ([`Drive::worker`]: each worker waits for its
//! answer before the next call) or open loop in [`super::pace`]; both use [`Drive::call`].
//!
//! Every action carries `If-Match` with the version the worker last saw. Answers 409,
//! 412 and 422 are *refusals*: the contract's answer to a stale candidate list (a
//! representative filled up meanwhile), a random pick the rules exclude, or a state the
//! worker did not know; after one the worker re-reads the conversation (not measured).
//! Everything else that is not 2xx is an *error*.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use super::args::{Kind, Limit, Mix};
use super::client::{Answer, Api, Outcome, Role};
use super::report::Stats;
use super::synthetic::{Center, Rng};

/// A conversation of the run as a worker last saw it.
#[derive(Clone, Debug)]
pub struct Conv {
    pub id: String,
    /// `active` or `waiting` (held by a representative) rather than `open`.
    pub held: bool,
    pub version: u64,
    pub queue: String,
    pub intent_based: bool,
    /// Representatives the last candidates answer proposed, best first.
    pub candidates: Vec<String>,
}

impl Conv {
    /// From a conversation as the API shows it; `None` when it is closed or in wrap-up
    /// (nothing but remove applies then, and the run no longer uses it).
    pub fn from_body(body: &Value) -> Option<Self> {
        let held = match body["status"].as_str()? {
            "open" => false,
            "active" | "waiting" => true,
            _ => return None,
        };
        Some(Self {
            id: body["id"].as_str()?.to_owned(),
            held,
            version: body["version"].as_u64()?,
            queue: body["queue"].as_str()?.to_owned(),
            intent_based: body["intent_based"].as_bool().unwrap_or(false),
            candidates: Vec::new(),
        })
    }
}

/// The conversations not in use by a worker, by what can be done with them.
#[derive(Default)]
pub struct Pool {
    open: Vec<Conv>,
    open_ready: Vec<Conv>,
    held: Vec<Conv>,
    held_ready: Vec<Conv>,
}

fn take_any(lists: &mut [&mut Vec<Conv>], rng: &mut Rng) -> Option<Conv> {
    let total: usize = lists.iter().map(|l| l.len()).sum();
    if total == 0 {
        return None;
    }
    let mut i = rng.index(total);
    for list in lists.iter_mut() {
        if i < list.len() {
            return Some(list.swap_remove(i));
        }
        i -= list.len();
    }
    None
}

impl Pool {
    pub fn put(&mut self, conv: Conv) {
        let list = match (conv.held, conv.candidates.is_empty()) {
            (false, true) => &mut self.open,
            (false, false) => &mut self.open_ready,
            (true, true) => &mut self.held,
            (true, false) => &mut self.held_ready,
        };
        list.push(conv);
    }

    pub fn len(&self) -> usize {
        self.open.len() + self.open_ready.len() + self.held.len() + self.held_ready.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A conversation `kind` applies to, preferring the ones it suits best.
    pub fn take(&mut self, kind: Kind, rng: &mut Rng) -> Option<Conv> {
        let Pool { open, open_ready, held, held_ready } = self;
        match kind {
            Kind::Candidates => {
                take_any(&mut [open, held], rng).or_else(|| take_any(&mut [open_ready, held_ready], rng))
            }
            Kind::Assign => take_any(&mut [open_ready], rng).or_else(|| take_any(&mut [open], rng)),
            Kind::Transfer => take_any(&mut [held_ready], rng)
                .or_else(|| take_any(&mut [held], rng))
                .or_else(|| take_any(&mut [open_ready], rng)),
            Kind::Release => take_any(&mut [held, held_ready], rng),
            Kind::Remove => take_any(&mut [open, open_ready, held, held_ready], rng),
            Kind::Create | Kind::PutQueue | Kind::Bulk | Kind::Distribute => None,
        }
    }

    /// Up to `n` held conversations.
    pub fn take_held(&mut self, n: usize) -> Vec<Conv> {
        let mut out: Vec<Conv> = Vec::with_capacity(n);
        for list in [&mut self.held, &mut self.held_ready] {
            let k = list.len().min(n - out.len());
            out.extend(list.drain(list.len() - k..));
        }
        out
    }
}

/// How many conversations one `bulk` or `distribute` call of the run takes at most.
pub const BULK_BATCH: usize = 20;

/// Live counters for the progress bar.
#[derive(Default)]
pub struct Live {
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    pub stop: AtomicBool,
}

/// What every worker shares.
pub struct Drive {
    /// The daemons the calls go to (one, or several on one database).
    pub targets: Vec<Api>,
    /// The open loop's turn: its calls go to the targets in order.
    pub next_target: AtomicUsize,
    pub center: Center,
    /// The `limit` of candidates calls.
    pub limit: Limit,
    pub pool: Mutex<Pool>,
    /// The index of the next replacement conversation (shared with the clean-up, which
    /// closes every conversation the run created).
    pub next_conversation: Arc<AtomicU64>,
    pub live: Live,
    /// Calls that start before this are warmup: made, not recorded.
    pub measure_from: Instant,
    /// No call starts after this.
    pub until: Instant,
}

fn lock(pool: &Mutex<Pool>) -> std::sync::MutexGuard<'_, Pool> {
    pool.lock().unwrap_or_else(|e| e.into_inner())
}

/// The calls one draw made: the drawn kind's, then a replacement create after a remove.
pub type Calls = Vec<(Kind, Answer)>;

impl Drive {
    /// Target `n` (modulo their number): worker `n`'s daemon in the closed loop.
    pub fn target(&self, n: usize) -> &Api {
        &self.targets[n % self.targets.len()]
    }

    /// The open loop's next target, round-robin.
    pub fn next_target(&self) -> &Api {
        self.target(self.next_target.fetch_add(1, Ordering::Relaxed))
    }

    /// One closed-loop worker: draws from `mix` and calls `api` until `until` or a stop;
    /// its measurements.
    pub async fn worker(self: Arc<Self>, api: Api, mix: Mix, seed: u64) -> anyhow::Result<Stats> {
        let mut stats = Stats::new()?;
        let mut rng = Rng::new(seed);
        while !self.live.stop.load(Ordering::Relaxed) && Instant::now() < self.until {
            let kind = mix.pick(rng.below(mix.total()));
            let record = Instant::now() >= self.measure_from;
            match self.call(&api, kind, &mut rng, Duration::ZERO).await {
                Some(calls) if record => calls.iter().for_each(|(kind, answer)| stats.record(*kind, answer)),
                Some(_) => {}
                None => {
                    if record {
                        stats.skip(kind);
                    }
                    // Nothing in a status this kind allows right now: let the others move on.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        Ok(stats)
    }

    /// Makes a call of `kind` to `api` (on a conversation of the pool when it needs one)
    /// and the calls it entails; `None` when no conversation is in a status `kind` allows.
    /// `lag` (how late an open-loop call started) is added to the first call's latency.
    pub async fn call(&self, api: &Api, kind: Kind, rng: &mut Rng, lag: Duration) -> Option<Calls> {
        let mut calls = Calls::new();
        if kind.needs_conversation() {
            let conv = lock(&self.pool).take(kind, rng)?;
            if let Some(conv) = self.act(api, kind, conv, rng, &mut calls).await {
                lock(&self.pool).put(conv);
            }
        } else if kind == Kind::Bulk {
            let convs = lock(&self.pool).take_held(BULK_BATCH);
            if convs.is_empty() {
                return None;
            }
            let ids: Vec<&str> = convs.iter().map(|c| c.id.as_str()).collect();
            let body = json!({"action": "release", "ids": ids});
            let answer = api.call(Method::POST, "/v1/conversations/bulk", Role::Supervisor, None, Some(&body)).await;
            let results = answer.body["results"].as_array().cloned().unwrap_or_default();
            for conv in convs {
                let item = results.iter().find(|r| r["id"] == conv.id.as_str());
                let back = match item.map(|r| &r["conversation"]) {
                    Some(body) if body.is_object() => Conv::from_body(body),
                    _ => self.reread(api, &conv.id).await,
                };
                if let Some(back) = back {
                    lock(&self.pool).put(back);
                }
            }
            self.count(Kind::Bulk, answer, &mut calls);
        } else if kind == Kind::Distribute {
            let q = self.center.queue_id(rng.below(self.center.queues));
            let body = json!({"max": BULK_BATCH});
            let path = format!("/v1/queues/{q}/distribute");
            let answer = api.call(Method::POST, &path, Role::Supervisor, None, Some(&body)).await;
            self.count(Kind::Distribute, answer, &mut calls);
        } else if kind == Kind::PutQueue {
            let q = rng.below(self.center.queues);
            let mut body = self.center.queue(q);
            if rng.chance(50) {
                body["priority"] = json!((body["priority"].as_u64().unwrap_or(0) + 1) % 4);
            }
            let path = format!("/v1/queues/{}", self.center.queue_id(q));
            let answer = api.call(Method::PUT, &path, Role::Integration, None, Some(&body)).await;
            self.count(Kind::PutQueue, answer, &mut calls);
        } else {
            self.create(api, &mut calls).await;
        }
        if let Some((_, first)) = calls.first_mut() {
            first.latency = first.latency.map(|l| l + lag);
        }
        Some(calls)
    }

    fn count(&self, kind: Kind, answer: Answer, calls: &mut Calls) {
        self.live.calls.fetch_add(1, Ordering::Relaxed);
        if matches!(answer.outcome, Outcome::Error(_)) {
            self.live.errors.fetch_add(1, Ordering::Relaxed);
        }
        calls.push((kind, answer));
    }

    /// Does `kind` to `conv`; what to put back in the pool.
    async fn act(&self, api: &Api, kind: Kind, mut conv: Conv, rng: &mut Rng, calls: &mut Calls) -> Option<Conv> {
        let id = conv.id.clone();
        let answer = match kind {
            Kind::Candidates => {
                let action = if conv.held { "transfer" } else { "assign" };
                let target = if rng.chance(20) { "queue" } else { "representative" };
                let limit = self.limit.query();
                let path = format!("/v1/conversations/{id}/candidates?action={action}&target={target}{limit}");
                let answer = api.call(Method::GET, &path, Role::Supervisor, None, None).await;
                if answer.outcome == Outcome::Ok && target == "representative" {
                    // Only the run's own representatives: against --target the dialog also
                    // lists the real ones, who must not be given the run's conversations.
                    let prefix = self.center.prefix.as_str();
                    conv.candidates = answer.body["candidates"]
                        .as_array()
                        .map(|c| {
                            c.iter()
                                .filter_map(|c| c["id"].as_str().filter(|id| id.starts_with(prefix)).map(str::to_owned))
                                .take(5)
                                .collect()
                        })
                        .unwrap_or_default();
                }
                answer
            }
            Kind::Assign | Kind::Transfer => {
                let to_queue = if kind == Kind::Assign { rng.chance(10) } else { rng.chance(25) };
                let body = if to_queue {
                    json!({"queue": self.queue_for(&conv, rng)})
                } else if conv.candidates.is_empty() {
                    json!({"representative": self.center.representative_id(rng.below(self.center.representatives))})
                } else {
                    let top = conv.candidates.len().min(3);
                    json!({"representative": conv.candidates[rng.index(top)]})
                };
                let path = format!("/v1/conversations/{id}/{}", kind.as_str());
                api.call(Method::POST, &path, Role::Supervisor, Some(conv.version), Some(&body)).await
            }
            // Not calls on one conversation: `Drive::call` makes them.
            Kind::Create | Kind::PutQueue | Kind::Bulk | Kind::Distribute => return Some(conv),
            Kind::Release | Kind::Remove => {
                let path = format!("/v1/conversations/{id}/{}", kind.as_str());
                api.call(Method::POST, &path, Role::Supervisor, Some(conv.version), None).await
            }
        };
        let next = match (&answer.outcome, kind) {
            (Outcome::Ok, Kind::Candidates) => Ok(Some(conv)),
            (Outcome::Ok, Kind::Remove) => Ok(None),
            (Outcome::Ok, _) => Ok(Conv::from_body(&answer.body)),
            // The rules refused this target: the list it came from is stale.
            (Outcome::Refused(code), _) if code == "not_eligible" => {
                conv.candidates.clear();
                Ok(Some(conv))
            }
            _ => Err(()),
        };
        let removed = kind == Kind::Remove && answer.outcome == Outcome::Ok;
        self.count(kind, answer, calls);
        if removed {
            self.create(api, calls).await;
        }
        match next {
            Ok(next) => next,
            Err(()) => self.reread(api, &id).await,
        }
    }

    /// A queue to assign or transfer to: another one, intent-based when the conversation is.
    fn queue_for(&self, conv: &Conv, rng: &mut Rng) -> String {
        let n = self.center.queues;
        let fits: Vec<u64> = (0..n)
            .filter(|&q| self.center.queue_is_intent_based(q) == conv.intent_based)
            .filter(|&q| n == 1 || self.center.queue_id(q) != conv.queue)
            .collect();
        let q = if fits.is_empty() { rng.below(n) } else { fits[rng.index(fits.len())] };
        self.center.queue_id(q)
    }

    /// Creates the next conversation of the run and puts it in the pool.
    async fn create(&self, api: &Api, calls: &mut Calls) {
        let i = self.next_conversation.fetch_add(1, Ordering::Relaxed);
        let body = self.center.conversation(i);
        let answer = api.call(Method::POST, "/v1/conversations", Role::Integration, None, Some(&body)).await;
        if answer.outcome == Outcome::Ok
            && let Some(conv) = Conv::from_body(&answer.body)
        {
            lock(&self.pool).put(conv);
        }
        self.count(Kind::Create, answer, calls);
    }

    /// The conversation as the daemon has it now (not measured).
    async fn reread(&self, api: &Api, id: &str) -> Option<Conv> {
        let answer = api.get(&format!("/v1/conversations/{id}")).await;
        if answer.outcome == Outcome::Ok { Conv::from_body(&answer.body) } else { None }
    }
}

/// Runs `job(i)` for every `i` in `0..n` on `concurrency` tasks; the first error stops
/// the others and is returned. `done` counts finished jobs.
pub async fn for_each<F, Fut>(n: u64, concurrency: u32, done: Arc<AtomicU64>, job: F) -> anyhow::Result<()>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(u32::try_from(n).unwrap_or(u32::MAX)).max(1) {
        let (job, next, failed, done) = (job.clone(), next.clone(), failed.clone(), done.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || failed.load(Ordering::Relaxed) {
                    return Ok(());
                }
                if let Err(e) = job(i).await {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let mut first = None;
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => first = first.or(Some(e)),
            Err(e) => first = first.or(Some(e.into())),
        }
    }
    first.map_or(Ok(()), Err)
}

/// A set-up call that must succeed: its answer, or an error that says what was refused.
pub async fn must(api: &Api, method: Method, path: &str, role: Role, body: &Value) -> anyhow::Result<Value> {
    let answer = api.call(method.clone(), path, role, None, Some(body)).await;
    match answer.outcome {
        Outcome::Ok => Ok(answer.body),
        Outcome::Refused(code) => anyhow::bail!("{method} {path} was refused ({code}): {}", answer.body["detail"]),
        Outcome::Error(e) => anyhow::bail!("{method} {path} failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(id: &str, held: bool, ready: bool) -> Conv {
        Conv {
            id: id.into(),
            held,
            version: 1,
            queue: "q".into(),
            intent_based: false,
            candidates: if ready { vec!["r1".into()] } else { vec![] },
        }
    }

    #[test]
    fn kinds_take_conversations_their_action_allows() {
        let mut pool = Pool::default();
        let mut rng = Rng::new(1);
        pool.put(conv("open", false, false));
        assert!(pool.take(Kind::Release, &mut rng).is_none(), "release needs a held conversation");
        let c = pool.take(Kind::Assign, &mut rng).unwrap();
        assert_eq!(c.id, "open");
        pool.put(conv("ready", false, true));
        pool.put(conv("open", false, false));
        assert_eq!(pool.take(Kind::Assign, &mut rng).unwrap().id, "ready", "assign prefers a dialog answer");
        assert_eq!(pool.take(Kind::Candidates, &mut rng).unwrap().id, "open");
        pool.put(conv("held", true, false));
        assert_eq!(pool.take(Kind::Release, &mut rng).unwrap().id, "held");
        assert!(pool.is_empty());
    }

    #[test]
    fn conversations_come_from_api_bodies() {
        let body = json!({"id": "c1", "status": "active", "version": 3, "queue": "q1", "intent_based": true});
        let c = Conv::from_body(&body).unwrap();
        assert!(c.held && c.intent_based && c.version == 3);
        assert!(Conv::from_body(&json!({"id": "c1", "status": "closed", "version": 3, "queue": "q1"})).is_none());
    }
}

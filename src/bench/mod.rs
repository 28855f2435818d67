//! `switchboard bench`: measures routing throughput and latency over real HTTP.
//!
//! A run has four phases:
//!
//! 1. **Target**: without `--target`, [`local`] starts this binary's `serve` as a child
//!    process over a fresh temporary SQLite file with a generated admin token; with
//!    `--target`, a running daemon is checked (health, the token's roles) and used; with
//!    several, each is checked, and the first is the one the run is set up, described and
//!    cleaned up through (they must share one database, which is checked after populating).
//! 2. **Populate**: the [`synthetic`] contact center of the seed (queues, then
//!    representatives, then conversations) is created through the API, `--concurrency`
//!    requests at a time. Every id starts with `bench-<seed>-<run>-`.
//!    With `--restart`, the daemon started here is then stopped and started again over
//!    the same database, and its start-up time and memory are recorded.
//! 3. **Drive**: [`driver`] runs one worker per unit of concurrency (closed loop), or
//!    [`pace`] starts calls at `--rate` (open loop), spread over the targets, for the warmup, then for the
//!    measured duration, each call's kind drawn from the mix; a `--background` group runs
//!    alongside at its own rate.
//! 4. **Report**: [`report`] prints a table (or `--json`), and the command fails when any
//!    call was an error. Against a `--target` the run then, whatever its outcome, removes
//!    every conversation it created and sets its representatives offline, so they stop
//!    showing up as candidates; it only ever acts on its own records (the candidates it
//!    assigns to are filtered to its prefix).
//!
//! Ctrl-C is seen by every phase: during the start or populating it ends the run (and
//! the daemon started here); while driving it stops the workers and still reports.

pub mod args;
pub mod client;
pub mod driver;
pub mod local;
pub mod pace;
pub mod report;
pub mod synthetic;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Method;
use serde_json::{Value, json};

pub use args::Args;
use client::{Api, Outcome, Role};
use driver::{Conv, Drive, Live, Pool, for_each, must};
use local::{Folder, LocalDaemon};
use report::{Group, Pace, Report, Restart, Stats};
use synthetic::Center;

/// Runs `switchboard bench`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.concurrency > args.conversations {
        bail!(
            "--concurrency {} is more than --conversations {}: each worker acts on a conversation of its own; \
             raise --conversations or lower --concurrency",
            args.concurrency,
            args.conversations
        );
    }
    if !args.target.is_empty() && args.token.is_none() {
        bail!(
            "--target needs --token (or SWITCHBOARD_TOKEN): an admin token, or a supervisor's with --integration-token"
        );
    }
    for (i, url) in args.target.iter().enumerate() {
        if args.target[..i].contains(url) {
            bail!("--target {url} is given twice: name each daemon once");
        }
    }
    let mut run_id = [0u8; 3];
    getrandom::fill(&mut run_id).context("reading the OS random source")?;
    let prefix = format!("bench-{}-{}-", args.seed, hex::encode(run_id));

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let interrupt = Arc::new(Interrupt::default());
    runtime.spawn(interrupt.clone().listen());
    let (mut daemon, targets, rules_source) = match args.target.split_first() {
        None => {
            let rules = Folder::choose(args.rules.as_deref(), "--rules", "rules")?;
            let plugins = Folder::choose(args.plugins.as_deref(), "--plugins", "plugins/dist")?;
            status(&format!("starting a daemon: rules {}, plugins {}", rules.describe(), plugins.describe()));
            let daemon =
                LocalDaemon::start(&rules, &plugins, (args.plugin_deadline, args.plugin_fuel), &interrupt.flag)?;
            let api = Api::new(&daemon.base, daemon.token.clone(), daemon.token.clone())?;
            let source = json!({"rules_dir": rules.path, "plugins_dir": plugins.path});
            (Some(daemon), vec![api], source)
        }
        Some((first, others)) => {
            let token = args.token.clone().unwrap_or_default();
            let integration = args.integration_token.clone().unwrap_or_else(|| token.clone());
            let first_api = Api::new(first.as_str(), token, integration)?;
            let mut targets = vec![first_api.clone()];
            targets.extend(others.iter().map(|url| first_api.at(url.as_str())));
            (None, targets, json!({"target": first.as_str()}))
        }
    };
    let result = runtime.block_on(bench(&args, &prefix, &targets, daemon.as_mut(), rules_source, &interrupt));
    if let Some(d) = daemon {
        d.stop();
    }
    result
}

/// Ctrl-C, seen by every phase: the daemon's start, populating, driving.
#[derive(Default)]
pub struct Interrupt {
    flag: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Interrupt {
    async fn listen(self: Arc<Self>) {
        if tokio::signal::ctrl_c().await.is_ok() {
            self.flag.store(true, Ordering::Relaxed);
            self.notify.notify_waiters();
        }
    }

    /// Resolves once Ctrl-C was pressed (at once if it already was).
    async fn wait(&self) {
        loop {
            // Registered before the check, so a press in between is not missed.
            let notified = self.notify.notified();
            if self.flag.load(Ordering::Relaxed) {
                return;
            }
            notified.await;
        }
    }
}

/// Aborts a background task (a progress ticker) when its phase ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A line about what the run is doing, on stderr (stdout is for the result).
fn status(line: &str) {
    eprintln!("bench: {line}");
}

fn progress_bar(args: &Args, len: u64, template: &str) -> ProgressBar {
    let target = if args.json || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// `targets` are the daemons the load goes to; the first is also where the run is set
/// up, described and cleaned up (the others share its database).
async fn bench(
    args: &Args,
    prefix: &str,
    targets: &[Api],
    daemon: Option<&mut LocalDaemon>,
    rules_source: Value,
    interrupt: &Interrupt,
) -> anyhow::Result<()> {
    let Some(api) = targets.first() else { bail!("no daemon to drive") };
    for target in targets {
        check_target(target, prefix).await?;
    }
    let rules = api.get("/v1/rules").await;
    if rules.outcome != Outcome::Ok {
        bail!("GET /v1/rules failed: {:?}", rules.outcome);
    }
    let rule_count = rules.body["rules"].as_array().map_or(0, Vec::len);
    let plugin_names: Vec<&str> =
        rules.body["plugins"].as_array().into_iter().flatten().filter_map(|p| p["name"].as_str()).collect();
    status(&format!(
        "rules in force: version {}, {} rules in {} files, plugins: {}",
        rules.body["version"].as_str().unwrap_or("?"),
        rule_count,
        rules.body["files"].as_array().map_or(0, Vec::len),
        if plugin_names.is_empty() { "none".to_owned() } else { plugin_names.join(", ") }
    ));
    for other in &targets[1..] {
        let theirs = other.get("/v1/rules").await;
        if theirs.body["version"] != rules.body["version"] {
            status(&format!(
                "warning: {} has rules version {}, {} has {}: the targets decide by different rules",
                other.base(),
                theirs.body["version"],
                api.base(),
                rules.body["version"]
            ));
        }
    }
    if targets.len() > 1 {
        let bases: Vec<&str> = targets.iter().map(Api::base).collect();
        status(&format!(
            "{} targets: {}; setting up through the first, spreading the load over all",
            targets.len(),
            bases.join(", ")
        ));
    }
    let rules_doc = json!({
        "source": rules_source,
        "version": rules.body["version"],
        "files": rules.body["files"],
        "plugins": plugin_names,
    });

    let center = Center {
        seed: args.seed,
        prefix: prefix.to_owned(),
        queues: u64::from(args.queues),
        representatives: u64::from(args.representatives),
        conversations: u64::from(args.conversations),
    };
    // Every conversation the run creates has an index below this: the initial ones, then
    // the replacements. The clean-up closes them all by id.
    let created = Arc::new(AtomicU64::new(center.conversations));
    let result = measure(args, targets, daemon, &center, &created, rules_doc, interrupt).await;
    if !args.target.is_empty() {
        clean_up(args, api, &center, created.load(Ordering::Relaxed)).await;
    }
    result
}

/// Populates (through the first target), drives (all of them) and reports.
async fn measure(
    args: &Args,
    targets: &[Api],
    mut daemon: Option<&mut LocalDaemon>,
    center: &Center,
    created: &Arc<AtomicU64>,
    rules_doc: Value,
    interrupt: &Interrupt,
) -> anyhow::Result<()> {
    let prefix = center.prefix.as_str();
    let Some(api) = targets.first() else { bail!("no daemon to drive") };
    let started = Instant::now();
    let pool = tokio::select! {
        pool = populate(args, api, center) => pool?,
        () = interrupt.wait() => bail!("interrupted while populating: nothing was measured"),
    };
    let populate_time = started.elapsed();
    let records = center.queues + center.representatives + center.conversations;
    status(&format!(
        "populated {} queues, {} representatives, {} conversations under `{prefix}` in {:.1}s ({:.0} records/s)",
        center.queues,
        center.representatives,
        center.conversations,
        populate_time.as_secs_f64(),
        records as f64 / populate_time.as_secs_f64().max(1e-9)
    ));
    check_shared(targets, center).await?;
    let (targets, restart) = match daemon.as_deref_mut().filter(|_| args.restart) {
        Some(d) => {
            let rss_before_mib = local::rss_mib(d.pid());
            status("restarting the daemon over the populated database");
            let startup = d.restart(&interrupt.flag).context("restarting the daemon")?;
            let restart = Restart { startup, rss_before_mib, rss_after_mib: local::rss_mib(d.pid()) };
            status(&format!("restarted: listening after {:.0} ms", startup.as_secs_f64() * 1000.0));
            (vec![Api::new(&d.base, d.token.clone(), d.token.clone())?], Some(restart))
        }
        None => (targets.to_vec(), None),
    };
    let daemon = daemon.as_deref();

    let now = Instant::now();
    let drive = Arc::new(Drive {
        targets,
        next_target: AtomicUsize::new(0),
        center: center.clone(),
        limit: args.limit,
        pool: Mutex::new(pool),
        next_conversation: created.clone(),
        live: Live::default(),
        measure_from: now + args.warmup,
        until: now + args.warmup + args.duration,
    });
    let load = match args.rate {
        None => format!("{} workers", args.concurrency),
        Some(rate) => format!("{rate} calls/s (open loop, at most {} in flight)", args.concurrency),
    };
    status(&format!(
        "driving {load} for {:?} after a {:?} warmup, mix {}, candidates limit {}",
        args.duration, args.warmup, args.mix, args.limit
    ));
    let (main, background, measured, interrupted, cpu) = drive_run(args, &drive, daemon, interrupt).await?;

    let report = Report {
        parameters: json!({
            "seed": args.seed,
            "representatives": args.representatives,
            "queues": args.queues,
            "conversations": args.conversations,
            "concurrency": args.concurrency,
            "duration_s": args.duration.as_secs_f64(),
            "warmup_s": args.warmup.as_secs_f64(),
            "mix": Value::Object(args::Kind::ALL.iter().map(|k| (k.as_str().to_owned(), json!(args.mix.weight(*k)))).collect()),
            "limit": args.limit.to_json(),
            "rate": args.rate,
            "background": args.background.as_ref().map(ToString::to_string),
            "background_rate": args.background_rate,
            "restart": args.restart,
            "plugin_deadline_ms": args.plugin_deadline.map(|d| d.as_millis() as u64),
            "plugin_fuel": args.plugin_fuel,
            "target": args.target.first().map_or("local", reqwest::Url::as_str),
            "targets": args.target.iter().map(reqwest::Url::as_str).collect::<Vec<_>>(),
            "id_prefix": prefix,
        }),
        rules: rules_doc,
        populate: json!({"records": records, "seconds": (populate_time.as_secs_f64() * 1000.0).round() / 1000.0}),
        restart,
        measured,
        interrupted,
        concurrency: args.concurrency,
        limit: args.limit,
        main,
        background,
        cpu_seconds: cpu,
    };
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        crate::outln!();
        crate::out!("{}", report.table());
        crate::outln!();
        let mut footer = format!(
            "measured {:.1}s{} · seed {} · {} representatives, {} queues, {} conversations · concurrency {}",
            measured.as_secs_f64(),
            if interrupted { " (interrupted)" } else { "" },
            args.seed,
            args.representatives,
            args.queues,
            args.conversations,
            args.concurrency
        );
        if args.target.len() > 1 {
            footer.push_str(&format!(" · spread over {} targets", args.target.len()));
        }
        if let (Some(d), Some(b)) = cpu {
            let secs = measured.as_secs_f64().max(1e-9);
            footer.push_str(&format!(" · CPU: daemon {:.2} cores, bench {:.2} cores", d / secs, b / secs));
        }
        crate::outln!("{footer}");
        crate::outln!(
            "latency: {} to last byte of the answer, every answered call; refusals: 409/412/422 answers",
            if args.rate.is_some() || args.background.is_some() {
                "send (open loop: the call's scheduled time)"
            } else {
                "send"
            }
        );
    }

    let errors = report.total_errors();
    if errors > 0 {
        bail!("{errors} calls failed (5xx, unexpected 4xx or transport errors): see the errors above");
    }
    Ok(())
}

/// Against a running daemon: it answers, and the tokens may do what the run needs. The
/// probes are refused before they could change anything (403 or 400/404 come first).
async fn check_target(api: &Api, prefix: &str) -> anyhow::Result<()> {
    let health = api.get("/healthz").await;
    if let Outcome::Error(e) = &health.outcome {
        bail!("cannot reach {}: {e}; is the daemon running there?", api.base());
    }
    let probe = api.call(Method::POST, "/v1/conversations", Role::Integration, None, Some(&json!({}))).await;
    match probe.status.map(|s| s.as_u16()) {
        Some(400) => {}
        Some(401) => bail!("{} does not know the token: give one from its config's [[tokens]]", api.base()),
        Some(403) => bail!(
            "the token may not create conversations or write representatives and queues: \
             use an admin token, or pass an integration token as --integration-token"
        ),
        _ => bail!("probing {}: unexpected answer to POST /v1/conversations: {:?}", api.base(), probe.outcome),
    }
    let path = format!("/v1/conversations/{prefix}probe/release");
    let probe = api.call(Method::POST, &path, Role::Supervisor, None, None).await;
    match probe.status.map(|s| s.as_u16()) {
        Some(404) => Ok(()),
        Some(401) => bail!("{} does not know the token: give one from its config's [[tokens]]", api.base()),
        Some(403) => bail!("the token may not assign, transfer, release or remove: use an admin or a supervisor token"),
        _ => bail!("probing {}: unexpected answer to POST {path}: {:?}", api.base(), probe.outcome),
    }
}

/// Every target but the first must see the records created through the first: the run
/// assumes they serve one database, and would otherwise measure refusals.
async fn check_shared(targets: &[Api], center: &Center) -> anyhow::Result<()> {
    let Some((first, others)) = targets.split_first() else { return Ok(()) };
    let path = format!("/v1/conversations/{}", center.conversation_id(0));
    for other in others {
        let answer = other.get(&path).await;
        match answer.status.map(|s| s.as_u16()) {
            Some(200) => {}
            Some(404) => bail!(
                "{} does not know the conversation `{}` created through {}: every --target must serve the same \
                 database",
                other.base(),
                center.conversation_id(0),
                first.base()
            ),
            _ => bail!("checking {}: GET {path} failed: {:?}", other.base(), answer.outcome),
        }
    }
    Ok(())
}

/// Creates the synthetic center through the API; the pool of its conversations.
async fn populate(args: &Args, api: &Api, center: &Center) -> anyhow::Result<Pool> {
    let total = center.queues + center.representatives + center.conversations;
    let bar = progress_bar(args, total, "populating [{bar:40}] {pos}/{len} {msg}");
    let done = Arc::new(AtomicU64::new(0));
    let ticker = {
        let (bar, done) = (bar.clone(), done.clone());
        AbortOnDrop(tokio::spawn(async move {
            loop {
                bar.set_position(done.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }))
    };
    let shared = Arc::new((api.clone(), center.clone()));
    let result = async {
        bar.set_message("queues");
        let queue_path = |c: &Center, i| format!("/v1/queues/{}", c.queue_id(i));
        put_each(args, &shared, center.queues, &done, queue_path, Center::queue).await?;
        bar.set_message("representatives");
        let rep_path = |c: &Center, i| format!("/v1/representatives/{}", c.representative_id(i));
        put_each(args, &shared, center.representatives, &done, rep_path, Center::representative).await?;
        bar.set_message("conversations");
        let pool = Arc::new(Mutex::new(Pool::default()));
        let (s, p) = (shared.clone(), pool.clone());
        for_each(center.conversations, args.concurrency, done.clone(), move |i| {
            let (s, p) = (s.clone(), p.clone());
            async move {
                let (api, center) = &*s;
                let body =
                    must(api, Method::POST, "/v1/conversations", Role::Integration, &center.conversation(i)).await?;
                let conv = Conv::from_body(&body).context("the daemon answered a create with no open conversation")?;
                p.lock().unwrap_or_else(|e| e.into_inner()).put(conv);
                Ok(())
            }
        })
        .await?;
        let pool = std::mem::take(&mut *pool.lock().unwrap_or_else(|e| e.into_inner()));
        Ok::<_, anyhow::Error>(pool)
    }
    .await;
    drop(ticker);
    bar.finish_and_clear();
    result.context("populating the daemon")
}

/// Set-up: `PUT path(center, i)` with `body(center, i)` for every `i` in `0..n`,
/// `--concurrency` at a time; the first refusal or error stops the rest.
async fn put_each(
    args: &Args,
    shared: &Arc<(Api, Center)>,
    n: u64,
    done: &Arc<AtomicU64>,
    path: fn(&Center, u64) -> String,
    body: fn(&Center, u64) -> Value,
) -> anyhow::Result<()> {
    let s = shared.clone();
    for_each(n, args.concurrency, done.clone(), move |i| {
        let s = s.clone();
        async move {
            let (api, center) = &*s;
            must(api, Method::PUT, &path(center, i), Role::Integration, &body(center, i)).await.map(drop)
        }
    })
    .await
}

type Measured = (Group, Option<Group>, Duration, bool, (Option<f64>, Option<f64>));

/// Runs the workers with a progress bar; Ctrl-C stops them early and still reports.
async fn drive_run(
    args: &Args,
    drive: &Arc<Drive>,
    daemon: Option<&LocalDaemon>,
    interrupt: &Interrupt,
) -> anyhow::Result<Measured> {
    let warmup_ms = args.warmup.as_millis() as u64;
    let total_ms = warmup_ms + args.duration.as_millis() as u64;
    let bar = progress_bar(args, total_ms, "{prefix:>9} [{bar:40}] {elapsed_precise} {msg}");
    let start = Instant::now();
    let seed = |w: u64| args.seed ^ (w + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut workers = tokio::task::JoinSet::new();
    match args.rate {
        None => {
            for w in 0..args.concurrency {
                // Worker `w` keeps to target `w mod N`, as a client behind a load balancer
                // keeps its connection.
                let api = drive.target(w as usize).clone();
                let worker = drive.clone().worker(api, args.mix.clone(), seed(u64::from(w)));
                workers.spawn(async move { Ok::<_, anyhow::Error>((worker.await?, None)) });
            }
        }
        Some(rate) => {
            let paced = pace::paced(drive.clone(), args.mix.clone(), rate, args.concurrency, seed(0));
            workers.spawn(async move { paced.await.map(|(stats, pace)| (stats, Some(pace))) });
        }
    }
    let background = args.background.clone().zip(args.background_rate).map(|(mix, rate)| {
        let paced = pace::paced(drive.clone(), mix.clone(), rate, args.concurrency, seed(u64::MAX - 1));
        (mix, tokio::spawn(paced))
    });
    let ticker = {
        let (bar, drive) = (bar.clone(), drive.clone());
        AbortOnDrop(tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let now = Instant::now();
                let calls = drive.live.calls.load(Ordering::Relaxed);
                let rate = (calls - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-9);
                last = (now, calls);
                bar.set_prefix(if now < drive.measure_from { "warming" } else { "measuring" });
                bar.set_position(now.duration_since(start).as_millis() as u64);
                bar.set_message(format!(
                    "{calls} calls, {rate:.0}/s, {} errors",
                    drive.live.errors.load(Ordering::Relaxed)
                ));
            }
        }))
    };
    // CPU use is sampled at the start of the measured window.
    let cpu_at_start = {
        let drive = drive.clone();
        let pid = daemon.map(LocalDaemon::pid);
        tokio::spawn(async move {
            tokio::time::sleep_until(drive.measure_from.into()).await;
            (local::cpu_seconds(pid).filter(|_| pid.is_some()), local::cpu_seconds(None))
        })
    };
    let interrupted = tokio::select! {
        () = tokio::time::sleep_until(drive.until.into()) => false,
        () = interrupt.wait() => {
            drive.live.stop.store(true, Ordering::Relaxed);
            bar.println("bench: interrupted: finishing the calls in flight, then reporting");
            true
        }
    };
    let mut stats = Stats::new()?;
    let mut pace: Option<Pace> = None;
    while let Some(result) = workers.join_next().await {
        let (worker, paced) = result.context("a worker panicked")??;
        stats.merge(&worker)?;
        pace = pace.or(paced);
    }
    let main = Group { mix: args.mix.clone(), stats, pace };
    let background = match background {
        Some((mix, task)) => {
            let (stats, pace) = task.await.context("the background group panicked")??;
            Some(Group { mix, stats, pace: Some(pace) })
        }
        None => None,
    };
    let end = Instant::now();
    let measured = end.saturating_duration_since(drive.measure_from);
    drop(ticker);
    bar.finish_and_clear();
    let (daemon_cpu, bench_cpu) = if end > drive.measure_from {
        let (d0, b0) = cpu_at_start.await.unwrap_or((None, None));
        let d1 = daemon.and_then(|d| local::cpu_seconds(Some(d.pid())));
        (d0.zip(d1).map(|(a, b)| b - a), b0.zip(local::cpu_seconds(None)).map(|(a, b)| b - a))
    } else {
        cpu_at_start.abort();
        (None, None)
    };
    if measured.is_zero() {
        bail!("interrupted during the warmup: nothing was measured");
    }
    Ok((main, background, measured, interrupted, (daemon_cpu, bench_cpu)))
}

/// After a run against `--target`, whatever became of it: remove every conversation the
/// run created (by id: they are numbered) and set its representatives offline. Best
/// effort: a failure is counted and the rest still done; 404 (never created) and 409
/// (already closed) are fine. Queues stay (the API has no delete); all ids are prefixed.
async fn clean_up(args: &Args, api: &Api, center: &Center, conversations: u64) {
    let shared = Arc::new((api.clone(), center.clone()));
    let remove = |c: &Center, i| format!("/v1/conversations/{}/remove", c.conversation_id(i));
    let mut failed = call_each(args, &shared, conversations, Method::POST, Role::Supervisor, remove, None).await;
    let rep = |c: &Center, i| format!("/v1/representatives/{}", c.representative_id(i));
    let offline = Some(json!({"presence": "offline"}));
    failed += call_each(args, &shared, center.representatives, Method::PATCH, Role::Integration, rep, offline).await;
    match failed {
        0 => status(&format!(
            "cleaned up: removed the run's conversations, set its {} representatives offline (ids `{}*`)",
            center.representatives, center.prefix
        )),
        n => status(&format!(
            "clean-up incomplete: {n} of the run's records under `{}` could not be removed or set offline",
            center.prefix
        )),
    }
}

/// Clean-up: `method path(center, i)` (with `body`) for every `i` in `0..n`,
/// `--concurrency` at a time, best effort: 404 (never created) and 409 (already done)
/// are fine; other failures are counted, and the count returned.
async fn call_each(
    args: &Args,
    shared: &Arc<(Api, Center)>,
    n: u64,
    method: Method,
    role: Role,
    path: fn(&Center, u64) -> String,
    body: Option<Value>,
) -> u64 {
    let failed = Arc::new(AtomicU64::new(0));
    let (s, f, body) = (shared.clone(), failed.clone(), Arc::new(body));
    let _ = for_each(n, args.concurrency, Arc::new(AtomicU64::new(0)), move |i| {
        let (s, f, method, body) = (s.clone(), f.clone(), method.clone(), body.clone());
        async move {
            let (api, center) = &*s;
            let answer = api.call(method, &path(center, i), role, None, body.as_ref().as_ref()).await;
            if !answer.status.is_some_and(|s| s.is_success() || matches!(s.as_u16(), 404 | 409)) {
                f.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }
    })
    .await;
    failed.load(Ordering::Relaxed)
}

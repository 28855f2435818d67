//! WASM matcher plugins: sandboxed WebAssembly components (`plugins/wit`) that rules
//! consult for eligibility and scores.
//!
//! Lifecycle: [`PluginHost::load_dir`] compiles every `*.wasm` of `plugins_dir` once
//! (compiled code is cached on disk, authenticated, see `cache`) and checks it exports
//! the interface version this host speaks. A rule that names a plugin gets a
//! [`PluginUse`]: its first instance is created and initialised with the rule's config
//! at reload (a refusal makes the rules invalid), and kept in the plugin's bounded pool
//! (`pool`: `instances` per plugin, instances keyed by their config).
//!
//! A call ([`PluginUse::evaluate`]) passes the use's circuit breaker (backed off after
//! consecutive failures), takes an idle instance or creates one (under the creation
//! budget, `init_deadline_ms`/`init_fuel`, never the call's), or waits a bounded time
//! for one; then runs `evaluate` under the call's budget: `fuel` instructions, a
//! wall-clock deadline of `deadline_ms`, and an answer of at most
//! [`answer_budget`] bytes copied out. Every instance's memory and tables are limited
//! as a whole (`limits`). An instance whose call failed in the engine is discarded; one
//! whose answer was merely wrong is kept. Failures reach API clients as one line
//! (`PluginError::what`) and the log at most once per plugin per 10 s, with a count.
//! Guests get no filesystem, network, environment, arguments or clock; their stdout and
//! stderr go to the log under their name, rate-limited.

mod bindings;
mod breaker;
mod cache;
mod failure;
mod guest_io;
mod limits;
mod pool;
mod timing;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::domain::{Conversation, Queue, Representative, RoutingAction};
use serde::{Deserialize, Serialize};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use bindings::{
    CandidateSource, FactValue, INTERFACE, PluginRequest, queues_request, representatives_request, rows_request, wit,
};
pub use breaker::BreakerState;
use breaker::{Admit, Breaker, Transition};
use cache::CodeCache;
use failure::{FAILURE_LOG_INTERVAL, FailureLog, Stage};
use guest_io::GuestLog;
pub use guest_io::GuestSink;
use limits::InstanceLimiter;
pub use limits::{
    INIT_BUDGET, Limits, MAX_CORE_INSTANCES, MAX_REASON, MAX_REASON_BYTES, MAX_REASONS, MAX_TABLES, answer_budget,
};
use pool::{Lease, Pool, PoolError};
use timing::CallTimes;

/// The `/metrics` histogram of each plugin's call durations, in seconds.
pub const CALL_DURATION_METRIC: &str = "switchboard_plugin_call_duration_seconds";

/// Its buckets: plugin calls take from a microsecond to the deadline.
pub const CALL_DURATION_BUCKETS: [f64; 14] =
    [1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025];

/// A plugin failure, naming the plugin.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin `{name}` (sha256 {short}…): {what}")]
pub struct PluginError {
    pub name: String,
    pub short: String,
    /// What went wrong, on one line, safe to show to API clients: no backtrace, no host
    /// path, no engine internals.
    pub what: String,
    /// The engine's detail, on one line, for the log only.
    pub detail: String,
}

/// A clock that always reads zero: guests get the time from the request only.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}

/// The epoch ticks every this long; deadlines are counted in ticks.
const TICK: Duration = Duration::from_millis(1);

fn ticks(ms: u64) -> u64 {
    (ms.max(1).saturating_mul(1000) / TICK.as_micros() as u64).max(1)
}

/// What a guest's store holds: WASI with nothing granted, and the limits.
struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: InstanceLimiter,
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// The engine, linker and epoch ticker shared by all plugins.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<GuestState>,
    limits: Limits,
    stop: Arc<AtomicBool>,
    /// The on-disk cache of compiled code, when configured and usable.
    cache: Option<CodeCache>,
    /// Where guests' output goes besides the log.
    guest_sink: Option<GuestSink>,
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn err(name: &str, sha: &str, what: impl Into<String>) -> PluginError {
    PluginError {
        name: name.to_owned(),
        short: sha.chars().take(12).collect(),
        what: what.into(),
        detail: String::new(),
    }
}

impl PluginHost {
    /// An engine with epoch interruption and fuel and, when `cache_dir` is given and
    /// safe to use, an authenticated on-disk cache of compiled code.
    pub fn new(limits: Limits, cache_dir: Option<&Path>) -> anyhow::Result<Arc<Self>> {
        Self::with_guest_sink(limits, cache_dir, None)
    }

    /// The same, handing every line its guests print (after the log's rate limit) to
    /// `sink` as well.
    pub fn with_guest_sink(
        limits: Limits,
        cache_dir: Option<&Path>,
        guest_sink: Option<GuestSink>,
    ) -> anyhow::Result<Arc<Self>> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        config.consume_fuel(true);
        config.wasm_component_model(true);
        let engine = Engine::new(&config).map_err(wasm_err)?;
        let cache = cache_dir.and_then(|dir| {
            CodeCache::open(dir).map_err(|e| tracing::warn!("{e}; plugins are compiled at every start")).ok()
        });
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(wasm_err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = engine.clone();
        let stopped = stop.clone();
        std::thread::Builder::new().name("plugin-epoch".into()).spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                ticker.increment_epoch();
            }
        })?;
        Ok(Arc::new(Self { engine, linker, limits, stop, cache, guest_sink }))
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// How often compiling a plugin found its code in the on-disk cache, and how often it
    /// compiled (hits, misses) since this host started; `None` without a cache.
    pub fn compile_cache_stats(&self) -> Option<(usize, usize)> {
        self.cache.as_ref().map(CodeCache::stats)
    }

    /// Cached files ignored because this daemon did not write them for that component.
    pub fn compile_cache_refused(&self) -> usize {
        self.cache.as_ref().map_or(0, CodeCache::refused)
    }

    /// Compiles one component file and checks its interface.
    pub fn load(self: &Arc<Self>, name: &str, path: &Path) -> Result<Arc<Plugin>, PluginError> {
        let bytes = std::fs::read(path).map_err(|e| err(name, "", format!("cannot read {}: {e}", path.display())))?;
        let sha256 = hex::encode(crate::auth::sha256(&bytes));
        self.compile(name, &sha256, &bytes)
    }

    /// What a component file is, for `switchboard plugin inspect`: its size, digest and
    /// exports, whether this host loads it, and (given a config) what its `init` answers.
    pub fn inspect(self: &Arc<Self>, path: &Path, config: Option<&str>) -> Result<Inspection, PluginError> {
        let name = path.file_stem().map_or_else(|| "plugin".to_owned(), |s| s.to_string_lossy().into_owned());
        let bytes = std::fs::read(path).map_err(|e| err(&name, "", format!("cannot read {}: {e}", path.display())))?;
        let sha256 = hex::encode(crate::auth::sha256(&bytes));
        // Compiled once (an 18 MB component takes seconds): its exports are shown even when
        // it does not load.
        let component = self.component(&name, &sha256, &bytes);
        let exports = match &component {
            Ok(c) => c.component_type().exports(&self.engine).map(|(n, _)| n.to_owned()).collect(),
            Err(_) => Vec::new(),
        };
        let mut out = Inspection {
            name: name.clone(),
            bytes: bytes.len(),
            sha256: sha256.clone(),
            exports,
            expected: INTERFACE,
            loadable: Ok(()),
            needs: None,
        };
        match component.and_then(|c| self.plugin(&name, &sha256, c)) {
            Err(e) => out.loadable = Err(e.to_string()),
            Ok(plugin) => {
                if let Some(config) = config {
                    out.needs = Some(match plugin.with_config(config.to_owned(), FailurePolicy::FailClosed) {
                        Ok(using) => Ok(using.needs_names()),
                        Err(e) => Err(e.to_string()),
                    });
                }
            }
        }
        Ok(out)
    }

    fn compile(self: &Arc<Self>, name: &str, sha256: &str, bytes: &[u8]) -> Result<Arc<Plugin>, PluginError> {
        self.plugin(name, sha256, self.component(name, sha256, bytes)?)
    }

    /// The component's native code, from the on-disk cache or compiled now.
    fn component(&self, name: &str, sha256: &str, bytes: &[u8]) -> Result<Component, PluginError> {
        let hits = self.compile_cache_stats().map_or(0, |(hits, _)| hits);
        let component = match &self.cache {
            Some(cache) => cache.component(&self.engine, sha256, bytes),
            None => Component::new(&self.engine, bytes),
        }
        .map_err(|e| err(name, sha256, format!("not a valid WebAssembly component: {}", failure::detail(&e))))?;
        let cached = self.compile_cache_stats().is_some_and(|(now, _)| now > hits);
        tracing::debug!(plugin = name, sha256, cached, "plugin compiled");
        Ok(component)
    }

    /// A plugin of a compiled component, once its interface and imports are checked.
    fn plugin(self: &Arc<Self>, name: &str, sha256: &str, component: Component) -> Result<Arc<Plugin>, PluginError> {
        let exports: Vec<String> =
            component.component_type().exports(&self.engine).map(|(n, _)| n.to_owned()).collect();
        if !exports.iter().any(|e| e == INTERFACE) {
            let found = exports
                .iter()
                .find(|e| e.starts_with("switchboard:matcher/matcher@"))
                .map_or_else(|| format!("it exports {}", list(&exports)), |e| format!("it exports `{e}`"));
            return Err(err(
                name,
                sha256,
                format!("does not export `{INTERFACE}` ({found}); rebuild it against plugins/wit of this version"),
            ));
        }
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            err(name, sha256, format!("needs imports this host does not grant: {}", failure::detail(&e)))
        })?;
        let pre = bindings::PluginPre::new(pre).map_err(|e| err(name, sha256, failure::detail(&e)))?;
        Ok(Arc::new(Plugin {
            name: name.to_owned(),
            sha256: sha256.to_owned(),
            host: self.clone(),
            pre,
            log: GuestLog::new(name, self.guest_sink.clone()),
            failure_log: FailureLog::new(FAILURE_LOG_INTERVAL),
            counters: Counters::default(),
            metrics: OnceLock::new(),
            pool: Pool::new(self.limits.instances, self.limits.waiting, Duration::from_millis(self.limits.wait_ms)),
            uses: Mutex::new(Vec::new()),
        }))
    }

    /// Loads every `*.wasm` of `dir` (name: the file stem), reusing the plugins of
    /// `previous` whose content is unchanged. All errors, or the set.
    /// Loads every component in `dir`: the plugins that loaded, and an error for each one
    /// that did not (so the rules can still be checked against the others).
    pub fn load_dir(self: &Arc<Self>, dir: &Path, previous: Option<&PluginSet>) -> (PluginSet, Vec<PluginError>) {
        let mut plugins = BTreeMap::new();
        let mut errors = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            // No plugins folder: no plugins (rules naming one fail validation).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return (PluginSet { dir: dir.into(), plugins }, errors);
            }
            Err(e) => {
                errors.push(err(&dir.display().to_string(), "", format!("cannot read the plugins folder: {e}")));
                return (PluginSet { dir: dir.into(), plugins }, errors);
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "wasm")
                    && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        files.sort();
        for path in files {
            let name = path.file_stem().map(|s| s.to_string_lossy().replace('_', "-")).unwrap_or_default();
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    errors.push(err(&name, "", format!("cannot read {}: {e}", path.display())));
                    continue;
                }
            };
            let sha256 = hex::encode(crate::auth::sha256(&bytes));
            let reused = previous.and_then(|p| p.plugins.get(&name)).filter(|p| p.sha256 == sha256).cloned();
            match reused.map_or_else(|| self.compile(&name, &sha256, &bytes), Ok) {
                Ok(p) => {
                    plugins.insert(name, p);
                }
                Err(e) => errors.push(e),
            }
        }
        (PluginSet { dir: dir.into(), plugins }, errors)
    }
}

fn wasm_err(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{}", failure::detail(&e))
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".into()
    } else {
        items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
    }
}

/// The plugins loaded from `plugins_dir`, by name.
#[derive(Clone, Default)]
pub struct PluginSet {
    dir: PathBuf,
    plugins: BTreeMap<String, Arc<Plugin>>,
}

impl PluginSet {
    pub fn get(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.plugins.get(name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.plugins.keys().map(String::as_str).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.plugins.values()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A plugin's counters since it was loaded (over all the rules using it).
#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    failures: AtomicU64,
    rejected: AtomicU64,
    instantiations: AtomicU64,
    breaker_trips: AtomicU64,
    peak_memory: AtomicU64,
    peak_fuel: AtomicU64,
    /// The calls that ran, from taking an instance to the checked answer.
    times: CallTimes,
}

/// Handles of a plugin's metrics, looked up once (the recorder is installed by then).
struct PluginMetrics {
    ok: metrics::Counter,
    failed: metrics::Counter,
    rejected: metrics::Counter,
    trips: metrics::Counter,
    open: metrics::Gauge,
    duration: metrics::Histogram,
}

/// A compiled plugin.
pub struct Plugin {
    pub name: String,
    pub sha256: String,
    host: Arc<PluginHost>,
    pre: bindings::PluginPre<GuestState>,
    log: GuestLog,
    failure_log: FailureLog,
    counters: Counters,
    metrics: OnceLock<PluginMetrics>,
    /// Its instances, keyed by the config they were initialised with.
    pool: Pool<Arc<str>, Instance>,
    /// The rules' uses of this plugin, for its stats.
    uses: Mutex<Vec<Weak<UseState>>>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("name", &self.name).field("sha256", &self.sha256).finish()
    }
}

/// A live instance and its store.
struct Instance {
    store: Store<GuestState>,
    bindings: bindings::Plugin,
    /// What its `init` said it reads.
    needs: wit::Needs,
}

/// A rule's call budget for its plugin: each figure set replaces `[plugin_limits]`'s for
/// that rule's calls (so one slow matcher, e.g. one in Python, does not loosen the bound
/// on every other).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallBudget {
    /// Instructions a call may run besides `fuel_per_candidate` for each candidate.
    pub fuel: Option<u64>,
    /// Instructions a call gets for each candidate in its batch.
    pub fuel_per_candidate: Option<u64>,
    /// Wall-clock budget of one call, in milliseconds (1 to 60,000).
    pub deadline_ms: Option<u64>,
}

impl CallBudget {
    /// The longest `deadline_ms` a rule may set: a request's own timeout.
    pub const MAX_DEADLINE_MS: u64 = 60_000;
}

/// How a rule treats a plugin that fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Exclude the candidates, with the reason ``plugin `x` failed: ...``.
    #[default]
    FailClosed,
    /// Skip the plugin: its verdicts are as if it had let everyone through.
    FailOpen,
}

/// The breaker of one use.
struct UseState {
    breaker: Breaker,
    /// Its breaker is counted in the plugin's `open` gauge.
    counted_open: AtomicBool,
    open_gauge: OnceLock<metrics::Gauge>,
}

impl Drop for UseState {
    fn drop(&mut self) {
        if self.counted_open.load(Ordering::Relaxed)
            && let Some(g) = self.open_gauge.get()
        {
            g.decrement(1.0);
        }
    }
}

/// What a plugin said of a batch, in the host's terms (the generated WIT types stay in
/// this module).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Judgement {
    /// Added to each candidate's score, in batch order (empty: nothing added).
    pub scores: Vec<f64>,
    /// The excluded candidates by batch index, increasing, each with its reason if given.
    pub excluded: Vec<(usize, Option<String>)>,
}

impl From<wit::Verdicts> for Judgement {
    fn from(v: wit::Verdicts) -> Self {
        let reason = |n: usize| v.reason_of.get(n).and_then(|&r| v.reasons.get(r as usize)).cloned();
        let excluded = v.excluded.iter().enumerate().map(|(n, &k)| (k as usize, reason(n))).collect();
        Judgement { scores: v.scores, excluded }
    }
}

/// A plugin as one rule uses it: its config (the plugin's instances initialised with it
/// serve it) and a circuit breaker.
pub struct PluginUse {
    pub plugin: Arc<Plugin>,
    pub config: String,
    /// The config, as the plugin's pool keys instances.
    key: Arc<str>,
    pub on_failure: FailurePolicy,
    /// The candidate fields the plugin reads (from its first instance's `init`).
    pub needs: wit::Needs,
    /// The limits its calls run under: the daemon's, with the rule's call budget.
    limits: Limits,
    state: Arc<UseState>,
}

impl std::fmt::Debug for PluginUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginUse").field("plugin", &self.plugin.name).field("config", &self.config).finish()
    }
}

/// A plugin's counters and state, shown by `GET /v1/rules`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PluginStats {
    pub name: String,
    pub sha256: String,
    pub calls: u64,
    /// Calls that failed, including those `rejected`.
    pub failures: u64,
    /// Calls refused without running the plugin: backed off, or no instance free in time.
    pub rejected: u64,
    /// Instances created (each failure in the engine discards one).
    pub instantiations: u64,
    /// The breaker of the rules using it: the most open one.
    pub breaker: BreakerState,
    /// Its current run of consecutive failures (the longest over its rules).
    pub consecutive_failures: u32,
    /// How often a breaker of it opened.
    pub breaker_trips: u64,
    /// Live instances, idle ones, and calls waiting for one.
    pub instances: usize,
    pub idle_instances: usize,
    pub waiting_calls: usize,
    /// The most linear memory an instance of it held after a call, in bytes.
    pub peak_instance_memory: u64,
    /// The most fuel (instructions) one call used.
    pub peak_call_fuel: u64,
    /// The median duration of its calls that ran (since it was loaded), from taking an
    /// instance to the checked answer, in microseconds; null before the first.
    pub call_p50_us: Option<f64>,
    /// The 99th percentile of the same.
    pub call_p99_us: Option<f64>,
}

impl Plugin {
    pub fn stats(&self) -> PluginStats {
        let c = &self.counters;
        let now = Instant::now();
        let uses = self.live_uses();
        let pool = self.pool.stats();
        let times = c.times.p50_p99_us();
        PluginStats {
            name: self.name.clone(),
            sha256: self.sha256.clone(),
            calls: c.calls.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            instantiations: c.instantiations.load(Ordering::Relaxed),
            breaker: uses.iter().map(|u| u.breaker.state(now)).max().unwrap_or(BreakerState::Closed),
            consecutive_failures: uses.iter().map(|u| u.breaker.consecutive_failures()).max().unwrap_or(0),
            breaker_trips: c.breaker_trips.load(Ordering::Relaxed),
            instances: pool.live,
            idle_instances: pool.idle,
            waiting_calls: pool.waiting,
            peak_instance_memory: c.peak_memory.load(Ordering::Relaxed),
            peak_call_fuel: c.peak_fuel.load(Ordering::Relaxed),
            call_p50_us: times.map(|t| t.0),
            call_p99_us: times.map(|t| t.1),
        }
    }

    fn live_uses(&self) -> Vec<Arc<UseState>> {
        let mut uses = self.uses.lock().unwrap_or_else(|e| e.into_inner());
        uses.retain(|u| u.strong_count() > 0);
        uses.iter().filter_map(Weak::upgrade).collect()
    }

    fn metrics(&self) -> &PluginMetrics {
        self.metrics.get_or_init(|| {
            let calls = |outcome: &'static str| {
                metrics::counter!("switchboard_plugin_calls_total", "plugin" => self.name.clone(), "outcome" => outcome)
            };
            PluginMetrics {
                ok: calls("ok"),
                failed: calls("failed"),
                rejected: calls("rejected"),
                trips: metrics::counter!("switchboard_plugin_breaker_trips_total", "plugin" => self.name.clone()),
                open: metrics::gauge!("switchboard_plugin_breakers_open", "plugin" => self.name.clone()),
                duration: metrics::histogram!(CALL_DURATION_METRIC, "plugin" => self.name.clone()),
            }
        })
    }

    fn error(&self, what: impl Into<String>) -> PluginError {
        err(&self.name, &self.sha256, what)
    }

    /// The failure of `e` in `stage`, in one line for clients and one for the log.
    fn failure(&self, e: &wasmtime::Error, stage: Stage) -> PluginError {
        self.failure_under(e, &self.host.limits, stage)
    }

    /// The same, for a call made under `limits`.
    fn failure_under(&self, e: &wasmtime::Error, limits: &Limits, stage: Stage) -> PluginError {
        PluginError { detail: failure::detail(e), ..self.error(failure::describe(e, limits, stage)) }
    }

    /// Creates an instance and runs its `init`, under the creation budget.
    fn instantiate(&self, config: &str) -> Result<Instance, PluginError> {
        self.counters.instantiations.fetch_add(1, Ordering::Relaxed);
        let limits = self.host.limits;
        // Nothing is granted: no preopened folders, environment, arguments or sockets,
        // and clocks that stand still (the time comes in the request).
        let wasi = WasiCtx::builder()
            .stdout(self.log.stream("stdout"))
            .stderr(self.log.stream("stderr"))
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .build();
        let state = GuestState { wasi, table: ResourceTable::new(), limiter: InstanceLimiter::new(&limits) };
        let mut store = Store::new(&self.host.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(ticks(limits.init_deadline_ms));
        store.set_fuel(limits.init_fuel).map_err(|e| self.failure(&e, Stage::Init))?;
        store.set_hostcall_fuel(INIT_BUDGET);
        let bindings = self.pre.instantiate(&mut store).map_err(|e| self.failure(&e, Stage::Init))?;
        let needs = bindings
            .switchboard_matcher_matcher()
            .call_init(&mut store, config)
            .map_err(|e| self.failure(&e, Stage::Init))?
            .map_err(|e| self.error(format!("refused its config: {}", failure::first_line(&e))))?;
        Ok(Instance { store, bindings, needs })
    }

    /// Prepares a use of this plugin with `config` (JSON), checking the plugin accepts it.
    pub fn with_config(self: &Arc<Self>, config: String, on_failure: FailurePolicy) -> Result<PluginUse, PluginError> {
        let first = self.instantiate(&config)?;
        let limits = self.host.limits;
        let needs = first.needs;
        let state = Arc::new(UseState {
            breaker: Breaker::new(limits.breaker_failures, Duration::from_millis(limits.breaker_cooldown_ms)),
            counted_open: AtomicBool::new(false),
            open_gauge: OnceLock::new(),
        });
        let key: Arc<str> = config.as_str().into();
        // Kept for the first call when there is room (or an idle instance of another
        // config to replace); either way dropped outside the pool's lock.
        drop(self.pool.seed(key.clone(), first));
        self.uses.lock().unwrap_or_else(|e| e.into_inner()).push(Arc::downgrade(&state));
        Ok(PluginUse { plugin: self.clone(), needs, config, key, on_failure, limits, state })
    }
}

/// What `switchboard plugin inspect` says of a component file.
#[derive(Debug, serde::Serialize)]
pub struct Inspection {
    /// The plugin's name if installed as this file (its stem).
    pub name: String,
    pub bytes: usize,
    pub sha256: String,
    /// The component's exports (the WIT package and version a matcher exports among them).
    pub exports: Vec<String>,
    /// The interface this daemon calls.
    pub expected: &'static str,
    /// Whether this daemon loads it, or why not.
    #[serde(serialize_with = "ok_or_reason")]
    pub loadable: Result<(), String>,
    /// With a config: the request fields its `init` asked for, or why `init` refused.
    #[serde(serialize_with = "opt_ok_or_reason")]
    pub needs: Option<Result<Vec<&'static str>, String>>,
}

fn ok_or_reason<S: serde::Serializer>(r: &Result<(), String>, s: S) -> Result<S::Ok, S::Error> {
    match r {
        Ok(()) => s.serialize_bool(true),
        Err(why) => s.serialize_str(why),
    }
}

fn opt_ok_or_reason<S: serde::Serializer>(
    r: &Option<Result<Vec<&'static str>, String>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::Serialize;
    match r {
        None => s.serialize_none(),
        Some(Ok(needs)) => needs.serialize(s),
        Some(Err(why)) => s.serialize_str(why),
    }
}

/// A failed call: whether the plugin ran (its breaker counts only those).
struct Failed {
    error: PluginError,
    ran: bool,
}

impl PluginUse {
    /// Takes an idle instance from the pool and gives it back, as every call does; false
    /// when none is idle. For `benches/plugins.rs`, which measures what the pool costs.
    pub fn pool_round_trip(&self) -> bool {
        let pool = &self.plugin.pool;
        match pool.acquire(&self.key) {
            Ok(Lease::Idle(inst)) => {
                pool.give_back(self.key.clone(), inst);
                true
            }
            Ok(Lease::Create(evicted)) => {
                drop(evicted);
                pool.discard();
                false
            }
            Err(_) => false,
        }
    }

    /// Drops the idle instances, freeing their memory; later calls create new ones.
    /// Returns how many were dropped.
    pub fn drop_idle_instances(&self) -> usize {
        let mut dropped = 0;
        while let Some(inst) = self.plugin.pool.take_idle(&self.key) {
            drop(inst);
            self.plugin.pool.discard();
            dropped += 1;
        }
        dropped
    }

    /// The state of this use's breaker.
    pub fn breaker(&self) -> BreakerState {
        self.state.breaker.state(Instant::now())
    }

    /// The request fields its `init` asked for, by their WIT names.
    pub fn needs_names(&self) -> Vec<&'static str> {
        bindings::NEEDS.into_iter().filter(|(flag, _)| self.needs.contains(*flag)).map(|(_, name)| name).collect()
    }

    /// Whether the plugin reads the candidates' capacity (so a decision relies on it).
    pub fn reads_capacity(&self) -> bool {
        self.needs.contains(wit::Needs::CAPACITY)
    }

    /// The request for rows `batch` of `src`, with the fields this plugin reads. Build it
    /// under whatever lock guards `src`, then [`PluginUse::judge`] it after releasing it.
    pub fn request(
        &self,
        action: RoutingAction,
        now_ms: i64,
        conv: &Conversation,
        src: &dyn CandidateSource,
        batch: &[usize],
    ) -> PluginRequest {
        rows_request(action, now_ms, conv, src, batch, self.needs)
    }

    /// The request for representatives given as records (not rows of a routing table),
    /// with the fields this plugin reads; idle time measured at `now_ms`.
    pub fn representatives_request(
        &self,
        action: RoutingAction,
        now_ms: i64,
        conv: &Conversation,
        reps: &[&Representative],
    ) -> PluginRequest {
        let idle = |k: usize| crate::domain::idle_minutes(reps[k].last_assigned_ms, now_ms) as f32;
        representatives_request(action, now_ms, conv, reps, idle, self.needs)
    }

    /// The plugin's judgement on a request.
    pub fn judge(&self, request: &PluginRequest) -> Result<Judgement, PluginError> {
        self.evaluate(request).map(Judgement::from)
    }

    /// This use's calls run under `budget` where it sets a figure, the daemon's
    /// `[plugin_limits]` elsewhere (a rule's `limits`).
    pub fn with_call_budget(mut self, budget: CallBudget) -> Self {
        let l = &mut self.limits;
        l.fuel = budget.fuel.unwrap_or(l.fuel);
        l.fuel_per_candidate = budget.fuel_per_candidate.unwrap_or(l.fuel_per_candidate);
        l.deadline_ms = budget.deadline_ms.unwrap_or(l.deadline_ms);
        self
    }

    /// Whether the plugin reads the candidates' ids.
    pub fn reads_ids(&self) -> bool {
        self.needs.contains(wit::Needs::CANDIDATE_IDS)
    }

    /// The plugin's judgement on a batch of queues.
    pub fn judge_queues(
        &self,
        action: RoutingAction,
        now_ms: i64,
        conv: &Conversation,
        queues: &[&Queue],
    ) -> Result<Judgement, PluginError> {
        self.evaluate(&queues_request(action, now_ms, conv, queues, self.needs)).map(Judgement::from)
    }

    /// The verdicts on `request`'s candidates, checked, or the failure.
    pub fn evaluate(&self, request: &PluginRequest) -> Result<wit::Verdicts, PluginError> {
        let plugin = &self.plugin;
        let counters = &plugin.counters;
        counters.calls.fetch_add(1, Ordering::Relaxed);
        let metrics = plugin.metrics();
        let started = Instant::now();
        let admit = self.state.breaker.admit(started);
        let result = match admit {
            Admit::No { failures } => Err(Failed {
                error: plugin.error(format!(
                    "is backed off after {failures} consecutive failures (tried again after {} ms)",
                    plugin.host.limits.breaker_cooldown_ms
                )),
                ran: false,
            }),
            Admit::Yes | Admit::Trial => self.call(request),
        };
        // The breaker counts calls that ran; a trial that could not run counts as failed.
        let ran = result.as_ref().map_or_else(|f| f.ran, |_| true);
        // One clock read serves the duration and the breaker (each costs tens of ns).
        let ended = Instant::now();
        if ran {
            let took = ended.saturating_duration_since(started);
            counters.times.record(took);
            metrics.duration.record(took.as_secs_f64());
        }
        if admit == Admit::Yes && ran || admit == Admit::Trial {
            self.transition(self.state.breaker.record(result.is_ok(), ended), metrics);
        }
        match result {
            Ok(v) => {
                metrics.ok.increment(1);
                Ok(v)
            }
            Err(Failed { error, ran }) => {
                counters.failures.fetch_add(1, Ordering::Relaxed);
                if ran {
                    metrics.failed.increment(1);
                } else {
                    counters.rejected.fetch_add(1, Ordering::Relaxed);
                    metrics.rejected.increment(1);
                }
                plugin.failure_log.record(&plugin.name, &error.what, &error.detail);
                Err(error)
            }
        }
    }

    fn transition(&self, t: Transition, metrics: &PluginMetrics) {
        let plugin = &self.plugin;
        let gauge = self.state.open_gauge.get_or_init(|| metrics.open.clone());
        match t {
            Transition::None => {}
            Transition::Opened => {
                plugin.counters.breaker_trips.fetch_add(1, Ordering::Relaxed);
                metrics.trips.increment(1);
                if !self.state.counted_open.swap(true, Ordering::Relaxed) {
                    gauge.increment(1.0);
                }
                tracing::warn!(
                    plugin = %plugin.name,
                    "plugin `{}` is backed off for {} ms after {} consecutive failures",
                    plugin.name,
                    plugin.host.limits.breaker_cooldown_ms,
                    self.state.breaker.consecutive_failures()
                );
            }
            Transition::Closed => {
                if self.state.counted_open.swap(false, Ordering::Relaxed) {
                    gauge.decrement(1.0);
                }
                tracing::info!(plugin = %plugin.name, "plugin `{}` answers again; its breaker is closed", plugin.name);
            }
        }
    }

    /// One call: an instance from the pool (or a new one), `evaluate` under the call's
    /// budget, the answer checked.
    fn call(&self, request: &PluginRequest) -> Result<wit::Verdicts, Failed> {
        let expected = request.count();
        let plugin = &self.plugin;
        let limits = self.limits;
        let pool = &plugin.pool;
        let ran = |error: PluginError| Failed { error, ran: true };
        let mut inst = match pool.acquire(&self.key) {
            Ok(Lease::Idle(inst)) => inst,
            Ok(Lease::Create(evicted)) => {
                drop(evicted);
                match plugin.instantiate(&self.config) {
                    Ok(inst) => inst,
                    Err(e) => {
                        pool.discard();
                        return Err(ran(e));
                    }
                }
            }
            Err(PoolError::Busy { waiting }) => {
                let what = format!("is busy: {waiting} calls already wait for its {} instances", limits.instances);
                return Err(Failed { error: plugin.error(what), ran: false });
            }
            Err(PoolError::Timeout { wait }) => {
                let what = format!("had no instance free within {} ms", wait.as_millis());
                return Err(Failed { error: plugin.error(what), ran: false });
            }
        };
        let budget = answer_budget(expected);
        let stage = Stage::Call { n: expected, budget };
        // The call's budget starts now, whatever creating the instance took.
        inst.store.set_epoch_deadline(ticks(limits.deadline_ms));
        inst.store.set_hostcall_fuel(budget);
        let fuel = limits.call_fuel(expected);
        let answer = inst
            .store
            .set_fuel(fuel)
            .and_then(|()| inst.bindings.switchboard_matcher_matcher().call_evaluate(&mut inst.store, request.bytes()));
        let used = fuel.saturating_sub(inst.store.get_fuel().unwrap_or(0));
        plugin.counters.peak_fuel.fetch_max(used, Ordering::Relaxed);
        let memory = inst.store.data().limiter.memory_bytes() as u64;
        plugin.counters.peak_memory.fetch_max(memory, Ordering::Relaxed);
        match answer {
            // An instance that failed in the engine is dropped here, never reused.
            Err(e) => {
                drop(inst);
                pool.discard();
                Err(ran(plugin.failure_under(&e, &limits, stage)))
            }
            Ok(verdicts) => {
                pool.give_back(self.key.clone(), inst);
                limits::check(verdicts, expected).map_err(|what| ran(plugin.error(what)))
            }
        }
    }
}

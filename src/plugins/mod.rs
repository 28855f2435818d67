//! WASM matcher plugins: sandboxed WebAssembly components (`plugins/wit`) that rules
//! consult for eligibility and scores.
//!
//! Lifecycle: [`PluginHost::load_dir`] compiles every `*.wasm` of `plugins_dir` once
//! (compiled code is cached on disk by content, so a restart does not recompile) and
//! checks it exports the interface version this host speaks. A rule that names a
//! plugin gets a [`PluginUse`]: instances initialised with the rule's config, kept in
//! a pool and reused across requests. A call takes an instance, runs it under an epoch
//! deadline and a memory limit, and returns it; an instance that trapped is discarded
//! (the next call builds a fresh one). Guests get no filesystem, network, environment,
//! arguments or clock; their stdout and stderr go to the log under their name.

mod bindings;
mod guest_io;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use bindings::{INTERFACE, queues_request, representatives_request, wit};
use guest_io::GuestLog;

/// A plugin failure, naming the plugin.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin `{name}` (sha256 {short}…): {what}")]
pub struct PluginError {
    pub name: String,
    pub short: String,
    pub what: String,
}

/// Sandbox limits of every plugin call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock budget of one call, in milliseconds.
    #[serde(default = "default_deadline")]
    pub deadline_ms: u64,
    /// Memory of one instance, in MiB.
    #[serde(default = "default_memory")]
    pub memory_mib: u64,
}

fn default_deadline() -> u64 {
    5
}

fn default_memory() -> u64 {
    16
}

impl Default for Limits {
    fn default() -> Self {
        Self { deadline_ms: default_deadline(), memory_mib: default_memory() }
    }
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

/// What a guest's store holds: WASI with nothing granted, and the limits.
struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
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
    /// The on-disk cache of compiled code, when configured.
    cache: Option<wasmtime::Cache>,
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn err(name: &str, sha: &str, what: impl Into<String>) -> PluginError {
    PluginError { name: name.to_owned(), short: sha.chars().take(12).collect(), what: what.into() }
}

impl PluginHost {
    /// An engine with epoch interruption and, when `cache_dir` is given, an on-disk
    /// cache of compiled code keyed by content.
    pub fn new(limits: Limits, cache_dir: Option<&Path>) -> anyhow::Result<Arc<Self>> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let cache = match cache_dir {
            Some(dir) => {
                let mut cache = wasmtime::CacheConfig::new();
                cache.with_directory(dir);
                Some(wasmtime::Cache::new(cache).map_err(wasm_err)?)
            }
            None => None,
        };
        config.cache(cache.clone());
        let engine = Engine::new(&config).map_err(wasm_err)?;
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
        Ok(Arc::new(Self { engine, linker, limits, stop, cache }))
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// How often compiling a plugin found its code in the on-disk cache, and how often it
    /// compiled (hits, misses) since this host started; `None` without a cache.
    pub fn compile_cache_stats(&self) -> Option<(usize, usize)> {
        self.cache.as_ref().map(|c| (c.cache_hits(), c.cache_misses()))
    }

    /// Compiles one component file and checks its interface.
    pub fn load(self: &Arc<Self>, name: &str, path: &Path) -> Result<Arc<Plugin>, PluginError> {
        let bytes = std::fs::read(path).map_err(|e| err(name, "", format!("cannot read {}: {e}", path.display())))?;
        let sha256 = hex::encode(crate::auth::sha256(&bytes));
        self.compile(name, &sha256, &bytes)
    }

    fn compile(self: &Arc<Self>, name: &str, sha256: &str, bytes: &[u8]) -> Result<Arc<Plugin>, PluginError> {
        let hits = self.compile_cache_stats().map_or(0, |(hits, _)| hits);
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| err(name, sha256, format!("not a valid WebAssembly component: {e:#}")))?;
        let cached = self.compile_cache_stats().is_some_and(|(now, _)| now > hits);
        tracing::debug!(plugin = name, sha256, cached, "plugin compiled");
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
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| err(name, sha256, format!("needs imports this host does not grant: {e:#}")))?;
        let pre = bindings::PluginPre::new(pre).map_err(|e| err(name, sha256, format!("{e:#}")))?;
        Ok(Arc::new(Plugin {
            name: name.to_owned(),
            sha256: sha256.to_owned(),
            host: self.clone(),
            pre,
            log: GuestLog::new(name),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }))
    }

    /// Loads every `*.wasm` of `dir` (name: the file stem), reusing the plugins of
    /// `previous` whose content is unchanged. All errors, or the set.
    pub fn load_dir(self: &Arc<Self>, dir: &Path, previous: Option<&PluginSet>) -> Result<PluginSet, Vec<PluginError>> {
        let mut plugins = BTreeMap::new();
        let mut errors = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            // No plugins folder: no plugins (rules naming one fail validation).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(PluginSet { dir: dir.into(), plugins }),
            Err(e) => {
                return Err(vec![err(&dir.display().to_string(), "", format!("cannot read the plugins folder: {e}"))]);
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
        if errors.is_empty() { Ok(PluginSet { dir: dir.into(), plugins }) } else { Err(errors) }
    }
}

fn wasm_err(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
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

/// A compiled plugin.
pub struct Plugin {
    pub name: String,
    pub sha256: String,
    host: Arc<PluginHost>,
    pre: bindings::PluginPre<GuestState>,
    log: GuestLog,
    calls: AtomicU64,
    failures: AtomicU64,
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

/// A plugin as one rule uses it: its config, and a pool of initialised instances.
pub struct PluginUse {
    pub plugin: Arc<Plugin>,
    pub config: String,
    pub on_failure: FailurePolicy,
    /// The candidate fields the plugin reads (from its first instance's `init`).
    pub needs: wit::Needs,
    pool: Mutex<Vec<Instance>>,
    calls_ok: OnceLock<metrics::Counter>,
    calls_failed: OnceLock<metrics::Counter>,
}

impl std::fmt::Debug for PluginUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginUse").field("plugin", &self.plugin.name).field("config", &self.config).finish()
    }
}

/// Counters shown by `GET /v1/rules`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PluginStats {
    pub name: String,
    pub sha256: String,
    pub calls: u64,
    pub failures: u64,
}

impl Plugin {
    pub fn stats(&self) -> PluginStats {
        PluginStats {
            name: self.name.clone(),
            sha256: self.sha256.clone(),
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }

    fn error(&self, what: impl Into<String>) -> PluginError {
        err(&self.name, &self.sha256, what)
    }

    fn instantiate(&self, config: &str) -> Result<Instance, PluginError> {
        let limits = self.host.limits;
        let memory = usize::try_from(limits.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        // Nothing is granted: no preopened folders, environment, arguments or sockets,
        // and clocks that stand still (the time comes in the request).
        let wasi = WasiCtx::builder()
            .stdout(self.log.stream("stdout"))
            .stderr(self.log.stream("stderr"))
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .build();
        let state = GuestState {
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new().memory_size(memory).instances(64).trap_on_grow_failure(true).build(),
        };
        let mut store = Store::new(&self.host.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(self.deadline_ticks());
        let bindings =
            self.pre.instantiate(&mut store).map_err(|e| self.error(format!("instantiation failed: {e:#}")))?;
        store.set_epoch_deadline(self.deadline_ticks());
        let needs = bindings
            .switchboard_matcher_matcher()
            .call_init(&mut store, config)
            .map_err(|e| self.error(describe_trap(&e, limits)))?
            .map_err(|e| self.error(format!("refused its config: {e}")))?;
        Ok(Instance { store, bindings, needs })
    }

    fn deadline_ticks(&self) -> u64 {
        (self.host.limits.deadline_ms.max(1) * 1000 / TICK.as_micros() as u64).max(1)
    }

    /// Prepares a use of this plugin with `config` (JSON), checking the plugin accepts it.
    pub fn with_config(self: &Arc<Self>, config: String, on_failure: FailurePolicy) -> Result<PluginUse, PluginError> {
        let first = self.instantiate(&config)?;
        Ok(PluginUse {
            plugin: self.clone(),
            needs: first.needs,
            config,
            on_failure,
            pool: Mutex::new(vec![first]),
            calls_ok: OnceLock::new(),
            calls_failed: OnceLock::new(),
        })
    }
}

fn describe_trap(e: &wasmtime::Error, limits: Limits) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => {
            format!("ran past its deadline of {} ms and was stopped", limits.deadline_ms)
        }
        Some(wasmtime::Trap::UnreachableCodeReached) => format!("trapped (a panic or abort in the guest): {e:#}"),
        Some(wasmtime::Trap::AllocationTooLarge) => format!("exceeded its memory limit of {} MiB", limits.memory_mib),
        Some(trap) => format!("trapped: {trap}"),
        None if format!("{e:#}").contains("memory") => {
            format!("exceeded its memory limit of {} MiB: {e:#}", limits.memory_mib)
        }
        None => format!("failed: {e:#}"),
    }
}

/// Reasons longer than this are cut.
const MAX_REASON: usize = 500;

/// Checks a guest's answer on `n` candidates, saying plainly what is wrong with it, and
/// tidies it: scores that are not finite count as 0, over-long reasons are cut.
fn check(mut v: wit::Verdicts, n: usize) -> Result<wit::Verdicts, String> {
    if !v.scores.is_empty() && v.scores.len() != n {
        return Err(format!("returned {} scores for {n} candidates (give none or one per candidate)", v.scores.len()));
    }
    if let Some(&k) = v.excluded.iter().find(|&&k| k as usize >= n) {
        return Err(format!("excluded candidate {k}, but there are {n} (indices start at 0)"));
    }
    if !v.reason_of.is_empty() && v.reason_of.len() != v.excluded.len() {
        let (r, e) = (v.reason_of.len(), v.excluded.len());
        return Err(format!("returned {r} reason indices for {e} exclusions (give none or one per exclusion)"));
    }
    if let Some(&r) = v.reason_of.iter().find(|&&r| r as usize >= v.reasons.len()) {
        return Err(format!("named reason {r}, but returned {} reasons", v.reasons.len()));
    }
    for score in &mut v.scores {
        if !score.is_finite() {
            *score = 0.0;
        }
    }
    for r in &mut v.reasons {
        if r.len() > MAX_REASON {
            let cut = (0..=MAX_REASON).rev().find(|i| r.is_char_boundary(*i)).unwrap_or(0);
            r.truncate(cut);
            r.push('…');
        }
    }
    Ok(v)
}

impl PluginUse {
    /// An idle instance from the pool, if there is one.
    fn take(&self) -> Option<Instance> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn give_back(&self, inst: Instance) {
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).push(inst);
    }

    /// Takes an idle instance from the pool and gives it back, as every call does; false
    /// when the pool is empty. For `benches/plugins.rs`, which measures what the pool costs.
    pub fn pool_round_trip(&self) -> bool {
        self.take().map(|inst| self.give_back(inst)).is_some()
    }

    /// The verdicts on `request`'s candidates (`expected` of them), checked, or the failure.
    pub fn evaluate(&self, request: &wit::Request, expected: usize) -> Result<wit::Verdicts, PluginError> {
        let plugin = &self.plugin;
        plugin.calls.fetch_add(1, Ordering::Relaxed);
        let result = self.take().map_or_else(|| plugin.instantiate(&self.config), Ok).and_then(|mut inst| {
            inst.store.set_epoch_deadline(plugin.deadline_ticks());
            let answer = inst.bindings.switchboard_matcher_matcher().call_evaluate(&mut inst.store, request);
            match answer {
                // A trapped instance is dropped here, never reused.
                Err(e) => Err(plugin.error(describe_trap(&e, plugin.host.limits))),
                Ok(verdicts) => {
                    self.give_back(inst);
                    Ok(verdicts)
                }
            }
        });
        let result = result.and_then(|v| check(v, expected).map_err(|what| plugin.error(what)));
        // Counter handles are looked up once per use, not per call.
        let counter = if result.is_ok() { &self.calls_ok } else { &self.calls_failed };
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        counter
            .get_or_init(|| {
                metrics::counter!("switchboard_plugin_calls_total", "plugin" => plugin.name.clone(), "outcome" => outcome)
            })
            .increment(1);
        if let Err(e) = &result {
            plugin.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("{e}");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_REASON, check, wit};

    fn verdicts(excluded: &[u32], reason_of: &[u32], reasons: &[&str], scores: &[f64]) -> wit::Verdicts {
        wit::Verdicts {
            excluded: excluded.to_vec(),
            reason_of: reason_of.to_vec(),
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            scores: scores.to_vec(),
        }
    }

    #[test]
    fn answers_that_do_not_fit_the_batch_are_refused_plainly() {
        let cases = [
            (verdicts(&[], &[], &[], &[1.0; 4]), "returned 4 scores for 3 candidates (give none or one per candidate)"),
            (verdicts(&[3], &[], &[], &[]), "excluded candidate 3, but there are 3 (indices start at 0)"),
            (verdicts(&[0, 1], &[0], &["no"], &[]), "returned 1 reason indices for 2 exclusions"),
            (verdicts(&[0], &[1], &["no"], &[]), "named reason 1, but returned 1 reasons"),
        ];
        for (answer, message) in cases {
            let got = check(answer, 3).unwrap_err();
            assert!(got.starts_with(message), "`{got}` does not start with `{message}`");
        }
    }

    #[test]
    fn good_answers_are_tidied_not_refused() {
        let long = "é".repeat(MAX_REASON);
        let got = check(verdicts(&[2, 0], &[0, 0], &[&long], &[f64::NAN, 1.5, f64::INFINITY]), 3).unwrap();
        assert_eq!(got.scores, [0.0, 1.5, 0.0]);
        assert!(got.reasons[0].len() <= MAX_REASON + '…'.len_utf8() && got.reasons[0].ends_with('…'));
        assert_eq!(got.excluded, [2, 0]);
        let none = check(verdicts(&[], &[], &[], &[]), 0).unwrap();
        assert!(none.excluded.is_empty() && none.scores.is_empty());
    }
}

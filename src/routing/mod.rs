//! Eligibility and ranking of assign/transfer targets, and the rules in force.
//!
//! The service asks the [`Policy`] in force which targets a conversation may go to. A
//! policy is an immutable snapshot: a request loads it once from [`Routing`] and uses it
//! from start to end, so an answer never mixes two rule sets. A reload builds and
//! validates a whole new [`RuleSet`] before swapping it in; a failed reload keeps the
//! snapshot in force and records why in `last_error`. With no rule files the policy
//! lets every target through, as the contract says.

mod backlog;
mod candidates;
mod directory;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::Serialize;

pub use crate::domain::Reason;
use crate::domain::{Conversation, Queue, Representative, RoutingAction};
use crate::plugins::{PluginHost, PluginSet, PluginStats};
use crate::rules::{RuleError, RuleSet, Source};

pub use backlog::{Backlog, QueueCounts};
pub use candidates::{Candidate, CandidateQuery, Candidates, Excluded, Ranked};
pub use directory::{Directory, Members};

/// What a policy evaluates a batch of targets for.
#[derive(Clone, Copy, Debug)]
pub struct RoutingContext<'a> {
    pub action: RoutingAction,
    pub conversation: &'a Conversation,
    /// Whether excluded targets need their reasons (explain, or a `422`).
    pub explain: bool,
    /// The request's clock (Unix milliseconds): idle time, waiting minutes and opening
    /// hours are measured at it, so one request sees one instant (and tests can set it).
    pub now_ms: i64,
}

/// A policy's answer for one target.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// With `explain`, `parts` says where the score came from (they add up to it);
    /// otherwise it is empty.
    Eligible {
        score: f64,
        parts: Vec<ScorePart>,
    },
    Excluded {
        reasons: Vec<Reason>,
    },
}

impl Verdict {
    /// Eligible with `score`, its parts not asked for.
    pub fn eligible(score: f64) -> Self {
        Verdict::Eligible { score, parts: Vec::new() }
    }
}

/// One part of a candidate's score, shown with `explain`: a rank key of a rule that
/// applies, or the adjustment of a rule's plugin. A candidate's parts add up to its score.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ScorePart {
    /// The rule it comes from.
    pub rule: String,
    /// What it measures: a rank key's `by` (`skill`, `skill_match`, `free_capacity`,
    /// `idle_time`, `queue_priority`), or `plugin`.
    #[schema(value_type = String)]
    pub by: &'static str,
    /// The skill, for `by = "skill"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skill: Option<String>,
    /// The plugin, for `by = "plugin"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// The rank key's measure of this target (for `queue_priority`, minus the priority);
    /// absent for a plugin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The rank key's weight; absent for a plugin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// What it added to the score: `weight × value`, or the plugin's adjustment.
    pub points: f64,
}

/// A compiled set of routing rules. Batches let an implementation amortise work per call.
pub trait Policy: Send + Sync + 'static {
    /// The version of the rules in force, recorded in history and candidate answers.
    fn version(&self) -> &str;
    /// One verdict per representative, in the order given.
    fn representatives(&self, ctx: RoutingContext<'_>, reps: &[&Representative]) -> Vec<Verdict>;
    /// One verdict per queue, in the order given.
    fn queues(&self, ctx: RoutingContext<'_>, queues: &[&Queue]) -> Vec<Verdict>;
    /// What a verdict on a representative relies on of its used capacity besides its
    /// version (which covers presence, skills, groups, capacity, ...). A policy that
    /// cannot say relies on the exact figure.
    fn capacity_reliance(&self, _ctx: &RoutingContext<'_>) -> CapacityReliance {
        CapacityReliance::Exact
    }
    /// The compiled rules behind this policy, which the directory in memory evaluates
    /// column-wise; other policies are asked through [`Policy::representatives`].
    fn as_rules(&self) -> Option<&RuleSet> {
        None
    }
}

/// What a verdict on a representative relies on of its used capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapacityReliance {
    /// Nothing: no rule reads it.
    None,
    /// Free capacity of at least this much.
    FreeAtLeast(i64),
    /// The exact figure (a plugin reads it).
    Exact,
}

/// The policy with no rules: every target is eligible with score 0.
#[derive(Debug, Default)]
pub struct Unrestricted;

impl Unrestricted {
    pub const VERSION: &'static str = "empty";
}

impl Policy for Unrestricted {
    fn version(&self) -> &str {
        Self::VERSION
    }

    fn representatives(&self, _: RoutingContext<'_>, reps: &[&Representative]) -> Vec<Verdict> {
        vec![Verdict::eligible(0.0); reps.len()]
    }

    fn queues(&self, _: RoutingContext<'_>, queues: &[&Queue]) -> Vec<Verdict> {
        vec![Verdict::eligible(0.0); queues.len()]
    }

    fn capacity_reliance(&self, _: &RoutingContext<'_>) -> CapacityReliance {
        CapacityReliance::None
    }
}

/// Why the last reload failed.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LastError {
    pub at: String,
    pub message: String,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Every error of the failed reload.
    pub errors: Vec<RuleError>,
}

/// `GET /v1/rules`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RulesStatus {
    pub version: String,
    pub loaded_at: String,
    pub files: Vec<String>,
    /// The rule ids in force, in file order.
    pub rules: Vec<String>,
    /// Each loaded plugin with its SHA-256 and call and failure counts.
    pub plugins: Vec<PluginStats>,
    pub last_error: Option<LastError>,
    /// Successful reloads since the daemon started.
    pub reloads: u64,
}

struct Snapshot {
    policy: Arc<Box<dyn Policy>>,
    /// The rule files the policy was compiled from (none for a fixed policy).
    sources: Arc<Vec<Source>>,
    /// Each rule file's name and a digest of its content.
    files: Vec<(String, String)>,
    rules: Vec<String>,
    plugins: PluginSet,
    loaded_at: String,
}

impl Snapshot {
    fn of(rules: RuleSet, sources: Vec<Source>, plugins: PluginSet) -> Self {
        let files = rules.file_digests().to_vec();
        let ids = rules.rules().iter().map(|r| r.id.clone()).collect();
        Self {
            policy: Arc::new(Box::new(rules)),
            sources: Arc::new(sources),
            files,
            rules: ids,
            plugins,
            loaded_at: crate::clock::now().0,
        }
    }

    fn file_names(&self) -> Vec<String> {
        self.files.iter().map(|(name, _)| name.clone()).collect()
    }

    fn fixed(policy: Box<dyn Policy>) -> Self {
        Self {
            policy: Arc::new(policy),
            sources: Arc::new(Vec::new()),
            files: Vec::new(),
            rules: Vec::new(),
            plugins: PluginSet::default(),
            loaded_at: crate::clock::now().0,
        }
    }
}

/// Where the rules and plugins come from.
pub struct Sources {
    pub rules_dir: PathBuf,
    pub plugins_dir: PathBuf,
    pub host: Arc<PluginHost>,
}

impl Sources {
    /// Loads the plugins (reusing unchanged ones of `previous`), then the rules; every
    /// error of both at once (a plugin that fails to load does not hide the rules' errors).
    fn load(&self, previous: Option<&PluginSet>) -> Result<(RuleSet, Vec<Source>, PluginSet), Vec<RuleError>> {
        let (plugins, plugin_errors) = self.host.load_dir(&self.plugins_dir, previous);
        let mut errors: Vec<RuleError> = plugin_errors
            .into_iter()
            .map(|e| RuleError {
                file: self.plugins_dir.join(format!("{}.wasm", e.name)).display().to_string(),
                line: 1,
                column: 1,
                message: e.to_string(),
            })
            .collect();
        match crate::rules::load_dir_with_sources(&self.rules_dir, &plugins) {
            Ok((rules, sources)) if errors.is_empty() => Ok((rules, sources, plugins)),
            Ok(_) => Err(errors),
            Err(rule_errors) => {
                errors.extend(rule_errors);
                Err(errors)
            }
        }
    }
}

/// The rules in force, swapped atomically as a whole.
pub struct Routing {
    sources: Option<Sources>,
    current: ArcSwap<Snapshot>,
    last_error: Mutex<Option<LastError>>,
    /// Serialises reloads (compilation is synchronous; the lock is never held across `.await`).
    reloading: Mutex<()>,
    /// Successful reloads since start.
    reloads: std::sync::atomic::AtomicU64,
}

impl Routing {
    /// Loads the plugins and rules; every error of the file set when they are invalid.
    pub fn load(sources: Sources) -> Result<Self, Vec<RuleError>> {
        let (rules, files, plugins) = sources.load(None)?;
        Ok(Self::with(Some(sources), Snapshot::of(rules, files, plugins)))
    }

    /// A fixed policy with no rules folder (tests, tools).
    pub fn fixed(policy: Box<dyn Policy>) -> Self {
        Self::with(None, Snapshot::fixed(policy))
    }

    fn with(sources: Option<Sources>, snapshot: Snapshot) -> Self {
        Self {
            sources,
            current: ArcSwap::from_pointee(snapshot),
            last_error: Mutex::new(None),
            reloading: Mutex::new(()),
            reloads: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The snapshot a request uses from start to end.
    pub fn snapshot(&self) -> Arc<Box<dyn Policy>> {
        self.current.load().policy.clone()
    }

    /// The version in force and the rule files it was compiled from (none for a fixed
    /// policy), to keep beside the decisions made under it.
    pub fn rule_files(&self) -> (String, Arc<Vec<Source>>) {
        let s = self.current.load();
        (s.policy.version().to_owned(), s.sources.clone())
    }

    /// The plugins in force (to evaluate another rule set with them: `switchboard replay`).
    pub fn plugins(&self) -> PluginSet {
        self.current.load().plugins.clone()
    }

    /// Puts `policy` in force (tests and embedders; rule files go through [`Routing::reload`]).
    pub fn replace(&self, policy: Box<dyn Policy>) {
        self.current.store(Arc::new(Snapshot::fixed(policy)));
    }

    /// Reads, validates and compiles the rules folder, then swaps the new rules in. On
    /// failure the rules in force stay and `last_error` says why.
    pub fn reload(&self) -> Result<RulesStatus, Vec<RuleError>> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sources) = &self.sources else {
            return Ok(self.status());
        };
        let current = self.current.load_full();
        match sources.load(Some(&current.plugins)) {
            Ok((rules, files, plugins)) => {
                let old = current.policy.version().to_owned();
                let snapshot = Snapshot::of(rules, files, plugins);
                let new = snapshot.policy.version().to_owned();
                if new == old {
                    tracing::debug!(version = %new, "rules reloaded, unchanged");
                } else {
                    // `switchboard_rules_version_info` is rendered from the snapshot at
                    // each scrape (http/meta.rs): one series, never one per version.
                    log_changes(&current, &snapshot);
                }
                self.current.store(Arc::new(snapshot));
                self.reloads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                metrics::counter!("switchboard_rule_reloads_total", "outcome" => "ok").increment(1);
                Ok(self.status())
            }
            Err(errors) => {
                for e in &errors {
                    tracing::warn!("rules not reloaded: {e}");
                }
                let first = errors.first();
                let last = LastError {
                    at: crate::clock::now().0,
                    message: first.map_or_else(String::new, |e| e.message.clone()),
                    file: first.map(|e| e.file.clone()),
                    line: first.map(|e| e.line),
                    column: first.map(|e| e.column),
                    errors: errors.clone(),
                };
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(last);
                metrics::counter!("switchboard_rule_reloads_total", "outcome" => "error").increment(1);
                Err(errors)
            }
        }
    }

    pub fn status(&self) -> RulesStatus {
        let s = self.current.load();
        RulesStatus {
            version: s.policy.version().to_owned(),
            loaded_at: s.loaded_at.clone(),
            files: s.file_names(),
            rules: s.rules.clone(),
            plugins: s.plugins.iter().map(|p| p.stats()).collect(),
            last_error: self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            reloads: self.reloads.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// Logs what a reload changed: rule files, rules and plugins.
fn log_changes(old: &Snapshot, new: &Snapshot) {
    let diff = |a: &[String], b: &[String]| -> Vec<String> { b.iter().filter(|x| !a.contains(x)).cloned().collect() };
    let plugins =
        |s: &Snapshot| -> Vec<String> { s.plugins.iter().map(|p| format!("{}@{}", p.name, &p.sha256[..12])).collect() };
    let (old_plugins, new_plugins) = (plugins(old), plugins(new));
    tracing::info!(
        from = %old.policy.version(),
        to = %new.policy.version(),
        files_added = ?diff(&old.file_names(), &new.file_names()),
        files_changed = ?new
            .files
            .iter()
            .filter(|(name, digest)| old.files.iter().any(|(n, d)| n == name && d != digest))
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>(),
        files_removed = ?diff(&new.file_names(), &old.file_names()),
        rules_added = ?diff(&old.rules, &new.rules),
        rules_removed = ?diff(&new.rules, &old.rules),
        plugins_loaded = ?diff(&old_plugins, &new_plugins),
        plugins_dropped = ?diff(&new_plugins, &old_plugins),
        "rules reloaded"
    );
}

impl Default for Routing {
    fn default() -> Self {
        Self::fixed(Box::new(Unrestricted))
    }
}

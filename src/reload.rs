//! Reloading rules and plugins while the daemon serves.
//!
//! Three sources ask for a reload: a watcher on `rules_dir` and `plugins_dir`, SIGHUP,
//! and `POST /v1/rules/reload`. All three send a [`Request`] to one reload task, which
//! coalesces what is queued, builds and validates a whole new snapshot off the async
//! workers ([`Routing::reload`]), and swaps it in atomically; a failure keeps the
//! snapshot in force and records why. The watcher only watches: it debounces bursts of
//! editor saves and sends a request; it never reloads itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::routing::{Routing, RulesStatus};
use crate::rules::RuleError;

/// Saves within this long of each other make one reload.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

/// Why a reload was asked for; an API request waits for the outcome.
#[derive(Debug)]
pub enum Request {
    FilesChanged,
    Signal,
    Api(oneshot::Sender<Result<RulesStatus, Vec<RuleError>>>),
}

/// The handle that sends reload requests to the reload task.
#[derive(Clone, Debug)]
pub struct Reloader {
    tx: mpsc::UnboundedSender<Request>,
}

impl Reloader {
    /// Reloads now and waits for the outcome (`POST /v1/rules/reload`).
    pub async fn reload(&self) -> Option<Result<RulesStatus, Vec<RuleError>>> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Request::Api(reply)).ok()?;
        answer.await.ok()
    }

    pub fn request(&self, why: Request) {
        let _ = self.tx.send(why);
    }
}

/// What runs after each successful reload, with the version now in force (it records the
/// reload in the change feed), before the API's request for it is answered.
pub type OnReloaded =
    Box<dyn Fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync>;

/// Starts the reload task (on the current tokio runtime).
pub fn spawn(routing: Arc<Routing>, on_reloaded: OnReloaded) -> Reloader {
    let (tx, mut rx) = mpsc::unbounded_channel::<Request>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            // Everything queued meanwhile is served by the same reload.
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            let why: Vec<&str> = batch
                .iter()
                .map(|r| match r {
                    Request::FilesChanged => "files changed",
                    Request::Signal => "SIGHUP",
                    Request::Api(_) => "API",
                })
                .collect();
            tracing::debug!(reasons = ?why, "reloading rules and plugins");
            let routing = routing.clone();
            let outcome = tokio::task::spawn_blocking(move || routing.reload()).await;
            let outcome = match outcome {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!(error = %e, "the reload task panicked; the rules in force stay");
                    continue;
                }
            };
            if let Ok(status) = &outcome {
                on_reloaded(status.version.clone()).await;
            }
            for r in batch {
                if let Request::Api(reply) = r {
                    let _ = reply.send(outcome.clone());
                }
            }
        }
    });
    Reloader { tx }
}

/// Whether a change to `path` can matter: editor swap, backup and lock files do not.
pub fn relevant(path: &Path) -> bool {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy()) else { return true };
    !(name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".tmp")
        || name.starts_with(".#")
        || (name.starts_with('.') && !name.starts_with("..")))
}

/// A burst of changes ends when the folders have been quiet this long...
pub const QUIET: Duration = DEBOUNCE;
/// ...or, for changes that never stop, after this long.
pub const MAX_WAIT: Duration = Duration::from_millis(500);

/// Turns pokes into reload requests: one per burst, sent once the burst is over.
pub async fn debounce(mut pokes: mpsc::UnboundedReceiver<()>, reloader: Reloader) {
    while pokes.recv().await.is_some() {
        let started = tokio::time::Instant::now();
        loop {
            let left = MAX_WAIT.saturating_sub(started.elapsed());
            match tokio::time::timeout(QUIET.min(left), pokes.recv()).await {
                Ok(Some(())) if !left.is_zero() => continue,
                Ok(None) => {
                    reloader.request(Request::FilesChanged);
                    return;
                }
                _ => break,
            }
        }
        reloader.request(Request::FilesChanged);
    }
}

/// Watches `dirs` and asks `reloader` for a reload after each burst of relevant changes
/// (reads, such as the reload's own, are not changes). Stops when the [`Watch`] is dropped.
///
/// A folder that does not exist (yet, or any more) is waited for: its nearest existing
/// parent is watched instead, one level closer each time a level appears, and once the
/// folder is there it is watched and a reload is asked for.
pub fn watch(dirs: &[PathBuf], reloader: Reloader) -> anyhow::Result<Watch> {
    let (poke, pokes) = mpsc::unbounded_channel();
    let (moved, mut moves) = mpsc::unbounded_channel::<()>();
    let targets = dirs.to_vec();
    let content_poke = poke.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        Ok(e) => {
            if matches!(e.kind, notify::EventKind::Access(_)) {
                return;
            }
            let (structure, content) = classify(&targets, &e.paths);
            if structure {
                let _ = moved.send(());
            }
            if content {
                let _ = content_poke.send(());
            }
        }
        Err(e) => tracing::warn!(error = %e, "watching the rules and plugins folders failed"),
    })?;
    let mut watched = Watched { watcher, dirs: dirs.to_vec(), on: vec![None; dirs.len()] };
    watched.reconcile();
    let shared = Arc::new(std::sync::Mutex::new(watched));
    let weak = Arc::downgrade(&shared);
    tokio::spawn(debounce(pokes, reloader));
    // Follows folders appearing and disappearing. Ends with the watcher, which owns the
    // sender of `moves`.
    tokio::spawn(async move {
        while moves.recv().await.is_some() {
            while moves.try_recv().is_ok() {}
            let Some(shared) = weak.upgrade() else { return };
            let appeared = shared.lock().unwrap_or_else(|e| e.into_inner()).reconcile();
            if appeared {
                let _ = poke.send(());
            }
        }
    });
    Ok(Watch { _watched: shared })
}

/// The file watcher; dropping it stops watching.
pub struct Watch {
    _watched: Arc<std::sync::Mutex<Watched>>,
}

/// Which of `paths` (from one event) matter: `structure` when one is a watched folder
/// or a parent of one (it may have appeared or gone), `content` when one is a
/// relevant file inside a watched folder, or the folder itself. An event without paths
/// (the watcher lost track) is both.
fn classify(dirs: &[PathBuf], paths: &[PathBuf]) -> (bool, bool) {
    if paths.is_empty() {
        return (true, true);
    }
    let structure = paths.iter().any(|p| dirs.iter().any(|d| d.starts_with(p)));
    let content = paths.iter().any(|p| dirs.iter().any(|d| p.starts_with(d)) && relevant(p));
    (structure, content)
}

/// The folder itself if it exists, else its nearest existing parent.
fn nearest_existing(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().find(|a| !a.as_os_str().is_empty() && a.is_dir()).map(Path::to_path_buf)
}

/// What is watched for each folder: itself, or the parent it is waited for in.
struct Watched {
    watcher: notify::RecommendedWatcher,
    dirs: Vec<PathBuf>,
    on: Vec<Option<PathBuf>>,
}

impl Watched {
    /// Moves each folder's watch to the folder or its nearest existing parent. True when
    /// a folder that was not watched is now.
    fn reconcile(&mut self) -> bool {
        use notify::Watcher;
        let mut appeared = false;
        for i in 0..self.dirs.len() {
            // A folder can appear or go while its watch moves: look again, a few times.
            for _ in 0..8 {
                let want = nearest_existing(&self.dirs[i]);
                if want == self.on[i] {
                    break;
                }
                if let Some(old) = self.on[i].take()
                    && !self.on.contains(&Some(old.clone()))
                {
                    // Fails when the folder is gone, which removed its watch already.
                    let _ = self.watcher.unwatch(&old);
                }
                let Some(path) = want else { break };
                if !self.on.contains(&Some(path.clone()))
                    && let Err(e) = self.watcher.watch(&path, notify::RecursiveMode::NonRecursive)
                {
                    tracing::warn!(dir = %path.display(), error = %e, "cannot watch the folder");
                    break;
                }
                if path == self.dirs[i] {
                    tracing::info!(dir = %path.display(), "watching for changes");
                    appeared = true;
                } else {
                    tracing::info!(
                        dir = %self.dirs[i].display(),
                        parent = %path.display(),
                        "the folder does not exist: watching its parent until it appears"
                    );
                }
                self.on[i] = Some(path);
            }
        }
        appeared
    }
}

/// Asks for a reload on every SIGHUP.
pub fn on_sighup(reloader: Reloader) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading rules and plugins");
            reloader.request(Request::Signal);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(rx: &mut mpsc::UnboundedReceiver<Request>) -> usize {
        std::iter::from_fn(|| rx.try_recv().ok()).count()
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_one_request_once_quiet() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (poke, pokes) = mpsc::unbounded_channel();
        tokio::spawn(debounce(pokes, Reloader { tx }));
        for _ in 0..20 {
            poke.send(()).unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(count(&mut rx), 0, "nothing while the burst goes on");
        tokio::time::sleep(QUIET * 2).await;
        assert_eq!(count(&mut rx), 1);
        tokio::time::sleep(QUIET * 4).await;
        assert_eq!(count(&mut rx), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn endless_changes_still_reload_every_max_wait() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (poke, pokes) = mpsc::unbounded_channel();
        tokio::spawn(debounce(pokes, Reloader { tx }));
        for _ in 0..250 {
            poke.send(()).unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let n = count(&mut rx);
        assert!((4..=6).contains(&n), "{n} reloads in 2.5 s of constant changes");
    }

    #[test]
    fn events_on_parents_are_structure_and_inside_are_content() {
        let dirs = [PathBuf::from("/srv/sb/rules"), PathBuf::from("/srv/sb/plugins/dist")];
        let at = |p: &str| classify(&dirs, &[PathBuf::from(p)]);
        assert_eq!(at("/srv/sb/plugins"), (true, false), "a parent appeared");
        assert_eq!(at("/srv/sb/plugins/dist"), (true, true), "the folder appeared or went");
        assert_eq!(at("/srv/sb/plugins/dist/vip.wasm"), (false, true));
        assert_eq!(at("/srv/sb/rules/.vip.toml.swp"), (false, false));
        assert_eq!(at("/srv/sb/switchboard.db-wal"), (false, false), "a sibling in a watched parent");
        assert_eq!(at("/srv/sb/plugins/other"), (false, false));
        assert_eq!(classify(&dirs, &[]), (true, true));
    }

    #[test]
    fn the_nearest_existing_folder() {
        let root = tempfile::tempdir().unwrap();
        let dist = root.path().join("plugins/dist");
        assert_eq!(nearest_existing(&dist).as_deref(), Some(root.path()));
        std::fs::create_dir(root.path().join("plugins")).unwrap();
        assert_eq!(nearest_existing(&dist), Some(root.path().join("plugins")));
        std::fs::create_dir(&dist).unwrap();
        assert_eq!(nearest_existing(&dist), Some(dist));
    }

    #[test]
    fn editor_files_are_not_relevant() {
        for (name, want) in [
            ("rules/vip.toml", true),
            ("rules/..data", true),
            ("rules/..2026_11_23_10_00_00.123", true),
            ("plugins/vip.wasm", true),
            ("rules/.vip.toml.swp", false),
            ("rules/vip.toml~", false),
            ("rules/.#vip.toml", false),
            ("rules/4913", true),
            ("plugins/.vip.wasm.tmp.123", false),
        ] {
            assert_eq!(relevant(Path::new(name)), want, "{name}");
        }
    }
}

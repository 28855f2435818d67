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
/// (reads, such as the reload's own, are not changes). Stops when the watcher is dropped.
pub fn watch(dirs: &[PathBuf], reloader: Reloader) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let (poke, pokes) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        Ok(e) => {
            let change = !matches!(e.kind, notify::EventKind::Access(_));
            if change && (e.paths.is_empty() || e.paths.iter().any(|p| relevant(p))) {
                let _ = poke.send(());
            }
        }
        Err(e) => tracing::warn!(error = %e, "watching the rules and plugins folders failed"),
    })?;
    tokio::spawn(debounce(pokes, reloader));
    for dir in dirs {
        if dir.is_dir() {
            watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
            tracing::info!(dir = %dir.display(), "watching for changes");
        } else {
            tracing::warn!(
                dir = %dir.display(),
                "not watching a folder that does not exist; SIGHUP or POST /v1/rules/reload after creating it"
            );
        }
    }
    Ok(watcher)
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

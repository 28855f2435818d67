//! Start-up and shutdown: open the store, load demo data, bind, serve until a signal.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::{AppState, router};
use crate::plugins::PluginHost;
use crate::routing::{Routing, Sources};
use crate::service::Supervisor;

/// The rule files are invalid: every error, one per line.
#[derive(Debug)]
pub struct RulesInvalid(pub Vec<crate::rules::RuleError>);

impl std::fmt::Display for RulesInvalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "the routing rules are invalid ({} errors):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RulesInvalid {}

/// Where the rules and plugins of `config` come from, with the plugin engine.
pub fn sources(config: &Config) -> anyhow::Result<Sources> {
    let host =
        PluginHost::new(config.plugin_limits, Some(&config.plugin_cache)).context("starting the plugin engine")?;
    Ok(Sources { rules_dir: config.rules_dir.clone(), plugins_dir: config.plugins_dir.clone(), host })
}

/// Everything the daemon runs on, built from its configuration.
pub async fn build(config: &Config) -> anyhow::Result<AppState> {
    let store = crate::store::open(&config.database, &config.base)
        .await
        .with_context(|| format!("opening the database `{}`", config.database))?;
    let sources = sources(config)?;
    // Loading plugins runs guest code, which must not block the async workers.
    let routing = tokio::task::spawn_blocking(move || Routing::load(sources))
        .await
        .context("loading the routing rules")?
        .map_err(RulesInvalid)?;
    tracing::info!(version = %routing.status().version, files = routing.status().files.len(), "routing rules loaded");
    let routing = Arc::new(routing);
    let supervisor = Arc::new(Supervisor::start(store.clone(), routing.clone()).await?);
    if let Some(seed) = &config.seed
        && store.is_empty().await?
    {
        let n = crate::seed::load(&supervisor, seed).await?;
        tracing::info!(records = n, file = %seed.display(), "loaded demo data into the empty database");
    }
    // The rule files in force, kept beside the decisions made under them; old decision
    // records are forgotten hourly.
    supervisor.record_ruleset().await;
    let purger = Arc::downgrade(&supervisor);
    let retention = config.decision_retention;
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            every.tick().await;
            let Some(supervisor) = purger.upgrade() else { return };
            supervisor.purge_decisions(retention).await;
        }
    });
    // Other daemons' writes reach this one's routing state through the change feed.
    supervisor.follow();
    let recorder = Arc::downgrade(&supervisor);
    let reloader = crate::reload::spawn(
        routing,
        Box::new(move |version| {
            let recorder = recorder.clone();
            Box::pin(async move {
                if let Some(supervisor) = recorder.upgrade() {
                    supervisor.rules_reloaded(version).await;
                }
            })
        }),
    );
    crate::reload::on_sighup(reloader.clone());
    let watcher: Option<Arc<dyn std::any::Any + Send + Sync>> = if config.watch {
        let dirs = [config.rules_dir.clone(), config.plugins_dir.clone()];
        let watcher = crate::reload::watch(&dirs, reloader.clone()).context("watching the rules and plugins")?;
        Some(Arc::new(watcher))
    } else {
        None
    };
    Ok(AppState::new(supervisor, config.tokens.clone(), reloader, watcher).with_limits(config.server_limits))
}

/// The address in the daemon's "listening on ADDR" log line, for whoever starts it as a
/// child process on port 0 (`switchboard bench`, the tests) and must learn its port.
pub fn listening_address(log_line: &str) -> Option<&str> {
    log_line.split_once("listening on ").map(|(_, addr)| addr.trim())
}

/// Serves on `listener` until `shutdown` completes, then finishes requests in flight
/// (for at most the state's `shutdown_timeout_ms`).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let limits = state.limits;
    // `listening_address` parses this line: keep the two together.
    tracing::info!("listening on {addr}");
    crate::http::serve(listener, router(state), limits, shutdown).await;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is called, not
/// when the future is first polled: call it before announcing the address, so a SIGTERM
/// sent right after `listening on` stops the daemon gracefully instead of killing it.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
                match s {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            let (term, int) = signals;
            tokio::select! {
                () = wait(term) => {},
                () = wait(int) => {},
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!("shutting down: finishing requests in flight");
    }
}

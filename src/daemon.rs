//! Start-up and shutdown: open the store, load demo data, bind, serve until a signal.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::{AppState, router};
use crate::routing::Routing;
use crate::service::Supervisor;

/// Everything the daemon runs on, built from its configuration.
pub async fn build(config: &Config) -> anyhow::Result<AppState> {
    let store = crate::store::open(&config.database, &config.base)
        .with_context(|| format!("opening the database `{}`", config.database))?;
    let supervisor = Arc::new(Supervisor::new(store.clone(), Arc::new(Routing::default())));
    if let Some(seed) = &config.seed
        && store.is_empty().await?
    {
        let n = crate::seed::load(&supervisor, seed).await?;
        tracing::info!(records = n, file = %seed.display(), "loaded demo data into the empty database");
    }
    Ok(AppState::new(supervisor, config.tokens.clone()))
}

/// Serves on `listener` until `shutdown` completes, then finishes requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!("listening on {addr}");
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

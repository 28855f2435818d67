//! The HTTP API (contract v1) on axum: routing, authentication, errors, metrics.
//!
//! Handlers are thin: extract, call one [`Supervisor`] method, map the result.

mod bulk;
mod changes;
mod conversations;
mod directory;
mod distribute;
mod error;
mod extract;
mod me;
mod meta;
pub mod openapi;
mod query;
mod rules;
mod server;
mod stats;
mod web;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use error::{ApiError, Problem};
pub use server::{SPARE, ServerLimits, serve};

use crate::auth::Tokens;
use crate::reload::Reloader;
use crate::service::Outcome;
use crate::service::Supervisor;

/// The body limit of the contract: 1 MiB.
pub const BODY_LIMIT: usize = 1 << 20;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub supervisor: Arc<Supervisor>,
    pub tokens: Arc<Tokens>,
    pub reloader: Reloader,
    /// Timeouts and connection limits of the server.
    pub limits: ServerLimits,
    metrics: PrometheusHandle,
    /// Keeps the file watcher alive as long as any state does.
    _watcher: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl AppState {
    pub fn new(
        supervisor: Arc<Supervisor>,
        tokens: Tokens,
        reloader: Reloader,
        watcher: Option<Arc<dyn std::any::Any + Send + Sync>>,
    ) -> Self {
        Self {
            supervisor,
            tokens: Arc::new(tokens),
            reloader,
            limits: ServerLimits::default(),
            metrics: metrics_handle(),
            _watcher: watcher,
        }
    }

    /// The same state, served within `limits`.
    pub fn with_limits(self, limits: ServerLimits) -> Self {
        Self { limits, ..self }
    }
}

/// The process-wide Prometheus recorder (installed once, shared by every router).
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
            let plugin_calls = Matcher::Full(crate::plugins::CALL_DURATION_METRIC.to_owned());
            let builder = PrometheusBuilder::new()
                .set_buckets(&buckets)
                .and_then(|b| b.set_buckets_for_metric(plugin_calls, &crate::plugins::CALL_DURATION_BUCKETS))
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            handle
        })
        .clone()
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let request_timeout = state.limits.request_timeout();
    let v1 = Router::new()
        .route("/v1/conversations", get(conversations::list).post(conversations::create))
        .route("/v1/conversations/bulk", post(bulk::bulk))
        .route("/v1/conversations/{id}", get(conversations::get))
        .route("/v1/conversations/{id}/history", get(conversations::history))
        .route("/v1/conversations/{id}/candidates", get(conversations::candidates))
        .route("/v1/conversations/{id}/assign", post(conversations::assign))
        .route("/v1/conversations/{id}/transfer", post(conversations::transfer))
        .route("/v1/conversations/{id}/release", post(conversations::release))
        .route("/v1/conversations/{id}/remove", post(conversations::remove))
        .route("/v1/conversations/{id}/events", post(conversations::event))
        .route("/v1/representatives", get(directory::list_representatives))
        .route(
            "/v1/representatives/{id}",
            get(directory::get_representative)
                .put(directory::put_representative)
                .patch(directory::patch_representative),
        )
        .route("/v1/changes", get(changes::list))
        .route("/v1/changes/stream", get(changes::stream))
        .route("/v1/rules", get(rules::status))
        .route("/v1/rules/reload", post(rules::reload))
        .route("/v1/queues", get(directory::list_queues))
        .route("/v1/queues/{id}/stats", get(stats::queue))
        .route("/v1/queues/{id}/distribute", post(distribute::distribute))
        .route("/v1/stats", get(stats::all))
        .route("/v1/me", get(me::me))
        .route("/v1/queues/{id}", get(directory::get_queue).put(directory::put_queue).patch(directory::patch_queue));
    Router::new()
        .merge(v1)
        .route("/healthz", get(meta::healthz))
        .route("/metrics", get(meta::metrics))
        .route("/openapi.json", get(meta::openapi))
        .route("/", get(web::page))
        .route("/assets/{file}", get(web::asset))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(request_timeout, deadline))
        .layer(middleware::from_fn(track))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path())
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such path (see /openapi.json for the API)")
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// Answers `503 timeout` when the server takes longer than `request_timeout_ms` to
/// answer. The handler is dropped: a write it had handed to the store may still commit.
async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::timeout(limit).into_response(),
    }
}

/// Counts requests by route and status, and their latency.
async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}

/// `{"items": [...], "next_cursor": ...}`, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListView<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> From<crate::domain::Page<T>> for ListView<T> {
    fn from(page: crate::domain::Page<T>) -> Self {
        Self { items: page.items, next_cursor: page.next.map(query::cursor) }
    }
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "serialising a response failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// A write's answer: `201` with `Location` when it created something, `ETag` on conversations.
fn outcome_response(outcome: Outcome) -> Response {
    let (mut response, location, created) = match &outcome {
        Outcome::Conversation { conversation, created } => {
            let mut r = json(status_for(*created), conversation);
            r.headers_mut().insert(header::ETAG, etag(conversation.version));
            (r, format!("/v1/conversations/{}", conversation.id), *created)
        }
        Outcome::Representative { representative, created } => {
            (json(status_for(*created), representative), format!("/v1/representatives/{}", representative.id), *created)
        }
        Outcome::Queue { queue, created } => {
            (json(status_for(*created), queue), format!("/v1/queues/{}", queue.id), *created)
        }
        Outcome::Rules { version } => {
            (json(StatusCode::OK, &serde_json::json!({ "version": version })), String::new(), false)
        }
        Outcome::Bulk { items } => (bulk::view(items.clone()), String::new(), false),
        Outcome::Distribution(d) => (json(StatusCode::OK, d), String::new(), false),
    };
    if created && let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

fn status_for(created: bool) -> StatusCode {
    if created { StatusCode::CREATED } else { StatusCode::OK }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test(start_paused = true)]
    async fn a_handler_slower_than_the_request_timeout_is_503_timeout() {
        let app = Router::new()
            .route(
                "/",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "late"
                }),
            )
            .layer(middleware::from_fn_with_state(Duration::from_secs(2), deadline));
        let started = tokio::time::Instant::now();
        let response = app.oneshot(Request::new(axum::body::Body::empty())).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let problem: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(problem["code"], "timeout");
        assert!(problem["detail"].as_str().unwrap().contains("2000 ms"), "{problem}");
    }
}

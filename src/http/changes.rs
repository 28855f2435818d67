//! `/v1/changes`: the change feed, as pages and as a server-sent event stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::extract::{Authed, Read};
use super::query::{Param, QueryParams};
use super::{ApiError, AppState, Problem, json};
use crate::store::Change;

const FEED_PARAMS: [Param; 2] = [Param("after", false), Param("limit", false)];
const STREAM_PARAMS: [Param; 1] = [Param("after", false)];
/// A comment line on an idle stream this often keeps proxies from closing it.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Items read from the store per step of a stream.
const STREAM_BATCH: usize = 500;

/// A page of the change feed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ChangesPage {
    pub items: Vec<Change>,
    /// The `after` of the next page (equals `after` when the page is empty).
    pub next_after: u64,
    /// The last position the daemon knew of when it answered (an addition to the
    /// contract): a client that has just read the state it shows follows the stream
    /// from here (`?after=head`) instead of reading the whole feed first.
    pub head: u64,
}

/// A position as a client sends it: a non-negative integer the store can hold (≤ 2⁶³−1).
fn position(text: &str) -> Option<u64> {
    text.parse::<u64>().ok().filter(|p| i64::try_from(*p).is_ok())
}

fn after(q: &QueryParams) -> Result<u64, ApiError> {
    q.one("after")
        .map(|v| {
            position(v).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid value `{v}` for query parameter `after` (expected a non-negative integer: a position)"
                ))
            })
        })
        .transpose()
        .map(|a| a.unwrap_or(0))
}

/// Changes after a position, in position order: every conversation event, every
/// create or change of a representative or queue, every rules reload.
#[utoipa::path(get, path = "/v1/changes", tag = "changes",
    params(("after" = Option<u64>, Query, maximum = 9223372036854775807_u64, description = "A position; the page starts after it (default 0)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1-1000, default 100")),
    responses((status = 200, body = ChangesPage), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list(
    _auth: Authed<Read>,
    State(app): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(raw.as_deref(), &[&FEED_PARAMS])?;
    let after = after(&q)?;
    let limit = q.limit()?.unwrap_or(100);
    // Committed changes only: a client's read after this answer shows every change up to it.
    let head = app.supervisor.feed_head();
    let items = app.supervisor.changes(after, limit).await?;
    let next_after = items.last().map_or(after, |c| c.position);
    Ok(json(StatusCode::OK, &ChangesPage { items, next_after, head: head.max(next_after) }))
}

/// The change feed as server-sent events (`id:` position, `event:` kind, `data:` the
/// item), resuming after `Last-Event-ID`, else `?after=`, else from the start.
#[utoipa::path(get, path = "/v1/changes/stream", tag = "changes",
    params(("after" = Option<u64>, Query, description = "A position; the stream starts after it (Last-Event-ID wins)"),
        ("Last-Event-ID" = Option<u64>, Header, description = "The last position received")),
    responses((status = 200, description = "Server-sent events, one per change", content_type = "text/event-stream"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn stream(
    _auth: Authed<Read>,
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(raw.as_deref(), &[&STREAM_PARAMS])?;
    let mut position = after(&q)?;
    if let Some(last) = headers.get("last-event-id") {
        let text = last.to_str().unwrap_or("");
        position = self::position(text.trim()).ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid `Last-Event-ID` header `{text}` (expected the `id` of the last event received: a position)"
            ))
        })?;
    }
    let supervisor = app.supervisor.clone();
    let mut tip = supervisor.feed_watch();
    let events = async_stream(move |tx| async move {
        loop {
            let items = match supervisor.changes(position, STREAM_BATCH).await {
                Ok(items) => items,
                Err(e) => {
                    // The client reconnects with Last-Event-ID and resumes.
                    tracing::warn!(error = %e, "a change stream ended: reading the feed failed");
                    return;
                }
            };
            let full = items.len() == STREAM_BATCH;
            for item in items {
                position = item.position;
                let data = serde_json::to_string(&item).unwrap_or_default();
                let event = Event::default().id(item.position.to_string()).event(item.kind.as_str()).data(data);
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            if !full {
                // Wait for a commit here or, on a shared database, the follower's read;
                // poll now and then all the same (another daemon's write on SQLite
                // cannot happen, on PostgreSQL the follower brings it).
                let _ = tokio::time::timeout(Duration::from_secs(1), tip.changed()).await;
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response())
}

/// A stream fed by a task: ends when the task ends or the client goes.
fn async_stream<F, Fut>(run: F) -> impl futures_util::Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Event, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(run(tx));
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

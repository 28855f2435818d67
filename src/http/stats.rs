//! Queue statistics (any role): `GET /v1/queues/{id}/stats` and `GET /v1/stats`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::extract::{Authed, NoQuery, PathId, Read};
use super::{ApiError, AppState, Problem, json};
use crate::service::{QueueStats, Stats};

/// A queue's conversations by status, its oldest open one and its members.
#[utoipa::path(get, path = "/v1/queues/{id}/stats", tag = "queues",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")),
    responses((status = 200, body = QueueStats), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn queue(
    _auth: Authed<Read>,
    State(app): State<AppState>,
    no_query: NoQuery,
    id: PathId,
) -> Result<Response, ApiError> {
    no_query.check()?;
    Ok(json(StatusCode::OK, &app.supervisor.queue_stats(&id.get()?)?))
}

/// The statistics of every queue, in id order.
#[utoipa::path(get, path = "/v1/stats", tag = "queues",
    responses((status = 200, body = Stats), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn all(_auth: Authed<Read>, State(app): State<AppState>, no_query: NoQuery) -> Result<Response, ApiError> {
    no_query.check()?;
    Ok(json(StatusCode::OK, &app.supervisor.stats()))
}

//! `/v1/representatives` and `/v1/queues`: the directory integrations keep in sync.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::extract::{ApiJson, Authed, Integrate, NoQuery, PathId, Read, WriteParts};
use super::query::{PAGING, Param, QueryParams};
use super::{ApiError, AppState, ListView, Problem, json, outcome_response};
use crate::domain::{Queue, QueueFilter, QueueInput, Representative, RepresentativeFilter, RepresentativeInput};
use crate::domain::{QueuePatch, RepresentativePatch};

/// A PATCH body: no `null` values (a field is either replaced or left out).
fn no_nulls(canonical: &str) -> Result<(), ApiError> {
    let value: serde_json::Value = serde_json::from_str(canonical).unwrap_or_default();
    if let Some((key, _)) = value.as_object().and_then(|m| m.iter().find(|(_, v)| v.is_null())) {
        return Err(ApiError::bad_request(format!(
            "field `{key}` is null; a PATCH replaces the fields it gives, so leave out the ones to keep"
        )));
    }
    Ok(())
}

/// Creates (`201`) or replaces (`200`) a representative.
#[utoipa::path(put, path = "/v1/representatives/{id}", tag = "directory",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"), ("Idempotency-Key" = Option<String>, Header)),
    request_body = RepresentativeInput,
    responses((status = 200, body = Representative), (status = 201, body = Representative),
        (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn put_representative(
    auth: Authed<Integrate>,
    State(app): State<AppState>,
    id: PathId,
    parts: WriteParts,
    body: ApiJson<RepresentativeInput>,
) -> Result<Response, ApiError> {
    parts.check_query()?;
    let id = id.get()?;
    let idem = parts.idempotency(&body.canonical)?;
    Ok(outcome_response(app.supervisor.put_representative(&auth.actor, idem, id, body.value).await?))
}

/// Replaces the given top-level fields of a representative; the others stay.
#[utoipa::path(patch, path = "/v1/representatives/{id}", tag = "directory",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"), ("Idempotency-Key" = Option<String>, Header)),
    request_body = RepresentativePatch,
    responses((status = 200, body = Representative), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn patch_representative(
    auth: Authed<Integrate>,
    State(app): State<AppState>,
    id: PathId,
    parts: WriteParts,
    body: ApiJson<RepresentativePatch>,
) -> Result<Response, ApiError> {
    parts.check_query()?;
    no_nulls(&body.canonical)?;
    let id = id.get()?;
    let idem = parts.idempotency(&body.canonical)?;
    Ok(outcome_response(app.supervisor.patch_representative(&auth.actor, idem, id, body.value).await?))
}

/// One representative.
#[utoipa::path(get, path = "/v1/representatives/{id}", tag = "directory", params(("id" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")),
    responses((status = 200, body = Representative), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_representative(
    _auth: Authed<Read>,
    State(app): State<AppState>,
    no_query: NoQuery,
    id: PathId,
) -> Result<Response, ApiError> {
    no_query.check()?;
    Ok(json(StatusCode::OK, &app.supervisor.representative(&id.get()?).await?))
}

const REP_LIST_FILTERS: [Param; 5] = [
    Param("name", false),
    Param("queue", false),
    Param("skill", true),
    Param("presence", true),
    Param("user_group", false),
];

/// Representatives, oldest first.
#[utoipa::path(get, path = "/v1/representatives", tag = "directory",
    params(("name" = Option<String>, Query, description = "Case-insensitive substring"),
        ("queue" = Option<String>, Query), ("skill" = Option<Vec<String>>, Query, description = "Repeatable: has all"),
        ("presence" = Option<Vec<String>>, Query, description = "Repeatable: any of"),
        ("user_group" = Option<String>, Query), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = ListView<Representative>), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_representatives(
    _auth: Authed<Read>,
    State(app): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(raw.as_deref(), &[&REP_LIST_FILTERS, &PAGING])?;
    let filter = RepresentativeFilter {
        name: q.text("name"),
        queue: q.id("queue")?,
        skills: q.ids("skill")?,
        presence: q.presences()?,
        user_group: q.id("user_group")?,
        ..RepresentativeFilter::default()
    };
    let page = app.supervisor.representatives(filter, q.page()?).await?;
    Ok(json(StatusCode::OK, &ListView::from(page)))
}

/// Creates (`201`) or replaces (`200`) a queue.
#[utoipa::path(put, path = "/v1/queues/{id}", tag = "directory",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"), ("Idempotency-Key" = Option<String>, Header)),
    request_body = QueueInput,
    responses((status = 200, body = Queue), (status = 201, body = Queue),
        (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn put_queue(
    auth: Authed<Integrate>,
    State(app): State<AppState>,
    id: PathId,
    parts: WriteParts,
    body: ApiJson<QueueInput>,
) -> Result<Response, ApiError> {
    parts.check_query()?;
    let id = id.get()?;
    let idem = parts.idempotency(&body.canonical)?;
    Ok(outcome_response(app.supervisor.put_queue(&auth.actor, idem, id, body.value).await?))
}

/// Replaces the given top-level fields of a queue; the others stay.
#[utoipa::path(patch, path = "/v1/queues/{id}", tag = "directory",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"), ("Idempotency-Key" = Option<String>, Header)),
    request_body = QueuePatch,
    responses((status = 200, body = Queue), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn patch_queue(
    auth: Authed<Integrate>,
    State(app): State<AppState>,
    id: PathId,
    parts: WriteParts,
    body: ApiJson<QueuePatch>,
) -> Result<Response, ApiError> {
    parts.check_query()?;
    no_nulls(&body.canonical)?;
    let id = id.get()?;
    let idem = parts.idempotency(&body.canonical)?;
    Ok(outcome_response(app.supervisor.patch_queue(&auth.actor, idem, id, body.value).await?))
}

/// One queue.
#[utoipa::path(get, path = "/v1/queues/{id}", tag = "directory", params(("id" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")),
    responses((status = 200, body = Queue), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_queue(
    _auth: Authed<Read>,
    State(app): State<AppState>,
    no_query: NoQuery,
    id: PathId,
) -> Result<Response, ApiError> {
    no_query.check()?;
    Ok(json(StatusCode::OK, &app.supervisor.queue(&id.get()?).await?))
}

const QUEUE_LIST_FILTERS: [Param; 3] = [Param("name", false), Param("intent_based", false), Param("priority", false)];

/// Queues, oldest first.
#[utoipa::path(get, path = "/v1/queues", tag = "directory",
    params(("name" = Option<String>, Query, description = "Case-insensitive substring"),
        ("intent_based" = Option<bool>, Query), ("priority" = Option<u32>, Query, format = Int64, maximum = 4294967295.0),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = ListView<Queue>), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_queues(
    _auth: Authed<Read>,
    State(app): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(raw.as_deref(), &[&QUEUE_LIST_FILTERS, &PAGING])?;
    let filter =
        QueueFilter { name: q.text("name"), intent_based: q.bool("intent_based")?, priority: q.u32("priority")? };
    let page = app.supervisor.queues(filter, q.page()?).await?;
    Ok(json(StatusCode::OK, &ListView::from(page)))
}

//! `/v1/rules`: the routing rules in force, and reloading them.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::extract::{Administer, Authed, NoQuery, Read};
use super::{ApiError, AppState, Problem, json};
use crate::routing::RulesStatus;

/// The rules in force: version, files, plugins, and the last reload error.
#[utoipa::path(get, path = "/v1/rules", tag = "rules",
    responses((status = 200, body = RulesStatus), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn status(_auth: Authed<Read>, State(app): State<AppState>, no_query: NoQuery) -> Result<Response, ApiError> {
    no_query.check()?;
    Ok(json(StatusCode::OK, &app.supervisor.routing().status()))
}

/// Loads the rule files now: `200` with the new status, or `422 invalid_rules` with
/// every error (the rules in force unchanged).
#[utoipa::path(post, path = "/v1/rules/reload", tag = "rules",
    responses((status = 200, body = RulesStatus), (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn reload(
    _auth: Authed<Administer>,
    State(app): State<AppState>,
    no_query: NoQuery,
) -> Result<Response, ApiError> {
    no_query.check()?;
    // The reload task serves this together with the watcher's and SIGHUP's requests.
    let result = app.reloader.reload().await.ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the reload task is not running; retry it")
    })?;
    match result {
        Ok(status) => Ok(json(StatusCode::OK, &status)),
        Err(errors) => Err(ApiError::invalid_rules(errors)),
    }
}

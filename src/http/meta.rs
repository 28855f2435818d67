//! Unauthenticated endpoints: health, metrics, the OpenAPI document.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;

/// Health: `200 {"status":"ok"}`, or `503` (problem+json) when the store cannot take
/// writes (its writer stopped), so a supervisor or load balancer replaces the daemon.
#[utoipa::path(get, path = "/healthz", tag = "meta", responses((status = 200, description = "`{\"status\":\"ok\"}`"),
    (status = 503, body = super::Problem, content_type = "application/problem+json", description = "The store cannot take writes")))]
pub async fn healthz(State(app): State<AppState>) -> Response {
    match app.supervisor.store_health() {
        Ok(()) => super::json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
        Err(why) => super::ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why).into_response(),
    }
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "meta", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(app): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))],
        app.metrics.render(),
    )
        .into_response()
}

/// This API's OpenAPI 3 document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", responses((status = 200, description = "OpenAPI 3 document")))]
pub async fn openapi() -> Response {
    super::json(StatusCode::OK, &super::openapi::document())
}

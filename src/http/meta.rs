//! Unauthenticated endpoints: health, metrics, the OpenAPI document.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;

/// Liveness: `{"status":"ok"}`.
#[utoipa::path(get, path = "/healthz", tag = "meta", responses((status = 200, description = "`{\"status\":\"ok\"}`")))]
pub async fn healthz() -> Response {
    super::json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
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

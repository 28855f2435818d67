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
    let mut text = app.metrics.render();
    rules_version_info(&mut text, app.supervisor.routing().snapshot().version());
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))], text)
        .into_response()
}

/// Appends `switchboard_rules_version_info{version="..."} 1` for the version in force.
///
/// Written at each scrape rather than kept in the recorder: the exporter cannot drop a
/// series, so a gauge per version would keep one series for every version ever loaded.
fn rules_version_info(text: &mut String, version: &str) {
    let escaped = version.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# HELP switchboard_rules_version_info The version of the routing rules in force (one series).\n");
    text.push_str("# TYPE switchboard_rules_version_info gauge\n");
    text.push_str(&format!("switchboard_rules_version_info{{version=\"{escaped}\"}} 1\n"));
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_rules_version_is_one_escaped_series() {
        let mut text = "http_requests_total 3".to_owned();
        super::rules_version_info(&mut text, "a\"b\\c");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "http_requests_total 3");
        assert_eq!(lines[3], r#"switchboard_rules_version_info{version="a\"b\\c"} 1"#);
        assert_eq!(text.matches("switchboard_rules_version_info{").count(), 1);
    }
}

/// This API's OpenAPI 3 document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", responses((status = 200, description = "OpenAPI 3 document")))]
pub async fn openapi() -> Response {
    super::json(StatusCode::OK, &super::openapi::document())
}

//! Every error answer: `application/problem+json` with `status`, `code` and `detail`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::{Reason, Refusal, RefusalKind, RefusalRecord};
use crate::rules::RuleError;
use crate::service::ServiceError;

/// The problem document of the contract, plus what some codes add.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Always `about:blank`: `code` names the problem.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: String,
    pub status: u16,
    pub code: &'static str,
    pub detail: String,
    /// With `not_eligible`: why the rules excluded the target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasons: Option<Vec<Reason>>,
    /// With `invalid_rules`: every error of the rule files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<RuleError>>,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    reasons: Option<Vec<Reason>>,
    errors: Option<Vec<RuleError>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self { status, code, detail: detail.into(), reasons: None, errors: None }
    }

    pub fn invalid_rules(errors: Vec<RuleError>) -> Self {
        let detail = match errors.first() {
            Some(first) if errors.len() == 1 => {
                format!("the rule files are invalid: {first}; the rules in force are unchanged")
            }
            Some(first) => format!(
                "the rule files have {} errors, the first: {first}; the rules in force are unchanged",
                errors.len()
            ),
            None => "the rule files are invalid; the rules in force are unchanged".to_owned(),
        };
        Self { errors: Some(errors), ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_rules", detail) }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is over 1 MiB (1048576 bytes); send a smaller body",
        )
    }

    /// The body did not arrive within `body_timeout_ms`: the client was too slow.
    pub fn request_timeout(limit: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {} ms (`body_timeout_ms`); send it again, all at once",
                limit.as_millis()
            ),
        )
    }

    /// The server did not answer within `request_timeout_ms`.
    pub fn timeout(limit: std::time::Duration) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the server did not answer within {} ms (`request_timeout_ms`); a write may or may not have been applied: read it back, or retry it with the same Idempotency-Key",
                limit.as_millis()
            ),
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this path does not take this method (see /openapi.json for the methods it takes)",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Refused(r) => r.into(),
            ServiceError::Internal(e) => {
                // The detail is logged where it happened; clients get a generic sentence.
                tracing::error!(error = %e, "internal error");
                Self::unavailable(matches!(e, crate::store::StoreError::Commit(_)))
            }
        }
    }
}

impl ApiError {
    /// The store failed; `uncertain`: while committing, so the change may be applied.
    pub fn unavailable(uncertain: bool) -> Self {
        let detail = if uncertain {
            "the database failed while committing: the change may or may not be applied; read it \
             back, or retry with the same Idempotency-Key"
        } else {
            "the store could not complete the request; it was not applied, retry it"
        };
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }

    /// The problem document this error answers with.
    pub fn problem(self) -> Problem {
        Problem {
            kind: "about:blank",
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            code: self.code,
            detail: self.detail,
            reasons: self.reasons,
            errors: self.errors,
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        RefusalRecord::from(r).into()
    }
}

impl From<RefusalRecord> for ApiError {
    fn from(r: RefusalRecord) -> Self {
        let (status, code) = match r.kind {
            RefusalKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            RefusalKind::BadRequest => (StatusCode::BAD_REQUEST, "bad_request"),
            RefusalKind::VersionMismatch => (StatusCode::PRECONDITION_FAILED, "version_mismatch"),
            RefusalKind::InvalidTransition => (StatusCode::CONFLICT, "invalid_transition"),
            RefusalKind::AlreadyExists => (StatusCode::CONFLICT, "already_exists"),
            RefusalKind::IdempotencyKeyReused => (StatusCode::CONFLICT, "idempotency_key_reused"),
            RefusalKind::NotEligible => (StatusCode::UNPROCESSABLE_ENTITY, "not_eligible"),
            RefusalKind::Contended => (StatusCode::CONFLICT, "conflict"),
        };
        Self { status, code, detail: r.detail, reasons: r.reasons, errors: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let problem = self.problem();
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still come: the connection cannot carry another request.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

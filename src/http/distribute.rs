//! `POST /v1/queues/{id}/distribute`: a queue's open conversations to their best candidates.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::extract::{Authed, OptionalJson, PathId, Supervise, WriteParts};
use super::{ApiError, AppState, Problem, json};
use crate::domain::{BULK_MAX, Distribution};
use crate::service::DistributeRequest;

/// How many conversations to take (1-1000, default 100), and whether only to plan.
/// An empty body means the defaults.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DistributeBody {
    #[schema(minimum = 1, maximum = 1000, default = 100)]
    max: Option<u32>,
    /// Answer the plan and write nothing.
    #[schema(default = false)]
    dry_run: Option<bool>,
}

impl DistributeBody {
    fn request(&self) -> Result<DistributeRequest, ApiError> {
        let max = match self.max {
            None => 100,
            Some(n) if (1..=BULK_MAX as u32).contains(&n) => n as usize,
            Some(n) => {
                return Err(ApiError::bad_request(format!(
                    "`max` is {n}; give 1 to {BULK_MAX} (or leave it out for 100)"
                )));
            }
        };
        Ok(DistributeRequest { max, dry_run: self.dry_run.unwrap_or(false) })
    }
}

/// Assigns the queue's open conversations (priority, then age) each to its best candidate.
#[utoipa::path(post, path = "/v1/queues/{id}/distribute", tag = "actions",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer to a repeat (not with `dry_run`, which writes nothing)"),
        ("If-Match" = Option<String>, Header, description = "Not accepted here (400)")),
    request_body(content = Option<DistributeBody>, description = "Optional; empty means the defaults"),
    responses((status = 200, body = Distribution), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn distribute(
    auth: Authed<Supervise>,
    State(app): State<AppState>,
    id: PathId,
    parts: WriteParts,
    OptionalJson(body): OptionalJson<DistributeBody>,
) -> Result<Response, ApiError> {
    parts.check_query()?;
    parts.refuse_if_match()?;
    let request = body.value.request()?;
    let id = id.get()?;
    let idem = parts.idempotency(&body.canonical)?;
    Ok(json(StatusCode::OK, &app.supervisor.distribute(&auth.actor, idem, &id, request).await?))
}

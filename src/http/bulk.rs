//! `POST /v1/conversations/bulk`: one supervisor action over many conversations.

use std::collections::HashSet;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::extract::{ApiJson, Authed, Supervise, WriteParts};
use super::{ApiError, AppState, Problem, json};
use crate::domain::{BULK_MAX, BulkItem, Conversation, Id, ItemResult, Note, RoutingAction, SupervisorAction, Target};
use crate::service::BulkRequest;

/// The action of a bulk request.
#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    Assign,
    Transfer,
    Release,
    Remove,
}

/// A bulk request: the action, the conversations (1-1000 distinct ids, processed in this
/// order) and, for assign and transfer, exactly one target.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    action: BulkAction,
    #[schema(min_items = 1, max_items = 1000)]
    ids: Vec<String>,
    #[schema(value_type = Option<String>)]
    representative: Option<Id>,
    #[schema(value_type = Option<String>)]
    queue: Option<Id>,
    #[schema(value_type = Option<String>, max_length = 1000)]
    note: Option<Note>,
}

impl BulkBody {
    fn request(self) -> Result<BulkRequest, ApiError> {
        let target = match (self.representative, self.queue) {
            (Some(rep), None) => Some(Target::Representative(rep)),
            (None, Some(queue)) => Some(Target::Queue(queue)),
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request("give either `representative` or `queue`, not both"));
            }
            (None, None) => None,
        };
        let action = match (self.action, target) {
            (BulkAction::Assign, Some(t)) => SupervisorAction::Route(RoutingAction::Assign, t),
            (BulkAction::Transfer, Some(t)) => SupervisorAction::Route(RoutingAction::Transfer, t),
            (BulkAction::Release, None) => SupervisorAction::Release,
            (BulkAction::Remove, None) => SupervisorAction::Remove,
            (BulkAction::Assign | BulkAction::Transfer, None) => {
                return Err(ApiError::bad_request(
                    "assign and transfer need the target: `\"representative\": \"<id>\"` or `\"queue\": \"<id>\"`",
                ));
            }
            (BulkAction::Release | BulkAction::Remove, Some(_)) => {
                return Err(ApiError::bad_request(
                    "release and remove take no target: leave out `representative` and `queue`",
                ));
            }
        };
        if self.ids.is_empty() || self.ids.len() > BULK_MAX {
            return Err(ApiError::bad_request(format!(
                "`ids` has {} ids; give 1 to {BULK_MAX} (send more in several requests)",
                self.ids.len()
            )));
        }
        let mut seen = HashSet::with_capacity(self.ids.len());
        let mut ids = Vec::with_capacity(self.ids.len());
        for (i, raw) in self.ids.iter().enumerate() {
            let id = Id::parse(raw).map_err(|e| ApiError::bad_request(format!("`ids[{i}]`: {e}")))?;
            if !seen.insert(raw.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "`ids[{i}]`: `{raw}` is given twice; each conversation may appear once"
                )));
            }
            ids.push(id);
        }
        Ok(BulkRequest { action, ids, note: self.note })
    }
}

/// `{"results": [...]}`, one per id, in the request's order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkView {
    results: Vec<BulkResultView>,
}

/// One item's answer: its HTTP status, and the conversation (2xx) or the problem.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkResultView {
    id: String,
    /// The HTTP status the single action would have answered.
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    conversation: Option<Conversation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<Problem>,
}

impl From<BulkItem> for BulkResultView {
    fn from(item: BulkItem) -> Self {
        let id = item.id.as_str().to_owned();
        let error = match item.result {
            ItemResult::Applied(conversation) => {
                return Self { id, status: 200, conversation: Some(conversation), problem: None };
            }
            ItemResult::Refused(refusal) => ApiError::from(refusal),
            ItemResult::Failed { uncertain } => ApiError::unavailable(uncertain),
        };
        Self { id, status: error.status().as_u16(), conversation: None, problem: Some(error.problem()) }
    }
}

/// Assigns, transfers, releases or removes many conversations, each on its own.
#[utoipa::path(post, path = "/v1/conversations/bulk", tag = "actions",
    params(("Idempotency-Key" = Option<String>, Header, description = "Covers the whole request: a repeat replays the first answer"),
        ("If-Match" = Option<String>, Header, description = "Not accepted here (400)")),
    request_body = BulkBody,
    responses((status = 200, body = BulkView, description = "Every item's answer, in order; every applied item is durable"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn bulk(
    auth: Authed<Supervise>,
    State(app): State<AppState>,
    parts: WriteParts,
    body: ApiJson<BulkBody>,
) -> Result<Response, ApiError> {
    parts.check_query()?;
    parts.refuse_if_match()?;
    let request = body.value.request()?;
    let idem = parts.idempotency(&body.canonical)?;
    Ok(view(app.supervisor.bulk(&auth.actor, idem, request).await?))
}

/// The `200` answer of a bulk request.
pub(super) fn view(items: Vec<BulkItem>) -> Response {
    json(StatusCode::OK, &BulkView { results: items.into_iter().map(BulkResultView::from).collect() })
}

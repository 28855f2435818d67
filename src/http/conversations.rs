//! `/v1/conversations`: the *Ongoing record conversations* view, the four supervisor
//! actions, lifecycle events, candidates and history.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::extract::{ApiJson, Authed, Integrate, NoQuery, OptionalJson, PathId, Read, Supervise, WriteParts};
use super::query::{PAGING, Param, QueryParams};
use super::{ApiError, AppState, ListView, Problem, json, outcome_response};
use crate::domain::ConversationFilter;
use crate::domain::{
    Conversation, ConversationInput, HistoryEvent, Id, LifecycleEvent, Note, QueueFilter, RepresentativeFilter,
    RoutingAction, SupervisorAction, Target, TargetKind,
};
use crate::service::{CandidateQuery, Candidates};

/// Body of assign and transfer: exactly one of `representative` and `queue`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetRequest {
    #[schema(value_type = Option<String>)]
    representative: Option<Id>,
    #[schema(value_type = Option<String>)]
    queue: Option<Id>,
    #[schema(value_type = Option<String>, max_length = 1000)]
    note: Option<Note>,
}

impl TargetRequest {
    fn target(self) -> Result<(Target, Option<Note>), ApiError> {
        match (self.representative, self.queue) {
            (Some(rep), None) => Ok((Target::Representative(rep), self.note)),
            (None, Some(queue)) => Ok((Target::Queue(queue), self.note)),
            (Some(_), Some(_)) => Err(ApiError::bad_request("give either `representative` or `queue`, not both")),
            (None, None) => Err(ApiError::bad_request(
                "give the target: `{\"representative\": \"<id>\"}` or `{\"queue\": \"<id>\"}`",
            )),
        }
    }
}

/// Optional body of release and remove.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    #[schema(value_type = Option<String>, max_length = 1000)]
    note: Option<Note>,
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum EventType {
    Accept,
    Hold,
    Resume,
    WrapUp,
    Resolve,
}

/// A lifecycle event; `representative` only with `accept`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventRequest {
    #[serde(rename = "type")]
    kind: EventType,
    #[schema(value_type = Option<String>)]
    representative: Option<Id>,
    #[schema(value_type = Option<String>, max_length = 1000)]
    note: Option<Note>,
}

impl EventRequest {
    fn event(self) -> Result<(LifecycleEvent, Option<Note>), ApiError> {
        let event = match (self.kind, self.representative) {
            (EventType::Accept, Some(representative)) => LifecycleEvent::Accept { representative },
            (EventType::Accept, None) => {
                return Err(ApiError::bad_request("an `accept` event needs `representative`"));
            }
            (_, Some(_)) => return Err(ApiError::bad_request("only an `accept` event takes `representative`")),
            (EventType::Hold, None) => LifecycleEvent::Hold,
            (EventType::Resume, None) => LifecycleEvent::Resume,
            (EventType::WrapUp, None) => LifecycleEvent::WrapUp,
            (EventType::Resolve, None) => LifecycleEvent::Resolve,
        };
        Ok((event, self.note))
    }
}

/// `{"events": [...]}`, in order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryView {
    events: Vec<HistoryEvent>,
}

/// Creates a conversation, `open` in its queue.
#[utoipa::path(post, path = "/v1/conversations", tag = "conversations",
    request_body = ConversationInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer to a repeat")),
    responses((status = 201, body = Conversation), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create(
    auth: Authed<Integrate>,
    State(app): State<AppState>,
    parts: WriteParts,
    body: ApiJson<ConversationInput>,
) -> Result<Response, ApiError> {
    parts.check_query()?;
    let idem = parts.idempotency(&body.canonical)?;
    Ok(outcome_response(app.supervisor.create_conversation(&auth.actor, idem, body.value).await?))
}

const LIST_FILTERS: [Param; 5] = [
    Param("status", true),
    Param("queue", false),
    Param("representative", false),
    Param("entity", false),
    Param("intent_based", false),
];

/// The *Ongoing record conversations* view: every status but `closed` unless `status` is given.
#[utoipa::path(get, path = "/v1/conversations", tag = "conversations",
    params(
        ("status" = Option<Vec<String>>, Query, description = "Repeatable; default: open, active, waiting, wrap_up"),
        ("queue" = Option<String>, Query), ("representative" = Option<String>, Query),
        ("entity" = Option<String>, Query), ("intent_based" = Option<bool>, Query),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1-1000, default 100"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")),
    responses((status = 200, body = ListView<Conversation>), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list(
    _auth: Authed<Read>,
    State(app): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(raw.as_deref(), &[&LIST_FILTERS, &PAGING])?;
    let filter = ConversationFilter {
        statuses: q.statuses()?,
        queue: q.id("queue")?,
        representative: q.id("representative")?,
        entity: q.one("entity").map(str::to_owned),
        intent_based: q.bool("intent_based")?,
    };
    let page = app.supervisor.conversations(filter, q.page()?).await?;
    Ok(json(StatusCode::OK, &ListView::from(page)))
}

/// One conversation, with its `ETag`.
#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "conversations",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")),
    responses((status = 200, body = Conversation), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get(
    _auth: Authed<Read>,
    State(app): State<AppState>,
    no_query: NoQuery,
    id: PathId,
) -> Result<Response, ApiError> {
    no_query.check()?;
    let conv = app.supervisor.conversation(&id.get()?).await?;
    let version = conv.version;
    let mut response = json(StatusCode::OK, &conv);
    response.headers_mut().insert(axum::http::header::ETAG, super::etag(version));
    Ok(response)
}

/// Every change to the conversation, in order.
#[utoipa::path(get, path = "/v1/conversations/{id}/history", tag = "conversations",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")),
    responses((status = 200, body = HistoryView), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn history(
    _auth: Authed<Read>,
    State(app): State<AppState>,
    no_query: NoQuery,
    id: PathId,
) -> Result<Response, ApiError> {
    no_query.check()?;
    let events = app.supervisor.history(&id.get()?).await?;
    Ok(json(StatusCode::OK, &HistoryView { events }))
}

const CANDIDATE_PARAMS: [Param; 4] =
    [Param("action", false), Param("target", false), Param("explain", false), Param("limit", false)];
const REP_FILTERS: [Param; 8] = [
    Param("name", false),
    Param("queue", false),
    Param("skill", true),
    Param("presence", true),
    Param("intent_family", false),
    Param("intent_group", false),
    Param("intent", false),
    Param("user_group", false),
];
const QUEUE_FILTERS: [Param; 3] = [Param("name", false), Param("intent_based", false), Param("priority", false)];

fn candidate_query(q: &QueryParams) -> Result<CandidateQuery, ApiError> {
    let action = match q.one("action") {
        Some("assign") => RoutingAction::Assign,
        Some("transfer") => RoutingAction::Transfer,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid value `{other}` for query parameter `action` (expected `assign` or `transfer`)"
            )));
        }
        None => return Err(ApiError::bad_request("query parameter `action` is required (`assign` or `transfer`)")),
    };
    let target = match q.one("target") {
        Some("representative") => TargetKind::Representative,
        Some("queue") => TargetKind::Queue,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid value `{other}` for query parameter `target` (expected `representative` or `queue`)"
            )));
        }
        None => {
            return Err(ApiError::bad_request("query parameter `target` is required (`representative` or `queue`)"));
        }
    };
    let (own, other): (&[Param], &[Param]) = match target {
        TargetKind::Representative => (&REP_FILTERS, &QUEUE_FILTERS),
        TargetKind::Queue => (&QUEUE_FILTERS, &REP_FILTERS),
    };
    if let Some(p) = other.iter().find(|p| !own.iter().any(|o| o.0 == p.0) && q.has(p.0)) {
        return Err(ApiError::bad_request(format!(
            "filter `{}` applies to {} targets, not to `target={}`",
            p.0,
            match target {
                TargetKind::Representative => "queue",
                TargetKind::Queue => "representative",
            },
            match target {
                TargetKind::Representative => "representative",
                TargetKind::Queue => "queue",
            }
        )));
    }
    let mut query = CandidateQuery {
        action,
        target,
        representatives: RepresentativeFilter::default(),
        queues: QueueFilter::default(),
        explain: q.bool("explain")?.unwrap_or(false),
        limit: q.limit()?,
    };
    match target {
        TargetKind::Representative => {
            query.representatives = RepresentativeFilter {
                name: q.text("name"),
                queue: q.id("queue")?,
                skills: q.ids("skill")?,
                presence: q.presences()?,
                user_group: q.id("user_group")?,
                intent_family: q.id("intent_family")?,
                intent_group: q.id("intent_group")?,
                intent: q.id("intent")?,
            }
        }
        TargetKind::Queue => {
            query.queues = QueueFilter {
                name: q.text("name"),
                intent_based: q.bool("intent_based")?,
                priority: q.u32("priority")?,
            }
        }
    }
    Ok(query)
}

/// The Assign and Transfer dialogs: eligible targets, best first.
#[utoipa::path(get, path = "/v1/conversations/{id}/candidates", tag = "conversations",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"),
        ("action" = crate::domain::RoutingAction, Query),
        ("target" = crate::domain::TargetKind, Query),
        ("explain" = Option<bool>, Query, description = "Also list what the rules excluded, and why"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many candidates (1-1000), and excluded with `explain`; all when absent"),
        ("name" = Option<String>, Query, description = "Case-insensitive substring"),
        ("queue" = Option<String>, Query), ("skill" = Option<Vec<String>>, Query, description = "Repeatable: has all"),
        ("presence" = Option<Vec<String>>, Query, description = "Repeatable: any of"),
        ("intent_family" = Option<String>, Query), ("intent_group" = Option<String>, Query),
        ("intent" = Option<String>, Query), ("user_group" = Option<String>, Query),
        ("intent_based" = Option<bool>, Query, description = "Queues only"),
        ("priority" = Option<u32>, Query, format = Int64, maximum = 4294967295.0, description = "Queues only")),
    responses((status = 200, body = Candidates), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn candidates(
    _auth: Authed<Read>,
    State(app): State<AppState>,
    id: PathId,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = QueryParams::parse(raw.as_deref(), &[&CANDIDATE_PARAMS, &REP_FILTERS, &QUEUE_FILTERS])?;
    let query = candidate_query(&q)?;
    let id = id.get()?;
    Ok(json(StatusCode::OK, &app.supervisor.candidates(&id, query).await?))
}

/// What every action handler extracts after the body.
async fn act(
    app: &AppState,
    auth: &Authed<Supervise>,
    parts: &WriteParts,
    raw_id: PathId,
    canonical: &str,
    action: SupervisorAction,
    note: Option<Note>,
) -> Result<Response, ApiError> {
    let id = raw_id.get()?;
    let idem = parts.idempotency(canonical)?;
    let version = parts.if_match()?;
    Ok(outcome_response(app.supervisor.supervise(&auth.actor, idem, id, action, version, note).await?))
}

macro_rules! routing_action {
    ($name:ident, $kind:expr, $path:literal, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "actions",
            params(("id" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"),
                ("If-Match" = Option<String>, Header, description = "Apply only at this version (the ETag)"),
                ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer to a repeat")),
            request_body = TargetRequest,
            responses((status = 200, body = Conversation), (status = "4XX", body = Problem, content_type = "application/problem+json")),
            security(("bearer" = [])))]
        pub async fn $name(
            auth: Authed<Supervise>,
            State(app): State<AppState>,
            id: PathId,
            parts: WriteParts,
            body: ApiJson<TargetRequest>,
        ) -> Result<Response, ApiError> {
    parts.check_query()?;
            let (target, note) = body.value.target()?;
            let action = SupervisorAction::Route($kind, target);
            act(&app, &auth, &parts, id, &body.canonical, action, note).await
        }
    };
}

routing_action!(
    assign,
    RoutingAction::Assign,
    "/v1/conversations/{id}/assign",
    "Assigns an `open` conversation to a representative or a queue."
);
routing_action!(
    transfer,
    RoutingAction::Transfer,
    "/v1/conversations/{id}/transfer",
    "Transfers a conversation to a representative or a queue."
);

macro_rules! plain_action {
    ($name:ident, $action:expr, $path:literal, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "actions",
            params(("id" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"),
                ("If-Match" = Option<String>, Header, description = "Apply only at this version (the ETag)"),
                ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer to a repeat")),
            request_body(content = Option<NoteRequest>, description = "Optional"),
            responses((status = 200, body = Conversation), (status = "4XX", body = Problem, content_type = "application/problem+json")),
            security(("bearer" = [])))]
        pub async fn $name(
            auth: Authed<Supervise>,
            State(app): State<AppState>,
            id: PathId,
            parts: WriteParts,
            OptionalJson(body): OptionalJson<NoteRequest>,
        ) -> Result<Response, ApiError> {
            parts.check_query()?;
            act(&app, &auth, &parts, id, &body.canonical, $action, body.value.note).await
        }
    };
}

plain_action!(
    release,
    SupervisorAction::Release,
    "/v1/conversations/{id}/release",
    "Releases a held conversation back to its queue, unassigned."
);
plain_action!(
    remove,
    SupervisorAction::Remove,
    "/v1/conversations/{id}/remove",
    "Removes a conversation from its queue: `closed`, `closed_reason: removed`."
);

/// Reports a lifecycle event (integration): accept, hold, resume, wrap_up, resolve.
#[utoipa::path(post, path = "/v1/conversations/{id}/events", tag = "conversations",
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"),
        ("If-Match" = Option<String>, Header, description = "Apply only at this version (the ETag)"),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer to a repeat")),
    request_body = EventRequest,
    responses((status = 200, body = Conversation), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn event(
    auth: Authed<Integrate>,
    State(app): State<AppState>,
    id: PathId,
    parts: WriteParts,
    body: ApiJson<EventRequest>,
) -> Result<Response, ApiError> {
    parts.check_query()?;
    let (event, note) = body.value.event()?;
    let id = id.get()?;
    let idem = parts.idempotency(&body.canonical)?;
    let version = parts.if_match()?;
    Ok(outcome_response(app.supervisor.lifecycle(&auth.actor, idem, id, event, version, note).await?))
}

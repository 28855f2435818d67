//! `GET /v1/me`: who the token is, for the web view's header and for hiding what the
//! role may not do.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use super::extract::{Authed, NoQuery, Read};
use super::{ApiError, Problem, json};
use crate::auth::{Actor, Permission};

/// The caller: the token's name (the actor in history) and role.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    pub name: String,
    #[schema(value_type = String, example = "supervisor")]
    pub role: crate::auth::Role,
    /// What the role may do beyond reading, so a client need not copy the role table.
    pub may: May,
}

/// The calls a role may make, by kind.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct May {
    /// Assign, transfer, release, remove, bulk actions, distribution.
    pub supervise: bool,
    /// Create conversations, write representatives and queues, lifecycle events.
    pub integrate: bool,
    /// Reload the rules.
    pub administer: bool,
}

impl From<&Actor> for Me {
    fn from(actor: &Actor) -> Self {
        let role = actor.role;
        Me {
            name: actor.name.clone(),
            role,
            may: May {
                supervise: Permission::Supervise.allows(role),
                integrate: Permission::Integrate.allows(role),
                administer: Permission::Administer.allows(role),
            },
        }
    }
}

/// The token's name and role (any role).
#[utoipa::path(get, path = "/v1/me", tag = "meta",
    responses((status = 200, body = Me), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn me(auth: Authed<Read>, no_query: NoQuery) -> Result<Response, ApiError> {
    no_query.check()?;
    Ok(json(StatusCode::OK, &Me::from(&auth.actor)))
}

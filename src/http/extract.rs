//! Extractors that turn a request into domain values, or a problem+json error.
//!
//! The contract fixes the order of checks: 401 → 403 → 413 → 400. Handlers therefore
//! take [`Authed`] first, the raw path and headers (which never fail), the body last,
//! and validate the path, query and headers after the body has been read.

use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::auth::{Actor, Permission};
use crate::domain::Id;
use crate::service::Idempotency;

/// A permission as a type, so a handler states what it needs in its signature.
pub trait Access: Send + Sync + 'static {
    const PERMISSION: Permission;
}

macro_rules! access {
    ($($name:ident => $perm:ident),*) => {$(
        #[derive(Debug)]
        pub struct $name;
        impl Access for $name {
            const PERMISSION: Permission = Permission::$perm;
        }
    )*};
}
access!(Read => Read, Supervise => Supervise, Integrate => Integrate, Administer => Administer);

/// The authenticated caller, allowed to make this call.
#[derive(Debug)]
pub struct Authed<A: Access> {
    pub actor: Actor,
    _access: PhantomData<A>,
}

impl<A: Access> FromRequestParts<AppState> for Authed<A> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <token>` header"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let actor = state.tokens.verify(token).ok_or_else(|| ApiError::unauthorized("unknown token"))?;
        if !A::PERMISSION.allows(actor.role) {
            return Err(ApiError::forbidden(format!(
                "token `{}` has role `{}`; this call needs role {}",
                actor.name,
                actor.role.as_str(),
                A::PERMISSION.roles()
            )));
        }
        Ok(Self { actor, _access: PhantomData })
    }
}

/// Reads the body within the size limit (over it is `413`) and within
/// `body_timeout_ms` (a body that has not all arrived by then is `408`).
async fn body_bytes(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    let limit = state.limits.body_timeout();
    let read = tokio::time::timeout(limit, Bytes::from_request(req, state))
        .await
        .map_err(|_| ApiError::request_timeout(limit))?;
    read.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large()
        } else {
            ApiError::bad_request(format!("cannot read the request body: {rejection}"))
        }
    })
}

/// A JSON body, validated into `T`; remembers its canonical form for idempotency.
#[derive(Debug)]
pub struct ApiJson<T> {
    pub value: T,
    /// The body as canonical JSON (keys sorted), so JSON-equal bodies compare equal.
    pub canonical: String,
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<ApiJson<T>, ApiError> {
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))?;
    if !json.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    let canonical = canonical(&json);
    let value =
        serde_json::from_value(json).map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))?;
    Ok(ApiJson { value, canonical })
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes)
    }
}

/// JSON with object keys sorted at every depth, whatever order the client sent.
fn canonical(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> =
                keys.into_iter().map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k]))).collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// A JSON body that may be absent (an empty body is `{}`).
#[derive(Debug)]
pub struct OptionalJson<T>(pub ApiJson<T>);

impl<T: DeserializeOwned + Send> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return parse_json(b"{}").map(OptionalJson);
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

/// The `{id}` of the path. Extracting never fails; [`PathId::get`] validates it after the
/// body has been read, so a bad id is a `400` that comes after `413`.
#[derive(Debug)]
pub struct PathId(Result<Id, String>);

impl PathId {
    pub fn get(self) -> Result<Id, ApiError> {
        self.0.map_err(|e| ApiError::bad_request(format!("in the path: {e}")))
    }
}

impl FromRequestParts<AppState> for PathId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let raw = axum::extract::Path::<String>::from_request_parts(parts, state).await;
        Ok(Self(match raw {
            Ok(raw) => Id::parse(&raw.0).map_err(|e| e.to_string()),
            Err(rejection) => Err(format!("the id is not valid UTF-8 text ({})", rejection.body_text())),
        }))
    }
}

/// The query string of a route that takes no parameters. Extracting never fails;
/// [`NoQuery::check`] refuses any parameter after the body has been read (so `413` comes
/// first), since a parameter the route ignores, e.g. `?dry_run=true` on an action, would
/// otherwise be silently ignored.
#[derive(Debug)]
pub struct NoQuery(Option<String>);

impl NoQuery {
    pub fn check(&self) -> Result<(), ApiError> {
        match self.0.as_deref().filter(|q| !q.is_empty()) {
            None => Ok(()),
            Some(q) => {
                let name = q.split(['&', '=']).next().unwrap_or(q);
                Err(ApiError::bad_request(format!(
                    "unknown query parameter `{name}` (this endpoint takes no query parameters)"
                )))
            }
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for NoQuery {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.uri.query().map(str::to_owned)))
    }
}

/// What a write handler reads of a request besides its body: the method, path and
/// headers (for `Idempotency-Key` and `If-Match`) and the query string, which write
/// routes refuse. Extracting never fails; each check runs when the handler asks, after
/// the body has been read.
#[derive(Debug)]
pub struct WriteParts {
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
}

impl WriteParts {
    /// `400` for any query parameter (see [`NoQuery`]).
    pub fn check_query(&self) -> Result<(), ApiError> {
        NoQuery(self.uri.query().map(str::to_owned)).check()
    }

    /// The request's `Idempotency-Key`, with the fingerprint of a body of `canonical` form.
    pub fn idempotency(&self, canonical_body: &str) -> Result<Option<Idempotency>, ApiError> {
        idempotency(&self.headers, &self.method, self.uri.path(), canonical_body)
    }

    pub fn if_match(&self) -> Result<Option<u64>, ApiError> {
        if_match(&self.headers)
    }

    /// `400` when the request carries `If-Match` (on a route that acts on many
    /// conversations, each at its own version).
    pub fn refuse_if_match(&self) -> Result<(), ApiError> {
        if self.headers.contains_key(header::IF_MATCH) {
            return Err(ApiError::bad_request(
                "If-Match is not accepted here: this request acts on many conversations, each at its current \
                 version; leave the header out (or use the single action to act on one version)",
            ));
        }
        Ok(())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WriteParts {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // The path as the client sent it, also under a nested router.
        let uri =
            parts.extensions.get::<axum::extract::OriginalUri>().map_or_else(|| parts.uri.clone(), |o| o.0.clone());
        Ok(Self { method: parts.method.clone(), uri, headers: parts.headers.clone() })
    }
}

/// `If-Match: "<version>"` (or `*`, which matches any version).
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let text = value.to_str().unwrap_or("").trim();
    if text == "*" {
        return Ok(None);
    }
    let bare = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    bare.parse::<u64>().map(Some).map_err(|_| {
        ApiError::bad_request(format!("invalid If-Match `{text}` (expected the conversation's ETag, e.g. `\"3\"`)"))
    })
}

/// `Idempotency-Key`, 1-255 visible characters, bound to this request's method, path and body.
fn idempotency(
    headers: &HeaderMap,
    method: &Method,
    path: &str,
    canonical_body: &str,
) -> Result<Option<Idempotency>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key = value
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        .ok_or_else(|| ApiError::bad_request("invalid Idempotency-Key (expected 1-255 visible ASCII characters)"))?;
    let fingerprint = hex::encode(crate::auth::sha256(format!("{method}\n{path}\n{canonical_body}").as_bytes()));
    Ok(Some(Idempotency { key: key.to_owned(), fingerprint }))
}

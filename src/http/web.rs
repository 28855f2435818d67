//! The supervisor's web view: the page at `/` and its files under `/assets/`.
//!
//! The files live in `web/` and are compiled into the binary (`include_bytes!`), so the
//! daemon serves the page with nothing else installed and on a closed network. No token
//! is needed to load them: the page asks for one and sends it on its API calls.
//!
//! Every answer carries an `ETag` (the SHA-256 of the file) and `Cache-Control: no-cache`,
//! so a browser revalidates and gets a `304` until the binary serves other bytes. The
//! page carries a strict `Content-Security-Policy`: only the daemon's own scripts,
//! styles and API, no inline code, no frames.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiError;
use super::extract::NoQuery;

/// One embedded file.
pub struct Asset {
    /// The name under `/assets/` (the page's own is `index.html`, served at `/`).
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset { name: $name, content_type: $type, bytes: include_bytes!(concat!("../../web/assets/", $name)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// The page.
pub const PAGE: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    bytes: include_bytes!("../../web/index.html"),
};

/// Everything the page loads, in `web/assets/`.
pub const ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("grid.js", JS),
    asset!("dialogs.js", JS),
    asset!("live.js", JS),
    asset!("panels.js", JS),
    asset!("dom.js", JS),
    asset!("icon.svg", "image/svg+xml"),
];

/// The policy of the page: its own scripts, styles and API only; nothing inline.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The `ETag` of each file (the page first), computed once.
fn etags() -> &'static [HeaderValue] {
    static ETAGS: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        std::iter::once(&PAGE)
            .chain(ASSETS)
            .map(|a| {
                let digest = hex::encode(&crate::auth::sha256(a.bytes)[..16]);
                HeaderValue::from_str(&format!("\"{digest}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
            })
            .collect()
    })
}

/// The web view of the Ongoing record conversations (HTML). No token needed.
#[utoipa::path(get, path = "/", tag = "web",
    responses((status = 200, description = "The supervisor's web view", content_type = "text/html"),
        (status = 304, description = "Not modified (`If-None-Match` names the current `ETag`)"),
        (status = "4XX", body = super::Problem, content_type = "application/problem+json")))]
pub async fn page(no_query: NoQuery, headers: HeaderMap) -> Result<Response, ApiError> {
    no_query.check()?;
    let mut response = serve(&PAGE, &etags()[0], &headers);
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    Ok(response)
}

/// A file of the web view (script, style sheet, icon). No token needed.
#[utoipa::path(get, path = "/assets/{file}", tag = "web",
    params(("file" = String, Path, example = "app.js", description = "A file name the page refers to, e.g. `app.js`")),
    responses((status = 200, description = "The file, with its content type (`text/javascript`, `text/css`, `image/svg+xml`)"),
        (status = 304, description = "Not modified (`If-None-Match` names the current `ETag`)"),
        (status = "4XX", body = super::Problem, content_type = "application/problem+json")))]
pub async fn asset(
    no_query: NoQuery,
    file: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    no_query.check()?;
    let name = file.map(|p| p.0).unwrap_or_default();
    let index = ASSETS.iter().position(|a| a.name == name).ok_or_else(|| {
        ApiError::not_found(format!("no asset `{name}` (the web view's files are listed in its page)"))
    })?;
    Ok(serve(&ASSETS[index], &etags()[index + 1], &headers))
}

/// The file, or `304` when the client's copy (`If-None-Match`) is this one.
fn serve(asset: &Asset, etag: &HeaderValue, request: &HeaderMap) -> Response {
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag.as_bytes() == etag.as_bytes());
    let mut response = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { asset.bytes.into_response() };
    let h = response.headers_mut();
    if !fresh {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    }
    h.insert(header::ETAG, etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

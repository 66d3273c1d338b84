//! `/admin`: the operator's page. Plain HTML, CSS and a little JavaScript over the JSON API, no
//! build step and nothing from the internet; the files are compiled in. The page asks
//! `/api/auth` what its token opens before it calls anything else, so a missing or wrong token
//! is a message on the page, not a failed request.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Access, AppState, access_of, bearer};

const PAGE: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("admin.js");
const STYLE: &str = include_str!("admin.css");

/// Only this origin's own files and API: no inline script, no framing.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[utoipa::path(
    get,
    path = "/admin",
    tag = "admin",
    description = "The admin page.",
    responses((status = 200, description = "the page", body = String, content_type = "text/html"))
)]
pub async fn page() -> Response {
    asset(PAGE, "text/html; charset=utf-8")
}

#[utoipa::path(
    get,
    path = "/admin/admin.js",
    tag = "admin",
    description = "The admin page's script.",
    responses((status = 200, description = "the script", body = String, content_type = "text/javascript"))
)]
pub async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

#[utoipa::path(
    get,
    path = "/admin/admin.css",
    tag = "admin",
    description = "The admin page's style.",
    responses((status = 200, description = "the style", body = String, content_type = "text/css"))
)]
pub async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

/// What the caller's credentials open: `api` (everything), `read` (the reading calls) or
/// `none`. Always 200, so a page can ask without a failed request.
#[utoipa::path(
    get,
    path = "/api/auth",
    tag = "admin",
    description = "What the given token opens: `{access: api|read|none, token_given}`; always 200.",
    responses((status = 200, description = "the access"))
)]
pub async fn auth(State(state): State<Arc<AppState>>, request: Request) -> Json<Value> {
    let access = match access_of(&state, &request) {
        Access::Api => "api",
        Access::Read => "read",
        Access::None => "none",
    };
    Json(json!({ "access": access, "token_given": bearer(&request).is_some() }))
}

/// `GET /` (the packager's `POST /` is its status): people land on the admin page.
#[utoipa::path(
    get,
    path = "/",
    tag = "admin",
    description = "People land on the admin page (`POST /` is the packager status).",
    responses((status = 303, description = "to /admin"))
)]
pub async fn to_admin() -> axum::response::Redirect {
    axum::response::Redirect::to("/admin")
}

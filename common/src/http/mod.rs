//! The HTTP API: one axum router, served by the API Lambda (lambda_http) and by `serve`.

mod admin;
mod catalog;
mod csw;
mod error;
mod harvest;
mod notifications;
mod ogcapi;
mod openapi;
mod packager;
mod waf;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

pub use error::ApiError;

use crate::services::Services;
use crate::store::LocalStore;

/// Marks a request `serve` trusts without a token (loopback, local mode, no token set).
/// Only `serve` inserts it: lambda_http has no peer address, so on AWS the token is required.
#[derive(Debug, Clone, Copy)]
pub struct TrustedLocal;

/// The origin (`https://DOMAIN`) the deployment serves this API at, as API Gateway's request
/// context names it; only the API function inserts it. Emailed links use it when no
/// `SHEAF_PUBLIC_URL` is set, never a header the client sent.
#[derive(Debug, Clone)]
pub struct DeployedOrigin(pub String);

#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    /// `SHEAF_API_TOKEN`: every call under `/api`.
    pub api_token: Option<String>,
    /// `SHEAF_API_READ_TOKEN`: the reading calls under `/api` only (a dashboard's token).
    pub read_token: Option<String>,
    /// The local store, for signed `/downloads/` links (local mode only).
    pub local_store: Option<LocalStore>,
}

/// A query string (or a form body) as its pairs, in order, names as given.
fn query_pairs(text: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Compares in time that does not depend on where the strings differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a call under `/api` is open to anyone: reading the catalogue (its search and
/// records; `/csw`, `/ogcapi` and `/waf/` are outside `/api`). Every other call shows people
/// (owners' emails), operations (jobs, the log, queues, the catalogue's integrity) or changes
/// something.
fn is_public(method: &Method, path: &str) -> bool {
    let path = path.strip_prefix("/api").unwrap_or(path);
    matches!(*method, Method::GET | Method::HEAD)
        && (path == "/catalog/search"
            || path.starts_with("/catalog/records/")
            || path == "/auth"
            || path == "/openapi.json")
}

fn matches_token(expected: &Option<String>, given: Option<&str>) -> bool {
    match (expected, given) {
        (Some(token), Some(given)) => constant_time_eq(token.as_bytes(), given.as_bytes()),
        _ => false,
    }
}

/// The bearer token a request carries.
fn bearer(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// What a request's credentials open under `/api`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Every call: the API token, or what `serve` trusts (`TrustedLocal`).
    Api,
    /// The reading calls: the read token.
    Read,
    None,
}

fn access_of(state: &AppState, request: &Request) -> Access {
    let given = bearer(request);
    if request.extensions().get::<TrustedLocal>().is_some()
        || matches_token(&state.api_token, given)
    {
        Access::Api
    } else if matches_token(&state.read_token, given) {
        Access::Read
    } else {
        Access::None
    }
}

/// Calls under `/api` need `Authorization: Bearer SHEAF_API_TOKEN`; reading calls may use the
/// read token instead; the catalogue's own are public; `serve` marks what it trusts
/// (`TrustedLocal`).
async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let method = request.method();
    let reading = matches!(*method, Method::GET | Method::HEAD);
    let allowed = is_public(method, request.uri().path())
        || match access_of(&state, &request) {
            Access::Api => true,
            Access::Read => reading,
            Access::None => false,
        };
    if !allowed {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(request).await)
}

/// The largest request body any route takes (a source, a CSW request, a package request are a
/// few KiB): a larger one is answered 413 before it is read.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub fn router(state: AppState) -> Router {
    let state = Arc::new(state);
    let api = Router::new()
        .route(
            "/harvest/sources",
            get(harvest::list_sources).post(harvest::add_source),
        )
        .route(
            "/harvest/sources/{name}",
            get(harvest::show_source)
                .patch(harvest::patch_source)
                .delete(harvest::deactivate_source),
        )
        .route("/harvest/sources/{name}/clear", post(harvest::clear_source))
        .route("/harvest/sources/{name}/jobs", post(harvest::start_job))
        .route("/harvest/jobs", get(harvest::list_jobs))
        .route("/harvest/jobs/{id}", get(harvest::show_job))
        .route("/harvest/jobs/{id}/abort", post(harvest::abort_job))
        .route("/harvest/log", get(harvest::log))
        .route("/catalog/search", get(harvest::search))
        .route("/catalog/records/{id}", get(harvest::show_record))
        .route("/catalog/queues", get(harvest::queues))
        .route("/catalog/queues/{queue}/redrive", post(harvest::redrive))
        .route("/catalog/status", get(catalog::status))
        .route("/catalog/rebuild", post(catalog::rebuild))
        .route("/catalog/rebuild/result", get(catalog::rebuild_result))
        .route("/catalog/rebuild/report", get(catalog::rebuild_report))
        .route("/catalog/rejected", get(catalog::rejected))
        .route(
            "/notifications/targets",
            get(notifications::list_targets).post(notifications::add_target),
        )
        .route(
            "/notifications/targets/{name}",
            axum::routing::patch(notifications::patch_target).delete(notifications::remove_target),
        )
        .route("/notifications/failures", get(notifications::failures))
        .route("/notifications/retry", post(notifications::retry))
        .route("/packager/statistics", get(packager::api_statistics))
        .route("/auth", get(admin::auth))
        .route("/openapi.json", get(openapi::document))
        .layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .nest("/api", api)
        .route("/csw", get(csw::get).post(csw::post))
        .route("/ogcapi", get(ogcapi::landing))
        .route("/ogcapi/", get(ogcapi::landing))
        .route("/ogcapi/conformance", get(ogcapi::conformance))
        .route("/ogcapi/collections", get(ogcapi::collections))
        .route("/ogcapi/collections/{name}", get(ogcapi::collection))
        .route("/ogcapi/collections/{name}/items", get(ogcapi::items))
        .route("/ogcapi/collections/{name}/items/{*id}", get(ogcapi::item))
        .route("/waf", get(waf::root))
        .route("/waf/", get(waf::root))
        .route("/waf/{*path}", get(waf::path))
        .route("/downloads/{*key}", get(waf::download))
        .route("/admin", get(admin::page))
        .route("/admin/admin.js", get(admin::script))
        .route("/admin/admin.css", get(admin::style))
        .route("/", post(packager::status).get(admin::to_admin))
        .route("/status", post(packager::status))
        .route("/package_datastore", post(packager::package_datastore))
        .route("/package_dwc_archive", post(packager::package_dwc_archive))
        .route("/package_url", post(packager::package_url))
        .route("/statistics", post(packager::statistics))
        .route("/statistics/requests", post(packager::statistics_requests))
        .route("/statistics/errors", post(packager::statistics_errors))
        .route("/clear_cache", post(packager::clear_cache))
        .route("/clear_caches", post(packager::clear_cache))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

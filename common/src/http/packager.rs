//! ckanpackager's HTTP API at the root: every call is a POST carrying the shared `secret`;
//! bodies are form-encoded, JSON, or URL-quoted JSON. Answers carry ckanpackager's fields, and a
//! refusal is `{"success": false, "msg": ...}` with 400 (naming the parameter) or 403 (secret).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Value, json};

use super::{AppState, DeployedOrigin, constant_time_eq};
use crate::package::{
    self, PackageError, PackageKind, PackageRequest, Params, SUCCESS_MESSAGE, number_param,
    optional_param, parse_params, refusal_email, stats,
};
use crate::queue::QueueName;
use crate::services::Services;

/// A refused or failed packager call.
pub enum Refusal {
    Bad(PackageError),
    Forbidden(&'static str),
    Internal(String),
}

impl From<PackageError> for Refusal {
    fn from(e: PackageError) -> Self {
        match e {
            PackageError::BadRequest { .. } => Refusal::Bad(e),
            other => Refusal::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            Refusal::Bad(e) => {
                let param = match &e {
                    PackageError::BadRequest { param, .. } => param.clone(),
                    _ => String::new(),
                };
                (
                    StatusCode::BAD_REQUEST,
                    json!({"success": false, "msg": e.to_string(), "param": param}),
                )
            }
            Refusal::Forbidden(msg) => {
                (StatusCode::FORBIDDEN, json!({"success": false, "msg": msg}))
            }
            Refusal::Internal(detail) => {
                tracing::error!(error = %detail, "internal error in the packager API");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"success": false, "msg": "internal error"}),
                )
            }
        };
        (status, Json(body)).into_response()
    }
}

/// The parameters of an authorised call.
fn authorise(state: &AppState, body: &[u8]) -> Result<Params, Refusal> {
    let params = parse_params(body).map_err(Refusal::Bad)?;
    let Some(secret) = &state.services.settings.packager.secret else {
        return Err(Refusal::Forbidden("the packager has no secret configured"));
    };
    match params.get("secret") {
        Some(given) if constant_time_eq(given.as_bytes(), secret.as_bytes()) => Ok(params),
        _ => Err(Refusal::Forbidden("Wrong/missing secret")),
    }
}

/// Where emailed links point: SHEAF_PUBLIC_URL when set, else the API's own origin as the
/// deployment gives it (API Gateway's domain), else the address `serve` listens on. Never a
/// request's `Host` or `X-Forwarded-Host`: whoever sends the request would choose where the
/// requester's link leads.
fn public_url(services: &Services, origin: Option<&DeployedOrigin>) -> String {
    if let Some(url) = &services.settings.packager.public_url {
        return url.clone();
    }
    match origin {
        Some(DeployedOrigin(url)) => url.clone(),
        None => services.settings.public_url.clone(),
    }
}

#[utoipa::path(
    post,
    path = "/status",
    tag = "packaging",
    description = "ckanpackager's status (`POST /` too); form, JSON or URL-quoted JSON body with `secret`.",
    responses((status = 200, description = "`{success, worker_count, queue_length, processed_requests}`"), (status = 403, description = "wrong or missing secret"))
)]
pub async fn status(State(state): State<Arc<AppState>>, body: Bytes) -> Result<Response, Refusal> {
    authorise(&state, &body)?;
    let services = &state.services;
    let mut queue_length = 0;
    for name in [QueueName::PackageFast, QueueName::PackageSlow] {
        if let Ok(queue) = services.queues.get(name) {
            let depth = queue
                .depth()
                .await
                .map_err(|e| Refusal::Internal(e.to_string()))?;
            queue_length += depth.visible + depth.in_flight;
        }
    }
    let processed = stats::processed_requests(services).await?;
    Ok(Json(json!({
        "success": true,
        // One consumer per queue: the fast and the slow package function (or local worker).
        "worker_count": 2,
        "queue_length": queue_length,
        "processed_requests": processed,
    }))
    .into_response())
}

async fn package(
    state: &AppState,
    origin: Option<&DeployedOrigin>,
    body: &[u8],
    kind: PackageKind,
) -> Result<Response, Refusal> {
    let params = authorise(state, body)?;
    let services = &state.services;
    let policy = services.settings.packager.address_policy;
    let accepted = match PackageRequest::from_params(kind, &params, policy) {
        Ok(request) => package::accept(services, request, &public_url(services, origin)).await,
        Err(e) => Err(e),
    };
    match accepted {
        Ok(queue) => Ok(Json(json!({
            "success": true,
            "msg": SUCCESS_MESSAGE,
            "queue": queue.as_str(),
        }))
        .into_response()),
        Err(e @ PackageError::BadRequest { .. }) => {
            record_refusal(services, &params, &e).await;
            Err(Refusal::Bad(e))
        }
        Err(e) => Err(Refusal::Internal(e.to_string())),
    }
}

/// A refused request is answered 400 and, when its address is one, the requester hears of it
/// by email. As in ckanpackager's statistics it is no packaging error: it is logged, not
/// counted.
async fn record_refusal(services: &Services, params: &Params, error: &PackageError) {
    let resource = params.get("resource_id").map(String::as_str).unwrap_or("");
    let email = params
        .get("email")
        .map(|e| e.trim())
        .filter(|e| crate::mail::is_valid_address(e))
        .unwrap_or("");
    let message = error.to_string();
    tracing::info!(resource, reason = %message, "package request refused");
    if !email.is_empty() {
        let mail = refusal_email(&services.settings.mail_from, email, resource, &message);
        if let Err(e) = services.mailer.send(&mail).await {
            tracing::warn!(error = %e, "the refusal email could not be sent");
        }
    }
}

#[utoipa::path(
    post,
    path = "/package_datastore",
    tag = "packaging",
    description = "ckanpackager: packs datastore rows into a zip whose link is emailed (`secret`, `api_url`, `resource_id`, `email`, `filters`, `q`, `limit`, `offset`, `format`, `key`, `doi`).",
    responses((status = 200, description = "accepted"), (status = 400, description = "a parameter is wrong: `param` names it"), (status = 403, description = "wrong or missing secret"), (status = 413, description = "a body over 1 MiB"))
)]
pub async fn package_datastore(
    State(state): State<Arc<AppState>>,
    origin: Option<Extension<DeployedOrigin>>,
    body: Bytes,
) -> Result<Response, Refusal> {
    let origin = origin.as_ref().map(|Extension(o)| o);
    package(&state, origin, &body, PackageKind::Datastore).await
}

#[utoipa::path(
    post,
    path = "/package_dwc_archive",
    tag = "packaging",
    description = "ckanpackager: the same as a Darwin Core Archive.",
    responses((status = 200, description = "accepted"), (status = 400, description = "a parameter is wrong"), (status = 403, description = "wrong or missing secret"))
)]
pub async fn package_dwc_archive(
    State(state): State<Arc<AppState>>,
    origin: Option<Extension<DeployedOrigin>>,
    body: Bytes,
) -> Result<Response, Refusal> {
    let origin = origin.as_ref().map(|Extension(o)| o);
    package(&state, origin, &body, PackageKind::DwcArchive).await
}

#[utoipa::path(
    post,
    path = "/package_url",
    tag = "packaging",
    description = "ckanpackager: a resource's file (`resource_url`) into a zip.",
    responses((status = 200, description = "accepted"), (status = 400, description = "a parameter is wrong"), (status = 403, description = "wrong or missing secret"))
)]
pub async fn package_url(
    State(state): State<Arc<AppState>>,
    origin: Option<Extension<DeployedOrigin>>,
    body: Bytes,
) -> Result<Response, Refusal> {
    let origin = origin.as_ref().map(|Extension(o)| o);
    package(&state, origin, &body, PackageKind::Url).await
}

fn filter(params: &Params) -> stats::Filter {
    let given = |name: &str| optional_param(params, name).map(str::to_string);
    stats::Filter {
        resource_id: given("resource_id"),
        email: given("email"),
    }
}

#[utoipa::path(
    post,
    path = "/statistics",
    tag = "packaging",
    description = "ckanpackager's totals (`secret`, optional `resource_id`).",
    responses((status = 200, description = "`{success, totals}`"), (status = 403, description = "wrong or missing secret"))
)]
pub async fn statistics(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Response, Refusal> {
    let params = authorise(&state, &body)?;
    let resource = filter(&params).resource_id;
    let totals = stats::totals(&state.services, resource.as_deref()).await?;
    Ok(Json(json!({"success": true, "totals": totals})).into_response())
}

/// The statistics for the admin page (`GET /api/packager/statistics`, behind the API's read
/// token instead of ckanpackager's secret): totals, and the latest errors.
#[utoipa::path(
    get,
    path = "/api/packager/statistics",
    tag = "packaging",
    description = "Packaging totals by resource and the latest errors (the admin page; ckanpackager clients use POST /statistics).",
    responses((status = 200, description = "`{totals, errors}`"), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)")),
    security(("bearer" = []))
)]
pub async fn api_statistics(
    State(state): State<Arc<AppState>>,
) -> Result<Json<Value>, super::ApiError> {
    let internal = |e: crate::package::PackageError| super::ApiError::Internal(e.to_string());
    let services = &state.services;
    let totals = stats::totals(services, None).await.map_err(internal)?;
    let errors = stats::errors(services, stats::Filter::default(), 0, 20)
        .await
        .map_err(internal)?;
    Ok(Json(json!({"totals": totals, "errors": errors})))
}

/// `/statistics/requests` and `/statistics/errors`: a page of entries, newest first.
async fn statistics_list(state: &AppState, body: &[u8], errors: bool) -> Result<Response, Refusal> {
    let params = authorise(state, body)?;
    let offset = number_param(&params, "offset")?.unwrap_or(0) as usize;
    let limit = number_param(&params, "limit")?.unwrap_or(100) as usize;
    let services = &state.services;
    let (field, list) = if errors {
        let list = stats::errors(services, filter(&params), offset, limit).await?;
        ("errors", serde_json::to_value(list))
    } else {
        let list = stats::requests(services, filter(&params), offset, limit).await?;
        ("requests", serde_json::to_value(list))
    };
    let list = list.map_err(|e| Refusal::Internal(e.to_string()))?;
    Ok(Json(json!({"success": true, field: list})).into_response())
}

#[utoipa::path(
    post,
    path = "/statistics/requests",
    tag = "packaging",
    description = "ckanpackager's requests, newest first (`offset`, `limit`, `resource_id`, `email`).",
    responses((status = 200, description = "`{success, requests}`"), (status = 403, description = "wrong or missing secret"))
)]
pub async fn statistics_requests(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Response, Refusal> {
    statistics_list(&state, &body, false).await
}

#[utoipa::path(
    post,
    path = "/statistics/errors",
    tag = "packaging",
    description = "ckanpackager's errors, newest first.",
    responses((status = 200, description = "`{success, errors}`"), (status = 403, description = "wrong or missing secret"))
)]
pub async fn statistics_errors(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Response, Refusal> {
    statistics_list(&state, &body, true).await
}

#[utoipa::path(
    post,
    path = "/clear_cache",
    tag = "packaging",
    description = "ckanpackager's cache cleared (`/clear_caches` too).",
    responses((status = 200, description = "cleared"), (status = 403, description = "wrong or missing secret"))
)]
pub async fn clear_cache(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Response, Refusal> {
    authorise(&state, &body)?;
    let removed = package::clear_cache(&state.services).await?;
    let answer: Value = json!({"success": true, "msg": "Done.", "removed": removed});
    Ok(Json(answer).into_response())
}

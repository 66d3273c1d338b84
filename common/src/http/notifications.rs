//! `/api/notifications/*`: the remote notification targets and their failed deliveries.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::harvest::parse_body;
use super::{ApiError, AppState};
use crate::notify::{self, Failure, NewTarget, Target, TargetPatch};

/// Failures listed at most: a target down for days during a backfill can hold the whole
/// catalogue's.
const FAILURES_LISTED: usize = 1000;

/// A target as the API shows it: a password in its URL is not shown.
fn shown(target: Target) -> Value {
    let mut value = json!(target);
    if let Ok(mut url) = url::Url::parse(&target.url)
        && url.password().is_some()
    {
        let _ = url.set_password(Some("***"));
        value["url"] = json!(url.to_string());
    }
    value
}

#[utoipa::path(
    get,
    path = "/api/notifications/targets",
    tag = "notifications",
    description = "Notification targets, with their backfill and next retry (a password in a URL masked).",
    responses((status = 200, description = "the targets", body = Vec<Target>), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)")),
    security(("bearer" = []))
)]
pub async fn list_targets(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let targets = notify::list_targets(state.services.store.as_ref()).await?;
    Ok(Json(Value::Array(targets.into_iter().map(shown).collect())))
}

#[utoipa::path(
    post,
    path = "/api/notifications/targets",
    tag = "notifications",
    description = "Adds a target; enabled, it receives every record (a backfill), then every change.",
    request_body = NewTarget,
    responses((status = 201, description = "the target", body = Target), (status = 400, description = "a field is wrong: `field` names it"), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)"), (status = 409, description = "a target of that name exists")),
    security(("bearer" = []))
)]
pub async fn add_target(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let new: NewTarget = parse_body(&body)?;
    let target = notify::add_target(&state.services, new).await?;
    Ok((StatusCode::CREATED, Json(shown(target))).into_response())
}

#[utoipa::path(
    patch,
    path = "/api/notifications/targets/{name}",
    tag = "notifications",
    description = "Changes a target; enabling a disabled one sends every record again.",
    params(("name" = String, Path, description = "the target")),
    request_body = TargetPatch,
    responses((status = 200, description = "the target", body = Target), (status = 400, description = "a field is wrong: `field` names it"), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)"), (status = 404, description = "no such thing")),
    security(("bearer" = []))
)]
pub async fn patch_target(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let patch: TargetPatch = parse_body(&body)?;
    let target = notify::patch_target(&state.services, &name, patch).await?;
    Ok(Json(shown(target)))
}

#[utoipa::path(
    delete,
    path = "/api/notifications/targets/{name}",
    tag = "notifications",
    description = "Removes a target and its failures.",
    params(("name" = String, Path, description = "the target")),
    responses((status = 200, description = "removed"), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)"), (status = 404, description = "no such thing")),
    security(("bearer" = []))
)]
pub async fn remove_target(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    notify::remove_target(&state.services, &name).await?;
    Ok(Json(json!({"success": true, "removed": name})))
}

#[utoipa::path(
    get,
    path = "/api/notifications/failures",
    tag = "notifications",
    description = "Failed notifications waiting for their retry (at most 1,000).",
    responses((status = 200, description = "the failures", body = Vec<Failure>), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)")),
    security(("bearer" = []))
)]
pub async fn failures(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let failures = notify::list_failures(state.services.store.as_ref(), FAILURES_LISTED).await?;
    Ok(Json(json!(failures)))
}

/// Sends every enabled target's failures again now.
#[utoipa::path(
    post,
    path = "/api/notifications/retry",
    tag = "notifications",
    description = "Sends every enabled target's failures again now.",
    responses((status = 200, description = "`{success, retried}`"), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)")),
    security(("bearer" = []))
)]
pub async fn retry(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let retried = notify::retry_now(&state.services).await?;
    Ok(Json(json!({"success": true, "retried": retried})))
}

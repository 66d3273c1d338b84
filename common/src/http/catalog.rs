//! The catalogue's integrity and rebuild (MET Norway's catalog-rebuilder, in our API), and the
//! rejected documents.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::domain::source::FieldError;
use crate::pipeline;
use crate::queue::QueueName;

#[utoipa::path(
    get,
    path = "/api/catalog/status",
    tag = "catalogue",
    description = "The catalogue's integrity: per source documents, records, rejected, missing and orphans; records against the index.",
    responses((status = 200, description = "the integrity"), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)")),
    security(("bearer" = []))
)]
pub async fn status(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let integrity = pipeline::catalog_integrity(&state.services).await?;
    Ok(Json(json!(integrity)))
}

/// Starts a rebuild (202 with its state); 409 names the one running. The rebuild queue's
/// worker runs it (`serve`'s, or the rebuild function); a process without that queue runs it
/// itself in local mode, and on AWS says to deploy it.
#[utoipa::path(
    post,
    path = "/api/catalog/rebuild",
    tag = "catalogue",
    description = "Starts a rebuild from the central WAF.",
    responses((status = 202, description = "the rebuild's state"), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)"), (status = 409, description = "a rebuild is running")),
    security(("bearer" = []))
)]
pub async fn rebuild(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let services = &state.services;
    if services.queues.get(QueueName::Rebuild).is_err() && state.local_store.is_none() {
        return Ok((
            StatusCode::NOT_IMPLEMENTED,
            Json(json!({"success": false, "error": "no rebuild queue: set SHEAF_REBUILD_QUEUE_URL (the stack's RebuildQueue), or run `sheaf --bucket BUCKET catalog rebuild`"})),
        )
            .into_response());
    }
    let started = pipeline::start_rebuild(services).await?;
    if !pipeline::send_rebuild(services, &started).await? {
        let services = services.clone();
        let running = started.clone();
        tokio::spawn(async move {
            if let Err(e) = pipeline::run_rebuild(&services, running).await {
                tracing::error!(error = %e, "rebuild failed");
            }
        });
    }
    Ok((StatusCode::ACCEPTED, Json(json!(started))).into_response())
}

/// The rebuild running or last run; `{"status": "none"}` before the first (a page that polls
/// it meets no error).
#[utoipa::path(
    get,
    path = "/api/catalog/rebuild/result",
    tag = "catalogue",
    description = "The rebuild running or last run (`{status: none}` before the first).",
    responses((status = 200, description = "its state"), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)")),
    security(("bearer" = []))
)]
pub async fn rebuild_result(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    match pipeline::rebuild_state(&state.services).await? {
        Some(s) => Ok(Json(json!(s))),
        None => Ok(Json(json!({"status": "none"}))),
    }
}

#[utoipa::path(
    get,
    path = "/api/catalog/rebuild/report",
    tag = "catalogue",
    description = "The last rebuild's report: each document, its outcome and reason.",
    responses((status = 200, description = "the report (a JSON attachment)"), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)"), (status = 404, description = "no such thing")),
    security(("bearer" = []))
)]
pub async fn rebuild_report(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let report = pipeline::rebuild_report(&state.services).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"rebuild-report.json\"",
            ),
        ],
        Json(report),
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/api/catalog/rejected",
    tag = "catalogue",
    description = "Rejected documents with their reasons.",
    params(("source" = Option<String>, Query, description = "one source's"), ("limit" = Option<usize>, Query, description = "at most (100, up to 1000)"), ("offset" = Option<usize>, Query, description = "skipped first")),
    responses((status = 200, description = "`{success, result}`"), (status = 400, description = "a field is wrong: `field` names it"), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)")),
    security(("bearer" = []))
)]
pub async fn rejected(
    State(state): State<Arc<AppState>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let number = |name: &str, default: usize| -> Result<usize, ApiError> {
        q.get(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| ApiError::BadRequest(FieldError::new(name, "must be a whole number")))
        })
    };
    let limit = number("limit", 100)?.clamp(1, 1000);
    let offset = number("offset", 0)?;
    let list = pipeline::list_rejected(
        &state.services,
        q.get("source").map(String::as_str),
        limit,
        offset,
    )
    .await?;
    Ok(Json(json!({"success": true, "result": list})))
}

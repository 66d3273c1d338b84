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

pub async fn status(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let integrity = pipeline::catalog_integrity(&state.services).await?;
    Ok(Json(json!(integrity)))
}

/// Starts a rebuild (202 with its state); 409 names the one running. The rebuild queue's
/// worker runs it (`serve`'s, or the rebuild function); a process without that queue runs it
/// itself in local mode, and on AWS says to deploy it.
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
pub async fn rebuild_result(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    match pipeline::rebuild_state(&state.services).await? {
        Some(s) => Ok(Json(json!(s))),
        None => Ok(Json(json!({"status": "none"}))),
    }
}

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

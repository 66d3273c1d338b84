//! `/api/harvest/*` and `/api/catalog/*`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::catalog::{self, SearchQuery};
use crate::domain::source::FieldError;
use crate::domain::source::Source;
use crate::pipeline;
use crate::sources::{self, NewSource, SourcePatch, field_of_json_error};

/// A JSON body read with the failing field named (`serde_path_to_error`).
pub(super) fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ApiError::BadRequest(field_of_json_error(&path, &e.inner().to_string()))
    })
}

/// A source as the API shows it: a CKAN API key in its config is masked (a PATCH that sends
/// the mask back keeps the key).
fn shown(source: Source) -> Value {
    let mut value = json!(source);
    if let Some(key) = value
        .pointer_mut("/config/api_key")
        .filter(|k| k.is_string())
    {
        *key = json!(sources::SECRET_MASK);
    }
    value
}

#[derive(Deserialize)]
pub struct AllQuery {
    #[serde(default)]
    all: Option<String>,
}

pub async fn list_sources(
    State(state): State<Arc<AppState>>,
    Query(q): Query<AllQuery>,
) -> Result<Json<Value>, ApiError> {
    let all = matches!(q.all.as_deref(), Some("true" | "1" | "yes"));
    let list = sources::list_sources(state.services.store.as_ref(), all).await?;
    Ok(Json(Value::Array(list.into_iter().map(shown).collect())))
}

pub async fn add_source(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let new: NewSource = parse_body(&body)?;
    let source = sources::add_source(state.services.store.as_ref(), new).await?;
    Ok((StatusCode::CREATED, Json(shown(source))).into_response())
}

pub async fn show_source(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let source = pipeline::load_source(state.services.store.as_ref(), &name).await?;
    Ok(Json(shown(source)))
}

pub async fn patch_source(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let patch: SourcePatch = parse_body(&body)?;
    let source = sources::patch_source(state.services.store.as_ref(), &name, patch).await?;
    Ok(Json(shown(source)))
}

pub async fn deactivate_source(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let source = sources::deactivate_source(state.services.store.as_ref(), &name).await?;
    Ok(Json(shown(source)))
}

pub async fn clear_source(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let removed = pipeline::clear_source(&state.services, &name).await?;
    Ok(Json(json!({"success": true, "records_removed": removed})))
}

pub async fn start_job(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let job = pipeline::start_job(&state.services, &name).await?;
    Ok((StatusCode::CREATED, Json(job)).into_response())
}

#[derive(Deserialize)]
pub struct JobsQuery {
    source: Option<String>,
    /// Jobs a page (default 100, at most 1000), newest first, from `offset`.
    limit: Option<usize>,
    offset: Option<usize>,
}

pub async fn list_jobs(
    State(state): State<Arc<AppState>>,
    Query(q): Query<JobsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let jobs = pipeline::list_jobs(
        state.services.store.as_ref(),
        q.source.as_deref(),
        limit,
        q.offset.unwrap_or(0),
    )
    .await?;
    Ok(Json(json!(jobs)))
}

pub async fn show_job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = pipeline::find_job(state.services.store.as_ref(), &id).await?;
    Ok(Json(json!(job)))
}

pub async fn abort_job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = pipeline::find_job(state.services.store.as_ref(), &id).await?;
    let job = pipeline::abort_job(&state.services, &job.source, &id, "aborted by request").await?;
    Ok(Json(json!(job)))
}

pub async fn search(
    State(state): State<Arc<AppState>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let number = |name: &str| -> Result<Option<u64>, ApiError> {
        q.get(name)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::BadRequest(FieldError::new(name, "must be a whole number"))
                })
            })
            .transpose()
    };
    let query = SearchQuery {
        q: q.get("q").cloned(),
        bbox: q.get("bbox").cloned(),
        start: q.get("start").cloned(),
        end: q.get("end").cloned(),
        source: q.get("source").cloned(),
        keyword: q.get("keyword").cloned(),
        format: q.get("format").cloned(),
        sort: q.get("sort").cloned(),
        page: number("page")?,
        page_size: number("page_size")?,
    };
    let page = catalog::search(state.services.index.as_ref(), &query).await?;
    Ok(Json(json!(page)))
}

/// `/api/catalog/records/ID` (JSON), `ID.xml` (the original) and `ID.jsonld` (schema.org).
pub async fn show_record(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let store = state.services.store.as_ref();
    if let Some(base) = id.strip_suffix(".jsonld")
        && let Ok(record) = catalog::get_record(store, base).await
    {
        let page = format!(
            "{}/api/catalog/records/{}.jsonld",
            state.services.settings.public_url.trim_end_matches('/'),
            base
        );
        let body = catalog::jsonld_dataset(&record, &page);
        return Ok(([(header::CONTENT_TYPE, "application/ld+json")], Json(body)).into_response());
    }
    if let Some(base) = id.strip_suffix(".xml")
        && let Ok(xml) = catalog::get_record_xml(store, base).await
    {
        return Ok(([(header::CONTENT_TYPE, "application/xml")], xml).into_response());
    }
    let record = catalog::get_record(store, &id).await?;
    Ok(Json(record).into_response())
}

pub async fn queues(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let mut out = serde_json::Map::new();
    for (name, queue) in state.services.queues.iter() {
        let depth = queue
            .depth()
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        out.insert(name.as_str().to_string(), json!(depth));
    }
    Ok(Json(Value::Object(out)))
}

#[derive(Deserialize)]
pub struct LogQuery {
    level: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// ckanext-harvest's `harvest_log_list`: `{"success": true, "result": [{content, level, created}]}`.
pub async fn log(
    State(state): State<Arc<AppState>>,
    Query(q): Query<LogQuery>,
) -> Result<Json<Value>, ApiError> {
    let entries = crate::harvest_log::list(
        state.services.store.as_ref(),
        q.level.as_deref().filter(|l| !l.is_empty()),
        q.limit.unwrap_or(100).min(1000),
        q.offset.unwrap_or(0),
    )
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(json!({"success": true, "result": entries})))
}

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
use crate::domain::job::Job;
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

#[utoipa::path(
    get,
    path = "/api/harvest/sources",
    tag = "harvest",
    description = "Active sources (all with `all=true`); a CKAN `api_key` in a config is masked.",
    params(("all" = Option<bool>, Query, description = "inactive ones too")),
    responses((status = 200, description = "the sources", body = Vec<Source>), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)")),
    security(("bearer" = []))
)]
pub async fn list_sources(
    State(state): State<Arc<AppState>>,
    Query(q): Query<AllQuery>,
) -> Result<Json<Value>, ApiError> {
    let all = matches!(q.all.as_deref(), Some("true" | "1" | "yes"));
    let list = sources::list_sources(state.services.store.as_ref(), all).await?;
    Ok(Json(Value::Array(list.into_iter().map(shown).collect())))
}

#[utoipa::path(
    post,
    path = "/api/harvest/sources",
    tag = "harvest",
    description = "Registers a source.",
    request_body = NewSource,
    responses((status = 201, description = "the source", body = Source), (status = 400, description = "a field is wrong: `field` names it"), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)"), (status = 409, description = "a source of that name exists")),
    security(("bearer" = []))
)]
pub async fn add_source(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let new: NewSource = parse_body(&body)?;
    let source = sources::add_source(state.services.store.as_ref(), new).await?;
    Ok((StatusCode::CREATED, Json(shown(source))).into_response())
}

#[utoipa::path(
    get,
    path = "/api/harvest/sources/{name}",
    tag = "harvest",
    description = "One source.",
    params(("name" = String, Path, description = "the source")),
    responses((status = 200, description = "the source", body = Source), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)"), (status = 404, description = "no such thing")),
    security(("bearer" = []))
)]
pub async fn show_source(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let source = pipeline::load_source(state.services.store.as_ref(), &name).await?;
    Ok(Json(shown(source)))
}

#[utoipa::path(
    patch,
    path = "/api/harvest/sources/{name}",
    tag = "harvest",
    description = "Changes a source (the fields given).",
    params(("name" = String, Path, description = "the source")),
    request_body = SourcePatch,
    responses((status = 200, description = "the source", body = Source), (status = 400, description = "a field is wrong: `field` names it"), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)"), (status = 404, description = "no such thing")),
    security(("bearer" = []))
)]
pub async fn patch_source(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let patch: SourcePatch = parse_body(&body)?;
    let source = sources::patch_source(state.services.store.as_ref(), &name, patch).await?;
    Ok(Json(shown(source)))
}

#[utoipa::path(
    delete,
    path = "/api/harvest/sources/{name}",
    tag = "harvest",
    description = "Deactivates a source; its records stay.",
    params(("name" = String, Path, description = "the source")),
    responses((status = 200, description = "the source", body = Source), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)"), (status = 404, description = "no such thing")),
    security(("bearer" = []))
)]
pub async fn deactivate_source(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let source = sources::deactivate_source(state.services.store.as_ref(), &name).await?;
    Ok(Json(shown(source)))
}

#[utoipa::path(
    post,
    path = "/api/harvest/sources/{name}/clear",
    tag = "harvest",
    description = "Removes a source's records, jobs and documents; the source stays.",
    params(("name" = String, Path, description = "the source")),
    responses((status = 200, description = "how many records went"), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)"), (status = 404, description = "no such thing")),
    security(("bearer" = []))
)]
pub async fn clear_source(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let removed = pipeline::clear_source(&state.services, &name).await?;
    Ok(Json(json!({"success": true, "records_removed": removed})))
}

#[utoipa::path(
    post,
    path = "/api/harvest/sources/{name}/jobs",
    tag = "harvest",
    description = "Starts a harvest job (409 while one is unfinished).",
    params(("name" = String, Path, description = "the source")),
    responses((status = 201, description = "the job", body = Job), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)"), (status = 404, description = "no such thing"), (status = 409, description = "a job is unfinished")),
    security(("bearer" = []))
)]
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

#[utoipa::path(
    get,
    path = "/api/harvest/jobs",
    tag = "harvest",
    description = "Jobs, newest first.",
    params(("source" = Option<String>, Query, description = "one source's"), ("limit" = Option<usize>, Query, description = "at most (100, up to 1000)"), ("offset" = Option<usize>, Query, description = "skipped first")),
    responses((status = 200, description = "the jobs", body = Vec<Job>), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)")),
    security(("bearer" = []))
)]
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

#[utoipa::path(
    get,
    path = "/api/harvest/jobs/{id}",
    tag = "harvest",
    description = "One job.",
    params(("id" = String, Path, description = "the job")),
    responses((status = 200, description = "the job", body = Job), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)"), (status = 404, description = "no such thing")),
    security(("bearer" = []))
)]
pub async fn show_job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = pipeline::find_job(state.services.store.as_ref(), &id).await?;
    Ok(Json(json!(job)))
}

#[utoipa::path(
    post,
    path = "/api/harvest/jobs/{id}/abort",
    tag = "harvest",
    description = "Aborts an unfinished job.",
    params(("id" = String, Path, description = "the job")),
    responses((status = 200, description = "the job", body = Job), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)"), (status = 404, description = "no such thing")),
    security(("bearer" = []))
)]
pub async fn abort_job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = pipeline::find_job(state.services.store.as_ref(), &id).await?;
    let job = pipeline::abort_job(&state.services, &job.source, &id, "aborted by request").await?;
    Ok(Json(json!(job)))
}

#[utoipa::path(
    get,
    path = "/api/catalog/search",
    tag = "catalogue",
    description = "Searches the catalogue: `{total, page, page_size, records, facets}`.",
    params(("q" = Option<String>, Query, description = "words, all of which match (stemmed)"), ("bbox" = Option<String>, Query, description = "W,S,E,N"), ("start" = Option<String>, Query, description = "time extent overlapping from (a year, month, day or RFC 3339)"), ("end" = Option<String>, Query, description = "time extent overlapping until"), ("source" = Option<String>, Query, description = "one source's"), ("keyword" = Option<String>, Query, description = "a keyword"), ("format" = Option<String>, Query, description = "iso19139, iso19115-3, dublin-core or ckan"), ("sort" = Option<String>, Query, description = "relevance, date or title"), ("page" = Option<u64>, Query, description = "from 1"), ("page_size" = Option<u64>, Query, description = "records a page")),
    responses((status = 200, description = "a page of records"), (status = 400, description = "a field is wrong: `field` names it"))
)]
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
#[utoipa::path(
    get,
    path = "/api/catalog/records/{id}",
    tag = "catalogue",
    description = "A record as JSON; `ID.xml` its original document, `ID.jsonld` schema.org Dataset.",
    params(("id" = String, Path, description = "the identifier, with .xml or .jsonld for those")),
    responses((status = 200, description = "the record"), (status = 404, description = "no such thing"))
)]
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

#[utoipa::path(
    get,
    path = "/api/catalog/queues",
    tag = "catalogue",
    description = "Depth of every queue and its dead-letter queue.",
    responses((status = 200, description = "`{queue: {visible, in_flight, dead_letters}}`"), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)")),
    security(("bearer" = []))
)]
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
pub struct RedriveQuery {
    max: Option<usize>,
}

/// Dead letters looked at by one call at most: it must end within API Gateway's 29 s.
const REDRIVE_MAX: usize = 500;

#[utoipa::path(
    post,
    path = "/api/catalog/queues/{queue}/redrive",
    tag = "catalogue",
    description = "Sends the queue's dead letters back to do their work: `{queue, looked_at, resent, taken_over, jobs_started, dropped, left}`. A harvest message whose job has ended is taken over by a new harvest job of its source (or the one running); one whose document its still-running job ended is left until that job finishes. Call again while `looked_at` equals `max`.",
    params(("queue" = String, Path, description = "gather, fetch, import, index, rebuild, notify, package-fast or package-slow"), ("max" = Option<usize>, Query, description = "dead letters looked at (100, at most 500)")),
    responses((status = 200, description = "what became of them"), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)"), (status = 404, description = "no such queue")),
    security(("bearer" = []))
)]
pub async fn redrive(
    State(state): State<Arc<AppState>>,
    Path(queue): Path<String>,
    Query(q): Query<RedriveQuery>,
) -> Result<Json<Value>, ApiError> {
    let name = crate::queue::QueueName::parse(&queue)
        .ok_or_else(|| ApiError::NotFound(format!("queue {queue} not found")))?;
    let max = q.max.unwrap_or(100).clamp(1, REDRIVE_MAX);
    let report = pipeline::redrive(&state.services, name, max).await?;
    Ok(Json(json!(report)))
}

#[derive(Deserialize)]
pub struct LogQuery {
    level: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// ckanext-harvest's `harvest_log_list`: `{"success": true, "result": [{content, level, created}]}`.
#[utoipa::path(
    get,
    path = "/api/harvest/log",
    tag = "harvest",
    description = "The harvest log, newest first (ckanext-harvest's harvest_log_list).",
    params(("level" = Option<String>, Query, description = "DEBUG, INFO, WARNING or ERROR"), ("limit" = Option<usize>, Query, description = "at most (100, up to 1000)"), ("offset" = Option<usize>, Query, description = "skipped first")),
    responses((status = 200, description = "`{success, result: [{content, level, created}]}`"), (status = 401, description = "no token, or a wrong one (WWW-Authenticate: Bearer)")),
    security(("bearer" = []))
)]
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

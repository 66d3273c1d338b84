//! `/ogcapi`: OGC API – Records over the search index, as JSON (GeoJSON for records) or, with
//! `f=html` or a browser's Accept, as HTML.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};

use super::{AppState, query_pairs};
use crate::catalog::{self, CatalogError};
use crate::ogcapi::{self, COLLECTION, GEOJSON, ItemsQuery, html};

/// `f` decides; without it a browser (text/html before any JSON) gets HTML.
fn wants_html(query: &[(String, String)], headers: &HeaderMap) -> bool {
    if let Some((_, f)) = query.iter().find(|(k, _)| k == "f") {
        return f == "html";
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match (accept.find("text/html"), accept.find("json")) {
        (Some(h), Some(j)) => h < j,
        (Some(_), None) => true,
        _ => false,
    }
}

fn error(status: StatusCode, code: &str, description: String) -> Response {
    (
        status,
        Json(json!({"code": code, "description": description})),
    )
        .into_response()
}

fn failed(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "OGC API request failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ServerError",
        "the catalogue could not answer; try again".into(),
    )
}

fn bases(state: &AppState) -> (String, String) {
    let root = state.services.settings.public_url.trim_end_matches('/');
    (format!("{root}/ogcapi"), format!("{root}/api"))
}

fn document(doc: Value, html: bool, kind: &'static str) -> Response {
    if html {
        Html(html::links_page(&doc)).into_response()
    } else {
        ([(header::CONTENT_TYPE, kind)], Json(doc)).into_response()
    }
}

#[utoipa::path(
    get,
    path = "/ogcapi",
    tag = "standards",
    description = "OGC API – Records: the landing page (`/ogcapi/` too); `f=html` or a browser's Accept for HTML.",
    responses((status = 200, description = "the landing page"))
)]
pub async fn landing(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let html = wants_html(&query_pairs(query.as_deref().unwrap_or("")), &headers);
    document(ogcapi::landing(&bases(&state).0), html, "application/json")
}

#[utoipa::path(
    get,
    path = "/ogcapi/conformance",
    tag = "standards",
    description = "The conformance classes.",
    responses((status = 200, description = "conformance"))
)]
pub async fn conformance(RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let doc = ogcapi::conformance();
    if wants_html(&query_pairs(query.as_deref().unwrap_or("")), &headers) {
        let links: Vec<Value> = doc["conformsTo"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| json!({"href": c, "title": c, "rel": "conformance"}))
            .collect();
        return Html(html::links_page(
            &json!({"title": "Conformance", "links": links}),
        ))
        .into_response();
    }
    Json(doc).into_response()
}

#[utoipa::path(
    get,
    path = "/ogcapi/collections",
    tag = "standards",
    description = "The collections (one: `metadata`).",
    responses((status = 200, description = "collections"))
)]
pub async fn collections(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let html = wants_html(&query_pairs(query.as_deref().unwrap_or("")), &headers);
    document(
        ogcapi::collections(&bases(&state).0),
        html,
        "application/json",
    )
}

fn no_such_collection(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("no collection {name:?}: the catalogue is {COLLECTION:?}"),
    )
}

#[utoipa::path(
    get,
    path = "/ogcapi/collections/{name}",
    tag = "standards",
    description = "One collection.",
    params(("name" = String, Path, description = "metadata")),
    responses((status = 200, description = "the collection"), (status = 404, description = "no such thing"))
)]
pub async fn collection(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if name != COLLECTION {
        return no_such_collection(&name);
    }
    let html = wants_html(&query_pairs(query.as_deref().unwrap_or("")), &headers);
    document(
        ogcapi::collection(&bases(&state).0),
        html,
        "application/json",
    )
}

#[utoipa::path(
    get,
    path = "/ogcapi/collections/{name}/items",
    tag = "standards",
    description = "Records as GeoJSON features, with next/prev links.",
    params(("name" = String, Path, description = "metadata"), ("q" = Option<String>, Query, description = "words"), ("bbox" = Option<String>, Query, description = "W,S,E,N"), ("datetime" = Option<String>, Query, description = "an instant or an interval (`..` an open end)"), ("filter" = Option<String>, Query, description = "CQL"), ("sortby" = Option<String>, Query, description = "a field, `-` for descending"), ("limit" = Option<u64>, Query, description = "features a page"), ("offset" = Option<u64>, Query, description = "skipped first")),
    responses((status = 200, description = "a page of features", content_type = "application/geo+json"), (status = 400, description = "a field is wrong: `field` names it"), (status = 404, description = "no such thing"))
)]
pub async fn items(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if name != COLLECTION {
        return no_such_collection(&name);
    }
    let given = query_pairs(query.as_deref().unwrap_or(""));
    let query = match ItemsQuery::parse(&given) {
        Ok(q) => q,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValue",
                e.to_string(),
            );
        }
    };
    let hits = match state.services.index.search(&query.search).await {
        Ok(hits) => hits,
        Err(e) => return failed(e),
    };
    let (base, api) = bases(&state);
    let doc = ogcapi::items(&base, &api, &query, &hits);
    if wants_html(&given, &headers) {
        return Html(html::items_page(&base, &query, &doc)).into_response();
    }
    ([(header::CONTENT_TYPE, GEOJSON)], Json(doc)).into_response()
}

#[utoipa::path(
    get,
    path = "/ogcapi/collections/{name}/items/{id}",
    tag = "standards",
    description = "One record as a GeoJSON feature.",
    params(("name" = String, Path, description = "metadata"), ("id" = String, Path, description = "the record's identifier")),
    responses((status = 200, description = "the feature", content_type = "application/geo+json"), (status = 404, description = "no such thing"))
)]
pub async fn item(
    State(state): State<Arc<AppState>>,
    Path((name, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if name != COLLECTION {
        return no_such_collection(&name);
    }
    let record = match catalog::get_record(state.services.store.as_ref(), &id).await {
        Ok(r) => r,
        Err(CatalogError::NotFound(_)) => {
            return error(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no record {id:?}"),
            );
        }
        Err(e) => return failed(e),
    };
    let (base, api) = bases(&state);
    let doc = ogcapi::record(&base, &api, &record);
    if wants_html(&query_pairs(query.as_deref().unwrap_or("")), &headers) {
        return Html(html::record_page(&doc)).into_response();
    }
    ([(header::CONTENT_TYPE, GEOJSON)], Json(doc)).into_response()
}

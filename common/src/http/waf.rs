//! The central WAF as a browsable listing (HTML, or JSON on `Accept: application/json`), and
//! signed `/downloads/` links in local mode.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState};
use crate::package::LinkSigner;
use crate::store::StoreError;

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[utoipa::path(
    get,
    path = "/waf/",
    tag = "waf",
    description = "The central WAF: one folder per source (`/waf` too); JSON with Accept: application/json.",
    responses((status = 200, description = "the listing"))
)]
pub async fn root(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    listing(&state, "", &headers).await
}

#[utoipa::path(
    get,
    path = "/waf/{path}",
    tag = "waf",
    description = "A folder listing or a document of the central WAF.",
    params(("path" = String, Path, description = "a source's folder or a document in it")),
    responses((status = 200, description = "the listing or the document"), (status = 404, description = "no such thing"))
)]
pub async fn path(
    State(state): State<Arc<AppState>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if path.is_empty() || path.ends_with('/') {
        return listing(&state, &path, &headers).await;
    }
    let key = format!("waf/{path}");
    match state.services.store.get(&key).await {
        Ok(obj) => Ok(([(header::CONTENT_TYPE, "application/xml")], obj.body).into_response()),
        Err(StoreError::InvalidKey(_)) => Err(ApiError::NotFound(format!("/waf/{path} not found"))),
        Err(StoreError::NotFound(_)) => {
            // A folder named without its slash: send the browser to the listing.
            let folder = format!("{key}/");
            let has_children = !state
                .services
                .store
                .list(&folder)
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .is_empty();
            if has_children {
                Ok((
                    StatusCode::MOVED_PERMANENTLY,
                    [(header::LOCATION, format!("/waf/{path}/"))],
                )
                    .into_response())
            } else {
                Err(ApiError::NotFound(format!("/waf/{path} not found")))
            }
        }
        Err(e) => Err(ApiError::Internal(e.to_string())),
    }
}

/// One level of the WAF: its folders and files, as a web server's autoindex would list them.
async fn listing(
    state: &AppState,
    folder: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let prefix = format!("waf/{folder}");
    let entries = state
        .services
        .store
        .list(&prefix)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if entries.is_empty() && !folder.is_empty() {
        return Err(ApiError::NotFound(format!("/waf/{folder} not found")));
    }
    let mut folders = std::collections::BTreeSet::new();
    let mut files = BTreeMap::new();
    for e in &entries {
        let rest = &e.key[prefix.len()..];
        match rest.split_once('/') {
            Some((dir, _)) => {
                folders.insert(dir.to_string());
            }
            None => {
                files.insert(rest.to_string(), e.size);
            }
        }
    }
    if wants_json(headers) {
        let items: Vec<_> = folders
            .iter()
            .map(|f| json!({"name": format!("{f}/"), "type": "directory"}))
            .chain(
                files
                    .iter()
                    .map(|(f, size)| json!({"name": f, "type": "file", "size": size})),
            )
            .collect();
        return Ok(
            axum::Json(json!({"path": format!("/waf/{folder}"), "entries": items})).into_response(),
        );
    }
    let mut html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Index of /waf/{0}</title></head><body>\n<h1>Index of /waf/{0}</h1><hr><pre>\n",
        escape(folder)
    );
    if !folder.is_empty() {
        html.push_str("<a href=\"../\">../</a>\n");
    }
    for f in &folders {
        html.push_str(&format!("<a href=\"{0}/\">{0}/</a>\n", escape(f)));
    }
    for (f, size) in &files {
        html.push_str(&format!("<a href=\"{0}\">{0}</a> {size}\n", escape(f)));
    }
    html.push_str("</pre><hr></body></html>\n");
    Ok(Html(html).into_response())
}

#[derive(Deserialize)]
pub struct Signature {
    expires: u64,
    signature: String,
}

/// A download link (a package's emailed link, or a local presigned link): while its signature
/// and expiry hold, local mode streams the file and AWS mode redirects to a short-lived S3
/// presigned URL made now, with the credentials this function has now.
#[utoipa::path(
    get,
    path = "/downloads/{key}",
    tag = "packaging",
    description = "A package's zip through its emailed, signed link (`expires`, `signature`): served locally, a redirect to S3 on AWS.",
    params(("key" = String, Path, description = "the zip's key"), ("expires" = u64, Query, description = "Unix time the link ends"), ("signature" = String, Query, description = "the link's HMAC")),
    responses((status = 200, description = "the zip", content_type = "application/zip"), (status = 303, description = "to a short-lived S3 link"), (status = 403, description = "a wrong or expired link"), (status = 404, description = "no such thing"))
)]
pub async fn download(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(sig): Query<Signature>,
) -> Result<Response, ApiError> {
    let store = &state.services.store;
    let signer = LinkSigner::load(store.as_ref())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let valid = signer.verify(&key, sig.expires, &sig.signature)
        || state
            .local_store
            .as_ref()
            .is_some_and(|local| local.verify_signature(&key, sig.expires, &sig.signature));
    if !valid {
        return Ok((StatusCode::FORBIDDEN, "invalid or expired link").into_response());
    }
    let file_name = key
        .rsplit('/')
        .next()
        .unwrap_or("download")
        .replace('"', "");
    let disposition = format!("attachment; filename=\"{file_name}\"");
    let content_type = if key.ends_with(".zip") {
        "application/zip"
    } else {
        "application/octet-stream"
    };
    let Some(local) = &state.local_store else {
        let url = store
            .presign_get(&key, std::time::Duration::from_secs(300))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        return Ok(Redirect::to(&url).into_response());
    };
    let path = local
        .file_path(&key)
        .map_err(|_| ApiError::NotFound("download not found".into()))?;
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::NotFound("download not found".into()));
        }
        Err(e) => return Err(ApiError::Internal(e.to_string())),
    };
    let length = file
        .metadata()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .len();
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 16));
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_LENGTH, length.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

//! `/admin`: a plain page of sources and their latest jobs, for now.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Html;

use super::{ApiError, AppState};
use crate::pipeline;
use crate::sources;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub async fn page(State(state): State<Arc<AppState>>) -> Result<Html<String>, ApiError> {
    let store = state.services.store.as_ref();
    let mut rows = String::new();
    for source in sources::list_sources(store, true).await? {
        let latest = pipeline::list_jobs(store, Some(&source.name), 1, 0)
            .await?
            .into_iter()
            .next();
        let job = latest.map_or_else(
            || "no job yet".to_string(),
            |j| {
                format!(
                    "{} {:?}: {} added, {} updated, {} unchanged, {} deleted, {} errored",
                    j.id,
                    j.status,
                    j.stats.added,
                    j.stats.updated,
                    j.stats.unchanged,
                    j.stats.deleted,
                    j.stats.errored
                )
            },
        );
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td></tr>\n",
            escape(&source.name),
            source.source_type.as_str(),
            escape(&source.url),
            escape(&source.url),
            if source.active { "active" } else { "inactive" },
            escape(&job)
        ));
    }
    Ok(Html(format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Sheaf admin</title></head><body>\
<h1>Sheaf</h1><p><a href=\"/waf/\">Central WAF</a> · <a href=\"/api/catalog/search\">Catalogue</a> · \
<a href=\"/api/harvest/jobs\">Jobs</a> · <a href=\"/api/catalog/queues\">Queues</a></p>\
<table border=\"1\"><tr><th>Source</th><th>Type</th><th>URL</th><th>State</th><th>Latest job</th></tr>\n{rows}</table></body></html>"
    )))
}

/// `GET /` (the packager's `POST /` is its status): people land on the admin page.
pub async fn to_admin() -> axum::response::Redirect {
    axum::response::Redirect::to("/admin")
}

//! `/api/openapi.json`: an OpenAPI 3 document of the whole HTTP API, generated from the
//! handlers' own `#[utoipa::path]` annotations; a test checks it against the routes the router
//! declares.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, PathItem};
use utoipa::{Modify, OpenApi};

use super::{admin, catalog, csw, harvest, notifications, ogcapi, packager, waf};
use crate::domain::job::{ErrorEntry, Job, JobStats, JobStatus, NoticeState};
use crate::domain::source::{Frequency, Source, SourceType};
use crate::notify::{Backfill, Failure, NewTarget, Target, TargetPatch};
use crate::sources::{NewSource, SourcePatch};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sheaf",
        description = "Harvests metadata into a central WAF and a catalogue, tells partner catalogues of every change, and packs datastore downloads (ckanpackager's API). Calls under /api need `Authorization: Bearer SHEAF_API_TOKEN` (reading ones also SHEAF_API_READ_TOKEN) but the catalogue's search and records and /api/auth; ckanpackager's calls take its `secret` in the body."
    ),
    paths(
        harvest::list_sources, harvest::add_source, harvest::show_source, harvest::patch_source,
        harvest::deactivate_source, harvest::clear_source, harvest::start_job, harvest::list_jobs,
        harvest::show_job, harvest::abort_job, harvest::log, harvest::search, harvest::show_record,
        harvest::queues,
        harvest::redrive,
        catalog::status, catalog::rebuild, catalog::rebuild_result, catalog::rebuild_report,
        catalog::rejected,
        notifications::list_targets, notifications::add_target, notifications::patch_target,
        notifications::remove_target, notifications::failures, notifications::retry,
        packager::api_statistics, packager::status, packager::package_datastore,
        packager::package_dwc_archive, packager::package_url, packager::statistics,
        packager::statistics_requests, packager::statistics_errors, packager::clear_cache,
        csw::get, csw::post,
        ogcapi::landing, ogcapi::conformance, ogcapi::collections, ogcapi::collection,
        ogcapi::items, ogcapi::item,
        waf::root, waf::path, waf::download,
        admin::page, admin::script, admin::style, admin::auth, admin::to_admin,
        document,
    ),
    components(schemas(
        Source, SourceType, Frequency, NewSource, SourcePatch, Job, JobStatus, JobStats,
        ErrorEntry, NoticeState, Target, Backfill, NewTarget, TargetPatch, Failure
    )),
    modifiers(&BearerToken, &Aliases, &OperationIds)
)]
struct ApiDoc;

/// The bearer scheme the `/api` calls name.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "SHEAF_API_TOKEN, or SHEAF_API_READ_TOKEN for the reading calls",
                    ))
                    .build(),
            ),
        );
    }
}

/// Routes that serve the same handler at a second path, as the router declares them.
const ALIASES: &[(&str, &str)] = &[
    ("/status", "/"),
    ("/clear_cache", "/clear_caches"),
    ("/waf/", "/waf"),
    ("/ogcapi", "/ogcapi/"),
];

struct Aliases;

impl Modify for Aliases {
    fn modify(&self, openapi: &mut Document) {
        for (path, alias) in ALIASES {
            let Some(item) = openapi.paths.paths.get(*path).cloned() else {
                continue;
            };
            let merged = match openapi.paths.paths.remove(*alias) {
                Some(mut existing) => {
                    merge(&mut existing, item);
                    existing
                }
                None => item,
            };
            openapi.paths.paths.insert(alias.to_string(), merged);
        }
    }
}

/// Operation ids from method and path: unique, where the handlers' names (and the aliases'
/// copies) are not.
struct OperationIds;

impl Modify for OperationIds {
    fn modify(&self, openapi: &mut Document) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let slug: String = path
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            for (method, operation) in [
                ("get", &mut item.get),
                ("post", &mut item.post),
                ("put", &mut item.put),
                ("patch", &mut item.patch),
                ("delete", &mut item.delete),
            ] {
                if let Some(operation) = operation {
                    operation.operation_id = Some(format!("{method}{slug}"));
                }
            }
        }
    }
}

/// Adds `from`'s operations to `into` (where `into` has none for that method).
fn merge(into: &mut PathItem, from: PathItem) {
    into.get = into.get.take().or(from.get);
    into.post = into.post.take().or(from.post);
    into.put = into.put.take().or(from.put);
    into.patch = into.patch.take().or(from.patch);
    into.delete = into.delete.take().or(from.delete);
}

#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "admin",
    description = "This document.",
    responses((status = 200, description = "the OpenAPI 3 document"))
)]
pub async fn document() -> Json<Document> {
    Json(ApiDoc::openapi())
}

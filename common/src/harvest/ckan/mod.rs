//! CKAN portals (ckanext-harvest's CKAN harvester): `package_search` pages sorted by id for the
//! listing, `package_show` for each dataset, the package JSON kept in the central WAF and read
//! into a record with the source's options applied.
//!
//! After a harvest that ended without errors, the next lists only the datasets modified since
//! it started (less an hour for clocks apart), as ckanext-harvest does; `force_all` lists all.
//! Such a harvest deletes nothing, since CKAN's search does not tell what was deleted: a full
//! harvest (the first, or `force_all`) removes the records of datasets gone from the portal.
//! Paging ends at an empty page (the `count` of a page is not trusted: datasets added while
//! paging move others along); a page that repeats the one before fails the gather.

mod config;
mod options;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{
    Fetched, GatherError, GatherPage, Gathered, Harvester, HarvesterInfo, fetch_unwrapped,
    get_listing, last_error_free_start,
};
use crate::domain::job::{DocumentState, HarvestObject};
use crate::domain::keys;
use crate::domain::record::Metadata;
use crate::domain::source::{FieldError, Source};
use crate::fetch::{FetchError, FetchRequest};
use crate::parse::{Rejection, read_package};
use crate::services::Services;
use config::CkanConfig;

/// Datasets a search page asks for (ckanext-harvest's 100).
const ROWS: u64 = 100;
const MAX_PAGE_BYTES: u64 = 50 * 1024 * 1024;

pub struct CkanHarvester;

/// Where the listing stands: the next `start`, the `fq` every page sends, and a digest of the
/// page before.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cursor {
    start: u64,
    fq: Option<String>,
    previous: Option<String>,
}

fn base(source: &Source) -> &str {
    source.url.trim_end_matches('/')
}

fn action_url(source: &Source, action: &str, params: &[(&str, &str)]) -> Result<url::Url, String> {
    let mut url = url::Url::parse(&format!("{}/api/3/action/{action}", base(source)))
        .map_err(|e| format!("invalid source URL: {e}"))?;
    url.query_pairs_mut().extend_pairs(params);
    Ok(url)
}

fn search_url(source: &Source, cursor: &Cursor) -> Result<url::Url, String> {
    let (rows, start) = (ROWS.to_string(), cursor.start.to_string());
    let mut params = Vec::new();
    if let Some(fq) = &cursor.fq {
        params.push(("fq", fq.as_str()));
    }
    params.extend([
        ("rows", rows.as_str()),
        ("start", start.as_str()),
        ("sort", "id asc"),
    ]);
    action_url(source, "package_search", &params)
}

/// A GET to the source's CKAN, with the key and user agent its config names.
fn request(config: &CkanConfig, url: &str, max_bytes: u64) -> FetchRequest {
    let mut request = FetchRequest::new(url, max_bytes);
    request.authorization = config.api_key.clone();
    request.user_agent = config.user_agent.clone();
    request
}

/// When the last harvest without errors started, less an hour (ckanext-harvest's margin),
/// as Solr writes a time; `None` for a full listing.
async fn changed_since(
    services: &Services,
    source: &Source,
    config: &CkanConfig,
) -> Result<Option<String>, GatherError> {
    if config.force_all {
        return Ok(None);
    }
    let start = last_error_free_start(services, source).await?;
    Ok(start.map(|t| {
        (t - chrono::Duration::hours(1))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    }))
}

/// The datasets of one `package_search` answer: (id, type) of each.
fn read_search_page(body: &[u8]) -> Result<Vec<(String, Option<String>)>, String> {
    let answer: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the CKAN search answer is not JSON: {e}"))?;
    if answer.get("success") == Some(&Value::Bool(false)) {
        return Err(format!(
            "the CKAN search failed: {}",
            answer.get("error").unwrap_or(&Value::Null)
        ));
    }
    let Some(results) = answer.pointer("/result/results").and_then(Value::as_array) else {
        return Err("the CKAN search answer has no result.results".into());
    };
    results
        .iter()
        .map(|dataset| {
            // The name stands in for a missing id, as in package_show and the reader.
            let id = ["id", "name"]
                .iter()
                .find_map(|k| dataset.get(*k).and_then(Value::as_str))
                .filter(|id| !id.trim().is_empty())
                .ok_or("a dataset of the CKAN search answer has neither id nor name")?;
            let kind = dataset.get("type").and_then(Value::as_str);
            Ok((id.to_string(), kind.map(str::to_string)))
        })
        .collect()
}

fn digest(ids: &[(String, Option<String>)]) -> String {
    let mut hash = Sha256::new();
    for (id, _) in ids {
        hash.update(id.as_bytes());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..16])
}

/// The package inside a `package_show` answer, as the JSON document the central WAF keeps.
pub fn unwrap_package(body: &[u8]) -> Result<bytes::Bytes, String> {
    let answer: Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    if answer.get("success") != Some(&Value::Bool(true)) {
        return Err(format!(
            "package_show failed: {}",
            answer.get("error").unwrap_or(&Value::Null)
        ));
    }
    match answer.get("result") {
        Some(package @ Value::Object(_)) => serde_json::to_vec(package)
            .map(bytes::Bytes::from)
            .map_err(|e| e.to_string()),
        _ => Err("package_show answered no dataset".into()),
    }
}

impl CkanHarvester {
    async fn search(
        &self,
        services: &Services,
        source: &Source,
        config: &CkanConfig,
        cursor: &Cursor,
    ) -> Result<(url::Url, Vec<(String, Option<String>)>), GatherError> {
        let error = |message: String| GatherError {
            message,
            url: Some(source.url.clone()),
        };
        let url = search_url(source, cursor).map_err(error)?;
        let body = get_listing(services, request(config, url.as_str(), MAX_PAGE_BYTES)).await?;
        let page = read_search_page(&body).map_err(|message| GatherError {
            message,
            url: Some(url.to_string()),
        })?;
        Ok((url, page))
    }
}

#[async_trait]
impl Harvester for CkanHarvester {
    fn info(&self) -> HarvesterInfo {
        HarvesterInfo {
            name: "ckan",
            title: "CKAN",
            description: "Datasets of a remote CKAN (package_search, package_show), incremental after the first harvest",
        }
    }

    fn validate_config(&self, config: &Value) -> Result<(), FieldError> {
        config::validate(config)
    }

    fn original_url(&self, source: &Source, object: &HarvestObject) -> String {
        format!("{}/dataset/{}", base(source), object.guid)
    }

    async fn gather_page(
        &self,
        services: &Services,
        source: &Source,
        cursor: Option<&Value>,
    ) -> Result<GatherPage, GatherError> {
        let error = |message: String| GatherError {
            message,
            url: Some(source.url.clone()),
        };
        let config = CkanConfig::of(&source.config).map_err(error)?;
        let mut since = None;
        let (cursor, url, page) = match cursor {
            Some(value) => {
                let cursor: Cursor = serde_json::from_value(value.clone())
                    .map_err(|e| error(format!("unreadable gather cursor: {e}")))?;
                let (url, page) = self.search(services, source, &config, &cursor).await?;
                (cursor, url, page)
            }
            None => {
                let mut terms = config.filter_terms();
                since = changed_since(services, source, &config).await?;
                if let Some(since) = &since {
                    terms.push(format!("metadata_modified:[{since} TO *]"));
                }
                let fq = (!terms.is_empty()).then(|| terms.join(" "));
                let cursor = Cursor {
                    start: 0,
                    fq,
                    previous: None,
                };
                match self.search(services, source, &config, &cursor).await {
                    Ok((url, page)) => (cursor, url, page),
                    // A CKAN that cannot search by modification date is listed in full.
                    Err(e) if since.is_some() => {
                        tracing::warn!(source = %source.name, error = %e, "incremental search failed; listing every dataset");
                        since = None;
                        let terms = config.filter_terms();
                        let cursor = Cursor {
                            start: 0,
                            fq: (!terms.is_empty()).then(|| terms.join(" ")),
                            previous: None,
                        };
                        let (url, page) = self.search(services, source, &config, &cursor).await?;
                        (cursor, url, page)
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let this_page = digest(&page);
        if !page.is_empty() && cursor.previous.as_deref() == Some(this_page.as_str()) {
            return Err(GatherError {
                message: format!(
                    "the CKAN answered the same datasets for start={} as for the page before: its paging does not work",
                    cursor.start
                ),
                url: Some(url.to_string()),
            });
        }
        let next = if page.is_empty() {
            None
        } else {
            let next = Cursor {
                start: cursor.start + ROWS,
                fq: cursor.fq.clone(),
                previous: Some(this_page),
            };
            Some(serde_json::to_value(next).map_err(|e| error(format!("gather cursor: {e}")))?)
        };
        let mut documents = Vec::with_capacity(page.len());
        for (id, kind) in page {
            // A harvest source registered as a dataset is not one (ckanext-harvest skips it).
            if kind.as_deref() == Some("harvest") {
                continue;
            }
            let url = action_url(source, "package_show", &[("id", &id)]).map_err(error)?;
            documents.push(Gathered {
                waf_name: format!("{}.json", keys::id_key(&id)),
                url: url.to_string(),
                guid: id,
                kept_sha256: None,
                listed: None,
            });
        }
        Ok(GatherPage {
            documents,
            next,
            changed_since: since,
            ..GatherPage::default()
        })
    }

    async fn fetch(
        &self,
        services: &Services,
        source: &Source,
        object: &HarvestObject,
        previous: Option<&DocumentState>,
    ) -> Result<Fetched, FetchError> {
        let config = CkanConfig::of(&source.config).map_err(|reason| FetchError::Unusable {
            url: object.url.clone(),
            reason,
        })?;
        let request = request(&config, &object.url, services.settings.max_document_bytes);
        fetch_unwrapped(services, request, previous, unwrap_package).await
    }

    fn import(
        &self,
        _services: &Services,
        source: &Source,
        document: &[u8],
    ) -> Result<Metadata, Rejection> {
        let config = CkanConfig::of(&source.config).map_err(Rejection::Invalid)?;
        let mut metadata = read_package(document)?;
        options::apply(&config, source, &mut metadata);
        Ok(metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(url: &str) -> Source {
        serde_json::from_value(serde_json::json!({"name": "c", "url": url, "type": "ckan"}))
            .expect("a source")
    }

    #[test]
    fn searches_are_asked_as_ckanext_harvest_asks_them() {
        let cursor = Cursor {
            start: 100,
            fq: Some("-organization:org1 metadata_modified:[2015-10-23T13:51:13Z TO *]".into()),
            previous: None,
        };
        let url = search_url(&source("http://h/ckan/"), &cursor).unwrap();
        assert_eq!(
            url.as_str(),
            "http://h/ckan/api/3/action/package_search?fq=-organization%3Aorg1+metadata_modified%3A%5B2015-10-23T13%3A51%3A13Z+TO+*%5D&rows=100&start=100&sort=id+asc"
        );
    }

    #[test]
    fn answers_that_are_not_a_search_or_a_package_say_why() {
        assert!(
            read_search_page(b"<html>")
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(
            read_search_page(br#"{"success": false, "error": {"message": "Solr"}}"#)
                .unwrap_err()
                .contains("Solr")
        );
        assert!(
            read_search_page(br#"{"success": true, "result": {"results": [{"title": "x"}]}}"#)
                .unwrap_err()
                .contains("neither id nor name")
        );
        assert!(
            unwrap_package(br#"{"success": false, "error": {"message": "Not found"}}"#)
                .unwrap_err()
                .contains("Not found")
        );
        let kept =
            unwrap_package(br#"{"success": true, "result": {"name": "n", "id": "i"}}"#).unwrap();
        assert_eq!(&kept[..], br#"{"id":"i","name":"n"}"#);
    }
}

//! The harvester interface a source type implements (ckanext-harvest's `IHarvester`:
//! info, validate_config, gather, fetch, import, plus the link to an original document).

mod ckan;
mod csw;
mod default_tags;
mod oai_pmh;
mod unwrap;
mod waf;

use async_trait::async_trait;
use bytes::Bytes;

use crate::domain::job::{DocumentState, HarvestObject};
use crate::domain::record::Metadata;
use crate::domain::source::{FieldError, Source, SourceType};
use crate::fetch::{FetchError, FetchRequest};
use crate::parse::{Rejection, XmlLimits, read_metadata};
use crate::services::Services;

pub use ckan::{CkanHarvester, unwrap_package as unwrap_ckan_package};
pub use csw::{
    CswHarvester, read_search_results as read_csw_search_results,
    unwrap_record as unwrap_csw_record,
};
pub use oai_pmh::{OaiPmhHarvester, unwrap_record as unwrap_oai_record};
pub use waf::{WafHarvester, parse_listing};

#[derive(Debug, Clone, serde::Serialize)]
pub struct HarvesterInfo {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
}

/// One document a gather found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Gathered {
    /// Stable across harvests: the identity of the document at the source.
    pub guid: String,
    pub url: String,
    /// Path of the copy under `waf/SOURCE/`, already safe for a key.
    pub waf_name: String,
    /// The SHA-256 of the copy already kept (a re-import): nothing is fetched, the copy is
    /// imported again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_sha256: Option<String>,
    /// Its line in a WAF's listing, when the listing gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed: Option<crate::domain::job::Listed>,
}

impl Gathered {
    /// A record a protocol names by its identifier (CSW, OAI-PMH), fetched from `url` and
    /// kept as `ID.xml`.
    pub fn record(id: String, url: &url::Url) -> Self {
        Gathered {
            waf_name: format!("{}.xml", crate::domain::keys::id_key(&id)),
            url: url.to_string(),
            guid: id,
            kept_sha256: None,
            listed: None,
        }
    }
}

/// One page of a source's listing; the gather keeps it as read (create-once), so a page read
/// again after a crash gives the same documents and the same next cursor.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct GatherPage {
    pub documents: Vec<Gathered>,
    /// Where the next page starts (the harvester's own, serialisable state); `None` when the
    /// listing is complete.
    pub next: Option<serde_json::Value>,
    /// Set on the first page of a listing of only what changed since then (an incremental
    /// harvest): its job removes only what the source says it deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_since: Option<String>,
    /// GUIDs the source says it deleted (OAI-PMH's deleted headers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<String>,
}

/// Why a gather failed; nothing is deleted after one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct GatherError {
    pub message: String,
    pub url: Option<String>,
}

impl From<FetchError> for GatherError {
    fn from(e: FetchError) -> Self {
        let url = match &e {
            FetchError::InvalidUrl { url, .. }
            | FetchError::Refused { url, .. }
            | FetchError::TooLarge { url, .. }
            | FetchError::Status { url, .. }
            | FetchError::Transport { url, .. }
            | FetchError::Unusable { url, .. } => Some(url.clone()),
        };
        GatherError {
            message: e.to_string(),
            url,
        }
    }
}

/// What a fetch brought.
#[derive(Debug, Clone)]
pub enum Fetched {
    /// The server said 304: the copy we have is current (and last modified then, when the
    /// answer says).
    NotModified { last_modified: Option<String> },
    Document {
        body: Bytes,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

#[async_trait]
pub trait Harvester: Send + Sync {
    fn info(&self) -> HarvesterInfo;

    /// Checks a source's `config`; the error names the field.
    fn validate_config(&self, config: &serde_json::Value) -> Result<(), FieldError>;

    /// The link users follow to the original document.
    fn original_url(&self, _source: &Source, object: &HarvestObject) -> String {
        object.url.clone()
    }

    /// Reads one page of the source's listing: from its start when `cursor` is `None`, else
    /// from where the previous page's `next` left it. A page is a unit of work small enough to
    /// finish well within one invocation; the pipeline keeps the cursor between invocations,
    /// so a listing of any length gathers in flat memory.
    async fn gather_page(
        &self,
        services: &Services,
        source: &Source,
        cursor: Option<&serde_json::Value>,
    ) -> Result<GatherPage, GatherError>;

    /// A conditional GET of the document, using what the last harvest remembered.
    async fn fetch(
        &self,
        services: &Services,
        _source: &Source,
        object: &HarvestObject,
        previous: Option<&DocumentState>,
    ) -> Result<Fetched, FetchError> {
        fetch_document(services, object, previous).await
    }

    /// Reads a fetched document into catalogue metadata.
    fn import(
        &self,
        services: &Services,
        source: &Source,
        document: &[u8],
    ) -> Result<Metadata, Rejection> {
        let mut metadata = read_metadata(
            document,
            XmlLimits {
                max_bytes: services.settings.max_document_bytes as usize,
                ..XmlLimits::default()
            },
        )?;
        default_tags::add(&default_tags::of(&source.config), &mut metadata);
        Ok(metadata)
    }
}

/// A conditional GET of an object's URL, using what the last harvest remembered.
pub async fn fetch_document(
    services: &Services,
    object: &HarvestObject,
    previous: Option<&DocumentState>,
) -> Result<Fetched, FetchError> {
    let request = FetchRequest::new(&object.url, services.settings.max_document_bytes);
    conditional_get(services, request, previous).await
}

/// `request` made conditional on what the last harvest remembered of the document.
async fn conditional_get(
    services: &Services,
    mut request: FetchRequest,
    previous: Option<&DocumentState>,
) -> Result<Fetched, FetchError> {
    if let Some(prev) = previous {
        request.if_none_match = prev.etag.clone();
        request.if_modified_since = prev.last_modified.clone();
    }
    let resp = services.fetcher.get(&request).await?;
    if resp.not_modified() {
        return Ok(Fetched::NotModified {
            last_modified: resp.last_modified,
        });
    }
    Ok(Fetched::Document {
        body: resp.body,
        etag: resp.etag,
        last_modified: resp.last_modified,
    })
}

/// A conditional GET of a protocol's answer, and the record `unwrap` takes out of it: the
/// central WAF keeps records, not answers. An answer without one is `Unusable`, with why.
pub(crate) async fn fetch_unwrapped(
    services: &Services,
    request: FetchRequest,
    previous: Option<&DocumentState>,
    unwrap: fn(&[u8]) -> Result<Bytes, String>,
) -> Result<Fetched, FetchError> {
    let url = request.url.clone();
    match conditional_get(services, request, previous).await? {
        not_modified @ Fetched::NotModified { .. } => Ok(not_modified),
        Fetched::Document {
            body,
            etag,
            last_modified,
        } => Ok(Fetched::Document {
            body: unwrap(&body).map_err(|reason| FetchError::Unusable { url, reason })?,
            etag,
            last_modified,
        }),
    }
}

/// Tries of one listing page (a CSW or OAI-PMH page) before its failure is the gather's, and
/// the wait before the first retry (doubled for the next).
const LISTING_TRIES: u32 = 3;
const LISTING_RETRY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// One page of a protocol's listing, tried again after a failure the server may get over.
pub(crate) async fn get_listing(
    services: &Services,
    request: FetchRequest,
) -> Result<Bytes, GatherError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match services.fetcher.get(&request).await {
            Ok(resp) => return Ok(resp.body),
            Err(e) if e.is_transient() && tries < LISTING_TRIES => {
                let url = &request.url;
                tracing::warn!(url = %url, error = %e, tries, "listing page failed, trying again");
                tokio::time::sleep(LISTING_RETRY_WAIT * 2u32.pow(tries - 1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// When the source's last harvest that ended without any error started: an incremental
/// harvest (CKAN, OAI-PMH) lists what changed since, less a margin for clocks apart. `None`
/// when there was none, or after something removed records outside a harvest.
pub(crate) async fn last_error_free_start(
    services: &Services,
    source: &Source,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, GatherError> {
    let key = crate::domain::keys::source_harvest_state(&source.name);
    let state = crate::store::get_json::<crate::domain::job::SourceHarvestState>(
        services.store.as_ref(),
        &key,
    )
    .await
    .map_err(|e| GatherError {
        message: format!("reading the source's harvest state: {e}"),
        url: None,
    })?;
    Ok(state
        .and_then(|(s, _)| s.error_free_started)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&chrono::Utc)))
}

/// `base` with a protocol's request parameters set (replacing any of the same name, in any
/// case, that it carried) and its other parameters kept.
pub(crate) fn with_params(base: &str, params: &[(&str, &str)]) -> Result<url::Url, String> {
    let mut url = url::Url::parse(base).map_err(|e| format!("invalid source URL: {e}"))?;
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !params.iter().any(|(p, _)| p.eq_ignore_ascii_case(k)))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.set_query(None);
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in kept
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(params.iter().copied())
        {
            query.append_pair(k, v);
        }
    }
    Ok(url)
}

/// The harvester of a source type; `None` for types not implemented yet.
pub fn harvester_for(source_type: SourceType) -> Option<&'static dyn Harvester> {
    match source_type {
        SourceType::Waf => Some(&WafHarvester),
        SourceType::Csw => Some(&CswHarvester),
        SourceType::OaiPmh => Some(&OaiPmhHarvester),
        SourceType::Ckan => Some(&CkanHarvester),
    }
}

/// Validates a whole source: common fields, then the type's config.
pub fn validate_source(source: &Source) -> Result<(), FieldError> {
    source.validate_common()?;
    let harvester = harvester_for(source.source_type).ok_or_else(|| {
        FieldError::new(
            "type",
            format!(
                "{} sources are not supported yet",
                source.source_type.as_str()
            ),
        )
    })?;
    harvester.validate_config(&source.config)
}

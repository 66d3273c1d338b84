//! Does the catalogue match the central WAF? Per source: the documents kept, the records and
//! rejections they became, the documents whose record is missing, and the records no document
//! backs (orphans); for the whole catalogue, the records against what the index holds. MET
//! Norway's catalog-rebuilder answers the same questions.

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::PipelineError;
use super::records::Marker;
use crate::domain::job::DocumentState;
use crate::domain::keys;
use crate::domain::record::Record;
use crate::services::Services;
use crate::store::{ObjectStore, Pages, get_json, page_of_keys};

/// Problems listed at most per source (the counts are complete).
const LISTED: usize = 100;

#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceIntegrity {
    pub source: String,
    /// Documents kept in the central WAF.
    pub documents: u64,
    pub records: u64,
    pub rejected: u64,
    /// Documents that became a record which is not in the catalogue.
    pub missing: u64,
    /// Records no document of the source backs.
    pub orphans: u64,
    /// The first missing ones (WAF keys) and orphans (record ids).
    pub missing_documents: Vec<String>,
    pub orphan_records: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CatalogIntegrity {
    pub sources: Vec<SourceIntegrity>,
    /// Records in the store.
    pub records: u64,
    /// Records the search index holds.
    pub indexed: u64,
    /// Records in the store the index does not hold, and entries of the index with no record
    /// in the store.
    pub unindexed: u64,
    pub ghosts: u64,
    /// Every source without missing records or orphans, and the index holding every record
    /// and nothing else.
    pub consistent: bool,
}

async fn count(store: &dyn ObjectStore, prefix: &str, suffix: &str) -> Result<u64, PipelineError> {
    let mut n = 0;
    let mut pages = Pages::new(store, prefix);
    while let Some(entries) = pages.next().await? {
        n += entries.iter().filter(|e| e.key.ends_with(suffix)).count() as u64;
    }
    Ok(n)
}

/// Whether record `id` is in the catalogue and held by document `guid` of `source`.
async fn held_by(
    store: &dyn ObjectStore,
    source: &str,
    id: &str,
    guid: &str,
) -> Result<bool, PipelineError> {
    let id_key = keys::id_key(id);
    let marker = get_json::<Marker>(store, &keys::record_marker(source, &id_key)).await?;
    if marker.is_none_or(|(m, _)| m.guid != guid) {
        return Ok(false);
    }
    Ok(get_json::<Record>(store, &keys::record_json(&id_key))
        .await?
        .is_some())
}

pub async fn source_integrity(
    services: &Services,
    source: &str,
) -> Result<SourceIntegrity, PipelineError> {
    let store = services.store.as_ref();
    let mut out = SourceIntegrity {
        source: source.to_string(),
        documents: count(store, &keys::waf_prefix(source), "").await?,
        rejected: count(store, &keys::rejected_of(source), ".json").await?,
        ..SourceIntegrity::default()
    };
    // Documents: each state names the record its document became.
    let prefix = keys::document_states(source);
    let mut pages = Pages::new(store, &prefix);
    while let Some(entries) = pages.next().await? {
        let missing: Vec<Option<String>> = futures::stream::iter(entries)
            .map(|entry| async move {
                let Some((state, _)) = get_json::<DocumentState>(store, &entry.key).await? else {
                    return Ok::<_, PipelineError>(None);
                };
                let Some(id) = &state.record_id else {
                    return Ok(None);
                };
                let held = held_by(store, source, id, &state.guid).await?;
                Ok((!held).then(|| state.waf_key.clone()))
            })
            .buffered(16)
            .try_collect()
            .await?;
        for key in missing.into_iter().flatten() {
            out.missing += 1;
            if out.missing_documents.len() < LISTED {
                out.missing_documents.push(key);
            }
        }
    }
    let (records, orphans) = orphan_records(services, source).await?;
    out.records = records;
    out.orphans = orphans.len() as u64;
    out.orphan_records = orphans.into_iter().take(LISTED).collect();
    Ok(out)
}

/// The source's records (counted) and, of them, the keys of those no document backs: a
/// marker whose document's state names another record, or none.
pub(super) async fn orphan_records(
    services: &Services,
    source: &str,
) -> Result<(u64, Vec<String>), PipelineError> {
    let store = services.store.as_ref();
    let prefix = keys::record_markers(source);
    let (mut records, mut orphans) = (0, Vec::new());
    let mut pages = Pages::new(store, &prefix);
    while let Some(entries) = pages.next().await? {
        let checked: Vec<Option<String>> = futures::stream::iter(entries)
            .map(|entry| {
                let prefix = &prefix;
                async move {
                    let id_key = entry.key[prefix.len()..].to_string();
                    let Some((marker, _)) = get_json::<Marker>(store, &entry.key).await? else {
                        return Ok::<_, PipelineError>(None);
                    };
                    let state_key = keys::document_state(source, &keys::object_id(&marker.guid));
                    let state = get_json::<DocumentState>(store, &state_key).await?;
                    let backed = state.is_some_and(|(s, _)| {
                        s.record_id.is_some_and(|id| keys::id_key(&id) == id_key)
                    });
                    Ok((!backed).then_some(id_key))
                }
            })
            .buffered(16)
            .try_collect()
            .await?;
        records += checked.len() as u64;
        orphans.extend(checked.into_iter().flatten());
    }
    Ok((records, orphans))
}

pub async fn catalog_integrity(services: &Services) -> Result<CatalogIntegrity, PipelineError> {
    let store = services.store.as_ref();
    let mut out = CatalogIntegrity::default();
    for source in crate::sources::list_sources(store, true).await? {
        out.sources
            .push(source_integrity(services, &source.name).await?);
    }
    let mut pages = Pages::new(store, keys::RECORDS);
    while let Some(entries) = pages.next().await? {
        let page_keys: Vec<String> = entries
            .iter()
            .filter_map(|e| e.key[keys::RECORDS.len()..].strip_suffix(".json"))
            .map(str::to_string)
            .collect();
        out.records += page_keys.len() as u64;
        let held = services.index.holds(page_keys).await?;
        out.unindexed += held.iter().filter(|h| !**h).count() as u64;
    }
    out.indexed = services.index.count().await?;
    // What the index holds beyond the records it should.
    out.ghosts = (out.indexed + out.unindexed).saturating_sub(out.records);
    out.consistent = out.unindexed == 0
        && out.ghosts == 0
        && out.sources.iter().all(|s| s.missing == 0 && s.orphans == 0);
    Ok(out)
}

/// Rejected documents (all sources, or one), `limit` from `offset` in key order: the keys are
/// listed, only the page's entries are read.
pub async fn list_rejected(
    services: &Services,
    source: Option<&str>,
    limit: usize,
    offset: usize,
) -> Result<Vec<super::Rejected>, PipelineError> {
    let store = services.store.as_ref();
    let prefix = match source {
        Some(s) => keys::rejected_of(s),
        None => "catalog/rejected/".to_string(),
    };
    let wanted = page_of_keys(store, &prefix, offset, limit, |key| key.ends_with(".json")).await?;
    let read: Vec<Option<super::Rejected>> =
        futures::stream::iter(wanted)
            .map(|key| async move {
                Ok::<_, PipelineError>(get_json(store, &key).await?.map(|(r, _)| r))
            })
            .buffered(16)
            .try_collect()
            .await?;
    Ok(read.into_iter().flatten().collect())
}

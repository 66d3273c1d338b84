//! Stale records (IOOS catalog-harvesting's STALE_EXPIRATION_DAYS): a complete harvest removes
//! the records its source no longer serves, so a record outlives its document only while its
//! source has no complete harvest: a server gone for good, a source left broken. After
//! `stale_expiration_days` without one (counted from the source's creation when it never had
//! one), the schedule removes the source's records, and says so in the harvest log.

use super::PipelineError;
use super::records::delete_record;
use crate::domain::job::SourceHarvestState;
use crate::domain::keys;
use crate::domain::source::Source;
use crate::services::Services;
use crate::store::{Pages, PutMode, get_json, put_json};

/// Removes `source`'s records when they are stale; returns how many.
pub(super) async fn expire_stale(
    services: &Services,
    source: &Source,
) -> Result<u64, PipelineError> {
    let Some(days) = services.settings.stale_expiration_days else {
        return Ok(0);
    };
    let store = services.store.as_ref();
    let state = get_json::<SourceHarvestState>(store, &keys::source_harvest_state(&source.name))
        .await?
        .map(|(s, _)| s);
    let since = match state.as_ref() {
        Some(s) => s.finished.as_deref(),
        None => Some(source.created.as_str()),
    };
    // A time we cannot read is no evidence of staleness.
    let Some(since) = since.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) else {
        return Ok(0);
    };
    if chrono::Utc::now() - since.with_timezone(&chrono::Utc) <= chrono::Duration::days(days.into())
    {
        return Ok(0);
    }
    let mut removed = 0u64;
    let prefix = keys::record_markers(&source.name);
    let mut pages = Pages::new(store, &prefix);
    while let Some(markers) = pages.next().await? {
        for marker in markers {
            delete_record(services, &source.name, &marker.key[prefix.len()..]).await?;
            removed += 1;
        }
    }
    // The next harvest lists every document again: an incremental one would bring back only
    // what changed since, and the records just removed stood for the rest.
    if let Some(mut state) = state
        && state.error_free_started.is_some()
    {
        state.error_free_started = None;
        let key = keys::source_harvest_state(&source.name);
        put_json(store, &key, &state, PutMode::Overwrite).await?;
    }
    if removed > 0 {
        tracing::info!(source = %source.name, removed, "stale records removed");
        crate::harvest_log::log(
            store,
            "INFO",
            format!(
                "Removed {removed} stale records of source {}: no completed harvest since {since} ({days} days)",
                source.name
            ),
        )
        .await;
    }
    Ok(removed)
}

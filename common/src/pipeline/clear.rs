//! `source clear`: a source's records, jobs, kept documents and state dropped; the source
//! itself stays.

use super::PipelineError;
use crate::domain::keys;
use crate::services::Services;
use crate::sources::load_source;
use crate::store::Pages;

/// Drops a source's records, jobs, documents and state; keeps the source itself.
pub async fn clear_source(services: &Services, source: &str) -> Result<u64, PipelineError> {
    let store = services.store.as_ref();
    load_source(store, source).await?;
    let mut removed = 0;
    // Paged: deleting behind the page read does not disturb the next page (it starts after
    // the last key read).
    let mut pages = Pages::new(store, &keys::record_markers(source));
    while let Some(markers) = pages.next().await? {
        for marker in markers {
            let id_key = marker.key.rsplit('/').next().unwrap_or_default();
            super::records::delete_record(services, source, id_key).await?;
            removed += 1;
        }
    }
    for prefix in [
        keys::jobs_of(source),
        keys::job_works(source),
        keys::waf_prefix(source),
        keys::document_states(source),
        keys::rejected_of(source),
    ] {
        let mut pages = Pages::new(store, &prefix);
        while let Some(entries) = pages.next().await? {
            for entry in entries {
                if let Some(job) = entry.key.strip_prefix(&keys::jobs_of(source))
                    && let Some(id) = job.strip_suffix(".json")
                    && !id.contains('/')
                {
                    store.delete(&keys::job_index(id)).await?;
                }
                store.delete(&entry.key).await?;
            }
        }
    }
    let mut pages = Pages::new(store, &keys::recent_jobs_of(source));
    while let Some(entries) = pages.next().await? {
        for entry in entries {
            let job = keys::newest_first(&entry.key[keys::recent_jobs_of(source).len()..]);
            store.delete(&keys::recent_job(&job, source)).await?;
            store.delete(&entry.key).await?;
        }
    }
    store.delete(&keys::job_lock(source)).await?;
    store.delete(&keys::source_harvest_state(source)).await?;
    Ok(removed)
}

//! The job check: counts the done markers, and once every gathered object is done finishes
//! the job (deleting what vanished from the source, after a clean gather only); otherwise it
//! sends itself again, later. Only the check carrying the job's current `check_seq` runs.

use futures::{StreamExt, TryStreamExt};

use super::PipelineError;
use super::gather::Departures;
use super::jobs::{send_check, update_job};
use super::objects::sha256_hex;
use super::records::{Marker, delete_record};
use crate::domain::job::{
    DocumentState, ErrorEntry, HarvestObject, Job, JobStats, JobStatus, Outcome, SourceHarvestState,
};
use crate::domain::keys;
use crate::domain::now;
use crate::services::Services;
use crate::store::{ObjectStore, Pages, PutMode, StoreError, for_each_name, get_json, put_json};
use serde::{Deserialize, Serialize};

/// Object errors kept in a job document at most (the rest stay in the object documents).
const MAX_OBJECT_ERRORS: usize = 1000;

/// A job's outcomes counted from its done markers, a page at a time.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub stats: JobStats,
    pub done: u64,
    /// The first errored objects, for the job document.
    errored: Vec<String>,
}

pub(super) async fn tally(
    store: &dyn ObjectStore,
    source: &str,
    job_id: &str,
) -> Result<Tally, PipelineError> {
    let prefix = keys::job_done_prefix(source, job_id);
    let mut tally = Tally::default();
    let mut last_id = String::new();
    let mut pages = Pages::new(store, &prefix);
    while let Some(entries) = pages.next().await? {
        for entry in entries {
            let Some((id, outcome)) = entry.key[prefix.len()..].split_once('=') else {
                continue;
            };
            let Some(outcome) = Outcome::parse(outcome) else {
                continue;
            };
            // An object has one outcome; should two markers say otherwise, it counts once.
            if id == last_id {
                continue;
            }
            last_id = id.to_string();
            tally.done += 1;
            let stats = &mut tally.stats;
            match outcome {
                Outcome::Added => stats.added += 1,
                Outcome::Updated => stats.updated += 1,
                Outcome::Unchanged => stats.unchanged += 1,
                Outcome::Errored => {
                    stats.errored += 1;
                    if tally.errored.len() < MAX_OBJECT_ERRORS {
                        tally.errored.push(id.to_string());
                    }
                }
            }
        }
    }
    Ok(tally)
}

pub(super) async fn check_job(
    services: &Services,
    source: &str,
    job_id: &str,
    seq: Option<u64>,
) -> Result<(), PipelineError> {
    let store = services.store.as_ref();
    let Some((job, _)) = get_json::<Job>(store, &keys::job(source, job_id)).await? else {
        return Ok(());
    };
    if job.status.is_done() {
        // A check redelivered after the job ended: its owner's email may still be due.
        super::owner_notice::try_deliver(services, &job).await;
        return Ok(());
    }
    if seq.is_some_and(|s| s != job.check_seq) {
        return Ok(());
    }
    let Some(total) = job.object_count else {
        return Ok(());
    };
    let tally = tally(store, source, job_id).await?;
    let (done, stats) = (tally.done, tally.stats);
    if done >= total {
        return finish(services, job, tally).await;
    }
    let job = update_job(store, source, job_id, |job| {
        if job.status.is_done() {
            return false;
        }
        if done > job.done_count {
            job.done_count = done;
            job.last_progress = Some(now());
        }
        job.stats = stats;
        job.check_seq += 1;
        job.last_check = Some(now());
        true
    })
    .await?;
    if job.status.is_done() {
        return Ok(());
    }
    send_check(services, &job, services.settings.check_delay).await
}

/// What a finishing job removes: records whose document left the source, and what Sheaf
/// kept of each document that left (its WAF copy, rejection and state). Listed once
/// (create-once), so a rerun removes the same.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Removals {
    /// Record id keys.
    records: Vec<String>,
    /// Object ids of documents no longer listed.
    documents: Vec<String>,
}

async fn plan_removals(
    store: &dyn ObjectStore,
    source: &str,
    job: &Job,
) -> Result<Removals, PipelineError> {
    let key = keys::job_removals(source, &job.id);
    if let Some((removals, _)) = get_json::<Removals>(store, &key).await? {
        return Ok(removals);
    }
    let departures = Departures::of(store, source, job).await?;
    let mut removals = Removals::default();
    let prefix = keys::record_markers(source);
    let mut pages = Pages::new(store, &prefix);
    while let Some(entries) = pages.next().await? {
        // A page's markers read at once: on S3 one at a time would not finish 100,000.
        let gone: Vec<Option<String>> = futures::stream::iter(entries)
            .map(|entry| {
                let departures = &departures;
                let prefix = &prefix;
                async move {
                    let marker = get_json::<Marker>(store, &entry.key).await?;
                    Ok::<_, PipelineError>(marker.and_then(|(marker, _)| {
                        let holder = keys::object_id(&marker.guid);
                        departures
                            .has_left(&holder)
                            .then(|| entry.key[prefix.len()..].to_string())
                    }))
                }
            })
            .buffered(16)
            .try_collect()
            .await?;
        removals.records.extend(gone.into_iter().flatten());
    }
    for_each_name(store, &keys::document_states(source), ".json", |id| {
        if departures.has_left(id) {
            removals.documents.push(id.to_string());
        }
    })
    .await?;
    match put_json(store, &key, &removals, PutMode::Create).await {
        Ok(_) => Ok(removals),
        Err(StoreError::Precondition(_)) => Ok(get_json::<Removals>(store, &key)
            .await?
            .map(|(r, _)| r)
            .unwrap_or_default()),
        Err(e) => Err(e.into()),
    }
}

/// Forgets a document that left the source: its WAF copy (unless another document's bytes
/// now sit at that key), its rejection, and its state last.
async fn forget_document(
    store: &dyn ObjectStore,
    source: &str,
    object_id: &str,
) -> Result<(), PipelineError> {
    let state_key = keys::document_state(source, object_id);
    if let Some((state, _)) = get_json::<DocumentState>(store, &state_key).await? {
        match store.get(&state.waf_key).await {
            Ok(copy) if sha256_hex(&copy.body) == state.sha256 => {
                store.delete(&state.waf_key).await?;
            }
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    store.delete(&keys::rejected(source, object_id)).await?;
    store.delete(&state_key).await?;
    Ok(())
}

/// Finishes a job whose objects are all done. Each step is the same on a rerun: what to
/// remove is listed once, removed, then the job is written finished. Nothing is removed after
/// a gather error (a failed listing, or a shrink refused for want of evidence).
pub(super) async fn finish(
    services: &Services,
    job: Job,
    tally: Tally,
) -> Result<(), PipelineError> {
    let store = services.store.as_ref();
    let (source, job_id) = (job.source.clone(), job.id.clone());
    let mut deleted = 0u64;
    // A re-import removes nothing: it lists what is kept, not what the source serves.
    if job.gather_errors.is_empty() && !job.reimport {
        let removals = plan_removals(store, &source, &job).await?;
        for id_key in &removals.records {
            delete_record(services, &source, id_key).await?;
        }
        for object_id in &removals.documents {
            forget_document(store, &source, object_id).await?;
        }
        deleted = removals.records.len() as u64;
        let state_key = keys::source_harvest_state(&source);
        let previous = get_json::<SourceHarvestState>(store, &state_key)
            .await?
            .map(|(s, _)| s)
            .unwrap_or_default();
        let state = SourceHarvestState {
            // An incremental listing is no measure of the source's size.
            last_gathered: match job.changed_since {
                None => job.object_count.unwrap_or_default(),
                Some(_) => previous.last_gathered,
            },
            last_job: job_id.clone(),
            finished: Some(now()),
            // After object errors the next incremental harvest goes back to the last clean
            // one, so the documents that failed are listed again.
            error_free_started: match tally.stats.errored {
                0 => job.started.clone(),
                _ => previous.error_free_started,
            },
        };
        put_json(store, &state_key, &state, PutMode::Overwrite).await?;
    }
    let mut object_errors = Vec::new();
    for id in &tally.errored {
        if let Some((object, _)) =
            get_json::<HarvestObject>(store, &keys::job_object(&source, &job_id, id)).await?
        {
            object_errors.push(ErrorEntry {
                message: object.error.unwrap_or_else(|| "unknown error".into()),
                original_url: Some(object.url),
            });
        }
    }
    let mut stats = tally.stats;
    stats.deleted = deleted;
    let mut changed = false;
    let finished = update_job(store, &source, &job_id, |job| {
        // The closure runs again when another writer won: only the last run counts.
        changed = false;
        if job.status.is_done() {
            return false;
        }
        job.status = JobStatus::Finished;
        job.finished = Some(now());
        job.stats = stats;
        job.done_count = tally.done;
        job.object_errors = object_errors.clone();
        job.last_check = Some(now());
        job.owner_notice = super::owner_notice::on_ending(job);
        changed = true;
        true
    })
    .await?;
    if changed {
        tracing::info!(source = %source, job = %job_id, stats = ?finished.stats, "job finished");
        for e in &finished.object_errors {
            let url = e.original_url.as_deref().unwrap_or("-");
            crate::harvest_log::log(
                store,
                "WARNING",
                format!("{}: {} ({url})", source, e.message),
            )
            .await;
        }
        let s = finished.stats;
        crate::harvest_log::log(
            store,
            "INFO",
            format!(
                "Job {job_id} of source {source} finished: {} added, {} updated, {} unchanged, {} deleted, {} errored",
                s.added, s.updated, s.unchanged, s.deleted, s.errored
            ),
        )
        .await;
    }
    super::owner_notice::try_deliver(services, &finished).await;
    Ok(())
}

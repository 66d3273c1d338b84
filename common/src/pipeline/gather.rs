//! Gather: list what the source has, write one object document per GUID (create-once), send
//! the fetches, then schedule the job's check.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};

use super::jobs::{load_source, release_lock, send, update_job};
use super::{Kind, Message, PipelineError};
use crate::domain::job::{ErrorEntry, HarvestObject, JobStatus};
use crate::domain::keys;
use crate::domain::now;
use crate::harvest::harvester_for;
use crate::services::Services;
use crate::store::{PutMode, StoreError, get_json, put_json};

pub(super) async fn gather(
    services: &Services,
    source_name: &str,
    job_id: &str,
) -> Result<(), PipelineError> {
    let store = services.store.as_ref();
    let job = update_job(store, source_name, job_id, |job| {
        if job.status != JobStatus::New {
            return false;
        }
        job.status = JobStatus::Running;
        job.started = Some(now());
        job.last_progress = Some(now());
        true
    })
    .await?;
    if job.status.is_done() {
        return Ok(());
    }
    if job.object_count.is_some() {
        // A redelivered gather of a completed one: make sure its check is on its way.
        if job.last_check.is_none() {
            let mut check = Message::new(Kind::CheckJob, source_name, job_id);
            check.seq = Some(job.check_seq);
            send(services, &check, Duration::ZERO).await?;
        }
        return Ok(());
    }
    let source = load_source(store, source_name).await?;
    let gathered = match harvester_for(source.source_type) {
        Some(h) => h.gather(services, &source).await,
        None => Err(crate::harvest::GatherError {
            message: format!(
                "{} sources are not supported yet",
                source.source_type.as_str()
            ),
            url: None,
        }),
    };
    let documents = match gathered {
        Ok(docs) => docs,
        Err(e) => {
            tracing::warn!(source = source_name, job = job_id, error = %e, "gather failed");
            crate::harvest_log::log(
                store,
                "ERROR",
                format!(
                    "Gather of job {job_id} of source {source_name} failed: {}",
                    e.message
                ),
            )
            .await;
            update_job(store, source_name, job_id, |job| {
                if job.status.is_done() {
                    return false;
                }
                job.gather_errors.push(ErrorEntry {
                    message: e.message.clone(),
                    original_url: e.url.clone(),
                });
                job.status = JobStatus::Finished;
                job.finished = Some(now());
                true
            })
            .await?;
            release_lock(store, source_name, job_id).await?;
            return Ok(());
        }
    };
    let guids: Vec<&str> = documents.iter().map(|d| d.guid.as_str()).collect();
    put_json(
        store,
        &keys::job_gathered(source_name, job_id),
        &guids,
        PutMode::Overwrite,
    )
    .await?;

    // One object document per GUID; a redelivered gather finds them and re-sends only the
    // fetches of objects not yet done.
    let pending: Vec<Option<String>> = futures::stream::iter(documents.clone())
        .map(|doc| {
            let store = services.store.clone();
            let (source_name, job_id) = (source_name.to_string(), job_id.to_string());
            async move { create_object(store.as_ref(), &source_name, &job_id, doc).await }
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;

    let bodies: Vec<String> = pending
        .into_iter()
        .flatten()
        .map(|id| Message::for_object(Kind::Fetch, source_name, job_id, &id).body())
        .collect();
    let sent = bodies.len();
    services
        .queues
        .get(crate::queue::QueueName::Fetch)?
        .send_batch(bodies)
        .await?;
    let count = documents.len() as u64;
    let job = update_job(store, source_name, job_id, |job| {
        if job.object_count == Some(count) {
            return false;
        }
        job.object_count = Some(count);
        job.last_progress = Some(now());
        job.check_seq += 1;
        true
    })
    .await?;
    let mut check = Message::new(Kind::CheckJob, source_name, job_id);
    check.seq = Some(job.check_seq);
    send(
        services,
        &check,
        services.settings.check_delay.min(Duration::from_secs(900)),
    )
    .await?;
    tracing::info!(
        source = source_name,
        job = job_id,
        documents = count,
        fetches = sent,
        "gathered"
    );
    Ok(())
}

/// Creates a gathered document's object once; `Some(id)` when it still needs its fetch.
async fn create_object(
    store: &dyn crate::store::ObjectStore,
    source_name: &str,
    job_id: &str,
    doc: crate::harvest::Gathered,
) -> Result<Option<String>, PipelineError> {
    let id = keys::object_id(&doc.guid);
    let object = HarvestObject {
        id: id.clone(),
        guid: doc.guid.clone(),
        url: doc.url.clone(),
        waf_key: format!("{}{}", keys::waf_prefix(source_name), doc.waf_name),
        sha256: None,
        etag: None,
        last_modified: None,
        planned: None,
        outcome: None,
        error: None,
        record_id: None,
    };
    let key = keys::job_object(source_name, job_id, &id);
    match put_json(store, &key, &object, PutMode::Create).await {
        Ok(_) => Ok(Some(id)),
        Err(StoreError::Precondition(_)) => {
            let existing = get_json::<HarvestObject>(store, &key).await?;
            Ok(existing.filter(|(o, _)| o.outcome.is_none()).map(|_| id))
        }
        Err(e) => Err(PipelineError::from(e)),
    }
}

//! Gather: list what the source has, write one object document per GUID (create-once), send
//! the fetches, then schedule the job's check.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};

use super::jobs::{load_source, send, update_job};
use super::{Kind, Message, PipelineError};
use crate::domain::job::{ErrorEntry, HarvestObject, Job, JobStatus, SourceHarvestState};
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
            let message = format!(
                "Gather of job {job_id} of source {source_name} failed: {}",
                e.message
            );
            return record_gather_error(services, &job, message, e.message, e.url, true).await;
        }
    };
    // Deletions need evidence: a gather that found nothing, or far fewer documents than the
    // last completed one, more likely met a broken server than a real shrink.
    let last = get_json::<SourceHarvestState>(store, &keys::source_harvest_state(source_name))
        .await?
        .map_or(0, |(s, _)| s.last_gathered);
    if let Some(reason) = shrink_refusal(
        documents.len() as u64,
        last,
        source.shrink_threshold(),
        job.allow_shrink,
    ) {
        tracing::error!(
            source = source_name,
            job = job_id,
            reason,
            "gather refused as a shrink"
        );
        let log = format!("Gather of job {job_id} of source {source_name}: {reason}");
        let finish_now = documents.is_empty();
        let url = Some(source.url.clone());
        record_gather_error(services, &job, log, reason, url, finish_now).await?;
        if finish_now {
            return Ok(());
        }
    }
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

/// Why a gather of `found` documents, after a last completed gather of `last`, must delete
/// nothing; `None` when it is evidence enough.
fn shrink_refusal(found: u64, last: u64, threshold: f64, allowed: bool) -> Option<String> {
    if allowed || threshold <= 0.0 {
        return None;
    }
    let accept = "accept a real shrink with `sheaf run-test NAME --allow-shrink` or the \
        source's config.shrink_threshold";
    if found == 0 {
        return Some(format!(
            "the source lists no documents; nothing is deleted ({accept})"
        ));
    }
    if (found as f64) < threshold * last as f64 {
        return Some(format!(
            "the source lists {found} documents, fewer than {:.0}% of the {last} of the last \
             completed gather; nothing is deleted ({accept})",
            threshold * 100.0
        ));
    }
    None
}

/// Records a gather error in the job (once) and the harvest log; `finish` ends the job there
/// (nothing was gathered to work on). The check finishes a job that has objects, and deletes
/// nothing after a gather error.
async fn record_gather_error(
    services: &Services,
    job: &Job,
    log: String,
    message: String,
    url: Option<String>,
    finish: bool,
) -> Result<(), PipelineError> {
    let store = services.store.as_ref();
    crate::harvest_log::log(store, "ERROR", log).await;
    let mut finished = false;
    let job = update_job(store, &job.source, &job.id, |job| {
        if job.status.is_done() || job.gather_errors.iter().any(|e| e.message == message) {
            return false;
        }
        job.gather_errors.push(ErrorEntry {
            message: message.clone(),
            original_url: url.clone(),
        });
        if finish {
            job.status = JobStatus::Finished;
            job.finished = Some(now());
            finished = true;
        }
        true
    })
    .await?;
    if finished {
        super::check::notify_owner(services, &job).await;
    }
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

//! The job check: counts the done markers, and once every gathered object is done finishes
//! the job (deleting what vanished from the source, after a clean gather only); otherwise it
//! sends itself again, later. Only the check carrying the job's current `check_seq` runs.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use super::import::Marker;
use super::jobs::{delete_record, load_source, release_lock, send, update_job};
use super::{Kind, Message, PipelineError};
use crate::domain::job::{ErrorEntry, HarvestObject, Job, JobStats, JobStatus, Outcome};
use crate::domain::keys;
use crate::domain::now;
use crate::mail::Email;
use crate::services::Services;
use crate::store::{PutMode, StoreError, get_json, put_json};

/// Object errors kept in a job document at most (the rest stay in the object documents).
const MAX_OBJECT_ERRORS: usize = 1000;

async fn outcomes(
    services: &Services,
    source: &str,
    job_id: &str,
) -> Result<BTreeMap<String, Outcome>, PipelineError> {
    let prefix = keys::job_done_prefix(source, job_id);
    let mut out = BTreeMap::new();
    for entry in services.store.list(&prefix).await? {
        if let Some((id, outcome)) = entry.key[prefix.len()..].split_once('=')
            && let Some(outcome) = Outcome::parse(outcome)
        {
            out.insert(id.to_string(), outcome);
        }
    }
    Ok(out)
}

fn count(outcomes: &BTreeMap<String, Outcome>) -> JobStats {
    let mut stats = JobStats::default();
    for o in outcomes.values() {
        match o {
            Outcome::Added => stats.added += 1,
            Outcome::Updated => stats.updated += 1,
            Outcome::Unchanged => stats.unchanged += 1,
            Outcome::Errored => stats.errored += 1,
        }
    }
    stats
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
    if job.status.is_done() || seq.is_some_and(|s| s != job.check_seq) {
        return Ok(());
    }
    let Some(total) = job.object_count else {
        return Ok(());
    };
    let outcomes = outcomes(services, source, job_id).await?;
    let done = outcomes.len() as u64;
    if done >= total {
        return finish(services, job, outcomes).await;
    }
    let stats = count(&outcomes);
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
    let mut next = Message::new(Kind::CheckJob, source, job_id);
    next.seq = Some(job.check_seq);
    send(
        services,
        &next,
        services.settings.check_delay.min(Duration::from_secs(900)),
    )
    .await
}

/// Finishes a job whose objects are all done. Each step is the same on a rerun: the
/// deletions are listed once (create-once), deleted, then the job is written finished.
pub(super) async fn finish(
    services: &Services,
    job: Job,
    outcomes: BTreeMap<String, Outcome>,
) -> Result<(), PipelineError> {
    let store = services.store.as_ref();
    let (source, job_id) = (job.source.clone(), job.id.clone());
    let mut deleted = 0u64;
    if job.gather_errors.is_empty() {
        let deletions_key = keys::job_deletions(&source, &job_id);
        let deletions: Vec<String> = match get_json::<Vec<String>>(store, &deletions_key).await? {
            Some((list, _)) => list,
            None => {
                let gathered: HashSet<String> =
                    get_json::<Vec<String>>(store, &keys::job_gathered(&source, &job_id))
                        .await?
                        .map(|(g, _)| g.into_iter().collect())
                        .ok_or_else(|| {
                            PipelineError::NotFound(format!("gather result of job {job_id}"))
                        })?;
                let mut list = Vec::new();
                let prefix = keys::record_markers(&source);
                for entry in store.list(&prefix).await? {
                    if let Some((marker, _)) = get_json::<Marker>(store, &entry.key).await?
                        && !gathered.contains(&marker.guid)
                    {
                        list.push(entry.key[prefix.len()..].to_string());
                    }
                }
                match put_json(store, &deletions_key, &list, PutMode::Create).await {
                    Ok(_) => list,
                    Err(StoreError::Precondition(_)) => {
                        get_json::<Vec<String>>(store, &deletions_key)
                            .await?
                            .map(|(l, _)| l)
                            .unwrap_or_default()
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        for id_key in &deletions {
            delete_record(store, &source, id_key).await?;
        }
        deleted = deletions.len() as u64;
    }
    let mut object_errors = Vec::new();
    for (id, outcome) in &outcomes {
        if *outcome != Outcome::Errored || object_errors.len() >= MAX_OBJECT_ERRORS {
            continue;
        }
        if let Some((object, _)) =
            get_json::<HarvestObject>(store, &keys::job_object(&source, &job_id, id)).await?
        {
            object_errors.push(ErrorEntry {
                message: object.error.unwrap_or_else(|| "unknown error".into()),
                original_url: Some(object.url),
            });
        }
    }
    let mut stats = count(&outcomes);
    stats.deleted = deleted;
    let mut changed = false;
    let finished = update_job(store, &source, &job_id, |job| {
        if job.status.is_done() {
            return false;
        }
        job.status = JobStatus::Finished;
        job.finished = Some(now());
        job.stats = stats;
        job.done_count = outcomes.len() as u64;
        job.object_errors = object_errors.clone();
        job.last_check = Some(now());
        changed = true;
        true
    })
    .await?;
    release_lock(store, &source, &job_id).await?;
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
        notify_owner(services, &finished).await;
    }
    Ok(())
}

/// Emails the source's owner a summary of a job that had errors. A failure to send is
/// logged: the job's outcome is recorded either way.
async fn notify_owner(services: &Services, job: &Job) {
    if job.stats.errored == 0 && job.gather_errors.is_empty() {
        return;
    }
    let Ok(source) = load_source(services.store.as_ref(), &job.source).await else {
        return;
    };
    let Some(owner) = source.owner.clone() else {
        return;
    };
    let mut text = format!(
        "The harvest job {} of source {} finished with errors.\n\nAdded {}, updated {}, unchanged {}, deleted {}, errored {}.\n",
        job.id,
        job.source,
        job.stats.added,
        job.stats.updated,
        job.stats.unchanged,
        job.stats.deleted,
        job.stats.errored
    );
    for e in job.gather_errors.iter().chain(&job.object_errors).take(50) {
        text.push_str(&format!(
            "\n- {} ({})",
            e.message,
            e.original_url.as_deref().unwrap_or("-")
        ));
    }
    text.push_str(&format!(
        "\n\nDetails: {}/api/harvest/jobs/{}\n",
        services.settings.public_url, job.id
    ));
    let email = Email {
        from: services.settings.mail_from.clone(),
        to: vec![owner],
        subject: format!("Sheaf: harvest of {} had errors", job.source),
        text,
        html: None,
    };
    if let Err(e) = services.mailer.send(&email).await {
        tracing::warn!(source = %job.source, error = %e, "could not email the job summary");
    }
}

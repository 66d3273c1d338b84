//! Creating, reading, updating and ending jobs.

use std::time::Duration;

use bytes::Bytes;

use super::{Kind, Message, PipelineError};
use crate::domain::job::Job;
use crate::domain::keys;
use crate::services::Services;
use crate::sources::load_source;
use crate::store::{ObjectStore, PutMode, StoreError, get_json, page_of_keys, put_json};

pub(super) async fn send(
    services: &Services,
    message: &Message,
    delay: Duration,
) -> Result<(), PipelineError> {
    services
        .queues
        .get(message.queue())?
        .send(message.body(), delay)
        .await?;
    Ok(())
}

/// Sends the job's check carrying its current `check_seq` (a check with an older number is
/// dropped), after `delay` (at most SQS's 15 minutes).
pub(super) async fn send_check(
    services: &Services,
    job: &Job,
    delay: Duration,
) -> Result<(), PipelineError> {
    let mut check = Message::new(Kind::CheckJob, &job.source, &job.id);
    check.seq = Some(job.check_seq);
    send(services, &check, delay.min(Duration::from_secs(900))).await
}

/// When a job was created, from its sortable id.
fn job_time(id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let stamp = id.get(..16)?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

pub async fn get_job(
    store: &dyn ObjectStore,
    source: &str,
    id: &str,
) -> Result<Job, PipelineError> {
    get_json::<Job>(store, &keys::job(source, id))
        .await?
        .map(|(j, _)| j)
        .ok_or_else(|| PipelineError::NotFound(format!("job {id} of source {source}")))
}

/// A job by its id alone.
pub async fn find_job(store: &dyn ObjectStore, id: &str) -> Result<Job, PipelineError> {
    let not_found = || PipelineError::NotFound(format!("job {id}"));
    if id.is_empty() || id.contains('/') || id.contains("..") {
        return Err(not_found());
    }
    let source = match store.get(&keys::job_index(id)).await {
        Ok(obj) => String::from_utf8_lossy(&obj.body).to_string(),
        Err(StoreError::NotFound(_)) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    get_job(store, &source, id).await
}

/// Jobs newest first, of one source or of all.
pub async fn list_jobs(
    store: &dyn ObjectStore,
    source: Option<&str>,
    limit: usize,
    offset: usize,
) -> Result<Vec<Job>, PipelineError> {
    let prefix = source.map_or_else(|| keys::RECENT_JOBS.to_string(), keys::recent_jobs_of);
    // The markers sort newest first: list until the page is full, then read its jobs.
    let markers = page_of_keys(store, &prefix, offset, limit, |_| true).await?;
    let page: Vec<String> = markers
        .iter()
        .filter_map(|key| {
            let rest = &key[prefix.len()..];
            match source {
                Some(s) => Some(keys::job(s, &keys::newest_first(rest))),
                None => rest
                    .split_once('/')
                    .map(|(job, s)| keys::job(s, &keys::newest_first(job))),
            }
        })
        .collect();
    let mut jobs = Vec::with_capacity(page.len());
    for key in page {
        if let Some((job, _)) = get_json::<Job>(store, &key).await? {
            jobs.push(job);
        }
    }
    Ok(jobs)
}

/// Reads, changes and writes a job with `If-Match`, retrying when another writer won.
/// `change` returns false to leave the job as it is.
pub(super) async fn update_job(
    store: &dyn ObjectStore,
    source: &str,
    id: &str,
    mut change: impl FnMut(&mut Job) -> bool,
) -> Result<Job, PipelineError> {
    let key = keys::job(source, id);
    for _ in 0..20 {
        let (mut job, etag) = get_json::<Job>(store, &key)
            .await?
            .ok_or_else(|| PipelineError::NotFound(format!("job {id} of source {source}")))?;
        if !change(&mut job) {
            return Ok(job);
        }
        match put_json(store, &key, &job, PutMode::Update(etag)).await {
            Ok(_) => return Ok(job),
            Err(StoreError::Precondition(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(PipelineError::Conflict(format!(
        "job {id} kept changing under us"
    )))
}

/// Creates a job for `source` and sends its gather. A source has at most one unfinished job:
/// a create-once lock names it, and a lock whose job has ended (or never got written) is stale
/// and is taken over with `If-Match`. A lock is never deleted when its job ends: a delete
/// after a check could remove the lock a newer job has just taken.
pub async fn start_job(services: &Services, source_name: &str) -> Result<Job, PipelineError> {
    start_job_with(services, source_name, JobOptions::default()).await
}

/// How one job runs, beside its source's settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobOptions {
    /// Accept a gather that lists far fewer documents than the last completed one.
    pub allow_shrink: bool,
    /// Import the documents already in the central WAF again instead of harvesting.
    pub reimport: bool,
}

pub async fn start_job_with(
    services: &Services,
    source_name: &str,
    options: JobOptions,
) -> Result<Job, PipelineError> {
    let store = services.store.as_ref();
    let source = load_source(store, source_name).await?;
    if !source.active {
        return Err(PipelineError::Conflict(format!(
            "source {source_name} is not active"
        )));
    }
    let job = Job {
        allow_shrink: options.allow_shrink,
        reimport: options.reimport,
        ..Job::new(source_name)
    };
    let lock = keys::job_lock(source_name);
    let body = Bytes::from(job.id.clone());
    match store
        .put(&lock, body.clone(), "text/plain", PutMode::Create)
        .await
    {
        Ok(_) => {}
        Err(StoreError::Precondition(_)) => {
            let held = store.get(&lock).await?;
            let holder = String::from_utf8_lossy(&held.body).to_string();
            let stale = match get_json::<Job>(store, &keys::job(source_name, &holder)).await? {
                Some((j, _)) => j.status.is_done(),
                // A lock over a minute old whose job was never written: its creator died.
                None => job_time(&holder)
                    .is_none_or(|t| chrono::Utc::now() - t > chrono::Duration::minutes(1)),
            };
            if !stale {
                return Err(PipelineError::Conflict(format!(
                    "source {source_name} already has an unfinished job {holder}"
                )));
            }
            store
                .put(&lock, body, "text/plain", PutMode::Update(held.etag))
                .await
                .map_err(|e| match e {
                    StoreError::Precondition(_) => PipelineError::Conflict(format!(
                        "source {source_name} is starting another job"
                    )),
                    other => other.into(),
                })?;
        }
        Err(e) => return Err(e.into()),
    }
    store
        .put(
            &keys::job_index(&job.id),
            Bytes::from(source_name.to_string()),
            "text/plain",
            PutMode::Overwrite,
        )
        .await?;
    for key in [
        keys::recent_job(&job.id, source_name),
        keys::recent_job_of(source_name, &job.id),
    ] {
        store
            .put(&key, Bytes::new(), "text/plain", PutMode::Overwrite)
            .await?;
    }
    put_json(
        store,
        &keys::job(source_name, &job.id),
        &job,
        PutMode::Create,
    )
    .await?;
    send(
        services,
        &Message::new(Kind::Gather, source_name, &job.id),
        Duration::ZERO,
    )
    .await?;
    tracing::info!(source = source_name, job = %job.id, "job created");
    crate::harvest_log::log(
        store,
        "INFO",
        format!("Job {} of source {source_name} created", job.id),
    )
    .await;
    Ok(job)
}

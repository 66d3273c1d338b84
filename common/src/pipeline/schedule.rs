//! What the schedule does (the scheduler function, `sheaf run`, and `serve` every minute):
//! start due jobs, keep every running job's check alive, abort jobs that stopped moving.

use std::time::Duration;

use serde::Serialize;

use super::jobs::{abort_job, send, start_job, update_job};
use super::{Kind, Message, PipelineError};
use crate::domain::job::{Job, JobStatus};
use crate::domain::keys;
use crate::domain::now;
use crate::domain::source::Source;
use crate::services::Services;
use crate::store::{ObjectStore, StoreError, get_json};

#[derive(Debug, Default, Serialize)]
pub struct RunReport {
    pub log_entries_removed: u64,
    pub started: Vec<String>,
    pub checked: Vec<String>,
    pub aborted: Vec<String>,
    pub errors: Vec<String>,
}

fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// The job the source's lock names, if it was written.
async fn latest_job(store: &dyn ObjectStore, source: &str) -> Result<Option<Job>, PipelineError> {
    let holder = match store.get(&keys::job_lock(source)).await {
        Ok(lock) => String::from_utf8_lossy(&lock.body).into_owned(),
        Err(StoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(get_json::<Job>(store, &keys::job(source, &holder))
        .await?
        .map(|(job, _)| job))
}

pub async fn run_scheduled(services: &Services) -> Result<RunReport, PipelineError> {
    let store = services.store.as_ref();
    let mut report = RunReport::default();
    let now_t = chrono::Utc::now();
    let stall = chrono::Duration::from_std(services.settings.stall_timeout)
        .unwrap_or(chrono::Duration::hours(1));
    let check_gap =
        chrono::Duration::from_std(services.settings.check_delay * 3 + Duration::from_secs(60))
            .unwrap_or(chrono::Duration::minutes(5));

    let mut sources = Vec::new();
    for entry in store.list(keys::SOURCES).await? {
        if let Some((source, _)) = get_json::<Source>(store, &entry.key).await? {
            sources.push(source);
        }
    }
    for source in &sources {
        // The source's lock names its latest job (it is taken over, never removed), and only
        // the latest can be unfinished: a tick reads two objects a source, whatever the
        // number of jobs and objects behind it.
        let latest = latest_job(store, &source.name).await?;
        let unfinished: Vec<&Job> = latest.iter().filter(|j| !j.status.is_done()).collect();
        for job in &unfinished {
            let moved = job
                .last_progress
                .as_deref()
                .or(job.started.as_deref())
                .unwrap_or(&job.created);
            if parse_time(moved).is_some_and(|t| now_t - t > stall) {
                abort_job(
                    services,
                    &source.name,
                    &job.id,
                    "no progress within the stall timeout",
                )
                .await?;
                report.aborted.push(job.id.clone());
                continue;
            }
            let last_check = job.last_check.as_deref().unwrap_or(moved);
            if job.status == JobStatus::Running
                && job.object_count.is_some()
                && parse_time(last_check).is_some_and(|t| now_t - t > check_gap)
            {
                // The check chain was lost (a message dead-lettered): start a new one, which
                // retires the old by its sequence number.
                let job = update_job(store, &source.name, &job.id, |j| {
                    j.check_seq += 1;
                    j.last_check = Some(now());
                    true
                })
                .await?;
                let mut check = Message::new(Kind::CheckJob, &source.name, &job.id);
                check.seq = Some(job.check_seq);
                send(services, &check, Duration::ZERO).await?;
                report.checked.push(job.id.clone());
            }
        }
        if !source.active || !unfinished.is_empty() {
            continue;
        }
        let Some(period) = source.frequency.period() else {
            continue;
        };
        let due = latest
            .as_ref()
            .and_then(|j| parse_time(&j.created))
            .is_none_or(|last| now_t - last >= period);
        if due {
            match start_job(services, &source.name).await {
                Ok(job) => report.started.push(job.id),
                Err(e) => report.errors.push(format!("{}: {e}", source.name)),
            }
        }
    }
    report.log_entries_removed =
        crate::harvest_log::clean(store, services.settings.log_retention_days).await?;
    Ok(report)
}

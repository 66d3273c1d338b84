//! What the schedule does (the scheduler function, `sheaf run`, and `serve` every minute):
//! start due jobs, keep every running job's check alive, abort jobs that stopped moving.

use std::time::Duration;

use serde::Serialize;

use super::abort::abort_job;
use super::jobs::{send_check, start_job, update_job};
use super::{Message, PipelineError};
use crate::domain::job::{Job, JobStatus};
use crate::domain::keys;
use crate::domain::now;
use crate::queue::QueueName;
use crate::services::Services;
use crate::store::{ObjectStore, StoreError, get_json};

#[derive(Debug, Default, Serialize)]
pub struct RunReport {
    pub log_entries_removed: u64,
    pub started: Vec<String>,
    pub checked: Vec<String>,
    pub aborted: Vec<String>,
    /// Documents whose message reached a dead-letter queue, now ended as errored.
    pub dead_lettered: Vec<String>,
    /// Sources whose stale records were removed, with how many (`SOURCE: N`).
    pub expired: Vec<String>,
    /// Failed notifications sent again, and targets whose stalled backfill was resumed.
    pub notifications: crate::notify::ScheduleReport,
    pub errors: Vec<String>,
}

/// Messages looked at in each dead-letter queue per tick.
const DEAD_LETTERS_PER_TICK: usize = 100;

/// Ends as errored every document whose fetch or import message reached its dead-letter
/// queue (its handler kept dying, so it never recorded why), so its job finishes with the
/// error instead of stalling. The messages stay in the queue, to be redriven.
async fn sweep_dead_letters(services: &Services) -> Result<Vec<String>, PipelineError> {
    let mut ended = Vec::new();
    for queue in [QueueName::Fetch, QueueName::Import] {
        let Ok(q) = services.queues.get(queue) else {
            continue;
        };
        let letters = q
            .receive_dead_letters(DEAD_LETTERS_PER_TICK, Duration::from_secs(60))
            .await?;
        let swept = end_dead_lettered(services, queue, &letters, &mut ended).await;
        // Only read: shown again at once, so a redrive finds them.
        let receipts: Vec<String> = letters.iter().map(|l| l.receipt.clone()).collect();
        q.release_dead_letters(&receipts).await?;
        swept?;
    }
    Ok(ended)
}

async fn end_dead_lettered(
    services: &Services,
    queue: QueueName,
    letters: &[crate::queue::Received],
    ended: &mut Vec<String>,
) -> Result<(), PipelineError> {
    for letter in letters {
        let Ok(message) = serde_json::from_str::<Message>(&letter.body) else {
            continue;
        };
        let Some(object) = message.object.as_deref() else {
            continue;
        };
        let reason = PipelineError::Conflict(format!(
            "its {} message reached the dead-letter queue",
            queue.as_str()
        ));
        match super::objects::give_up(services, &message.source, &message.job, object, &reason)
            .await
        {
            Ok(true) => ended.push(object.to_string()),
            Ok(false) => {}
            // The job or object is gone (the source was cleared): nothing to end.
            Err(PipelineError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// The job the source's lock names, if it was written.
pub(super) async fn latest_job(
    store: &dyn ObjectStore,
    source: &str,
) -> Result<Option<Job>, PipelineError> {
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

    // A sweep that fails (a queue unreachable) must not stop the rest of the tick.
    match sweep_dead_letters(services).await {
        Ok(ended) => report.dead_lettered = ended,
        Err(e) => report.errors.push(format!("dead letters: {e}")),
    }
    for source in &crate::sources::list_sources(store, true).await? {
        match super::stale::expire_stale(services, source).await {
            Ok(0) => {}
            Ok(n) => report.expired.push(format!("{}: {n}", source.name)),
            Err(e) => report
                .errors
                .push(format!("{}: stale records: {e}", source.name)),
        }
        // The source's lock names its latest job (it is taken over, never removed), and only
        // the latest can be unfinished: a tick reads two objects a source, whatever the
        // number of jobs and objects behind it.
        let latest = latest_job(store, &source.name).await?;
        // An owner's email that could not go when its job ended goes now.
        if let Some(job) = latest.as_ref().filter(|j| j.status.is_done())
            && let Err(e) = super::owner_notice::deliver(services, job).await
        {
            report.errors.push(format!("{}: {e}", source.name));
        }
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
                send_check(services, &job, Duration::ZERO).await?;
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
    match crate::notify::on_schedule(services).await {
        Ok(notifications) => report.notifications = notifications,
        Err(e) => report.errors.push(format!("notifications: {e}")),
    }
    report.log_entries_removed =
        crate::harvest_log::clean(store, services.settings.log_retention_days).await?;
    Ok(report)
}

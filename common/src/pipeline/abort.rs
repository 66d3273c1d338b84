//! Aborting a job: it ends as aborted with its reason, and its owner is told as at any end.

use super::jobs::update_job;
use super::{PipelineError, owner_notice};
use crate::domain::job::{ErrorEntry, Job, JobStatus};
use crate::domain::now;
use crate::services::Services;

/// Ends an unfinished job as aborted; its messages still in flight are dropped when they
/// find it ended.
pub async fn abort_job(
    services: &Services,
    source: &str,
    id: &str,
    reason: &str,
) -> Result<Job, PipelineError> {
    let store = services.store.as_ref();
    let job = update_job(store, source, id, |job| {
        if job.status.is_done() {
            return false;
        }
        job.status = JobStatus::Aborted;
        job.finished = Some(now());
        job.gather_errors.push(ErrorEntry {
            message: format!("aborted: {reason}"),
            original_url: None,
        });
        job.owner_notice = owner_notice::on_ending(job);
        true
    })
    .await?;
    owner_notice::try_deliver(services, &job).await;
    tracing::warn!(source, job = id, reason, "job aborted");
    crate::harvest_log::log(
        store,
        "WARNING",
        format!("Job {id} of source {source} aborted: {reason}"),
    )
    .await;
    Ok(job)
}

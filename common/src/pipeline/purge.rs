//! `purge-queues`: empties the harvest's stage queues (gather, fetch, import), telling how many
//! messages each held, and aborts the running jobs that this starves (their messages are gone,
//! so they could only stall). The packager's queues hold users' requests and are left alone.

use serde::Serialize;

use super::PipelineError;
use super::abort::abort_job;
use super::schedule::latest_job;
use crate::queue::QueueName;
use crate::services::Services;
use crate::sources::list_sources;

/// The queues a purge empties.
pub const PURGED: [QueueName; 3] = [QueueName::Gather, QueueName::Fetch, QueueName::Import];

/// Why a purge aborted a job, as its error says.
pub const PURGE_REASON: &str = "the stage queues were purged";

#[derive(Debug, Default, Serialize)]
pub struct PurgeReport {
    /// Each queue with the messages it held (visible and in flight).
    pub queues: Vec<PurgedQueue>,
    /// Jobs aborted because their messages were purged.
    pub aborted: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PurgedQueue {
    pub queue: &'static str,
    pub messages: u64,
}

pub async fn purge_queues(services: &Services) -> Result<PurgeReport, PipelineError> {
    let mut report = PurgeReport::default();
    for name in PURGED {
        let queue = services.queues.get(name)?;
        let depth = queue.depth().await?;
        queue.purge().await?;
        report.queues.push(PurgedQueue {
            queue: name.as_str(),
            messages: depth.visible + depth.in_flight,
        });
    }
    let store = services.store.as_ref();
    for source in list_sources(store, true).await? {
        if let Some(job) = latest_job(store, &source.name).await?
            && !job.status.is_done()
        {
            abort_job(services, &source.name, &job.id, PURGE_REASON).await?;
            report.aborted.push(job.id);
        }
    }
    Ok(report)
}

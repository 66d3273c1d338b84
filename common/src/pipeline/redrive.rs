//! `redrive`: moves a queue's dead letters back so that each does its work, not nothing.
//!
//! A harvest message (gather, fetch, import) names a job and a document. Sent back as it is,
//! it would do nothing once its job has ended or once the schedule has ended its document as
//! errored (the handlers drop work of ended jobs and objects). So a redrive looks at what the
//! message names first:
//! - its job still runs and its document is open: the message goes back as it is;
//! - its job has ended: a new harvest job of the source takes it over (one a source, however
//!   many of its messages are redriven), or the job already running does, since either
//!   harvests every document the source serves; a job's check of an ended job is dropped;
//! - its job still runs but ended the document: the message stays, to be redriven once
//!   that job has finished (reopening the document would race the job's finishing check);
//! - its source is gone or inactive: dropped, with the reason.
//!
//! Messages of the other queues (index, rebuild, notify, packages) are sent back as they are:
//! their handlers redo their work from what the message names.
//!
//! A dead letter is deleted only after its work is handed on, so a redrive that dies midway
//! loses nothing: at worst a message is sent twice, which every handler takes.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

use super::jobs::{get_job, start_job};
use super::schedule::latest_job;
use super::{Kind, Message, PipelineError};
use crate::domain::job::HarvestObject;
use crate::domain::keys;
use crate::queue::{Queue, QueueName, Received};
use crate::services::Services;
use crate::sources::load_source;
use crate::store::get_json;

/// How long a redrive holds each dead letter it looks at: one that dies midway lets them go.
const HOLD: Duration = Duration::from_secs(120);

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct RedriveReport {
    pub queue: String,
    /// Dead letters looked at: as many as asked for means more may wait.
    pub looked_at: u64,
    /// Messages sent back to the queue as they were.
    pub resent: u64,
    /// Messages whose document a harvest job of its source harvests instead (their own job
    /// had ended): a job started for them, or one already running.
    pub taken_over: u64,
    /// The jobs started for them.
    pub jobs_started: Vec<String>,
    /// Messages removed with the reason: `MESSAGE_ID: REASON`.
    pub dropped: Vec<String>,
    /// Messages left in the dead-letter queue, with the reason: `MESSAGE_ID: REASON`.
    pub left: Vec<String>,
}

/// What becomes of one dead letter.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Resend,
    /// A harvest job of this source takes its work over.
    TakeOver(String),
    Drop(String),
    /// Stays in the dead-letter queue, for a later redrive.
    Leave(String),
}

/// Redrives up to `max` dead letters of `queue`.
pub async fn redrive(
    services: &Services,
    queue_name: QueueName,
    max: usize,
) -> Result<RedriveReport, PipelineError> {
    let queue = services.queues.get(queue_name)?;
    let mut report = RedriveReport {
        queue: queue_name.as_str().to_string(),
        ..RedriveReport::default()
    };
    // The sources a job took over in this redrive: it covers their further messages.
    let mut taken = BTreeSet::new();
    let mut left = Vec::new();
    let mut seen = 0;
    while seen < max {
        let letters = queue
            .receive_dead_letters((max - seen).min(10), HOLD)
            .await?;
        if letters.is_empty() {
            break;
        }
        seen += letters.len();
        report.looked_at = seen as u64;
        for letter in letters {
            let route = route(services, queue_name, &letter).await?;
            hand_on(
                services,
                queue.as_ref(),
                letter,
                route,
                &mut taken,
                &mut left,
                &mut report,
            )
            .await?;
        }
    }
    // Held while this redrive looked further; shown again for the next one.
    queue.release_dead_letters(&left).await?;
    tracing::info!(queue = queue_name.as_str(), resent = report.resent, taken_over = report.taken_over, jobs_started = ?report.jobs_started, dropped = report.dropped.len(), left = report.left.len(), "dead letters redriven");
    Ok(report)
}

/// Does what `route` says with one dead letter; one left in the queue joins `left` (its
/// receipt), to be shown again once the redrive has looked at the rest.
async fn hand_on(
    services: &Services,
    queue: &dyn Queue,
    letter: Received,
    route: Route,
    taken: &mut BTreeSet<String>,
    left: &mut Vec<String>,
    report: &mut RedriveReport,
) -> Result<(), PipelineError> {
    match route {
        Route::Resend => {
            queue.send(letter.body.clone(), Duration::ZERO).await?;
            report.resent += 1;
        }
        Route::TakeOver(source) => {
            if !taken.contains(&source) {
                take_over(services, &source, report).await?;
                taken.insert(source);
            }
            report.taken_over += 1;
        }
        Route::Drop(reason) => report.dropped.push(format!("{}: {reason}", letter.id)),
        Route::Leave(reason) => {
            report.left.push(format!("{}: {reason}", letter.id));
            left.push(letter.receipt);
            return Ok(());
        }
    }
    queue.delete_dead_letter(&letter.receipt).await?;
    Ok(())
}

/// Makes sure a job harvests `source` for a redriven message: a new one, else the one
/// running (the source's lock refuses a second).
async fn take_over(
    services: &Services,
    source: &str,
    report: &mut RedriveReport,
) -> Result<(), PipelineError> {
    match start_job(services, source).await {
        Ok(job) => {
            report.jobs_started.push(job.id);
            Ok(())
        }
        // A job runs already (the schedule's, a user's): it covers the message.
        Err(PipelineError::Conflict(_)) => match latest_job(services.store.as_ref(), source).await?
        {
            Some(job) if !job.status.is_done() => Ok(()),
            _ => Err(PipelineError::Conflict(format!(
                "source {source} is starting a job; redrive again"
            ))),
        },
        Err(e) => Err(e),
    }
}

async fn route(
    services: &Services,
    queue: QueueName,
    letter: &Received,
) -> Result<Route, PipelineError> {
    if !matches!(
        queue,
        QueueName::Gather | QueueName::Fetch | QueueName::Import
    ) {
        return Ok(Route::Resend);
    }
    let Ok(message) = serde_json::from_str::<Message>(&letter.body) else {
        return Ok(Route::Leave("not a harvest message; left as it is".into()));
    };
    let store = services.store.as_ref();
    match load_source(store, &message.source).await {
        Ok(source) if !source.active => {
            return Ok(Route::Drop(format!(
                "source {} is inactive",
                message.source
            )));
        }
        Ok(_) => {}
        Err(PipelineError::NotFound(_)) => {
            return Ok(Route::Drop(format!("source {} is gone", message.source)));
        }
        Err(e) => return Err(e),
    }
    let job = match get_job(store, &message.source, &message.job).await {
        Ok(job) => Some(job),
        Err(PipelineError::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    let running = job.as_ref().is_some_and(|j| !j.status.is_done());
    if !running {
        return Ok(match message.kind {
            Kind::CheckJob => Route::Drop(format!("job {} has ended", message.job)),
            _ => Route::TakeOver(message.source),
        });
    }
    let Some(object) = message.object.as_deref() else {
        return Ok(Route::Resend);
    };
    let key = keys::job_object(&message.source, &message.job, object);
    match get_json::<HarvestObject>(store, &key).await? {
        Some((o, _)) if o.outcome.is_some() => Ok(Route::Leave(format!(
            "job {} ended this document and is still running: redrive once it has finished",
            message.job
        ))),
        _ => Ok(Route::Resend),
    }
}

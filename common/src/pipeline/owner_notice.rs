//! The owner's email about a job that ended with errors, exactly once in effect. The write
//! that ends a job (finished, gather failed, aborted) also marks its notice `pending`; a
//! retryable step sends it and marks it `sent`. Whoever finds it pending sends it: the delivery
//! that ended the job, a redelivered check, the schedule. A sender that dies between sending
//! and marking sends it again (the one duplicate at-least-once delivery allows); a sender that
//! dies before sending loses nothing.

use super::PipelineError;
use super::jobs::update_job;
use crate::domain::job::{Job, NoticeState};
use crate::mail::Email;
use crate::services::Services;
use crate::sources::load_source;

/// What a job ending as it is now owes its owner: `pending` when it had errors.
pub(super) fn on_ending(job: &Job) -> Option<NoticeState> {
    (job.stats.errored > 0 || !job.gather_errors.is_empty()).then_some(NoticeState::Pending)
}

/// Sends `job`'s notice when it is pending, then marks it sent. A failure to send is an error
/// (the caller's message comes back, or the next schedule tries again).
pub(super) async fn deliver(services: &Services, job: &Job) -> Result<(), PipelineError> {
    if job.owner_notice != Some(NoticeState::Pending) {
        return Ok(());
    }
    let store = services.store.as_ref();
    let owner = load_source(store, &job.source).await?.owner;
    let state = match owner {
        Some(owner) => {
            services
                .mailer
                .send(&email(services, job, owner))
                .await
                .map_err(|e| PipelineError::Conflict(format!("emailing the owner failed: {e}")))?;
            NoticeState::Sent
        }
        None => NoticeState::NoOwner,
    };
    update_job(store, &job.source, &job.id, |j| {
        if j.owner_notice != Some(NoticeState::Pending) {
            return false;
        }
        j.owner_notice = Some(state);
        true
    })
    .await?;
    Ok(())
}

/// `deliver`, where a failure must not undo the work around it (ending a job): the notice
/// stays pending and the schedule sends it.
pub(super) async fn try_deliver(services: &Services, job: &Job) {
    if let Err(e) = deliver(services, job).await {
        tracing::warn!(source = %job.source, job = %job.id, error = %e, "the owner's email waits for the schedule");
    }
}

/// The summary: counts, each error with its original URL (the first 50), the job's link.
fn email(services: &Services, job: &Job, owner: String) -> Email {
    let ended = match job.status {
        crate::domain::job::JobStatus::Aborted => "was aborted",
        _ => "finished with errors",
    };
    let s = &job.stats;
    let mut text = format!(
        "The harvest job {} of source {} {ended}.\n\nAdded {}, updated {}, unchanged {}, deleted {}, errored {}.\n",
        job.id, job.source, s.added, s.updated, s.unchanged, s.deleted, s.errored
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
    Email {
        from: services.settings.mail_from.clone(),
        to: vec![owner],
        subject: format!("Sheaf: harvest of {} had errors", job.source),
        text,
        html: None,
    }
}

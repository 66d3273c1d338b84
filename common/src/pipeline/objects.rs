//! A job's harvest objects: opening one to work on, saving it, recording its outcome, and
//! rejecting its document. Every write of an object document is conditional (`If-Match` on the
//! version read), so two deliveries of one message racing cannot undo each other: the loser
//! gets a conflict, its message comes back, and it finds the winner's work.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::PipelineError;
use super::jobs::get_job;
use crate::domain::job::{HarvestObject, Outcome};
use crate::domain::keys;
use crate::domain::now;
use crate::services::Services;
use crate::store::{ObjectStore, PutMode, StoreError, get_json, put_json};

/// An object document as read, with the version its next write must match.
#[derive(Debug, Clone)]
pub(super) struct Tracked {
    pub object: HarvestObject,
    pub etag: String,
}

/// A rejected document, kept with its reason until a later harvest imports it (or the
/// document leaves the source).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub source: String,
    pub guid: String,
    pub original_url: String,
    pub reason: String,
    pub job: String,
    pub rejected: String,
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Loads an object still to be worked on: `None` when its job has ended (its messages are then
/// dropped) or when it has its outcome already (whose marker is then made sure of: a rerun
/// after a crash between the two writes).
pub(super) async fn open_object(
    services: &Services,
    source: &str,
    job_id: &str,
    object_id: &str,
) -> Result<Option<Tracked>, PipelineError> {
    let job = get_job(services.store.as_ref(), source, job_id).await?;
    if job.status.is_done() {
        return Ok(None);
    }
    let key = keys::job_object(source, job_id, object_id);
    let (object, etag) = get_json::<HarvestObject>(services.store.as_ref(), &key)
        .await?
        .ok_or_else(|| PipelineError::NotFound(format!("object {object_id} of job {job_id}")))?;
    let tracked = Tracked { object, etag };
    if let Some(outcome) = tracked.object.outcome {
        finish_object(services, source, job_id, tracked, outcome, None).await?;
        return Ok(None);
    }
    Ok(Some(tracked))
}

/// Writes an object document back over the version read; another delivery that wrote it
/// meanwhile makes this one a conflict (retried: it then finds that delivery's work).
pub(super) async fn save_object(
    services: &Services,
    source: &str,
    job_id: &str,
    tracked: &mut Tracked,
) -> Result<(), PipelineError> {
    let key = keys::job_object(source, job_id, &tracked.object.id);
    match put_json(
        services.store.as_ref(),
        &key,
        &tracked.object,
        PutMode::Update(tracked.etag.clone()),
    )
    .await
    {
        Ok(etag) => {
            tracked.etag = etag;
            Ok(())
        }
        Err(StoreError::Precondition(_)) => Err(PipelineError::Conflict(format!(
            "object {} of job {job_id} was changed by another delivery",
            tracked.object.id
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Records an object's outcome: the object document first, then the marker the check counts.
/// Both writes are the same on a rerun.
pub(super) async fn finish_object(
    services: &Services,
    source: &str,
    job_id: &str,
    mut tracked: Tracked,
    outcome: Outcome,
    error: Option<String>,
) -> Result<(), PipelineError> {
    if tracked.object.outcome.is_none() {
        tracked.object.outcome = Some(outcome);
        tracked.object.error = error;
        save_object(services, source, job_id, &mut tracked).await?;
    }
    let outcome = tracked.object.outcome.unwrap_or(outcome);
    mark_done(
        services.store.as_ref(),
        source,
        job_id,
        &tracked.object.id,
        outcome,
    )
    .await
}

/// Writes the marker the check counts for an object whose document holds `outcome`: the
/// same on a rerun.
pub(super) async fn mark_done(
    store: &dyn ObjectStore,
    source: &str,
    job_id: &str,
    object_id: &str,
    outcome: Outcome,
) -> Result<(), PipelineError> {
    let marker = keys::job_done(source, job_id, object_id, outcome.as_str());
    store
        .put(&marker, Bytes::new(), "text/plain", PutMode::Overwrite)
        .await?;
    Ok(())
}

/// Lists a document among the rejected ones, with its reason.
pub(super) async fn reject(
    services: &Services,
    source: &str,
    job_id: &str,
    object: &HarvestObject,
    reason: &str,
) -> Result<(), PipelineError> {
    let rejected = Rejected {
        source: source.to_string(),
        guid: object.guid.clone(),
        original_url: object.url.clone(),
        reason: reason.to_string(),
        job: job_id.to_string(),
        rejected: now(),
    };
    put_json(
        services.store.as_ref(),
        &keys::rejected(source, &object.id),
        &rejected,
        PutMode::Overwrite,
    )
    .await?;
    Ok(())
}

/// On a message's last delivery, ends its object as errored with the reason it kept failing,
/// so the job finishes with the error in it instead of waiting for the stall timeout. Returns
/// whether the object was still open.
pub(super) async fn give_up(
    services: &Services,
    source: &str,
    job_id: &str,
    object_id: &str,
    error: &PipelineError,
) -> Result<bool, PipelineError> {
    let Some(tracked) = open_object(services, source, job_id, object_id).await? else {
        return Ok(false);
    };
    let message = format!("gave up after repeated failures: {error}");
    tracing::warn!(source, job = job_id, url = %tracked.object.url, error = %error, "giving up on a document");
    finish_object(
        services,
        source,
        job_id,
        tracked,
        Outcome::Errored,
        Some(message),
    )
    .await?;
    Ok(true)
}

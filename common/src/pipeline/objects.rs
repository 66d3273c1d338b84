//! A job's harvest objects: opening one to work on, saving it, recording its outcome, and
//! rejecting its document. Every write of an object document is conditional (`If-Match` on the
//! version read), so two deliveries of one message racing cannot undo each other: the loser
//! gets a conflict, its message comes back, and it finds the winner's work.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::PipelineError;
use crate::domain::job::{HarvestObject, Job, Outcome};
use crate::domain::keys;
use crate::domain::now;
use crate::domain::source::Source;
use crate::services::Services;
use crate::store::{ObjectStore, PutMode, StoreError, Write, parse_json};

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
    let opened = open(services, source, job_id, object_id, false).await?;
    Ok(opened.map(|(tracked, _)| tracked))
}

/// `open_object`, with the object's source, all read at once.
pub(super) async fn open_object_and_source(
    services: &Services,
    source: &str,
    job_id: &str,
    object_id: &str,
) -> Result<Option<(Tracked, Source)>, PipelineError> {
    match open(services, source, job_id, object_id, true).await? {
        Some((tracked, Some(found))) => Ok(Some((tracked, found))),
        Some((_, None)) => Err(PipelineError::NotFound(format!("source {source}"))),
        None => Ok(None),
    }
}

async fn open(
    services: &Services,
    source: &str,
    job_id: &str,
    object_id: &str,
    with_source: bool,
) -> Result<Option<(Tracked, Option<Source>)>, PipelineError> {
    let (job_key, object_key) = (
        keys::job(source, job_id),
        keys::job_object(source, job_id, object_id),
    );
    let mut wanted = vec![job_key.clone(), object_key.clone()];
    if with_source {
        wanted.push(keys::source(source));
    }
    // One read of the three (one snapshot locally; at once on S3).
    let mut found = services.store.get_many(&wanted).await?.into_iter();
    let mut next = || found.next().flatten();
    let job: Job = match next() {
        Some(job) => parse_json(&job_key, &job.body)?,
        None => {
            let missing = format!("job {job_id} of source {source}");
            return Err(PipelineError::NotFound(missing));
        }
    };
    if job.status.is_done() {
        return Ok(None);
    }
    let tracked = match next() {
        Some(found) => Tracked {
            object: parse_json(&object_key, &found.body)?,
            etag: found.etag,
        },
        None => {
            let missing = format!("object {object_id} of job {job_id}");
            return Err(PipelineError::NotFound(missing));
        }
    };
    let source_found = match next() {
        Some(found) => Some(parse_json::<Source>(&keys::source(source), &found.body)?),
        None => None,
    };
    if let Some(outcome) = tracked.object.outcome {
        finish_object(services, source, job_id, tracked, outcome, None).await?;
        return Ok(None);
    }
    Ok(Some((tracked, source_found)))
}

impl Tracked {
    /// The write of this object document over the version read, for a sequence that
    /// `save_in_order` makes.
    pub fn save(&self, source: &str, job_id: &str) -> Result<Write, PipelineError> {
        let key = keys::job_object(source, job_id, &self.object.id);
        Ok(Write::json(
            &key,
            &self.object,
            PutMode::Update(self.etag.clone()),
        )?)
    }
}

/// Makes `steps` in order (`ObjectStore::write_in_order`), one of which is `tracked.save`:
/// the version it leaves is the one the next save names. Another delivery that wrote the
/// object document meanwhile makes this one a conflict (retried: it then finds that
/// delivery's work).
pub(super) async fn save_in_order(
    services: &Services,
    source: &str,
    job_id: &str,
    tracked: &mut Tracked,
    steps: Vec<Vec<Write>>,
) -> Result<(), PipelineError> {
    let key = keys::job_object(source, job_id, &tracked.object.id);
    match services.store.write_in_order(steps).await {
        Ok(versions) => {
            if let Some(etag) = versions.get(&key) {
                tracked.etag = etag.clone();
            }
            Ok(())
        }
        Err(StoreError::Precondition(refused)) if refused == key => {
            Err(PipelineError::Conflict(format!(
                "object {} of job {job_id} was changed by another delivery",
                tracked.object.id
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Records an object's outcome: the object document first, then the marker the check counts.
/// Both writes are the same on a rerun.
pub(super) async fn finish_object(
    services: &Services,
    source: &str,
    job_id: &str,
    tracked: Tracked,
    outcome: Outcome,
    error: Option<String>,
) -> Result<(), PipelineError> {
    finish_object_after(
        services,
        source,
        job_id,
        tracked,
        outcome,
        error,
        Vec::new(),
    )
    .await
}

/// `finish_object`, after the writes of `before` (in order, in the same sequence).
pub(super) async fn finish_object_after(
    services: &Services,
    source: &str,
    job_id: &str,
    mut tracked: Tracked,
    outcome: Outcome,
    error: Option<String>,
    mut steps: Vec<Vec<Write>>,
) -> Result<(), PipelineError> {
    if tracked.object.outcome.is_none() {
        tracked.object.outcome = Some(outcome);
        tracked.object.error = error;
        steps.push(vec![tracked.save(source, job_id)?]);
    }
    let outcome = tracked.object.outcome.unwrap_or(outcome);
    steps.push(vec![done_marker(
        source,
        job_id,
        &tracked.object.id,
        outcome,
    )]);
    save_in_order(services, source, job_id, &mut tracked, steps).await
}

/// The marker the check counts for an object whose document holds `outcome`.
pub(super) fn done_marker(source: &str, job_id: &str, object_id: &str, outcome: Outcome) -> Write {
    Write::Put {
        key: keys::job_done(source, job_id, object_id, outcome.as_str()),
        body: Bytes::new(),
        content_type: "text/plain",
        mode: PutMode::Overwrite,
    }
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
    store
        .write_in_order(vec![vec![done_marker(source, job_id, object_id, outcome)]])
        .await?;
    Ok(())
}

/// The write that lists a document among the rejected ones, with its reason.
pub(super) fn rejection(
    source: &str,
    job_id: &str,
    object: &HarvestObject,
    reason: &str,
) -> Result<Write, PipelineError> {
    let rejected = Rejected {
        source: source.to_string(),
        guid: object.guid.clone(),
        original_url: object.url.clone(),
        reason: reason.to_string(),
        job: job_id.to_string(),
        rejected: now(),
    };
    let key = keys::rejected(source, &object.id);
    Ok(Write::json(&key, &rejected, PutMode::Overwrite)?)
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

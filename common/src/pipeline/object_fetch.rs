//! Fetch: get one document (conditionally), recognise it unchanged by SHA-256, else keep it
//! in the central WAF and send its import.

use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::jobs::{get_job, load_source, send};
use super::{Kind, Message, PipelineError};
use crate::domain::job::{DocumentState, HarvestObject, Outcome};
use crate::domain::keys;
use crate::harvest::{Fetched, harvester_for};
use crate::queue::MAX_RECEIVE_COUNT;
use crate::services::Services;
use crate::store::{PutMode, get_json, put_json};

/// Loads an object still to be worked on: `None` when its job has ended (its messages are then
/// dropped) or when it has its outcome already (whose marker is then made sure of: a rerun
/// after a crash between the two writes).
pub(super) async fn open_object(
    services: &Services,
    source: &str,
    job_id: &str,
    object_id: &str,
) -> Result<Option<HarvestObject>, PipelineError> {
    let job = get_job(services.store.as_ref(), source, job_id).await?;
    if job.status.is_done() {
        return Ok(None);
    }
    let key = keys::job_object(source, job_id, object_id);
    let (object, _) = get_json::<HarvestObject>(services.store.as_ref(), &key)
        .await?
        .ok_or_else(|| PipelineError::NotFound(format!("object {object_id} of job {job_id}")))?;
    if let Some(outcome) = object.outcome {
        finish_object(services, source, job_id, object, outcome, None).await?;
        return Ok(None);
    }
    Ok(Some(object))
}

/// Writes an object document back (its key is derived from the object).
pub(super) async fn save_object(
    services: &Services,
    source: &str,
    job_id: &str,
    object: &HarvestObject,
) -> Result<(), PipelineError> {
    let key = keys::job_object(source, job_id, &object.id);
    put_json(services.store.as_ref(), &key, object, PutMode::Overwrite).await?;
    Ok(())
}

/// Records an object's outcome: the object document first, then the marker the check counts.
/// Both writes are the same on a rerun.
pub(super) async fn finish_object(
    services: &Services,
    source: &str,
    job_id: &str,
    mut object: HarvestObject,
    outcome: Outcome,
    error: Option<String>,
) -> Result<(), PipelineError> {
    let store = services.store.as_ref();
    if object.outcome.is_none() {
        object.outcome = Some(outcome);
        object.error = error;
        save_object(services, source, job_id, &object).await?;
    }
    let outcome = object.outcome.unwrap_or(outcome);
    store
        .put(
            &keys::job_done(source, job_id, &object.id, outcome.as_str()),
            Bytes::new(),
            "text/plain",
            PutMode::Overwrite,
        )
        .await?;
    Ok(())
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(super) async fn fetch(
    services: &Services,
    source_name: &str,
    job_id: &str,
    object_id: &str,
    receive_count: u32,
) -> Result<(), PipelineError> {
    let store = services.store.as_ref();
    let Some(mut object) = open_object(services, source_name, job_id, object_id).await? else {
        return Ok(());
    };
    if object.sha256.is_some() {
        // Fetched before a crash: the import is what is left.
        let import = Message::for_object(Kind::Import, source_name, job_id, object_id);
        return send(services, &import, Duration::ZERO).await;
    }
    let source = load_source(store, source_name).await?;
    let Some(harvester) = harvester_for(source.source_type) else {
        return Err(PipelineError::Conflict(format!(
            "{} sources are not supported yet",
            source.source_type.as_str()
        )));
    };
    let state_key = keys::document_state(source_name, object_id);
    let previous = get_json::<DocumentState>(store, &state_key)
        .await?
        .map(|(s, _)| s);
    let fetched = match harvester
        .fetch(services, &source, &object, previous.as_ref())
        .await
    {
        Ok(f) => f,
        Err(e) if e.is_transient() && receive_count < MAX_RECEIVE_COUNT - 1 => {
            tracing::warn!(source = source_name, url = %object.url, error = %e, "fetch failed, will retry");
            return Err(e.into());
        }
        Err(e) => {
            tracing::warn!(source = source_name, url = %object.url, error = %e, "fetch failed");
            let message = e.to_string();
            super::import::reject(services, source_name, job_id, &object, &message).await?;
            return finish_object(
                services,
                source_name,
                job_id,
                object,
                Outcome::Errored,
                Some(message),
            )
            .await;
        }
    };
    let (body, etag, last_modified) = match fetched {
        Fetched::NotModified => {
            return finish_object(
                services,
                source_name,
                job_id,
                object,
                Outcome::Unchanged,
                None,
            )
            .await;
        }
        Fetched::Document {
            body,
            etag,
            last_modified,
        } => (body, etag, last_modified),
    };
    let sha256 = sha256_hex(&body);
    if let Some(prev) = &previous
        && prev.sha256 == sha256
        && prev.waf_key == object.waf_key
    {
        // The same bytes as last time: nothing is rewritten, only the validators refreshed.
        if prev.etag != etag || prev.last_modified != last_modified {
            let state = DocumentState {
                etag,
                last_modified,
                ..prev.clone()
            };
            put_json(store, &state_key, &state, PutMode::Overwrite).await?;
        }
        return finish_object(
            services,
            source_name,
            job_id,
            object,
            Outcome::Unchanged,
            None,
        )
        .await;
    }
    store
        .put(&object.waf_key, body, "application/xml", PutMode::Overwrite)
        .await?;
    object.sha256 = Some(sha256);
    object.etag = etag;
    object.last_modified = last_modified;
    save_object(services, source_name, job_id, &object).await?;
    send(
        services,
        &Message::for_object(Kind::Import, source_name, job_id, object_id),
        Duration::ZERO,
    )
    .await
}

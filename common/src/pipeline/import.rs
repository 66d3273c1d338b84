//! Import: read the kept document, claim its identifier, write the record beside its XML,
//! then the document's state and the object's outcome, in that order.

use std::time::Duration;

use super::jobs::send;
use super::objects::{Tracked, finish_object, open_object, reject, save_object, sha256_hex};
use super::records::{Claim, claim, release_record};
use super::{Message, PipelineError};
use crate::domain::job::{DocumentState, Outcome};
use crate::domain::keys;
use crate::domain::now;
use crate::domain::record::Record;
use crate::harvest::harvester_for;
use crate::services::Services;
use crate::sources::load_source;
use crate::store::{PutMode, StoreError, get_json, put_json};

/// How often an import waits for the document holding its identifier before taking it over
/// (two documents that swapped identifiers would otherwise wait for each other), and how long
/// each wait is.
const MAX_WAITS: u64 = 20;
const WAIT: Duration = Duration::from_secs(2);

pub(super) async fn import(
    services: &Services,
    message: &Message,
    object_id: &str,
) -> Result<(), PipelineError> {
    let (source_name, job_id) = (message.source.as_str(), message.job.as_str());
    let store = services.store.as_ref();
    let Some(mut tracked) = open_object(services, source_name, job_id, object_id).await? else {
        return Ok(());
    };
    let source = load_source(store, source_name).await?;
    let harvester = harvester_for(source.source_type).ok_or_else(|| {
        PipelineError::Conflict(format!(
            "{} sources are not supported yet",
            source.source_type.as_str()
        ))
    })?;
    let document = match store.get(&tracked.object.waf_key).await {
        Ok(document) => document,
        // Only a re-import finds no copy (a harvest keeps it before sending the import).
        Err(StoreError::NotFound(_)) => {
            let reason = format!("no kept document at {}", tracked.object.waf_key);
            return finish_object(
                services,
                source_name,
                job_id,
                tracked,
                Outcome::Errored,
                Some(reason),
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    };
    let sha256 = sha256_hex(&document.body);
    let original_url = harvester.original_url(&source, &tracked.object);
    let object = &tracked.object;
    let state = |record_id: Option<String>| DocumentState {
        guid: object.guid.clone(),
        url: object.url.clone(),
        waf_key: object.waf_key.clone(),
        sha256: sha256.clone(),
        etag: object.etag.clone(),
        last_modified: object.last_modified.clone(),
        record_id,
        listed: object.settled_entry.clone(),
    };
    let state_key = keys::document_state(source_name, object_id);
    let previous = get_json::<DocumentState>(store, &state_key)
        .await?
        .and_then(|(s, _)| s.record_id);

    // A document that does not read, or whose identifier another document holds, is rejected.
    let waits = message.seq.unwrap_or(0);
    let claimed = match harvester.import(services, &source, &document.body) {
        Err(rejection) => Err(rejection.to_string()),
        Ok(metadata) => {
            let id_key = keys::id_key(&metadata.id);
            let may_wait = waits < MAX_WAITS;
            match claim(
                store,
                source_name,
                job_id,
                &metadata.id,
                &id_key,
                &object.guid,
                may_wait,
            )
            .await?
            {
                Claim::Held { existed } => Ok((metadata, id_key, existed)),
                Claim::Refused(reason) => Err(reason),
                Claim::Wait => {
                    let mut again = message.clone();
                    again.seq = Some(waits + 1);
                    return send(services, &again, WAIT).await;
                }
            }
        }
    };
    let (metadata, id_key, existed) = match claimed {
        Ok(claimed) => claimed,
        Err(reason) => {
            // The record this document made before is no longer backed by it.
            if let Some(old_id) = &previous {
                release_record(services, source_name, old_id, &object.guid).await?;
            }
            reject(services, source_name, job_id, object, &reason).await?;
            put_json(store, &state_key, &state(None), PutMode::Overwrite).await?;
            return finish_object(
                services,
                source_name,
                job_id,
                tracked,
                Outcome::Errored,
                Some(reason),
            )
            .await;
        }
    };
    let record = Record {
        metadata,
        source: source_name.to_string(),
        original_url,
        harvested: now(),
        sha256: sha256.clone(),
    };
    let new_state = state(Some(record.metadata.id.clone()));
    let planned = match tracked.object.planned {
        Some(p) => p,
        None => {
            plan(
                services,
                &mut tracked,
                &id_key,
                existed,
                source_name,
                job_id,
            )
            .await?
        }
    };
    // The original beside the record: XML, or a CKAN dataset's JSON.
    let content_type = match document.body.first() {
        Some(b'{') => "application/json",
        _ => "application/xml",
    };
    // Three independent writes, made at once (locally they share a commit); the state that
    // says they are done comes after all three.
    let (xml_key, json_key) = (keys::record_xml(&id_key), keys::record_json(&id_key));
    let rejected_key = keys::rejected(source_name, object_id);
    tokio::try_join!(
        store.put(
            &xml_key,
            document.body.clone(),
            content_type,
            PutMode::Overwrite,
        ),
        put_json(store, &json_key, &record, PutMode::Overwrite),
        store.delete(&rejected_key),
    )?;
    // The document used to be another record (its identifier changed): that one is gone.
    if let Some(old_id) = &previous
        && *old_id != record.metadata.id
    {
        release_record(services, source_name, old_id, &tracked.object.guid).await?;
    }
    put_json(store, &state_key, &new_state, PutMode::Overwrite).await?;
    super::changes::announce(services, std::slice::from_ref(&id_key), Duration::ZERO).await?;
    tracked.object.record_id = Some(record.metadata.id.clone());
    finish_object(services, source_name, job_id, tracked, planned, None).await
}

/// Decides, before the record is written, whether it is added or updated, and keeps the
/// decision in the object so a rerun counts the same.
async fn plan(
    services: &Services,
    tracked: &mut Tracked,
    id_key: &str,
    existed: bool,
    source_name: &str,
    job_id: &str,
) -> Result<Outcome, PipelineError> {
    let had_record = existed && services.store.get(&keys::record_json(id_key)).await.is_ok();
    let planned = if had_record {
        Outcome::Updated
    } else {
        Outcome::Added
    };
    tracked.object.planned = Some(planned);
    save_object(services, source_name, job_id, tracked).await?;
    Ok(planned)
}

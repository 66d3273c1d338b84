//! Import: read the kept document, claim its identifier, write the record beside its XML,
//! then the document's state and the object's outcome, in that order.

use std::time::Duration;

use super::jobs::send;
use super::objects::{
    finish_object, finish_object_after, open_object_and_source, rejection, save_in_order,
    sha256_hex,
};
use super::records::{Claim, claim, release_record};
use super::{Message, PipelineError};
use crate::domain::job::{DocumentState, Outcome};
use crate::domain::keys;
use crate::domain::now;
use crate::domain::record::Record;
use crate::harvest::harvester_for;
use crate::services::Services;
use crate::store::{ObjectStore, PutMode, Write, parse_json};

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
    let Some((mut tracked, source)) =
        open_object_and_source(services, source_name, job_id, object_id).await?
    else {
        return Ok(());
    };
    let harvester = harvester_for(source.source_type).ok_or_else(|| {
        PipelineError::Conflict(format!(
            "{} sources are not supported yet",
            source.source_type.as_str()
        ))
    })?;
    // The kept copy and the document's state, read at once.
    let state_key = keys::document_state(source_name, object_id);
    let wanted = [tracked.object.waf_key.clone(), state_key.clone()];
    let mut found = store.get_many(&wanted).await?.into_iter();
    let (document, kept_state) = (found.next().flatten(), found.next().flatten());
    let previous = match kept_state {
        Some(kept) => parse_json::<DocumentState>(&state_key, &kept.body)?.record_id,
        None => None,
    };
    let document = match document {
        Some(document) => document,
        // Only a re-import finds no copy (a harvest keeps it before sending the import).
        None => {
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
            let before = vec![
                vec![rejection(source_name, job_id, object, &reason)?],
                vec![Write::json(&state_key, &state(None), PutMode::Overwrite)?],
            ];
            return finish_object_after(
                services,
                source_name,
                job_id,
                tracked,
                Outcome::Errored,
                Some(reason),
                before,
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
    // The writes, in order: the plan (whether the record is added or updated, kept in the
    // object before the record is written, so that a rerun counts the same), the record,
    // then the state that says it is written.
    let mut steps = Vec::new();
    let planned = match tracked.object.planned {
        Some(planned) => planned,
        None => {
            let planned = plan(store, &id_key, existed).await;
            tracked.object.planned = Some(planned);
            steps.push(vec![tracked.save(source_name, job_id)?]);
            planned
        }
    };
    // The original beside the record: XML, or a CKAN dataset's JSON.
    let content_type = match document.body.first() {
        Some(b'{') => "application/json",
        _ => "application/xml",
    };
    let (xml_key, json_key) = (keys::record_xml(&id_key), keys::record_json(&id_key));
    steps.push(vec![
        Write::Put {
            key: xml_key,
            body: document.body,
            content_type,
            mode: PutMode::Overwrite,
        },
        Write::json(&json_key, &record, PutMode::Overwrite)?,
        Write::Delete {
            key: keys::rejected(source_name, object_id),
        },
    ]);
    let state_write = Write::json(&state_key, &new_state, PutMode::Overwrite)?;
    match previous.filter(|old_id| *old_id != record.metadata.id) {
        None => {
            steps.push(vec![state_write]);
            save_in_order(services, source_name, job_id, &mut tracked, steps).await?;
        }
        // The document used to be another record (its identifier changed): that one goes
        // once the new one is written, before the state says so.
        Some(old_id) => {
            save_in_order(services, source_name, job_id, &mut tracked, steps).await?;
            release_record(services, source_name, &old_id, &tracked.object.guid).await?;
            store.write_in_order(vec![vec![state_write]]).await?;
        }
    }
    super::changes::announce(services, std::slice::from_ref(&id_key), Duration::ZERO).await?;
    tracked.object.record_id = Some(record.metadata.id.clone());
    finish_object(services, source_name, job_id, tracked, planned, None).await
}

/// Whether the record about to be written is added or updated: updated when the document
/// held its identifier already and the record is there.
async fn plan(store: &dyn ObjectStore, id_key: &str, existed: bool) -> Outcome {
    let had_record = existed && store.get(&keys::record_json(id_key)).await.is_ok();
    if had_record {
        Outcome::Updated
    } else {
        Outcome::Added
    }
}

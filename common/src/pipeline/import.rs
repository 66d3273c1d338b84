//! Import: read the kept document, claim its identifier, write the record beside its XML,
//! then the document's state and the object's outcome, in that order.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::PipelineError;
use super::jobs::load_source;
use super::object_fetch::{finish_object, open_object, save_object};
use crate::domain::job::{DocumentState, HarvestObject, Outcome};
use crate::domain::keys;
use crate::domain::now;
use crate::domain::record::Record;
use crate::harvest::harvester_for;
use crate::services::Services;
use crate::store::{ObjectStore, PutMode, StoreError, get_json, put_json};

/// A rejected document, kept with its reason until the next harvest imports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub source: String,
    pub guid: String,
    pub original_url: String,
    pub reason: String,
    pub job: String,
    pub rejected: String,
}

/// The catalogue marker of a record: which document of the source it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Marker {
    pub guid: String,
}

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

/// Claims `id_key` for this source and document. Another source that owns it, or another
/// document of this source that already became it, wins: the first one keeps the record.
async fn claim(
    store: &dyn ObjectStore,
    source: &str,
    id: &str,
    id_key: &str,
    guid: &str,
) -> Result<Result<bool, String>, PipelineError> {
    let owner_key = keys::record_owner(id_key);
    match store
        .put(
            &owner_key,
            Bytes::from(source.to_string()),
            "text/plain",
            PutMode::Create,
        )
        .await
    {
        Ok(_) => {}
        Err(StoreError::Precondition(_)) => {
            let owner = store.get(&owner_key).await?;
            if owner.body.as_ref() != source.as_bytes() {
                return Ok(Err(format!(
                    "identifier {id} is already harvested from source {}",
                    String::from_utf8_lossy(&owner.body)
                )));
            }
        }
        Err(e) => return Err(e.into()),
    }
    let marker_key = keys::record_marker(source, id_key);
    let marker = Marker {
        guid: guid.to_string(),
    };
    match put_json(store, &marker_key, &marker, PutMode::Create).await {
        Ok(_) => Ok(Ok(false)),
        Err(StoreError::Precondition(_)) => {
            let (existing, _) = get_json::<Marker>(store, &marker_key)
                .await?
                .ok_or_else(|| PipelineError::Conflict(format!("marker {marker_key} vanished")))?;
            if existing.guid == guid {
                Ok(Ok(true))
            } else {
                Ok(Err(format!(
                    "identifier {id} is already used by {} in this source",
                    existing.guid
                )))
            }
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn import(
    services: &Services,
    source_name: &str,
    job_id: &str,
    object_id: &str,
) -> Result<(), PipelineError> {
    let store = services.store.as_ref();
    let Some(mut object) = open_object(services, source_name, job_id, object_id).await? else {
        return Ok(());
    };
    let source = load_source(store, source_name).await?;
    let harvester = harvester_for(source.source_type).ok_or_else(|| {
        PipelineError::Conflict(format!(
            "{} sources are not supported yet",
            source.source_type.as_str()
        ))
    })?;
    let document = store.get(&object.waf_key).await?;
    let sha256 = super::object_fetch::sha256_hex(&document.body);
    let original_url = harvester.original_url(&source, &object);
    let state = |record_id: Option<String>| DocumentState {
        guid: object.guid.clone(),
        url: object.url.clone(),
        waf_key: object.waf_key.clone(),
        sha256: sha256.clone(),
        etag: object.etag.clone(),
        last_modified: object.last_modified.clone(),
        record_id,
    };
    let state_key = keys::document_state(source_name, object_id);

    // A document that does not read, or whose identifier another document owns, is rejected.
    let claimed = match harvester.import(services, &source, &document.body) {
        Err(rejection) => Err(rejection.to_string()),
        Ok(metadata) => {
            let id_key = keys::id_key(&metadata.id);
            claim(store, source_name, &metadata.id, &id_key, &object.guid)
                .await?
                .map(|existed| (metadata, id_key, existed))
        }
    };
    let (metadata, id_key, existed) = match claimed {
        Ok(claimed) => claimed,
        Err(reason) => {
            reject(services, source_name, job_id, &object, &reason).await?;
            put_json(store, &state_key, &state(None), PutMode::Overwrite).await?;
            return finish_object(
                services,
                source_name,
                job_id,
                object,
                Outcome::Errored,
                Some(reason),
            )
            .await;
        }
    };
    let planned = match object.planned {
        Some(p) => p,
        None => {
            let had_record = existed && store.get(&keys::record_json(&id_key)).await.is_ok();
            let p = if had_record {
                Outcome::Updated
            } else {
                Outcome::Added
            };
            object.planned = Some(p);
            save_object(services, source_name, job_id, &object).await?;
            p
        }
    };
    let record = Record {
        metadata,
        source: source_name.to_string(),
        original_url,
        harvested: now(),
        sha256: sha256.clone(),
    };
    store
        .put(
            &keys::record_xml(&id_key),
            document.body.clone(),
            "application/xml",
            PutMode::Overwrite,
        )
        .await?;
    put_json(
        store,
        &keys::record_json(&id_key),
        &record,
        PutMode::Overwrite,
    )
    .await?;
    store
        .delete(&keys::rejected(source_name, object_id))
        .await?;
    // The document used to be another record (its identifier changed): that one is gone.
    if let Some((previous, _)) = get_json::<DocumentState>(store, &state_key).await?
        && let Some(old_id) = previous.record_id
        && old_id != record.metadata.id
    {
        let old_key = keys::id_key(&old_id);
        let marker = get_json::<Marker>(store, &keys::record_marker(source_name, &old_key)).await?;
        if marker.is_some_and(|(m, _)| m.guid == object.guid) {
            super::jobs::delete_record(store, source_name, &old_key).await?;
        }
    }
    put_json(
        store,
        &state_key,
        &state(Some(record.metadata.id.clone())),
        PutMode::Overwrite,
    )
    .await?;
    object.record_id = Some(record.metadata.id.clone());
    finish_object(services, source_name, job_id, object, planned, None).await
}

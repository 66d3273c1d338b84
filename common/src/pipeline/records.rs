//! The catalogue's side of a harvest: which document of a source holds an identifier (its
//! marker), claiming and handing over identifiers, removing records, and the check that lets
//! "unchanged" skip work only while the record it produced is still there.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::PipelineError;
use crate::domain::job::{DocumentState, HarvestObject};
use crate::domain::keys;
use crate::services::Services;
use crate::store::{
    Object, ObjectStore, PutMode, StoreError, Write, get_json, parse_json, put_json,
};

/// The catalogue marker of a record: which document of the source it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Marker {
    pub guid: String,
}

/// What claiming an identifier for a document gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Claim {
    /// The document holds the identifier; `existed` when the marker was there already.
    Held { existed: bool },
    /// Another source, or another document of this source still serving it, holds it.
    Refused(String),
    /// The document holding it is still to be worked on in this job: ask again later.
    Wait,
}

/// Claims identifier `id` (key segment `id_key`) for document `guid` of `source` in job
/// `job_id`. The first source to import an identifier owns it. Within a source one document
/// holds it; another takes it over only when the holder no longer serves it: the holder is not
/// in this job (it left the source or moved), or it was worked on and now reads as something
/// else (another identifier, or nothing valid). While the holder waits for its turn in this job,
/// the claim answers `Wait` (or takes it over when `may_wait` is false, to end a cycle of two
/// documents that swapped identifiers).
pub(super) async fn claim(
    store: &dyn ObjectStore,
    source: &str,
    job_id: &str,
    id: &str,
    id_key: &str,
    guid: &str,
    may_wait: bool,
) -> Result<Claim, PipelineError> {
    let owner_key = keys::record_owner(id_key);
    let marker_key = keys::record_marker(source, id_key);
    let mine = Marker {
        guid: guid.to_string(),
    };
    let owner = Write::Put {
        key: owner_key.clone(),
        body: Bytes::from(source.to_string()),
        content_type: "text/plain",
        mode: PutMode::Create,
    };
    let marker = Write::json(&marker_key, &mine, PutMode::Create)?;
    for _ in 0..10 {
        // Both created at once, as a first import of an identifier finds neither.
        let refused = match store
            .write_in_order(vec![vec![owner.clone()], vec![marker.clone()]])
            .await
        {
            Ok(_) => return Ok(Claim::Held { existed: false }),
            Err(StoreError::Precondition(refused)) => refused,
            Err(e) => return Err(e.into()),
        };
        if refused == owner_key {
            match store.get(&owner_key).await {
                Ok(owner) if owner.body.as_ref() != source.as_bytes() => {
                    return Ok(Claim::Refused(format!(
                        "identifier {id} is already harvested from source {}",
                        String::from_utf8_lossy(&owner.body)
                    )));
                }
                Ok(_) => {}
                Err(StoreError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            }
            // The identifier is this source's: the marker alone.
            match store.write_in_order(vec![vec![marker.clone()]]).await {
                Ok(_) => return Ok(Claim::Held { existed: false }),
                Err(StoreError::Precondition(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // The marker is there: whose is it?
        let etag = match get_json::<Marker>(store, &marker_key).await? {
            None => continue,
            Some((held, _)) if held.guid == guid => {
                return Ok(Claim::Held { existed: true });
            }
            Some((held, etag)) => {
                match holder_status(store, source, job_id, id, &held.guid).await? {
                    Holder::Serving => {
                        return Ok(Claim::Refused(format!(
                            "identifier {id} is already used by {} in this source",
                            held.guid
                        )));
                    }
                    Holder::Pending if may_wait => return Ok(Claim::Wait),
                    Holder::Pending | Holder::Gone => etag,
                }
            }
        };
        match put_json(store, &marker_key, &mine, PutMode::Update(etag)).await {
            Ok(_) => return Ok(Claim::Held { existed: true }),
            Err(StoreError::Precondition(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(PipelineError::Conflict(format!(
        "identifier {id} kept changing hands"
    )))
}

enum Holder {
    /// Worked on in this job and still reading as the identifier.
    Serving,
    /// In this job, not yet worked on.
    Pending,
    /// Not in this job, or reading as something else now.
    Gone,
}

async fn holder_status(
    store: &dyn ObjectStore,
    source: &str,
    job_id: &str,
    id: &str,
    holder_guid: &str,
) -> Result<Holder, PipelineError> {
    let holder_id = keys::object_id(holder_guid);
    let Some((object, _)) =
        get_json::<HarvestObject>(store, &keys::job_object(source, job_id, &holder_id)).await?
    else {
        return Ok(Holder::Gone);
    };
    if object.outcome.is_none() {
        return Ok(Holder::Pending);
    }
    let state = get_json::<DocumentState>(store, &keys::document_state(source, &holder_id)).await?;
    Ok(match state {
        Some((s, _)) if s.record_id.as_deref() == Some(id) => Holder::Serving,
        _ => Holder::Gone,
    })
}

/// What the last harvest remembered of object `object_id`, while it counts: its record is
/// still there, held by this document kept at `waf_key`. Otherwise (`None`) the document is
/// fetched and imported afresh.
pub(super) async fn kept_state(
    store: &dyn ObjectStore,
    source: &str,
    object_id: &str,
    waf_key: &str,
) -> Result<Option<DocumentState>, PipelineError> {
    let mut kept = kept_states(store, source, &[(object_id, waf_key)]).await?;
    Ok(kept.pop().flatten())
}

/// `kept_state` of each `(object_id, waf_key)`, in order, with each kind of object read for
/// all of them at once (`ObjectStore::get_many`): a gather weighs a listing page so.
pub(super) async fn kept_states(
    store: &dyn ObjectStore,
    source: &str,
    documents: &[(&str, &str)],
) -> Result<Vec<Option<DocumentState>>, PipelineError> {
    let state_keys: Vec<String> = documents
        .iter()
        .map(|(object_id, _)| keys::document_state(source, object_id))
        .collect();
    let mut found = store
        .get_many(&state_keys)
        .await?
        .into_iter()
        .zip(&state_keys);
    // Each state kept here, with its record's key segment. Rejected last time (no record):
    // its identifier's holder may have gone since, so look again.
    let mut states = Vec::with_capacity(documents.len());
    for (_, waf_key) in documents {
        let state = parse_found::<DocumentState>(found.next())?
            .filter(|s| s.waf_key == *waf_key)
            .and_then(|s| Some((keys::id_key(s.record_id.as_deref()?), s)));
        states.push(state);
    }
    // Each record's marker (which document holds it) and the record itself, two keys a state.
    let record_keys: Vec<String> = states
        .iter()
        .flatten()
        .flat_map(|(id_key, _)| {
            [
                keys::record_marker(source, id_key),
                keys::record_json(id_key),
            ]
        })
        .collect();
    let mut found = store
        .get_many(&record_keys)
        .await?
        .into_iter()
        .zip(&record_keys);
    let mut kept = Vec::with_capacity(states.len());
    for state in states {
        let Some((_, state)) = state else {
            kept.push(None);
            continue;
        };
        // Still there: held by this document, and made from the same bytes. Only then may a
        // harvest skip it as unchanged.
        let held = parse_found::<Marker>(found.next())?.is_some_and(|m| m.guid == state.guid);
        let same = parse_found::<RecordOrigin>(found.next())?
            .is_some_and(|r| r.sha256 == state.sha256 && r.source == source);
        kept.push((held && same).then_some(state));
    }
    Ok(kept)
}

/// An answer of `get_many` (zipped with its key) read as JSON; `None` when absent.
fn parse_found<T: serde::de::DeserializeOwned>(
    found: Option<(Option<Object>, &String)>,
) -> Result<Option<T>, StoreError> {
    match found {
        Some((Some(object), key)) => parse_json(key, &object.body).map(Some),
        _ => Ok(None),
    }
}

/// The two fields of a record `kept_states` weighs: read alone, without the metadata
/// (whose flattened fields cost a whole record's parse, once per unchanged document).
#[derive(Deserialize)]
struct RecordOrigin {
    source: String,
    sha256: String,
}

/// Removes record `id` when document `guid` of `source` holds it (it left the source, or now
/// reads as another identifier or as nothing valid).
pub(super) async fn release_record(
    services: &Services,
    source: &str,
    id: &str,
    guid: &str,
) -> Result<bool, PipelineError> {
    let id_key = keys::id_key(id);
    let store = services.store.as_ref();
    let marker = get_json::<Marker>(store, &keys::record_marker(source, &id_key)).await?;
    if marker.is_some_and(|(m, _)| m.guid == guid) {
        delete_record(services, source, &id_key).await?;
        return Ok(true);
    }
    Ok(false)
}

/// Removes a record and everything that points at it; the marker goes last, so a rerun
/// after a crash finds it and finishes the work.
pub(super) async fn delete_record(
    services: &Services,
    source: &str,
    id_key: &str,
) -> Result<(), PipelineError> {
    let store = services.store.as_ref();
    // Told before (delayed past the removal) and after: a crash between the two still leaves
    // one message, and the index and the notifications look at the store when it arrives.
    let changed = [id_key.to_string()];
    super::changes::announce(services, &changed, FIRST_WORD_OF_REMOVAL).await?;
    store.delete(&keys::record_json(id_key)).await?;
    store.delete(&keys::record_xml(id_key)).await?;
    if let Ok(owner) = store.get(&keys::record_owner(id_key)).await
        && owner.body.as_ref() == source.as_bytes()
    {
        store.delete(&keys::record_owner(id_key)).await?;
    }
    store.delete(&keys::record_marker(source, id_key)).await?;
    super::changes::announce(services, &changed, std::time::Duration::ZERO).await?;
    Ok(())
}

/// How long the first announcement of a removal waits: past the removal's few writes.
const FIRST_WORD_OF_REMOVAL: std::time::Duration = std::time::Duration::from_secs(30);

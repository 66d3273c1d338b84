//! A package build handed from one invocation to the next: when Lambda's 15 minutes run short
//! between two pages of a datastore table, the build flushes its deflate stream to a byte
//! boundary, uploads the whole parts, and sets the rest aside here; the next invocation (its
//! continuation message, or any delivery of an identical request that claims the build) goes
//! on from it and the requester gets one zip.
//!
//! State, in the store beside the package: `packages/KEY.resume.json` (the upload, the zip's
//! entries and open stream, the datastore cursor) and `packages/KEY.resume/RUN.tail` (the
//! bytes after the last whole part). The state is written last and names its tail, so a run
//! that dies while setting aside leaves the previous state whole; a run that dies after
//! resuming leaves it as it was, and the next goes on from it again.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::PackageError;
use super::archive::ZipState;
use super::build::TablePlace;
use crate::services::Services;
use crate::store::{PutMode, StoreError, UploadState, get_json, put_json};

/// A build set aside by one invocation for the next.
#[derive(Serialize, Deserialize)]
pub(super) struct Suspended {
    /// The state's version (1).
    pub v: u32,
    /// The upload, without the tail.
    pub upload: UploadState,
    pub zip: ZipState,
    pub place: TablePlace,
    /// Invocations the build has taken so far.
    pub runs: u32,
    /// The key of the bytes after the last whole part.
    pub tail: String,
}

fn state_key(cache_key: &str) -> String {
    format!("packages/{cache_key}.resume.json")
}

fn tail_key(cache_key: &str, run: u32) -> String {
    format!("packages/{cache_key}.resume/{run}.tail")
}

/// The build set aside for `cache_key`, with its tail, if there is one.
pub(super) async fn load(
    services: &Services,
    cache_key: &str,
) -> Result<Option<(Suspended, Bytes)>, PackageError> {
    let store = services.store.as_ref();
    let Some((state, _)) = get_json::<Suspended>(store, &state_key(cache_key)).await? else {
        return Ok(None);
    };
    match store.get(&state.tail).await {
        Ok(tail) => Ok(Some((state, tail.body))),
        // A state without its tail cannot go on: the build starts again.
        Err(StoreError::NotFound(_)) => {
            tracing::warn!(
                package = cache_key,
                "a suspended build lost its tail; built anew"
            );
            discard(services, cache_key, Some(&state.tail)).await?;
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Sets a build aside: its tail first, then the state that names it (the commit), then the
/// previous run's tail goes.
pub(super) async fn save(
    services: &Services,
    cache_key: &str,
    mut state: Suspended,
    tail: Bytes,
    previous_tail: Option<&str>,
) -> Result<(), PackageError> {
    let store = services.store.as_ref();
    state.tail = tail_key(cache_key, state.runs);
    store
        .put(
            &state.tail,
            tail,
            "application/octet-stream",
            PutMode::Overwrite,
        )
        .await?;
    put_json(store, &state_key(cache_key), &state, PutMode::Overwrite).await?;
    if let Some(previous) = previous_tail
        && previous != state.tail
    {
        store.delete(previous).await?;
    }
    Ok(())
}

/// Removes what a build set aside (it finished, or cannot go on).
pub(super) async fn discard(
    services: &Services,
    cache_key: &str,
    tail: Option<&str>,
) -> Result<(), PackageError> {
    let store = services.store.as_ref();
    store.delete(&state_key(cache_key)).await?;
    if let Some(tail) = tail {
        store.delete(tail).await?;
    }
    Ok(())
}

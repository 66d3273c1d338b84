//! A claim on a piece of work, held in one object: created once, taken over with If-Match once
//! its holder has been silent past a limit (its process died), ended with If-Match. A package
//! build and a record's notification delivery are claimed this way.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ObjectStore, PutMode, StoreError, get_json, put_json};

#[derive(Serialize, Deserialize)]
struct Claim {
    started: DateTime<Utc>,
}

/// Claims `key`: its version tag when this caller holds it now, `None` while another holder
/// has been silent less than `stale_after`.
pub async fn claim(
    store: &dyn ObjectStore,
    key: &str,
    stale_after: Duration,
) -> Result<Option<String>, StoreError> {
    let mine = Claim {
        started: Utc::now(),
    };
    let won = |result: Result<String, StoreError>| match result {
        Ok(etag) => Ok(Some(etag)),
        Err(StoreError::Precondition(_)) => Ok(None),
        Err(e) => Err(e),
    };
    if let Some(etag) = won(put_json(store, key, &mine, PutMode::Create).await)? {
        return Ok(Some(etag));
    }
    let Some((theirs, etag)) = get_json::<Claim>(store, key).await? else {
        // Removed just now (its work finished): claimed anew only if still free.
        return won(put_json(store, key, &mine, PutMode::Create).await);
    };
    let silent = Utc::now()
        .signed_duration_since(theirs.started)
        .to_std()
        .unwrap_or(Duration::ZERO);
    if silent < stale_after {
        return Ok(None);
    }
    won(put_json(store, key, &mine, PutMode::Update(etag)).await)
}

/// Ends the claim `etag` names without deleting it (a delete could remove the claim a newer
/// holder has just taken over): it reads as long silent, so the next claimant takes it at
/// once. A claim taken over meanwhile stays its new holder's.
pub async fn end(store: &dyn ObjectStore, key: &str, etag: String) -> Result<(), StoreError> {
    let ended = Claim {
        started: DateTime::UNIX_EPOCH,
    };
    match put_json(store, key, &ended, PutMode::Update(etag)).await {
        Ok(_) | Err(StoreError::Precondition(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

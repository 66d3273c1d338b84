//! Sending records to targets: one record at a time under its lease, each target given the
//! record's current state unless it has it already, failures kept for the retry.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::targets::{Target, list_targets, load_target};
use super::{NotifyError, NotifyMessage};
use crate::domain::keys;
use crate::domain::now;
use crate::domain::record::Record;
use crate::fetch::{FetchError, PostForm};
use crate::parse::xml::decode;
use crate::services::Services;
use crate::store::{ObjectStore, Pages, PutMode, StoreError, claim, get_json, put_json};

/// How long a delivery holds a record: far beyond a round of POSTs (each bounded by the
/// notify timeout), so only a delivery that died loses it.
const LEASE: Duration = Duration::from_secs(300);
/// Rounds of one record's delivery: a change that lands while it is sent is sent next round.
const MAX_ROUNDS: usize = 4;
/// Of a target's answer, kept to explain a refusal.
const ANSWER_LIMIT: u64 = 64 * 1024;

/// What a target last received of a record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Delivered {
    /// SHA-256 of the XML sent.
    sha256: String,
    /// The record's identifier, which a later delete sends.
    uuid: String,
}

/// A delivery that failed and waits for the retry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Failure {
    pub target: String,
    pub uuid: String,
    /// `update` or `delete`: what was being sent (a retry sends the state of its time).
    pub action: String,
    pub error: String,
    pub attempts: u32,
    pub first_failed: String,
    pub last_tried: String,
}

/// A record as it is now: what an update sends, or gone.
enum State {
    Present {
        uuid: String,
        xml: String,
        sha256: String,
    },
    Gone,
}

async fn current_state(store: &dyn ObjectStore, id_key: &str) -> Result<State, NotifyError> {
    // The record's JSON first, then its XML: import writes them the other way round, so an
    // XML newer than its JSON can be read here, never an older one.
    let Some((record, _)) = get_json::<Record>(store, &keys::record_json(id_key)).await? else {
        return Ok(State::Gone);
    };
    let xml = match store.get(&keys::record_xml(id_key)).await {
        Ok(object) => object.body,
        Err(StoreError::NotFound(_)) => return Ok(State::Gone),
        Err(e) => return Err(e.into()),
    };
    Ok(State::Present {
        uuid: record.metadata.id,
        sha256: hex::encode(Sha256::digest(&xml)),
        // A form field is text: a Latin-1 or UTF-16 document is sent decoded.
        xml: decode(&xml).unwrap_or_else(|_| String::from_utf8_lossy(&xml).into_owned()),
    })
}

/// The targets a message is for: the one it names, or every enabled one.
async fn targets_of(
    store: &dyn ObjectStore,
    message: &NotifyMessage,
) -> Result<Vec<Target>, NotifyError> {
    let targets = match &message.target {
        Some(name) => load_target(store, name)
            .await?
            .map(|(t, _)| t)
            .into_iter()
            .collect(),
        None => list_targets(store).await?,
    };
    Ok(targets.into_iter().filter(|t| t.enabled).collect())
}

/// Delivers a message's records; the ones another delivery holds are put back on the queue.
pub(super) async fn handle_message(
    services: &Services,
    message: &NotifyMessage,
) -> Result<(), NotifyError> {
    let busy = deliver(services, message).await?;
    // Looked at again after the check delay, as a job's check looks again.
    super::send_keys(
        services,
        &busy,
        message.target.as_deref(),
        services.settings.check_delay,
    )
    .await
}

/// Delivers a message in this process, waiting for records another delivery holds.
pub(super) async fn deliver_here(
    services: &Services,
    message: &NotifyMessage,
) -> Result<(), NotifyError> {
    let mut message = message.clone();
    for _ in 0..20 {
        message.keys = deliver(services, &message).await?;
        if message.keys.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(NotifyError::Conflict(format!(
        "records {:?} stayed held by another delivery",
        message.keys
    )))
}

/// Delivers each record of `message`; returns the keys another delivery holds.
async fn deliver(services: &Services, message: &NotifyMessage) -> Result<Vec<String>, NotifyError> {
    let store = services.store.as_ref();
    let targets = targets_of(store, message).await?;
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    // A target that failed to answer is not tried again for the rest of the message: one
    // hanging target costs one timeout a message, not one a record.
    let mut unreachable: HashMap<String, String> = HashMap::new();
    let mut busy = Vec::new();
    for id_key in &message.keys {
        let lease = keys::notify_lease(id_key);
        let Some(held) = claim::claim(store, &lease, LEASE).await? else {
            busy.push(id_key.clone());
            continue;
        };
        let result = deliver_record(services, &targets, id_key, &mut unreachable).await;
        if let Err(e) = claim::end(store, &lease, held).await {
            // It ends by itself when its time is up.
            tracing::warn!(error = %e, "could not end a notification lease");
        }
        result?;
    }
    Ok(busy)
}

/// Sends one record to every target that lacks its current state, round after round until a
/// round sends nothing (the record did not change while it was sent).
async fn deliver_record(
    services: &Services,
    targets: &[Target],
    id_key: &str,
    unreachable: &mut HashMap<String, String>,
) -> Result<(), NotifyError> {
    let store = services.store.as_ref();
    let mut failed: HashSet<String> = HashSet::new();
    for _ in 0..MAX_ROUNDS {
        let state = current_state(store, id_key).await?;
        let mut sent = false;
        for target in targets {
            if failed.contains(&target.name) {
                continue;
            }
            match deliver_to(services, target, id_key, &state, unreachable).await? {
                Outcome::Sent => sent = true,
                Outcome::Failed => {
                    failed.insert(target.name.clone());
                }
                Outcome::Nothing => {}
            }
        }
        if !sent {
            break;
        }
    }
    Ok(())
}

enum Outcome {
    /// The target has the state now.
    Sent,
    Failed,
    /// The target had the state already (or never held a record now gone).
    Nothing,
}

async fn deliver_to(
    services: &Services,
    target: &Target,
    id_key: &str,
    state: &State,
    unreachable: &mut HashMap<String, String>,
) -> Result<Outcome, NotifyError> {
    let store = services.store.as_ref();
    let marker = keys::notify_delivered(&target.name, &target.generation, id_key);
    let delivered = get_json::<Delivered>(store, &marker).await?.map(|(d, _)| d);
    let (fields, uuid, action) = match (state, &delivered) {
        (State::Present { sha256, uuid, .. }, Some(d))
            if d.sha256 == *sha256 && d.uuid == *uuid =>
        {
            clear_failure(store, target, id_key).await?;
            return Ok(Outcome::Nothing);
        }
        (State::Present { uuid, xml, .. }, _) => (
            vec![
                ("action".to_string(), "update".to_string()),
                ("uuid".to_string(), uuid.clone()),
                ("XMLFile".to_string(), xml.clone()),
            ],
            uuid.clone(),
            "update",
        ),
        // The target never received it (or was told already): nothing to delete there.
        (State::Gone, None) => {
            clear_failure(store, target, id_key).await?;
            return Ok(Outcome::Nothing);
        }
        (State::Gone, Some(d)) => (
            vec![
                ("action".to_string(), "delete".to_string()),
                ("uuid".to_string(), d.uuid.clone()),
            ],
            d.uuid.clone(),
            "delete",
        ),
    };
    if let Some(reason) = unreachable.get(&target.name) {
        let error = format!("not tried: the target failed earlier in this batch ({reason})");
        record_failure(store, target, id_key, &uuid, action, error).await?;
        return Ok(Outcome::Failed);
    }
    let request = PostForm {
        url: target.url.clone(),
        fields,
        timeout: services.settings.notify_timeout,
        max_bytes: ANSWER_LIMIT,
    };
    let error = match services.fetcher.post_form(&request).await {
        Ok(answer) if (200..300).contains(&answer.status) => None,
        Ok(answer) => Some(format!(
            "HTTP {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
                .chars()
                .take(200)
                .collect::<String>()
                .trim()
        )),
        Err(e) => {
            let message = e.to_string();
            if matches!(e, FetchError::Transport { .. } | FetchError::Refused { .. }) {
                unreachable.insert(target.name.clone(), message.clone());
            }
            Some(message)
        }
    };
    if let Some(error) = error {
        tracing::warn!(target = %target.name, uuid = %uuid, action, error = %error, "notification failed");
        record_failure(store, target, id_key, &uuid, action, error).await?;
        return Ok(Outcome::Failed);
    }
    match state {
        State::Present { sha256, uuid, .. } => {
            let delivered = Delivered {
                sha256: sha256.clone(),
                uuid: uuid.clone(),
            };
            put_json(store, &marker, &delivered, PutMode::Overwrite).await?;
        }
        State::Gone => store.delete(&marker).await?,
    }
    clear_failure(store, target, id_key).await?;
    tracing::info!(target = %target.name, uuid = %uuid, action, "notification sent");
    Ok(Outcome::Sent)
}

async fn clear_failure(
    store: &dyn ObjectStore,
    target: &Target,
    id_key: &str,
) -> Result<(), NotifyError> {
    Ok(store
        .delete(&keys::notify_failure(&target.name, id_key))
        .await?)
}

async fn record_failure(
    store: &dyn ObjectStore,
    target: &Target,
    id_key: &str,
    uuid: &str,
    action: &str,
    error: String,
) -> Result<(), NotifyError> {
    let key = keys::notify_failure(&target.name, id_key);
    let stamp = now();
    let earlier = get_json::<Failure>(store, &key).await?.map(|(f, _)| f);
    let failure = Failure {
        target: target.name.clone(),
        uuid: uuid.to_string(),
        action: action.to_string(),
        error,
        attempts: earlier.as_ref().map_or(0, |f| f.attempts) + 1,
        first_failed: earlier.map_or_else(|| stamp.clone(), |f| f.first_failed),
        last_tried: stamp,
    };
    put_json(store, &key, &failure, PutMode::Overwrite).await?;
    Ok(())
}

/// Every target's failures, at most `limit`.
pub async fn list_failures(
    store: &dyn ObjectStore,
    limit: usize,
) -> Result<Vec<Failure>, NotifyError> {
    let mut out = Vec::new();
    for target in list_targets(store).await? {
        let mut pages = Pages::new(store, &keys::notify_failures_of(&target.name));
        while let Some(entries) = pages.next().await? {
            for entry in entries {
                if out.len() >= limit {
                    return Ok(out);
                }
                if let Some((failure, _)) = get_json::<Failure>(store, &entry.key).await? {
                    out.push(failure);
                }
            }
        }
    }
    Ok(out)
}

/// The record keys of a target's failures, a page at a time.
pub(super) async fn failed_keys(
    store: &dyn ObjectStore,
    target: &str,
) -> Result<Vec<String>, NotifyError> {
    let prefix = keys::notify_failures_of(target);
    let mut out = Vec::new();
    let mut pages = Pages::new(store, &prefix);
    while let Some(entries) = pages.next().await? {
        out.extend(
            entries
                .iter()
                .filter_map(|e| e.key.strip_prefix(&prefix)?.strip_suffix(".json"))
                .map(str::to_string),
        );
    }
    Ok(out)
}

//! A new (or re-enabled) target receives every record: a chain of messages, each sending on
//! one page of the catalogue's listing and moving the target's cursor with `If-Match`. Only
//! the message whose cursor matches the target's moves it, so a redelivery, or the schedule
//! resuming a chain that stopped, never forks it; a page sent twice is sent once, as the
//! delivery skips what the target has.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::NotifyError;
use super::targets::{Backfill, Target, load_target};
use crate::domain::keys;
use crate::domain::now;
use crate::queue::QueueName;
use crate::services::Services;
use crate::store::{PAGE_SIZE, PutMode, StoreError, put_json};

pub const MESSAGE_KIND: &str = "notify-backfill";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackfillMessage {
    pub kind: String,
    pub target: String,
    pub generation: String,
    /// The record key the page starts after.
    pub after: Option<String>,
}

/// Sends the step `target`'s backfill is at (its first, or where a stalled one stopped);
/// without a notify queue runs it to its end here.
pub(super) async fn start(services: &Services, target: &Target) -> Result<(), NotifyError> {
    let Some(backfill) = target.backfill.as_ref().filter(|b| !b.done) else {
        return Ok(());
    };
    let message = BackfillMessage {
        kind: MESSAGE_KIND.into(),
        target: target.name.clone(),
        generation: target.generation.clone(),
        after: backfill.after.clone(),
    };
    match services.queues.get(QueueName::Notify) {
        Ok(_) => send(services, &message).await?,
        Err(_) => {
            let mut next = Some(message);
            while let Some(message) = next {
                next = step(services, &message).await?;
            }
        }
    }
    Ok(())
}

pub(super) async fn handle_message(
    services: &Services,
    message: &BackfillMessage,
) -> Result<(), NotifyError> {
    if let Some(next) = step(services, message).await? {
        send(services, &next).await?;
    }
    Ok(())
}

async fn send(services: &Services, message: &BackfillMessage) -> Result<(), NotifyError> {
    let queue = services.queues.get(QueueName::Notify)?;
    let body = serde_json::to_string(message).expect("a message always serialises");
    Ok(queue.send(body, Duration::ZERO).await?)
}

/// Sends on one page of records after `message.after`; returns the next step, if any.
async fn step(
    services: &Services,
    message: &BackfillMessage,
) -> Result<Option<BackfillMessage>, NotifyError> {
    let store = services.store.as_ref();
    let Some((mut target, etag)) = load_target(store, &message.target).await? else {
        return Ok(None);
    };
    let current = target.backfill.clone();
    let Some(backfill) =
        current.filter(|b| target.enabled && target.generation == message.generation && !b.done)
    else {
        return Ok(None);
    };
    if backfill.after != message.after {
        // Another delivery of this step moved the cursor already.
        return Ok(None);
    }
    let page = store
        .list_keys_page(keys::RECORDS, message.after.as_deref(), PAGE_SIZE)
        .await?;
    let record_keys: Vec<String> = page
        .iter()
        .filter_map(|e| e.key.strip_prefix(keys::RECORDS)?.strip_suffix(".json"))
        .map(str::to_string)
        .collect();
    super::send_keys(services, &record_keys, Some(&target.name), Duration::ZERO).await?;
    let done = page.len() < PAGE_SIZE;
    let after = page
        .last()
        .map(|e| e.key.clone())
        .or(backfill.after.clone());
    target.backfill = Some(Backfill {
        after: after.clone(),
        done,
        sent: backfill.sent + record_keys.len() as u64,
        updated: now(),
    });
    match put_json(
        store,
        &keys::notify_target(&target.name),
        &target,
        PutMode::Update(etag),
    )
    .await
    {
        Ok(_) => {}
        // Changed meanwhile (disabled, re-enabled, or this step taken by another delivery):
        // the target's own state decides what follows.
        Err(StoreError::Precondition(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    Ok((!done).then(|| BackfillMessage {
        after,
        ..message.clone()
    }))
}

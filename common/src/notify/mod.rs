//! Remote notifications to partner catalogues (GeoNetwork's "metadata notifications to remote
//! targets"): every change of a catalogue record is POSTed to each enabled target as the
//! form fields `action` (`update` or `delete`), `uuid` and, on update, `XMLFile` (the record's
//! XML).
//!
//! # Design
//! A notify message names records by key, never their content: the delivery sends what the
//! store holds when it runs, so a message delivered twice, late or out of order still sends
//! the record's latest state, and a newer change simply supersedes a pending older one.
//! What each target last received of a record is kept (`delivered`), so an unchanged record is
//! not sent twice and a delete goes only to targets that hold the record. One delivery at a
//! time per record (a lease) sends its changes, and it looks again after sending, so a
//! target receives one record's changes in order and ends with the latest. A failure is kept
//! per target and record and retried by the schedule; a target created or re-enabled starts a
//! new generation that has received nothing, and a backfill pages through the catalogue.

mod backfill;
mod deliver;
mod retry;
mod targets;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::source::FieldError;
use crate::queue::{QueueError, QueueName, Received};
use crate::services::Services;
use crate::store::StoreError;

pub use deliver::{Failure, list_failures};
pub use retry::{ScheduleReport, on_schedule, retry_now};
pub use targets::{
    Backfill, NewTarget, Target, TargetPatch, add_target, list_targets, patch_target, remove_target,
};

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
}

pub const MESSAGE_KIND: &str = "notify";

/// Records (by key) whose current state targets should have.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotifyMessage {
    pub kind: String,
    pub keys: Vec<String>,
    /// Only this target (a retry or a backfill); none, every enabled target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// Keys one message names: a backfill page of 1,000 is ten messages.
const KEYS_A_MESSAGE: usize = 100;

/// Tells the targets that the records of `id_keys` changed, after `delay`.
pub async fn send_changes(
    services: &Services,
    id_keys: &[String],
    delay: Duration,
) -> Result<(), NotifyError> {
    send_keys(services, id_keys, None, delay).await
}

/// Puts `id_keys` on the notify queue for `target` (or every target); without a notify queue
/// (the command line against a bucket without the stack's queues) delivers them here.
pub(super) async fn send_keys(
    services: &Services,
    id_keys: &[String],
    target: Option<&str>,
    delay: Duration,
) -> Result<(), NotifyError> {
    for chunk in id_keys.chunks(KEYS_A_MESSAGE) {
        let message = NotifyMessage {
            kind: MESSAGE_KIND.into(),
            keys: chunk.to_vec(),
            target: target.map(str::to_string),
        };
        match services.queues.get(QueueName::Notify) {
            Ok(queue) => {
                let body = serde_json::to_string(&message).expect("a message always serialises");
                queue.send(body, delay).await?;
            }
            Err(_) => deliver::deliver_here(services, &message).await?,
        }
    }
    Ok(())
}

/// Handles a notify or backfill message; `None` when `body` is neither.
pub async fn handle_body(services: &Services, body: &str) -> Option<Result<(), NotifyError>> {
    if let Ok(message) = serde_json::from_str::<NotifyMessage>(body)
        && message.kind == MESSAGE_KIND
    {
        return Some(deliver::handle_message(services, &message).await);
    }
    if let Ok(message) = serde_json::from_str::<backfill::BackfillMessage>(body)
        && message.kind == backfill::MESSAGE_KIND
    {
        return Some(backfill::handle_message(services, &message).await);
    }
    None
}

/// Delivers everything waiting on the notify queue, in this process (the command line in local
/// mode, where no worker may be running). Returns the messages handled.
pub async fn drain(services: &Services) -> Result<u64, NotifyError> {
    let Ok(queue) = services.queues.get(QueueName::Notify) else {
        return Ok(0);
    };
    let mut handled = 0;
    loop {
        let batch = queue.receive(100, Duration::from_secs(300)).await?;
        if batch.is_empty() {
            return Ok(handled);
        }
        // The batch's notify messages for one target are delivered as one (a message only
        // says "look at these records"): the targets are read once a batch, not once a
        // record, as an import announces each record alone. Backfills go one by one.
        let mut merged: Vec<(NotifyMessage, Vec<&Received>)> = Vec::new();
        let mut others = Vec::new();
        for m in &batch {
            match serde_json::from_str::<NotifyMessage>(&m.body) {
                Ok(message) if message.kind == MESSAGE_KIND => {
                    match merged.iter_mut().find(|(k, _)| k.target == message.target) {
                        Some((into, received)) => {
                            into.keys.extend(message.keys);
                            received.push(m);
                        }
                        None => merged.push((message, vec![m])),
                    }
                }
                _ => others.push(m),
            }
        }
        let mut deliveries = Vec::with_capacity(merged.len() + others.len());
        for (mut message, received) in merged {
            let mut seen = std::collections::HashSet::new();
            message.keys.retain(|key| seen.insert(key.clone()));
            deliveries.push((received, deliver::handle_message(services, &message).await));
        }
        for m in others {
            let outcome = handle_body(services, &m.body).await.unwrap_or(Ok(()));
            deliveries.push((vec![m], outcome));
        }
        // The handled ones are deleted together (locally they share a commit: one at a time,
        // a harvest of 5,000 records waited 0.4 s for them).
        let mut done = Vec::with_capacity(batch.len());
        for (received, outcome) in deliveries {
            match outcome {
                Ok(()) => done.extend(received.into_iter().map(|m| queue.delete(&m.receipt))),
                Err(e) => {
                    tracing::warn!(error = %e, "a notification failed; it will be retried");
                    for m in received {
                        queue
                            .change_visibility(&m.receipt, Duration::from_secs(5))
                            .await?;
                    }
                }
            }
        }
        handled += done.len() as u64;
        futures::future::try_join_all(done).await?;
    }
}

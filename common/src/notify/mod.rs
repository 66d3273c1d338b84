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
use crate::queue::{QueueError, QueueName};
use crate::services::Services;
use crate::store::StoreError;

pub use backfill::BackfillMessage;
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

/// A message of the notify queue, parsed once.
#[derive(Debug, Clone)]
pub enum NotifyQueued {
    /// Records whose current state the targets should have.
    Notice(NotifyMessage),
    /// A page of a target's backfill.
    Backfill(BackfillMessage),
}

impl NotifyQueued {
    /// `body` read as the message its `kind` names; `None` when that is not a notify
    /// queue's kind.
    pub fn parse(kind: &str, body: &str) -> Option<Result<NotifyQueued, serde_json::Error>> {
        match kind {
            MESSAGE_KIND => Some(serde_json::from_str(body).map(NotifyQueued::Notice)),
            backfill::MESSAGE_KIND => Some(serde_json::from_str(body).map(NotifyQueued::Backfill)),
            _ => None,
        }
    }
}

/// Handles one message of the notify queue.
pub async fn handle(services: &Services, message: &NotifyQueued) -> Result<(), NotifyError> {
    match message {
        NotifyQueued::Notice(notice) => deliver::handle_message(services, notice).await,
        NotifyQueued::Backfill(page) => backfill::handle_message(services, page).await,
    }
}

/// One delivery's outcome, with the positions in the batch of the messages it stands for.
pub type BatchOutcome = (Vec<usize>, Result<(), NotifyError>);

/// Delivers notify messages merged by [`merge_by_target`], at once; returns each delivery's
/// outcome.
pub async fn deliver_merged(
    services: &Services,
    merged: Vec<(NotifyMessage, Vec<usize>)>,
) -> Vec<BatchOutcome> {
    futures::future::join_all(merged.into_iter().map(|(message, positions)| async move {
        (positions, deliver::handle_message(services, &message).await)
    }))
    .await
}

/// A batch's notify messages (each with its position in the batch) merged per target, each
/// with the positions of the messages it merges. A message only says "look at these
/// records", and an import announces each record alone: merged, the targets are read once a
/// merged message, not once a record, and a target that does not answer costs one timeout.
/// Keys are deduplicated, and no merged message holds more than one message may
/// ([`KEYS_A_MESSAGE`]), so a delivery takes no longer than one did alone.
pub fn merge_by_target(notices: Vec<(usize, NotifyMessage)>) -> Vec<(NotifyMessage, Vec<usize>)> {
    let mut merged: Vec<(NotifyMessage, Vec<usize>)> = Vec::new();
    for (at, message) in notices {
        let room = merged.iter_mut().find(|(into, _)| {
            into.target == message.target && into.keys.len() + message.keys.len() <= KEYS_A_MESSAGE
        });
        match room {
            Some((into, positions)) => {
                for key in message.keys {
                    if !into.keys.contains(&key) {
                        into.keys.push(key);
                    }
                }
                positions.push(at);
            }
            None => merged.push((message, vec![at])),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(keys: &[&str], target: Option<&str>) -> NotifyMessage {
        NotifyMessage {
            kind: MESSAGE_KIND.into(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            target: target.map(str::to_string),
        }
    }

    #[test]
    fn merges_per_target_without_repeating_a_key_or_outgrowing_a_message() {
        let mut notices = vec![
            notice(&["k1"], None),
            notice(&["k2", "k1"], Some("a")),
            notice(&["k1", "k3"], None),
            notice(&["k1"], Some("a")),
        ];
        // 150 more single-key messages for every target: two merged messages, not one.
        notices.extend((0..150).map(|n| notice(&[&format!("n{n}")], None)));
        let count = notices.len();
        // Positions as in a batch where others sit among them (at 2 and 5, say).
        let positions = (0..).filter(|at| *at != 2 && *at != 5);
        let merged = merge_by_target(positions.zip(notices).collect());
        let summary: Vec<(Option<&str>, usize, usize)> = merged
            .iter()
            .map(|(m, at)| (m.target.as_deref(), m.keys.len(), at.len()))
            .collect();
        assert_eq!(
            summary,
            [
                (None, KEYS_A_MESSAGE, 100),
                (Some("a"), 2, 2),
                (None, 52, 52)
            ]
        );
        assert_eq!(merged[0].0.keys[..3], ["k1", "k3", "n0"]);
        assert_eq!(merged[0].1[..3], [0, 3, 6]);
        let all: usize = merged.iter().map(|(_, at)| at.len()).sum();
        assert_eq!(all, count);
    }
}

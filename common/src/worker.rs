//! Running pipeline messages off queues: the batch handling the Lambda functions (with
//! partial batch failures) and `serve`'s local polling workers share.

use std::time::Duration;

use crate::notify::NotifyQueued;
use crate::pipeline::{Incoming, handle_incoming};
use crate::queue::{Queue, QueueError, QueueName, Received};
use crate::services::Services;

/// One message of a batch, as an SQS event carries it.
pub struct BatchMessage {
    pub id: String,
    pub body: String,
    pub receive_count: u32,
}

impl From<&Received> for BatchMessage {
    fn from(m: &Received) -> Self {
        BatchMessage {
            id: m.id.clone(),
            body: m.body.clone(),
            receive_count: m.receive_count,
        }
    }
}

/// Handles a batch; returns the ids of the messages that failed, for SQS to deliver again.
/// Each body is parsed once (`Incoming`). Index messages are applied together, in one
/// commit; notify notices are merged per target (`notify::merge_by_target`); the rest are
/// handled each alone, all at once. A body that is not a message is logged and dropped.
pub async fn process_batch(services: &Services, messages: Vec<BatchMessage>) -> Vec<String> {
    let (mut index_keys, mut indexed) = (Vec::new(), Vec::new());
    let (mut notices, mut others) = (Vec::new(), Vec::new());
    for (at, m) in messages.iter().enumerate() {
        match Incoming::parse(&m.body) {
            Ok(Incoming::Index(message)) => {
                index_keys.extend(message.keys);
                indexed.push(at);
            }
            Ok(Incoming::Notify(NotifyQueued::Notice(notice))) => notices.push((at, notice)),
            Ok(message) => others.push((at, message)),
            Err(e) => {
                tracing::error!(message = %m.id, error = %e, "dropping a message that is not a Sheaf message");
            }
        }
    }
    let mut failed = Vec::new();
    if !index_keys.is_empty() {
        index_keys.sort();
        index_keys.dedup();
        if let Err(e) = crate::pipeline::apply_index_keys(services, &index_keys).await {
            tracing::warn!(error = %e, messages = indexed.len(), "indexing failed; it will be retried");
            failed.extend(indexed.iter().map(|&at| messages[at].id.clone()));
        }
    }
    let messages = &messages;
    let handled = futures::future::join_all(others.into_iter().map(|(at, message)| async move {
        let outcome = handle_incoming(services, &message, messages[at].receive_count).await;
        (vec![at], outcome.map_err(|e| e.to_string()))
    }));
    let merged = crate::notify::merge_by_target(notices);
    let (notified, handled) =
        tokio::join!(crate::notify::deliver_merged(services, merged), handled);
    let notified = notified
        .into_iter()
        .map(|(positions, outcome)| (positions, outcome.map_err(|e| e.to_string())));
    for (positions, outcome) in notified.chain(handled) {
        if let Err(e) = outcome {
            for at in positions {
                let m = &messages[at];
                tracing::warn!(message = %m.id, attempt = m.receive_count, error = %e, "message failed; it will be retried");
                failed.push(m.id.clone());
            }
        }
    }
    failed
}

/// How many messages a worker takes at once, and how long they stay hidden while handled: a
/// package uses every core and may take many minutes, so it is taken alone and hidden longer.
fn batch_shape(queue: QueueName) -> (usize, Duration) {
    match queue {
        QueueName::PackageFast | QueueName::PackageSlow => (1, Duration::from_secs(3600)),
        // A rebuild runs as long as its catalogue needs; it is not shown again meanwhile.
        QueueName::Rebuild => (1, Duration::from_secs(6 * 3600)),
        _ => (10, Duration::from_secs(300)),
    }
}

/// Polls `queue` until `stop` resolves: handles each message, deletes it on success, and on
/// failure lets it reappear after a back-off that grows with its receive count.
pub async fn run_queue_worker(
    services: Services,
    queue: QueueName,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let idle = Duration::from_millis(200);
    let q = match services.queues.get(queue) {
        Ok(q) => q.clone(),
        Err(e) => {
            tracing::error!(error = %e, "worker has no queue");
            return;
        }
    };
    loop {
        if *stop.borrow() {
            return;
        }
        let (batch_size, visibility) = batch_shape(queue);
        let batch: Vec<Received> = match q.receive(batch_size, visibility).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(queue = queue.as_str(), error = %e, "receive failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.is_empty() {
            tokio::time::sleep(idle).await;
            continue;
        }
        if let Err(e) = settle(&services, q.as_ref(), &batch).await {
            tracing::error!(queue = queue.as_str(), error = %e, "delete failed");
        }
    }
}

/// Handles what one receive gave as a Lambda function handles its batch (`process_batch`:
/// notify messages merged per target, which warns of each failure): the handled ones are
/// deleted together, the failed ones come back after a back-off that grows with their receive
/// count. Returns how many were handled.
async fn settle(services: &Services, q: &dyn Queue, batch: &[Received]) -> Result<u64, QueueError> {
    let messages = batch.iter().map(BatchMessage::from).collect();
    let failed = process_batch(services, messages).await;
    let (failed, done): (Vec<&Received>, Vec<&Received>) =
        batch.iter().partition(|m| failed.contains(&m.id));
    // A back-off not set leaves the message hidden for its receive's visibility: it comes
    // back all the same.
    let backed_off = failed.iter().map(|m| {
        let backoff = Duration::from_secs(2u64.pow(m.receive_count.min(8)));
        q.change_visibility(&m.receipt, backoff)
    });
    let receipts: Vec<String> = done.iter().map(|m| m.receipt.clone()).collect();
    let (_, deleted) = tokio::join!(
        futures::future::join_all(backed_off),
        q.delete_batch(&receipts)
    );
    deleted?;
    Ok(done.len() as u64)
}

/// Handles everything waiting on `queue` in this process until none is visible: the command
/// line in local mode, where no worker may be running, delivers the notifications it queued so.
/// A failed message waits out its back-off for a later run or a worker. Returns the messages
/// handled.
pub async fn drain(services: &Services, queue: QueueName) -> Result<u64, QueueError> {
    let Ok(q) = services.queues.get(queue) else {
        return Ok(0);
    };
    let mut handled = 0;
    loop {
        // A hundred at once where the queue gives that many (locally): the notices of a
        // harvest are merged per target across them.
        let batch = q.receive(100, Duration::from_secs(300)).await?;
        if batch.is_empty() {
            return Ok(handled);
        }
        handled += settle(services, q.as_ref(), &batch).await?;
    }
}

/// The search index's one writer in local mode: applies the waiting record changes, a batch
/// at a time (one commit each), until `stop` resolves.
pub async fn run_index_worker(services: Services, stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        match crate::pipeline::drain_index(&services).await {
            Ok(0) => tokio::time::sleep(Duration::from_millis(200)).await,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "indexing failed; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

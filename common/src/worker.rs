//! Running pipeline messages off queues: the batch handling the Lambda functions (with
//! partial batch failures) and `serve`'s local polling workers share.

use std::time::Duration;

use crate::pipeline::{INDEX_MESSAGE_KIND, IndexMessage, handle_body};
use crate::queue::{QueueName, Received};
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
/// Index messages are applied together, in one commit; notify messages are merged per target
/// (`notify::merge_by_target`); the rest are handled each alone, all at once.
pub async fn process_batch(services: &Services, messages: Vec<BatchMessage>) -> Vec<String> {
    let (index, messages): (Vec<BatchMessage>, Vec<BatchMessage>) =
        messages.into_iter().partition(|m| {
            serde_json::from_str::<IndexMessage>(&m.body)
                .is_ok_and(|i| i.kind == INDEX_MESSAGE_KIND)
        });
    let mut failed = Vec::new();
    if !index.is_empty() {
        let mut keys: Vec<String> = index
            .iter()
            .filter_map(|m| serde_json::from_str::<IndexMessage>(&m.body).ok())
            .flat_map(|i| i.keys)
            .collect();
        keys.sort();
        keys.dedup();
        if let Err(e) = crate::pipeline::apply_index_keys(services, &keys).await {
            tracing::warn!(error = %e, messages = index.len(), "indexing failed; it will be retried");
            failed.extend(index.iter().map(|m| m.id.clone()));
        }
    }
    // Notify messages merged per target, the rest one by one, all at once.
    let bodies: Vec<&str> = messages.iter().map(|m| m.body.as_str()).collect();
    let (merged, others) = crate::notify::merge_by_target(&bodies);
    let messages = &messages;
    let handled = futures::future::join_all(others.into_iter().map(|at| async move {
        let m = &messages[at];
        let outcome = handle_body(services, &m.body, m.receive_count).await;
        (vec![at], outcome.map_err(|e| e.to_string()))
    }));
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
                failed.push(messages[at].id.clone());
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
        // Handled as a Lambda function handles its batch (notify messages merged per target).
        let messages = batch.iter().map(BatchMessage::from).collect();
        let failed = process_batch(&services, messages).await;
        // The failed ones come back after a back-off (`process_batch` warned of each); the
        // rest are deleted together.
        let (failed, done): (Vec<&Received>, Vec<&Received>) =
            batch.iter().partition(|m| failed.contains(&m.id));
        let backed_off = failed.iter().map(|m| {
            let backoff = Duration::from_secs(2u64.pow(m.receive_count.min(8)));
            q.change_visibility(&m.receipt, backoff)
        });
        let receipts: Vec<String> = done.iter().map(|m| m.receipt.clone()).collect();
        let (_, deleted) = tokio::join!(
            futures::future::join_all(backed_off),
            q.delete_batch(&receipts)
        );
        if let Err(e) = deleted {
            tracing::error!(queue = queue.as_str(), error = %e, "delete failed");
        }
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

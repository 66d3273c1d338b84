//! The queue port: SQS between the stages on AWS, a durable SQLite table locally.
//!
//! Messages are small JSON documents (keys, never documents) and every handler is safe to run
//! twice, because both backends deliver at least once.

#[cfg(feature = "sqlite")]
mod local;
mod memory;
mod sqs;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

/// The `kind` every Sheaf message carries, read without the rest of it: which shape to
/// parse the message as (`None`: not a JSON object with one).
pub fn message_kind(body: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Kind {
        kind: String,
    }
    serde_json::from_str::<Kind>(body).ok().map(|k| k.kind)
}

#[cfg(feature = "sqlite")]
pub use local::LocalQueue;
pub use memory::MemoryQueue;
pub use sqs::SqsQueue;

/// A message is moved to the dead-letter queue when it is received more often than this.
pub const MAX_RECEIVE_COUNT: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue {queue}: {message}")]
    Backend { queue: String, message: String },
}

impl QueueError {
    pub fn backend(queue: &str, err: impl std::fmt::Display) -> Self {
        QueueError::Backend {
            queue: queue.to_string(),
            message: err.to_string(),
        }
    }
}

/// A received message; `receipt` deletes it or changes its visibility.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub body: String,
    pub receipt: String,
    /// How often this message has been received, this time included.
    pub receive_count: u32,
}

/// Messages waiting, in flight, and in the dead-letter queue.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct QueueDepth {
    pub visible: u64,
    pub in_flight: u64,
    pub dead_letters: u64,
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends one message, visible after `delay` (SQS caps it at 15 minutes).
    async fn send(&self, body: String, delay: Duration) -> Result<(), QueueError>;
    /// Sends many messages, in batches of ten where the backend batches.
    async fn send_batch(&self, bodies: Vec<String>) -> Result<(), QueueError> {
        for body in bodies {
            self.send(body, Duration::ZERO).await?;
        }
        Ok(())
    }
    /// Up to `max` visible messages, hidden from other receivers for `visibility`. A message
    /// received more than `MAX_RECEIVE_COUNT` times goes to the dead-letter queue instead.
    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Received>, QueueError>;
    async fn delete(&self, receipt: &str) -> Result<(), QueueError>;
    /// Deletes several received messages: at once, and in one write where the backend can
    /// (the local queue: one write of its next commit).
    async fn delete_batch(&self, receipts: &[String]) -> Result<(), QueueError> {
        futures::future::try_join_all(receipts.iter().map(|r| self.delete(r))).await?;
        Ok(())
    }
    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError>;
    async fn depth(&self) -> Result<QueueDepth, QueueError>;
    /// Drops every waiting message (not the dead letters).
    async fn purge(&self) -> Result<(), QueueError>;
    /// Up to `max` messages of the dead-letter queue, each hidden for `visibility` from the
    /// next look; they stay there until `delete_dead_letter` (a redrive) removes them.
    async fn receive_dead_letters(
        &self,
        _max: usize,
        _visibility: Duration,
    ) -> Result<Vec<Received>, QueueError> {
        Ok(Vec::new())
    }
    /// Removes a dead letter `receive_dead_letters` gave.
    async fn delete_dead_letter(&self, _receipt: &str) -> Result<(), QueueError> {
        Ok(())
    }
    /// Shows dead letters `receive_dead_letters` gave to the next look at once: a look that
    /// only reads must not hide them from a redrive.
    async fn release_dead_letters(&self, _receipts: &[String]) -> Result<(), QueueError> {
        Ok(())
    }
}

/// The queues between Sheaf's stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueName {
    Gather,
    Fetch,
    Import,
    /// Record changes for the search index's one writer.
    Index,
    /// A catalogue rebuild to run (one message a rebuild).
    Rebuild,
    Notify,
    PackageFast,
    PackageSlow,
}

impl QueueName {
    pub const ALL: [QueueName; 8] = [
        QueueName::Gather,
        QueueName::Fetch,
        QueueName::Import,
        QueueName::Index,
        QueueName::Rebuild,
        QueueName::Notify,
        QueueName::PackageFast,
        QueueName::PackageSlow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Gather => "gather",
            QueueName::Fetch => "fetch",
            QueueName::Import => "import",
            QueueName::Index => "index",
            QueueName::Rebuild => "rebuild",
            QueueName::Notify => "notify",
            QueueName::PackageFast => "package-fast",
            QueueName::PackageSlow => "package-slow",
        }
    }

    /// The queue `as_str` names.
    pub fn parse(name: &str) -> Option<QueueName> {
        QueueName::ALL.into_iter().find(|q| q.as_str() == name)
    }
}

/// Every queue by name; a missing one is a configuration error reported when it is used.
#[derive(Clone, Default)]
pub struct Queues {
    queues: BTreeMap<QueueName, Arc<dyn Queue>>,
}

impl Queues {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, name: QueueName, queue: Arc<dyn Queue>) -> Self {
        self.queues.insert(name, queue);
        self
    }

    pub fn get(&self, name: QueueName) -> Result<&Arc<dyn Queue>, QueueError> {
        self.queues
            .get(&name)
            .ok_or_else(|| QueueError::backend(name.as_str(), "queue not configured"))
    }

    pub fn iter(&self) -> impl Iterator<Item = (QueueName, &Arc<dyn Queue>)> {
        self.queues.iter().map(|(k, v)| (*k, v))
    }
}

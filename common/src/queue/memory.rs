//! An in-process queue for `run-test`, which drains every stage synchronously; delays are
//! ignored because nothing else runs beside it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::{Queue, QueueDepth, QueueError, Received};

#[derive(Default)]
pub struct MemoryQueue {
    messages: Mutex<VecDeque<String>>,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Messages waiting.
    pub fn depth_now(&self) -> usize {
        self.messages.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Takes the oldest message, if any.
    pub fn pop(&self) -> Option<String> {
        self.messages.lock().ok()?.pop_front()
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send(&self, body: String, _delay: Duration) -> Result<(), QueueError> {
        self.messages
            .lock()
            .map_err(|e| QueueError::backend("memory", e))?
            .push_back(body);
        Ok(())
    }

    async fn receive(&self, max: usize, _: Duration) -> Result<Vec<Received>, QueueError> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(body) = self.pop() else { break };
            let id = uuid::Uuid::new_v4().to_string();
            out.push(Received {
                receipt: id.clone(),
                id,
                body,
                receive_count: 1,
            });
        }
        Ok(out)
    }

    async fn delete(&self, _: &str) -> Result<(), QueueError> {
        Ok(())
    }

    async fn change_visibility(&self, _: &str, _: Duration) -> Result<(), QueueError> {
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let visible = self
            .messages
            .lock()
            .map_err(|e| QueueError::backend("memory", e))?
            .len() as u64;
        Ok(QueueDepth {
            visible,
            ..Default::default()
        })
    }

    async fn purge(&self) -> Result<(), QueueError> {
        self.messages
            .lock()
            .map_err(|e| QueueError::backend("memory", e))?
            .clear();
        Ok(())
    }
}

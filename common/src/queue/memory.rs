//! An in-process queue for `run-test`, which drains every stage synchronously; delays are
//! ignored because nothing else runs beside it. A received message stays in flight until it
//! is deleted, and goes back to the front when its visibility is changed (a drain that hands
//! its messages back loses none); it never comes back by itself.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use super::{Queue, QueueDepth, QueueError, Received};

#[derive(Default)]
pub struct MemoryQueue {
    messages: Mutex<VecDeque<String>>,
    /// Received and not yet deleted, by receipt.
    in_flight: Mutex<HashMap<String, String>>,
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

/// One of the queue's lists, or the reason it cannot be had (a thread panicked holding it).
fn locked<T>(list: &Mutex<T>) -> Result<MutexGuard<'_, T>, QueueError> {
    list.lock().map_err(|e| QueueError::backend("memory", e))
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send(&self, body: String, _delay: Duration) -> Result<(), QueueError> {
        locked(&self.messages)?.push_back(body);
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
        let mut in_flight = locked(&self.in_flight)?;
        for m in &out {
            in_flight.insert(m.receipt.clone(), m.body.clone());
        }
        Ok(out)
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        locked(&self.in_flight)?.remove(receipt);
        Ok(())
    }

    async fn change_visibility(&self, receipt: &str, _: Duration) -> Result<(), QueueError> {
        let body = locked(&self.in_flight)?.remove(receipt);
        if let Some(body) = body {
            locked(&self.messages)?.push_front(body);
        }
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let visible = locked(&self.messages)?.len() as u64;
        let in_flight = locked(&self.in_flight)?.len() as u64;
        Ok(QueueDepth {
            visible,
            in_flight,
            ..Default::default()
        })
    }

    async fn purge(&self) -> Result<(), QueueError> {
        locked(&self.messages)?.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A drain that hands its messages back (another process writes the index) loses none.
    #[tokio::test]
    async fn a_received_message_stays_until_deleted_and_comes_back_when_handed_back() {
        let queue = MemoryQueue::new();
        for body in ["one", "two", "three"] {
            queue.send(body.into(), Duration::ZERO).await.unwrap();
        }
        let received = queue.receive(2, Duration::from_secs(60)).await.unwrap();
        let bodies: Vec<&str> = received.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["one", "two"]);
        let depth = queue.depth().await.unwrap();
        assert_eq!((depth.visible, depth.in_flight), (1, 2));
        queue.delete(&received[0].receipt).await.unwrap();
        queue
            .change_visibility(&received[1].receipt, Duration::ZERO)
            .await
            .unwrap();
        let depth = queue.depth().await.unwrap();
        assert_eq!((depth.visible, depth.in_flight), (2, 0));
        assert_eq!(queue.pop().as_deref(), Some("two"));
        assert_eq!(queue.pop().as_deref(), Some("three"));
        assert_eq!(queue.pop(), None);
    }
}

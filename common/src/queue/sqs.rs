//! The queue port on SQS. Dead letters are SQS's own redrive policy (set in template.yaml);
//! `depth` reads both queues' attributes.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use aws_smithy_types::error::display::DisplayErrorContext;

use super::{Queue, QueueDepth, QueueError, Received};

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
    dead_letter_url: Option<String>,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>, dead_letter_url: Option<String>) -> Self {
        SqsQueue {
            client,
            url: url.into(),
            dead_letter_url,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn dead_letter_url(&self) -> Option<&str> {
        self.dead_letter_url.as_deref()
    }

    fn err(&self, e: impl std::error::Error) -> QueueError {
        QueueError::backend(&self.url, DisplayErrorContext(e))
    }

    /// The item of a batch request's `chunk` that its entry `id` (the item's position, as
    /// the batch calls number their entries) stands for.
    fn failed_entry<'a, T>(&self, chunk: &'a [T], id: &str) -> Result<&'a T, QueueError> {
        id.parse::<usize>()
            .ok()
            .and_then(|at| chunk.get(at))
            .ok_or_else(|| QueueError::backend(&self.url, format!("unknown failed entry {id}")))
    }

    /// Up to `max` (at most ten) messages of the queue at `url`, waiting up to `wait_seconds`
    /// for the first (long polling).
    async fn receive_from(
        &self,
        url: &str,
        max: usize,
        visibility: Duration,
        wait_seconds: i32,
    ) -> Result<Vec<Received>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .visibility_timeout(visibility.as_secs() as i32)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                Some(Received {
                    id: m.message_id()?.to_string(),
                    body: m.body()?.to_string(),
                    receipt: m.receipt_handle()?.to_string(),
                    receive_count: m
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1),
                })
            })
            .collect())
    }

    async fn delete_from(&self, url: &str, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn count(&self, url: &str) -> Result<(u64, u64), QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        let attrs = out.attributes();
        let get = |name: QueueAttributeName| -> u64 {
            attrs
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok((
            get(QueueAttributeName::ApproximateNumberOfMessages)
                + get(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        ))
    }
}

/// SQS takes delays of 0 to 900 seconds; longer waits are re-sent by their handler.
fn delay_seconds(delay: Duration) -> i32 {
    delay.as_secs().min(900) as i32
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, body: String, delay: Duration) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(delay_seconds(delay))
            .send()
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn send_batch(&self, bodies: Vec<String>) -> Result<(), QueueError> {
        for chunk in bodies.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .map_err(|e| self.err(e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| self.err(e))?;
            // A partly failed batch: re-send the failed entries one by one, so none is lost.
            for failed in out.failed() {
                let body = self.failed_entry(chunk, failed.id())?;
                self.send(body.clone(), Duration::ZERO).await?;
            }
        }
        Ok(())
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Received>, QueueError> {
        self.receive_from(&self.url, max, visibility, 1).await
    }

    async fn receive_dead_letters(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Received>, QueueError> {
        let Some(dlq) = &self.dead_letter_url else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        while out.len() < max {
            let got = self
                .receive_from(dlq, max - out.len(), visibility, 0)
                .await?;
            if got.is_empty() {
                break;
            }
            out.extend(got);
        }
        Ok(out)
    }

    async fn delete_dead_letter(&self, receipt: &str) -> Result<(), QueueError> {
        match &self.dead_letter_url {
            Some(dlq) => self.delete_from(dlq, receipt).await,
            None => Ok(()),
        }
    }

    async fn release_dead_letters(&self, receipts: &[String]) -> Result<(), QueueError> {
        let Some(dlq) = &self.dead_letter_url else {
            return Ok(());
        };
        for chunk in receipts.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(0)
                        .build()
                        .map_err(|e| self.err(e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            // An entry that fails shows again when its hold runs out: nothing is lost.
            self.client
                .change_message_visibility_batch()
                .queue_url(dlq)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.delete_from(&self.url, receipt).await
    }

    /// Ten deletes a request (DeleteMessageBatch), the requests at once; an entry the batch
    /// could not delete is deleted alone, so its error, if any, is the one answered.
    async fn delete_batch(&self, receipts: &[String]) -> Result<(), QueueError> {
        let batches = receipts.chunks(10).map(|chunk| async move {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .build()
                        .map_err(|e| self.err(e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| self.err(e))?;
            for failed in out.failed() {
                self.delete(self.failed_entry(chunk, failed.id())?).await?;
            }
            Ok::<(), QueueError>(())
        });
        futures::future::try_join_all(batches).await?;
        Ok(())
    }

    async fn change_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(timeout.as_secs() as i32)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let (visible, in_flight) = self.count(&self.url).await?;
        let dead_letters = match &self.dead_letter_url {
            Some(url) => {
                let (v, f) = self.count(url).await?;
                v + f
            }
            None => 0,
        };
        Ok(QueueDepth {
            visible,
            in_flight,
            dead_letters,
        })
    }

    async fn purge(&self) -> Result<(), QueueError> {
        self.client
            .purge_queue()
            .queue_url(&self.url)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

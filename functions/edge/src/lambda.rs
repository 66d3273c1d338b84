//! The SQS-triggered functions' shared handler: every record through the pipeline, failures
//! reported as partial batch failures (the trigger sets `ReportBatchItemFailures`).

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use common::services::Services;
use common::worker::{BatchMessage, process_batch};
use lambda_runtime::{Error, LambdaEvent, service_fn};

/// The whole main of an SQS-triggered stage function: logging, the adapters, the handler.
pub async fn run_sqs_function() -> Result<(), Error> {
    crate::init_tracing();
    let config = crate::Config::from_env();
    let built = crate::build_services(&config).await?;
    let services = &built.services;
    lambda_runtime::run(service_fn(|event| handle_sqs(services, event))).await
}

pub async fn handle_sqs(
    services: &Services,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let mut response = SqsBatchResponse::default();
    let mut batch = Vec::new();
    for record in event.payload.records {
        let receive_count = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        batch.push(BatchMessage {
            id: record.message_id.unwrap_or_default(),
            body: record.body.unwrap_or_default(),
            receive_count,
        });
    }
    // The invocation's deadline (milliseconds since the epoch), for work that must end cleanly.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let left = std::time::Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
    let deadline = (event.context.deadline > 0).then(|| std::time::Instant::now() + left);
    let failed = common::deadline::scope(deadline, process_batch(services, batch)).await;
    for id in failed {
        if id.is_empty() {
            // A failed message SQS gave no id cannot be reported alone: fail the whole batch,
            // which every handler is safe to receive again.
            return Err("a message without an id failed; the batch will be delivered again".into());
        }
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    Ok(response)
}

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
    let built = crate::build_services(&config, Default::default()).await?;
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
    for id in process_batch(services, batch).await {
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

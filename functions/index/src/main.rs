//! The search index's one writer: SQS-triggered with record changes, applied in one commit a
//! batch and published to S3 by the shared handler.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    edge::lambda::run_sqs_function().await
}

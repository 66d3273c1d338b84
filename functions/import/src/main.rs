//! The import stage: SQS-triggered; each message runs through the shared pipeline handler.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    edge::lambda::run_sqs_function().await
}

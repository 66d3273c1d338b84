//! The package stage: SQS-triggered by the fast and the slow package queue (one deployment
//! each, with its own timeout and dead-letter queue); each message builds or reuses a zip and
//! emails its link.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    edge::lambda::run_sqs_function().await
}

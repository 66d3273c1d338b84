//! Remote notifications: SQS-triggered with the notify queue's messages (a record changed, a
//! retry, a backfill's next page), each delivered by the shared handler to the targets.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    edge::lambda::run_sqs_function().await
}

//! The catalogue's rebuild: SQS-triggered with the rebuild `POST /api/catalog/rebuild` claimed,
//! run by the shared handler to its end (or until the function's time runs out; a redelivery
//! runs it again, as every step of it is idempotent).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    edge::lambda::run_sqs_function().await
}

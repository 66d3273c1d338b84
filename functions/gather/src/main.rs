//! The gather stage: SQS-triggered; each message runs through the shared pipeline handler.

use edge::lambda::handle_sqs;
use lambda_runtime::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    edge::init_tracing();
    let config = edge::Config::from_env();
    let built = edge::build_services(&config, Default::default()).await?;
    let services = &built.services;
    lambda_runtime::run(service_fn(|event| handle_sqs(services, event))).await
}

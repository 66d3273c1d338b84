//! The scheduler: on every EventBridge tick, what `sheaf run` does.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    edge::init_tracing();
    let config = edge::Config::from_env();
    let built = edge::build_services(&config).await?;
    let services = &built.services;
    lambda_runtime::run(service_fn(|_: LambdaEvent<Value>| async move {
        let report = common::pipeline::run_scheduled(services).await?;
        Ok::<_, Error>(serde_json::to_value(report)?)
    }))
    .await
}

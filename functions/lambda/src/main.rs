//! The one bootstrap of every Lambda function: one build serves them all, and the template's
//! `Handler` (api, scheduler, gather, fetch, import, index, notify, rebuild, package) says
//! which function this is.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    edge::lambda::run_function().await
}

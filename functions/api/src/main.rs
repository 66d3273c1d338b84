//! The HTTP API behind API Gateway: the same router `sheaf serve` runs.

use common::http::{AppState, router};
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    edge::init_tracing();
    let config = edge::Config::from_env();
    let built = edge::build_services(&config).await?;
    let app = router(AppState {
        services: built.services,
        api_token: config.api_token.clone(),
        read_token: config.read_token.clone(),
        local_store: built.local_store,
    });
    lambda_http::run(app).await
}

//! The HTTP API behind API Gateway: the same router `sheaf serve` runs.

use axum::extract::Request;
use common::http::{AppState, DeployedOrigin, router};
use lambda_http::Error;
use lambda_http::request::RequestContext;

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
    })
    .layer(axum::middleware::map_request(deployed_origin));
    lambda_http::run(app).await
}

/// API Gateway's own domain for this call, from its request context (never a header the
/// client sent): where emailed links point when no SHEAF_PUBLIC_URL is set.
async fn deployed_origin(mut request: Request) -> Request {
    let domain = match request.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(c)) => c.domain_name.clone(),
        Some(RequestContext::ApiGatewayV1(c)) => c.domain_name.clone(),
        _ => None,
    };
    if let Some(domain) = domain {
        request
            .extensions_mut()
            .insert(DeployedOrigin(format!("https://{domain}")));
    }
    request
}

//! The one Lambda bootstrap's wiring. Every function of the template runs the same binary;
//! its `Handler` (Lambda's `_HANDLER`) says which function it is: `api` serves the HTTP router,
//! `scheduler` the schedule's tick, and every stage (`gather`, `fetch`, `import`, `index`,
//! `notify`, `rebuild`, `package`) the shared SQS handler, whose messages say what to do.
//! SQS failures are reported as partial batch failures (the trigger sets
//! `ReportBatchItemFailures`).

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use axum::extract::Request;
use common::http::{AppState, DeployedOrigin, router};
use common::services::Services;
use common::worker::{BatchMessage, process_batch};
use lambda_http::request::RequestContext;
use lambda_runtime::{Error, LambdaEvent, service_fn};

/// What a function's `Handler` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    Api,
    Scheduler,
    /// A stage fed by an SQS queue.
    Queue,
}

/// The stages fed by a queue, as the template's handlers name them.
pub const QUEUE_HANDLERS: [&str; 7] = [
    "gather", "fetch", "import", "index", "notify", "rebuild", "package",
];

impl Handler {
    pub fn parse(name: &str) -> Option<Handler> {
        match name {
            "api" => Some(Handler::Api),
            "scheduler" => Some(Handler::Scheduler),
            other if QUEUE_HANDLERS.contains(&other) => Some(Handler::Queue),
            _ => None,
        }
    }
}

/// The bootstrap's whole main: logging, the adapters, then the function named by `_HANDLER`,
/// which Lambda (and the emulator) set from the template's `Handler`. The time to get ready
/// is logged (`init_ms`): the emulator's own `Init Duration` does not measure it.
pub async fn run_function() -> Result<(), Error> {
    let started = std::time::Instant::now();
    let name = std::env::var("_HANDLER").unwrap_or_default();
    let Some(handler) = Handler::parse(&name) else {
        return Err(format!(
            "unknown handler {name:?}: the template's Handler must be api, scheduler or one of {}",
            QUEUE_HANDLERS.join(", ")
        )
        .into());
    };
    crate::init_tracing();
    let mut config = crate::Config::from_env();
    config.resolve_secrets().await?;
    let built = crate::build_services(&config).await?;
    let init_ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(handler = %name, init_ms, "ready");
    match handler {
        Handler::Api => serve_api(built, &config).await,
        Handler::Scheduler => serve_schedule(&built.services).await,
        Handler::Queue => serve_queue(&built.services).await,
    }
}

/// The HTTP API: the router `sheaf serve` runs, behind API Gateway.
async fn serve_api(built: crate::Built, config: &crate::Config) -> Result<(), Error> {
    let app = router(AppState {
        services: built.services,
        api_token: config.api_token.clone(),
        read_token: config.read_token.clone(),
        local_store: built.local_store,
    })
    .layer(axum::middleware::map_request(deployed_origin))
    .layer(axum::middleware::map_response(|response| async {
        log_peak_memory();
        response
    }));
    lambda_http::run(app).await
}

/// Emailed links point at the API's own domain, taken from API Gateway's request context
/// (never from a request header).
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

/// Logs the process's peak resident memory (`peak_rss_mb`, Linux's VmHWM) after each
/// invocation: what a function's MemorySize must hold (the emulator reports the size itself).
fn log_peak_memory() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    if let Some(kb) = peak_kb {
        tracing::info!(peak_rss_mb = kb / 1024.0, "invocation done");
    }
}

/// The schedule's tick (EventBridge): start due jobs, move running ones, retry, expire.
async fn serve_schedule(services: &Services) -> Result<(), Error> {
    lambda_runtime::run(service_fn(|_: LambdaEvent<serde_json::Value>| async move {
        let report = common::pipeline::run_scheduled(services).await?;
        log_peak_memory();
        Ok::<_, Error>(serde_json::to_value(report)?)
    }))
    .await
}

/// A stage fed by a queue: every message of a batch through the shared handler.
async fn serve_queue(services: &Services) -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event| handle_sqs(services, event))).await
}

pub async fn handle_sqs(
    services: &Services,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let mut response = SqsBatchResponse::default();
    let mut batch = Vec::new();
    for record in event.payload.records {
        let receive_count = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        batch.push(BatchMessage {
            id: record.message_id.unwrap_or_default(),
            body: record.body.unwrap_or_default(),
            receive_count,
        });
    }
    // The invocation's deadline (milliseconds since the epoch), for work that must end cleanly.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let left = std::time::Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
    let deadline = (event.context.deadline > 0).then(|| std::time::Instant::now() + left);
    let failed = common::deadline::scope(deadline, process_batch(services, batch)).await;
    log_peak_memory();
    for id in failed {
        if id.is_empty() {
            // A failed message SQS gave no id cannot be reported alone: fail the whole batch,
            // which every handler is safe to receive again.
            return Err("a message without an id failed; the batch will be delivered again".into());
        }
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    Ok(response)
}

//! `sheaf serve`: the API, the WAF listing, a worker per stage queue and the scheduler, in one
//! process. On first start with an empty store it registers and harvests the example WAF.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use common::http::{AppState, TrustedLocal, router};
use common::pipeline;
use common::queue::QueueName;
use common::services::Services;
use common::sources::{self, NewSource};
use common::store::PutMode;
use common::worker::{run_index_worker, run_queue_worker};

/// Written once the first start has offered the example, so removing it is final.
const INITIALISED: &str = "meta/initialised";
const EXAMPLE_SOURCE: &str = "example";

pub async fn serve(mut config: edge::Config) -> anyhow::Result<()> {
    config.resolve_secrets().await?;
    let built = edge::build_services(&config).await?;
    let services = built.services.clone();
    let local = built.local_store.is_some();
    // Without a token, loopback is trusted only when nothing else can connect.
    let on_loopback = tokio::net::lookup_host(&config.listen)
        .await
        .map(|mut addrs| addrs.all(|a| a.ip().is_loopback()))
        .unwrap_or(false);
    let trust_loopback = local && config.api_token.is_none() && on_loopback;
    let app = router(AppState {
        services: services.clone(),
        api_token: config.api_token.clone(),
        read_token: config.read_token.clone(),
        local_store: built.local_store,
    })
    .merge(crate::examples::router())
    .layer(middleware::from_fn(move |ConnectInfo(peer): ConnectInfo<SocketAddr>, mut request: Request, next: Next| async move {
        if trust_loopback && peer.ip().is_loopback() {
            request.extensions_mut().insert(TrustedLocal);
        }
        let response: Response = next.run(request).await;
        response
    }));
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    if local {
        for queue in [
            QueueName::Gather,
            QueueName::Fetch,
            QueueName::Fetch,
            QueueName::Import,
            QueueName::Rebuild,
            QueueName::Notify,
            QueueName::PackageFast,
            QueueName::PackageSlow,
        ] {
            tasks.push(tokio::spawn(run_queue_worker(
                services.clone(),
                queue,
                stop_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(run_index_worker(
            services.clone(),
            stop_rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(scheduler(services.clone(), stop_rx.clone())));
    eprintln!(
        "sheaf: serving on http://{} (admin page at /admin), data in {}",
        config.listen,
        if local {
            config.data_dir.display().to_string()
        } else {
            format!("s3://{}", config.bucket.clone().unwrap_or_default())
        }
    );
    eprintln!(
        "sheaf: {}",
        match (&config.api_token, trust_loopback) {
            (Some(_), _) => "/api needs Authorization: Bearer SHEAF_API_TOKEN (the catalogue's search and records are public)".to_string(),
            (None, true) => "no SHEAF_API_TOKEN: calls from this machine (loopback) are trusted; set one before listening elsewhere".to_string(),
            (None, false) => format!(
                "no SHEAF_API_TOKEN and listening on {}: every /api call but the catalogue's is refused; set SHEAF_API_TOKEN",
                config.listen
            ),
        }
    );
    // The example WAF is this process's: its URL is the one address the fetcher allows.
    let example_url = config
        .example_waf_addr()
        .map_or_else(|| config.public_url(), |a| format!("http://{a}"));
    let first = tokio::spawn(first_start(services.clone(), example_url));
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    let result = server.await;
    let _ = stop_tx.send(true);
    first.abort();
    for t in tasks {
        let _ = t.await;
    }
    result.context("the server failed")
}

/// Runs the schedule every minute (and once at start).
async fn scheduler(services: Services, stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        match pipeline::run_scheduled(&services).await {
            Ok(report) if !report.started.is_empty() || !report.aborted.is_empty() => {
                tracing::info!(started = ?report.started, aborted = ?report.aborted, "schedule ran");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "schedule failed"),
        }
        for _ in 0..60 {
            if *stop.borrow() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// On an empty store: register the example WAF and harvest it, once.
async fn first_start(services: Services, base_url: String) {
    let store = services.store.as_ref();
    let created = store
        .put(
            INITIALISED,
            Bytes::from_static(b"1"),
            "text/plain",
            PutMode::Create,
        )
        .await
        .is_ok();
    if !created {
        return;
    }
    let empty = sources::list_sources(store, true)
        .await
        .map(|l| l.is_empty())
        .unwrap_or(false);
    if !empty {
        return;
    }
    let new = NewSource {
        name: EXAMPLE_SOURCE.into(),
        url: format!("{base_url}/examples/waf/"),
        source_type: common::domain::source::SourceType::Waf,
        title: Some("Example WAF (records written for Sheaf)".into()),
        active: Some(true),
        owner: None,
        frequency: None,
        config: None,
    };
    match sources::add_source(store, new).await {
        Ok(_) => match pipeline::start_job(&services, EXAMPLE_SOURCE).await {
            Ok(job) => eprintln!(
                "sheaf: registered the example WAF source and started job {}",
                job.id
            ),
            Err(e) => tracing::error!(error = %e, "could not start the example harvest"),
        },
        Err(e) => tracing::error!(error = %e, "could not register the example source"),
    }
}

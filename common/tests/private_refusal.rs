//! Private, loopback and link-local addresses are refused before any connection. The test
//! runs itself again inside a network namespace of its own (`unshare -n`), so that even a bug
//! could not send a packet anywhere.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::fetch::{AddressPolicy, FetchError, FetchRequest, HttpFetcher, ReqwestFetcher};
use common::pipeline::run_test;
use common::services::Services;
use common::sources::add_source;

const TEST: &str = "private_and_link_local_addresses_are_refused_before_connecting";

/// Only `lo` in /proc/net/dev: this process has a network namespace of its own.
fn isolated() -> bool {
    let devices = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    let names: Vec<&str> = devices
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    names == ["lo"]
}

#[test]
fn private_and_link_local_addresses_are_refused_before_connecting() {
    if !isolated() {
        let status = Command::new("unshare")
            .args(["-n", "--"])
            .arg(std::env::current_exe().expect("test binary"))
            .args(["--exact", TEST, "--nocapture"])
            .status()
            .expect("unshare -n (util-linux) runs this test without network");
        assert!(status.success(), "the isolated run failed: {status}");
        return;
    }
    // Loopback up inside the namespace, for the redirecting server below.
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip (iproute2)");
    assert!(up.success());
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(checks());
}

async fn checks() {
    let public_only =
        ReqwestFetcher::new(AddressPolicy::PublicOnly, Duration::from_secs(5)).expect("fetcher");
    for url in [
        "http://10.1.2.3/waf/",
        "http://172.20.0.5/",
        "http://192.168.0.10/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd12::1]/",
        "http://[fe80::1]/",
        "http://127.0.0.1:9/",
        "http://localhost:9/",
    ] {
        let result = public_only.get(&FetchRequest::new(url, 1024)).await;
        assert!(
            matches!(result, Err(FetchError::Refused { .. })),
            "{url}: {result:?}"
        );
    }

    // A loopback server allowed as the one exception (local mode's example WAF) that redirects
    // to the metadata address: the redirect is refused too.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    let exception = AddressPolicy::PublicAnd(([127, 0, 0, 1], port).into());
    let loopback = ReqwestFetcher::new(exception, Duration::from_secs(5)).expect("fetcher");
    let redirected = loopback
        .get(&FetchRequest::new(
            format!("http://127.0.0.1:{port}/waf/"),
            1024,
        ))
        .await;
    assert!(
        matches!(redirected, Err(FetchError::Refused { .. })),
        "{redirected:?}"
    );

    // A source on a private address: the gather fails with the refusal, nothing is fetched.
    let dir = tempfile::tempdir().expect("tempdir");
    let services = Services {
        fetcher: Arc::new(public_only),
        ..support::local_services(dir.path())
    };
    add_source(
        services.store.as_ref(),
        support::waf_source("private", "http://169.254.169.254/waf/"),
    )
    .await
    .expect("source");
    let job = run_test(&services, "private", &|_: u64, _: Option<u64>| {})
        .await
        .expect("job");
    assert_eq!(job.gather_errors.len(), 1, "{job:?}");
    assert!(
        job.gather_errors[0].message.contains("link-local"),
        "{:?}",
        job.gather_errors
    );
    assert_eq!(job.stats.added + job.stats.errored, 0);

    packager_refusals(port).await;
}

/// The packager: a private address written in a request is a 400 naming it; a name that
/// resolves to one, or a redirect to one, fails the package with the refusal, recorded in the
/// statistics, and no zip.
async fn packager_refusals(redirecting_port: u16) {
    let redirector = AddressPolicy::PublicAnd(([127, 0, 0, 1], redirecting_port).into());
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use common::http::{AppState, router};
    use common::package::PackagerSettings;
    use tower::ServiceExt;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut services = support::local_services(dir.path());
    services.settings.packager = PackagerSettings {
        secret: Some("s".into()),
        address_policy: AddressPolicy::PublicOnly,
        ..PackagerSettings::default()
    };
    services.fetcher = Arc::new(
        ReqwestFetcher::new(AddressPolicy::PublicOnly, Duration::from_secs(5)).expect("fetcher"),
    );
    let app = router(AppState {
        services: services.clone(),
        api_token: None,
        read_token: None,
        local_store: None,
    });
    let post = |path: &str, body: String| {
        Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("request")
    };
    for api_url in [
        "http://10.1.2.3/api/3/action/datastore_search",
        "http://169.254.169.254/latest/meta-data",
        "http://[fd12::1]/api",
        "http://localhost:9/api/3/action/datastore_search",
    ] {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("secret", "s"),
                ("api_url", api_url),
                ("resource_id", "r"),
                ("email", "a@example.org"),
            ])
            .finish();
        let response = app
            .clone()
            .oneshot(post("/package_datastore", body))
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{api_url}");
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let answer: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(answer["param"], "api_url", "{answer}");
    }

    // A file whose name resolves to loopback (accepted when the request was made, where private
    // addresses were allowed: the fetch checks again), and one that redirects to the metadata
    // address.
    let allow_loopback = Services {
        fetcher: Arc::new(
            ReqwestFetcher::new(redirector, Duration::from_secs(5)).expect("fetcher"),
        ),
        ..services.clone()
    };
    for (services, url, accepted_under) in [
        (
            &services,
            "http://localhost:9/data.csv".to_string(),
            AddressPolicy::AllowPrivate,
        ),
        (
            &allow_loopback,
            format!("http://127.0.0.1:{redirecting_port}/data.csv"),
            redirector,
        ),
    ] {
        let mut params = common::package::Params::new();
        params.insert("resource_id".into(), "file".into());
        params.insert("email".into(), "a@example.org".into());
        params.insert("resource_url".into(), url.clone());
        let request = common::package::PackageRequest::from_params(
            common::package::PackageKind::Url,
            &params,
            accepted_under,
        )
        .expect("a well-formed request");
        let message = common::package::PackageMessage::new(request, "http://sheaf.test");
        common::package::handle_message(services, &message, 1)
            .await
            .expect("handled");
        let errors = common::package::stats::errors(services, Default::default(), 0, 100)
            .await
            .expect("errors");
        assert!(
            errors.iter().any(|e| e.message.contains("refused")),
            "{url}: {errors:?}"
        );
    }
    let zips = services.store.list("packages/").await.expect("list");
    assert!(zips.iter().all(|e| !e.key.ends_with(".zip")), "{zips:?}");
}

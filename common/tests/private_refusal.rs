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

    // A loopback server (allowed in local mode) that redirects to the metadata address: the
    // redirect is refused too.
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
    let loopback =
        ReqwestFetcher::new(AddressPolicy::AllowLoopback, Duration::from_secs(5)).expect("fetcher");
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
}

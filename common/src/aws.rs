//! Building the AWS SDK configuration once for every adapter.
//!
//! # Design
//! The SDK crates are used with `default-features = false` and one HTTP client,
//! `aws-smithy-http-client` on rustls with the `ring` provider, passed explicitly: the defaults
//! would pull a second TLS stack and `aws-lc-sys` (C, minutes of build on two cores).

use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::{
    Builder,
    tls::{Provider, rustls_provider::CryptoMode},
};

/// Where the AWS-compatible services are; `endpoint_url` points every client at one endpoint
/// (moto in tests), with S3 then addressed path-style.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    pub endpoint_url: Option<String>,
    /// A region instead of the standard look-up (tests against moto).
    pub region: Option<String>,
    /// Fixed credentials instead of the standard chain (tests against moto).
    pub static_credentials: Option<(String, String)>,
}

/// Loads credentials and region the standard AWS way (environment, profile, container or
/// instance role), with our single HTTP client.
pub async fn load_sdk_config(settings: &AwsSettings) -> SdkConfig {
    let http_client = Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client);
    if let Some(endpoint) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(region) = &settings.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some((key, secret)) = &settings.static_credentials {
        loader = loader.credentials_provider(aws_credential_types::Credentials::new(
            key.clone(),
            secret.clone(),
            None,
            None,
            "static",
        ));
    }
    loader.load().await
}

/// An S3 client; path-style when a custom endpoint is set (moto and most S3 look-alikes serve
/// no virtual-host buckets on 127.0.0.1).
pub fn s3_client(config: &SdkConfig, settings: &AwsSettings) -> aws_sdk_s3::Client {
    let s3_config = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(settings.endpoint_url.is_some())
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}

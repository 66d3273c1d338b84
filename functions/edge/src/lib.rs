//! The edge every Sheaf binary shares: configuration from the environment (the README's
//! variables), the adapters built from it, and logging. `common` reads no environment; this
//! crate is where that happens, once, for the Lambda functions and the `sheaf` command alike.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::aws::{AwsSettings, load_sdk_config, s3_client};
use common::catalog::S3Index;
use common::fetch::{AddressPolicy, ReqwestFetcher};
use common::mail::SesMailer;
use common::package::PackagerSettings;
use common::queue::{QueueName, Queues, SqsQueue};
use common::services::{Services, Settings};
use common::store::{LocalStore, S3Store};

#[cfg(feature = "lambda")]
pub mod lambda;
mod secrets;

/// Everything configurable, as the README's configuration table names it.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub bucket: Option<String>,
    pub listen: String,
    pub api_token: Option<String>,
    /// `SHEAF_API_READ_TOKEN`: the reading calls of `/api` only.
    pub read_token: Option<String>,
    pub allow_private_urls: bool,
    pub mail_from: String,
    pub endpoint_url: Option<String>,
    /// Where emailed links point (`SHEAF_PUBLIC_URL`).
    pub public_url: Option<String>,
    /// `SHEAF_STALE_EXPIRATION_DAYS`: records not seen by a completed harvest for this long
    /// are removed; unset, never.
    pub stale_expiration_days: Option<u32>,
    /// `SHEAF_NOTIFY_RETRY_HOURS`: hours between retries of failed notifications (24).
    pub notify_retry_hours: u64,
    pub packager: PackagerSettings,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Config {
    /// Reads the variables; flags (in the `sheaf` command) override them afterwards.
    pub fn from_env() -> Self {
        Config {
            data_dir: var("SHEAF_DATA_DIR")
                .map_or_else(|| PathBuf::from("./sheaf-data"), PathBuf::from),
            bucket: var("SHEAF_BUCKET"),
            listen: var("SHEAF_LISTEN").unwrap_or_else(|| "127.0.0.1:8765".into()),
            api_token: var("SHEAF_API_TOKEN"),
            read_token: var("SHEAF_API_READ_TOKEN"),
            allow_private_urls: var("SHEAF_ALLOW_PRIVATE_URLS")
                .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1"),
            mail_from: var("SHEAF_MAIL_FROM").unwrap_or_else(|| "sheaf@localhost".into()),
            endpoint_url: var("AWS_ENDPOINT_URL"),
            public_url: var("SHEAF_PUBLIC_URL"),
            stale_expiration_days: var("SHEAF_STALE_EXPIRATION_DAYS").and_then(|v| {
                v.trim().parse().ok().or_else(|| {
                    tracing::warn!(
                        "SHEAF_STALE_EXPIRATION_DAYS is not a whole number: records never expire"
                    );
                    None
                })
            }),
            notify_retry_hours: var("SHEAF_NOTIFY_RETRY_HOURS")
                .and_then(|v| v.trim().parse().ok())
                .filter(|h| *h > 0)
                .unwrap_or(24),
            packager: packager_from_env(),
        }
    }

    /// Where `serve` offers its example WAF (`/examples/waf/`): its listen address, with an
    /// unspecified one (`0.0.0.0`) reached on loopback. The local-mode fetcher allows exactly
    /// this address, and nothing else private, without `SHEAF_ALLOW_PRIVATE_URLS`.
    pub fn example_waf_addr(&self) -> Option<std::net::SocketAddr> {
        let mut addr: std::net::SocketAddr = self.listen.parse().ok()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        Some(addr)
    }

    /// Where people reach this Sheaf: SHEAF_PUBLIC_URL, else the address `serve` listens on.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }
}

/// ckanpackager's settings from `SHEAF_PACKAGER_<NAME>`; a number that does not parse keeps
/// the default (and says so in the log).
fn packager_from_env() -> PackagerSettings {
    let defaults = PackagerSettings::default();
    let number = |name: &str, default: u64| match var(&format!("SHEAF_PACKAGER_{name}")) {
        None => default,
        Some(v) => v.trim().parse().unwrap_or_else(|_| {
            tracing::warn!(variable = name, "not a whole number; the default is used");
            default
        }),
    };
    let text =
        |name: &str, default: String| var(&format!("SHEAF_PACKAGER_{name}")).unwrap_or(default);
    PackagerSettings {
        secret: var("SHEAF_PACKAGER_SECRET"),
        cache_time: Duration::from_secs(number("CACHE_TIME", defaults.cache_time.as_secs())),
        page_size: number("PAGE_SIZE", defaults.page_size),
        slow_request: number("SLOW_REQUEST", defaults.slow_request),
        anonymize_emails: var("SHEAF_PACKAGER_ANONYMIZE_EMAILS")
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1"),
        email_subject: text("EMAIL_SUBJECT", defaults.email_subject),
        email_body: text("EMAIL_BODY", defaults.email_body),
        email_body_html: text("EMAIL_BODY_HTML", defaults.email_body_html),
        doi_body: text("DOI_BODY", defaults.doi_body),
        doi_body_html: text("DOI_BODY_HTML", defaults.doi_body_html),
        compression_level: number("COMPRESSION_LEVEL", u64::from(defaults.compression_level))
            as u32,
        public_url: var("SHEAF_PUBLIC_URL"),
        address_policy: defaults.address_policy,
        wait_for_build: defaults.wait_for_build,
        build_stale_after: defaults.build_stale_after,
    }
    .normalised()
}

/// The SQS queue URL variables, by queue.
pub fn queue_url_var(name: QueueName) -> &'static str {
    match name {
        QueueName::Gather => "SHEAF_GATHER_QUEUE_URL",
        QueueName::Fetch => "SHEAF_FETCH_QUEUE_URL",
        QueueName::Import => "SHEAF_IMPORT_QUEUE_URL",
        QueueName::Index => "SHEAF_INDEX_QUEUE_URL",
        QueueName::Rebuild => "SHEAF_REBUILD_QUEUE_URL",
        QueueName::Notify => "SHEAF_NOTIFY_QUEUE_URL",
        QueueName::PackageFast => "SHEAF_PACKAGE_FAST_QUEUE_URL",
        QueueName::PackageSlow => "SHEAF_PACKAGE_SLOW_QUEUE_URL",
    }
}

/// Built services, and the local store when in local mode (for signed download links).
pub struct Built {
    pub services: Services,
    pub local_store: Option<LocalStore>,
}

/// Builds every adapter: S3, SQS and SES when a bucket is configured, else the data folder.
/// Private addresses are refused unless `SHEAF_ALLOW_PRIVATE_URLS` allows them, in every mode;
/// local mode allows exactly `serve`'s example WAF besides.
pub async fn build_services(config: &Config) -> anyhow::Result<Built> {
    let settings = Settings {
        mail_from: config.mail_from.clone(),
        public_url: config.public_url(),
        stale_expiration_days: config.stale_expiration_days,
        notify_retry_interval: Duration::from_secs(config.notify_retry_hours * 3600),
        packager: config.packager.clone(),
        ..Settings::default()
    };
    let timeout = common::fetch::REQUEST_TIMEOUT;
    match &config.bucket {
        Some(bucket) => {
            let aws = AwsSettings {
                endpoint_url: config.endpoint_url.clone(),
                ..AwsSettings::default()
            };
            let sdk = load_sdk_config(&aws).await;
            let sqs = aws_sdk_sqs::Client::new(&sdk);
            let mut queues = Queues::new();
            for name in QueueName::ALL {
                if let Some(url) = var(queue_url_var(name)) {
                    let dlq = var(&queue_url_var(name).replace("_QUEUE_URL", "_DLQ_URL"));
                    queues = queues.with(name, Arc::new(SqsQueue::new(sqs.clone(), url, dlq)));
                }
            }
            let policy = if config.allow_private_urls {
                AddressPolicy::AllowPrivate
            } else {
                AddressPolicy::PublicOnly
            };
            let mut settings = settings;
            settings.packager.address_policy = policy;
            let store: Arc<dyn common::store::ObjectStore> =
                Arc::new(S3Store::new(s3_client(&sdk, &aws), bucket.clone()));
            let services = Services {
                // The index function writes it to S3; the API loads it into /tmp.
                index: Arc::new(S3Index::new(
                    store.clone(),
                    &std::env::temp_dir().join("sheaf-index"),
                )),
                store,
                queues,
                mailer: Arc::new(SesMailer::new(aws_sdk_ses::Client::new(&sdk))),
                fetcher: Arc::new(ReqwestFetcher::new(policy, timeout)?),
                settings,
            };
            Ok(Built {
                services,
                local_store: None,
            })
        }
        None => build_local(config, settings),
    }
}

/// The data folder's SQLite file: every object but packages, and every queue's messages.
#[cfg(feature = "sqlite")]
pub const DATABASE_FILE: &str = "sheaf.db";

/// The data folder's adapters: the store and queues in one SQLite file, the index, the outbox.
#[cfg(feature = "sqlite")]
fn build_local(config: &Config, settings: Settings) -> anyhow::Result<Built> {
    use anyhow::Context;
    use common::catalog::TantivyIndex;
    use common::mail::OutboxMailer;
    use common::queue::LocalQueue;
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data folder {}", dir.display()))?;
    // One database for the store and the queues: see `common::local_db` for why.
    let database = dir.join(DATABASE_FILE);
    let store = LocalStore::open_with_database(&dir.join("store"), &database, &config.public_url())
        .with_context(|| format!("opening the store in {}", dir.display()))?;
    let mut queues = Queues::new();
    for name in QueueName::ALL {
        queues = queues.with(
            name,
            Arc::new(LocalQueue::open_with_database(
                &dir.join("queues"),
                &database,
                name.as_str(),
            )?),
        );
    }
    let policy = if config.allow_private_urls {
        AddressPolicy::AllowPrivate
    } else {
        config
            .example_waf_addr()
            .map_or(AddressPolicy::PublicOnly, AddressPolicy::PublicAnd)
    };
    let index = TantivyIndex::open(&dir.join("index"))
        .with_context(|| format!("opening the search index in {}", dir.display()))?;
    let services = Services {
        store: Arc::new(store.clone()),
        index: Arc::new(index),
        queues,
        mailer: Arc::new(OutboxMailer::new(dir.join("outbox"))),
        fetcher: Arc::new(ReqwestFetcher::new(policy, common::fetch::REQUEST_TIMEOUT)?),
        settings: Settings {
            check_delay: Duration::from_secs(2),
            packager: PackagerSettings {
                address_policy: policy,
                ..settings.packager.clone()
            },
            ..settings
        },
    };
    Ok(Built {
        services,
        local_store: Some(store),
    })
}

/// A build without SQLite (the Lambda bootstrap) has no local mode.
#[cfg(not(feature = "sqlite"))]
fn build_local(_config: &Config, _settings: Settings) -> anyhow::Result<Built> {
    anyhow::bail!(
        "this build has no local mode (built without the sqlite feature): set SHEAF_BUCKET"
    )
}

/// Logs as JSON for CloudWatch when `AWS_LAMBDA_LOG_FORMAT=JSON`, else as text, to stderr.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = var("AWS_LAMBDA_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().without_time().init();
    } else {
        builder.init();
    }
}

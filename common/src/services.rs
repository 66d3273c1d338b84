//! The ports one running Sheaf uses, built once per process by its edge (a Lambda main or
//! the `sheaf` command) and passed to every stage.

use std::sync::Arc;
use std::time::Duration;

use crate::catalog::SearchIndex;
use crate::fetch::HttpFetcher;
use crate::mail::Mailer;
use crate::package::PackagerSettings;
use crate::queue::Queues;
use crate::store::ObjectStore;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Sender of every email.
    pub mail_from: String,
    /// Documents larger than this are rejected at fetch.
    pub max_document_bytes: u64,
    /// How long a job's check waits before it looks again.
    pub check_delay: Duration,
    /// A running job whose count of finished objects has not grown for this long is aborted.
    pub stall_timeout: Duration,
    /// Where people reach this Sheaf (links in emails and listings).
    pub public_url: String,
    /// Harvest log entries older than this many days are removed by the schedule.
    pub log_retention_days: u32,
    /// A source's records not seen by a completed harvest for this many days are removed by
    /// the schedule (IOOS's STALE_EXPIRATION_DAYS); `None`, never.
    pub stale_expiration_days: Option<u32>,
    /// The ckanpackager settings.
    pub packager: PackagerSettings,
    /// How often failed remote notifications are tried again (GeoNetwork: every 24 hours).
    pub notify_retry_interval: Duration,
    /// How long a notification target may take to answer one POST.
    pub notify_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mail_from: "sheaf@localhost".into(),
            max_document_bytes: 10 * 1024 * 1024,
            check_delay: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(3600),
            public_url: "http://127.0.0.1:8765".into(),
            log_retention_days: 30,
            stale_expiration_days: None,
            packager: PackagerSettings::default(),
            notify_retry_interval: Duration::from_secs(24 * 3600),
            notify_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Clone)]
pub struct Services {
    pub store: Arc<dyn ObjectStore>,
    pub queues: Queues,
    pub mailer: Arc<dyn Mailer>,
    pub fetcher: Arc<dyn HttpFetcher>,
    /// The catalogue's search index (derived from the records in the store).
    pub index: Arc<dyn SearchIndex>,
    pub settings: Settings,
}

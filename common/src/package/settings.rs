//! The packager's settings, with ckanpackager's names (as `SHEAF_PACKAGER_<NAME>` variables)
//! and its defaults, except that the bodies link to `{download_url}`: ckanpackager's
//! `http://{ckan_host}/{zip_file_name}` cannot reach our store.

use std::time::Duration;

use crate::fetch::AddressPolicy;

/// CKAN refuses a datastore_search page larger than this.
pub const CKAN_MAX_PAGE_SIZE: u64 = 32_000;

pub const DEFAULT_EMAIL_BODY: &str = "Hello,

The link to the resource you requested on {ckan_host} is available at:
{download_url}

{doi_body}

Best Wishes,
The Data Portal Bot
";

pub const DEFAULT_EMAIL_BODY_HTML: &str = "<html lang=\"en\">
<body>
<p>Hello,</p>
<p>The link to the resource data you requested on <a href=\"{ckan_host}\">{ckan_host}</a> is
available at <a href=\"{download_url}\">here</a>.</p>
<br />
{doi_body_html}
<p>Best Wishes,</p>
<p>The Data Portal Bot</p>
</body>
</html>
";

pub const DEFAULT_DOI_BODY: &str = "A DOI has been created for this data: https://doi.org/{doi} (this may take a few hours to become active).
Please ensure you reference this DOI when citing this data.
For more information, follow the DOI link.
";

pub const DEFAULT_DOI_BODY_HTML: &str = "<p>A DOI has been created for this data: <a href=\"https://doi.org/{doi}\">https://doi.org/{doi}</a> (this may take a few hours to become active).</p>
<p>Please ensure you reference this DOI when citing this data.</p>
<p>For more information, follow the DOI link.</p>
<br />
";

pub const SUCCESS_MESSAGE: &str = "The resource will be emailed to you shortly. This make take a little longer if our servers are busy, so please be patient!";

#[derive(Debug, Clone)]
pub struct PackagerSettings {
    /// The shared secret; `None` refuses every request.
    pub secret: Option<String>,
    /// An identical request within this time reuses the zip (at least one second).
    pub cache_time: Duration,
    /// Rows per datastore_search call, never above CKAN's cap.
    pub page_size: u64,
    /// Requests of at least this many rows go to the slow queue.
    pub slow_request: u64,
    /// Store a keyed hash of each email (plus its domain) instead of the address.
    pub anonymize_emails: bool,
    pub email_subject: String,
    pub email_body: String,
    pub email_body_html: String,
    pub doi_body: String,
    pub doi_body_html: String,
    /// Deflate level of the zips. 7, because zlib-rs (like zlib-ng, whose strategies it
    /// ports) trades size for speed at 6: measured with `tests/bench_package.sh`, its 6 wrote
    /// 4.9% more than `zip -6` (the old zlib's 6), its 7 3.7% less, at nearly the same speed.
    pub compression_level: u32,
    /// Where emailed links point (SHEAF_PUBLIC_URL); unset: the address the API was called on.
    pub public_url: Option<String>,
    /// Which addresses requests may name; the same policy the fetcher enforces on connect.
    pub address_policy: AddressPolicy,
    /// A request whose package another delivery is building comes back after this long.
    pub wait_for_build: Duration,
    /// A build claimed longer ago than this is taken as dead (longer than Lambda's 15 minutes).
    pub build_stale_after: Duration,
}

impl Default for PackagerSettings {
    fn default() -> Self {
        PackagerSettings {
            secret: None,
            cache_time: Duration::from_secs(60 * 60 * 24),
            page_size: 5000,
            slow_request: 50_000,
            anonymize_emails: false,
            email_subject: "Resource from {ckan_host}".into(),
            email_body: DEFAULT_EMAIL_BODY.into(),
            email_body_html: DEFAULT_EMAIL_BODY_HTML.into(),
            doi_body: DEFAULT_DOI_BODY.into(),
            doi_body_html: DEFAULT_DOI_BODY_HTML.into(),
            compression_level: 7,
            public_url: None,
            address_policy: AddressPolicy::PublicOnly,
            wait_for_build: Duration::from_secs(30),
            build_stale_after: Duration::from_secs(20 * 60),
        }
    }
}

impl PackagerSettings {
    /// Applies the limits ckanpackager and CKAN impose on the configured values.
    pub fn normalised(mut self) -> Self {
        self.page_size = self.page_size.clamp(1, CKAN_MAX_PAGE_SIZE);
        self.cache_time = self.cache_time.max(Duration::from_secs(1));
        self.compression_level = self.compression_level.clamp(1, 9);
        self
    }
}

//! The HTTP fetcher port: GET with timeouts, a size limit, conditional requests, and the
//! refusal of private and link-local addresses decided before any connection is made.

mod guard;
mod reqwest_fetcher;

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub use guard::{AddressPolicy, check_ip, check_url};
pub use reqwest_fetcher::ReqwestFetcher;

/// How long one request (a listing page or a document, body included) may take. Well below
/// the fetch function's 60 s, which handles its batch of 10 at once: one slow server fails
/// its own document in time for the error to be recorded, instead of timing the whole batch
/// out and sending all ten to the dead-letter queue unrecorded.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("refused {url}: {reason}")]
    Refused { url: String, reason: String },
    #[error("{url} is larger than the limit of {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("fetching {url} failed: {message}")]
    Transport { url: String, message: String },
    /// The server answered, but not with a document (an empty or an exception answer).
    #[error("{url} gave no document: {reason}")]
    Unusable { url: String, reason: String },
}

impl FetchError {
    /// Worth another try later (the server or the network failed), as opposed to an answer
    /// that will not change (refused, too large, 404).
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Transport { .. } => true,
            FetchError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// A GET; the validators make it conditional.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub url: String,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    pub max_bytes: u64,
    /// Sent as the `Authorization` header (a CKAN API key); never logged.
    pub authorization: Option<String>,
    /// Replaces Sheaf's own `User-Agent` (a source's `user_agent` option).
    pub user_agent: Option<String>,
}

impl FetchRequest {
    pub fn new(url: impl Into<String>, max_bytes: u64) -> Self {
        FetchRequest {
            url: url.into(),
            if_none_match: None,
            if_modified_since: None,
            max_bytes,
            authorization: None,
            user_agent: None,
        }
    }
}

/// A 2xx answer with its body, or a 304 with none.
#[derive(Debug, Clone)]
pub struct FetchResponse {
    pub status: u16,
    pub final_url: String,
    pub body: Bytes,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub content_type: Option<String>,
    /// The server's clock when it answered (its `Date` header).
    pub date: Option<String>,
}

impl FetchResponse {
    pub fn not_modified(&self) -> bool {
        self.status == 304
    }
}

/// A POST of a JSON body, as CKAN's action API takes it.
#[derive(Debug, Clone)]
pub struct PostJson {
    pub url: String,
    pub body: serde_json::Value,
    /// CKAN's API key, sent as the `Authorization` header.
    pub authorization: Option<String>,
    pub max_bytes: u64,
}

/// A POST of form fields (`application/x-www-form-urlencoded`), as GeoNetwork's remote
/// notifications are sent.
#[derive(Debug, Clone)]
pub struct PostForm {
    pub url: String,
    pub fields: Vec<(String, String)>,
    /// The whole exchange's limit: a target that hangs fails in this time.
    pub timeout: std::time::Duration,
    /// Of the answer's body (kept only to explain a refusal).
    pub max_bytes: u64,
}

/// A response body as it arrives, for files too large to hold.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, FetchError>> + Send>>;

#[async_trait]
pub trait HttpFetcher: Send + Sync {
    /// The addresses this fetcher may reach, for checking a URL when it is configured.
    fn address_policy(&self) -> AddressPolicy;
    async fn get(&self, request: &FetchRequest) -> Result<FetchResponse, FetchError>;
    /// Answers with the body whatever the status (CKAN explains a refusal in a 409's body);
    /// only the size limit and the address policy are errors here.
    async fn post_json(&self, request: &PostJson) -> Result<FetchResponse, FetchError>;
    /// Answers with the body whatever the status; only transport failures, the size limit
    /// and the address policy are errors.
    async fn post_form(&self, request: &PostForm) -> Result<FetchResponse, FetchError>;
    /// The same POST, its body streamed as it arrives (whatever the status, which comes first).
    async fn post_json_stream(&self, request: &PostJson) -> Result<(u16, ByteStream), FetchError>;
    /// A GET whose 2xx body is streamed; other statuses are errors.
    async fn get_stream(
        &self,
        url: &str,
        authorization: Option<&str>,
    ) -> Result<ByteStream, FetchError>;
}

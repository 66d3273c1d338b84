//! The object store port: every piece of Sheaf's state is an object behind this trait.
//!
//! # Design
//! Modelled on the `object_store` crate's `PutMode::{Overwrite, Create, Update}` and its
//! `WriteMultipart`, without depending on it: that crate brings its own HTTP stack and TLS
//! (we already have the AWS SDK's) and its local backend has no conditional update. Our trait is
//! the handful of calls the pipeline needs, so both adapters implement exactly the same
//! semantics and one contract suite (`common/tests/ports_contract.rs`) runs against both.

pub mod claim;
mod local;
mod s3;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

pub use local::LocalStore;
pub use s3::S3Store;

/// Errors of an object store; `Precondition` is the normal outcome of a lost race.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {0} not found")]
    NotFound(String),
    #[error("object {0} changed or exists already (conditional write refused)")]
    Precondition(String),
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    #[error("store I/O on {key}: {message}")]
    Io { key: String, message: String },
}

impl StoreError {
    pub fn io(key: &str, err: impl std::fmt::Display) -> Self {
        StoreError::Io {
            key: key.to_string(),
            message: err.to_string(),
        }
    }
}

/// How a put treats an existing object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutMode {
    Overwrite,
    /// Create once: refused when the key exists (`If-None-Match: *`).
    Create,
    /// Replace only the version read (`If-Match: ETAG`).
    Update(String),
}

/// An object as read, with the version tag a later `PutMode::Update` names.
#[derive(Debug, Clone)]
pub struct Object {
    pub body: Bytes,
    pub etag: String,
    pub content_type: Option<String>,
}

/// A listed key with its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub key: String,
    pub size: u64,
}

/// A key a listing walk (`Pages`) found: no size, which a local store would read each
/// object's row for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
}

impl From<ListEntry> for Listed {
    fn from(entry: ListEntry) -> Self {
        Listed { key: entry.key }
    }
}

/// `list_page`'s keys without their sizes: `list_keys_page` where a store has no cheaper way.
pub(crate) async fn keys_of_list_page<S: ObjectStore + ?Sized>(
    store: &S,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
) -> Result<Vec<Listed>, StoreError> {
    let page = store.list_page(prefix, start_after, limit).await?;
    Ok(page.into_iter().map(Listed::from).collect())
}

#[async_trait]
pub trait ObjectStore: Send + Sync {
    async fn get(&self, key: &str) -> Result<Object, StoreError>;
    /// Reads several objects, answering in the order of `keys` (`None`: absent): what a stage
    /// weighing a page of documents asks at once. A store that can read them together (the
    /// local database, in one snapshot) does; the default asks for each, a few at a time.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Object>>, StoreError> {
        get_each(self, keys).await
    }
    /// Writes `body` at `key`; returns the new ETag.
    async fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        mode: PutMode,
    ) -> Result<String, StoreError>;
    /// Every key under `prefix`, in lexicographic order.
    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>, StoreError>;
    /// At most `limit` keys under `prefix` that sort after `start_after`, in lexicographic
    /// order: what a caller walks with [`Pages`] when a listing may be too long to hold.
    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListEntry>, StoreError>;
    /// `list_page`'s keys alone, for the walks that need no sizes (`Pages`): the local store
    /// answers them from its key index, without reading a row a key.
    async fn list_keys_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Listed>, StoreError> {
        keys_of_list_page(self, prefix, start_after, limit).await
    }
    /// Removes `key`; removing a missing key is not an error (deletes are replayed).
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Makes `steps` in order: a step's writes only once every write of the step before has
    /// succeeded; the writes of one step are independent of each other (made at once where
    /// that is faster). The first write refused or failed ends the sequence with its error:
    /// the writes before it stay and none after it is made, as with separate calls, so a
    /// caller's crash and race arguments hold unchanged. A store that can make a sequence in
    /// one go (the local database, as one write of its next commit) does; the default makes
    /// each write in turn. Answers the version each key put was left at.
    async fn write_in_order(&self, steps: Vec<Vec<Write>>) -> Result<Versions, StoreError> {
        write_each(self, steps).await
    }
    /// Starts a multipart upload; parts are uploaded in order and the object appears only on
    /// `complete`.
    async fn start_multipart(
        &self,
        key: &str,
        content_type: &str,
    ) -> Result<Box<dyn MultipartUpload>, StoreError>;
    /// Takes up an upload `MultipartUpload::suspend` set aside (in another process); parts
    /// written after the suspension (by a process that died) are written over. An upload
    /// that is gone is `NotFound`, here or at its next part.
    async fn resume_multipart(
        &self,
        key: &str,
        state: &UploadState,
    ) -> Result<Box<dyn MultipartUpload>, StoreError>;
    /// A URL that lets anyone holding it GET the object until `expires_in` has passed.
    async fn presign_get(&self, key: &str, expires_in: Duration) -> Result<String, StoreError>;
    /// Puts every write that has returned beyond a power cut, for before something kept
    /// outside the store (the search index) comes to depend on them. A store whose writes are
    /// durable when they return (S3) has nothing to do.
    async fn make_durable(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The version (ETag) each key a sequence put was left at.
pub type Versions = std::collections::HashMap<String, String>;

/// One write of a sequence (`ObjectStore::write_in_order`).
#[derive(Debug, Clone)]
pub enum Write {
    Put {
        key: String,
        body: Bytes,
        content_type: &'static str,
        mode: PutMode,
    },
    Delete {
        key: String,
    },
}

impl Write {
    /// A put of `value` as JSON (the format `put_json` writes).
    pub fn json<T: serde::Serialize>(
        key: &str,
        value: &T,
        mode: PutMode,
    ) -> Result<Write, StoreError> {
        Ok(Write::Put {
            key: key.to_string(),
            body: json_body(key, value)?,
            content_type: "application/json",
            mode,
        })
    }

    pub fn key(&self) -> &str {
        match self {
            Write::Put { key, .. } | Write::Delete { key } => key,
        }
    }
}

/// `ObjectStore::write_in_order` by a call for each write, a step's writes at once.
pub async fn write_each(
    store: &(impl ObjectStore + ?Sized),
    steps: Vec<Vec<Write>>,
) -> Result<Versions, StoreError> {
    let mut written = Versions::new();
    for step in steps {
        let writes = step.into_iter().map(|write| async move {
            match write {
                Write::Put {
                    key,
                    body,
                    content_type,
                    mode,
                } => {
                    let etag = store.put(&key, body, content_type, mode).await?;
                    Ok(Some((key, etag)))
                }
                Write::Delete { key } => store.delete(&key).await.map(|()| None),
            }
        });
        for (key, etag) in futures::future::try_join_all(writes)
            .await?
            .into_iter()
            .flatten()
        {
            written.insert(key, etag);
        }
    }
    Ok(written)
}

/// Gets a default `get_many` has in flight: as many as the gather's documents in flight.
const GETS_IN_FLIGHT: usize = 64;

/// `ObjectStore::get_many` by a get for each key, a few at a time.
pub async fn get_each(
    store: &(impl ObjectStore + ?Sized),
    keys: &[String],
) -> Result<Vec<Option<Object>>, StoreError> {
    // Owned keys: a future borrowing one trips the compiler's `Send` check (rust#102211).
    futures::stream::iter(keys.iter().cloned())
        .map(|key| async move {
            match store.get(&key).await {
                Ok(object) => Ok(Some(object)),
                Err(StoreError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .buffered(GETS_IN_FLIGHT)
        .try_collect()
        .await
}

/// Keys this many to a page: S3's own page size.
pub const PAGE_SIZE: usize = 1000;

/// A listing walked a page at a time, so its length never sits in memory at once.
pub struct Pages<'a> {
    store: &'a dyn ObjectStore,
    prefix: String,
    after: Option<String>,
    done: bool,
}

impl<'a> Pages<'a> {
    pub fn new(store: &'a dyn ObjectStore, prefix: &str) -> Self {
        Pages {
            store,
            prefix: prefix.to_string(),
            after: None,
            done: false,
        }
    }

    /// The next page, or `None` after the last.
    pub async fn next(&mut self) -> Result<Option<Vec<Listed>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .store
            .list_keys_page(&self.prefix, self.after.as_deref(), PAGE_SIZE)
            .await?;
        self.done = page.len() < PAGE_SIZE;
        match page.last() {
            Some(last) => self.after = Some(last.key.clone()),
            None => return Ok(None),
        }
        Ok(Some(page))
    }
}

/// Walks the keys under `prefix` a page at a time, handing `each` what lies between the
/// prefix and `suffix` (an id); keys not ending in `suffix` are passed over.
pub async fn for_each_name(
    store: &dyn ObjectStore,
    prefix: &str,
    suffix: &str,
    mut each: impl FnMut(&str),
) -> Result<(), StoreError> {
    let mut pages = Pages::new(store, prefix);
    while let Some(entries) = pages.next().await? {
        for entry in entries {
            if let Some(name) = entry.key[prefix.len()..].strip_suffix(suffix) {
                each(name);
            }
        }
    }
    Ok(())
}

/// One page of a listing whose keys sort in the order wanted (newest first, say): the keys
/// `keep` accepts, from the `offset`-th of them, at most `limit`. Listing stops once the page
/// is full, so a page costs the page, not the whole prefix.
pub async fn page_of_keys(
    store: &dyn ObjectStore,
    prefix: &str,
    offset: usize,
    limit: usize,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<String>, StoreError> {
    let (mut page, mut seen) = (Vec::new(), 0);
    let mut pages = Pages::new(store, prefix);
    while let Some(entries) = pages.next().await? {
        for entry in entries.into_iter().filter(|e| keep(&e.key)) {
            seen += 1;
            if seen > offset {
                page.push(entry.key);
                if page.len() >= limit {
                    return Ok(page);
                }
            }
        }
    }
    Ok(page)
}

/// One multipart upload. Dropping it without `complete` leaves no visible object; callers
/// `abort` on error so nothing half-written lingers.
#[async_trait]
pub trait MultipartUpload: Send {
    /// Uploads the next part (parts are numbered from 1 by the adapter).
    async fn put_part(&mut self, data: Bytes) -> Result<(), StoreError>;
    async fn complete(self: Box<Self>) -> Result<String, StoreError>;
    async fn abort(self: Box<Self>) -> Result<(), StoreError>;
    /// Sets the upload aside, unfinished, for `ObjectStore::resume_multipart` to take up.
    fn suspend(self: Box<Self>) -> UploadState;
}

/// A multipart upload set aside to go on in a later process (a Lambda invocation that ran out
/// of time hands its package to the next).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UploadState {
    /// The backend's name for the upload: S3's upload id, the local store's temp file.
    pub id: String,
    /// Each part's ETag, in order (parts are numbered from 1).
    pub parts: Vec<String>,
    /// Bytes in those parts.
    pub bytes: u64,
}

/// Checks a key before it reaches a backend: relative, no `..`, no empty segments.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key.ends_with('/')
        || key.contains('\\')
        || key.contains('\0')
        || key
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..");
    if bad {
        Err(StoreError::InvalidKey(key.to_string()))
    } else {
        Ok(())
    }
}

/// Reads a JSON object; `Ok(None)` when absent.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    store: &dyn ObjectStore,
    key: &str,
) -> Result<Option<(T, String)>, StoreError> {
    match store.get(key).await {
        Ok(obj) => Ok(Some((parse_json(key, &obj.body)?, obj.etag))),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads the JSON body of object `key`.
pub fn parse_json<T: serde::de::DeserializeOwned>(key: &str, body: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(body).map_err(|e| StoreError::io(key, format!("unreadable JSON: {e}")))
}

/// Writes a JSON object with the given mode.
pub async fn put_json<T: serde::Serialize>(
    store: &dyn ObjectStore,
    key: &str,
    value: &T,
    mode: PutMode,
) -> Result<String, StoreError> {
    store
        .put(key, json_body(key, value)?, "application/json", mode)
        .await
}

/// The JSON a JSON object is stored as.
fn json_body<T: serde::Serialize>(key: &str, value: &T) -> Result<Bytes, StoreError> {
    let body = serde_json::to_vec_pretty(value).map_err(|e| StoreError::io(key, e))?;
    Ok(Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_escape_or_are_empty_are_refused() {
        for bad in ["", "/a", "a/", "a//b", "../a", "a/../b", "a/./b", "a\\b"] {
            assert!(validate_key(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "waf/src/x.xml", "jobs/s/j/done/o=added"] {
            assert!(validate_key(good).is_ok(), "{good:?} refused");
        }
    }
}

//! Statistics without a database: one small JSON object per request and per error, under keys
//! that sort newest first, so listing is paging. Totals are counted from them.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::PackageError;
use super::links::anonymize_key;
use crate::services::Services;
use crate::store::{Pages, PutMode, StoreError, get_json, put_json};

/// Outside `packages/`, whose zips the bucket's lifecycle expires: statistics are kept.
const REQUESTS: &str = "stats/packager/requests/";
const ERRORS: &str = "stats/packager/errors/";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RequestEntry {
    pub email: String,
    pub domain: String,
    pub resource_id: String,
    pub timestamp: i64,
    #[serde(default)]
    pub count: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorEntry {
    pub email: String,
    pub resource_id: String,
    pub timestamp: i64,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Totals {
    pub emails: u64,
    pub requests: u64,
    pub errors: u64,
}

/// Newest first: the key starts with the time counted down.
fn entry_key(prefix: &str, timestamp: i64, id: &str) -> String {
    format!(
        "{prefix}{:011}-{id}.json",
        99_999_999_999 - timestamp.clamp(0, 99_999_999_999)
    )
}

pub fn domain_of(email: &str) -> String {
    let email = email.to_lowercase();
    match email.find('@') {
        Some(i) => email[i + 1..].to_string(),
        None => email,
    }
}

/// The email as stored: itself, or with ANONYMIZE_EMAILS a keyed hash (HMAC-SHA256 of the
/// lower-cased address under a key kept in the store) that still tells one person from another.
pub async fn stored_email(services: &Services, email: &str) -> Result<String, PackageError> {
    let email = email.trim().to_lowercase();
    if !services.settings.packager.anonymize_emails {
        return Ok(email);
    }
    let key = anonymize_key(services.store.as_ref()).await?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC accepts any key");
    mac.update(email.as_bytes());
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// Records a served request; `id` makes a repeated delivery write the same object again.
pub async fn record_request(
    services: &Services,
    id: &str,
    timestamp: i64,
    resource_id: &str,
    email: &str,
    count: Option<u64>,
) -> Result<(), PackageError> {
    let entry = RequestEntry {
        email: stored_email(services, email).await?,
        domain: domain_of(email),
        resource_id: resource_id.to_string(),
        timestamp,
        count,
    };
    put_json(
        services.store.as_ref(),
        &entry_key(REQUESTS, timestamp, id),
        &entry,
        PutMode::Overwrite,
    )
    .await?;
    Ok(())
}

pub async fn record_error(
    services: &Services,
    id: &str,
    timestamp: i64,
    resource_id: &str,
    email: &str,
    message: &str,
) -> Result<(), PackageError> {
    let entry = ErrorEntry {
        email: if email.is_empty() {
            String::new()
        } else {
            stored_email(services, email).await?
        },
        resource_id: resource_id.to_string(),
        timestamp,
        message: message.to_string(),
    };
    put_json(
        services.store.as_ref(),
        &entry_key(ERRORS, timestamp, id),
        &entry,
        PutMode::Overwrite,
    )
    .await?;
    Ok(())
}

async fn read_all<T: serde::de::DeserializeOwned>(
    services: &Services,
    prefix: &str,
) -> Result<Vec<T>, PackageError> {
    let mut keys: Vec<String> = services
        .store
        .list(prefix)
        .await?
        .into_iter()
        .map(|e| e.key)
        .collect();
    keys.sort();
    let store = services.store.clone();
    let read: Vec<Result<Option<T>, StoreError>> = futures::stream::iter(keys)
        .map(|key| {
            let store = store.clone();
            async move {
                get_json::<T>(store.as_ref(), &key)
                    .await
                    .map(|found| found.map(|(v, _)| v))
            }
        })
        .buffered(16)
        .collect()
        .await;
    let mut out = Vec::new();
    for r in read {
        out.extend(r?);
    }
    Ok(out)
}

/// A filter of the statistics calls.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub resource_id: Option<String>,
    pub email: Option<String>,
}

impl Filter {
    async fn stored(
        self,
        services: &Services,
    ) -> Result<(Option<String>, Option<String>), PackageError> {
        let email = match self.email {
            Some(e) => Some(stored_email(services, &e).await?),
            None => None,
        };
        Ok((self.resource_id, email))
    }
}

/// What the listing filters look at.
trait Entry {
    fn resource_id(&self) -> &str;
    fn email(&self) -> &str;
}

impl Entry for RequestEntry {
    fn resource_id(&self) -> &str {
        &self.resource_id
    }
    fn email(&self) -> &str {
        &self.email
    }
}

impl Entry for ErrorEntry {
    fn resource_id(&self) -> &str {
        &self.resource_id
    }
    fn email(&self) -> &str {
        &self.email
    }
}

async fn listed<T: serde::de::DeserializeOwned + Entry>(
    services: &Services,
    prefix: &str,
    filter: Filter,
    offset: usize,
    limit: usize,
) -> Result<Vec<T>, PackageError> {
    let (resource, email) = filter.stored(services).await?;
    let store = services.store.as_ref();
    // Keys sort newest first: entries are read a listing page at a time, until this page of
    // matching ones is full.
    let (mut out, mut matched) = (Vec::new(), 0);
    let mut pages = Pages::new(store, prefix);
    while let Some(entries) = pages.next().await? {
        for chunk in entries.chunks(READ_AT_ONCE) {
            let keys: Vec<String> = chunk.iter().map(|e| e.key.clone()).collect();
            let read: Vec<Result<Option<(T, String)>, StoreError>> = futures::stream::iter(keys)
                .map(|key| {
                    let store = services.store.clone();
                    async move { get_json::<T>(store.as_ref(), &key).await }
                })
                .buffered(READ_AT_ONCE)
                .collect()
                .await;
            for found in read {
                let Some((entry, _)) = found? else { continue };
                let wanted = resource.as_deref().is_none_or(|r| r == entry.resource_id())
                    && email.as_deref().is_none_or(|m| m == entry.email());
                if !wanted {
                    continue;
                }
                matched += 1;
                if matched > offset {
                    out.push(entry);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Entries read at once while a page fills.
const READ_AT_ONCE: usize = 16;

/// Served requests, newest first.
pub async fn requests(
    services: &Services,
    filter: Filter,
    offset: usize,
    limit: usize,
) -> Result<Vec<RequestEntry>, PackageError> {
    listed(services, REQUESTS, filter, offset, limit).await
}

/// Errors, newest first.
pub async fn errors(
    services: &Services,
    filter: Filter,
    offset: usize,
    limit: usize,
) -> Result<Vec<ErrorEntry>, PackageError> {
    listed(services, ERRORS, filter, offset, limit).await
}

/// Totals per resource and `*` (all): unique emails, requests, errors.
pub async fn totals(
    services: &Services,
    resource_id: Option<&str>,
) -> Result<BTreeMap<String, Totals>, PackageError> {
    let requests: Vec<RequestEntry> = read_all(services, REQUESTS).await?;
    let errors: Vec<ErrorEntry> = read_all(services, ERRORS).await?;
    let mut totals: BTreeMap<String, Totals> = BTreeMap::new();
    let mut emails: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &requests {
        for resource in ["*", r.resource_id.as_str()] {
            totals.entry(resource.into()).or_default().requests += 1;
            emails
                .entry(resource.into())
                .or_default()
                .insert(r.email.clone());
        }
    }
    for e in &errors {
        for resource in ["*", e.resource_id.as_str()] {
            totals.entry(resource.into()).or_default().errors += 1;
        }
    }
    for (resource, set) in emails {
        totals.entry(resource).or_default().emails = set.len() as u64;
    }
    if let Some(only) = resource_id {
        totals.retain(|k, _| k == only);
    }
    Ok(totals)
}

/// How many requests were served (`processed_requests` of `/status`).
pub async fn processed_requests(services: &Services) -> Result<u64, PackageError> {
    Ok(services.store.list(REQUESTS).await?.len() as u64)
}

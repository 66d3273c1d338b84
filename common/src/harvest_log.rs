//! The harvest log (ckanext-harvest's `harvest_log_list`): one small object per entry under
//! `log/`, keyed newest first with its level, so a page (of one level, too) costs its page;
//! and a retention cleanup that lists only what it removes.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::store::{ObjectStore, PutMode, StoreError, get_json, page_of_keys};

const PREFIX: &str = "log/";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogEntry {
    pub content: String,
    pub level: String,
    pub created: String,
}

/// Writes one entry. A log that cannot be written must not fail the harvest: it is traced.
pub async fn log(store: &dyn ObjectStore, level: &str, content: impl Into<String>) {
    let now = chrono::Utc::now();
    let entry = LogEntry {
        content: content.into(),
        level: level.to_string(),
        created: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    };
    let key = format!(
        "{PREFIX}{}-{}-{}.json",
        countdown(now),
        level.to_ascii_uppercase(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let body = match serde_json::to_vec(&entry) {
        Ok(b) => Bytes::from(b),
        Err(e) => return tracing::error!(error = %e, "log entry not serialisable"),
    };
    if let Err(e) = store
        .put(&key, body, "application/json", PutMode::Create)
        .await
    {
        tracing::error!(error = %e, "could not write the harvest log");
    }
}

/// Microseconds left until the end of u64 time, fixed width: keys sort newest first, so a
/// page of the log is the first keys of a listing.
fn countdown(at: chrono::DateTime<chrono::Utc>) -> String {
    let micros = u64::try_from(at.timestamp_micros()).unwrap_or_default();
    format!("{:020}", u64::MAX - micros)
}

/// The level an entry's key carries (`log/COUNTDOWN-LEVEL-RANDOM.json`).
fn level_of(key: &str) -> Option<&str> {
    key.strip_prefix(PREFIX)?.split('-').nth(1)
}

/// Entries newest first, optionally of one level, paged by `limit` and `offset`: the keys are
/// listed a page at a time until the page is full, and only its entries are read.
pub async fn list(
    store: &dyn ObjectStore,
    level: Option<&str>,
    limit: usize,
    offset: usize,
) -> Result<Vec<LogEntry>, StoreError> {
    let wanted = page_of_keys(store, PREFIX, offset, limit, |key| {
        level.is_none_or(|l| level_of(key).is_some_and(|k| k.eq_ignore_ascii_case(l)))
    })
    .await?;
    let mut out = Vec::with_capacity(wanted.len());
    for key in wanted {
        if let Some((entry, _)) = get_json::<LogEntry>(store, &key).await? {
            out.push(entry);
        }
    }
    Ok(out)
}

/// Deletes entries older than `days` days; returns how many. They are the keys after the
/// cutoff's: only they are listed.
pub async fn clean(store: &dyn ObjectStore, days: u32) -> Result<u64, StoreError> {
    let cutoff = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
    let after = format!("{PREFIX}{}", countdown(cutoff));
    let mut removed = 0;
    loop {
        let entries = store.list_keys_page(PREFIX, Some(&after), 1000).await?;
        if entries.is_empty() {
            return Ok(removed);
        }
        for entry in entries {
            store.delete(&entry.key).await?;
            removed += 1;
        }
    }
}

//! The harvest log (ckanext-harvest's `harvest_log_list`): one small object per entry under
//! `log/YYYY/MM/DD/`, newest first when listed, and a retention cleanup that drops whole days.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::store::{ObjectStore, PutMode, StoreError, get_json};

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
        "{PREFIX}{}-{}.json",
        now.format("%Y/%m/%d/%H%M%S%.6f"),
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

/// Entries newest first, optionally of one level, paged by `limit` and `offset`.
pub async fn list(
    store: &dyn ObjectStore,
    level: Option<&str>,
    limit: usize,
    offset: usize,
) -> Result<Vec<LogEntry>, StoreError> {
    let mut keys = store.list(PREFIX).await?;
    keys.reverse();
    let mut out = Vec::new();
    let mut skipped = 0;
    for entry in keys {
        if out.len() >= limit {
            break;
        }
        let Some((log, _)) = get_json::<LogEntry>(store, &entry.key).await? else {
            continue;
        };
        if level.is_some_and(|l| !l.eq_ignore_ascii_case(&log.level)) {
            continue;
        }
        if skipped < offset {
            skipped += 1;
            continue;
        }
        out.push(log);
    }
    Ok(out)
}

/// Deletes entries older than `days` days; returns how many.
pub async fn clean(store: &dyn ObjectStore, days: u32) -> Result<u64, StoreError> {
    let cutoff = (chrono::Utc::now() - chrono::Duration::days(i64::from(days)))
        .format("%Y/%m/%d")
        .to_string();
    let mut removed = 0;
    for entry in store.list(PREFIX).await? {
        let day = entry.key[PREFIX.len()..].get(..10).unwrap_or_default();
        if day < cutoff.as_str() {
            store.delete(&entry.key).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

//! Keeping the search index in step with the records: every write or removal of a record
//! sends its key on the index queue, and the index's one writer applies what the store holds
//! for each key when the message arrives (the record: upserted; none: taken out). A message
//! says only "look at this key", so one delivered twice, late, or out of order leaves the
//! index as the store is.

use std::collections::HashSet;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::PipelineError;
use crate::catalog::IndexError;
use crate::domain::keys;
use crate::domain::record::Record;
use crate::queue::QueueName;
use crate::services::Services;
use crate::store::{ObjectStore, Pages, get_json};

pub const MESSAGE_KIND: &str = "index";

/// Records (by key) to look at again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexMessage {
    pub kind: String,
    pub keys: Vec<String>,
}

/// Tells the index that the records of `id_keys` changed, after `delay`.
pub(crate) async fn send_changes(
    services: &Services,
    id_keys: &[String],
    delay: Duration,
) -> Result<(), PipelineError> {
    if id_keys.is_empty() {
        return Ok(());
    }
    let body = serde_json::to_string(&IndexMessage {
        kind: MESSAGE_KIND.into(),
        keys: id_keys.to_vec(),
    })
    .expect("a message always serialises");
    match services.queues.get(QueueName::Index) {
        Ok(queue) => Ok(queue.send(body, delay).await?),
        // No index queue (the command line against a bucket, without the stack's queues):
        // this process is the index's writer.
        Err(_) => apply_keys(services, id_keys).await,
    }
}

/// Applies what the store holds now for each key.
pub async fn apply_keys(services: &Services, id_keys: &[String]) -> Result<(), PipelineError> {
    let store = services.store.as_ref();
    let paths: Vec<String> = id_keys.iter().map(|k| keys::record_json(k)).collect();
    let found = read_records(store, paths).await?;
    let (mut upserts, mut deletes) = (Vec::new(), Vec::new());
    for (key, record) in id_keys.iter().zip(found) {
        match record {
            Some(record) => upserts.push(record),
            None => deletes.push(key.clone()),
        }
    }
    services.index.apply(upserts, deletes).await?;
    Ok(())
}

/// The records at these object keys (`None` where there is none), read 16 at a time.
async fn read_records(
    store: &dyn ObjectStore,
    paths: Vec<String>,
) -> Result<Vec<Option<Record>>, PipelineError> {
    futures::stream::iter(paths)
        .map(|path| async move {
            Ok::<_, PipelineError>(get_json::<Record>(store, &path).await?.map(|(r, _)| r))
        })
        .buffered(16)
        .try_collect()
        .await
}

pub(crate) async fn handle_message(
    services: &Services,
    message: &IndexMessage,
) -> Result<(), PipelineError> {
    apply_keys(services, &message.keys).await
}

/// Applies every change waiting on the index queue, in batches, when this process can write
/// the index; when another process writes it (`serve`'s indexer), the changes are left to it.
/// Returns the messages applied.
pub async fn drain(services: &Services) -> Result<u64, PipelineError> {
    let Ok(queue) = services.queues.get(QueueName::Index) else {
        // Without an index queue every change was applied as it was made.
        return Ok(0);
    };
    let mut applied = 0;
    loop {
        let batch = queue.receive(100, Duration::from_secs(60)).await?;
        if batch.is_empty() {
            return Ok(applied);
        }
        let mut keys = Vec::new();
        for m in &batch {
            if let Ok(message) = serde_json::from_str::<IndexMessage>(&m.body) {
                keys.extend(message.keys);
            }
        }
        keys.sort();
        keys.dedup();
        match apply_keys(services, &keys).await {
            Ok(()) => {}
            Err(PipelineError::Index(IndexError::Busy)) => {
                for m in &batch {
                    queue.change_visibility(&m.receipt, Duration::ZERO).await?;
                }
                return Ok(applied);
            }
            Err(e) => return Err(e),
        }
        for m in &batch {
            queue.delete(&m.receipt).await?;
        }
        applied += batch.len() as u64;
    }
}

/// Makes the index hold exactly the records in the store, in place: each record put again,
/// then what no record backs taken out; searches answer all along. Returns the records indexed.
pub async fn reindex(services: &Services) -> Result<u64, PipelineError> {
    let store = services.store.as_ref();
    let mut stale: HashSet<String> = services.index.keys().await?.into_iter().collect();
    let mut indexed = 0;
    let mut pages = Pages::new(store, keys::RECORDS);
    while let Some(entries) = pages.next().await? {
        let paths = entries
            .into_iter()
            .map(|e| e.key)
            .filter(|k| k.ends_with(".json"))
            .collect();
        let records: Vec<Record> = read_records(store, paths)
            .await?
            .into_iter()
            .flatten()
            .collect();
        for record in &records {
            stale.remove(&keys::id_key(&record.metadata.id));
        }
        indexed += records.len() as u64;
        services.index.apply(records, Vec::new()).await?;
    }
    // What the index held that no record backs any more.
    let stale: Vec<String> = stale.into_iter().collect();
    for chunk in stale.chunks(1000) {
        services.index.apply(Vec::new(), chunk.to_vec()).await?;
    }
    Ok(indexed)
}

//! Keeping the search index in step with the records: every write or removal of a record
//! sends its key on the index queue, and the index's one writer applies what the store holds
//! for each key when the message arrives (the record: upserted; none: taken out). A message
//! says only "look at this key", so one delivered twice, late, or out of order leaves the
//! index as the store is.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::PipelineError;
use crate::catalog::IndexError;
use crate::domain::keys;
use crate::domain::record::Record;
use crate::queue::QueueName;
use crate::services::Services;
use crate::store::{ObjectStore, Pages, parse_json};

pub const MESSAGE_KIND: &str = "index";

/// Keys a reindex puts in one message: a batch of the index function (100 messages) then
/// reads 10,000 records, well within its time.
const KEYS_A_MESSAGE: usize = 100;

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
    // The index must not hold what a power cut could take from the store.
    store.make_durable().await?;
    services.index.apply(upserts, deletes).await?;
    Ok(())
}

/// The records at these object keys (`None` where there is none), read at once
/// (`ObjectStore::get_many`: one snapshot locally).
async fn read_records(
    store: &dyn ObjectStore,
    paths: Vec<String>,
) -> Result<Vec<Option<Record>>, PipelineError> {
    let found = store.get_many(&paths).await?;
    let mut records = Vec::with_capacity(found.len());
    for (path, object) in paths.iter().zip(found) {
        records.push(match object {
            Some(object) => Some(parse_json::<Record>(path, &object.body)?),
            None => None,
        });
    }
    Ok(records)
}

pub(crate) async fn handle_message(
    services: &Services,
    message: &IndexMessage,
) -> Result<(), PipelineError> {
    apply_keys(services, &message.keys).await
}

/// Keys one drain commit applies at most: a commit costs tens of milliseconds whatever it
/// holds (a run-test of 5,000 records spent half its time committing a hundred at a time),
/// and the records read for it are held together (about 5 MB).
const KEYS_A_COMMIT: usize = 1000;

/// Applies every change waiting on the index queue, in commits of up to `KEYS_A_COMMIT` keys,
/// when this process can write the index; when another process writes it (`serve`'s
/// indexer), the changes are left to it. Returns the messages applied.
pub async fn drain(services: &Services) -> Result<u64, PipelineError> {
    Ok(drain_unless_busy(services).await?.applied)
}

/// What a drain did.
pub(super) struct Drained {
    /// Messages applied.
    pub applied: u64,
    /// Whether it stopped because another process writes the index.
    pub busy: bool,
}

/// `drain`, telling whether it stopped because another process writes the index.
pub(super) async fn drain_unless_busy(services: &Services) -> Result<Drained, PipelineError> {
    let done = |applied, busy| Ok(Drained { applied, busy });
    let Ok(queue) = services.queues.get(QueueName::Index) else {
        // Without an index queue every change was applied as it was made.
        return done(0, false);
    };
    let mut applied = 0;
    loop {
        let mut batch = Vec::new();
        let mut keys = Vec::new();
        while keys.len() < KEYS_A_COMMIT {
            let received = queue.receive(100, Duration::from_secs(60)).await?;
            if received.is_empty() {
                break;
            }
            for m in &received {
                if let Ok(message) = serde_json::from_str::<IndexMessage>(&m.body) {
                    keys.extend(message.keys);
                }
            }
            batch.extend(received);
        }
        if batch.is_empty() {
            return done(applied, false);
        }
        keys.sort();
        keys.dedup();
        match apply_keys(services, &keys).await {
            Ok(()) => {}
            Err(PipelineError::Index(IndexError::Busy)) => {
                let shown = batch
                    .iter()
                    .map(|m| queue.change_visibility(&m.receipt, Duration::ZERO));
                futures::future::try_join_all(shown).await?;
                return done(applied, true);
            }
            Err(e) => return Err(e),
        }
        let receipts: Vec<String> = batch.iter().map(|m| m.receipt.clone()).collect();
        queue.delete_batch(&receipts).await?;
        applied += batch.len() as u64;
    }
}

/// Makes the index hold exactly the records in the store, in place and through its one
/// writer: every record's key is sent on as changed, then every key the index holds that no
/// record backs; the writer applies what the store holds, so searches answer all along and a
/// process that is not the writer (the rebuild function) never writes the index. Returns the
/// records sent.
pub async fn reindex(services: &Services) -> Result<u64, PipelineError> {
    let store = services.store.as_ref();
    let mut stale: HashSet<String> = services.index.keys().await?.into_iter().collect();
    let mut sent = 0;
    let mut pages = Pages::new(store, keys::RECORDS);
    while let Some(entries) = pages.next().await? {
        let page: Vec<String> = entries
            .iter()
            .filter_map(|e| e.key.strip_prefix(keys::RECORDS)?.strip_suffix(".json"))
            .map(str::to_string)
            .collect();
        for key in &page {
            stale.remove(key);
        }
        for chunk in page.chunks(KEYS_A_MESSAGE) {
            send_changes(services, chunk, Duration::ZERO).await?;
        }
        sent += page.len() as u64;
    }
    let stale: Vec<String> = stale.into_iter().collect();
    for chunk in stale.chunks(KEYS_A_MESSAGE) {
        send_changes(services, chunk, Duration::ZERO).await?;
    }
    Ok(sent)
}

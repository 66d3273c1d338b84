//! Gather: list what the source has, a page at a time, writing one object document per GUID
//! (create-once) and sending its fetch as each page is read; continue in a following
//! invocation when time runs short; then weigh the count against the last gather's (the
//! shrink guard) and schedule the job's check.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::jobs::{send, send_check, update_job};
use super::objects::done_marker;
use super::{Kind, Message, PipelineError};
use crate::domain::job::{ErrorEntry, HarvestObject, Job, JobStatus, Outcome, SourceHarvestState};
use crate::domain::keys;
use crate::domain::now;
use crate::harvest::{GatherPage, Gathered, harvester_for};
use crate::services::Services;
use crate::sources::load_source;
use crate::store::{
    ObjectStore, Pages, PutMode, StoreError, Write, for_each_name, get_json, put_json,
};

/// A gather ends its invocation after the page it is on when less than this is left: time
/// for one more listing page (the request timeout) and writing its objects.
const GATHER_MARGIN: Duration = Duration::from_secs(120);

/// Which page a gather takes up next.
#[derive(Debug, Default, Serialize, Deserialize)]
struct GatherCursor {
    next_page: u64,
}

pub(super) async fn gather(
    services: &Services,
    source_name: &str,
    job_id: &str,
) -> Result<(), PipelineError> {
    let store = services.store.as_ref();
    let job = update_job(store, source_name, job_id, |job| {
        if job.status != JobStatus::New {
            return false;
        }
        job.status = JobStatus::Running;
        job.started = Some(now());
        job.last_progress = Some(now());
        true
    })
    .await?;
    if job.status.is_done() {
        return Ok(());
    }
    if job.object_count.is_some() {
        // A redelivered gather of a completed one: make sure its check is on its way.
        if job.last_check.is_none() {
            send_check(services, &job, Duration::ZERO).await?;
        }
        return Ok(());
    }
    let source = load_source(store, source_name).await?;
    let Some(harvester) = harvester_for(source.source_type) else {
        let message = format!(
            "{} sources are not supported yet",
            source.source_type.as_str()
        );
        let log = format!("Gather of job {job_id} of source {source_name} failed: {message}");
        return record_gather_error(services, &job, log, message, None, true).await;
    };

    // Page by page: each page's documents and objects are written before the next is read,
    // and when the invocation's time runs short the gather goes on in a following one.
    let cursor_key = keys::job_gather_cursor(source_name, job_id);
    let mut page_no = get_json::<GatherCursor>(store, &cursor_key)
        .await?
        .map_or(0, |(c, _)| c.next_page);
    let mut cursor = match page_no {
        0 => None,
        n => read_page(store, source_name, job_id, n - 1)
            .await?
            .and_then(|p| p.next),
    };
    let mut sent = 0;
    loop {
        if page_no > 0 && cursor.is_none() {
            break;
        }
        let page_key = keys::job_gathered_page(source_name, job_id, page_no);
        let page = match read_page(store, source_name, job_id, page_no).await? {
            Some(page) => page,
            None => match if job.reimport {
                super::reimport::kept_page(store, source_name, cursor.as_ref()).await
            } else {
                harvester
                    .gather_page(services, &source, cursor.as_ref())
                    .await
            } {
                Ok(page) => {
                    match put_json(store, &page_key, &page, PutMode::Create).await {
                        Ok(_) => page,
                        // Another delivery read this page first: its reading counts.
                        Err(StoreError::Precondition(_)) => {
                            read_page(store, source_name, job_id, page_no)
                                .await?
                                .ok_or_else(|| PipelineError::NotFound(page_key.clone()))?
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => {
                    tracing::warn!(source = source_name, job = job_id, error = %e, "gather failed");
                    let log = format!(
                        "Gather of job {job_id} of source {source_name} failed: {}",
                        e.message
                    );
                    return record_gather_error(services, &job, log, e.message, e.url, true).await;
                }
            },
        };
        // Also for a page kept before a crash: its objects may not all have been written.
        sent += create_objects(services, source_name, job_id, page.documents).await?;
        page_no += 1;
        cursor = page.next;
        put_json(
            store,
            &cursor_key,
            &GatherCursor { next_page: page_no },
            PutMode::Overwrite,
        )
        .await?;
        if cursor.is_none() {
            break;
        }
        if crate::deadline::near(GATHER_MARGIN) {
            tracing::info!(
                source = source_name,
                job = job_id,
                pages = page_no,
                "gather continues in a next invocation"
            );
            return send(
                services,
                &Message::new(Kind::Gather, source_name, job_id),
                Duration::ZERO,
            )
            .await;
        }
    }

    let count = count_listed(store, source_name, job_id).await?;
    let changed_since = read_page(store, source_name, job_id, 0)
        .await?
        .and_then(|p| p.changed_since);
    // Deletions need evidence: a gather that found nothing, or far fewer documents than the
    // last completed one, more likely met a broken server than a real shrink.
    let last = get_json::<SourceHarvestState>(store, &keys::source_harvest_state(source_name))
        .await?
        .map_or(0, |(s, _)| s.last_gathered);
    // A re-import lists what is kept, and an incremental harvest what changed: neither
    // removes what it did not list, so there is no shrink to refuse.
    let allow_shrink = job.allow_shrink || job.reimport || changed_since.is_some();
    if let Some(reason) = shrink_refusal(count, last, source.shrink_threshold(), allow_shrink) {
        tracing::error!(
            source = source_name,
            job = job_id,
            reason,
            "gather refused as a shrink"
        );
        let log = format!("Gather of job {job_id} of source {source_name}: {reason}");
        let url = Some(source.url.clone());
        record_gather_error(services, &job, log, reason, url, count == 0).await?;
        if count == 0 {
            return Ok(());
        }
    }
    let job = update_job(store, source_name, job_id, |job| {
        if job.object_count == Some(count) {
            return false;
        }
        job.object_count = Some(count);
        job.changed_since = changed_since.clone();
        job.last_progress = Some(now());
        job.check_seq += 1;
        true
    })
    .await?;
    send_check(services, &job, services.settings.check_delay).await?;
    tracing::info!(
        source = source_name,
        job = job_id,
        documents = count,
        pages = page_no,
        fetches = sent,
        "gathered"
    );
    Ok(())
}

async fn read_page(
    store: &dyn ObjectStore,
    source: &str,
    job_id: &str,
    page: u64,
) -> Result<Option<GatherPage>, PipelineError> {
    let key = keys::job_gathered_page(source, job_id, page);
    Ok(get_json::<GatherPage>(store, &key).await?.map(|(p, _)| p))
}

/// Object ids kept as their first 8 bytes, sorted: 100,000 documents take 0.8 MB. Two ids
/// that share those bytes (about one chance in 10^9 at 100,000) would make a document that
/// left look listed: its record stays, never the other way round.
#[derive(Default)]
pub(super) struct GatheredIds(Vec<u64>);

impl GatheredIds {
    /// Whether `object_id` (hex, as `keys::object_id` writes it) is one of these; `None` when
    /// it is not an id of ours.
    fn holds(&self, object_id: &str) -> Option<bool> {
        Some(self.0.binary_search(&id_prefix(object_id)?).is_ok())
    }

    fn from_ids(mut ids: Vec<u64>) -> Self {
        ids.sort_unstable();
        ids.dedup();
        GatheredIds(ids)
    }
}

/// The first 8 bytes of a hex object id, `None` when it is not one.
fn id_prefix(object_id: &str) -> Option<u64> {
    if object_id.len() != 24 {
        return None;
    }
    let mut bytes = [0u8; 8];
    hex::decode_to_slice(&object_id[..16], &mut bytes).ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// Which documents left the source, by what a finishing job's gather read: a complete listing
/// says every document it did not list left; an incremental one (`changed_since`) says only
/// those the source said it deleted. What is in doubt never counts as gone.
pub(super) enum Departures {
    Unlisted(GatheredIds),
    Deleted {
        listed: GatheredIds,
        deleted: GatheredIds,
    },
}

impl Departures {
    pub async fn of(
        store: &dyn ObjectStore,
        source: &str,
        job: &Job,
    ) -> Result<Departures, PipelineError> {
        let capacity = job.object_count.unwrap_or_default() as usize;
        let listed = listed_ids(store, source, &job.id, capacity).await?;
        Ok(match job.changed_since {
            None => Departures::Unlisted(listed),
            Some(_) => Departures::Deleted {
                listed,
                deleted: deleted_ids(store, source, &job.id).await?,
            },
        })
    }

    /// Whether the document of `object_id` left the source.
    pub fn has_left(&self, object_id: &str) -> bool {
        match self {
            Departures::Unlisted(listed) => listed.holds(object_id) == Some(false),
            Departures::Deleted { listed, deleted } => {
                deleted.holds(object_id) == Some(true) && listed.holds(object_id) == Some(false)
            }
        }
    }
}

/// The ids of the documents a job's gather listed, from its object documents (one per GUID,
/// each created before the gather counted them), at the `capacity` the job counted, so the
/// set is never copied to grow.
async fn listed_ids(
    store: &dyn ObjectStore,
    source: &str,
    job_id: &str,
    capacity: usize,
) -> Result<GatheredIds, PipelineError> {
    let mut ids = Vec::with_capacity(capacity);
    let prefix = keys::job_objects(source, job_id);
    for_each_name(store, &prefix, ".json", |id| ids.extend(id_prefix(id))).await?;
    Ok(GatheredIds::from_ids(ids))
}

/// Counts the documents a job's gather listed (a GUID on two pages counts once) without
/// holding them.
async fn count_listed(
    store: &dyn ObjectStore,
    source: &str,
    job_id: &str,
) -> Result<u64, PipelineError> {
    let mut count = 0;
    for_each_name(store, &keys::job_objects(source, job_id), ".json", |_| {
        count += 1
    })
    .await?;
    Ok(count)
}

/// The documents an incremental listing said the source deleted (a few: what changed).
async fn deleted_ids(
    store: &dyn ObjectStore,
    source: &str,
    job_id: &str,
) -> Result<GatheredIds, PipelineError> {
    let mut deleted = Vec::new();
    let mut pages = Pages::new(store, &keys::job_gathered(source, job_id));
    while let Some(entries) = pages.next().await? {
        for entry in entries {
            if let Some((page, _)) = get_json::<GatherPage>(store, &entry.key).await? {
                deleted.extend(
                    page.deleted
                        .iter()
                        .filter_map(|guid| id_prefix(&keys::object_id(guid))),
                );
            }
        }
    }
    Ok(GatheredIds::from_ids(deleted))
}

/// One object document per GUID (create-once), and a fetch for each not yet done: a page read
/// again finds its objects and re-sends only what is left. Returns the fetches sent.
async fn create_objects(
    services: &Services,
    source_name: &str,
    job_id: &str,
    documents: Vec<Gathered>,
) -> Result<usize, PipelineError> {
    let store = services.store.as_ref();
    let mut sent = 0;
    let mut documents = documents.into_iter().peekable();
    // A few hundred at a time: a listing page may be a whole folder of any length.
    while documents.peek().is_some() {
        let mut objects: Vec<HarvestObject> = documents
            .by_ref()
            .take(OBJECTS_AT_ONCE)
            .map(|doc| new_object(source_name, doc))
            .collect();
        let unchanged = super::listed::unchanged_by_lines(store, source_name, &objects).await?;
        for (object, unchanged) in objects.iter_mut().zip(unchanged) {
            if unchanged {
                object.outcome = Some(Outcome::Unchanged);
            }
        }
        let pending: Vec<Option<String>> = futures::stream::iter(objects)
            .map(|object| create_object(store, source_name, job_id, object))
            .buffer_unordered(64)
            .try_collect()
            .await?;
        let bodies: Vec<String> = pending
            .into_iter()
            .flatten()
            .map(|id| Message::for_object(Kind::Fetch, source_name, job_id, &id).body())
            .collect();
        sent += bodies.len();
        services
            .queues
            .get(crate::queue::QueueName::Fetch)?
            .send_batch(bodies)
            .await?;
    }
    Ok(sent)
}

/// Documents a gather weighs and writes at once.
const OBJECTS_AT_ONCE: usize = 500;

/// Why a gather of `found` documents, after a last completed gather of `last`, must delete
/// nothing; `None` when it is evidence enough.
fn shrink_refusal(found: u64, last: u64, threshold: f64, allowed: bool) -> Option<String> {
    if allowed || threshold <= 0.0 {
        return None;
    }
    let accept = "accept a real shrink with `sheaf run-test NAME --allow-shrink` or the \
        source's config.shrink_threshold";
    if found == 0 {
        return Some(format!(
            "the source lists no documents; nothing is deleted ({accept})"
        ));
    }
    if (found as f64) < threshold * last as f64 {
        return Some(format!(
            "the source lists {found} documents, fewer than {:.0}% of the {last} of the last \
             completed gather; nothing is deleted ({accept})",
            threshold * 100.0
        ));
    }
    None
}

/// Records a gather error in the job (once) and the harvest log; `finish` ends the job there
/// (nothing was gathered to work on). The check finishes a job that has objects, and deletes
/// nothing after a gather error.
async fn record_gather_error(
    services: &Services,
    job: &Job,
    log: String,
    message: String,
    url: Option<String>,
    finish: bool,
) -> Result<(), PipelineError> {
    let store = services.store.as_ref();
    let (mut recorded, mut finished) = (false, false);
    let job = update_job(store, &job.source, &job.id, |job| {
        // The closure runs again when another writer won: only the last run counts.
        (recorded, finished) = (false, false);
        if job.status.is_done() || job.gather_errors.iter().any(|e| e.message == message) {
            return false;
        }
        recorded = true;
        job.gather_errors.push(ErrorEntry {
            message: message.clone(),
            original_url: url.clone(),
        });
        if finish {
            job.status = JobStatus::Finished;
            job.finished = Some(now());
            job.owner_notice = super::owner_notice::on_ending(job);
            finished = true;
        }
        true
    })
    .await?;
    // Logged and mailed by the delivery that recorded it, once.
    if recorded {
        crate::harvest_log::log(store, "ERROR", log).await;
    }
    if finished {
        super::owner_notice::try_deliver(services, &job).await;
    }
    Ok(())
}

/// The object a gathered document starts as.
fn new_object(source_name: &str, doc: Gathered) -> HarvestObject {
    HarvestObject {
        id: keys::object_id(&doc.guid),
        waf_key: format!("{}{}", keys::waf_prefix(source_name), doc.waf_name),
        // Kept already (a re-import): the fetch hands it straight to the import.
        sha256: doc.kept_sha256,
        guid: doc.guid,
        url: doc.url,
        etag: None,
        last_modified: None,
        planned: None,
        outcome: None,
        error: None,
        record_id: None,
        listed: doc.listed,
        settled_entry: None,
    }
}

/// Creates a gathered document's object once; `Some(id)` when it still needs its fetch. One
/// unchanged by its listing line is created ended, with its done marker.
async fn create_object(
    store: &dyn crate::store::ObjectStore,
    source_name: &str,
    job_id: &str,
    object: HarvestObject,
) -> Result<Option<String>, PipelineError> {
    let id = object.id.clone();
    let key = keys::job_object(source_name, job_id, &id);
    // The object, then its marker when it is ended already.
    let mut steps = vec![vec![Write::json(&key, &object, PutMode::Create)?]];
    if let Some(outcome) = object.outcome {
        steps.push(vec![done_marker(source_name, job_id, &id, outcome)]);
    }
    let outcome = match store.write_in_order(steps).await {
        Ok(_) => return Ok(object.outcome.is_none().then_some(id)),
        Err(StoreError::Precondition(refused)) if refused == key => {
            // A page read again: the object as a delivery before left it.
            let existing = get_json::<HarvestObject>(store, &key).await?;
            existing.and_then(|(o, _)| o.outcome)
        }
        Err(e) => return Err(PipelineError::from(e)),
    };
    match outcome {
        None => Ok(Some(id)),
        Some(outcome) => {
            super::objects::mark_done(store, source_name, job_id, &id, outcome).await?;
            Ok(None)
        }
    }
}

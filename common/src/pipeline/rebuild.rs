//! Rebuilding the catalogue from the central WAF (MET Norway's catalog-rebuilder): every kept
//! document of every source imported again, the records no document backs removed, and the
//! search index made to hold exactly the records. One at a time: a second start while one runs
//! is refused with the running one, unless that one has shown no progress for an hour (its
//! process died). The catalogue keeps answering meanwhile (records are rewritten in place, the
//! index is never emptied). `POST /api/catalog/rebuild` claims it and sends it on the rebuild
//! queue, whose worker (`serve`'s locally, the rebuild function on AWS) runs it in steps: a
//! re-import job per source through the pipeline's queues, then the finish. `sheaf catalog
//! rebuild` runs it in the process (`run_rebuild`). Its progress and result are `catalog/rebuild/state.json`; its report
//! (each document, its outcome and reason) is `catalog/rebuild/report.json`.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::PipelineError;
use super::jobs::JobOptions;
use super::records::{Marker, delete_record};
use crate::domain::job::{HarvestObject, Job, JobStats};
use crate::domain::keys;
use crate::domain::now;
use crate::domain::record::Record;
use crate::queue::QueueName;
use crate::services::Services;
use crate::store::{Pages, PutMode, StoreError, get_json, put_json};

pub const REBUILD_STATE: &str = "catalog/rebuild/state.json";
pub const REBUILD_REPORT: &str = "catalog/rebuild/report.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RebuildStatus {
    Running,
    Finished,
    Failed,
}

/// A rebuild's progress, then its result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RebuildState {
    pub id: String,
    pub status: RebuildStatus,
    pub started: String,
    pub finished: Option<String>,
    /// Sources imported again so far, of `sources_total`.
    pub sources_done: u64,
    pub sources_total: u64,
    /// The documents' outcomes, summed over the sources.
    pub stats: JobStats,
    /// Records removed because no document backs them.
    pub orphans_removed: u64,
    /// Records sent to the index's writer at the end.
    pub indexed: u64,
    pub error: Option<String>,
    /// When it last wrote its progress: a running rebuild silent for an hour is abandoned.
    #[serde(default)]
    pub updated: Option<String>,
    /// Run from its queue: the re-import job of each source, through the pipeline's queues.
    #[serde(default)]
    pub jobs: Vec<RebuildJob>,
    /// Sources whose re-import waits for a job of theirs still running.
    #[serde(default)]
    pub waiting: Vec<String>,
}

/// A source's re-import job of a rebuild.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RebuildJob {
    pub source: String,
    pub job: String,
}

/// A running rebuild without progress for this long died with its process.
const ABANDONED_AFTER: chrono::TimeDelta = chrono::TimeDelta::hours(1);

impl RebuildState {
    fn abandoned(&self) -> bool {
        let last = self.updated.as_deref().unwrap_or(&self.started);
        chrono::DateTime::parse_from_rfc3339(last)
            .is_ok_and(|t| chrono::Utc::now().signed_duration_since(t) > ABANDONED_AFTER)
    }
}

pub const MESSAGE_KIND: &str = "rebuild";

/// The rebuild to run, on the rebuild queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RebuildMessage {
    pub kind: String,
    pub id: String,
}

/// Hands a claimed rebuild to the rebuild queue's worker; false when this process has no
/// rebuild queue (the caller runs it itself, or says where it runs).
pub async fn send_rebuild(
    services: &Services,
    state: &RebuildState,
) -> Result<bool, PipelineError> {
    let Ok(queue) = services.queues.get(QueueName::Rebuild) else {
        return Ok(false);
    };
    let body = serde_json::to_string(&RebuildMessage {
        kind: MESSAGE_KIND.into(),
        id: state.id.clone(),
    })
    .expect("a message always serialises");
    queue.send(body, Duration::ZERO).await?;
    Ok(true)
}

/// Takes the rebuild a message names one step on, if it is still the one running: the first
/// starts a re-import job for every active source (through the pipeline's queues, so no
/// step outlasts a function's time), each later one looks at the jobs, and once all have
/// ended the rebuild finishes; until then the message comes back after the check delay. A
/// redelivery after it ended, or a message of a rebuild since replaced, does nothing.
pub(crate) async fn handle_message(
    services: &Services,
    message: &RebuildMessage,
) -> Result<(), PipelineError> {
    let mut state = match rebuild_state(services).await? {
        Some(state) if state.id == message.id && state.status == RebuildStatus::Running => state,
        _ => {
            tracing::info!(rebuild = %message.id, "rebuild already ended or replaced");
            return Ok(());
        }
    };
    if state.sources_total == 0 && state.jobs.is_empty() && state.waiting.is_empty() {
        let sources = crate::sources::list_sources(services.store.as_ref(), false).await?;
        state.waiting = sources.into_iter().map(|s| s.name).collect();
        state.sources_total = state.waiting.len() as u64;
    }
    let options = JobOptions {
        reimport: true,
        ..JobOptions::default()
    };
    let mut still_waiting = Vec::new();
    for source in std::mem::take(&mut state.waiting) {
        match super::start_job_with(services, &source, options).await {
            Ok(job) => state.jobs.push(RebuildJob {
                source,
                job: job.id,
            }),
            // A job of its own is running: its re-import starts when that one has ended.
            Err(PipelineError::Conflict(_)) => still_waiting.push(source),
            Err(e) => return Err(e),
        }
    }
    state.waiting = still_waiting;
    let mut ended = Vec::new();
    for j in &state.jobs {
        let job = super::get_job(services.store.as_ref(), &j.source, &j.job).await?;
        if job.status.is_done() {
            ended.push(job);
        }
    }
    state.sources_done = ended.len() as u64;
    save(services, &mut state).await?;
    if !state.waiting.is_empty() || ended.len() < state.jobs.len() {
        let again = serde_json::to_string(message).expect("a message always serialises");
        let delay = services.settings.check_delay.min(Duration::from_secs(900));
        services
            .queues
            .get(QueueName::Rebuild)?
            .send(again, delay)
            .await?;
        return Ok(());
    }
    let mut report = Vec::new();
    for job in &ended {
        add_stats(&mut state.stats, &job.stats);
        report.extend(job_report(services, job).await?);
    }
    let result = finish(services, &mut state, report).await;
    end(services, state, result).await?;
    Ok(())
}

async fn save(services: &Services, state: &mut RebuildState) -> Result<(), PipelineError> {
    state.updated = Some(now());
    put_json(
        services.store.as_ref(),
        REBUILD_STATE,
        &*state,
        PutMode::Overwrite,
    )
    .await?;
    Ok(())
}

/// One line of the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportEntry {
    pub source: String,
    /// The document's key in the central WAF, or the record's id for a removed orphan.
    pub document: String,
    pub original_url: Option<String>,
    /// `added`, `updated`, `unchanged`, `errored`, or `removed` (an orphan record).
    pub outcome: String,
    pub reason: Option<String>,
}

/// Claims the rebuild; refused (naming the running one) while another runs.
pub async fn start_rebuild(services: &Services) -> Result<RebuildState, PipelineError> {
    let store = services.store.as_ref();
    let state = RebuildState {
        id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
        status: RebuildStatus::Running,
        started: now(),
        finished: None,
        sources_done: 0,
        sources_total: 0,
        stats: JobStats::default(),
        orphans_removed: 0,
        indexed: 0,
        error: None,
        updated: None,
        jobs: Vec::new(),
        waiting: Vec::new(),
    };
    match get_json::<RebuildState>(store, REBUILD_STATE).await? {
        Some((running, _)) if running.status == RebuildStatus::Running && !running.abandoned() => {
            Err(PipelineError::Conflict(format!(
                "rebuild {} is running since {}",
                running.id, running.started
            )))
        }
        Some((_, etag)) => {
            match put_json(store, REBUILD_STATE, &state, PutMode::Update(etag)).await {
                Ok(_) => Ok(state),
                Err(StoreError::Precondition(_)) => Err(PipelineError::Conflict(
                    "another rebuild started at the same moment".into(),
                )),
                Err(e) => Err(e.into()),
            }
        }
        None => match put_json(store, REBUILD_STATE, &state, PutMode::Create).await {
            Ok(_) => Ok(state),
            Err(StoreError::Precondition(_)) => Err(PipelineError::Conflict(
                "another rebuild started at the same moment".into(),
            )),
            Err(e) => Err(e.into()),
        },
    }
}

pub async fn rebuild_state(services: &Services) -> Result<Option<RebuildState>, PipelineError> {
    Ok(
        get_json::<RebuildState>(services.store.as_ref(), REBUILD_STATE)
            .await?
            .map(|(s, _)| s),
    )
}

pub async fn rebuild_report(services: &Services) -> Result<Vec<ReportEntry>, PipelineError> {
    get_json::<Vec<ReportEntry>>(services.store.as_ref(), REBUILD_REPORT)
        .await?
        .map(|(r, _)| r)
        .ok_or_else(|| PipelineError::NotFound("a rebuild report".into()))
}

/// Runs a claimed rebuild to its end, writing its progress as it goes; its failure is kept in
/// its state.
pub async fn run_rebuild(
    services: &Services,
    mut state: RebuildState,
) -> Result<RebuildState, PipelineError> {
    let result = rebuild_steps(services, &mut state).await;
    end(services, state, result).await
}

/// Writes the rebuild's end: finished, or failed with the reason.
async fn end(
    services: &Services,
    mut state: RebuildState,
    result: Result<(), PipelineError>,
) -> Result<RebuildState, PipelineError> {
    state.finished = Some(now());
    match result {
        Ok(()) => state.status = RebuildStatus::Finished,
        Err(e) => {
            state.status = RebuildStatus::Failed;
            state.error = Some(e.to_string());
        }
    }
    save(services, &mut state).await?;
    Ok(state)
}

async fn rebuild_steps(services: &Services, state: &mut RebuildState) -> Result<(), PipelineError> {
    let store = services.store.as_ref();
    // Active sources are imported again; every source's records are checked for orphans.
    let active = crate::sources::list_sources(store, false).await?;
    state.sources_total = active.len() as u64;
    save(services, state).await?;
    let mut report = Vec::new();
    let options = JobOptions {
        reimport: true,
        ..JobOptions::default()
    };
    for source in &active {
        let job = super::run_test_with(
            services,
            &source.name,
            options,
            &|_: u64, _: Option<u64>| {},
        )
        .await?;
        add_stats(&mut state.stats, &job.stats);
        report.extend(job_report(services, &job).await?);
        state.sources_done += 1;
        save(services, state).await?;
    }
    finish(services, state, report).await
}

/// After the re-imports: the records no document backs removed, the report written, the
/// index told to hold exactly the records.
async fn finish(
    services: &Services,
    state: &mut RebuildState,
    mut report: Vec<ReportEntry>,
) -> Result<(), PipelineError> {
    let store = services.store.as_ref();
    let sources = crate::sources::list_sources(store, true).await?;
    // Records no document backs: a marker whose document's state names another record, and
    // a record whose source holds no marker for it.
    for source in &sources {
        let (_, orphans) = super::integrity::orphan_records(services, &source.name).await?;
        for id_key in orphans {
            delete_record(services, &source.name, &id_key).await?;
            report.push(removed(&source.name, &id_key));
            state.orphans_removed += 1;
        }
    }
    let mut pages = Pages::new(store, keys::RECORDS);
    while let Some(entries) = pages.next().await? {
        // Read 16 at a time: a catalogue of 100,000 records is read within a function's time.
        let unmarked: Vec<Option<(String, String)>> = futures::stream::iter(entries)
            .filter(|e| std::future::ready(e.key.ends_with(".json")))
            .map(|entry| async move {
                let Some((record, _)) = get_json::<Record>(store, &entry.key).await? else {
                    return Ok::<_, PipelineError>(None);
                };
                let id_key = keys::id_key(&record.metadata.id);
                let marker = keys::record_marker(&record.source, &id_key);
                let marked = get_json::<Marker>(store, &marker).await?.is_some();
                Ok((!marked).then_some((record.source, id_key)))
            })
            .buffered(16)
            .try_collect()
            .await?;
        for (source, id_key) in unmarked.into_iter().flatten() {
            delete_record(services, &source, &id_key).await?;
            report.push(removed(&source, &id_key));
            state.orphans_removed += 1;
        }
    }
    put_json(store, REBUILD_REPORT, &report, PutMode::Overwrite).await?;
    // The records now stand as the WAF says: the index is made to hold exactly them, by its
    // writer (applied here when this process is it).
    super::index::drain(services).await?;
    state.indexed = super::index::reindex(services).await?;
    super::index::drain(services).await?;
    Ok(())
}

fn removed(source: &str, id_key: &str) -> ReportEntry {
    ReportEntry {
        source: source.to_string(),
        document: id_key.to_string(),
        original_url: None,
        outcome: "removed".into(),
        reason: Some("no document of the source backs this record".into()),
    }
}

fn add_stats(total: &mut JobStats, more: &JobStats) {
    total.added += more.added;
    total.updated += more.updated;
    total.unchanged += more.unchanged;
    total.deleted += more.deleted;
    total.errored += more.errored;
}

/// Each document of a re-import job with its outcome.
async fn job_report(services: &Services, job: &Job) -> Result<Vec<ReportEntry>, PipelineError> {
    let store = services.store.as_ref();
    let prefix = format!("{}{}/objects/", keys::job_works(&job.source), job.id);
    let mut out = Vec::new();
    let mut pages = Pages::new(store, &prefix);
    while let Some(entries) = pages.next().await? {
        for entry in entries {
            if let Some((object, _)) = get_json::<HarvestObject>(store, &entry.key).await? {
                out.push(ReportEntry {
                    source: job.source.clone(),
                    document: object.waf_key,
                    original_url: Some(object.url),
                    outcome: object
                        .outcome
                        .map_or("unfinished", |o| o.as_str())
                        .to_string(),
                    reason: object.error,
                });
            }
        }
    }
    Ok(out)
}

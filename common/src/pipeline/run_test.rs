//! `run-test`: one source harvested synchronously in this process (ckanext-harvest's
//! `run_test`), through the same handlers the queues feed, with in-memory queues.

use std::sync::Arc;

use super::{JobOptions, Kind, Message, PipelineError, get_job, handle, start_job_with};
use crate::domain::job::Job;
use crate::queue::{MAX_RECEIVE_COUNT, MemoryQueue, QueueName};
use crate::services::Services;

/// Progress of a synchronous run: objects done out of those gathered (once known).
pub trait Progress: Send + Sync {
    fn update(&self, done: u64, total: Option<u64>);
}

impl<F: Fn(u64, Option<u64>) + Send + Sync> Progress for F {
    fn update(&self, done: u64, total: Option<u64>) {
        self(done, total)
    }
}

async fn run(services: &Services, body: String) -> Result<(), PipelineError> {
    let message: Message =
        serde_json::from_str(&body).map_err(|e| PipelineError::Message(e.to_string()))?;
    let mut attempt = 1;
    loop {
        match handle(services, &message, attempt).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < MAX_RECEIVE_COUNT => {
                tracing::warn!(error = %e, attempt, "retrying");
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// How long the indexer waits between drains: long enough that a commit takes in about a
/// thousand records (a commit costs tens of milliseconds however few it holds).
const INDEX_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Applies the waiting record changes to the index now and then until `stop` says so,
/// never stopping within a drain (one stopped there would leave its messages hidden), or
/// until it finds that another process (`serve`) writes the index: that one applies them.
async fn index_until(
    services: Services,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), PipelineError> {
    while !*stop.borrow() {
        if super::index::drain_unless_busy(&services).await?.busy {
            return Ok(());
        }
        // Woken at once by the stop, or on the stop's sender going.
        let _ = tokio::time::timeout(INDEX_EVERY, stop.changed()).await;
    }
    Ok(())
}

/// Messages handled at once: enough to overlap network waits and the store's commits (each
/// document's writes wait for a group commit in turn).
const CONCURRENCY: usize = 64;

/// How often the progress is counted.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

async fn done_count(services: &Services, source: &str, job: &str) -> Result<u64, PipelineError> {
    Ok(super::check::tally(services.store.as_ref(), source, job)
        .await?
        .done)
}

pub async fn run_test(
    services: &Services,
    source: &str,
    progress: &dyn Progress,
) -> Result<Job, PipelineError> {
    run_test_with(services, source, JobOptions::default(), progress).await
}

pub async fn run_test_with(
    services: &Services,
    source: &str,
    options: JobOptions,
    progress: &dyn Progress,
) -> Result<Job, PipelineError> {
    let gather = Arc::new(MemoryQueue::new());
    let fetch = Arc::new(MemoryQueue::new());
    let import = Arc::new(MemoryQueue::new());
    // The stages run here; record changes go on the process's own index queue, applied by
    // an indexer task beside them (or by `serve`'s indexer when it holds the index).
    let mut queues = services
        .queues
        .clone()
        .with(QueueName::Gather, gather.clone())
        .with(QueueName::Fetch, fetch.clone())
        .with(QueueName::Import, import.clone());
    // Against a bucket alone (no queue of the stack's) the index would take each record in a
    // commit of its own, about a dozen S3 requests a record: the changes wait in memory for
    // the indexer's next drain instead.
    let index_in_memory = services
        .queues
        .get(QueueName::Index)
        .is_err()
        .then(|| Arc::new(MemoryQueue::new()));
    if let Some(index) = &index_in_memory {
        queues = queues.with(QueueName::Index, index.clone());
    }
    let local = Services {
        queues,
        ..services.clone()
    };
    let job = start_job_with(&local, source, options).await?;
    // The index takes the records in as they come, as `serve`'s indexer would, so that its
    // commits overlap the stages instead of following them.
    let (stop_indexing, indexing) = tokio::sync::watch::channel(false);
    let mut indexer = tokio::task::JoinSet::new();
    indexer.spawn(index_until(local.clone(), indexing));
    progress.update(0, None);
    let mut counted = std::time::Instant::now();
    let mut count_cost = std::time::Duration::ZERO;
    loop {
        // One listing page at a time (the gather runs as if its deadline were now, so it sends
        // itself again after each page), then that page's fetches and imports: only a page of
        // messages waits in memory. Checks wait until the fetches and imports they count are
        // done.
        let mut checks = Vec::new();
        // Whether this round ran anything but checks.
        let mut worked = false;
        while let Some(body) = gather.pop() {
            let message: Message =
                serde_json::from_str(&body).map_err(|e| PipelineError::Message(e.to_string()))?;
            if message.kind == Kind::CheckJob {
                checks.push(body);
            } else {
                crate::deadline::scope(Some(std::time::Instant::now()), run(&local, body)).await?;
                worked = true;
                break;
            }
        }
        let total = get_job(local.store.as_ref(), source, &job.id)
            .await?
            .object_count;
        // Fetches and imports run CONCURRENCY at once, as the queue workers would, each a task
        // of its own (so parsing runs on every core), a new one started as soon as one ends (a
        // fetch's import joins the queue it pops from); dropping the set (on an error) stops
        // the rest. Progress is counted (a listing of the done markers) now and then, not after
        // each message: counting that often made a large harvest quadratic.
        let mut running = tokio::task::JoinSet::new();
        loop {
            while running.len() < CONCURRENCY {
                match fetch.pop().or_else(|| import.pop()) {
                    Some(body) => {
                        let local = local.clone();
                        running.spawn(async move { run(&local, body).await });
                        worked = true;
                    }
                    None => break,
                }
            }
            match running.join_next().await {
                Some(Ok(result)) => result?,
                Some(Err(e)) => match e.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    Err(e) => {
                        return Err(PipelineError::Conflict(format!(
                            "a stage was cancelled: {e}"
                        )));
                    }
                },
                None => break,
            }
            // Counting lists the done markers: at most a tenth of the time goes to it.
            if counted.elapsed() >= PROGRESS_EVERY.max(count_cost * 10) {
                let started = std::time::Instant::now();
                progress.update(done_count(&local, source, &job.id).await?, total);
                count_cost = started.elapsed();
                counted = std::time::Instant::now();
            }
        }
        for body in checks {
            run(&local, body).await?;
        }
        let current = get_job(local.store.as_ref(), source, &job.id).await?;
        if current.status.is_done() {
            progress.update(current.done_count, current.object_count);
            // Stopped between two drains (one stopped within would hide its messages).
            let _ = stop_indexing.send(true);
            if let Some(indexed) = indexer.join_next().await {
                indexed
                    .map_err(|e| PipelineError::Conflict(format!("the indexer failed: {e}")))??;
            }
            super::index::drain(&local).await?;
            if let Some(index) = &index_in_memory
                && index.depth_now() > 0
            {
                return Err(PipelineError::Conflict(
                    "another process writes the search index: this run's record changes are \
                     not in it (`sheaf catalog rebuild` puts them in)"
                        .into(),
                ));
            }
            return Ok(current);
        }
        // Every fetch and import has run to its end, each retried in place: a check that
        // still finds objects not done will find the same on every round after (it only
        // sends itself again), so the run ends now rather than when the job stalls out.
        let idle = gather.depth_now() == 0 && fetch.depth_now() == 0 && import.depth_now() == 0;
        if idle || !worked {
            return Err(PipelineError::Conflict(format!(
                "job {} has nothing left to run but is not finished ({} of {} documents done)",
                job.id,
                current.done_count,
                current
                    .object_count
                    .map_or_else(|| "?".to_string(), |n| n.to_string()),
            )));
        }
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::catalog::{SearchIndex, TantivyIndex};
    use crate::fetch::{AddressPolicy, ReqwestFetcher};
    use crate::mail::OutboxMailer;
    use crate::pipeline::IndexMessage;
    use crate::queue::{LocalQueue, Queue, QueueName, Queues};
    use crate::services::Settings;
    use crate::store::LocalStore;

    /// Beside another writer of the index (`serve`'s indexer), the indexer leaves the waiting
    /// changes to it after one look: each is taken up once, not every 250 ms until the
    /// dead-letter queue takes it (the fifth time).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_indexer_leaves_the_changes_to_another_writer_of_the_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index_dir = dir.path().join("index");
        // The other writer takes the index's writer lock with its first change and keeps it.
        let other = TantivyIndex::open(&index_dir).expect("index");
        other
            .apply(Vec::new(), vec!["none".into()])
            .await
            .expect("the other writer's change");
        let queues_dir = dir.path().join("queues");
        let queue = Arc::new(LocalQueue::open(&queues_dir, "index").expect("queue"));
        let services = Services {
            store: Arc::new(
                LocalStore::open(&dir.path().join("store"), "http://127.0.0.1").expect("store"),
            ),
            queues: Queues::new().with(QueueName::Index, queue.clone()),
            mailer: Arc::new(OutboxMailer::new(dir.path().join("outbox"))),
            fetcher: Arc::new(
                ReqwestFetcher::new(AddressPolicy::PublicOnly, Duration::from_secs(5))
                    .expect("fetcher"),
            ),
            index: Arc::new(TantivyIndex::open(&index_dir).expect("index")),
            settings: Settings::default(),
        };
        let change = IndexMessage {
            kind: crate::pipeline::INDEX_MESSAGE_KIND.into(),
            keys: vec!["some-record".into()],
        };
        let body = serde_json::to_string(&change).expect("json");
        queue.send(body, Duration::ZERO).await.expect("send");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let indexer = tokio::spawn(index_until(services, stopped));
        // Five of its periods.
        tokio::time::sleep(INDEX_EVERY * 5).await;
        // (It may have ended already: then nobody listens.)
        let _ = stop.send(true);
        indexer.await.expect("indexer").expect("no error");
        let waiting = queue
            .receive(10, Duration::from_secs(60))
            .await
            .expect("receive");
        assert_eq!(waiting.len(), 1, "the change waits for the other writer");
        assert_eq!(
            waiting[0].receive_count, 2,
            "taken up once by the indexer, then here"
        );
    }
}

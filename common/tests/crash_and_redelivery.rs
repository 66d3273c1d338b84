//! Every stage is idempotent: a harvest whose handler dies at any write and is delivered
//! again, whose every message is delivered twice, or whose every message is handled by two
//! deliveries at the same time (on the local store and on S3 in moto), ends in exactly the
//! state of a clean run; and `run-test` ends with an error as soon as its job cannot finish.

mod support;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use common::domain::job::JobStats;
use common::pipeline::{self, Kind, Message, get_job};
use common::queue::{MemoryQueue, QueueName, Queues};
use common::services::Services;
use common::sources::add_source;
use common::store::{
    ListEntry, MultipartUpload, Object, ObjectStore, PutMode, StoreError, UploadState,
};
use sha2::Digest;
use support::*;

/// A store that fails every write once its budget of writes is spent, as if the process had
/// died at that line; `heal` lets writes through again (the redelivery's fresh process).
/// Puts of the keys `lost` picks answer success and write nothing.
struct CrashingStore {
    inner: Arc<dyn ObjectStore>,
    budget: AtomicI64,
    writes: AtomicU64,
    lost: fn(&str) -> bool,
}

impl CrashingStore {
    fn new(inner: Arc<dyn ObjectStore>) -> Self {
        CrashingStore {
            inner,
            budget: AtomicI64::new(-1),
            writes: AtomicU64::new(0),
            lost: |_| false,
        }
    }

    fn spend(&self, key: &str) -> Result<(), StoreError> {
        if self.budget.load(Ordering::SeqCst) == 0 {
            return Err(StoreError::io(key, "injected crash"));
        }
        self.budget.fetch_sub(1, Ordering::SeqCst);
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn heal(&self) {
        self.budget.store(-1, Ordering::SeqCst);
    }
}

#[async_trait]
impl ObjectStore for CrashingStore {
    async fn get(&self, key: &str) -> Result<Object, StoreError> {
        self.inner.get(key).await
    }
    async fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        mode: PutMode,
    ) -> Result<String, StoreError> {
        self.spend(key)?;
        if (self.lost)(key) {
            return Ok(format!("\"lost-{}\"", self.writes.load(Ordering::SeqCst)));
        }
        self.inner.put(key, body, content_type, mode).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListEntry>, StoreError> {
        self.inner.list_page(prefix, start_after, limit).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.spend(key)?;
        self.inner.delete(key).await
    }
    async fn start_multipart(
        &self,
        key: &str,
        content_type: &str,
    ) -> Result<Box<dyn MultipartUpload>, StoreError> {
        self.inner.start_multipart(key, content_type).await
    }
    async fn resume_multipart(
        &self,
        key: &str,
        state: &UploadState,
    ) -> Result<Box<dyn MultipartUpload>, StoreError> {
        self.inner.resume_multipart(key, state).await
    }
    async fn presign_get(&self, key: &str, expires_in: Duration) -> Result<String, StoreError> {
        self.inner.presign_get(key, expires_in).await
    }
}

/// What a harvest leaves: the job's counts, and every record, marker and kept document
/// (records without their harvest time, which differs between runs).
#[derive(Debug, PartialEq)]
struct Outcome {
    stats: JobStats,
    errors: usize,
    objects: BTreeMap<String, String>,
}

async fn snapshot(store: &dyn ObjectStore, stats: JobStats, errors: usize) -> Outcome {
    let mut objects = BTreeMap::new();
    for prefix in ["catalog/", "waf/", "state/"] {
        for entry in store.list(prefix).await.expect("list") {
            let body = store.get(&entry.key).await.expect("get").body;
            let text = match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(mut v) => {
                    if let Some(o) = v.as_object_mut() {
                        o.remove("harvested");
                        o.remove("rejected");
                        o.remove("job");
                        // Whether a listing line settled depends on the files' age.
                        o.remove("listed");
                    }
                    v.to_string()
                }
                Err(_) => String::from_utf8_lossy(&body).into_owned(),
            };
            // Long documents by their digest, so a failure prints the difference readably.
            let text = if text.len() > 400 {
                let digest = hex::encode(sha2::Sha256::digest(text.as_bytes()));
                format!("{} bytes, sha256 {digest}", text.len())
            } else {
                text
            };
            objects.insert(entry.key, text);
        }
    }
    Outcome {
        stats,
        errors,
        objects,
    }
}

/// Gather invocations run by `Delivery::ShortOfTime` (one test uses it).
static SHORT_GATHERS: AtomicU64 = AtomicU64::new(0);

/// How each message reaches its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Once,
    /// Delivered again after the first delivery ended.
    Twice,
    /// Two deliveries handled at the same time, as two Lambda instances can.
    Racing,
    /// Once, by an invocation a second from its deadline: a gather reads one listing page
    /// and goes on in a following invocation.
    ShortOfTime,
}

/// Runs one harvest by hand over `base`'s store: each message is handled as `delivery` says,
/// a failed handler's message is delivered again after the store heals.
async fn run(
    waf_url: &str,
    base: Services,
    crash_after: Option<i64>,
    delivery: Delivery,
) -> (Outcome, u64) {
    let crashing = Arc::new(CrashingStore::new(base.store.clone()));
    let (gather, fetch, import) = (
        Arc::new(MemoryQueue::new()),
        Arc::new(MemoryQueue::new()),
        Arc::new(MemoryQueue::new()),
    );
    let services = Services {
        store: crashing.clone(),
        queues: Queues::new()
            .with(QueueName::Gather, gather.clone())
            .with(QueueName::Fetch, fetch.clone())
            .with(QueueName::Import, import.clone())
            .with(QueueName::Index, Arc::new(MemoryQueue::new())),
        ..base
    };
    add_source(
        services.store.as_ref(),
        support::waf_source("crash", waf_url),
    )
    .await
    .expect("source");
    let job = pipeline::start_job(&services, "crash").await.expect("job");
    crashing.writes.store(0, Ordering::SeqCst);
    if let Some(k) = crash_after {
        crashing.budget.store(k, Ordering::SeqCst);
    }
    let mut redeliver: VecDeque<String> = VecDeque::new();
    for _ in 0..10_000 {
        let next = redeliver
            .pop_front()
            .or_else(|| fetch.pop())
            .or_else(|| import.pop())
            .or_else(|| gather.pop());
        let Some(body) = next else { break };
        let message: Message = serde_json::from_str(&body).expect("message");
        let failed = match delivery {
            Delivery::Once => pipeline::handle(&services, &message, 1).await.is_err(),
            Delivery::ShortOfTime => {
                if message.kind == Kind::Gather {
                    SHORT_GATHERS.fetch_add(1, Ordering::SeqCst);
                }
                let deadline = std::time::Instant::now() + Duration::from_secs(1);
                common::deadline::scope(Some(deadline), pipeline::handle(&services, &message, 1))
                    .await
                    .is_err()
            }
            Delivery::Twice if message.kind != Kind::CheckJob => {
                pipeline::handle(&services, &message, 1).await.is_err()
                    || pipeline::handle(&services, &message, 1).await.is_err()
            }
            Delivery::Twice => pipeline::handle(&services, &message, 1).await.is_err(),
            Delivery::Racing => {
                let handlers = [(); 2].map(|_| {
                    let (services, message) = (services.clone(), message.clone());
                    tokio::spawn(async move { pipeline::handle(&services, &message, 1).await })
                });
                let mut failed = false;
                for handler in handlers {
                    failed |= handler.await.expect("handler").is_err();
                }
                failed
            }
        };
        if failed {
            crashing.heal();
            redeliver.push_back(body.clone());
        }
        let current = get_job(services.store.as_ref(), "crash", &job.id)
            .await
            .expect("job");
        if current.status.is_done()
            && redeliver.is_empty()
            && fetch.depth_now() == 0
            && import.depth_now() == 0
        {
            break;
        }
    }
    let done = get_job(services.store.as_ref(), "crash", &job.id)
        .await
        .expect("job");
    assert!(done.status.is_done(), "job finished: {done:?}");
    let writes = crashing.writes.load(Ordering::SeqCst);
    (
        snapshot(
            services.store.as_ref(),
            done.stats,
            done.object_errors.len(),
        )
        .await,
        writes,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_write_or_a_duplicate_delivery_changes_nothing() {
    let (_site, nginx) = small_waf();
    let url = nginx.url("waf/");

    let clean_dir = tempfile::tempdir().expect("tempdir");
    let (reference, writes) =
        run(&url, local_services(clean_dir.path()), None, Delivery::Once).await;
    assert_eq!(
        (reference.stats.added, reference.stats.errored),
        (2, 1),
        "{reference:?}"
    );
    assert!(
        writes > 10,
        "a harvest writes state as it goes ({writes} writes)"
    );

    let dup_dir = tempfile::tempdir().expect("tempdir");
    let (twice, _) = run(&url, local_services(dup_dir.path()), None, Delivery::Twice).await;
    assert_eq!(twice, reference, "every message delivered twice");

    for k in 0..writes as i64 {
        let dir = tempfile::tempdir().expect("tempdir");
        let (crashed, _) = run(&url, local_services(dir.path()), Some(k), Delivery::Once).await;
        assert_eq!(
            crashed, reference,
            "crash after {k} writes, then redelivery"
        );
    }
}

/// The three documents the idempotence tests harvest, served by nginx.
fn small_waf() -> (tempfile::TempDir, Nginx) {
    let site = tempfile::tempdir().expect("tempdir");
    let records = workspace_root().join("tests/records/waf");
    let waf = site.path().join("waf");
    std::fs::create_dir_all(waf.join("sub")).expect("mkdir");
    for (from, to) in [
        ("iso19139/glider-mission.xml", "glider.xml"),
        ("dublin-core/record-harbour-survey.xml", "sub/harbour.xml"),
        ("bad/no-title.xml", "no-title.xml"),
    ] {
        std::fs::copy(records.join(from), waf.join(to)).expect("copy");
    }
    let nginx = Nginx::serve(site.path());
    (site, nginx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gather_short_of_time_continues_page_by_page() {
    let (_site, nginx) = small_waf();
    let url = nginx.url("waf/");
    let clean_dir = tempfile::tempdir().expect("tempdir");
    let (reference, _) = run(&url, local_services(clean_dir.path()), None, Delivery::Once).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (paged, _) = run(
        &url,
        local_services(dir.path()),
        None,
        Delivery::ShortOfTime,
    )
    .await;
    assert_eq!(paged, reference);
    let store = local_services(dir.path()).store;
    let pages = store
        .list("job-work/crash/")
        .await
        .expect("list")
        .iter()
        .filter(|e| e.key.contains("/gathered/"))
        .count();
    assert_eq!(pages, 2, "waf/ and waf/sub/, a page each");
    assert_eq!(
        SHORT_GATHERS.load(Ordering::SeqCst),
        2,
        "the second page was read by a continuation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_deliveries_racing_end_as_one_on_the_local_store_and_on_s3() {
    let (_site, nginx) = small_waf();
    let url = nginx.url("waf/");
    let clean_dir = tempfile::tempdir().expect("tempdir");
    let (reference, _) = run(&url, local_services(clean_dir.path()), None, Delivery::Once).await;
    for round in 0..20 {
        let dir = tempfile::tempdir().expect("tempdir");
        let (raced, _) = run(&url, local_services(dir.path()), None, Delivery::Racing).await;
        assert_eq!(raced, reference, "local store, round {round}");
    }
    let moto = Moto::start();
    for round in 0..5 {
        let dir = tempfile::tempdir().expect("tempdir");
        let services = Services {
            store: Arc::new(moto.bucket(&format!("sheaf-race-{round}")).await),
            ..local_services(dir.path())
        };
        let (raced, _) = run(&url, services, None, Delivery::Racing).await;
        assert_eq!(raced, reference, "S3 on moto, round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_whose_identifier_changes_replaces_its_old_record() {
    let site = tempfile::tempdir().expect("tempdir");
    let waf = site.path().join("waf");
    std::fs::create_dir_all(&waf).expect("mkdir");
    let original = std::fs::read_to_string(
        workspace_root().join("tests/records/waf/iso19139/glider-mission.xml"),
    )
    .expect("record");
    std::fs::write(waf.join("glider.xml"), &original).expect("write");
    let nginx = Nginx::serve(site.path());
    let dir = tempfile::tempdir().expect("tempdir");
    let services = local_services(dir.path());
    add_source(
        services.store.as_ref(),
        support::waf_source("renamed", nginx.url("waf/")),
    )
    .await
    .expect("source");
    let quiet = |_: u64, _: Option<u64>| {};
    let first = pipeline::run_test(&services, "renamed", &quiet)
        .await
        .expect("job");
    assert_eq!(first.stats.added, 1);
    std::fs::write(
        waf.join("glider.xml"),
        original.replace("glider-2023-07", "glider-2023-07-v2"),
    )
    .expect("write");
    let second = pipeline::run_test(&services, "renamed", &quiet)
        .await
        .expect("job");
    assert_eq!(
        (second.stats.added, second.stats.deleted),
        (1, 0),
        "{second:?}"
    );
    let store = services.store.as_ref();
    assert!(
        common::catalog::get_record(store, "glider-2023-07-v2")
            .await
            .is_ok()
    );
    assert!(
        common::catalog::get_record(store, "glider-2023-07")
            .await
            .is_err(),
        "the old identifier's record is gone"
    );
}

/// A job whose objects are all worked on but not all counted (here the store loses the
/// markers of the added documents) can never finish: `run-test` says so as soon as it has
/// nothing left to run, with the count, rather than rerunning the job's check until the job
/// stalls out (it waited 586 s before failing so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_test_ends_at_once_when_its_job_cannot_finish() {
    let (_site, nginx) = small_waf();
    let dir = tempfile::tempdir().expect("tempdir");
    let base = local_services(dir.path());
    let losing = CrashingStore {
        lost: |key| key.contains("/done/") && key.ends_with("=added"),
        ..CrashingStore::new(base.store.clone())
    };
    let services = Services {
        store: Arc::new(losing),
        ..base
    };
    add_source(
        services.store.as_ref(),
        support::waf_source("counted", nginx.url("waf/")),
    )
    .await
    .expect("source");
    let quiet = |_: u64, _: Option<u64>| {};
    let ran = tokio::time::timeout(
        Duration::from_secs(60),
        pipeline::run_test(&services, "counted", &quiet),
    )
    .await
    .expect("run-test ends, not waiting for the job to stall");
    let error = ran
        .expect_err("a job that cannot finish is an error")
        .to_string();
    assert!(
        error.contains("nothing left to run") && error.contains("(1 of 3 documents done)"),
        "{error}"
    );
}

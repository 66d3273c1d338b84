//! The catalogue's integrity check and rebuild: after parts of the catalogue and of the search
//! index are deleted, corrupted or invented, the status says so, and a rebuild from the central
//! WAF gives back exactly the catalogue (records, rejections, search hits) of a clean harvest,
//! with a report of every document and of the orphan it removed. One rebuild at a time.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::catalog::{Hits, IndexError, Search, SearchIndex, SearchQuery, search};
use common::domain::keys;
use common::domain::record::Record;
use common::pipeline::{self, RebuildStatus};
use common::services::Services;
use common::sources::add_source;
use common::store::{PutMode, put_json};
use support::*;

const SOURCE: &str = "coast";

/// Every record as harvested, without the time it was harvested.
async fn records(services: &Services) -> BTreeMap<String, serde_json::Value> {
    pipeline::drain_index(services).await.expect("index");
    let page = search(
        services.index.as_ref(),
        &SearchQuery {
            page_size: Some(1000),
            ..SearchQuery::default()
        },
    )
    .await
    .expect("search");
    let mut out = BTreeMap::new();
    for r in page.records {
        let stored = common::catalog::get_record(services.store.as_ref(), &r.metadata.id)
            .await
            .expect("the record behind a hit");
        let mut value = serde_json::to_value(&stored).unwrap();
        value.as_object_mut().unwrap().remove("harvested");
        out.insert(r.metadata.id.clone(), value);
    }
    out
}

/// The index as it is, remembering the fewest records it held after any change.
struct Watched {
    inner: Arc<dyn SearchIndex>,
    lowest: Mutex<Option<u64>>,
}

#[async_trait::async_trait]
impl SearchIndex for Watched {
    async fn apply(&self, upserts: Vec<Record>, deletes: Vec<String>) -> Result<(), IndexError> {
        self.inner.apply(upserts, deletes).await?;
        let now = self.inner.count().await?;
        let mut lowest = self.lowest.lock().unwrap();
        *lowest = Some(lowest.map_or(now, |l| l.min(now)));
        Ok(())
    }
    async fn search(&self, search: &Search) -> Result<Hits, IndexError> {
        self.inner.search(search).await
    }
    async fn count(&self) -> Result<u64, IndexError> {
        self.inner.count().await
    }
    async fn holds(&self, keys: Vec<String>) -> Result<Vec<bool>, IndexError> {
        self.inner.holds(keys).await
    }
    async fn keys(&self) -> Result<Vec<String>, IndexError> {
        self.inner.keys().await
    }
}

async fn hits(services: &Services, q: &str) -> Vec<String> {
    let page = search(
        services.index.as_ref(),
        &SearchQuery {
            q: Some(q.into()),
            ..SearchQuery::default()
        },
    )
    .await
    .expect("search");
    page.records.into_iter().map(|r| r.metadata.id).collect()
}

#[tokio::test]
async fn a_rebuild_gives_back_the_catalogue_of_a_clean_harvest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = dir.path().join("site");
    copy_tree(
        &workspace_root().join("tests/records/waf"),
        &site.join("waf"),
    );
    let nginx = Nginx::serve(&site);
    let mut services = local_services(dir.path());
    let watched = Arc::new(Watched {
        inner: services.index.clone(),
        lowest: Mutex::new(None),
    });
    services.index = watched.clone();
    add_source(
        services.store.as_ref(),
        waf_source(SOURCE, nginx.url("/waf/")),
    )
    .await
    .expect("source");
    let job = pipeline::run_test(&services, SOURCE, &|_: u64, _: Option<u64>| {})
        .await
        .expect("harvest");
    assert!(
        job.stats.added > 5 && job.stats.errored > 5,
        "{:?}",
        job.stats
    );
    let clean = records(&services).await;
    let clean_hits = hits(&services, "seabed").await;
    assert!(!clean_hits.is_empty());
    let clean_rejected = pipeline::list_rejected(&services, Some(SOURCE), 1000, 0)
        .await
        .expect("rejected")
        .len();
    let status = pipeline::catalog_integrity(&services)
        .await
        .expect("status");
    assert!(status.consistent, "{status:?}");
    assert_eq!(status.sources[0].records, clean.len() as u64);
    assert_eq!(status.indexed, clean.len() as u64);

    // Break it: one record gone, one rewritten, an orphan invented in the store, and in the
    // index a record dropped and a ghost added.
    let store = services.store.as_ref();
    let ids: Vec<&String> = clean.keys().collect();
    let (gone, rewritten, unindexed) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    store
        .delete(&keys::record_json(&keys::id_key(&gone)))
        .await
        .unwrap();
    let mut changed: Record = common::catalog::get_record(store, &rewritten)
        .await
        .unwrap();
    changed.metadata.title = "Tampered".into();
    put_json(
        store,
        &keys::record_json(&keys::id_key(&rewritten)),
        &changed,
        PutMode::Overwrite,
    )
    .await
    .unwrap();
    let mut orphan = changed.clone();
    orphan.metadata.id = "invented-record".into();
    put_json(
        store,
        &keys::record_json("invented-record"),
        &orphan,
        PutMode::Overwrite,
    )
    .await
    .unwrap();
    put_json(
        store,
        &keys::record_marker(SOURCE, "invented-record"),
        &serde_json::json!({"guid": "http://nowhere.example/invented.xml"}),
        PutMode::Overwrite,
    )
    .await
    .unwrap();
    let mut ghost = changed.clone();
    ghost.metadata.id = "ghost-in-the-index".into();
    services
        .index
        .apply(vec![ghost], vec![keys::id_key(&unindexed)])
        .await
        .unwrap();

    let broken = pipeline::catalog_integrity(&services)
        .await
        .expect("status");
    assert!(!broken.consistent);
    let s = &broken.sources[0];
    assert_eq!((s.missing, s.orphans), (1, 1), "{s:?}");
    assert_eq!(s.orphan_records, ["invented-record"]);
    // Not indexed: the record dropped from the index and the invented one. Held by the index
    // with no record behind: the ghost and the record deleted from the store.
    assert_eq!((broken.unindexed, broken.ghosts), (2, 2), "{broken:?}");

    // One rebuild at a time.
    let started = pipeline::start_rebuild(&services).await.expect("start");
    let refused = pipeline::start_rebuild(&services).await.unwrap_err();
    assert!(refused.to_string().contains(&started.id), "{refused}");
    // The catalogue keeps answering: the index never holds fewer of the records it held
    // before than it did then (no emptying and filling again).
    let held = broken.indexed - broken.ghosts;
    *watched.lowest.lock().unwrap() = None;
    let done = pipeline::run_rebuild(&services, started)
        .await
        .expect("rebuild");
    let lowest = watched
        .lowest
        .lock()
        .unwrap()
        .expect("the rebuild changed the index");
    assert!(
        lowest >= held,
        "the index fell to {lowest} records of {held}"
    );
    assert_eq!(done.status, RebuildStatus::Finished, "{done:?}");
    assert_eq!(done.orphans_removed, 1);
    assert_eq!(done.indexed, clean.len() as u64);

    assert_eq!(records(&services).await, clean);
    assert_eq!(hits(&services, "seabed").await, clean_hits);
    assert!(hits(&services, "ghost").await.is_empty());
    assert_eq!(
        pipeline::list_rejected(&services, Some(SOURCE), 1000, 0)
            .await
            .unwrap()
            .len(),
        clean_rejected
    );
    let fixed = pipeline::catalog_integrity(&services)
        .await
        .expect("status");
    assert!(fixed.consistent, "{fixed:?}");

    // The report: every document with its outcome, and the orphan removed.
    let report = pipeline::rebuild_report(&services).await.expect("report");
    let outcome = |doc: &str| {
        report
            .iter()
            .find(|e| e.document.ends_with(doc))
            .map(|e| e.outcome.clone())
    };
    assert_eq!(outcome("invented-record").as_deref(), Some("removed"));
    assert_eq!(
        report.iter().filter(|e| e.outcome != "removed").count() as u64,
        job.object_count.unwrap(),
        "{report:?}"
    );
    assert!(
        report
            .iter()
            .any(|e| e.outcome == "errored" && e.reason.is_some())
    );
    // A second rebuild may start once the first has ended.
    pipeline::start_rebuild(&services)
        .await
        .expect("a new rebuild");
}

/// On AWS the API claims the rebuild and hands it to the rebuild function through its queue;
/// the function starts a re-import job per source through the pipeline's queues, comes back
/// until they have ended, then finishes it; a redelivery of the message after that does
/// nothing.
#[tokio::test]
async fn on_aws_the_api_hands_the_rebuild_to_the_rebuild_function() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use common::queue::QueueName;
    use common::worker::{BatchMessage, process_batch, run_queue_worker};
    use tower::ServiceExt;

    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let nginx = Nginx::serve(&workspace_root().join("tests/records"));
    let services = aws_services(&moto, dir.path()).await;
    add_source(
        services.store.as_ref(),
        waf_source(SOURCE, nginx.url("/waf/")),
    )
    .await
    .expect("source");
    pipeline::run_test(&services, SOURCE, &|_: u64, _: Option<u64>| {})
        .await
        .expect("harvest");
    let clean = records(&services).await;
    let gone = clean.keys().next().unwrap().clone();
    services
        .store
        .delete(&keys::record_json(&keys::id_key(&gone)))
        .await
        .unwrap();
    let broken = pipeline::catalog_integrity(&services).await.unwrap();
    assert_eq!(broken.sources[0].missing, 1, "{broken:?}");

    let app = common::http::router(common::http::AppState {
        services: services.clone(),
        api_token: Some("token".into()),
        read_token: None,
        local_store: None,
    });
    let post = || {
        Request::post("/api/catalog/rebuild")
            .header("authorization", "Bearer token")
            .body(Body::empty())
            .unwrap()
    };
    let accepted = app.clone().oneshot(post()).await.unwrap();
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let body = axum::body::to_bytes(accepted.into_body(), 1 << 20)
        .await
        .unwrap();
    let started: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let refused = app.clone().oneshot(post()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::CONFLICT);

    // The first message as SQS gives it to the rebuild function, handled as its main does:
    // it starts a re-import job per source on the pipeline's queues and comes back later.
    let queue = services.queues.get(QueueName::Rebuild).unwrap().clone();
    let received = queue
        .receive(10, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(received.len(), 1, "one message a rebuild");
    let first: Vec<BatchMessage> = received.iter().map(BatchMessage::from).collect();
    assert!(process_batch(&services, first).await.is_empty());
    queue.delete(&received[0].receipt).await.unwrap();
    let running = pipeline::rebuild_state(&services).await.unwrap().unwrap();
    assert_eq!(running.status, RebuildStatus::Running);
    assert_eq!(running.jobs.len(), 1, "{running:?}");

    // The stage functions and the rebuild function at work until it ends.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers: Vec<_> = [
        QueueName::Gather,
        QueueName::Fetch,
        QueueName::Import,
        QueueName::Rebuild,
    ]
    .into_iter()
    .map(|q| tokio::spawn(run_queue_worker(services.clone(), q, stopped.clone())))
    .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    let done = loop {
        let state = pipeline::rebuild_state(&services).await.unwrap().unwrap();
        if state.status != RebuildStatus::Running {
            break state;
        }
        assert!(std::time::Instant::now() < deadline, "{state:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    stop.send(true).unwrap();
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(done.id, started["id"].as_str().unwrap());
    assert_eq!(done.status, RebuildStatus::Finished, "{done:?}");
    assert_eq!(done.sources_done, 1);
    assert!(
        done.stats.added >= 1,
        "the deleted record imported again: {done:?}"
    );
    assert_eq!(records(&services).await, clean);
    let fixed = pipeline::catalog_integrity(&services).await.unwrap();
    assert!(fixed.consistent, "{fixed:?}");
    let report = pipeline::rebuild_report(&services).await.unwrap();
    assert!(report.len() as u64 >= done.stats.added + done.stats.updated);

    // Delivered again: the rebuild has ended, nothing runs.
    let again = vec![BatchMessage {
        id: received[0].id.clone(),
        body: received[0].body.clone(),
        receive_count: 2,
    }];
    assert!(process_batch(&services, again).await.is_empty());
    let after = pipeline::rebuild_state(&services).await.unwrap().unwrap();
    assert_eq!(after.finished, done.finished, "a redelivery ran it again");
}

//! A WAF harvest end to end against nginx, through real queues and workers: locally (data
//! folder) and on AWS APIs (S3 and SQS in moto), with the same expectations for both.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::catalog::{CatalogError, SearchQuery, get_record, search};
use common::domain::job::{Job, JobStatus};
use common::domain::source::SourceType;
use common::pipeline::{self, get_job};
use common::queue::QueueName;
use common::services::Services;
use common::sources::{NewSource, add_source};
use common::worker::run_queue_worker;
use support::*;

const SOURCE: &str = "test-waf";

struct Workers {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workers {
    fn start(services: &Services) -> Workers {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let tasks = [
            QueueName::Gather,
            QueueName::Fetch,
            QueueName::Fetch,
            QueueName::Import,
        ]
        .into_iter()
        .map(|q| tokio::spawn(run_queue_worker(services.clone(), q, rx.clone())))
        .collect();
        Workers { stop, tasks }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.await.expect("worker");
        }
    }
}

async fn harvest(services: &Services) -> Job {
    let job = pipeline::start_job(services, SOURCE)
        .await
        .expect("start job");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let current = get_job(services.store.as_ref(), SOURCE, &job.id)
            .await
            .expect("job");
        if current.status.is_done() {
            return current;
        }
        assert!(Instant::now() < deadline, "job did not finish: {current:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes the two bad documents too large to keep in the repository.
fn write_generated_bad(waf: &Path) {
    let deep = format!(
        "<?xml version=\"1.0\"?><gmd:MD_Metadata xmlns:gmd=\"http://www.isotc211.org/2005/gmd\">{}{}</gmd:MD_Metadata>",
        "<gmd:x>".repeat(20_000),
        "</gmd:x>".repeat(20_000)
    );
    std::fs::write(waf.join("bad/deep-nesting.xml"), deep).expect("deep");
    let template =
        std::fs::read_to_string(waf.join("iso19139/coastal-erosion.xml")).expect("template");
    let padding = format!("<!-- {} -->", "x".repeat(12 * 1024 * 1024));
    let oversize = template
        .replace("b8e0c8a2-1f7e-4c55-9d0e-2f4a1c3e7a01", "test-oversize")
        .replace(
            "</gmd:MD_Metadata>",
            &format!("{padding}</gmd:MD_Metadata>"),
        );
    std::fs::write(waf.join("bad/oversize.xml"), oversize).expect("oversize");
}

fn expected() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(workspace_root().join("tests/records/expected.json"))
        .expect("expected.json");
    let raw: BTreeMap<String, String> = serde_json::from_str(&text).expect("expected.json");
    raw.into_iter()
        .map(|(k, v)| (k.split(" (").next().unwrap_or(&k).to_string(), v))
        .collect()
}

/// What one full scenario observed, compared between the two modes.
#[derive(Debug, PartialEq)]
struct Observed {
    stats: Vec<[u64; 5]>,
    records: Vec<String>,
}

fn stats(job: &Job) -> [u64; 5] {
    let s = job.stats;
    [s.added, s.updated, s.unchanged, s.deleted, s.errored]
}

async fn record_ids(services: &Services) -> Vec<String> {
    pipeline::drain_index(services).await.expect("index");
    let page = search(
        services.index.as_ref(),
        &SearchQuery {
            page_size: Some(1000),
            ..Default::default()
        },
    )
    .await
    .expect("search");
    let mut ids: Vec<String> = page.records.into_iter().map(|r| r.metadata.id).collect();
    ids.sort();
    ids
}

async fn scenario(services: Services) -> Observed {
    let dir = tempfile::tempdir().expect("tempdir");
    let waf = dir.path().join("waf");
    copy_tree(&workspace_root().join("tests/records/waf"), &waf);
    write_generated_bad(&waf);
    let nginx = Nginx::serve(dir.path());
    let base = nginx.url("waf/");
    add_source(
        services.store.as_ref(),
        NewSource {
            name: SOURCE.into(),
            url: base.clone(),
            source_type: SourceType::Waf,
            title: None,
            active: None,
            owner: Some("owner@example.org".into()),
            frequency: None,
            config: None,
        },
    )
    .await
    .expect("add source");
    let workers = Workers::start(&services);
    let expected = expected();
    let imported = expected.values().filter(|v| *v == "imported").count() as u64;
    let rejected = expected.values().filter(|v| *v == "rejected").count() as u64;
    let mut observed = Observed {
        stats: Vec::new(),
        records: Vec::new(),
    };

    // First harvest: every document found, imported or rejected with its reason and link.
    let first = harvest(&services).await;
    assert_eq!(first.status, JobStatus::Finished);
    assert!(first.gather_errors.is_empty(), "{:?}", first.gather_errors);
    assert_eq!(
        first.object_count,
        Some(expected.len() as u64),
        "only the .xml files are gathered"
    );
    assert_eq!(
        stats(&first),
        [imported + 1, 0, 0, 0, rejected + 1],
        "{first:?}"
    );
    for (path, outcome) in &expected {
        let url = format!("{base}{path}");
        let error = first
            .object_errors
            .iter()
            .find(|e| e.original_url.as_deref() == Some(url.as_str()));
        match outcome.as_str() {
            "imported" => assert!(error.is_none(), "{path} should import: {error:?}"),
            "rejected" => {
                let e = error.unwrap_or_else(|| panic!("{path} should be rejected"));
                assert!(!e.message.is_empty());
            }
            _ => {}
        }
    }
    let duplicate_errors: Vec<_> = first
        .object_errors
        .iter()
        .filter(|e| e.message.contains("already used by"))
        .collect();
    assert_eq!(
        duplicate_errors.len(),
        1,
        "one duplicate file is refused: {:?}",
        first.object_errors
    );
    assert!(
        first
            .object_errors
            .iter()
            .any(|e| e.message.contains("DTD entities"))
    );
    assert!(
        first
            .object_errors
            .iter()
            .any(|e| e.message.contains("nested deeper"))
    );
    assert!(
        first
            .object_errors
            .iter()
            .any(|e| e.message.contains("larger than the limit"))
    );
    assert!(
        first
            .object_errors
            .iter()
            .any(|e| e.message.contains("not UTF-8"))
    );
    assert!(
        first
            .object_errors
            .iter()
            .any(|e| e.message.contains("bounding box"))
    );

    let store = services.store.as_ref();
    let glider = get_record(store, "glider-2023-07")
        .await
        .expect("gmi record");
    let glider_json = serde_json::to_value(&glider).expect("json");
    assert_eq!(glider_json["format"], "iso19139");
    assert_eq!(glider_json["time"]["start"], "2023-07-01T00:00:00Z");
    assert_eq!(glider_json["bbox"]["west"], -25.5);
    assert_eq!(
        glider_json["original_url"],
        format!("{base}iso19139/glider-mission.xml")
    );
    let model = get_record(store, "3d7c1e52-9a4b-4f0e-8c6d-2b1a0f9e8d73")
        .await
        .expect("19115-3 record");
    assert_eq!(
        serde_json::to_value(&model).expect("json")["format"],
        "iso19115-3"
    );
    assert_eq!(model.metadata.keywords, ["geology", "3D model"]);
    let harbour = get_record(store, "urn:uuid:4a7b9c1d-2e3f-4a5b-8c6d-7e8f9a0b1c2d")
        .await
        .expect("dc record");
    let bbox = harbour.metadata.bbox.expect("bbox");
    assert_eq!(
        (bbox.west, bbox.south),
        (10.70, 59.88),
        "EPSG:4326 corners are latitude first"
    );
    let kept = store
        .get("waf/test-waf/iso19139/regional/lakes-inventory.xml")
        .await
        .expect("central WAF copy");
    let original =
        std::fs::read(waf.join("iso19139/regional/lakes-inventory.xml")).expect("original");
    assert_eq!(kept.body.as_ref(), original.as_slice(), "kept as fetched");
    assert!(store.get("waf/test-waf/notes.txt").await.is_err());
    observed.stats.push(stats(&first));
    observed.records = record_ids(&services).await;

    // Unchanged re-harvest: nothing rewritten (the records keep their harvest time); each
    // rejected document is looked at again (what made it fail may have gone, as the owner of
    // a duplicate identifier can) and fails again.
    let before = get_record(store, "glider-2023-07").await.expect("record");
    let second = harvest(&services).await;
    assert_eq!(
        stats(&second),
        [0, 0, imported + 1, 0, rejected + 1],
        "the rejected documents err again: {second:?}"
    );
    assert_eq!(
        get_record(store, "glider-2023-07")
            .await
            .expect("record")
            .harvested,
        before.harvested
    );
    observed.stats.push(stats(&second));

    // A changed file is updated, a removed file is deleted from the catalogue.
    let coastal = waf.join("iso19139/coastal-erosion.xml");
    let text = std::fs::read_to_string(&coastal).expect("read");
    std::fs::write(
        &coastal,
        text.replace(
            "Coastal erosion rates, Atlantic coast",
            "Coastal erosion rates, revised",
        ),
    )
    .expect("write");
    std::fs::remove_file(waf.join("iso19139/regional/forest-plots.xml")).expect("remove");
    let third = harvest(&services).await;
    assert_eq!(
        stats(&third),
        [0, 1, imported - 1, 1, rejected + 1],
        "{third:?}"
    );
    let revised = get_record(store, "b8e0c8a2-1f7e-4c55-9d0e-2f4a1c3e7a01")
        .await
        .expect("record");
    assert_eq!(revised.metadata.title, "Coastal erosion rates, revised");
    assert!(matches!(
        get_record(store, "f0e1d2c3-b4a5-4697-8877-665544332211").await,
        Err(CatalogError::NotFound(_))
    ));
    observed.stats.push(stats(&third));
    let after_third = record_ids(&services).await;
    assert_eq!(after_third.len(), observed.records.len() - 1);

    // A listing that fails aborts the gather with the error recorded, and deletes nothing.
    std::fs::rename(&waf, dir.path().join("waf-gone")).expect("rename");
    let fourth = harvest(&services).await;
    assert_eq!(fourth.status, JobStatus::Finished);
    assert_eq!(fourth.gather_errors.len(), 1, "{fourth:?}");
    assert!(
        fourth.gather_errors[0].message.contains("404"),
        "{:?}",
        fourth.gather_errors
    );
    assert_eq!(stats(&fourth), [0, 0, 0, 0, 0]);
    assert_eq!(
        record_ids(&services).await,
        after_third,
        "nothing deleted after a failed gather"
    );
    observed.stats.push(stats(&fourth));

    workers.stop().await;
    observed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waf_harvest_locally_and_on_aws_apis_gives_the_same_catalogue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let local = scenario(local_services(dir.path())).await;

    let moto = Moto::start();
    let services = aws_services(&moto, dir.path()).await;
    let aws = scenario(services.clone()).await;
    assert_eq!(local, aws, "same counts and records in both modes");

    // The central WAF is in the bucket, under waf/SOURCE/.
    let listed = moto
        .s3()
        .await
        .list_objects_v2()
        .bucket("sheaf-test")
        .prefix("waf/test-waf/iso19139/")
        .send()
        .await
        .expect("list");
    let keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert!(
        keys.contains(&"waf/test-waf/iso19139/glider-mission.xml"),
        "{keys:?}"
    );
}

/// The paths of the documents nginx was asked for, as its access log has them.
fn documents_asked_for(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut paths: Vec<String> = text
        .lines()
        .filter_map(|line| line.split('"').nth(1))
        .filter_map(|request| request.split(' ').nth(1))
        .filter(|path| path.ends_with(".xml"))
        .map(str::to_string)
        .collect();
    paths.sort();
    paths
}

/// `path`'s abstract with its first letter changed: another document of the same size.
fn edit_abstract(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read");
    let at = text
        .find("<gmd:abstract><gco:CharacterString>")
        .expect("an abstract")
        + "<gmd:abstract><gco:CharacterString>".len();
    let first = &text[at..at + 1];
    let other = if first == "X" { "Y" } else { "X" };
    let edited = format!("{}{other}{}", &text[..at], &text[at + 1..]);
    std::fs::write(path, &edited).expect("write");
    edited
}

/// A listing line that settled (its file last modified a minute or more before the listing)
/// spares the document's request at the next harvest; a file modified within the minute it
/// was listed in is asked for every time, so an edit later in that minute (same size, same
/// listing line) is not missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_settled_listing_line_spares_the_documents_request() {
    let site = tempfile::tempdir().expect("tempdir");
    let waf = site.path().join("waf");
    std::fs::create_dir_all(&waf).expect("mkdir");
    let records = workspace_root().join("tests/records/waf/iso19139");
    let (old, fresh) = (waf.join("old.xml"), waf.join("fresh.xml"));
    std::fs::copy(records.join("glider-mission.xml"), &old).expect("copy");
    std::fs::copy(records.join("coastal-erosion.xml"), &fresh).expect("copy");
    let now = std::time::SystemTime::now();
    set_modified(&old, now - Duration::from_secs(7200));
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("access.log");
    let nginx = Nginx::serve_with(site.path(), &format!("access_log {};", log.display()));
    let data = tempfile::tempdir().expect("tempdir");
    let services = local_services(data.path());
    add_source(
        services.store.as_ref(),
        waf_source(SOURCE, nginx.url("waf/")),
    )
    .await
    .expect("source");
    let quiet = |_: u64, _: Option<u64>| {};
    let harvest = || async {
        pipeline::run_test(&services, SOURCE, &quiet)
            .await
            .expect("run-test")
    };
    let central = |name: &'static str| {
        let store = services.store.clone();
        async move {
            let key = format!("waf/{SOURCE}/{name}");
            String::from_utf8(store.get(&key).await.expect("kept").body.to_vec()).expect("utf-8")
        }
    };

    assert_eq!(stats(&harvest().await), [2, 0, 0, 0, 0]);
    std::fs::write(&log, "").expect("truncate");
    assert_eq!(stats(&harvest().await), [0, 0, 2, 0, 0]);
    assert_eq!(
        documents_asked_for(&log),
        ["/waf/fresh.xml"],
        "the old document's settled line spared its request; the fresh one was asked for"
    );

    // An edit within fresh.xml's minute: the listing line stays as it was.
    let modified = std::fs::metadata(&fresh)
        .and_then(|m| m.modified())
        .expect("mtime");
    let second = modified
        .duration_since(std::time::UNIX_EPOCH)
        .expect("epoch")
        .as_secs()
        % 60;
    let listing = || async {
        let answer = reqwest::get(nginx.url("waf/")).await.expect("listing");
        answer.text().await.expect("text")
    };
    let listing_before = listing().await;
    let edited = edit_abstract(&fresh);
    set_modified(
        &fresh,
        if second == 59 {
            modified - Duration::from_secs(1)
        } else {
            modified + Duration::from_secs(1)
        },
    );
    let listing_after = listing().await;
    assert_eq!(
        listing_after, listing_before,
        "the edit does not show in the listing"
    );
    assert_eq!(stats(&harvest().await), [0, 1, 1, 0, 0]);
    assert_eq!(central("fresh.xml").await, edited);

    // An edit of the old document now moves its line: it is fetched again.
    let edited = edit_abstract(&old);
    assert_eq!(stats(&harvest().await), [0, 1, 1, 0, 0]);
    assert_eq!(central("old.xml").await, edited);
}

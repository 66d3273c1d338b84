//! Remote notifications as a partner catalogue receives them: a real HTTP receiver
//! (tests/notify_receiver.py, reading the POSTs with Python's own form and XML parsers) gets
//! GeoNetwork's fields for every insert, update and delete of a harvest, once each; a failure
//! is recorded, retried by the schedule and replaced by the record's newer change; a new or
//! re-enabled target receives every record; a target that hangs fails in the notify timeout;
//! two deliveries of one change at once send it once; one batch mixing targets, as a Lambda
//! function receives it, reaches each target once. Locally and on moto.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::domain::keys;
use common::domain::record::Record;
use common::http::{AppState, router};
use common::notify::{self, NewTarget, TargetPatch};
use common::parse::xml::decode;
use common::pipeline;
use common::services::Services;
use common::sources::add_source;
use common::store::{Pages, PutMode, get_json, put_json};
use common::worker::{BatchMessage, process_batch};
use support::*;
use tower::ServiceExt;

const SOURCE: &str = "coast";
const FORM: &str = "application/x-www-form-urlencoded";

/// Settings for a test that waits for retries and timeouts in seconds, not days.
fn quick(mut services: Services) -> Services {
    services.settings.notify_retry_interval = Duration::from_secs(1);
    services.settings.notify_timeout = Duration::from_secs(1);
    services
}

/// The catalogue now: each record's identifier with the XML a target should hold (the stored
/// document, decoded, as a form field carries text).
async fn catalogue(services: &Services) -> BTreeMap<String, String> {
    let store = services.store.as_ref();
    let mut out = BTreeMap::new();
    let mut pages = Pages::new(store, keys::RECORDS);
    while let Some(entries) = pages.next().await.expect("list") {
        for e in entries {
            let Some(key) = e
                .key
                .strip_prefix(keys::RECORDS)
                .and_then(|k| k.strip_suffix(".json"))
            else {
                continue;
            };
            let (record, _) = get_json::<Record>(store, &e.key).await.unwrap().unwrap();
            let xml = store.get(&keys::record_xml(key)).await.expect("xml").body;
            out.insert(record.metadata.id, decode(&xml).expect("decodes"));
        }
    }
    out
}

async fn harvest(services: &Services) {
    let job = pipeline::run_test(services, SOURCE, &|_: u64, _: Option<u64>| {})
        .await
        .expect("harvest");
    assert!(job.gather_errors.is_empty(), "{job:?}");
}

/// Delivers what waits on the notify queue (a busy record comes back after the check delay).
async fn deliver(services: &Services) {
    for _ in 0..3 {
        common::worker::drain(services, common::queue::QueueName::Notify)
            .await
            .expect("deliveries");
        tokio::time::sleep(services.settings.check_delay * 2).await;
    }
    common::worker::drain(services, common::queue::QueueName::Notify)
        .await
        .expect("deliveries");
}

/// What `path` received after the first `seen` of all POSTs.
fn new_at(receiver: &NotifyReceiver, seen: usize, path: &str) -> Vec<Notification> {
    receiver.received()[seen..]
        .iter()
        .filter(|n| n.path == path)
        .cloned()
        .collect()
}

/// Every POST is GeoNetwork's form: an update carries the record's XML, a delete only its uuid.
fn assert_update(n: &Notification, uuid: &str, xml: &str) {
    assert_eq!(n.content_type.as_deref(), Some(FORM), "{n:?}");
    assert_eq!(n.field("action"), "update", "{n:?}");
    assert_eq!(n.field("uuid"), uuid);
    assert_eq!(
        n.fields.keys().collect::<Vec<_>>(),
        ["XMLFile", "action", "uuid"]
    );
    assert_eq!(n.field("XMLFile"), xml, "the XML of {uuid}");
    assert_eq!(n.xml_parses, Some(true), "XMLFile of {uuid} parses as XML");
}

/// A target received every record of the catalogue, once each, as it is now.
fn assert_received_all(got: &[Notification], catalogue: &BTreeMap<String, String>) {
    let uuids: Vec<&str> = got.iter().map(|n| n.field("uuid")).collect();
    let unique: BTreeSet<&str> = uuids.iter().copied().collect();
    assert_eq!(uuids.len(), unique.len(), "each record once: {uuids:?}");
    assert_eq!(
        unique,
        catalogue
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>()
    );
    for n in got {
        let uuid = n.field("uuid");
        assert_update(n, uuid, &catalogue[uuid]);
    }
}

/// Edits a WAF document's text.
fn edit(waf: &Path, file: &str, from: &str, to: &str) {
    let path = waf.join(file);
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains(from), "{file} has {from:?}");
    std::fs::write(&path, text.replace(from, to)).expect("write");
}

const COASTAL: &str = "b8e0c8a2-1f7e-4c55-9d0e-2f4a1c3e7a01";
const SEABED: &str = "a9f1d3b4-7c2e-4e8a-b1f0-5d6e7c8b9a02";
const GLIDER: &str = "glider-2023-07";

async fn a_partner_follows_the_catalogue(services: Services) {
    let services = quick(services);
    let dir = tempfile::tempdir().expect("tempdir");
    let waf = dir.path().join("waf");
    copy_tree(&workspace_root().join("tests/records/waf/iso19139"), &waf);
    // A Latin-1 and a UTF-16 document: a target receives them as text.
    for file in ["latin1-declared-valid.xml", "utf16-valid.xml"] {
        std::fs::copy(
            workspace_root().join("tests/records/waf/bad").join(file),
            waf.join(file),
        )
        .expect("copy");
    }
    let nginx = Nginx::serve(&waf);
    add_source(services.store.as_ref(), waf_source(SOURCE, nginx.url("/")))
        .await
        .expect("source");
    let receiver = NotifyReceiver::start();
    let target = |name: &str| NewTarget {
        name: name.into(),
        url: receiver.url(&format!("/{name}")),
        enabled: None,
    };
    notify::add_target(&services, target("partner"))
        .await
        .expect("target");
    deliver(&services).await;
    assert!(
        receiver.received().is_empty(),
        "an empty catalogue sends nothing"
    );

    // Insert: every record, once, with its XML.
    harvest(&services).await;
    deliver(&services).await;
    let records = catalogue(&services).await;
    assert!(records.len() >= 6, "{:?}", records.keys());
    assert!(records.contains_key(COASTAL) && records.contains_key(GLIDER));
    assert_received_all(&new_at(&receiver, 0, "/partner"), &records);

    // Nothing changed: nothing sent.
    let seen = receiver.received().len();
    harvest(&services).await;
    deliver(&services).await;
    assert_eq!(new_at(&receiver, seen, "/partner").len(), 0);

    // Update: the changed record only, with its new XML.
    edit(
        &waf,
        "coastal-erosion.xml",
        "Atlantic coast",
        "Atlantic coast, revised",
    );
    harvest(&services).await;
    deliver(&services).await;
    let got = new_at(&receiver, seen, "/partner");
    assert_eq!(got.len(), 1, "{got:?}");
    let records = catalogue(&services).await;
    assert!(records[COASTAL].contains("Atlantic coast, revised"));
    assert_update(&got[0], COASTAL, &records[COASTAL]);

    // Delete: its uuid alone.
    let seen = receiver.received().len();
    std::fs::remove_file(waf.join("glider-mission.xml")).expect("rm");
    harvest(&services).await;
    deliver(&services).await;
    let got = new_at(&receiver, seen, "/partner");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].content_type.as_deref(), Some(FORM));
    assert_eq!(got[0].field("action"), "delete");
    assert_eq!(got[0].field("uuid"), GLIDER);
    assert_eq!(got[0].fields.keys().collect::<Vec<_>>(), ["action", "uuid"]);

    // A target that answers 500: recorded per target and record; a newer change of the record
    // replaces its pending older one.
    receiver.answer("fail");
    let seen = receiver.received().len();
    edit(
        &waf,
        "seabed-habitats.xml",
        "<gmd:abstract>",
        "<gmd:abstract>First change. ",
    );
    harvest(&services).await;
    deliver(&services).await;
    edit(
        &waf,
        "seabed-habitats.xml",
        "First change.",
        "Second change.",
    );
    harvest(&services).await;
    deliver(&services).await;
    let tried = new_at(&receiver, seen, "/partner");
    assert_eq!(tried.len(), 2, "one attempt per change: {tried:?}");
    assert!(tried.iter().all(|n| n.answered == "fail"));
    let failures = notify::list_failures(services.store.as_ref(), 100)
        .await
        .expect("failures");
    assert_eq!(failures.len(), 1, "{failures:?}");
    let failure = &failures[0];
    assert_eq!(
        (
            failure.target.as_str(),
            failure.uuid.as_str(),
            failure.action.as_str(),
            failure.attempts
        ),
        ("partner", SEABED, "update", 2)
    );
    assert!(failure.error.contains("HTTP 500"), "{failure:?}");
    assert!(
        failure.error.contains("receiver told to fail"),
        "{failure:?}"
    );
    // The API shows the same, to the token.
    let app = router(AppState {
        services: services.clone(),
        api_token: Some("token".into()),
        read_token: None,
        local_store: None,
    });
    let answer = app
        .oneshot(
            Request::get("/api/notifications/failures")
                .header("authorization", "Bearer token")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let body = axum::body::to_bytes(answer.into_body(), 1 << 20)
        .await
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(listed, serde_json::to_value(&failures).unwrap());

    // The schedule retries once the interval has passed, with the latest state, once.
    receiver.answer("ok");
    let seen = receiver.received().len();
    let report = pipeline::run_scheduled(&services).await.expect("schedule");
    assert_eq!(
        report.notifications.retried, 0,
        "the first round is an interval away"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let report = pipeline::run_scheduled(&services).await.expect("schedule");
    assert_eq!(report.notifications.retried, 1);
    deliver(&services).await;
    let got = new_at(&receiver, seen, "/partner");
    assert_eq!(got.len(), 1, "{got:?}");
    let records = catalogue(&services).await;
    assert!(records[SEABED].contains("Second change."));
    assert_update(&got[0], SEABED, &records[SEABED]);
    assert!(
        notify::list_failures(services.store.as_ref(), 100)
            .await
            .unwrap()
            .is_empty()
    );

    // Backfill: a new target receives every record there is.
    let seen = receiver.received().len();
    notify::add_target(&services, target("late"))
        .await
        .expect("target");
    deliver(&services).await;
    assert_received_all(&new_at(&receiver, seen, "/late"), &records);
    assert_eq!(new_at(&receiver, seen, "/partner").len(), 0);

    // Disabled, it receives nothing; enabled again, everything.
    let set = |enabled| TargetPatch {
        enabled: Some(enabled),
        ..TargetPatch::default()
    };
    notify::patch_target(&services, "late", set(false))
        .await
        .expect("disable");
    let seen = receiver.received().len();
    edit(
        &waf,
        "wms-service.xml",
        "</gmd:abstract>",
        " (disabled)</gmd:abstract>",
    );
    harvest(&services).await;
    deliver(&services).await;
    assert_eq!(new_at(&receiver, seen, "/late").len(), 0);
    assert_eq!(new_at(&receiver, seen, "/partner").len(), 1);
    let seen = receiver.received().len();
    notify::patch_target(&services, "late", set(true))
        .await
        .expect("enable");
    deliver(&services).await;
    assert_received_all(
        &new_at(&receiver, seen, "/late"),
        &catalogue(&services).await,
    );

    // A target that hangs fails within the notify timeout; the retry mends it.
    receiver.answer("hang");
    edit(&waf, "coastal-erosion.xml", ", revised", ", revised again");
    harvest(&services).await;
    deliver(&services).await;
    let failures = notify::list_failures(services.store.as_ref(), 100)
        .await
        .unwrap();
    assert_eq!(
        failures
            .iter()
            .map(|f| (f.target.as_str(), f.uuid.as_str()))
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([("late", COASTAL), ("partner", COASTAL)]),
        "{failures:?}"
    );
    receiver.answer("ok");
    let seen = receiver.received().len();
    assert_eq!(notify::retry_now(&services).await.expect("retry"), 2);
    deliver(&services).await;
    let records = catalogue(&services).await;
    for path in ["/partner", "/late"] {
        let got = new_at(&receiver, seen, path);
        assert_eq!(got.len(), 1, "{path}: {got:?}");
        assert_update(&got[0], COASTAL, &records[COASTAL]);
    }
    assert!(
        notify::list_failures(services.store.as_ref(), 100)
            .await
            .unwrap()
            .is_empty()
    );

    // Removed, a target is told nothing more and its failures go.
    notify::remove_target(&services, "late").await.expect("rm");
    let left: Vec<String> = notify::list_targets(services.store.as_ref())
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(left, ["partner"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partner_follows_the_catalogue_locally() {
    let dir = tempfile::tempdir().expect("tempdir");
    a_partner_follows_the_catalogue(local_services(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partner_follows_the_catalogue_on_moto() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    a_partner_follows_the_catalogue(aws_services(&moto, dir.path()).await).await;
}

/// Adds the target "partner" at the receiver's `/partner`.
async fn add_partner(services: &Services, receiver: &NotifyReceiver) {
    notify::add_target(
        services,
        NewTarget {
            name: "partner".into(),
            url: receiver.url("/partner"),
            enabled: None,
        },
    )
    .await
    .expect("target");
}

/// Writes a record as import does (its XML, then its JSON).
async fn write_record(services: &Services, id: &str, version: usize) -> String {
    let key = keys::id_key(id);
    let xml = format!(
        "<?xml version=\"1.0\"?><record><id>{id}</id><version>{version}</version></record>"
    );
    let mut record = test_record(id, &format!("{id} v{version}"), "a record");
    record.sha256 = format!("{version:064}");
    let store = services.store.as_ref();
    store
        .put(
            &keys::record_xml(&key),
            xml.clone().into(),
            "application/xml",
            PutMode::Overwrite,
        )
        .await
        .expect("xml");
    put_json(store, &keys::record_json(&key), &record, PutMode::Overwrite)
        .await
        .expect("json");
    xml
}

/// Two deliveries of the same change at once (SQS delivers at least once; a redelivery can
/// overlap the first): the target receives each change once, in order, and ends with the
/// latest state.
async fn racing_deliveries_send_each_change_once(services: Services) {
    let receiver = NotifyReceiver::start();
    add_partner(&services, &receiver).await;
    deliver(&services).await;
    let ids = ["race-a", "race-b"];
    let mut expected = Vec::new();
    for version in 0..8 {
        let id = ids[version % 2];
        let body = serde_json::json!({"kind": "notify", "keys": [keys::id_key(id)]}).to_string();
        let xml = if version >= 6 {
            // The last two changes remove the records.
            let key = keys::id_key(id);
            services
                .store
                .delete(&keys::record_json(&key))
                .await
                .unwrap();
            services
                .store
                .delete(&keys::record_xml(&key))
                .await
                .unwrap();
            None
        } else {
            Some(write_record(&services, id, version).await)
        };
        expected.push((id, xml));
        let parsed = common::pipeline::Incoming::parse(&body).expect("a message");
        assert!(
            matches!(parsed, common::pipeline::Incoming::Notify(_)),
            "a notify message"
        );
        let (a, b) = tokio::join!(
            common::pipeline::handle_incoming(&services, &parsed, 1),
            common::pipeline::handle_incoming(&services, &parsed, 1)
        );
        a.expect("first delivery");
        b.expect("second delivery");
        deliver(&services).await;
    }
    let got = receiver.received();
    assert_eq!(got.len(), expected.len(), "each change once: {got:#?}");
    for (n, (id, xml)) in got.iter().zip(&expected) {
        match xml {
            Some(xml) => assert_update(n, id, xml),
            None => {
                assert_eq!(n.field("action"), "delete");
                assert_eq!(n.field("uuid"), *id);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_deliveries_send_each_change_once_locally() {
    let dir = tempfile::tempdir().expect("tempdir");
    racing_deliveries_send_each_change_once(local_services(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_deliveries_send_each_change_once_on_moto() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    racing_deliveries_send_each_change_once(aws_services(&moto, dir.path()).await).await;
}

/// One batch of notify messages for different targets, as a Lambda function or `serve`'s
/// worker receives it (`worker::process_batch`): the messages are merged per target, and each
/// target receives each record it is owed once, with its XML; a body that is not a message is
/// dropped, not retried.
async fn a_batch_mixing_targets_reaches_each_target_once(services: Services) {
    let receiver = NotifyReceiver::start();
    for name in ["a", "b"] {
        notify::add_target(
            &services,
            NewTarget {
                name: name.into(),
                url: receiver.url(&format!("/{name}")),
                enabled: None,
            },
        )
        .await
        .expect("target");
    }
    // The new targets' backfills find an empty catalogue.
    deliver(&services).await;
    assert!(receiver.received().is_empty());
    let mut xml = BTreeMap::new();
    for (version, id) in ["mix-1", "mix-2", "mix-3", "mix-4"].into_iter().enumerate() {
        xml.insert(id, write_record(&services, id, version).await);
    }
    let notice = |ids: &[&str], target: Option<&str>| {
        let keys: Vec<String> = ids.iter().map(|id| keys::id_key(id)).collect();
        serde_json::json!({"kind": "notify", "keys": keys, "target": target}).to_string()
    };
    let bodies = [
        notice(&["mix-1"], None),
        notice(&["mix-2"], None),
        notice(&["mix-3", "mix-1"], Some("a")),
        notice(&["mix-1"], None),
        notice(&["mix-4"], Some("b")),
        "not a message".to_string(),
        notice(&["mix-2"], Some("gone")),
    ];
    let batch = bodies
        .iter()
        .enumerate()
        .map(|(n, body)| BatchMessage {
            id: format!("m{n}"),
            body: body.clone(),
            receive_count: 1,
        })
        .collect();
    let failed = process_batch(&services, batch).await;
    assert!(failed.is_empty(), "{failed:?}");
    let got = receiver.received();
    for (path, owed) in [
        ("/a", ["mix-1", "mix-2", "mix-3"]),
        ("/b", ["mix-1", "mix-2", "mix-4"]),
    ] {
        let mut at: Vec<&Notification> = got.iter().filter(|n| n.path == path).collect();
        at.sort_by_key(|n| n.field("uuid").to_string());
        assert_eq!(at.len(), owed.len(), "{path}: {at:#?}");
        for (n, id) in at.into_iter().zip(owed) {
            assert_update(n, id, &xml[id]);
        }
    }
    assert_eq!(got.len(), 6, "{got:#?}");
    // Delivered already: the same batch again sends nothing.
    let again = bodies
        .iter()
        .map(|body| BatchMessage {
            id: "again".into(),
            body: body.clone(),
            receive_count: 2,
        })
        .collect();
    assert!(process_batch(&services, again).await.is_empty());
    assert_eq!(receiver.received().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_mixing_targets_reaches_each_target_once_locally() {
    let dir = tempfile::tempdir().expect("tempdir");
    a_batch_mixing_targets_reaches_each_target_once(local_services(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_mixing_targets_reaches_each_target_once_on_moto() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    a_batch_mixing_targets_reaches_each_target_once(aws_services(&moto, dir.path()).await).await;
}

/// A backfill whose chain of messages was lost (the queue purged, a process killed between
/// two pages) is resumed by the schedule once it has not moved for a while, and the target
/// still receives every record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_that_lost_its_message_is_resumed_by_the_schedule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let services = local_services(dir.path());
    let mut expected = BTreeMap::new();
    for i in 0..12 {
        let id = format!("kept-{i:02}");
        let xml = write_record(&services, &id, i).await;
        expected.insert(id, xml);
    }
    let receiver = NotifyReceiver::start();
    add_partner(&services, &receiver).await;
    // The backfill's message is lost before anything is delivered.
    let queue = services
        .queues
        .get(common::queue::QueueName::Notify)
        .expect("queue");
    queue.purge().await.expect("purge");
    deliver(&services).await;
    assert!(receiver.received().is_empty());
    // Not yet stalled: the schedule leaves it.
    let report = pipeline::run_scheduled(&services).await.expect("schedule");
    assert!(report.notifications.backfills_resumed.is_empty());
    // Stalled (its last move long ago): resumed.
    let key = keys::notify_target("partner");
    let (mut target, etag) = get_json::<notify::Target>(services.store.as_ref(), &key)
        .await
        .unwrap()
        .unwrap();
    target.backfill.as_mut().unwrap().updated = "2026-01-01T00:00:00Z".into();
    put_json(
        services.store.as_ref(),
        &key,
        &target,
        PutMode::Update(etag),
    )
    .await
    .unwrap();
    let report = pipeline::run_scheduled(&services).await.expect("schedule");
    assert_eq!(report.notifications.backfills_resumed, ["partner"]);
    deliver(&services).await;
    let got = receiver.received();
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for n in &got {
        let uuid = n.field("uuid");
        assert_update(n, uuid, &expected[uuid]);
    }
    let target = notify::list_targets(services.store.as_ref()).await.unwrap();
    assert!(target[0].backfill.as_ref().unwrap().done, "{target:?}");
}

/// A target obeys the sources' address policy: with private addresses not allowed, a loopback
/// or link-local target is refused when it is added, saying why, before any connection.
#[tokio::test]
async fn a_private_target_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let services = Services {
        fetcher: std::sync::Arc::new(
            common::fetch::ReqwestFetcher::new(
                common::fetch::AddressPolicy::PublicOnly,
                Duration::from_secs(5),
            )
            .expect("fetcher"),
        ),
        ..local_services(dir.path())
    };
    for url in [
        "http://127.0.0.1:9/notify",
        "http://169.254.169.254/latest/",
        "http://localhost:8080/",
        "ftp://partner.example.org/",
    ] {
        let refused = notify::add_target(
            &services,
            NewTarget {
                name: "partner".into(),
                url: url.into(),
                enabled: None,
            },
        )
        .await;
        match refused {
            Err(notify::NotifyError::Invalid(field)) => {
                assert_eq!(field.field, "url", "{url}");
                assert!(
                    url.starts_with("ftp") || field.message.contains("SHEAF_ALLOW_PRIVATE_URLS"),
                    "{url}: {field}"
                );
            }
            other => panic!("{url}: {other:?}"),
        }
    }
    assert!(
        notify::list_targets(services.store.as_ref())
            .await
            .unwrap()
            .is_empty()
    );
}

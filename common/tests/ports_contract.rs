//! One contract suite for each port, run against both adapters: the local folder and the AWS
//! services (moto's S3, SQS and SES). The pipeline relies on exactly these semantics.

mod support;

use std::time::Duration;

use bytes::Bytes;
use common::mail::{Email, Mailer, SesMailer};
use common::queue::{LocalQueue, MAX_RECEIVE_COUNT, Queue};
use common::store::{ListEntry, LocalStore, ObjectStore, Pages, PutMode, StoreError, Write};
use support::*;

async fn store_contract(store: &dyn ObjectStore) {
    // Create once: a second create is refused and leaves the first.
    let etag = store
        .put(
            "a/one.json",
            Bytes::from_static(b"1"),
            "application/json",
            PutMode::Create,
        )
        .await
        .expect("create");
    let again = store
        .put(
            "a/one.json",
            Bytes::from_static(b"2"),
            "application/json",
            PutMode::Create,
        )
        .await;
    assert!(
        matches!(again, Err(StoreError::Precondition(_))),
        "{again:?}"
    );
    let got = store.get("a/one.json").await.expect("get");
    assert_eq!(got.body.as_ref(), b"1");
    assert_eq!(got.etag, etag);

    // Update only the version read.
    let new_etag = store
        .put(
            "a/one.json",
            Bytes::from_static(b"3"),
            "application/json",
            PutMode::Update(etag.clone()),
        )
        .await
        .expect("update");
    assert_ne!(new_etag, etag);
    let stale = store
        .put(
            "a/one.json",
            Bytes::from_static(b"4"),
            "application/json",
            PutMode::Update(etag),
        )
        .await;
    assert!(
        matches!(stale, Err(StoreError::Precondition(_))),
        "{stale:?}"
    );
    assert_eq!(
        store.get("a/one.json").await.expect("get").body.as_ref(),
        b"3"
    );

    // Listing by prefix, in key order, nested keys included.
    store
        .put(
            "a/b/two.xml",
            Bytes::from_static(b"<x/>"),
            "application/xml",
            PutMode::Overwrite,
        )
        .await
        .expect("put");
    store
        .put(
            "ab/three",
            Bytes::from_static(b""),
            "text/plain",
            PutMode::Overwrite,
        )
        .await
        .expect("put");
    let keys: Vec<String> = store
        .list("a/")
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["a/b/two.xml", "a/one.json"]);
    let keys: Vec<String> = store
        .list("a")
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["a/b/two.xml", "a/one.json", "ab/three"]);
    assert!(store.list("nothing/").await.expect("list").is_empty());

    // Several at once: each key's object or `None`, in the order asked, repeats included.
    let asked: Vec<String> = [
        "ab/three",
        "a/missing",
        "a/one.json",
        "a/b/two.xml",
        "a/one.json",
    ]
    .map(String::from)
    .to_vec();
    let got = store.get_many(&asked).await.expect("get_many");
    let bodies: Vec<Option<&[u8]>> = got
        .iter()
        .map(|o| o.as_ref().map(|o| o.body.as_ref()))
        .collect();
    assert_eq!(
        bodies,
        [Some(&b""[..]), None, Some(b"3"), Some(b"<x/>"), Some(b"3")]
    );
    let one = store.get("a/one.json").await.expect("get");
    assert_eq!(got[2].as_ref().map(|o| &o.etag), Some(&one.etag));
    assert!(store.get_many(&[]).await.expect("none asked").is_empty());
    let escaping = store.get_many(&["a/../one.json".to_string()]).await;
    assert!(
        matches!(escaping, Err(StoreError::InvalidKey(_))),
        "{escaping:?}"
    );

    // Pages of a listing, in S3's byte order ('-' < '.' < '/'), across nested folders.
    let paged = ["p/a-c", "p/a.x", "p/a/b", "p/a/c", "p/a/d/e", "p/b"];
    for key in paged.iter().rev() {
        store
            .put(key, Bytes::new(), "text/plain", PutMode::Overwrite)
            .await
            .expect("put");
    }
    let keys = |entries: Vec<ListEntry>| entries.into_iter().map(|e| e.key).collect::<Vec<_>>();
    assert_eq!(keys(store.list("p/").await.expect("list")), paged);
    let mut walked = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = keys(
            store
                .list_page("p/", after.as_deref(), 2)
                .await
                .expect("page"),
        );
        assert!(page.len() <= 2, "{page:?}");
        let Some(last) = page.last() else { break };
        after = Some(last.clone());
        walked.extend(page);
    }
    assert_eq!(walked, paged);
    assert_eq!(
        keys(
            store
                .list_page("p/", Some("p/a/b"), 10)
                .await
                .expect("page")
        ),
        ["p/a/c", "p/a/d/e", "p/b"]
    );
    assert_eq!(
        keys(
            store
                .list_page("p/a/", Some("p/a/c"), 10)
                .await
                .expect("page")
        ),
        ["p/a/d/e"]
    );
    assert!(
        store
            .list_page("p/", Some("p/b"), 10)
            .await
            .expect("page")
            .is_empty()
    );
    let mut pages = Pages::new(store, "p/");
    let mut all = Vec::new();
    while let Some(page) = pages.next().await.expect("pages") {
        all.extend(page.into_iter().map(|listed| listed.key));
    }
    assert_eq!(all, paged);
    // The keys alone, page by page, are `list_page`'s keys.
    for (prefix, after) in [("p/", None), ("p/", Some("p/a/b")), ("p/a/", Some("p/a/c"))] {
        let sized = keys(store.list_page(prefix, after, 2).await.expect("page"));
        let bare = store.list_keys_page(prefix, after, 2).await.expect("keys");
        let bare: Vec<String> = bare.into_iter().map(|listed| listed.key).collect();
        assert_eq!(bare, sized, "{prefix} after {after:?}");
    }
    for key in paged {
        store.delete(key).await.expect("delete");
    }

    // Keys of every kind list together in key order, whichever part of a store holds them
    // (the local store keeps `packages/` in files and the rest in its database).
    store
        .put(
            "packages/k.json",
            Bytes::from_static(b"{}"),
            "application/json",
            PutMode::Create,
        )
        .await
        .expect("put");
    assert_eq!(
        keys(store.list("").await.expect("list")),
        ["a/b/two.xml", "a/one.json", "ab/three", "packages/k.json"]
    );
    assert_eq!(
        keys(
            store
                .list_page("", Some("a/one.json"), 2)
                .await
                .expect("page")
        ),
        ["ab/three", "packages/k.json"]
    );
    let bare = store
        .list_keys_page("", Some("a/one.json"), 2)
        .await
        .expect("keys");
    assert_eq!(
        bare.into_iter()
            .map(|listed| listed.key)
            .collect::<Vec<_>>(),
        ["ab/three", "packages/k.json"]
    );
    assert_eq!(
        keys(store.list("pa").await.expect("list")),
        ["packages/k.json"]
    );
    assert_eq!(
        store
            .get("packages/k.json")
            .await
            .expect("get")
            .body
            .as_ref(),
        b"{}"
    );
    store.delete("packages/k.json").await.expect("delete");

    // Deleting is idempotent; a missing object is NotFound.
    store.delete("a/one.json").await.expect("delete");
    store.delete("a/one.json").await.expect("delete again");
    assert!(matches!(
        store.get("a/one.json").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.get("../etc/passwd").await,
        Err(StoreError::InvalidKey(_))
    ));

    // Multipart: the object appears only on complete; an aborted upload leaves nothing.
    let mut upload = store
        .start_multipart("zips/one.zip", "application/zip")
        .await
        .expect("start");
    let part = Bytes::from(vec![7u8; 5 * 1024 * 1024]);
    upload.put_part(part.clone()).await.expect("part 1");
    upload
        .put_part(Bytes::from_static(b"tail"))
        .await
        .expect("part 2");
    assert!(matches!(
        store.get("zips/one.zip").await,
        Err(StoreError::NotFound(_))
    ));
    let etag = upload.complete().await.expect("complete");
    let zip = store.get("zips/one.zip").await.expect("get");
    assert_eq!(zip.body.len(), part.len() + 4);
    assert_eq!(zip.etag, etag);
    let mut aborted = store
        .start_multipart("zips/two.zip", "application/zip")
        .await
        .expect("start");
    aborted.put_part(part).await.expect("part");
    aborted.abort().await.expect("abort");
    assert!(matches!(
        store.get("zips/two.zip").await,
        Err(StoreError::NotFound(_))
    ));

    // Suspended and taken up again (as by the next Lambda invocation), the upload goes on
    // where it stopped; a part written after the suspension by a process that died is
    // written over, and an upload that is gone takes no more parts.
    let mut first = store
        .start_multipart("zips/three.zip", "application/zip")
        .await
        .expect("start");
    let one = Bytes::from(vec![1u8; 5 * 1024 * 1024]);
    first.put_part(one.clone()).await.expect("part 1");
    let state = first.suspend();
    assert_eq!((state.parts.len(), state.bytes), (1, one.len() as u64));
    let mut died = store
        .resume_multipart("zips/three.zip", &state)
        .await
        .expect("resume");
    died.put_part(Bytes::from(vec![9u8; 5 * 1024 * 1024]))
        .await
        .expect("a part of a process that dies");
    drop(died);
    let mut second = store
        .resume_multipart("zips/three.zip", &state)
        .await
        .expect("resume again");
    second
        .put_part(Bytes::from_static(b"the end"))
        .await
        .expect("part 2");
    second.complete().await.expect("complete");
    let three = store.get("zips/three.zip").await.expect("get");
    assert_eq!(three.body.len(), one.len() + 7);
    assert!(three.body[..one.len()].iter().all(|b| *b == 1));
    assert_eq!(&three.body[one.len()..], b"the end");
    let gone = match store.resume_multipart("zips/three.zip", &state).await {
        Ok(mut upload) => upload.put_part(Bytes::from_static(b"late")).await,
        Err(e) => Err(e),
    };
    // S3 answers NotFound (NoSuchUpload); moto fails with a 500.
    assert!(gone.is_err(), "a completed upload takes no more parts");

    write_sequence_contract(store).await;

    // A presigned link fetches the object without credentials until it expires.
    let url = store
        .presign_get("a/b/two.xml", Duration::from_secs(300))
        .await
        .expect("presign");
    assert!(url.starts_with("http://127.0.0.1"), "{url}");
}

fn put(key: &str, body: &'static [u8], mode: PutMode) -> Write {
    Write::Put {
        key: key.into(),
        body: Bytes::from_static(body),
        content_type: "text/plain",
        mode,
    }
}

async fn body_at(store: &dyn ObjectStore, key: &str) -> Option<Vec<u8>> {
    match store.get(key).await {
        Ok(object) => Some(object.body.to_vec()),
        Err(StoreError::NotFound(_)) => None,
        Err(e) => panic!("get {key}: {e}"),
    }
}

/// A sequence of writes is made in order and stops at the first refused: what came before
/// it stays, nothing after it is made (the pipeline's crash and race arguments rely on it).
async fn write_sequence_contract(store: &dyn ObjectStore) {
    let plan = put("seq/object.json", b"planned", PutMode::Create);
    let outcome = put("seq/object.json", b"done", PutMode::Overwrite);
    store
        .put(
            "seq/stale.txt",
            Bytes::from_static(b"x"),
            "text/plain",
            PutMode::Overwrite,
        )
        .await
        .expect("put");
    let versions = store
        .write_in_order(vec![
            vec![plan.clone()],
            vec![
                put("seq/a.txt", b"a", PutMode::Overwrite),
                Write::Delete {
                    key: "seq/stale.txt".into(),
                },
                // Deleting what is not there is no error.
                Write::Delete {
                    key: "seq/never.txt".into(),
                },
            ],
            vec![outcome.clone()],
            vec![put("seq/marker", b"", PutMode::Overwrite)],
        ])
        .await
        .expect("a sequence");
    // Each key put is answered at the version it was left at.
    for key in ["seq/object.json", "seq/a.txt", "seq/marker"] {
        let etag = store.get(key).await.expect("get").etag;
        assert_eq!(versions.get(key), Some(&etag), "{key}");
    }
    assert_eq!(
        body_at(store, "seq/object.json").await.as_deref(),
        Some(&b"done"[..])
    );
    assert_eq!(
        body_at(store, "seq/a.txt").await.as_deref(),
        Some(&b"a"[..])
    );
    assert_eq!(body_at(store, "seq/stale.txt").await, None);
    assert_eq!(
        body_at(store, "seq/marker").await.as_deref(),
        Some(&b""[..])
    );

    // The same sequence again: its create is refused, and nothing after it is made.
    store.delete("seq/marker").await.expect("delete");
    let again = store
        .write_in_order(vec![
            vec![put("seq/b.txt", b"b", PutMode::Overwrite)],
            vec![plan],
            vec![outcome],
            vec![put("seq/marker", b"", PutMode::Overwrite)],
        ])
        .await;
    assert!(
        matches!(&again, Err(StoreError::Precondition(key)) if key == "seq/object.json"),
        "{again:?}"
    );
    assert_eq!(
        body_at(store, "seq/b.txt").await.as_deref(),
        Some(&b"b"[..])
    );
    assert_eq!(
        body_at(store, "seq/object.json").await.as_deref(),
        Some(&b"done"[..])
    );
    assert_eq!(body_at(store, "seq/marker").await, None);

    // An update of a version no longer there is refused the same way.
    let stale = store
        .write_in_order(vec![
            vec![put(
                "seq/object.json",
                b"late",
                PutMode::Update("not-its-version".into()),
            )],
            vec![put("seq/marker", b"", PutMode::Overwrite)],
        ])
        .await;
    assert!(
        matches!(stale, Err(StoreError::Precondition(_))),
        "{stale:?}"
    );
    assert_eq!(body_at(store, "seq/marker").await, None);
    for key in ["seq/object.json", "seq/a.txt", "seq/b.txt"] {
        store.delete(key).await.expect("delete");
    }
}

async fn queue_contract(queue: &dyn Queue) {
    queue
        .send("one".into(), Duration::ZERO)
        .await
        .expect("send");
    queue
        .send_batch((0..12).map(|i| format!("batch-{i}")).collect())
        .await
        .expect("batch");
    queue
        .send("later".into(), Duration::from_secs(60))
        .await
        .expect("delayed");
    let (mut seen, mut receipts) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let got = queue
            .receive(10, Duration::from_secs(30))
            .await
            .expect("receive");
        for m in got {
            assert_eq!(m.receive_count, 1);
            seen.push(m.body);
            receipts.push(m.receipt);
        }
        if seen.len() == 13 {
            break;
        }
    }
    // More than a batch request takes (ten on SQS), deleted in one call.
    queue.delete_batch(&receipts).await.expect("delete");
    seen.sort();
    assert_eq!(seen.len(), 13, "{seen:?}");
    assert!(
        !seen.contains(&"later".to_string()),
        "a delayed message waits"
    );
    // Deleted, not merely hidden: only the delayed message is left.
    let depth = queue.depth().await.expect("depth");
    assert_eq!((depth.visible, depth.in_flight), (1, 0), "{depth:?}");

    // Not deleted: it comes back once its visibility runs out, counted.
    queue.purge().await.expect("purge");
    queue
        .send("retry me".into(), Duration::ZERO)
        .await
        .expect("send");
    let first = queue
        .receive(1, Duration::from_secs(30))
        .await
        .expect("receive");
    assert_eq!(first.len(), 1);
    assert!(
        queue
            .receive(1, Duration::from_secs(30))
            .await
            .expect("receive")
            .is_empty(),
        "hidden while in flight"
    );
    queue
        .change_visibility(&first[0].receipt, Duration::ZERO)
        .await
        .expect("visibility");
    let second = queue
        .receive(1, Duration::from_secs(30))
        .await
        .expect("receive");
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].body, "retry me");
    assert_eq!(second[0].receive_count, 2);
    queue.delete(&second[0].receipt).await.expect("delete");
}

/// A message received too often goes to the dead-letter queue, where `depth` shows it.
async fn dead_letter_contract(queue: &dyn Queue) {
    queue
        .send("poison".into(), Duration::ZERO)
        .await
        .expect("send");
    for _ in 0..=MAX_RECEIVE_COUNT + 1 {
        for m in queue
            .receive(1, Duration::from_secs(30))
            .await
            .expect("receive")
        {
            queue
                .change_visibility(&m.receipt, Duration::ZERO)
                .await
                .expect("visibility");
        }
    }
    assert!(
        queue
            .receive(1, Duration::from_secs(1))
            .await
            .expect("receive")
            .is_empty()
    );
    let depth = queue.depth().await.expect("depth");
    assert_eq!(depth.dead_letters, 1, "{depth:?}");
}

#[tokio::test]
async fn local_store_and_queue_keep_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        LocalStore::open(&dir.path().join("store"), "http://127.0.0.1:8765").expect("store");
    store_contract(&store).await;
    let url = store
        .presign_get("a/b/two.xml", Duration::from_secs(60))
        .await
        .expect("presign");
    let query = url.split('?').nth(1).expect("query");
    let params: std::collections::HashMap<_, _> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let expires: u64 = params["expires"].parse().expect("expires");
    assert!(store.verify_signature("a/b/two.xml", expires, &params["signature"]));
    assert!(
        !store.verify_signature("a/one.json", expires, &params["signature"]),
        "bound to its key"
    );
    assert!(
        !store.verify_signature("a/b/two.xml", 1, &params["signature"]),
        "expired"
    );

    queue_contract(&LocalQueue::open(&dir.path().join("queues"), "contract").expect("queue")).await;
    dead_letter_contract(&LocalQueue::open(&dir.path().join("queues"), "poison").expect("queue"))
        .await;
}

/// A build without SQLite (the Lambda bootstrap's) keeps every object in files: the same
/// contract.
#[tokio::test]
async fn local_store_in_files_alone_keeps_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open_files_only(&dir.path().join("store"), "http://127.0.0.1:8765")
        .expect("store");
    store_contract(&store).await;
}

/// A data folder of an earlier version (every object a file) opens with every object there,
/// now in the database; opening it again changes nothing.
#[tokio::test]
async fn an_earlier_versions_files_move_into_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let old = LocalStore::open_files_only(&root, "http://127.0.0.1:8765").expect("store");
    for key in ["sources/a.json", "waf/a/x.xml", "packages/k.zip"] {
        old.put(
            key,
            Bytes::from(key.as_bytes().to_vec()),
            "text/plain",
            PutMode::Create,
        )
        .await
        .expect("put");
    }
    drop(old);
    for _ in 0..2 {
        let store = LocalStore::open(&root, "http://127.0.0.1:8765").expect("store");
        let keys: Vec<String> = store
            .list("")
            .await
            .expect("list")
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, ["packages/k.zip", "sources/a.json", "waf/a/x.xml"]);
        for key in &keys {
            assert_eq!(
                store.get(key).await.expect("get").body.as_ref(),
                key.as_bytes()
            );
        }
        assert!(
            !root.join("objects/sources").exists() && !root.join("objects/waf").exists(),
            "the moved files are gone"
        );
        assert!(store.file_path("packages/k.zip").expect("path").exists());
    }
}

/// Many tasks writing at once (the writes group-committed together) each get their own
/// outcome: one create of a key wins, and every update of a version read but one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_conditional_writes_to_the_local_store_have_one_winner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = std::sync::Arc::new(
        LocalStore::open(&dir.path().join("store"), "http://127.0.0.1:8765").expect("store"),
    );
    let etag = store
        .put(
            "race/u",
            Bytes::from_static(b"first"),
            "text/plain",
            PutMode::Create,
        )
        .await
        .expect("put");
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (store, etag) = (store.clone(), etag.clone());
            tokio::spawn(async move {
                let body = Bytes::from(format!("{i}"));
                let created = store
                    .put("race/c", body.clone(), "text/plain", PutMode::Create)
                    .await
                    .is_ok();
                let updated = store
                    .put("race/u", body, "text/plain", PutMode::Update(etag))
                    .await
                    .is_ok();
                (created, updated)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task"));
    }
    assert_eq!(
        outcomes.iter().filter(|(c, _)| *c).count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|(_, u)| *u).count(),
        1,
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn s3_sqs_and_ses_adapters_keep_the_contract_on_moto() {
    let moto = Moto::start();
    let store = moto.bucket("contract").await;
    store_contract(&store).await;
    let url = store
        .presign_get("a/b/two.xml", Duration::from_secs(300))
        .await
        .expect("presign");
    let fetched = reqwest::get(&url).await.expect("GET presigned");
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().await.expect("body").as_ref(), b"<x/>");

    queue_contract(&moto.queue("contract", 5).await).await;
    dead_letter_contract(&moto.queue("poison", MAX_RECEIVE_COUNT).await).await;

    // SES: what the endpoint received is the message we built. (A server of its own: moto's
    // data dump fails on some S3 models the store contract leaves behind.)
    let moto = Moto::start();
    let ses = aws_sdk_ses::Client::new(&moto.sdk_config().await);
    ses.verify_email_identity()
        .email_address("sheaf@example.org")
        .send()
        .await
        .expect("verify");
    let mailer = SesMailer::new(ses);
    let email = Email {
        from: "sheaf@example.org".into(),
        to: vec!["owner@example.org".into()],
        subject: "Harvest summary".into(),
        text: "3 errors".into(),
        html: Some("<p>3 errors</p>".into()),
    };
    mailer.send(&email).await.expect("send");
    let dump = reqwest::get(format!("{}/moto-api/data.json", moto.endpoint()))
        .await
        .expect("moto ses api")
        .text()
        .await
        .expect("body");
    let dump: serde_json::Value =
        serde_json::from_str(&dump).unwrap_or_else(|e| panic!("{e}: {dump}"));
    let received = dump["ses"]["RawMessage"].as_array().expect("raw messages");
    assert_eq!(received.len(), 1, "{received:?}");
    let raw = received[0]["raw_data"].as_str().expect("raw data");
    assert!(raw.contains("To: owner@example.org"), "{raw}");
    assert!(raw.contains("Subject: Harvest summary"), "{raw}");
    assert!(raw.contains("multipart/alternative"), "{raw}");
}

//! The search index on AWS (S3 in moto): the writer publishes each commit as a generation; a
//! reader loads the generation the manifest names, in a /tmp of its own; files a later
//! generation no longer names are removed one generation after, and nothing else is left.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::catalog::{S3Index, Search, SearchIndex};
use common::domain::record::Record;
use common::store::ObjectStore;
use support::Moto;

fn record(id: &str, title: &str) -> Record {
    support::test_record(id, title, "")
}

async fn titles(index: &S3Index) -> BTreeSet<String> {
    let hits = index
        .search(&Search {
            limit: 100,
            ..Search::default()
        })
        .await
        .expect("search");
    hits.records.into_iter().map(|r| r.metadata.title).collect()
}

#[tokio::test]
async fn readers_load_what_the_one_writer_published() {
    let moto = Moto::start();
    let store: Arc<dyn ObjectStore> = Arc::new(moto.bucket("sheaf-index-test").await);
    let tmp = tempfile::tempdir().expect("tempdir");
    let writer = S3Index::new(store.clone(), &tmp.path().join("writer"));

    // Nothing published yet: an empty index.
    let reader = S3Index::new(store.clone(), &tmp.path().join("reader-0"));
    assert_eq!(reader.count().await.unwrap(), 0);

    writer
        .apply(vec![record("a", "Alpha"), record("b", "Beta")], vec![])
        .await
        .unwrap();
    writer
        .apply(vec![record("c", "Gamma")], vec![])
        .await
        .unwrap();
    let reader = S3Index::new(store.clone(), &tmp.path().join("reader-1"));
    assert_eq!(
        titles(&reader).await,
        ["Alpha", "Beta", "Gamma"].map(String::from).into()
    );

    // A writer started afresh (a new Lambda instance) continues from the published index.
    let writer = S3Index::new(store.clone(), &tmp.path().join("writer-2"));
    writer
        .apply(vec![record("a", "Alpha, revised")], vec!["b".into()])
        .await
        .unwrap();
    for _ in 0..3 {
        writer
            .apply(vec![record("d", "Delta")], vec![])
            .await
            .unwrap();
    }
    let reader = S3Index::new(store.clone(), &tmp.path().join("reader-2"));
    assert_eq!(
        titles(&reader).await,
        ["Alpha, revised", "Delta", "Gamma"]
            .map(String::from)
            .into()
    );

    // Only the files of the last generation, and those it retired, are left.
    assert_eq!(
        stored_index_files(&store).await,
        expected_index_files(&store).await
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&store.get("index/manifest.json").await.unwrap().body).unwrap();
    assert_eq!(manifest["generation"], 6);
}

/// The index's objects in the store.
async fn stored_index_files(store: &Arc<dyn ObjectStore>) -> BTreeSet<String> {
    store
        .list("index/")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect()
}

/// The objects the manifest names: its generation's files, those it retired, and itself.
async fn expected_index_files(store: &Arc<dyn ObjectStore>) -> BTreeSet<String> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&store.get("index/manifest.json").await.unwrap().body).unwrap();
    let mut expected: BTreeSet<String> = manifest["files"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    expected.extend(
        manifest["retired"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string()),
    );
    expected.insert("index/manifest.json".into());
    expected
}

/// Tantivy merges segments in the background while the writer uploads a commit: every
/// generation published must still be whole (the segments its meta names all uploaded, none
/// half-written), and a fresh reader finds every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_published_while_segments_merge_stay_whole() {
    let moto = Moto::start();
    let store: Arc<dyn ObjectStore> = Arc::new(moto.bucket("sheaf-index-merges").await);
    let tmp = tempfile::tempdir().expect("tempdir");
    let writer = S3Index::new(store.clone(), &tmp.path().join("writer"));
    const COMMITS: usize = 48;
    const A_COMMIT: usize = 20;
    for commit in 0..COMMITS {
        let records = (0..A_COMMIT)
            .map(|i| {
                let id = format!("r{commit}-{i}");
                record(&id, &format!("Record {id}"))
            })
            .collect();
        writer
            .apply(records, vec![])
            .await
            .expect("a commit published");
        // The generation just published names every file of every segment its meta names.
        let manifest: serde_json::Value =
            serde_json::from_slice(&store.get("index/manifest.json").await.unwrap().body).unwrap();
        let files = manifest["files"].as_object().unwrap();
        let meta_key = files["meta.json"].as_str().unwrap();
        let meta: serde_json::Value =
            serde_json::from_slice(&store.get(meta_key).await.unwrap().body).unwrap();
        for segment in meta["segments"].as_array().unwrap() {
            let id = segment["segment_id"].as_str().unwrap().replace('-', "");
            for ext in ["idx", "term", "store", "fast", "fieldnorm"] {
                let name = format!("{id}.{ext}");
                let key = files.get(&name).unwrap_or_else(|| {
                    panic!("generation {} lacks {name}", manifest["generation"])
                });
                assert!(store.get(key.as_str().unwrap()).await.is_ok(), "{name}");
            }
        }
        // And a reader loading it (as the API function does) finds every record so far.
        let reader = S3Index::new(store.clone(), &tmp.path().join(format!("reader-{commit}")));
        let hits = reader
            .search(&Search {
                limit: 5,
                ..Search::default()
            })
            .await
            .expect("the published generation reads");
        assert_eq!(hits.total, ((commit + 1) * A_COMMIT) as u64);
    }
    // No upload that started again left a file behind.
    assert_eq!(
        stored_index_files(&store).await,
        expected_index_files(&store).await
    );
}

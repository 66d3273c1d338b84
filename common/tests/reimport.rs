//! `sheaf import`: the documents kept in the central WAF imported again without fetching (the
//! source's server is gone while it runs), records put back, nothing removed.

mod support;

use common::catalog::get_record;
use common::domain::job::JobStatus;
use common::domain::keys;
use common::pipeline::{JobOptions, run_test, run_test_with};
use common::sources::add_source;
use support::*;

#[tokio::test]
async fn a_reimport_rebuilds_records_from_the_kept_documents_without_fetching() {
    let site = tempfile::tempdir().expect("tempdir");
    let waf = site.path().join("waf");
    std::fs::create_dir_all(&waf).expect("mkdir");
    let records = workspace_root().join("tests/records/waf");
    for (from, to) in [
        ("iso19139/glider-mission.xml", "glider.xml"),
        ("iso19139/coastal-erosion.xml", "coastal.xml"),
        ("bad/no-title.xml", "no-title.xml"),
    ] {
        std::fs::copy(records.join(from), waf.join(to)).expect("copy");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let services = local_services(dir.path());
    let nginx = Nginx::serve(site.path());
    add_source(
        services.store.as_ref(),
        waf_source("kept", nginx.url("/waf/")),
    )
    .await
    .expect("source");
    let quiet = |_: u64, _: Option<u64>| {};
    let first = run_test(&services, "kept", &quiet).await.expect("harvest");
    assert_eq!(
        (first.stats.added, first.stats.errored),
        (2, 1),
        "{:?}",
        first.stats
    );
    let ids: Vec<String> = catalogue_ids(&services, "kept").await.into_iter().collect();
    let before = get_record(services.store.as_ref(), &ids[0])
        .await
        .expect("record");

    // The server goes away; one record is lost from the catalogue.
    drop(nginx);
    services
        .store
        .delete(&keys::record_json(&keys::id_key(&ids[1])))
        .await
        .expect("delete");
    let reimport = JobOptions {
        reimport: true,
        ..JobOptions::default()
    };
    let job = run_test_with(&services, "kept", reimport, &quiet)
        .await
        .expect("reimport");
    assert_eq!(job.status, JobStatus::Finished);
    assert!(job.reimport);
    assert!(job.gather_errors.is_empty(), "{:?}", job.gather_errors);
    assert_eq!(
        (
            job.stats.updated,
            job.stats.added,
            job.stats.errored,
            job.stats.deleted
        ),
        (1, 1, 1, 0),
        "{:?} {:?}",
        job.stats,
        job.object_errors
    );
    assert!(
        job.object_errors[0].message.contains("no title"),
        "{:?}",
        job.object_errors
    );
    let after = get_record(services.store.as_ref(), &ids[0])
        .await
        .expect("record");
    assert_eq!(after.metadata, before.metadata);
    get_record(services.store.as_ref(), &ids[1])
        .await
        .expect("the lost record is back");

    // A kept copy gone: that document is an error of the re-import, and nothing is removed.
    let state = services
        .store
        .list(&keys::document_states("kept"))
        .await
        .expect("states");
    let mut removed_copy = None;
    for entry in state {
        let body = services.store.get(&entry.key).await.expect("state").body;
        let state: common::domain::job::DocumentState =
            serde_json::from_slice(&body).expect("state json");
        if state.record_id.as_deref() == Some(ids[1].as_str()) {
            services
                .store
                .delete(&state.waf_key)
                .await
                .expect("delete copy");
            removed_copy = Some(state.waf_key);
        }
    }
    let removed_copy = removed_copy.expect("the record's document state");
    let job = run_test_with(&services, "kept", reimport, &quiet)
        .await
        .expect("reimport");
    assert_eq!(
        (job.stats.updated, job.stats.errored, job.stats.deleted),
        (1, 2, 0),
        "{:?}",
        job.stats
    );
    assert!(
        job.object_errors
            .iter()
            .any(|e| e.message.contains(&removed_copy)),
        "{:?}",
        job.object_errors
    );
    assert_eq!(catalogue_ids(&services, "kept").await.len(), 2);
}

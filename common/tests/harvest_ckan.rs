//! CKAN harvests against ckanext-harvest's own mock CKAN (tests/mock_ckan_server.py), locally
//! and on moto: every dataset arrives, field by field as `package_show` gives it; the next
//! harvest is incremental and deletes nothing it did not list; a failing search page deletes
//! nothing; datasets added while paging come once; and each of the CKAN harvester's options
//! does what ckanext-harvest's users expect of it.

mod support;

use std::collections::BTreeSet;

use common::catalog::get_record;
use common::domain::job::{Job, JobStatus};
use common::domain::record::{Extra, Metadata, Record};
use common::domain::source::SourceType;
use common::parse::read_package;
use common::pipeline::{JobOptions, run_test_with};
use common::services::Services;
use common::sources::{NewSource, add_source};
use serde_json::{Value, json};
use support::*;

const SOURCE: &str = "test-ckan";
/// The mock's two datasets (its `DATASETS`).
const DATASET1: &str = "dataset1-id";
const CABINET: &str = "1c65c66a-fdec-4138-9c64-0f9bf087bcbb";

fn ckan_source(url: &str, config: Value) -> NewSource {
    NewSource {
        source_type: SourceType::Ckan,
        title: Some("Remote portal".into()),
        config: Some(config),
        ..waf_source(SOURCE, url)
    }
}

async fn harvest(services: &Services) -> Job {
    let job = run_test_with(services, SOURCE, JobOptions::default(), &|_: u64,
                                                                       _: Option<
        u64,
    >| {})
    .await
    .expect("harvest");
    assert_eq!(job.status, JobStatus::Finished, "{job:?}");
    job
}

async fn record(services: &Services, id: &str) -> Record {
    get_record(services.store.as_ref(), id)
        .await
        .expect("record")
}

/// The dataset as the mock serves it, read as Sheaf reads a package with no options set:
/// remote groups and organization are not kept.
async fn served(ckan: &MockCkan, id: &str) -> Metadata {
    let package = ckan.package(id).await;
    let mut metadata = read_package(package.to_string().as_bytes()).expect("a dataset");
    let fields = metadata.ckan.as_mut().expect("CKAN fields");
    fields.groups.clear();
    fields.organization = None;
    metadata
}

/// A source over a fresh mock CKAN with `config`, harvested once.
async fn harvested(config: Value, scenario: Option<&str>) -> (tempfile::TempDir, MockCkan, Job) {
    let dir = tempfile::tempdir().expect("tempdir");
    let services = local_services(dir.path());
    let ckan = MockCkan::start();
    add_source(
        services.store.as_ref(),
        ckan_source(&ckan.url(scenario), config),
    )
    .await
    .expect("add source");
    let job = harvest(&services).await;
    (dir, ckan, job)
}

fn services_of(dir: &tempfile::TempDir) -> Services {
    local_services(dir.path())
}

fn searches(ckan: &MockCkan) -> Vec<String> {
    ckan.requests()
        .into_iter()
        .map(|r| r.path)
        .filter(|p| p.contains("package_search"))
        .collect()
}

async fn every_dataset_then_incremental(services: &Services) {
    let ckan = MockCkan::start();
    add_source(
        services.store.as_ref(),
        ckan_source(&ckan.url(None), json!({})),
    )
    .await
    .expect("add source");

    let first = harvest(services).await;
    assert!(first.gather_errors.is_empty(), "{:?}", first.gather_errors);
    assert_eq!(first.stats.added, 2, "{:?}", first.stats);
    assert_eq!(first.stats.errored, 0, "{:?}", first.object_errors);
    assert_eq!(first.changed_since, None);
    let both: BTreeSet<String> = [DATASET1, CABINET].map(String::from).into();
    assert_eq!(catalogue_ids(services, SOURCE).await, both);

    for id in [DATASET1, CABINET] {
        let record = record(services, id).await;
        assert_eq!(record.metadata, served(&ckan, id).await, "dataset {id}");
        assert_eq!(record.source, SOURCE);
        assert_eq!(
            record.original_url,
            format!("{}/dataset/{id}", ckan.url(None))
        );
        // The central WAF keeps the dataset itself, not the API's answer around it.
        let kept = services
            .store
            .get(&format!("waf/{SOURCE}/{id}.json"))
            .await
            .expect("WAF copy");
        let kept: Value = serde_json::from_slice(&kept.body).expect("JSON");
        assert_eq!(kept, ckan.package(id).await);
    }
    // What a CKAN user checks on the two datasets.
    let cabinet = record(services, CABINET).await.metadata;
    assert_eq!(cabinet.title, "Cabinet Office 70 Whitehall energy use");
    assert_eq!(cabinet.keywords, ["consumption", "energy"]);
    assert_eq!(
        cabinet.links[0].url,
        "http://data.carbonculture.net/orgs/cabinet-office/70-whitehall/reports/elec00.csv"
    );
    assert_eq!(cabinet.links[0].protocol.as_deref(), Some("CSV"));
    assert_eq!(
        cabinet.modified.as_deref(),
        Some("2014-05-09T22:00:01.486366")
    );
    assert_eq!(
        cabinet.contacts[0].organisation.as_deref(),
        Some("Cabinet Office")
    );
    let dataset1 = record(services, DATASET1).await.metadata;
    assert_eq!(
        (dataset1.title.as_str(), dataset1.keywords.as_slice()),
        ("Test Dataset1", ["test-tag".to_string()].as_slice())
    );

    // The next harvest asks only for what changed since the first began (less an hour), as
    // ckanext-harvest does; the mock answers with the second dataset alone.
    let before = searches(&ckan).len();
    let second = harvest(services).await;
    let asked = searches(&ckan)[before..].to_vec();
    assert!(
        asked[0].contains("metadata_modified%3A%5B") && asked[0].contains("+TO+*%5D"),
        "{asked:?}"
    );
    assert!(second.changed_since.is_some(), "{second:?}");
    assert_eq!(
        (
            second.stats.unchanged,
            second.stats.added,
            second.stats.deleted
        ),
        (1, 0, 0),
        "{:?}",
        second.stats
    );
    // The dataset it did not list is still there: an incremental listing deletes nothing.
    assert_eq!(catalogue_ids(services, SOURCE).await, both);
}

in_local_mode_and_on_moto!(
    a_ckan_harvest_brings_every_dataset_then_only_what_changed_locally,
    a_ckan_harvest_brings_every_dataset_then_only_what_changed_on_moto,
    every_dataset_then_incremental
);

/// nginx in front of the mock answers 500 to the second search page: the gather fails after
/// its retries and nothing is deleted, though the first page lists only one dataset. The mock's
/// own `site_down` (500 to everything) ends the same way.
#[tokio::test]
async fn a_search_page_failing_mid_harvest_deletes_nothing() {
    let (dir, ckan, first) = harvested(json!({"force_all": true}), Some("datasets_added")).await;
    let services = services_of(&dir);
    assert_eq!(first.stats.added, 2, "{:?}", first.stats);

    let empty = tempfile::tempdir().expect("tempdir");
    let proxy = Nginx::serve_with(
        empty.path(),
        &format!(
            "if ($arg_start = 100) {{ return 500; }} proxy_pass http://127.0.0.1:{};",
            ckan.port
        ),
    );
    point_source_at(&services, SOURCE, proxy.url("/datasets_added")).await;
    let failed = harvest(&services).await;
    assert!(
        failed
            .gather_errors
            .iter()
            .any(|e| e.message.contains("500")),
        "{:?}",
        failed.gather_errors
    );
    assert_eq!(failed.stats.deleted, 0, "{:?}", failed.stats);
    assert_eq!(catalogue_ids(&services, SOURCE).await.len(), 2);

    point_source_at(&services, SOURCE, ckan.url(Some("site_down"))).await;
    let down = harvest(&services).await;
    assert!(
        down.gather_errors.iter().any(|e| e.message.contains("500")),
        "{:?}",
        down.gather_errors
    );
    assert_eq!(catalogue_ids(&services, SOURCE).await.len(), 2);
}

/// The mock's `datasets_added`: a dataset added while the harvest pages moves the first one
/// onto the second page too. Each dataset is harvested once, and the gather reads on past a
/// page with fewer rows than asked (the count of a page is not the end).
#[tokio::test]
async fn datasets_added_while_paging_arrive_once() {
    let (dir, ckan, job) = harvested(json!({}), Some("datasets_added")).await;
    assert_eq!(job.object_count, Some(2), "{job:?}");
    assert_eq!((job.stats.added, job.stats.errored), (2, 0), "{job:?}");
    assert_eq!(searches(&ckan).len(), 3);
    assert_eq!(catalogue_ids(&services_of(&dir), SOURCE).await.len(), 2);
}

/// A full harvest (`force_all`) deletes the record of a dataset the portal no longer lists; an
/// incremental one never does. The organization filter makes the portal list one dataset.
#[tokio::test]
async fn force_all_lists_every_dataset_and_removes_what_left() {
    let (dir, ckan, first) = harvested(json!({"force_all": true}), None).await;
    let services = services_of(&dir);
    assert_eq!(first.stats.added, 2);
    let second = harvest(&services).await;
    assert_eq!(second.changed_since, None);
    assert_eq!(second.stats.unchanged, 2, "{:?}", second.stats);
    assert!(
        searches(&ckan)
            .iter()
            .all(|s| !s.contains("metadata_modified")),
        "{:?}",
        searches(&ckan)
    );

    // Now the portal lists only org1's dataset: half of the last count, which the shrink
    // guard accepts at its default of 50 %.
    let config = json!({"force_all": true, "organizations_filter_include": ["org1"]});
    common::sources::patch_source(
        services.store.as_ref(),
        SOURCE,
        common::sources::SourcePatch {
            config: Some(config),
            ..Default::default()
        },
    )
    .await
    .expect("patch");
    let third = harvest(&services).await;
    assert_eq!(third.stats.deleted, 1, "{:?}", third.stats);
    assert_eq!(
        catalogue_ids(&services, SOURCE).await,
        [DATASET1.to_string()].into()
    );
}

#[tokio::test]
async fn organization_and_group_filters_narrow_the_search() {
    for (config, expected) in [
        (json!({"organizations_filter_include": ["org1"]}), DATASET1),
        (json!({"organizations_filter_exclude": ["org1"]}), CABINET),
        (json!({"groups_filter_include": ["group1"]}), DATASET1),
        (json!({"groups_filter_exclude": ["group1"]}), CABINET),
    ] {
        let (dir, _ckan, job) = harvested(config.clone(), None).await;
        assert!(
            job.gather_errors.is_empty(),
            "{config}: {:?}",
            job.gather_errors
        );
        assert_eq!(
            catalogue_ids(&services_of(&dir), SOURCE).await,
            [expected.to_string()].into(),
            "{config}"
        );
    }
}

#[tokio::test]
async fn default_tags_groups_and_extras_are_added() {
    let config = json!({
        "api_version": 1,
        "default_tags": ["new-tag-1", {"name": "new-tag-2"}, "energy"],
        "default_groups": ["my-own-group"],
        "default_extras": {
            "theme-primary": "Overridden",
            "harvest_url": "{harvest_source_url}/dataset/{dataset_id}",
            "from": "{harvest_source_title} ({harvest_source_id})",
            "rank": 3
        }
    });
    let (dir, ckan, job) = harvested(config, None).await;
    assert_eq!(job.stats.added, 2, "{:?}", job.object_errors);
    // `api_version` is accepted and changes nothing: the action API answers on every CKAN.
    assert!(
        searches(&ckan)
            .iter()
            .all(|s| s.starts_with("/api/3/action/"))
    );
    let services = services_of(&dir);
    let cabinet = record(&services, CABINET).await.metadata;
    assert_eq!(
        cabinet.keywords,
        ["consumption", "energy", "new-tag-1", "new-tag-2"]
    );
    let fields = cabinet.ckan.expect("CKAN fields");
    // Remote groups are dropped (no `remote_groups`); the default group is added.
    assert_eq!(fields.groups, ["my-own-group"]);
    let extra = |key: &str| {
        fields
            .extras
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.clone())
    };
    // Without `override_extras` the dataset's own value stays.
    assert_eq!(extra("theme-primary"), Some(json!("Towns & Cities")));
    assert_eq!(
        extra("harvest_url"),
        Some(json!(format!("{}/dataset/{CABINET}", ckan.url(None))))
    );
    assert_eq!(
        extra("from"),
        Some(json!(format!("Remote portal ({SOURCE})")))
    );
    assert_eq!(extra("rank"), Some(json!(3)));

    let (dir, _ckan, _job) = harvested(
        json!({"default_extras": {"theme-primary": "Overridden"}, "override_extras": true}),
        None,
    )
    .await;
    let fields = record(&services_of(&dir), CABINET)
        .await
        .metadata
        .ckan
        .expect("CKAN fields");
    let themes: Vec<&Extra> = fields
        .extras
        .iter()
        .filter(|e| e.key == "theme-primary")
        .collect();
    assert_eq!(themes.len(), 1);
    assert_eq!(themes[0].value, json!("Overridden"));
}

#[tokio::test]
async fn remote_groups_and_organizations_are_kept_as_configured() {
    let (dir, _ckan, _) = harvested(
        json!({"remote_groups": "create", "remote_orgs": "create"}),
        None,
    )
    .await;
    let services = services_of(&dir);
    let cabinet = record(&services, CABINET).await.metadata.ckan.unwrap();
    assert_eq!(cabinet.groups, ["remote-group"]);
    assert_eq!(cabinet.organization.as_deref(), Some("cabinet-office"));
    let dataset1 = record(&services, DATASET1).await.metadata.ckan.unwrap();
    assert_eq!(dataset1.groups, ["group1"]);
    // A dataset without its organization's details names it by its id.
    assert_eq!(
        dataset1.organization.as_deref(),
        Some("0f8380d6-241a-47de-aa52-8bd91c763d97")
    );

    // `only_local`: the remote groups Sheaf knows (those of `default_groups`) stay, others go;
    // an organization stays only when the source includes it by name.
    let (dir, _ckan, _) = harvested(
        json!({"remote_groups": "only_local", "default_groups": ["group1"], "remote_orgs": "only_local"}),
        None,
    )
    .await;
    let services = services_of(&dir);
    let cabinet = record(&services, CABINET).await.metadata.ckan.unwrap();
    assert_eq!(cabinet.groups, ["group1"]);
    assert_eq!(cabinet.organization, None);
    let dataset1 = record(&services, DATASET1).await.metadata.ckan.unwrap();
    assert_eq!(dataset1.groups, ["group1"]);

    // Unset: neither is kept.
    let (dir, _ckan, _) = harvested(json!({}), None).await;
    let cabinet = record(&services_of(&dir), CABINET)
        .await
        .metadata
        .ckan
        .unwrap();
    assert!(cabinet.groups.is_empty());
    assert_eq!(cabinet.organization, None);
}

/// The mock's `invalid_tag` serves the tag `consumption%^&`: `clean_tags` munges it as CKAN
/// would; without it the tag is kept as the portal wrote it.
#[tokio::test]
async fn clean_tags_munges_tags() {
    let (dir, _ckan, job) = harvested(json!({"clean_tags": true}), Some("invalid_tag")).await;
    assert_eq!(job.stats.errored, 0, "{:?}", job.object_errors);
    let cabinet = record(&services_of(&dir), CABINET).await.metadata;
    assert_eq!(cabinet.keywords, ["consumption"]);

    let (dir, _ckan, _job) = harvested(json!({}), Some("invalid_tag")).await;
    let cabinet = record(&services_of(&dir), CABINET).await.metadata;
    assert_eq!(cabinet.keywords, ["consumption%^&"]);
}

/// `api_key` and `user_agent` go with every request to the portal, and the key is in no job,
/// record or log entry; `user` and `read_only` are kept on each record.
#[tokio::test]
async fn the_api_key_goes_to_the_portal_and_nowhere_else() {
    let key = "a1b2c3d4-secret-key";
    let config = json!({
        "api_key": key, "user_agent": "portal-harvester/1.0",
        "user": "harvest-bot", "read_only": true
    });
    let (dir, ckan, job) = harvested(config, None).await;
    assert_eq!(job.stats.added, 2, "{:?}", job.object_errors);
    let requests = ckan.requests();
    assert!(requests.len() >= 4, "{requests:?}");
    for request in &requests {
        assert_eq!(
            request.authorization.as_deref(),
            Some(key),
            "{}",
            request.path
        );
        assert_eq!(
            request.user_agent.as_deref(),
            Some("portal-harvester/1.0"),
            "{}",
            request.path
        );
    }
    let services = services_of(&dir);
    let cabinet = record(&services, CABINET).await;
    let fields = cabinet.metadata.ckan.as_ref().unwrap();
    assert_eq!(fields.user.as_deref(), Some("harvest-bot"));
    assert!(fields.read_only);
    let log = common::harvest_log::list(services.store.as_ref(), None, 1000, 0)
        .await
        .expect("log");
    let written = format!(
        "{} {} {}",
        serde_json::to_string(&job).unwrap(),
        serde_json::to_string(&cabinet).unwrap(),
        serde_json::to_string(&log).unwrap()
    );
    assert!(!written.contains(key), "{written}");
}

#[tokio::test]
async fn a_bad_config_is_refused_naming_its_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let services = local_services(dir.path());
    for (config, field) in [
        (json!({"default_tags": "a,b"}), "config.default_tags"),
        (json!({"force_all": "yes"}), "config.force_all"),
        (json!({"remote_orgs": "all"}), "config.remote_orgs"),
        (
            json!({"default_extras": {"u": "{harvest_job}"}}),
            "config.default_extras.u",
        ),
    ] {
        let err = add_source(
            services.store.as_ref(),
            ckan_source("http://127.0.0.1:9/", config.clone()),
        )
        .await
        .expect_err("refused");
        assert!(err.to_string().contains(field), "{config}: {err}");
    }
}

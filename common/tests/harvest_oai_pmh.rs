//! OAI-PMH harvests against a real repository (pycsw's `?mode=oaipmh`, tests/pycsw_server.py),
//! locally and on moto: every record arrives as the repository's GetRecord gives it, in ISO
//! 19139 when ListMetadataFormats offers it, or in oai_dc when asked; paging by resumption
//! token (pycsw wants the prefix beside the token and ends with the token "0"); a re-harvest is
//! incremental and unchanged; a record the repository drops is deleted by a full harvest. Then
//! servers served as files by nginx: deleted headers, a token refused without its prefix, an
//! error answer, and an incremental harvest removing what the repository says it deleted.

mod support;

use std::collections::BTreeSet;

use common::catalog::get_record;
use common::domain::job::{Job, JobStatus};
use common::domain::record::{Metadata, RecordFormat};
use common::domain::source::SourceType;
use common::parse::{XmlLimits, read_metadata};
use common::pipeline::{JobOptions, run_test_with};
use common::services::Services;
use common::sources::{NewSource, add_source};
use support::*;

const SOURCE: &str = "test-oai";

fn oai_source(url: &str, config: serde_json::Value) -> NewSource {
    NewSource {
        source_type: SourceType::OaiPmh,
        config: Some(config),
        ..waf_source(SOURCE, url)
    }
}

fn oai_url(server: &Pycsw) -> String {
    format!("{}?mode=oaipmh", server.url())
}

async fn harvest(services: &Services) -> Job {
    run_test_with(services, SOURCE, JobOptions::default(), &|_: u64,
                                                             _: Option<
        u64,
    >| {})
    .await
    .expect("harvest")
}

/// The record as the repository gives it (GetRecord in `prefix`), read as Sheaf reads it.
async fn served_record(server: &Pycsw, id: &str, prefix: &str) -> Metadata {
    let url = reqwest::Url::parse_with_params(
        &oai_url(server),
        [
            ("verb", "GetRecord"),
            ("identifier", id),
            ("metadataPrefix", prefix),
        ],
    )
    .unwrap();
    let body = reqwest::get(url)
        .await
        .expect("GetRecord")
        .bytes()
        .await
        .unwrap();
    let record = common::harvest::unwrap_oai_record(&body).expect("the repository holds it");
    read_metadata(&record, XmlLimits::default()).expect("readable")
}

async fn harvests_follow_the_repository(services: &Services) {
    let dir = tempfile::tempdir().expect("tempdir");
    let held = catalogue_records(&dir.path().join("records"), &[]);
    // Three records a page: the listing follows resumption tokens.
    let server = Pycsw::serve(&dir.path().join("records"), 3);
    add_source(
        services.store.as_ref(),
        oai_source(&oai_url(&server), serde_json::json!({})),
    )
    .await
    .expect("add source");

    let job = harvest(services).await;
    assert_eq!(job.status, JobStatus::Finished, "{job:?}");
    assert!(job.gather_errors.is_empty(), "{:?}", job.gather_errors);
    assert_eq!(
        job.stats.added,
        held.len() as u64,
        "{:?} {:?}",
        job.stats,
        job.object_errors
    );
    let expected: BTreeSet<String> = held.iter().map(|m| m.id.clone()).collect();
    assert_eq!(catalogue_ids(services, SOURCE).await, expected);
    for original in &held {
        let record = get_record(services.store.as_ref(), &original.id)
            .await
            .expect("record");
        // pycsw offers iso19139 (the gmd namespace): that is what was asked for.
        assert!(
            record.original_url.contains("metadataPrefix=iso19139"),
            "{}",
            record.original_url
        );
        let served = served_record(&server, &original.id, "iso19139").await;
        assert_eq!(record.metadata, served, "record {}", original.id);
        if original.format == RecordFormat::Iso19139 {
            assert_eq!(&record.metadata, original, "record {}", original.id);
        }
    }

    // The next harvest is incremental (`from` the day before the first began); pycsw's
    // records carry no date it filters on, so it answers every record again.
    let again = harvest(services).await;
    assert!(again.changed_since.is_some(), "{again:?}");
    assert_eq!(
        again.stats.unchanged,
        held.len() as u64,
        "{:?}",
        again.stats
    );

    // pycsw keeps no deletions: only a full listing (`force_all`) sees a record it dropped.
    let gone = held[2].id.clone();
    let fewer_dir = tempfile::tempdir().expect("tempdir");
    catalogue_records(fewer_dir.path(), &[&gone]);
    let fewer = Pycsw::serve(fewer_dir.path(), 3);
    point_source_at(services, SOURCE, oai_url(&fewer)).await;
    let incremental = harvest(services).await;
    assert_eq!(incremental.stats.deleted, 0, "{:?}", incremental.stats);
    assert_eq!(catalogue_ids(services, SOURCE).await, expected);
    common::sources::patch_source(
        services.store.as_ref(),
        SOURCE,
        common::sources::SourcePatch {
            config: Some(serde_json::json!({"force_all": true})),
            ..Default::default()
        },
    )
    .await
    .expect("patch");
    let third = harvest(services).await;
    assert_eq!(third.changed_since, None);
    assert_eq!(third.stats.deleted, 1, "{:?}", third.stats);
    let mut left = expected;
    left.remove(&gone);
    assert_eq!(catalogue_ids(services, SOURCE).await, left);
}

in_local_mode_and_on_moto!(
    an_oai_pmh_harvest_follows_the_repository_locally,
    an_oai_pmh_harvest_follows_the_repository_on_moto,
    harvests_follow_the_repository
);

/// `metadata_prefix: oai_dc` harvests Dublin Core, each record as the repository gives it.
#[tokio::test]
async fn oai_dc_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let services = local_services(dir.path());
    let held = catalogue_records(&dir.path().join("records"), &[]);
    let server = Pycsw::serve(&dir.path().join("records"), 10);
    add_source(
        services.store.as_ref(),
        oai_source(
            &oai_url(&server),
            serde_json::json!({"metadata_prefix": "oai_dc"}),
        ),
    )
    .await
    .expect("add source");
    let job = harvest(&services).await;
    assert_eq!(
        job.stats.added,
        held.len() as u64,
        "{:?} {:?}",
        job.stats,
        job.object_errors
    );
    for original in &held {
        let record = get_record(services.store.as_ref(), &original.id)
            .await
            .expect("record");
        assert_eq!(record.metadata.format, RecordFormat::DublinCore);
        assert_eq!(
            record.metadata,
            served_record(&server, &original.id, "oai_dc").await
        );
    }
}

/// One ListRecords answer as a file nginx serves for a request (see `quirky_repository`).
/// `token` with its `cursor` and `completeListSize` when given.
fn list_records(records: &[(&str, bool)], token: Option<(&str, Option<(u64, u64)>)>) -> String {
    let records: String = records
        .iter()
        .map(|(id, deleted)| {
            if *deleted {
                format!(r#"<record><header status="deleted"><identifier>{id}</identifier><datestamp>2020-01-01</datestamp></header></record>"#)
            } else {
                format!(r#"<record><header><identifier>{id}</identifier><datestamp>2020-01-01</datestamp></header><metadata><oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:identifier>{id}</dc:identifier><dc:title>{id}</dc:title></oai_dc:dc></metadata></record>"#)
            }
        })
        .collect();
    let token = match token {
        None => String::new(),
        Some((t, None)) => format!("<resumptionToken>{t}</resumptionToken>"),
        Some((t, Some((cursor, size)))) => format!(
            r#"<resumptionToken cursor="{cursor}" completeListSize="{size}">{t}</resumptionToken>"#
        ),
    };
    format!(
        r#"<?xml version="1.0"?><OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/"><responseDate>2020-01-01T00:00:00Z</responseDate><request verb="ListRecords">x</request><ListRecords>{records}{token}</ListRecords></OAI-PMH>"#
    )
}

/// A GetRecord answer holding an oai_dc record titled `title`, its identifier as its subject.
fn get_record_answer(id: &str, title: &str) -> String {
    format!(
        r#"<?xml version="1.0"?><OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/"><responseDate>2020-01-01T00:00:00Z</responseDate><request verb="GetRecord">x</request><GetRecord><record><header><identifier>{id}</identifier><datestamp>2020-01-01</datestamp></header><metadata><oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:identifier>{id}</dc:identifier><dc:title>{title}</dc:title><dc:subject>{id}</dc:subject></oai_dc:dc></metadata></record></GetRecord></OAI-PMH>"#
    )
}

/// A repository as files under `dir` (see `list_records`), added as the source with `config`:
/// the ListRecords answers named in `listings` (file name, body) and a GetRecord answer for
/// each of a, b and c; nginx picks the file by verb, token and identifier, after `first_rule`
/// (an nginx rule tried before that one, or nothing). Returns the files' folder and nginx.
async fn file_repository(
    services: &Services,
    dir: &std::path::Path,
    listings: &[(&str, String)],
    first_rule: &str,
    config: serde_json::Value,
) -> (std::path::PathBuf, Nginx) {
    let site = dir.join("site/repo");
    std::fs::create_dir_all(&site).unwrap();
    for (name, body) in listings {
        std::fs::write(site.join(name), body).unwrap();
    }
    for id in ["a", "b", "c"] {
        std::fs::write(
            site.join(format!("GetRecord-{id}.xml")),
            get_record_answer(id, id),
        )
        .unwrap();
    }
    let nginx = Nginx::serve_with(
        &dir.join("site"),
        &format!(
            "{first_rule}\n rewrite ^/([a-z]+)/oai$ /$1/$arg_verb-$arg_resumptionToken$arg_identifier.xml break;"
        ),
    );
    add_source(
        services.store.as_ref(),
        oai_source(&nginx.url("/repo/oai"), config),
    )
    .await
    .expect("add source");
    (site, nginx)
}

/// A repository as files: the full listing names a, b and c; asked `from` a date, it names b
/// (changed) and c under a deleted header. The incremental harvest updates b, removes c, and
/// keeps a, which it did not list.
#[tokio::test]
async fn an_incremental_harvest_removes_what_the_repository_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let services = local_services(dir.path());
    let (site, _nginx) = file_repository(
        &services,
        dir.path(),
        &[
            (
                "ListRecords-.xml",
                list_records(&[("a", false), ("b", false), ("c", false)], None),
            ),
            (
                "ListRecords-since.xml",
                list_records(&[("b", false), ("c", true)], None),
            ),
        ],
        r#"if ($arg_from != "") { rewrite ^/([a-z]+)/oai$ /$1/$arg_verb-since.xml break; }"#,
        serde_json::json!({"metadata_prefix": "oai_dc", "default_tags": ["harvested", {"name": "a"}]}),
    )
    .await;
    let first = harvest(&services).await;
    // Every source type takes `default_tags`; a tag the record has already is not repeated.
    let a = get_record(services.store.as_ref(), "a").await.expect("a");
    assert_eq!(a.metadata.keywords, ["a", "harvested"]);
    assert_eq!(
        (first.stats.added, first.changed_since.as_deref()),
        (3, None),
        "{first:?}"
    );

    std::fs::write(
        site.join("GetRecord-b.xml"),
        get_record_answer("b", "b, revised"),
    )
    .unwrap();
    let second = harvest(&services).await;
    assert!(
        second.gather_errors.is_empty(),
        "{:?}",
        second.gather_errors
    );
    let started = chrono::DateTime::parse_from_rfc3339(first.started.as_deref().unwrap()).unwrap();
    let day_before = (started - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(second.changed_since.as_deref(), Some(day_before.as_str()));
    assert_eq!(
        (
            second.stats.updated,
            second.stats.deleted,
            second.stats.added
        ),
        (1, 1, 0),
        "{:?}",
        second.stats
    );
    assert_eq!(
        catalogue_ids(&services, SOURCE).await,
        ["a".to_string(), "b".to_string()].into()
    );
    let b = get_record(services.store.as_ref(), "b").await.expect("b");
    assert_eq!(b.metadata.title, "b, revised");
    // The deleted record's kept document is gone from the central WAF too.
    assert!(
        services
            .store
            .get(&format!("waf/{SOURCE}/c.xml"))
            .await
            .is_err()
    );
}

/// A repository whose paging shifts while it is read repeats a record on the next page: the
/// job counts each record once (its object documents, one per identifier), so it finishes with
/// every record imported once.
#[tokio::test]
async fn a_record_on_two_pages_counts_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let services = local_services(dir.path());
    let (_site, _nginx) = file_repository(
        &services,
        dir.path(),
        &[
            (
                "ListRecords-.xml",
                list_records(&[("a", false), ("b", false)], Some(("p2", None))),
            ),
            (
                "ListRecords-p2.xml",
                list_records(&[("b", false), ("c", false)], None),
            ),
        ],
        "",
        serde_json::json!({"metadata_prefix": "oai_dc"}),
    )
    .await;
    let job = harvest(&services).await;
    assert_eq!(job.status, JobStatus::Finished, "{job:?}");
    assert!(job.gather_errors.is_empty(), "{:?}", job.gather_errors);
    assert_eq!(job.object_count, Some(3), "{job:?}");
    assert_eq!(
        (job.stats.added, job.stats.errored),
        (3, 0),
        "{:?}",
        job.stats
    );
    assert_eq!(
        catalogue_ids(&services, SOURCE).await,
        ["a", "b", "c"].map(String::from).into()
    );
}

fn oai_error(code: &str, text: &str) -> String {
    format!(
        r#"<?xml version="1.0"?><OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/"><responseDate>2020-01-01T00:00:00Z</responseDate><request>x</request><error code="{code}">{text}</error></OAI-PMH>"#
    )
}

/// Repositories as files (nginx picks the file by verb, token and prefix): deleted headers are
/// left out; a token refused alone (badArgument) is sent again with the prefix; the token "0"
/// that ends pycsw's listings, a repeated token, and an empty one each end it; an error answer
/// is the gather's error.
#[tokio::test]
async fn quirky_repositories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let services = local_services(dir.path());
    let site = dir.path().join("site");
    let write = |repo: &str, token: &str, prefix: &str, body: String| {
        std::fs::create_dir_all(site.join(repo)).unwrap();
        std::fs::write(
            site.join(repo)
                .join(format!("ListRecords-{token}-{prefix}.xml")),
            body,
        )
        .unwrap();
    };
    // Standard: tokens alone, the last page without one; deleted records left out.
    write(
        "std",
        "",
        "oai_dc",
        list_records(&[("a", false), ("x", true)], Some(("t2", Some((0, 5))))),
    );
    write(
        "std",
        "t2",
        "",
        list_records(&[("b", false), ("c", false)], Some(("t3", Some((2, 5))))),
    );
    write("std", "t3", "", list_records(&[("y", true)], None));
    // pycsw's way: the token alone is refused, and the last page carries the token "0".
    write(
        "pycsw",
        "",
        "oai_dc",
        list_records(&[("a", false), ("b", false)], Some(("2", Some((0, 3))))),
    );
    write(
        "pycsw",
        "2",
        "",
        oai_error("badArgument", "Missing metadataPrefix parameter"),
    );
    write(
        "pycsw",
        "2",
        "oai_dc",
        list_records(&[("c", false)], Some(("0", Some((2, 3))))),
    );
    // A token that repeats, with no counts to go by.
    write(
        "loop",
        "",
        "oai_dc",
        list_records(&[("a", false)], Some(("same", None))),
    );
    write(
        "loop",
        "same",
        "",
        list_records(&[("b", false)], Some(("same", None))),
    );
    // An error in the middle of the listing.
    write(
        "broken",
        "",
        "oai_dc",
        list_records(&[("a", false)], Some(("t2", Some((0, 9))))),
    );
    write(
        "broken",
        "t2",
        "",
        oai_error("badResumptionToken", "This resumptionToken is invalid"),
    );
    // Nothing to harvest.
    write(
        "empty",
        "",
        "oai_dc",
        oai_error("noRecordsMatch", "No records"),
    );
    let nginx = Nginx::serve_with(
        &site,
        "rewrite ^/([a-z]+)/oai$ /$1/$arg_verb-$arg_resumptionToken-$arg_metadataPrefix.xml break;",
    );
    let oai_gather = |services: &Services, url: String| {
        let source = serde_json::json!({
            "name": SOURCE, "url": url, "type": "oai-pmh", "config": {"metadata_prefix": "oai_dc"}
        });
        let services = services.clone();
        async move { gather_all(&common::harvest::OaiPmhHarvester, &services, source).await }
    };
    let ids = |list: &[&str]| -> Result<Vec<String>, String> {
        Ok(list.iter().map(|s| s.to_string()).collect())
    };
    assert_eq!(
        oai_gather(&services, nginx.url("/std/oai")).await,
        ids(&["a", "b", "c"])
    );
    assert_eq!(
        oai_gather(&services, nginx.url("/pycsw/oai")).await,
        ids(&["a", "b", "c"])
    );
    assert_eq!(
        oai_gather(&services, nginx.url("/loop/oai")).await,
        ids(&["a", "b"])
    );
    let err = oai_gather(&services, nginx.url("/broken/oai"))
        .await
        .unwrap_err();
    assert!(
        err.contains("badResumptionToken") && err.contains("invalid"),
        "{err}"
    );
    assert_eq!(
        oai_gather(&services, nginx.url("/empty/oai")).await,
        ids(&[])
    );
}

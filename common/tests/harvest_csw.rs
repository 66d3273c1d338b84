//! CSW harvests against a real pycsw (tests/pycsw_server.py), locally and on moto: every record
//! the server holds arrives, field by field as the server gives it; paging across the server's
//! own page cap; a re-harvest is unchanged; a record the server drops is deleted; a page that
//! fails mid-harvest deletes nothing; csw:Record output and an OGC filter.

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

const SOURCE: &str = "test-csw";

fn csw_source(url: &str, config: serde_json::Value) -> NewSource {
    NewSource {
        source_type: SourceType::Csw,
        config: Some(config),
        ..waf_source(SOURCE, url)
    }
}

async fn harvest(services: &Services) -> Job {
    run_test_with(services, SOURCE, JobOptions::default(), &|_: u64,
                                                             _: Option<
        u64,
    >| {})
    .await
    .expect("harvest")
}

/// The record as the server gives it (GetRecordById in `schema`), read as Sheaf reads it.
async fn server_record(server: &Pycsw, id: &str, schema: &str) -> Metadata {
    let url = reqwest::Url::parse_with_params(
        &server.url(),
        [
            ("service", "CSW"),
            ("version", "2.0.2"),
            ("request", "GetRecordById"),
            ("id", id),
            ("elementSetName", "full"),
            ("outputSchema", schema),
        ],
    )
    .unwrap();
    let body = reqwest::get(url)
        .await
        .expect("GetRecordById")
        .bytes()
        .await
        .unwrap();
    let record = common::harvest::unwrap_csw_record(&body).expect("the server holds the record");
    read_metadata(&record, XmlLimits::default()).expect("readable")
}

const GMD: &str = "http://www.isotc211.org/2005/gmd";

async fn first_and_second_harvest(services: &Services) {
    let dir = tempfile::tempdir().expect("tempdir");
    let held = catalogue_records(&dir.path().join("records"), &[]);
    // pycsw answers at most 3 records a page whatever is asked: the gather pages through
    // what the server says, not what it asked for.
    let server = Pycsw::serve(&dir.path().join("records"), 3);
    add_source(
        services.store.as_ref(),
        csw_source(&server.url(), serde_json::json!({})),
    )
    .await
    .expect("add source");

    let job = harvest(services).await;
    assert_eq!(job.status, JobStatus::Finished, "{job:?}");
    assert!(job.gather_errors.is_empty(), "{:?}", job.gather_errors);
    assert_eq!(job.stats.added, held.len() as u64, "{:?}", job.stats);
    assert_eq!(job.stats.errored, 0, "{:?}", job.object_errors);

    let expected: BTreeSet<String> = held.iter().map(|m| m.id.clone()).collect();
    assert_eq!(catalogue_ids(services, SOURCE).await, expected);
    for original in &held {
        let record = get_record(services.store.as_ref(), &original.id)
            .await
            .expect("record");
        let served = server_record(&server, &original.id, GMD).await;
        assert_eq!(
            record.metadata, served,
            "record {} as the server gives it",
            original.id
        );
        assert_eq!(record.source, SOURCE);
        assert!(
            record.original_url.contains("request=GetRecordById"),
            "{}",
            record.original_url
        );
        // ISO records come back as they were loaded: the same fields as the file itself.
        if original.format == RecordFormat::Iso19139 {
            assert_eq!(&record.metadata, original, "record {}", original.id);
        }
        // The central WAF keeps the record itself, not the CSW response around it.
        let kept = services
            .store
            .get(&format!(
                "waf/{SOURCE}/{}.xml",
                common::domain::keys::id_key(&original.id)
            ))
            .await
            .expect("WAF copy");
        assert_eq!(
            read_metadata(&kept.body, XmlLimits::default()).expect("reads"),
            served
        );
    }

    let again = harvest(services).await;
    assert_eq!(
        again.stats.unchanged,
        held.len() as u64,
        "{:?}",
        again.stats
    );
    assert_eq!(
        (again.stats.added, again.stats.deleted),
        (0, 0),
        "{:?}",
        again.stats
    );

    // The server drops a record: the next harvest deletes it, and only it.
    let gone = held[1].id.clone();
    let fewer_dir = tempfile::tempdir().expect("tempdir");
    catalogue_records(fewer_dir.path(), &[&gone]);
    let fewer = Pycsw::serve(fewer_dir.path(), 3);
    point_source_at(services, SOURCE, fewer.url()).await;
    let third = harvest(services).await;
    assert_eq!(third.stats.deleted, 1, "{:?}", third.stats);
    let mut left = expected.clone();
    left.remove(&gone);
    assert_eq!(catalogue_ids(services, SOURCE).await, left);
}

in_local_mode_and_on_moto!(
    a_csw_harvest_brings_every_record_as_the_server_holds_it_locally,
    a_csw_harvest_brings_every_record_as_the_server_holds_it_on_moto,
    first_and_second_harvest
);

/// nginx in front of pycsw answers 500 to the second GetRecords page: the gather fails after
/// its retries, and the harvest deletes nothing, though the first page lists fewer records.
#[tokio::test]
async fn a_page_failing_mid_harvest_deletes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let services = local_services(dir.path());
    let held = catalogue_records(&dir.path().join("records"), &[]);
    let server = Pycsw::serve(&dir.path().join("records"), 3);
    add_source(
        services.store.as_ref(),
        csw_source(&server.url(), serde_json::json!({})),
    )
    .await
    .expect("add source");
    let first = harvest(&services).await;
    assert_eq!(first.stats.added, held.len() as u64);

    let empty = tempfile::tempdir().expect("tempdir");
    let proxy = Nginx::serve_with(
        empty.path(),
        &format!(
            "if ($arg_startPosition = 4) {{ return 500; }} proxy_pass http://127.0.0.1:{};",
            server.port
        ),
    );
    point_source_at(&services, SOURCE, proxy.url("/csw")).await;
    let failed = run_test_with(&services, SOURCE, JobOptions::default(), &|_: u64,
                                                                           _: Option<
        u64,
    >| {})
    .await
    .expect("the job runs");
    assert!(
        failed
            .gather_errors
            .iter()
            .any(|e| e.message.contains("500")),
        "{:?}",
        failed.gather_errors
    );
    assert_eq!(failed.stats.deleted, 0, "{:?}", failed.stats);
    assert_eq!(catalogue_ids(&services, SOURCE).await.len(), held.len());
}

/// `output_schema: csw` harvests csw:Records; a filter narrows the harvest to what it selects.
#[tokio::test]
async fn csw_records_and_a_filter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let services = local_services(dir.path());
    let held = catalogue_records(&dir.path().join("records"), &[]);
    let server = Pycsw::serve(&dir.path().join("records"), 10);
    let chosen = &held[0];
    let word = chosen
        .title
        .split_whitespace()
        .last()
        .expect("a title word")
        .to_string();
    let filter = format!(
        r#"<ogc:Filter xmlns:ogc="http://www.opengis.net/ogc"><ogc:PropertyIsLike wildCard="%" singleChar="_" escapeChar="\"><ogc:PropertyName>dc:title</ogc:PropertyName><ogc:Literal>%{word}%</ogc:Literal></ogc:PropertyIsLike></ogc:Filter>"#
    );
    let matching: BTreeSet<String> = held
        .iter()
        .filter(|m| m.title.to_lowercase().contains(&word.to_lowercase()))
        .map(|m| m.id.clone())
        .collect();
    assert!(
        !matching.is_empty() && matching.len() < held.len(),
        "the filter must select some records, not all: {matching:?}"
    );
    add_source(
        services.store.as_ref(),
        csw_source(
            &server.url(),
            serde_json::json!({"output_schema": "csw", "filter": filter}),
        ),
    )
    .await
    .expect("add source");
    let job = harvest(&services).await;
    assert_eq!(job.stats.errored, 0, "{:?}", job.object_errors);
    assert_eq!(catalogue_ids(&services, SOURCE).await, matching);
    for id in &matching {
        let record = get_record(services.store.as_ref(), id)
            .await
            .expect("record");
        assert_eq!(record.metadata.format, RecordFormat::DublinCore);
        let served = server_record(&server, id, "http://www.opengis.net/cat/csw/2.0.2").await;
        assert_eq!(record.metadata, served);
    }
}

/// A GetRecords page as a quirky server writes it.
fn page(ids: &[&str], matched: u64, next: u64) -> String {
    let records: String = ids
        .iter()
        .map(|id| format!("<csw:BriefRecord><dc:identifier>{id}</dc:identifier><dc:title>{id}</dc:title></csw:BriefRecord>"))
        .collect();
    format!(
        r#"<?xml version="1.0"?><csw:GetRecordsResponse xmlns:csw="http://www.opengis.net/cat/csw/2.0.2" xmlns:dc="http://purl.org/dc/elements/1.1/"><csw:SearchResults numberOfRecordsMatched="{matched}" numberOfRecordsReturned="{}" nextRecord="{next}">{records}</csw:SearchResults></csw:GetRecordsResponse>"#,
        ids.len()
    )
}

/// Servers that get paging wrong, served as files by nginx (a page per startPosition): a
/// `numberOfRecordsMatched` too small or too large, `nextRecord="0"` on the last page, and a
/// server that answers the same page whatever is asked. None ends the gather early or loops.
#[tokio::test]
async fn quirky_paging_neither_ends_early_nor_loops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let services = local_services(dir.path());
    let site = dir.path().join("site");
    let write = |folder: &str, start: u64, body: String| {
        std::fs::create_dir_all(site.join(folder)).unwrap();
        std::fs::write(site.join(folder).join(format!("page-{start}.xml")), body).unwrap();
    };
    // Matched says 2 but the pages go on, each naming the next.
    write("small", 1, page(&["a", "b", "c"], 2, 4));
    write("small", 4, page(&["d", "e", "f"], 2, 7));
    write("small", 7, page(&["g"], 2, 0));
    // Matched says 100 and the last page says nextRecord 0: one more page, empty, ends it.
    write("large", 1, page(&["a", "b", "c"], 100, 4));
    write("large", 4, page(&["d"], 100, 0));
    write("large", 5, page(&[], 100, 0));
    // nextRecord 0 on every page, matched right.
    write("zero", 1, page(&["a", "b", "c"], 5, 0));
    write("zero", 4, page(&["d", "e"], 5, 0));
    // The same page for every startPosition.
    for start in [1, 4] {
        write("same", start, page(&["a", "b", "c"], 9, 0));
    }
    let nginx = Nginx::serve_with(
        &site,
        "if ($arg_startPosition) { rewrite ^/([a-z]+)/csw$ /$1/page-$arg_startPosition.xml break; }",
    );
    let csw_gather = |services: &Services, url: String| {
        let source = serde_json::json!({
            "name": SOURCE, "url": url, "type": "csw", "config": {"page_size": 3}
        });
        let services = services.clone();
        async move { gather_all(&common::harvest::CswHarvester, &services, source).await }
    };
    let letters =
        |n: usize| -> Vec<String> { "abcdefg".chars().take(n).map(String::from).collect() };
    assert_eq!(
        csw_gather(&services, nginx.url("/small/csw")).await,
        Ok(letters(7))
    );
    assert_eq!(
        csw_gather(&services, nginx.url("/large/csw")).await,
        Ok(letters(4))
    );
    assert_eq!(
        csw_gather(&services, nginx.url("/zero/csw")).await,
        Ok(letters(5))
    );
    let err = csw_gather(&services, nginx.url("/same/csw"))
        .await
        .unwrap_err();
    assert!(err.contains("does not page"), "{err}");
}

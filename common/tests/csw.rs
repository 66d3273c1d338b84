//! `/csw` as real clients meet it: a harvested catalogue served on loopback, searched by
//! OWSLib's CatalogueServiceWeb (QGIS MetaSearch's client) with every answer validated
//! against the CSW 2.0.2 schemas; what it finds must be what `/api/catalog/search` finds.
//! Then Sheaf's own CSW harvester harvests the endpoint back, field for field.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use common::catalog::{Edge, SearchQuery, search, seconds};
use common::domain::record::Record;
use common::http::{AppState, router};
use common::pipeline::{JobOptions, drain_index, run_test_with};
use common::services::Services;
use common::sources::add_source;
use serde_json::{Value, json};
use support::*;

const SOURCE: &str = "test-waf";

async fn harvest(services: &Services, name: &str) {
    let job = run_test_with(
        services,
        name,
        JobOptions::default(),
        &|_: u64, _: Option<u64>| {},
    )
    .await
    .expect("harvest");
    assert!(job.stats.added > 0, "{job:?}");
    drain_index(services).await.expect("index");
}

/// Serves the router on a free loopback port, with the public URL the capabilities name.
async fn serve(services: &Services) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let mut services = services.clone();
    services.settings.public_url = url.clone();
    let app = router(AppState {
        services,
        api_token: None,
        local_store: None,
    });
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (url, task)
}

async fn api_ids(services: &Services, query: SearchQuery) -> Vec<String> {
    let page = search(
        services.index.as_ref(),
        &SearchQuery {
            page_size: Some(1000),
            ..query
        },
    )
    .await
    .expect("search");
    page.records.into_iter().map(|r| r.metadata.id).collect()
}

fn set(ids: &Value) -> BTreeSet<String> {
    ids.as_array()
        .unwrap_or_else(|| panic!("a list: {ids}"))
        .iter()
        .map(|v| v.as_str().expect("an id").to_string())
        .collect()
}

fn run_client(plan: Value) -> Value {
    let mut child = Command::new(python())
        .arg(workspace_root().join("tests/csw_client.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python with OWSLib (tests/run.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(plan.to_string().as_bytes())
        .expect("plan");
    let out = child.wait_with_output().expect("client");
    assert!(
        out.status.success(),
        "OWSLib client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the client's JSON")
}

async fn every_record(services: &Services) -> Vec<Record> {
    search(
        services.index.as_ref(),
        &SearchQuery {
            page_size: Some(1000),
            ..SearchQuery::default()
        },
    )
    .await
    .expect("search")
    .records
}

async fn owslib_finds_what_the_api_finds(services: &Services) {
    let waf = Nginx::serve(&workspace_root().join("tests/records/waf"));
    add_source(services.store.as_ref(), waf_source(SOURCE, waf.url("/")))
        .await
        .expect("source");
    harvest(services, SOURCE).await;
    let records = every_record(services).await;
    let all: BTreeSet<String> = records.iter().map(|r| r.metadata.id.clone()).collect();
    assert!(all.len() >= 10, "{all:?}");
    let (url, server) = serve(services).await;

    let word = "sea";
    let bbox = [-10.0, 40.0, 20.0, 70.0];
    let ids: Vec<String> = all.iter().take(2).cloned().collect();
    let mut dates: Vec<&str> = records
        .iter()
        .filter_map(|r| r.metadata.modified.as_deref())
        .collect();
    dates.sort();
    let since = &dates[dates.len() / 2][..10];
    let plan = json!({
        "url": format!("{url}/csw"), "word": word, "bbox": bbox, "ids": ids, "since": since,
    });
    let found = tokio::task::spawn_blocking(move || run_client(plan))
        .await
        .expect("client");

    assert_eq!(
        found["invalid"],
        json!([]),
        "answers invalid against the schemas"
    );
    assert_eq!(found["capabilities"]["type"], "CSW");
    assert_eq!(found["capabilities"]["version"], "2.0.2");
    assert_eq!(
        found["capabilities"]["operations"],
        json!([
            "DescribeRecord",
            "GetCapabilities",
            "GetRecordById",
            "GetRecords"
        ])
    );

    let by_word = api_ids(
        services,
        SearchQuery {
            q: Some(word.into()),
            ..SearchQuery::default()
        },
    )
    .await;
    let by_word: BTreeSet<String> = by_word.into_iter().collect();
    assert!(
        !by_word.is_empty() && by_word.len() < all.len(),
        "the word should pick some records: {by_word:?}"
    );
    let bbox_text = "-10,40,20,70".to_string();
    let by_box: BTreeSet<String> = api_ids(
        services,
        SearchQuery {
            bbox: Some(bbox_text.clone()),
            ..SearchQuery::default()
        },
    )
    .await
    .into_iter()
    .collect();
    let by_both: BTreeSet<String> = api_ids(
        services,
        SearchQuery {
            q: Some(word.into()),
            bbox: Some(bbox_text),
            ..SearchQuery::default()
        },
    )
    .await
    .into_iter()
    .collect();
    assert!(!by_box.is_empty() && by_box.len() < all.len(), "{by_box:?}");
    assert_eq!(
        set(&found["word"]["ids"]),
        by_word,
        "PropertyIsLike AnyText"
    );
    assert_eq!(set(&found["cql"]["ids"]), by_word, "CQL AnyText like");
    assert_eq!(set(&found["iso_word"]["ids"]), by_word, "the same in gmd");
    assert_eq!(
        found["hits"]["matches"],
        json!(by_word.len()),
        "resultType hits"
    );
    assert_eq!(found["hits"]["ids"], json!([]), "hits carry no records");
    assert_eq!(set(&found["bbox"]["ids"]), by_box, "BBOX");
    assert_eq!(set(&found["word_and_bbox"]["ids"]), by_both, "And");
    assert_eq!(
        set(&found["ids_or"]["ids"]),
        ids.iter().cloned().collect(),
        "Or of identifiers"
    );
    let not_word: BTreeSet<String> = all.difference(&by_word).cloned().collect();
    assert_eq!(set(&found["not_word"]["ids"]), not_word, "Not");
    let from = seconds(since, Edge::First).expect("a date");
    let recent: BTreeSet<String> = records
        .iter()
        .filter(|r| {
            r.metadata
                .modified
                .as_deref()
                .and_then(|m| seconds(m, Edge::First))
                .is_some_and(|m| m >= from)
        })
        .map(|r| r.metadata.id.clone())
        .collect();
    assert!(!recent.is_empty() && recent.len() < all.len(), "{recent:?}");
    assert_eq!(set(&found["since"]["ids"]), recent, "dct:modified >=");
    let title_word: BTreeSet<String> = records
        .iter()
        .filter(|r| r.metadata.title.to_lowercase().contains(word))
        .map(|r| r.metadata.id.clone())
        .collect();
    assert!(set(&found["title_like"]["ids"]).is_superset(&title_word));
    assert!(set(&found["title_like"]["ids"]).is_subset(&by_word));

    // Paging: every record once, in pages of 3 that follow nextRecord to its end.
    let brief = &found["all_brief"];
    assert_eq!(set(&brief["ids"]), all, "brief pages");
    assert_eq!(
        brief["ids"].as_array().unwrap().len(),
        all.len(),
        "no repeats"
    );
    assert_eq!(brief["pages"], json!(all.len().div_ceil(3)));
    assert_eq!(set(&found["all_summary"]["ids"]), all);

    // Each record's fields as OWSLib reads them from csw:Record.
    let fields = &found["fields"]["records"];
    for record in &records {
        let m = &record.metadata;
        let got = &fields[&m.id];
        assert_eq!(got["title"], json!(m.title), "{}", m.id);
        if !m.abstract_text.is_empty() {
            assert_eq!(got["abstract"], json!(m.abstract_text), "{}", m.id);
        }
        let mut keywords: Vec<&String> = m.keywords.iter().collect();
        keywords.sort();
        assert_eq!(got["subjects"], json!(keywords), "{}", m.id);
        match &m.bbox {
            Some(b) => assert_eq!(
                got["bbox"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().parse::<f64>().unwrap())
                    .collect::<Vec<_>>(),
                vec![b.west, b.south, b.east, b.north],
                "{} bbox after the axis swap",
                m.id
            ),
            None => assert_eq!(got["bbox"], Value::Null, "{}", m.id),
        }
        let mut links: Vec<&String> = m.links.iter().map(|l| &l.url).collect();
        links.sort();
        assert_eq!(got["references"], json!(links), "{}", m.id);
    }

    // ISO answers: OWSLib reads each as MD_Metadata with its title.
    for id in &ids {
        let title = &records
            .iter()
            .find(|r| &r.metadata.id == id)
            .unwrap()
            .metadata
            .title;
        assert_eq!(found["iso_by_id"][id]["title"], json!(title), "{id} in gmd");
    }
    assert_eq!(set(&found["by_id"]), ids.iter().cloned().collect());

    the_iso_answer_is_the_original_document(services, &url, &records).await;
    bad_requests_get_exception_reports(&url).await;
    sheaf_harvests_its_own_csw_back(&url, &records).await;
    server.abort();
}

async fn get_csw(url: &str, params: &[(&str, &str)]) -> (u16, String) {
    let url = reqwest::Url::parse_with_params(&format!("{url}/csw"), params).expect("url");
    let response = reqwest::get(url).await.expect("GET /csw");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// gmd answers carry each ISO 19139 record's own document (decoded: some are Latin-1 or
/// UTF-16 on the source server), not a rewriting of it.
async fn the_iso_answer_is_the_original_document(
    services: &Services,
    url: &str,
    records: &[Record],
) {
    let mut checked = 0;
    for record in records {
        let id = &record.metadata.id;
        let (status, body) = get_csw(
            url,
            &[
                ("service", "CSW"),
                ("version", "2.0.2"),
                ("request", "GetRecordById"),
                ("id", id),
                ("outputSchema", "http://www.isotc211.org/2005/gmd"),
            ],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let original = common::catalog::get_record_xml(services.store.as_ref(), id)
            .await
            .expect("original");
        let text = common::parse::xml::decode(&original).expect("decodes");
        let root = text[text.find("?>").map_or(0, |i| i + 2)..].trim();
        if record.metadata.format == common::domain::record::RecordFormat::Iso19139 {
            assert!(body.contains(root), "{id}: the original is not in {body}");
            checked += 1;
        } else {
            let md = common::harvest::unwrap_csw_record(body.as_bytes()).expect("a record");
            let read = common::parse::read_metadata(&md, common::parse::XmlLimits::default())
                .expect("the written ISO document reads");
            assert_eq!(read.id, *id);
            assert_eq!(read.title, record.metadata.title, "{id}");
            assert_eq!(read.bbox, record.metadata.bbox, "{id}");
            assert_eq!(read.keywords, record.metadata.keywords, "{id}");
        }
    }
    assert!(checked >= 5, "ISO records checked: {checked}");
}

/// Parameters of a request, and the exception code and locator it must answer.
type BadCase<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);

async fn bad_requests_get_exception_reports(url: &str) {
    let base = [("service", "CSW"), ("version", "2.0.2")];
    let cases: [BadCase; 5] = [
        (
            &[("request", "Transaction")],
            "OperationNotSupported",
            "request",
        ),
        (
            &[("request", "GetRecords")],
            "MissingParameterValue",
            "typeNames",
        ),
        (
            &[
                ("request", "GetRecords"),
                ("typeNames", "csw:Record"),
                ("maxRecords", "ten"),
            ],
            "InvalidParameterValue",
            "maxRecords",
        ),
        (
            &[
                ("request", "GetRecords"),
                ("typeNames", "csw:Record"),
                ("constraintLanguage", "FILTER"),
                (
                    "constraint",
                    "<ogc:Filter xmlns:ogc=\"http://www.opengis.net/ogc\"><ogc:PropertyIsEqualTo><ogc:PropertyName>dc:colour</ogc:PropertyName><ogc:Literal>red</ogc:Literal></ogc:PropertyIsEqualTo></ogc:Filter>",
                ),
            ],
            "InvalidParameterValue",
            "Constraint",
        ),
        (
            &[
                ("request", "GetRecords"),
                ("typeNames", "csw:Record"),
                ("outputSchema", "urn:x"),
            ],
            "InvalidParameterValue",
            "outputSchema",
        ),
    ];
    for (params, code, locator) in cases {
        let all: Vec<(&str, &str)> = base.iter().chain(params).copied().collect();
        let (status, body) = get_csw(url, &all).await;
        assert_eq!(status, 400, "{params:?}: {body}");
        assert!(body.contains("ows:ExceptionReport"), "{body}");
        assert!(
            body.contains(&format!("exceptionCode=\"{code}\"")),
            "{params:?}: {body}"
        );
        assert!(
            body.contains(&format!("locator=\"{locator}\"")),
            "{params:?}: {body}"
        );
    }
    // A POSTed document that is not XML is refused the same way, and nothing else breaks.
    let response = reqwest::Client::new()
        .post(format!("{url}/csw"))
        .body("<csw:GetRecords")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("InvalidParameterValue")
    );
}

/// Sheaf's CSW harvester, pointed at Sheaf's CSW, harvests every record with its fields
/// (into a second catalogue: one catalogue holds an identifier once).
async fn sheaf_harvests_its_own_csw_back(url: &str, records: &[Record]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let other = local_services(dir.path());
    let source = common::sources::NewSource {
        source_type: common::domain::source::SourceType::Csw,
        config: Some(json!({"page_size": 4})),
        ..waf_source("loop", format!("{url}/csw"))
    };
    add_source(other.store.as_ref(), source)
        .await
        .expect("source");
    harvest(&other, "loop").await;
    let again = every_record(&other).await;
    assert_eq!(again.len(), records.len());
    for record in records {
        let m = &record.metadata;
        let back = again
            .iter()
            .find(|r| r.metadata.id == m.id)
            .unwrap_or_else(|| panic!("{} not harvested back", m.id));
        assert_eq!(back.metadata.title, m.title);
        assert_eq!(back.metadata.bbox, m.bbox, "{}", m.id);
        if m.format == common::domain::record::RecordFormat::Iso19139 {
            assert_eq!(back.metadata, *m, "an ISO record comes back whole");
        }
    }
}

in_local_mode_and_on_moto!(
    owslib_finds_what_the_api_finds_locally,
    owslib_finds_what_the_api_finds_on_moto,
    owslib_finds_what_the_api_finds
);

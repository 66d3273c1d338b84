//! The catalogue's standard endpoints as real clients meet them: a harvested catalogue served
//! on loopback, searched at `/csw` by OWSLib's CatalogueServiceWeb (QGIS MetaSearch's client)
//! with every answer validated against the CSW 2.0.2 schemas, and at `/ogcapi` by OWSLib's
//! OGC API – Records client; what they find must be what `/api/catalog/search` finds. Then
//! Sheaf's own CSW harvester harvests `/csw` back, field for field.

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
        read_token: None,
        local_store: None,
    });
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (url, task)
}

/// Every record `/api/catalog/search` finds for the query, in its order.
async fn api_records(services: &Services, query: SearchQuery) -> Vec<Record> {
    let page = search(
        services.index.as_ref(),
        &SearchQuery {
            page_size: Some(1000),
            ..query
        },
    )
    .await
    .expect("search");
    page.records
}

async fn api_ids(services: &Services, query: SearchQuery) -> Vec<String> {
    let records = api_records(services, query).await;
    records.into_iter().map(|r| r.metadata.id).collect()
}

fn set(ids: &Value) -> BTreeSet<String> {
    ids.as_array()
        .unwrap_or_else(|| panic!("a list: {ids}"))
        .iter()
        .map(|v| v.as_str().expect("an id").to_string())
        .collect()
}

fn run_client(script: &str, plan: Value) -> Value {
    let mut child = Command::new(python())
        .arg(workspace_root().join("tests").join(script))
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
    api_records(services, SearchQuery::default()).await
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
    let found = tokio::task::spawn_blocking(move || run_client("csw_client.py", plan))
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

    ogc_api_records_finds_the_same(services, &url, &records, &found).await;
    the_iso_answer_is_the_original_document(services, &url, &records).await;
    bad_requests_get_exception_reports(&url).await;
    sheaf_harvests_its_own_csw_back(&url, &records).await;
    server.abort();
}

async fn ogc_api_records_finds_the_same(
    services: &Services,
    url: &str,
    records: &[Record],
    csw: &Value,
) {
    let word = "sea";
    let (timed_id, with_time) = records
        .iter()
        .find_map(|r| {
            Some((
                r.metadata.id.clone(),
                r.metadata.time.as_ref()?.start.clone()?,
            ))
        })
        .expect("a record with a time extent");
    let year = &with_time[..4];
    let datetime = format!("{year}-01-01/{year}-12-31");
    let item = records
        .iter()
        .find(|r| r.metadata.bbox.is_some() && !r.metadata.keywords.is_empty())
        .expect("a record with a box and keywords");
    let plan = json!({
        "url": format!("{url}/ogcapi/"), "word": word, "bbox": [-10.0, 40.0, 20.0, 70.0],
        "datetime": datetime, "id": item.metadata.id,
    });
    let found = tokio::task::spawn_blocking(move || run_client("ogcapi_client.py", plan))
        .await
        .expect("client");
    assert_eq!(
        found["landing_links"],
        json!(["alternate", "conformance", "data", "self"])
    );
    assert!(found["conformance"].as_array().unwrap().contains(&json!(
        "http://www.opengis.net/spec/ogcapi-records-1/1.0/conf/core"
    )));
    assert_eq!(found["records_collections"], json!(["metadata"]));
    assert_eq!(found["collection"], "record");

    let api = |q: SearchQuery| api_ids(services, q);
    let everything = api(SearchQuery::default()).await;
    assert_eq!(
        found["all"]["ids"],
        json!(everything),
        "every record, title order, by next links"
    );
    assert_eq!(found["all"]["pages"], json!(everything.len().div_ceil(4)));
    assert_eq!(found["offset_2_limit_2"], json!(everything[2..4]));
    let by = |q: SearchQuery| async move { api(q).await.into_iter().collect::<BTreeSet<_>>() };
    let word_only = SearchQuery {
        q: Some(word.into()),
        ..SearchQuery::default()
    };
    assert_eq!(set(&found["word"]["ids"]), by(word_only.clone()).await, "q");
    assert_eq!(
        found["word"]["matches"],
        json!(set(&found["word"]["ids"]).len())
    );
    let boxed = SearchQuery {
        bbox: Some("-10,40,20,70".into()),
        ..SearchQuery::default()
    };
    assert_eq!(set(&found["bbox"]["ids"]), by(boxed.clone()).await, "bbox");
    assert_eq!(
        set(&found["word_and_bbox"]["ids"]),
        by(SearchQuery {
            bbox: boxed.bbox,
            ..word_only
        })
        .await,
        "q and bbox"
    );
    let in_year = by(SearchQuery {
        start: Some(format!("{year}-01-01")),
        end: Some(format!("{year}-12-31")),
        ..SearchQuery::default()
    })
    .await;
    assert!(in_year.contains(&timed_id), "{timed_id} starts in {year}");
    assert_eq!(set(&found["datetime"]["ids"]), in_year, "datetime");
    assert_eq!(
        set(&found["cql"]["ids"]),
        set(&csw["title_like"]["ids"]),
        "the same CQL as CSW's title like"
    );

    let m = &item.metadata;
    let got = &found["item"];
    assert_eq!(got["id"], json!(m.id));
    assert_eq!(got["title"], json!(m.title));
    assert_eq!(got["keywords"], json!(m.keywords));
    let b = m.bbox.unwrap();
    assert_eq!(got["bbox"], json!([b.west, b.south, b.east, b.north]));
    assert!(got["geometry"] == "Polygon" || got["geometry"] == "MultiPolygon");
    for rel in ["self", "alternate", "collection"] {
        assert!(
            got["links"].as_array().unwrap().contains(&json!(rel)),
            "{got}"
        );
    }

    let html = &found["html"];
    assert_eq!(html["status"], 200);
    assert!(html["type"].as_str().unwrap().starts_with("text/html"));
    let body = html["body"].as_str().unwrap();
    for id in set(&found["word"]["ids"]).iter().take(3) {
        let r = records.iter().find(|r| &r.metadata.id == id).unwrap();
        let title = quick_xml::escape::escape(r.metadata.title.as_str()).into_owned();
        assert!(body.contains(&title), "{title} not on the HTML page");
    }
    assert_eq!(found["bad_bbox"]["status"], 400);
    assert!(
        found["bad_bbox"]["body"]["description"]
            .as_str()
            .unwrap()
            .starts_with("bbox"),
        "{}",
        found["bad_bbox"]
    );
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

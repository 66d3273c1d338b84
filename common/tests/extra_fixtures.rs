//! The real third-party records (SHEAF_EXTRA_FIXTURES, which .ci/run sets to the fixtures
//! folder beside the checkout): served by nginx and harvested, each file ending as its
//! fixtures README implies; the real CSW and OAI-PMH answers read, and the records harvested
//! through pycsw. Run by tests/run.sh only when the variable is set (this target is not in
//! the default test run).

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;

use common::domain::job::Job;
use common::domain::source::SourceType;
use common::harvest::parse_listing;
use common::pipeline::run_test;
use common::services::Services;
use common::sources::{NewSource, add_source};
use support::*;

fn xml_files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".xml"))
        .collect();
    out.sort();
    out
}

async fn harvest(services: &Services, name: &str, url: String) -> Job {
    add_source(
        services.store.as_ref(),
        NewSource {
            name: name.into(),
            url,
            source_type: SourceType::Waf,
            title: None,
            active: None,
            owner: None,
            frequency: None,
            config: None,
        },
    )
    .await
    .expect("source");
    run_test(services, name, &|_: u64, _: Option<u64>| {})
        .await
        .expect("harvest")
}

fn main() {
    // The servers are dropped (and stopped) when `run` returns, before the exit.
    if run() > 0 {
        std::process::exit(1);
    }
}

/// Checks everything; returns how many checks failed.
fn run() -> usize {
    let Ok(fixtures) = std::env::var("SHEAF_EXTRA_FIXTURES") else {
        panic!(
            "SHEAF_EXTRA_FIXTURES must name the fixtures folder (tests/run.sh runs this target only then)"
        );
    };
    let fixtures = Path::new(&fixtures)
        .canonicalize()
        .expect("fixtures folder");
    let site = tempfile::tempdir().expect("tempdir");
    copy_tree(&fixtures, site.path());
    // The oversize record is kept gzipped; serve it as the 30 MB document it stands for.
    let gz = site.path().join("bad/oversize-30MB.xml.gz");
    let xml = gunzip(&gz);
    std::fs::write(site.path().join("bad/oversize-30MB.xml"), xml).expect("write oversize");
    let nginx = Nginx::serve(site.path());
    let mut passed = 0;
    let mut failures: Vec<String> = Vec::new();
    let mut check = |ok: bool, what: String| {
        if ok {
            passed += 1;
        } else {
            eprintln!("FAILED: {what}");
            failures.push(what);
        }
    };

    // Every captured listing yields the documents or folders it shows.
    for style in ["apache", "nginx", "iis"] {
        for file in
            std::fs::read_dir(site.path().join("waf-listings").join(style)).expect("listings")
        {
            let path = file.expect("entry").path();
            let html = std::fs::read_to_string(&path).expect("listing");
            let page = url::Url::parse("http://127.0.0.1/").expect("url");
            let (folders, docs) = parse_listing(&html, &page, &page);
            // nginx's and Apache's generated lines give each document its time (and size),
            // which a re-harvest may trust; IIS puts the time before the link: none is read.
            let timed = html.lines().any(|l| l.contains(".xml") && l.contains(':'));
            let entries = docs.iter().filter(|d| d.entry.is_some()).count();
            let expected = if style == "iis" || !timed {
                0
            } else {
                docs.len()
            };
            check(
                entries == expected,
                format!(
                    "{}: {entries} listing lines read, expected {expected}",
                    path.display()
                ),
            );
            // IIS pages carry absolute paths of their own site: resolve against those.
            let found = folders.len() + docs.len();
            let found = if found == 0 {
                let any = regex_href(&html);
                let page = url::Url::parse(&format!("http://127.0.0.1{any}")).expect("url");
                let base = url::Url::parse("http://127.0.0.1/").expect("url");
                let (f, d) = parse_listing(&html, &page, &base);
                f.len() + d.len()
            } else {
                found
            };
            check(found > 0, format!("{}: no links read", path.display()));
        }
    }

    // Each real record read field by field, against OWSLib's reading of it.
    let mut records = Vec::new();
    for folder in ["iso19139", "dublin-core", "ckan"] {
        let dir = site.path().join(folder);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("read_dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".xml") || n.ends_with(".json"))
            .collect();
        names.sort();
        records.extend(names.into_iter().map(|n| dir.join(n)));
    }
    let (compared, differences) = differences_from_owslib(&records);
    check(
        compared * 10 >= records.len() * 9,
        format!(
            "field checks: {compared} of {} records compared",
            records.len()
        ),
    );
    for difference in differences {
        check(false, difference);
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let services = local_services(dir.path());
        for folder in ["iso19139", "iso19115-3", "dublin-core"] {
            let files = xml_files(&site.path().join(folder));
            let job = harvest(&services, folder, nginx.url(&format!("{folder}/"))).await;
            check(
                job.stats.added == files.len() as u64 && job.stats.errored == 0,
                format!(
                    "{folder}: {} files, job {:?} errors {:?}",
                    files.len(),
                    job.stats,
                    job.object_errors
                ),
            );
        }
        // The real records again, each folder from a real CSW (pycsw loaded with it),
        // harvested in the schema it was written in, into a catalogue of its own.
        for (folder, schema) in [("iso19139", "iso19139"), ("dublin-core", "csw")] {
            let records = tempfile::tempdir().expect("tempdir");
            copy_tree(&site.path().join(folder), records.path());
            let pycsw = Pycsw::serve(records.path(), 10);
            let held = csw_hits(&pycsw.url()).await;
            let store = tempfile::tempdir().expect("tempdir");
            let services = local_services(store.path());
            add_source(
                services.store.as_ref(),
                NewSource {
                    name: "real-csw".into(),
                    url: pycsw.url(),
                    source_type: SourceType::Csw,
                    title: None,
                    active: None,
                    owner: None,
                    frequency: None,
                    config: Some(serde_json::json!({"output_schema": schema})),
                },
            )
            .await
            .expect("source");
            let job = run_test(&services, "real-csw", &|_: u64, _: Option<u64>| {})
                .await
                .expect("harvest");
            check(
                held > 0 && job.stats.added == held && job.stats.errored == 0,
                format!(
                    "{folder} from pycsw: it holds {held}, job {:?} errors {:?} {:?}",
                    job.stats, job.gather_errors, job.object_errors
                ),
            );
        }

        // The real OAI-PMH answers as a repository: ListRecords.xml's token names the next
        // file, down a chain of four pages, each with one deleted record.
        let oai = Nginx::serve_with(
            &site.path().join("oai-pmh"),
            "if ($arg_resumptionToken) { rewrite ^ /$arg_resumptionToken break; } \
             if ($arg_verb = ListRecords) { rewrite ^ /ListRecords.xml break; }",
        );
        let source = serde_json::json!({
            "name": "oai", "url": oai.url("/oai"), "type": "oai-pmh",
            "config": {"metadata_prefix": "oai_dc"}
        });
        let listed = gather_all(&common::harvest::OaiPmhHarvester, &services, source).await;
        check(
            listed.as_ref().is_ok_and(|ids| ids.len() == 4),
            format!("oai-pmh/ListRecords*.xml: four records kept, got {listed:?}"),
        );

        let job = harvest(&services, "bad", nginx.url("bad/")).await;
        let errors: BTreeMap<String, String> = job
            .object_errors
            .iter()
            .map(|e| {
                let name = e
                    .original_url
                    .as_deref()
                    .unwrap_or("")
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .to_string();
                (name, e.message.clone())
            })
            .collect();
        for file in xml_files(&site.path().join("bad")) {
            let rejected = errors.get(&file);
            let ok = if file.contains("-valid") {
                rejected.is_none()
            } else if file.starts_with("xxe") || file.starts_with("duplicate-id") {
                true
            } else {
                rejected.is_some_and(|m| !m.is_empty())
            };
            check(ok, format!("bad/{file}: {:?}", rejected));
        }
        let duplicates = errors
            .keys()
            .filter(|k| k.starts_with("duplicate-id"))
            .count();
        check(
            duplicates == 1,
            format!("one of the duplicate-id files refused, got {duplicates}"),
        );
    });
    // Real GetRecord answers hold a record Sheaf reads; a truncated page is an error.
    for file in xml_files(&site.path().join("oai-pmh")) {
        let body = std::fs::read(site.path().join("oai-pmh").join(&file)).expect("read");
        if file.contains("GetRecord") {
            let record = common::harvest::unwrap_oai_record(&body).and_then(|r| {
                common::parse::read_metadata(&r, Default::default()).map_err(|e| e.to_string())
            });
            check(
                record.is_ok(),
                format!("oai-pmh/{file}: {:?}", record.err()),
            );
        }
    }
    // Real CSW answers: result pages list their records, GetRecordById answers hold one.
    for file in xml_files(&site.path().join("csw-responses")) {
        let body = std::fs::read(site.path().join("csw-responses").join(&file)).expect("read");
        if file.contains("GetRecords-") || file.contains("getrecords-") {
            let results = common::harvest::read_csw_search_results(&body);
            let returned = attribute(&String::from_utf8_lossy(&body), "numberOfRecordsReturned");
            check(
                results
                    .as_ref()
                    .is_ok_and(|r| Some(r.identifiers.len() as u64) == returned),
                format!("csw-responses/{file}: {returned:?} returned, read {results:?}"),
            );
        } else if file.to_ascii_lowercase().contains("getrecordbyid") {
            let record = common::harvest::unwrap_csw_record(&body).and_then(|r| {
                common::parse::read_metadata(&r, Default::default()).map_err(|e| e.to_string())
            });
            check(
                record.is_ok(),
                format!("csw-responses/{file}: {:?}", record.err()),
            );
        }
    }
    // The real CKAN datasets, served as a portal's package_search and package_show answers,
    // harvested by the CKAN harvester: each record is the dataset as Sheaf reads it.
    runtime.block_on(async {
        let portal = site.path().join("portal/api/3/action");
        std::fs::create_dir_all(&portal).expect("mkdir");
        let mut packages = Vec::new();
        for entry in std::fs::read_dir(site.path().join("ckan")).expect("ckan/") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read");
            let package: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            let id = package["id"]
                .as_str()
                .or(package["name"].as_str())
                .expect("an id or a name")
                .to_string();
            let show = serde_json::json!({"success": true, "result": package});
            std::fs::write(portal.join(format!("show-{id}.json")), show.to_string()).expect("write");
            packages.push((id, package));
        }
        let page = |results: Vec<&serde_json::Value>| {
            serde_json::json!({"success": true, "result": {"count": results.len(), "results": results}})
                .to_string()
        };
        std::fs::write(portal.join("search-0.json"), page(packages.iter().map(|p| &p.1).collect()))
            .expect("write");
        std::fs::write(portal.join("search-100.json"), page(Vec::new())).expect("write");
        let server = Nginx::serve_with(
            site.path(),
            "rewrite ^/portal/api/3/action/package_search$ /portal/api/3/action/search-$arg_start.json break; \
             rewrite ^/portal/api/3/action/package_show$ /portal/api/3/action/show-$arg_id.json break;",
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let services = local_services(dir.path());
        add_source(
            services.store.as_ref(),
            NewSource {
                source_type: SourceType::Ckan,
                ..waf_source("ckan", server.url("/portal"))
            },
        )
        .await
        .expect("ckan source");
        let job = run_test(&services, "ckan", &|_: u64, _: Option<u64>| {})
            .await
            .expect("harvest");
        check(
            job.stats.added == packages.len() as u64 && job.stats.errored == 0,
            format!("ckan/: {} datasets, job {:?} errors {:?}", packages.len(), job.stats, job.object_errors),
        );
        for (id, package) in &packages {
            let record = common::catalog::get_record(services.store.as_ref(), id).await;
            let mut expected = common::parse::read_package(package.to_string().as_bytes())
                .expect("a readable dataset");
            if let Some(fields) = expected.ckan.as_mut() {
                fields.groups.clear();
                fields.organization = None;
            }
            let ok = record.as_ref().is_ok_and(|r| {
                r.metadata == expected
                    && r.metadata.title == package["title"].as_str().unwrap_or_default()
                    && r.metadata.keywords.len() == package["tags"].as_array().map_or(0, Vec::len)
            });
            check(ok, format!("ckan/{id}: {record:?} against {expected:?}"));
        }
    });
    println!("fixtures: {passed} passed, {} failed", failures.len());
    failures.len()
}

/// How many records a CSW says it holds (GetRecords, resultType=hits).
async fn csw_hits(url: &str) -> u64 {
    let url = reqwest::Url::parse_with_params(
        url,
        [
            ("service", "CSW"),
            ("version", "2.0.2"),
            ("request", "GetRecords"),
            ("typeNames", "csw:Record"),
            ("resultType", "hits"),
            ("elementSetName", "brief"),
        ],
    )
    .expect("url");
    let body = reqwest::get(url)
        .await
        .expect("hits")
        .text()
        .await
        .expect("body");
    attribute(&body, "numberOfRecordsMatched").expect("numberOfRecordsMatched")
}

/// A whole-number attribute of the first element that has it.
fn attribute(xml: &str, name: &str) -> Option<u64> {
    xml.split(&format!("{name}=\""))
        .nth(1)?
        .split('"')
        .next()?
        .parse()
        .ok()
}

fn regex_href(html: &str) -> String {
    let lower = html.to_ascii_lowercase();
    let start = lower.find("href=\"/").map(|i| i + 6).unwrap_or(0);
    let end = html[start..].find('"').map(|i| start + i).unwrap_or(start);
    let href = &html[start..end];
    href.rsplit_once('/')
        .map(|(dir, _)| format!("{dir}/"))
        .unwrap_or_else(|| "/".into())
}

fn gunzip(path: &Path) -> Vec<u8> {
    let output = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .expect("gzip -dc");
    assert!(
        output.status.success(),
        "gunzip of {} failed",
        path.display()
    );
    output.stdout
}

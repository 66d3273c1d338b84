//! Search index benchmark: N records (default 100,000) generated from a few templates, indexed
//! in batches of 1,000 as the index function applies them; then the index's size, a cold start
//! (opening the folder and answering a first query, as an API function does after loading the
//! index into /tmp), and the median and p99 of a text + bbox query over 200 runs, and of a CSW
//! GetRecords of 10 full records (the same words and box as an OGC filter, POSTed XML read,
//! searched and written as the `/csw` route does).
//!
//! `cargo bench -p sheaf-common --bench search [-- N]`

use std::time::{Duration, Instant};

use std::sync::Arc;

use common::catalog::{Search, SearchIndex, TantivyIndex};
use common::domain::record::{BBox, Contact, Metadata, Record, RecordFormat, TimeExtent};
use common::fetch::{AddressPolicy, ReqwestFetcher};
use common::mail::OutboxMailer;
use common::queue::Queues;
use common::services::{Services, Settings};
use common::store::LocalStore;

const WORDS: [&str; 16] = [
    "sea",
    "surface",
    "temperature",
    "salinity",
    "coastal",
    "erosion",
    "seabed",
    "habitat",
    "glider",
    "mission",
    "lake",
    "inventory",
    "forest",
    "plots",
    "harbour",
    "survey",
];

fn record(i: u64) -> Record {
    let w = |k: u64| WORDS[((i / (k + 1)) % WORDS.len() as u64) as usize];
    let lon = (i % 360) as f64 - 180.0;
    let lat = (i % 170) as f64 - 85.0;
    Record {
        metadata: Metadata {
            id: format!("bench-{i:07}"),
            title: format!("{} {} {} {i}", w(0), w(1), w(2)),
            abstract_text: format!(
                "Observations of {} and {} from the {} programme, record {i}.",
                w(3),
                w(4),
                w(5)
            ),
            keywords: vec![w(6).to_string(), w(7).to_string()],
            bbox: Some(BBox {
                west: lon,
                south: lat,
                east: (lon + 2.0).min(180.0),
                north: (lat + 2.0).min(90.0),
            }),
            time: Some(TimeExtent {
                start: Some(format!("{}-01-01", 1990 + i % 30)),
                end: Some(format!("{}-12-31", 1991 + i % 30)),
            }),
            contacts: vec![Contact {
                name: Some(format!("Scientist {}", i % 97)),
                organisation: Some(format!("Institute {}", i % 13)),
                email: None,
                role: Some("pointOfContact".into()),
            }],
            links: Vec::new(),
            format: RecordFormat::Iso19139,
            modified: Some(format!("2020-{:02}-{:02}", 1 + i % 12, 1 + i % 28)),
            ckan: None,
        },
        source: format!("source-{}", i % 7),
        original_url: format!("http://example.org/waf/{i}.xml"),
        harvested: "2026-01-01T00:00:00Z".into(),
        sha256: "0".repeat(64),
    }
}

fn folder_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let index = TantivyIndex::open(dir.path()).expect("index");
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let batch: Vec<Record> = (i..(i + 1000).min(n)).map(record).collect();
        i += batch.len() as u64;
        index.apply(batch, Vec::new()).await.expect("apply");
    }
    let indexing = started.elapsed();
    drop(index);
    println!(
        "indexed {n} records in {:.1} s: {:.0} records/s; index {:.1} MiB",
        indexing.as_secs_f64(),
        n as f64 / indexing.as_secs_f64(),
        folder_size(dir.path()) as f64 / (1024.0 * 1024.0)
    );

    let query = Search {
        text: Some("sea temperature".into()),
        bbox: Some(BBox {
            west: -30.0,
            south: -20.0,
            east: 40.0,
            north: 60.0,
        }),
        limit: 20,
        ..Search::default()
    };
    let cold = Instant::now();
    let index = TantivyIndex::open(dir.path()).expect("reopen");
    let first = index.search(&query).await.expect("search");
    println!(
        "cold start (open + first query): {:.1} ms, {} hits",
        cold.elapsed().as_secs_f64() * 1000.0,
        first.total
    );
    let mut times = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        index.search(&query).await.expect("search");
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "text + bbox query, 20 hits with facets, 200 runs: median {:.2} ms, p99 {:.2} ms",
        percentile(&times, 0.5).as_secs_f64() * 1000.0,
        percentile(&times, 0.99).as_secs_f64() * 1000.0
    );

    let services = Services {
        store: Arc::new(
            LocalStore::open(&dir.path().join("store"), "http://127.0.0.1:8765").expect("store"),
        ),
        queues: Queues::new(),
        mailer: Arc::new(OutboxMailer::new(dir.path().join("outbox"))),
        fetcher: Arc::new(
            ReqwestFetcher::new(AddressPolicy::PublicOnly, Duration::from_secs(5))
                .expect("fetcher"),
        ),
        index: Arc::new(index),
        settings: Settings::default(),
    };
    let request = r#"<csw:GetRecords xmlns:csw="http://www.opengis.net/cat/csw/2.0.2"
        xmlns:ogc="http://www.opengis.net/ogc" xmlns:gml="http://www.opengis.net/gml"
        service="CSW" version="2.0.2" resultType="results" maxRecords="10" startPosition="1">
      <csw:Query typeNames="csw:Record"><csw:ElementSetName>full</csw:ElementSetName>
        <csw:Constraint version="1.1.0"><ogc:Filter><ogc:And>
          <ogc:PropertyIsLike wildCard="%" singleChar="_" escapeChar="\\">
            <ogc:PropertyName>csw:AnyText</ogc:PropertyName><ogc:Literal>%sea temperature%</ogc:Literal>
          </ogc:PropertyIsLike>
          <ogc:BBOX><ogc:PropertyName>ows:BoundingBox</ogc:PropertyName>
            <gml:Envelope><gml:lowerCorner>-30 -20</gml:lowerCorner><gml:upperCorner>40 60</gml:upperCorner></gml:Envelope>
          </ogc:BBOX>
        </ogc:And></ogc:Filter></csw:Constraint></csw:Query></csw:GetRecords>"#;
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..200 {
        let t = Instant::now();
        let parsed = common::csw::from_xml(request.as_bytes()).expect("a request");
        let answer = common::csw::answer(&services, parsed)
            .await
            .expect("an answer");
        times.push(t.elapsed());
        size = answer.len();
    }
    times.sort();
    println!(
        "CSW GetRecords (POST, AnyText like + BBOX, 10 full records, {size} bytes), 200 runs: median {:.2} ms, p99 {:.2} ms",
        percentile(&times, 0.5).as_secs_f64() * 1000.0,
        percentile(&times, 0.99).as_secs_f64() * 1000.0
    );
}

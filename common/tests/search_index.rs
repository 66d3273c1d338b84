//! The embedded search index on its own: words with stemming, not substrings; relevance;
//! bbox intersection, also across the antimeridian; time overlap with partial and open dates;
//! source, keyword and format filters with their facet counts; sorts and pages; changes
//! applied twice counting once; an index in a folder kept across processes.

mod support;

use common::catalog::{
    Compare, DateField, Edge, Filter, Search, SearchIndex, Sort, TantivyIndex, seconds,
};
use common::domain::record::{BBox, Record, RecordFormat, TimeExtent};

fn record(id: &str, title: &str, abstract_text: &str) -> Record {
    support::test_record(id, title, abstract_text)
}

fn with_bbox(mut r: Record, west: f64, south: f64, east: f64, north: f64) -> Record {
    r.metadata.bbox = Some(BBox {
        west,
        south,
        east,
        north,
    });
    r
}

fn with_time(mut r: Record, start: Option<&str>, end: Option<&str>) -> Record {
    r.metadata.time = Some(TimeExtent {
        start: start.map(String::from),
        end: end.map(String::from),
    });
    r
}

async fn ids(index: &TantivyIndex, search: Search) -> Vec<String> {
    let search = Search {
        limit: 100,
        ..search
    };
    let hits = index.search(&search).await.expect("search");
    hits.records.into_iter().map(|r| r.metadata.id).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn text(q: &str) -> Search {
    Search {
        text: Some(q.into()),
        ..Search::default()
    }
}

#[tokio::test]
async fn words_are_matched_stemmed_and_ranked_not_as_substrings() {
    let index = TantivyIndex::in_memory();
    index
        .apply(
            vec![
                record(
                    "research",
                    "Research vessel logs",
                    "Cruise reports of the fleet",
                ),
                record("sea", "Sea surface temperature", "Daily grids"),
                record(
                    "surveys",
                    "Benthic surveys",
                    "Grab samples of the sea floor",
                ),
                record(
                    "survey-abstract",
                    "Harbour depths",
                    "A survey of the harbour",
                ),
            ],
            vec![],
        )
        .await
        .expect("apply");
    // "sea" is a word: "research" does not hold it.
    assert_eq!(sorted(ids(&index, text("sea")).await), ["sea", "surveys"]);
    // Stemmed: "survey" finds "surveys"; the title match ranks above the abstract one.
    assert_eq!(
        ids(&index, text("survey")).await,
        ["surveys", "survey-abstract"]
    );
    // Every word must match.
    assert_eq!(ids(&index, text("sea floor")).await, ["surveys"]);
    // A stray quote or colon searches the words.
    assert_eq!(ids(&index, text("temperature:\"")).await, ["sea"]);
}

#[tokio::test]
async fn boxes_meet_across_the_antimeridian() {
    let index = TantivyIndex::in_memory();
    index
        .apply(
            vec![
                with_bbox(record("fiji-east", "a", ""), 175.0, -20.0, 179.0, -15.0),
                with_bbox(record("samoa-west", "b", ""), -179.0, -15.0, -170.0, -10.0),
                with_bbox(record("across", "c", ""), 170.0, -30.0, -170.0, 0.0),
                with_bbox(record("atlantic", "d", ""), -40.0, 10.0, -20.0, 30.0),
                record("nowhere", "e", ""),
            ],
            vec![],
        )
        .await
        .expect("apply");
    let in_box = |west, south, east, north| Search {
        bbox: Some(BBox {
            west,
            south,
            east,
            north,
        }),
        ..Search::default()
    };
    // A query across the antimeridian meets boxes on both sides, and the one across it.
    assert_eq!(
        sorted(ids(&index, in_box(172.0, -25.0, -175.0, -5.0)).await),
        ["across", "fiji-east", "samoa-west"]
    );
    // A plain query meets the box across the antimeridian by either of its parts.
    assert_eq!(
        sorted(ids(&index, in_box(-175.0, -5.0, -172.0, -1.0)).await),
        ["across"]
    );
    assert_eq!(
        sorted(ids(&index, in_box(171.0, -29.0, 172.0, -28.0)).await),
        ["across"]
    );
    assert_eq!(
        ids(&index, in_box(-30.0, 0.0, 0.0, 20.0)).await,
        ["atlantic"]
    );
    // Latitudes must meet too.
    assert!(
        ids(&index, in_box(175.0, 10.0, 179.0, 20.0))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn time_extents_overlap_with_partial_and_open_dates() {
    let index = TantivyIndex::in_memory();
    index
        .apply(
            vec![
                with_time(record("eighties", "a", ""), Some("1982"), Some("1986")),
                with_time(record("ongoing", "b", ""), Some("2010-05-01"), None),
                with_time(record("until-1960", "e", ""), None, Some("1960")),
                with_time(
                    record("may-2014", "c", ""),
                    Some("2014-05"),
                    Some("2014-05"),
                ),
                record("timeless", "d", ""),
            ],
            vec![],
        )
        .await
        .expect("apply");
    let between = |start: &str, end: &str| Search {
        start: seconds(start, Edge::First),
        end: seconds(end, Edge::Last),
        ..Search::default()
    };
    assert_eq!(
        ids(&index, between("1986-12-31", "1990")).await,
        ["eighties"]
    );
    assert_eq!(
        sorted(ids(&index, between("2014-05-31", "2014-06-01")).await),
        ["may-2014", "ongoing"]
    );
    assert_eq!(ids(&index, between("2030", "2031")).await, ["ongoing"]);
    let since = Search {
        start: seconds("1985", Edge::First),
        ..Search::default()
    };
    assert_eq!(
        sorted(ids(&index, since).await),
        ["eighties", "may-2014", "ongoing"]
    );
    // The same conditions as a filter tree (CSW's TempExtent_begin/end): an open start is the
    // beginning of time, an open end the end of it; a record without a time extent has neither.
    let cases: [(DateField, Compare, &str, Edge, &[&str]); 3] = [
        (
            DateField::TimeBegin,
            Compare::LessOrEqual,
            "1970",
            Edge::Last,
            &["until-1960"],
        ),
        (
            DateField::TimeEnd,
            Compare::GreaterOrEqual,
            "2014",
            Edge::First,
            &["may-2014", "ongoing"],
        ),
        (
            DateField::TimeBegin,
            Compare::GreaterOrEqual,
            "1900",
            Edge::First,
            &["eighties", "may-2014", "ongoing"],
        ),
    ];
    for (field, compare, at, edge, expected) in cases {
        let tree = Search {
            filter: Some(Filter::Date {
                field,
                compare,
                seconds: seconds(at, edge).unwrap(),
            }),
            ..Search::default()
        };
        assert_eq!(
            sorted(ids(&index, tree).await),
            expected,
            "{field:?} {compare:?} {at}"
        );
    }
}

#[tokio::test]
async fn filters_facets_sorts_and_pages() {
    let index = TantivyIndex::in_memory();
    let mut records = Vec::new();
    for i in 0..25 {
        let mut r = record(
            &format!("r{i:02}"),
            &format!("Record {:02}", 24 - i),
            "ocean data",
        );
        r.source = if i < 15 { "noaa".into() } else { "ioos".into() };
        r.metadata.keywords = vec!["Oceans".into()];
        if i % 5 == 0 {
            r.metadata.keywords.push("Salinity".into());
            r.metadata.format = RecordFormat::DublinCore;
        }
        r.metadata.modified = Some(format!("2020-01-{:02}", i + 1));
        records.push(r);
    }
    index.apply(records, vec![]).await.expect("apply");

    let hits = index
        .search(&Search {
            limit: 10,
            ..Search::default()
        })
        .await
        .expect("search");
    assert_eq!(hits.total, 25);
    // Without words, by title.
    assert_eq!(hits.records[0].metadata.title, "Record 00");
    let count = |list: &[common::catalog::Bucket], v: &str| {
        list.iter().find(|b| b.value == v).map(|b| b.count)
    };
    assert_eq!(count(&hits.facets.source, "noaa"), Some(15));
    assert_eq!(count(&hits.facets.source, "ioos"), Some(10));
    assert_eq!(count(&hits.facets.keyword, "Oceans"), Some(25));
    assert_eq!(count(&hits.facets.keyword, "Salinity"), Some(5));
    assert_eq!(count(&hits.facets.format, "dublin-core"), Some(5));
    assert_eq!(count(&hits.facets.format, "iso19139"), Some(20));

    // The third page of ten holds the last five.
    let page3 = index
        .search(&Search {
            offset: 20,
            limit: 10,
            ..Search::default()
        })
        .await
        .expect("search");
    assert_eq!(page3.records.len(), 5);
    assert_eq!(page3.records[4].metadata.title, "Record 24");
    // A page far past the end is empty, with the count, and costs nothing (the collector's
    // buffer would otherwise be sized by the offset: an abort at this one).
    let far = index
        .search(&Search {
            offset: u64::MAX / 4,
            limit: 10,
            ..Search::default()
        })
        .await
        .expect("search");
    assert_eq!((far.total, far.records.len()), (25, 0));

    let newest = index
        .search(&Search {
            sort: Some(Sort::Date),
            limit: 2,
            ..Search::default()
        })
        .await
        .expect("search");
    let newest: Vec<_> = newest
        .records
        .iter()
        .map(|r| r.metadata.id.as_str())
        .collect();
    assert_eq!(newest, ["r24", "r23"]);

    let filtered = Search {
        source: Some("noaa".into()),
        keyword: Some("salinity".into()),
        format: Some("dublin-core".into()),
        ..Search::default()
    };
    assert_eq!(sorted(ids(&index, filtered).await), ["r00", "r05", "r10"]);
}

#[tokio::test]
async fn changes_applied_twice_count_once_and_a_folder_index_outlives_its_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let index = TantivyIndex::open(dir.path()).expect("open");
        let a = record("a", "First title", "");
        index
            .apply(vec![a.clone(), record("b", "B", "")], vec![])
            .await
            .unwrap();
        index.apply(vec![a.clone()], vec![]).await.unwrap();
        let mut changed = a;
        changed.metadata.title = "Second title".into();
        index.apply(vec![changed], vec!["b".into()]).await.unwrap();
        index.apply(vec![], vec!["b".into()]).await.unwrap();
        assert_eq!(index.count().await.unwrap(), 1);
    }
    let reopened = TantivyIndex::open(dir.path()).expect("reopen");
    assert_eq!(reopened.count().await.unwrap(), 1);
    assert_eq!(ids(&reopened, text("second")).await, ["a"]);
    assert!(ids(&reopened, text("first")).await.is_empty());
    assert_eq!(reopened.keys().await.unwrap(), ["a"]);
}

/// The reader opens on the first search, which may come while other changes commit: each
/// change shows in every search made after it was applied, whether that search opened the
/// reader or found it open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_shows_in_every_search_after_it_while_the_reader_opens() {
    for round in 0..5 {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = TantivyIndex::open(dir.path()).expect("open");
        let writers = (0..8).map(|i| {
            let index = index.clone();
            tokio::spawn(async move {
                let id = format!("r{round}-{i}");
                index
                    .apply(vec![record(&id, &format!("Title {id}"), "")], vec![])
                    .await
                    .unwrap();
                let keys = index.keys().await.unwrap();
                assert!(
                    keys.iter().any(|k| k.ends_with(&id)),
                    "{id} applied, then not found among {keys:?}"
                );
            })
        });
        for writer in writers.collect::<Vec<_>>() {
            writer.await.expect("writer");
        }
        assert_eq!(index.count().await.unwrap(), 8);
    }
}

//! The embedded search index: tantivy, in a folder (local mode) or in memory. Text is
//! tokenized into words and stemmed for English (title boosted over the abstract, keywords and
//! contacts); bbox, time and modification date are numeric fields, so every filter is a query
//! clause and a page costs the page, not the catalogue.

use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use tantivy::aggregation::AggregationCollector;
use tantivy::aggregation::agg_req::Aggregations;
use tantivy::collector::{Count, DocSetCollector, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::merge_policy::LogMergePolicy;
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, RangeQuery, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, Searcher};
use tantivy::{TantivyDocument, Term};

use super::filter::{Compare, DateField, ExactField, Filter, TextField};
use super::index::{Bucket, Facets, Hits, IndexError, Search, SearchIndex, Sort};
use super::times::{Edge, seconds};
use crate::domain::keys;
use crate::domain::record::{BBox, Record};

/// The writer's memory before it flushes a segment.
const WRITER_MEMORY: usize = 50_000_000;
/// Segments of more documents than this are not merged further. A merge holds memory for
/// every document it merges, so uncapped an index drain's peak grew with the index (the
/// harvest benchmark's first harvest of 100,000 documents peaked at 91 MiB, capped at 77,
/// against 67 for 10,000; capped, heaptrack's live heap peaks at 33 and 35 MB). The price
/// is a segment for every ten to twenty thousand records (nine at 100,000), which a search
/// visits in turn.
const MAX_DOCS_BEFORE_MERGE: usize = 10_000;
/// Buckets a facet lists at most.
const FACET_SIZE: u32 = 20;

#[derive(Clone, Copy)]
struct Fields {
    /// The record's key in the store (`keys::id_key`): its identity here.
    key: Field,
    id: Field,
    title: Field,
    all: Field,
    title_sort: Field,
    source: Field,
    keyword: Field,
    keyword_lc: Field,
    format: Field,
    west: Field,
    south: Field,
    east: Field,
    north: Field,
    crosses: Field,
    t_start: Field,
    t_end: Field,
    modified: Field,
    record: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let words = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("en_stem")
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let exact = STRING | FAST;
    let number = || INDEXED | FAST;
    let fields = Fields {
        key: b.add_text_field("key", STRING),
        id: b.add_text_field("id", STRING | STORED),
        title: b.add_text_field("title", words.clone()),
        all: b.add_text_field("all", words),
        title_sort: b.add_text_field("title_sort", exact.clone()),
        source: b.add_text_field("source", exact.clone()),
        keyword: b.add_text_field("keyword", exact.clone()),
        keyword_lc: b.add_text_field("keyword_lc", STRING),
        format: b.add_text_field("format", exact),
        west: b.add_f64_field("west", number()),
        south: b.add_f64_field("south", number()),
        east: b.add_f64_field("east", number()),
        north: b.add_f64_field("north", number()),
        crosses: b.add_u64_field("crosses", number()),
        t_start: b.add_i64_field("t_start", number()),
        t_end: b.add_i64_field("t_end", number()),
        modified: b.add_i64_field("modified", FAST),
        record: b.add_text_field("record", STORED),
    };
    (b.build(), fields)
}

struct Inner {
    index: Index,
    /// Opened on the first search: a process that only harvests (`run-test`, whose indexer
    /// only writes) never opens every segment, nor reloads them after each commit. An open
    /// segment costs resident pages (its files' headers, mapped) and memory, and segments
    /// grow in number with the index (`MAX_DOCS_BEFORE_MERGE`).
    reader: OnceLock<IndexReader>,
    /// Opened on the first write: a process that only searches never takes the lock.
    writer: Mutex<Option<IndexWriter>>,
    fields: Fields,
}

#[derive(Clone)]
pub struct TantivyIndex {
    inner: Arc<Inner>,
}

fn index_error(e: impl std::fmt::Display) -> IndexError {
    IndexError::Index(e.to_string())
}

impl TantivyIndex {
    /// The index in `dir` (created when missing).
    pub fn open(dir: &Path) -> Result<TantivyIndex, IndexError> {
        std::fs::create_dir_all(dir).map_err(index_error)?;
        let (schema, fields) = schema();
        let directory = MmapDirectory::open(dir).map_err(index_error)?;
        let index = Index::open_or_create(directory, schema).map_err(index_error)?;
        Ok(Self::with(index, fields))
    }

    pub fn in_memory() -> TantivyIndex {
        let (schema, fields) = schema();
        Self::with(Index::create_in_ram(schema), fields)
    }

    fn with(index: Index, fields: Fields) -> TantivyIndex {
        TantivyIndex {
            inner: Arc::new(Inner {
                index,
                reader: OnceLock::new(),
                writer: Mutex::new(None),
                fields,
            }),
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T, IndexError> + Send + 'static,
    ) -> Result<T, IndexError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(index_error)?
    }
}

impl Inner {
    fn write(
        &self,
        change: impl FnOnce(&IndexWriter, &Fields) -> Result<(), IndexError>,
    ) -> Result<(), IndexError> {
        let mut guard = self.writer.lock().map_err(index_error)?;
        if guard.is_none() {
            let writer = self
                .index
                .writer_with_num_threads(1, WRITER_MEMORY)
                .map_err(|e| match e {
                    tantivy::TantivyError::LockFailure(..) => IndexError::Busy,
                    e => index_error(e),
                })?;
            let mut policy = LogMergePolicy::default();
            policy.set_max_docs_before_merge(MAX_DOCS_BEFORE_MERGE);
            writer.set_merge_policy(Box::new(policy));
            *guard = Some(writer);
        }
        let writer = guard.as_mut().expect("a writer");
        change(writer, &self.fields)?;
        writer.commit().map_err(index_error)?;
        // A reader opened later starts from this commit.
        if let Some(reader) = self.reader.get() {
            reader.reload().map_err(index_error)?;
        }
        Ok(())
    }

    /// The index as last committed (this process's commits at once; another process's, such
    /// as serve's indexer seen by the CLI, after a moment).
    fn searcher(&self) -> Result<Searcher, IndexError> {
        if let Some(reader) = self.reader.get() {
            return Ok(reader.searcher());
        }
        // Opened between this process's commits: one that came before shows in it, one
        // that comes after reloads it.
        let _commits = self.writer.lock().map_err(index_error)?;
        if let Some(reader) = self.reader.get() {
            return Ok(reader.searcher());
        }
        let reader: IndexReader = self
            .index
            .reader_builder()
            .reload_policy(ReloadPolicy::OnCommitWithDelay)
            .try_into()
            .map_err(index_error)?;
        Ok(self.reader.get_or_init(|| reader).searcher())
    }

    fn document(&self, record: &Record) -> Result<TantivyDocument, IndexError> {
        let f = &self.fields;
        let m = &record.metadata;
        let mut doc = TantivyDocument::default();
        doc.add_text(f.key, keys::id_key(&m.id));
        doc.add_text(f.id, &m.id);
        doc.add_text(f.title, &m.title);
        doc.add_text(f.all, &m.abstract_text);
        for keyword in &m.keywords {
            doc.add_text(f.all, keyword);
            doc.add_text(f.keyword, keyword);
            doc.add_text(f.keyword_lc, keyword.to_lowercase());
        }
        for contact in &m.contacts {
            for text in [&contact.name, &contact.organisation, &contact.email]
                .into_iter()
                .flatten()
            {
                doc.add_text(f.all, text);
            }
        }
        doc.add_text(f.title_sort, m.title.to_lowercase());
        doc.add_text(f.source, &record.source);
        let format = serde_json::to_value(m.format).map_err(index_error)?;
        doc.add_text(f.format, format.as_str().unwrap_or_default());
        if let Some(b) = m.bbox {
            doc.add_f64(f.west, b.west);
            doc.add_f64(f.south, b.south);
            doc.add_f64(f.east, b.east);
            doc.add_f64(f.north, b.north);
            doc.add_u64(f.crosses, u64::from(b.west > b.east));
        }
        if let Some(time) = &m.time {
            // An open end stretches to the edge of time.
            let start = time.start.as_deref().and_then(|t| seconds(t, Edge::First));
            let end = time.end.as_deref().and_then(|t| seconds(t, Edge::Last));
            if start.is_some() || end.is_some() {
                doc.add_i64(f.t_start, start.unwrap_or(i64::MIN));
                doc.add_i64(f.t_end, end.unwrap_or(i64::MAX));
            }
        }
        let modified = m.modified.as_deref().and_then(|t| seconds(t, Edge::First));
        doc.add_i64(f.modified, modified.unwrap_or(i64::MIN));
        doc.add_text(
            f.record,
            serde_json::to_string(record).map_err(index_error)?,
        );
        Ok(doc)
    }

    fn query(&self, search: &Search) -> Box<dyn Query> {
        let f = &self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if let Some(text) = search.text.as_deref().filter(|t| !words_only(t).is_empty()) {
            clauses.push((Occur::Must, self.words_query(vec![f.title, f.all], text)));
        }
        let conditions = conditions(search);
        if !conditions.is_empty() {
            clauses.push((Occur::Must, self.filter_query(&Filter::And(conditions))));
        }
        if clauses.is_empty() {
            return Box::new(AllQuery);
        }
        Box::new(BooleanQuery::new(clauses))
    }

    fn words_query(&self, fields: Vec<Field>, text: &str) -> Box<dyn Query> {
        let words = words_only(text);
        if words.is_empty() {
            return Box::new(AllQuery);
        }
        let mut parser = QueryParser::for_index(&self.index, fields);
        parser.set_conjunction_by_default();
        parser.set_field_boost(self.fields.title, 2.0);
        parser.parse_query_lenient(&words).0
    }

    fn filter_query(&self, filter: &Filter) -> Box<dyn Query> {
        let f = &self.fields;
        let all = |parts: &[Filter], occur: Occur| -> Box<dyn Query> {
            Box::new(BooleanQuery::new(
                parts
                    .iter()
                    .map(|p| (occur, self.filter_query(p)))
                    .collect(),
            ))
        };
        match filter {
            Filter::All => Box::new(AllQuery),
            Filter::And(parts) if parts.is_empty() => Box::new(AllQuery),
            Filter::And(parts) => all(parts, Occur::Must),
            Filter::Or(parts) => all(parts, Occur::Should),
            // A query of only MustNot matches nothing: take it out of everything.
            Filter::Not(inner) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, Box::new(AllQuery)),
                (Occur::MustNot, self.filter_query(inner)),
            ])),
            Filter::Words { field, words } => match field {
                TextField::Any => self.words_query(vec![f.title, f.all], words),
                TextField::Title => self.words_query(vec![f.title], words),
            },
            Filter::Equals { field, value } => {
                let (field, value) = match field {
                    ExactField::Identifier => (f.id, value.clone()),
                    ExactField::Title => (f.title_sort, value.to_lowercase()),
                    ExactField::Keyword => (f.keyword_lc, value.to_lowercase()),
                    ExactField::Format => (f.format, value.clone()),
                    ExactField::Source => (f.source, value.clone()),
                };
                Box::new(TermQuery::new(
                    Term::from_field_text(field, &value),
                    IndexRecordOption::Basic,
                ))
            }
            Filter::Date {
                field,
                compare,
                seconds,
            } => {
                let field = match field {
                    DateField::Modified => f.modified,
                    DateField::TimeBegin => f.t_start,
                    DateField::TimeEnd => f.t_end,
                };
                let term = |s: i64| Term::from_field_i64(field, s);
                // A record without a modification date holds i64::MIN: it is before nothing.
                // An open start holds it too, and is the beginning of time: before everything.
                let floor = if field == f.modified {
                    Bound::Excluded(term(i64::MIN))
                } else {
                    Bound::Unbounded
                };
                let (lower, upper) = match compare {
                    Compare::Less => (floor, Bound::Excluded(term(*seconds))),
                    Compare::LessOrEqual => (floor, Bound::Included(term(*seconds))),
                    Compare::Equal => (
                        Bound::Included(term(*seconds)),
                        Bound::Included(term(*seconds)),
                    ),
                    Compare::GreaterOrEqual => (Bound::Included(term(*seconds)), Bound::Unbounded),
                    Compare::Greater => (Bound::Excluded(term(*seconds)), Bound::Unbounded),
                };
                range(lower, upper)
            }
            Filter::BBox(bbox) => self.bbox_query(bbox),
        }
    }

    /// Records whose box meets `bbox`, either of them possibly across the antimeridian: a box
    /// across it is the union of [west, 180] and [-180, east].
    fn bbox_query(&self, bbox: &BBox) -> Box<dyn Query> {
        let f = &self.fields;
        let spans = if bbox.west > bbox.east {
            vec![(bbox.west, 180.0), (-180.0, bbox.east)]
        } else {
            vec![(bbox.west, bbox.east)]
        };
        let mut any_span: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (west, east) in spans {
            // A plain record box meets the span when it starts before its end and ends after
            // its start.
            let plain = BooleanQuery::new(vec![
                (Occur::Must, equal_u64(f.crosses, 0)),
                (Occur::Must, at_most(Term::from_field_f64(f.west, east))),
                (Occur::Must, at_least(Term::from_field_f64(f.east, west))),
            ]);
            // A record box across the antimeridian meets it when either of its two parts does.
            let across = BooleanQuery::new(vec![
                (Occur::Must, equal_u64(f.crosses, 1)),
                (
                    Occur::Must,
                    Box::new(BooleanQuery::new(vec![
                        (Occur::Should, at_most(Term::from_field_f64(f.west, east))),
                        (Occur::Should, at_least(Term::from_field_f64(f.east, west))),
                    ])),
                ),
            ]);
            any_span.push((Occur::Should, Box::new(plain)));
            any_span.push((Occur::Should, Box::new(across)));
        }
        Box::new(BooleanQuery::new(vec![
            (
                Occur::Must,
                at_most(Term::from_field_f64(f.south, bbox.north)),
            ),
            (
                Occur::Must,
                at_least(Term::from_field_f64(f.north, bbox.south)),
            ),
            (Occur::Must, Box::new(BooleanQuery::new(any_span))),
        ]))
    }

    fn search(&self, search: &Search) -> Result<Hits, IndexError> {
        let searcher = self.searcher()?;
        let query = self.query(search);
        let limit = search.limit.max(1) as usize;
        // The collector keeps a buffer of offset + limit entries: past the last record a page
        // is empty anyway, so a far offset (startPosition=10^12) costs no more than the index.
        let offset = search.offset.min(searcher.num_docs()) as usize;
        let top = TopDocs::with_limit(limit).and_offset(offset);
        let has_words = search
            .text
            .as_deref()
            .is_some_and(|t| !words_only(t).is_empty());
        let sort = search.sort.unwrap_or(if has_words {
            Sort::Relevance
        } else {
            Sort::Title
        });
        let aggs: Aggregations = serde_json::from_value(serde_json::json!({
            "source": {"terms": {"field": "source", "size": FACET_SIZE}},
            "keyword": {"terms": {"field": "keyword", "size": FACET_SIZE}},
            "format": {"terms": {"field": "format", "size": FACET_SIZE}},
        }))
        .map_err(index_error)?;
        let facets = AggregationCollector::from_aggs(aggs, Default::default());
        let (total, addresses, facets): (usize, Vec<DocAddress>, _) = match sort {
            Sort::Relevance => {
                let (n, hits, agg) = searcher
                    .search(&query, &(Count, top.order_by_score(), facets))
                    .map_err(index_error)?;
                (n, hits.into_iter().map(|(_, a)| a).collect(), agg)
            }
            Sort::Date => {
                let by_date = top.order_by_fast_field::<i64>("modified", Order::Desc);
                let (n, hits, agg) = searcher
                    .search(&query, &(Count, by_date, facets))
                    .map_err(index_error)?;
                (n, hits.into_iter().map(|(_, a)| a).collect(), agg)
            }
            Sort::Title => {
                let by_title = top.order_by_string_fast_field("title_sort", Order::Asc);
                let (n, hits, agg) = searcher
                    .search(&query, &(Count, by_title, facets))
                    .map_err(index_error)?;
                (n, hits.into_iter().map(|(_, a)| a).collect(), agg)
            }
        };
        let records = addresses
            .into_iter()
            .map(|address| self.stored_record(&searcher, address))
            .collect::<Result<Vec<_>, _>>()?;
        let facets = serde_json::to_value(facets).map_err(index_error)?;
        Ok(Hits {
            total: total as u64,
            records,
            facets: Facets {
                source: buckets(&facets["source"]),
                keyword: buckets(&facets["keyword"]),
                format: buckets(&facets["format"]),
            },
        })
    }

    fn stored_record(
        &self,
        searcher: &Searcher,
        address: DocAddress,
    ) -> Result<Record, IndexError> {
        let doc: TantivyDocument = searcher.doc(address).map_err(index_error)?;
        let text = doc
            .get_first(self.fields.record)
            .and_then(|v| v.as_str())
            .ok_or_else(|| index_error("an indexed record without its JSON"))?;
        serde_json::from_str(text).map_err(index_error)
    }
}

/// The search's own filters as conditions of the filter tree, so one translation serves the
/// API's parameters and CSW's filters alike.
fn conditions(search: &Search) -> Vec<Filter> {
    let exact =
        |field, value: &Option<String>| value.clone().map(|value| Filter::Equals { field, value });
    let date = |field, compare, seconds: Option<i64>| {
        seconds.map(|seconds| Filter::Date {
            field,
            compare,
            seconds,
        })
    };
    [
        exact(ExactField::Source, &search.source),
        exact(ExactField::Keyword, &search.keyword),
        exact(ExactField::Format, &search.format),
        search.bbox.map(Filter::BBox),
        // The extent overlaps [start, end]: it ends after the start and starts before the end.
        date(DateField::TimeEnd, Compare::GreaterOrEqual, search.start),
        date(DateField::TimeBegin, Compare::LessOrEqual, search.end),
        search.filter.clone(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The words of a user's text: a quote, colon or minus is no query syntax here.
fn words_only(text: &str) -> String {
    let spaced: String = text
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    spaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn buckets(aggregation: &serde_json::Value) -> Vec<Bucket> {
    aggregation["buckets"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|b| {
                    Some(Bucket {
                        value: b["key"].as_str()?.to_string(),
                        count: b["doc_count"].as_u64()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn range(lower: Bound<Term>, upper: Bound<Term>) -> Box<dyn Query> {
    Box::new(RangeQuery::new(lower, upper))
}

fn at_least(term: Term) -> Box<dyn Query> {
    range(Bound::Included(term), Bound::Unbounded)
}

fn at_most(term: Term) -> Box<dyn Query> {
    range(Bound::Unbounded, Bound::Included(term))
}

fn equal_u64(field: Field, value: u64) -> Box<dyn Query> {
    Box::new(TermQuery::new(
        Term::from_field_u64(field, value),
        IndexRecordOption::Basic,
    ))
}

#[async_trait]
impl SearchIndex for TantivyIndex {
    async fn apply(&self, upserts: Vec<Record>, deletes: Vec<String>) -> Result<(), IndexError> {
        if upserts.is_empty() && deletes.is_empty() {
            return Ok(());
        }
        self.blocking(move |inner| {
            let docs = upserts
                .iter()
                .map(|r| Ok((keys::id_key(&r.metadata.id), inner.document(r)?)))
                .collect::<Result<Vec<_>, IndexError>>()?;
            inner.write(|writer, f| {
                for key in &deletes {
                    writer.delete_term(Term::from_field_text(f.key, key));
                }
                for (key, doc) in docs {
                    writer.delete_term(Term::from_field_text(f.key, &key));
                    writer.add_document(doc).map_err(index_error)?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn search(&self, search: &Search) -> Result<Hits, IndexError> {
        let search = search.clone();
        self.blocking(move |inner| inner.search(&search)).await
    }

    async fn count(&self) -> Result<u64, IndexError> {
        self.blocking(|inner| Ok(inner.searcher()?.num_docs()))
            .await
    }

    async fn holds(&self, keys: Vec<String>) -> Result<Vec<bool>, IndexError> {
        self.blocking(move |inner| {
            let searcher = inner.searcher()?;
            keys.iter()
                .map(|key| {
                    let query = TermQuery::new(
                        Term::from_field_text(inner.fields.key, key),
                        IndexRecordOption::Basic,
                    );
                    Ok(searcher.search(&query, &Count).map_err(index_error)? > 0)
                })
                .collect()
        })
        .await
    }

    async fn keys(&self) -> Result<Vec<String>, IndexError> {
        self.blocking(|inner| {
            let searcher = inner.searcher()?;
            let addresses = searcher
                .search(&AllQuery, &DocSetCollector)
                .map_err(index_error)?;
            addresses
                .into_iter()
                .map(|address| {
                    let doc: TantivyDocument = searcher.doc(address).map_err(index_error)?;
                    let id = doc
                        .get_first(inner.fields.id)
                        .and_then(|v| v.as_str())
                        .ok_or_else(|| index_error("an indexed record without its id"))?;
                    Ok(keys::id_key(id))
                })
                .collect()
        })
        .await
    }
}

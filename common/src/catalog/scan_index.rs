//! A search that reads every record from the store: no index to keep, a cost that grows with
//! the catalogue. AWS mode uses it until the index function keeps a tantivy index in S3.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::index::{Bucket, Facets, Hits, IndexError, Search, SearchIndex, Sort};
use super::times::{Edge, seconds};
use crate::domain::keys;
use crate::domain::record::{BBox, Record};
use crate::store::{ObjectStore, Pages, get_json};

pub struct StoreScan {
    store: Arc<dyn ObjectStore>,
}

impl StoreScan {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        StoreScan { store }
    }
}

fn store_error(e: impl std::fmt::Display) -> IndexError {
    IndexError::Index(e.to_string())
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether the spans of two boxes' longitudes meet, either across the antimeridian.
fn meets(a: &BBox, b: &BBox) -> bool {
    let spans = |x: &BBox| {
        if x.west > x.east {
            vec![(x.west, 180.0), (-180.0, x.east)]
        } else {
            vec![(x.west, x.east)]
        }
    };
    let lon = spans(a)
        .iter()
        .any(|(w1, e1)| spans(b).iter().any(|(w2, e2)| w1 <= e2 && w2 <= e1));
    lon && a.south <= b.north && b.south <= a.north
}

fn matches(record: &Record, search: &Search) -> bool {
    let m = &record.metadata;
    if search.source.as_ref().is_some_and(|s| s != &record.source) {
        return false;
    }
    if let Some(k) = &search.keyword
        && !m.keywords.iter().any(|x| x.eq_ignore_ascii_case(k))
    {
        return false;
    }
    if let Some(format) = &search.format {
        let own = serde_json::to_value(m.format).unwrap_or_default();
        if own.as_str() != Some(format.as_str()) {
            return false;
        }
    }
    if let Some(text) = &search.text {
        let mut hay = words(&m.title);
        hay.extend(words(&m.abstract_text));
        for k in &m.keywords {
            hay.extend(words(k));
        }
        if !words(text).iter().all(|w| hay.contains(w)) {
            return false;
        }
    }
    if let Some(b) = &search.bbox
        && !m.bbox.as_ref().is_some_and(|r| meets(r, b))
    {
        return false;
    }
    if search.start.is_some() || search.end.is_some() {
        let Some(time) = &m.time else { return false };
        let start = time.start.as_deref().and_then(|t| seconds(t, Edge::First));
        let end = time.end.as_deref().and_then(|t| seconds(t, Edge::Last));
        if start.is_none() && end.is_none() {
            return false;
        }
        if let Some(qs) = search.start
            && end.is_some_and(|e| e < qs)
        {
            return false;
        }
        if let Some(qe) = search.end
            && start.is_some_and(|s| s > qe)
        {
            return false;
        }
    }
    true
}

fn count_into(counts: &mut HashMap<String, u64>, value: &str) {
    *counts.entry(value.to_string()).or_default() += 1;
}

fn top(counts: HashMap<String, u64>) -> Vec<Bucket> {
    let mut list: Vec<Bucket> = counts
        .into_iter()
        .map(|(value, count)| Bucket { value, count })
        .collect();
    list.sort_by(|a, b| b.count.cmp(&a.count).then(a.value.cmp(&b.value)));
    list.truncate(20);
    list
}

#[async_trait]
impl SearchIndex for StoreScan {
    fn wants_changes(&self) -> bool {
        false
    }

    async fn apply(&self, _upserts: Vec<Record>, _deletes: Vec<String>) -> Result<(), IndexError> {
        Ok(())
    }

    async fn search(&self, search: &Search) -> Result<Hits, IndexError> {
        let store = self.store.as_ref();
        let mut hits = Vec::new();
        let mut pages = Pages::new(store, keys::RECORDS);
        while let Some(entries) = pages.next().await.map_err(store_error)? {
            for entry in entries.iter().filter(|e| e.key.ends_with(".json")) {
                if let Some((record, _)) = get_json::<Record>(store, &entry.key)
                    .await
                    .map_err(store_error)?
                    && matches(&record, search)
                {
                    hits.push(record);
                }
            }
        }
        let (mut sources, mut keywords, mut formats) = Default::default();
        for r in &hits {
            count_into(&mut sources, &r.source);
            for k in &r.metadata.keywords {
                count_into(&mut keywords, k);
            }
            let format = serde_json::to_value(r.metadata.format).unwrap_or_default();
            count_into(&mut formats, format.as_str().unwrap_or_default());
        }
        match search.sort {
            Some(Sort::Date) => hits.sort_by(|a, b| b.metadata.modified.cmp(&a.metadata.modified)),
            _ => hits.sort_by(|a, b| {
                a.metadata
                    .title
                    .to_lowercase()
                    .cmp(&b.metadata.title.to_lowercase())
                    .then(a.metadata.id.cmp(&b.metadata.id))
            }),
        }
        let total = hits.len() as u64;
        let records = hits
            .into_iter()
            .skip(search.offset as usize)
            .take(search.limit as usize)
            .collect();
        Ok(Hits {
            total,
            records,
            facets: Facets {
                source: top(sources),
                keyword: top(keywords),
                format: top(formats),
            },
        })
    }

    async fn count(&self) -> Result<u64, IndexError> {
        let mut count = 0;
        let mut pages = Pages::new(self.store.as_ref(), keys::RECORDS);
        while let Some(entries) = pages.next().await.map_err(store_error)? {
            count += entries.iter().filter(|e| e.key.ends_with(".json")).count() as u64;
        }
        Ok(count)
    }

    async fn holds(&self, keys: Vec<String>) -> Result<Vec<bool>, IndexError> {
        // The scan reads the store itself: it holds what the store holds.
        Ok(vec![true; keys.len()])
    }

    async fn clear(&self) -> Result<(), IndexError> {
        Ok(())
    }
}

//! Reading the catalogue: records by id, and the search over them through the index port.

mod filter;
mod index;
mod jsonld;
mod s3_index;
mod tantivy_index;
mod times;

pub use filter::{Compare, DateField, ExactField, Filter, TextField};
pub use index::{Bucket, Facets, Hits, IndexError, Search, SearchIndex, Sort};
pub use jsonld::dataset as jsonld_dataset;
pub use s3_index::S3Index;
pub use tantivy_index::TantivyIndex;
pub use times::{Edge, seconds};

use serde::{Deserialize, Serialize};

use crate::domain::keys;
use crate::domain::record::{BBox, Record};
use crate::domain::source::FieldError;
use crate::store::{ObjectStore, StoreError, get_json};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("{0} not found")]
    NotFound(String),
}

/// A search as the API's query string and the CLI's flags give it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SearchQuery {
    pub q: Option<String>,
    /// `W,S,E,N`; west greater than east crosses the antimeridian.
    pub bbox: Option<String>,
    /// A date or time: records whose time extent overlaps [start, end].
    pub start: Option<String>,
    pub end: Option<String>,
    pub source: Option<String>,
    pub keyword: Option<String>,
    /// The record's format (`iso19139`, `iso19115-3`, `dublin-core`, `ckan`).
    pub format: Option<String>,
    /// `relevance`, `date` or `title`.
    pub sort: Option<String>,
    pub page: Option<u64>,
    pub page_size: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchPage {
    pub total: u64,
    pub page: u64,
    pub page_size: u64,
    pub records: Vec<Record>,
    /// Matching records by source, keyword and format.
    #[serde(default)]
    pub facets: Facets,
}

pub fn parse_bbox(text: &str) -> Result<BBox, String> {
    let parts: Vec<f64> = text
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("bbox {text:?} is not W,S,E,N"))?;
    let [west, south, east, north] = parts[..] else {
        return Err(format!("bbox {text:?} is not W,S,E,N"));
    };
    let bbox = BBox {
        west,
        south,
        east,
        north,
    };
    bbox.validate()?;
    Ok(bbox)
}

const MAX_PAGE_SIZE: u64 = 1000;

impl SearchQuery {
    /// The checked search; a bad parameter is refused with its name.
    pub fn parse(&self) -> Result<(Search, u64, u64), FieldError> {
        let bbox = self
            .bbox
            .as_deref()
            .map(parse_bbox)
            .transpose()
            .map_err(|e| FieldError::new("bbox", e))?;
        let time = |name: &str, text: &Option<String>, edge| {
            text.as_deref()
                .filter(|t| !t.trim().is_empty())
                .map(|t| {
                    seconds(t, edge).ok_or_else(|| {
                        FieldError::new(
                            name,
                            format!("{t:?} is not a date (YYYY[-MM[-DD]] or RFC 3339)"),
                        )
                    })
                })
                .transpose()
        };
        let sort = match self.sort.as_deref() {
            None | Some("") => None,
            Some("relevance") => Some(Sort::Relevance),
            Some("date") => Some(Sort::Date),
            Some("title") => Some(Sort::Title),
            Some(other) => {
                return Err(FieldError::new(
                    "sort",
                    format!("{other:?} is not one of relevance, date, title"),
                ));
            }
        };
        let page = self.page.unwrap_or(1).max(1);
        let page_size = self.page_size.unwrap_or(20).clamp(1, MAX_PAGE_SIZE);
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        let search = Search {
            text: nonempty(&self.q),
            bbox,
            start: time("start", &self.start, Edge::First)?,
            end: time("end", &self.end, Edge::Last)?,
            source: nonempty(&self.source),
            keyword: nonempty(&self.keyword),
            format: nonempty(&self.format),
            sort,
            filter: None,
            offset: (page - 1).saturating_mul(page_size),
            limit: page_size,
        };
        Ok((search, page, page_size))
    }
}

pub async fn search(
    index: &dyn SearchIndex,
    query: &SearchQuery,
) -> Result<SearchPage, CatalogError> {
    let (search, page, page_size) = query.parse()?;
    let hits = index.search(&search).await?;
    Ok(SearchPage {
        total: hits.total,
        page,
        page_size,
        records: hits.records,
        facets: hits.facets,
    })
}

pub async fn get_record(store: &dyn ObjectStore, id: &str) -> Result<Record, CatalogError> {
    get_json::<Record>(store, &keys::record_json(&keys::id_key(id)))
        .await?
        .map(|(r, _)| r)
        .ok_or_else(|| CatalogError::NotFound(format!("record {id}")))
}

pub async fn get_record_xml(
    store: &dyn ObjectStore,
    id: &str,
) -> Result<bytes::Bytes, CatalogError> {
    match store.get(&keys::record_xml(&keys::id_key(id))).await {
        Ok(obj) => Ok(obj.body),
        Err(StoreError::NotFound(_)) => Err(CatalogError::NotFound(format!("record {id}"))),
        Err(e) => Err(e.into()),
    }
}

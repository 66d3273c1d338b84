//! The search index port: the catalogue's records made searchable. The records in the store
//! are the truth; an index is derived from them and can always be rebuilt from them.
//!
//! The embedded default is tantivy (`tantivy_index.rs`). A site that outgrows one machine's
//! index implements this trait over OpenSearch: `apply` becomes a bulk request, `search` a
//! bool query of the same clauses, the facets terms aggregations.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::filter::Filter;
use crate::domain::record::{BBox, Record};

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// Another process writes the index (tantivy's writer lock).
    #[error("the search index is being written by another process")]
    Busy,
    #[error("search index: {0}")]
    Index(String),
}

/// How the hits are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sort {
    /// Best match first (the default with a text query).
    Relevance,
    /// Most recently modified first.
    Date,
    /// By title (the default without a text query).
    Title,
}

/// A checked search: what the API and the CLI parse their parameters into.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// Words, all of which must match (stemmed: "surveys" finds "survey").
    pub text: Option<String>,
    pub bbox: Option<BBox>,
    /// Seconds since 1970: the record's time extent must overlap [start, end].
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub source: Option<String>,
    pub keyword: Option<String>,
    pub format: Option<String>,
    pub sort: Option<Sort>,
    /// Further conditions, all of which must hold as well (CSW's filter).
    pub filter: Option<Filter>,
    /// From 0.
    pub offset: u64,
    pub limit: u64,
}

/// How many matching records have each value, most first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facets {
    pub source: Vec<Bucket>,
    pub keyword: Vec<Bucket>,
    pub format: Vec<Bucket>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub value: String,
    pub count: u64,
}

#[derive(Debug, Clone)]
pub struct Hits {
    pub total: u64,
    pub records: Vec<Record>,
    pub facets: Facets,
}

#[async_trait]
pub trait SearchIndex: Send + Sync {
    /// Puts `upserts` in (replacing the records of the same id) and takes the records whose
    /// keys (`keys::id_key`) are in `deletes` out, visible to searches once it returns.
    /// Applying the same change twice leaves the index as applying it once.
    async fn apply(&self, upserts: Vec<Record>, deletes: Vec<String>) -> Result<(), IndexError>;
    async fn search(&self, search: &Search) -> Result<Hits, IndexError>;
    /// Records indexed.
    async fn count(&self) -> Result<u64, IndexError>;
    /// Which of these record keys the index holds.
    async fn holds(&self, keys: Vec<String>) -> Result<Vec<bool>, IndexError>;
    /// The keys of every record indexed (a reindex removes those the store no longer holds,
    /// without emptying the index first: searches keep answering while it runs).
    async fn keys(&self) -> Result<Vec<String>, IndexError>;
}

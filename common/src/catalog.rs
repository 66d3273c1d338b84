//! Reading the catalogue: records by id, and a paged search over them.
//!
//! The search here scans the records; an embedded index replaces it in the search issue,
//! behind the same function.

use serde::{Deserialize, Serialize};

use crate::domain::keys;
use crate::domain::record::{BBox, Record};
use crate::pipeline::PipelineError;
use crate::store::{ObjectStore, StoreError, get_json};

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SearchQuery {
    pub q: Option<String>,
    /// `W,S,E,N`
    pub bbox: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub source: Option<String>,
    pub keyword: Option<String>,
    pub page: Option<u64>,
    pub page_size: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchPage {
    pub total: u64,
    pub page: u64,
    pub page_size: u64,
    pub records: Vec<Record>,
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

fn matches(record: &Record, query: &SearchQuery, bbox: Option<&BBox>) -> bool {
    let m = &record.metadata;
    if let Some(source) = &query.source
        && &record.source != source
    {
        return false;
    }
    if let Some(keyword) = &query.keyword
        && !m.keywords.iter().any(|k| k.eq_ignore_ascii_case(keyword))
    {
        return false;
    }
    if let Some(q) = query
        .q
        .as_deref()
        .map(str::to_lowercase)
        .filter(|q| !q.is_empty())
    {
        let hay =
            format!("{} {} {}", m.title, m.abstract_text, m.keywords.join(" ")).to_lowercase();
        if !q.split_whitespace().all(|word| hay.contains(word)) {
            return false;
        }
    }
    if let Some(b) = bbox
        && !m.bbox.is_some_and(|rb| rb.intersects(b))
    {
        return false;
    }
    if query.start.is_some() || query.end.is_some() {
        let Some(time) = &m.time else { return false };
        if let (Some(qs), Some(end)) = (&query.start, &time.end)
            && end.as_str() < qs.as_str()
        {
            return false;
        }
        if let (Some(qe), Some(start)) = (&query.end, &time.start)
            && start.as_str() > qe.as_str()
        {
            return false;
        }
    }
    true
}

pub async fn search(
    store: &dyn ObjectStore,
    query: &SearchQuery,
) -> Result<SearchPage, PipelineError> {
    let bbox = query
        .bbox
        .as_deref()
        .map(parse_bbox)
        .transpose()
        .map_err(|e| crate::domain::source::FieldError::new("bbox", e))?;
    let page = query.page.unwrap_or(1).max(1);
    let page_size = query.page_size.unwrap_or(20).clamp(1, 1000);
    let mut hits = Vec::new();
    for entry in store.list(keys::RECORDS).await? {
        if !entry.key.ends_with(".json") {
            continue;
        }
        if let Some((record, _)) = get_json::<Record>(store, &entry.key).await?
            && matches(&record, query, bbox.as_ref())
        {
            hits.push(record);
        }
    }
    hits.sort_by(|a, b| {
        a.metadata
            .title
            .cmp(&b.metadata.title)
            .then(a.metadata.id.cmp(&b.metadata.id))
    });
    let total = hits.len() as u64;
    let records = hits
        .into_iter()
        .skip(((page - 1) * page_size) as usize)
        .take(page_size as usize)
        .collect();
    Ok(SearchPage {
        total,
        page,
        page_size,
        records,
    })
}

pub async fn get_record(store: &dyn ObjectStore, id: &str) -> Result<Record, PipelineError> {
    get_json::<Record>(store, &keys::record_json(&keys::id_key(id)))
        .await?
        .map(|(r, _)| r)
        .ok_or_else(|| PipelineError::NotFound(format!("record {id}")))
}

pub async fn get_record_xml(
    store: &dyn ObjectStore,
    id: &str,
) -> Result<bytes::Bytes, PipelineError> {
    match store.get(&keys::record_xml(&keys::id_key(id))).await {
        Ok(obj) => Ok(obj.body),
        Err(StoreError::NotFound(_)) => Err(PipelineError::NotFound(format!("record {id}"))),
        Err(e) => Err(e.into()),
    }
}

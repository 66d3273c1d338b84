//! CKAN's datastore_search, page by page: a `limit=0` call first (the fields, the total, and
//! whether the server writes records as CSV), then pages of PAGE_SIZE rows sorted by `_id`
//! (stable under `q`, whose default order is by rank), until a short page or the limit.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::PackageError;
use super::request::{PackageRequest, TableFormat};
use crate::fetch::{HttpFetcher, PostJson};

/// A page of 32,000 wide rows is a few MiB; anything near this is not a datastore page.
const MAX_PAGE_BYTES: u64 = 512 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct DatastoreInfo {
    /// Column ids, in the datastore's order.
    pub fields: Vec<String>,
    /// Rows matching the query (before offset and limit).
    pub total: u64,
    /// The server writes `records_format=csv|tsv` (CKAN 2.7 and later).
    pub delimited: bool,
}

impl DatastoreInfo {
    /// The rows a request will package: the total after its offset, capped by its limit.
    pub fn rows_for(&self, request: &PackageRequest) -> u64 {
        let after_offset = self.total.saturating_sub(request.offset);
        request.limit.map_or(after_offset, |l| l.min(after_offset))
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    result: Option<SearchResult>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct SearchResult {
    #[serde(default)]
    fields: Vec<Field>,
    #[serde(default)]
    total: Option<u64>,
    #[serde(default)]
    records: Option<Records>,
}

#[derive(Deserialize)]
struct Field {
    id: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Records {
    Delimited(String),
    Objects(Vec<Map<String, Value>>),
}

pub struct Datastore<'a> {
    fetcher: &'a dyn HttpFetcher,
    url: String,
    key: Option<String>,
    base: Map<String, Value>,
    format: TableFormat,
}

impl<'a> Datastore<'a> {
    pub fn new(
        fetcher: &'a dyn HttpFetcher,
        request: &PackageRequest,
    ) -> Result<Self, PackageError> {
        let url = request
            .api_url
            .clone()
            .ok_or_else(|| PackageError::bad("api_url", "Parameter api_url is required"))?;
        let mut base = Map::new();
        base.insert("resource_id".into(), json!(request.resource_id));
        for (k, v) in &request.search {
            base.insert(k.clone(), v.clone());
        }
        base.entry("sort").or_insert_with(|| json!("_id"));
        Ok(Datastore {
            fetcher,
            url,
            key: request.key.clone(),
            base,
            format: request.format,
        })
    }

    fn failure(&self, message: impl Into<String>) -> PackageError {
        PackageError::Datastore {
            url: self.url.clone(),
            message: message.into(),
        }
    }

    async fn call(&self, params: Map<String, Value>) -> Result<SearchResult, PackageError> {
        let response = self
            .fetcher
            .post_json(&PostJson {
                url: self.url.clone(),
                body: Value::Object(params),
                authorization: self.key.clone(),
                max_bytes: MAX_PAGE_BYTES,
            })
            .await?;
        let envelope: Result<Envelope, _> = serde_json::from_slice(&response.body);
        match envelope {
            Ok(Envelope {
                success: true,
                result: Some(result),
                ..
            }) if (200..300).contains(&response.status) => Ok(result),
            Ok(Envelope { error, .. }) => Err(self.failure(format!(
                "HTTP {}: {}",
                response.status,
                error.map_or_else(|| "no result".to_string(), |e| e.to_string())
            ))),
            Err(_) if !(200..300).contains(&response.status) => {
                Err(PackageError::Fetch(crate::fetch::FetchError::Status {
                    url: self.url.clone(),
                    status: response.status,
                }))
            }
            Err(e) => {
                Err(self.failure(format!("the answer is not a datastore_search result: {e}")))
            }
        }
    }

    /// The `limit=0` call: fields, total, and whether delimited records are offered.
    pub async fn describe(&self) -> Result<DatastoreInfo, PackageError> {
        let mut params = self.base.clone();
        params.insert("limit".into(), json!(0));
        params.insert("records_format".into(), json!(self.format.extension()));
        let (result, delimited) = match self.call(params).await {
            Ok(r) => {
                let delimited = matches!(r.records, Some(Records::Delimited(_)));
                (r, delimited)
            }
            // CKAN before 2.7 refuses the unknown parameter: ask again without it.
            Err(PackageError::Datastore { message, .. }) if message.contains("records_format") => {
                let mut params = self.base.clone();
                params.insert("limit".into(), json!(0));
                (self.call(params).await?, false)
            }
            Err(e) => return Err(e),
        };
        Ok(DatastoreInfo {
            fields: result.fields.into_iter().map(|f| f.id).collect(),
            total: result.total.unwrap_or(0),
            delimited,
        })
    }

    /// Fetches `limit` rows from `offset` and hands each row to `row` as a record of the
    /// fields' values in order. Returns the number of rows the page held.
    pub async fn page(
        &self,
        info: &DatastoreInfo,
        offset: u64,
        limit: u64,
        row: &mut (dyn FnMut(&csv::ByteRecord) -> Result<(), PackageError> + Send),
    ) -> Result<u64, PackageError> {
        let mut params = self.base.clone();
        params.insert("offset".into(), json!(offset));
        params.insert("limit".into(), json!(limit));
        if info.delimited {
            params.insert("records_format".into(), json!(self.format.extension()));
        }
        let result = self.call(params).await?;
        let mut record = csv::ByteRecord::new();
        let mut rows = 0u64;
        match result.records {
            None => {}
            Some(Records::Delimited(text)) => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .delimiter(self.format.delimiter())
                    .flexible(false)
                    .from_reader(text.as_bytes());
                while reader
                    .read_byte_record(&mut record)
                    .map_err(|e| self.failure(format!("a page's CSV does not parse: {e}")))?
                {
                    if record.len() != info.fields.len() {
                        return Err(self.failure(format!(
                            "a row has {} values for {} fields",
                            record.len(),
                            info.fields.len()
                        )));
                    }
                    row(&record)?;
                    rows += 1;
                }
            }
            Some(Records::Objects(objects)) => {
                for object in &objects {
                    record.clear();
                    for field in &info.fields {
                        match object.get(field) {
                            None | Some(Value::Null) => record.push_field(b""),
                            Some(Value::String(s)) => record.push_field(s.as_bytes()),
                            Some(other) => record.push_field(other.to_string().as_bytes()),
                        }
                    }
                    row(&record)?;
                    rows += 1;
                }
            }
        }
        Ok(rows)
    }
}

/// Where the next page starts and how many rows are still wanted.
#[derive(Debug, Clone, Copy)]
pub struct Cursor {
    pub offset: u64,
    remaining: u64,
    done: bool,
}

impl Cursor {
    pub fn new(request: &PackageRequest) -> Self {
        Cursor {
            offset: request.offset,
            remaining: request.limit.unwrap_or(u64::MAX),
            done: false,
        }
    }

    /// The limit of the next page, or `None` when every row is in.
    pub fn next_limit(&self, page_size: u64) -> Option<u64> {
        (!self.done && self.remaining > 0).then(|| page_size.min(self.remaining))
    }

    /// Moves past a page that held `got` of the `want` rows asked; a short page is the last.
    pub fn advance(&mut self, want: u64, got: u64) {
        self.offset += got;
        self.remaining -= got.min(self.remaining);
        self.done = got < want;
    }
}

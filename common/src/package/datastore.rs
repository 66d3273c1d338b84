//! CKAN's datastore_search, page by page: a `limit=0` call first (the fields, the total, and
//! whether the server writes records as CSV), then pages of PAGE_SIZE rows sorted by `_id`
//! (stable under `q`, whose default order is by rank), until a short page or the limit.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use bytes::Bytes;
use futures::StreamExt;

use super::PackageError;
use super::request::{PackageRequest, TableFormat};
use super::sink::ByteSink;
use super::stream::{RecordsScanner, normalise_delimited};
use crate::fetch::{HttpFetcher, PostJson};

/// A page of 32,000 wide rows is a few MiB; anything near this is not a datastore page.
const MAX_PAGE_BYTES: u64 = 512 * 1024 * 1024;
/// How much table text is gathered before it goes on to the zip.
const PIECE: usize = 1 << 20;

/// A page whose answer has begun to arrive.
pub struct OpenPage {
    body: crate::fetch::ByteStream,
}

#[derive(Debug, Clone)]
pub struct DatastoreInfo {
    /// Column ids, in the datastore's order.
    pub fields: Vec<String>,
    /// Rows matching the query (before offset and limit).
    pub total: u64,
    /// The server writes `records_format=csv|tsv` (CKAN 2.7 and later).
    pub delimited: bool,
}

/// Rows per call when the server writes records as JSON objects: a page of those is parsed
/// whole, so it is kept small whatever PAGE_SIZE says (more calls, the same rows).
const JSON_PAGE_ROWS: u64 = 5000;

impl DatastoreInfo {
    /// Rows to ask for per call: PAGE_SIZE when pages stream (delimited records), at most
    /// `JSON_PAGE_ROWS` when they are parsed whole.
    pub fn page_size(&self, configured: u64) -> u64 {
        if self.delimited {
            configured
        } else {
            configured.min(JSON_PAGE_ROWS)
        }
    }

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

/// A page's records: CSV/TSV text, or JSON objects.
pub enum Records {
    Delimited(String),
    Objects(Vec<Map<String, Value>>),
}

/// By hand rather than `#[serde(untagged)]`, which would first copy the whole page into
/// serde's buffer of unknown content (megabytes, twice).
impl<'de> Deserialize<'de> for Records {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RecordsVisitor;
        impl<'de> serde::de::Visitor<'de> for RecordsVisitor {
            type Value = Records;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("records as text or as a list of objects")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Records, E> {
                Ok(Records::Delimited(v.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Records, E> {
                Ok(Records::Delimited(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Records, A::Error> {
                let mut objects = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(32_000));
                while let Some(o) = seq.next_element::<Map<String, Value>>()? {
                    objects.push(o);
                }
                Ok(Records::Objects(objects))
            }
        }
        deserializer.deserialize_any(RecordsVisitor)
    }
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
            _ => Err(self.answer_error(response.status, &response.body)),
        }
    }

    /// What an answer that is not a page means: CKAN's own error, or an HTTP status, or
    /// something that is not a datastore_search answer at all.
    fn answer_error(&self, status: u16, body: &[u8]) -> PackageError {
        match serde_json::from_slice::<Envelope>(body) {
            Ok(Envelope { error, .. }) => self.failure(format!(
                "HTTP {status}: {}",
                error.map_or_else(|| "no result".to_string(), |e| e.to_string())
            )),
            Err(_) if !(200..300).contains(&status) => {
                PackageError::Fetch(crate::fetch::FetchError::Status {
                    url: self.url.clone(),
                    status,
                })
            }
            Err(e) => self.failure(format!("the answer is not a datastore_search result: {e}")),
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

    fn page_params(&self, info: &DatastoreInfo, offset: u64, limit: u64) -> Map<String, Value> {
        let mut params = self.base.clone();
        params.insert("offset".into(), json!(offset));
        params.insert("limit".into(), json!(limit));
        if info.delimited {
            params.insert("records_format".into(), json!(self.format.extension()));
        }
        params
    }

    /// One page: `limit` rows from `offset`, as the server wrote them.
    pub async fn fetch_page(
        &self,
        info: &DatastoreInfo,
        offset: u64,
        limit: u64,
    ) -> Result<Records, PackageError> {
        let result = self.call(self.page_params(info, offset, limit)).await?;
        Ok(result.records.unwrap_or(Records::Objects(Vec::new())))
    }

    /// Asks for one page of a server that writes delimited records; the answer's body is
    /// read by `read_page`. Asking for the next page while this one is read hides the wait.
    pub async fn open_page(
        &self,
        info: &DatastoreInfo,
        offset: u64,
        limit: u64,
    ) -> Result<OpenPage, PackageError> {
        let (status, mut body) = self
            .fetcher
            .post_json_stream(&PostJson {
                url: self.url.clone(),
                body: Value::Object(self.page_params(info, offset, limit)),
                authorization: self.key.clone(),
                max_bytes: MAX_PAGE_BYTES,
            })
            .await?;
        if !(200..300).contains(&status) {
            let mut answer = Vec::new();
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                if answer.len() < PIECE {
                    answer.extend_from_slice(&chunk);
                }
            }
            return Err(self.answer_error(status, &answer));
        }
        Ok(OpenPage { body })
    }

    /// Streams an opened page into `sink` as the table's text while it arrives (see
    /// `stream.rs`), in pieces of whole rows; returns its row count.
    pub async fn read_page(
        &self,
        page: OpenPage,
        info: &DatastoreInfo,
        sink: &mut (dyn ByteSink + '_),
    ) -> Result<u64, PackageError> {
        let mut body = page.body;
        let unreadable = |e: String| self.failure(format!("a page does not parse: {e}"));
        let mut scanner = RecordsScanner::new(self.format.delimiter(), info.fields.len());
        let mut out = Vec::with_capacity(PIECE + 64 * 1024);
        while let Some(chunk) = body.next().await {
            scanner.feed(&chunk?, &mut out).map_err(unreadable)?;
            // On in pieces of whole rows, so a sink may read rows out of each piece.
            let whole = scanner.rows_end();
            if out.len() >= PIECE && whole > 0 {
                let mut next = Vec::with_capacity(PIECE + 64 * 1024);
                next.extend_from_slice(&out[whole..]);
                out.truncate(whole);
                scanner.consumed(whole);
                sink.write(Bytes::from(std::mem::replace(&mut out, next)))
                    .await?;
            }
        }
        let rows = scanner.finish(&mut out).map_err(unreadable)?;
        sink.write(Bytes::from(out)).await?;
        Ok(rows)
    }

    /// A page as the text of the table (`\n` line ends) and its row count: CSV/TSV pages are
    /// checked and copied, JSON ones written.
    pub fn page_text(
        &self,
        info: &DatastoreInfo,
        records: Records,
    ) -> Result<(Vec<u8>, u64), PackageError> {
        match records {
            Records::Delimited(text) => {
                normalise_delimited(text.as_bytes(), self.format.delimiter(), info.fields.len())
                    .map_err(|e| {
                        self.failure(format!(
                            "a page's {} does not parse: {e}",
                            self.format.extension()
                        ))
                    })
            }
            objects => {
                let mut writer = super::writing::table_writer(self.format.delimiter(), 1 << 20);
                let rows = self.for_each_record(info, objects, &mut |record| {
                    writer
                        .write_byte_record(record)
                        .map_err(|e| PackageError::Archive(format!("writing a row failed: {e}")))
                })?;
                Ok((super::writing::into_bytes(writer)?, rows))
            }
        }
    }

    /// Hands each row of a page to `row` as a record of the fields' values in order; returns
    /// the number of rows.
    pub fn for_each_record(
        &self,
        info: &DatastoreInfo,
        records: Records,
        row: &mut dyn FnMut(&csv::ByteRecord) -> Result<(), PackageError>,
    ) -> Result<u64, PackageError> {
        let mut record = csv::ByteRecord::new();
        let mut rows = 0u64;
        match records {
            Records::Delimited(text) => {
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
            Records::Objects(objects) => {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

    /// Where the cursor will be if the page of `want` rows now asked for comes back full.
    pub fn after_full_page(&self, want: u64) -> Cursor {
        let mut next = *self;
        next.advance(want, want);
        next
    }

    /// Moves past a page that held `got` of the `want` rows asked; a short page is the last.
    pub fn advance(&mut self, want: u64, got: u64) {
        self.offset += got;
        self.remaining -= got.min(self.remaining);
        self.done = got < want;
    }
}

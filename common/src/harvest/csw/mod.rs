//! CSW 2.0.2 catalogues (ckanext-spatial's CSW harvester): GetRecords pages of brief records
//! for the listing, GetRecordById for each record, ISO 19139 or csw:Record.
//!
//! Paging trusts no single number of the server: some answer `nextRecord="0"` before the end,
//! or a `numberOfRecordsMatched` that is wrong. The gather moves on to `nextRecord` when it is
//! ahead, else to its own count of records seen; it stops at an empty page or when both
//! numbers agree that the listing has ended, and fails (deleting nothing) when a page repeats
//! the one before, the sign of a server that ignores `startPosition`.

mod response;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    Fetched, GatherError, GatherPage, Gathered, Harvester, HarvesterInfo, fetch_unwrapped,
    get_listing, with_params,
};
use crate::domain::job::{DocumentState, HarvestObject};
use crate::domain::source::{FieldError, Source};
use crate::fetch::{FetchError, FetchRequest};
use crate::services::Services;

pub use response::{SearchResults, read_search_results, unwrap_record};

const MAX_PAGE_BYTES: u64 = 20 * 1024 * 1024;
const DEFAULT_PAGE_SIZE: u64 = 100;
const MAX_PAGE_SIZE: u64 = 1000;

const ISO_SCHEMA: &str = "http://www.isotc211.org/2005/gmd";
const CSW_SCHEMA: &str = "http://www.opengis.net/cat/csw/2.0.2";

pub struct CswHarvester;

/// A CSW source's options (`config`).
#[derive(Debug, Clone, Deserialize)]
struct CswConfig {
    /// `iso19139` (the default, `gmd`) or `csw` (csw:Record, Dublin Core).
    #[serde(default)]
    output_schema: OutputSchema,
    #[serde(default = "default_page_size")]
    page_size: u64,
    /// An OGC Filter 1.1 (`<ogc:Filter>`) narrowing the records harvested.
    #[serde(default)]
    filter: Option<String>,
}

fn default_page_size() -> u64 {
    DEFAULT_PAGE_SIZE
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OutputSchema {
    #[default]
    Iso19139,
    Csw,
}

impl OutputSchema {
    fn uri(self) -> &'static str {
        match self {
            OutputSchema::Iso19139 => ISO_SCHEMA,
            OutputSchema::Csw => CSW_SCHEMA,
        }
    }
}

fn config_of(source: &Source) -> Result<CswConfig, String> {
    let config = if source.config.is_null() {
        serde_json::json!({})
    } else {
        source.config.clone()
    };
    serde_json::from_value(config).map_err(|e| e.to_string())
}

/// Where the next GetRecords page starts, and a digest of the page before (to see a server
/// that answers the same page whatever is asked).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cursor {
    start: u64,
    previous: Option<String>,
}

fn records_url(source: &Source, config: &CswConfig, start: u64) -> Result<url::Url, String> {
    let (start, size) = (start.to_string(), config.page_size.to_string());
    let mut params = vec![
        ("service", "CSW"),
        ("version", "2.0.2"),
        ("request", "GetRecords"),
        ("typeNames", "csw:Record"),
        ("resultType", "results"),
        ("elementSetName", "brief"),
        ("outputSchema", CSW_SCHEMA),
        ("startPosition", start.as_str()),
        ("maxRecords", size.as_str()),
    ];
    if let Some(filter) = &config.filter {
        params.extend([
            ("constraintLanguage", "FILTER"),
            ("constraint_language_version", "1.1.0"),
            ("constraint", filter.as_str()),
        ]);
    }
    with_params(&source.url, &params)
}

fn record_url(source: &Source, config: &CswConfig, id: &str) -> Result<url::Url, String> {
    with_params(
        &source.url,
        &[
            ("service", "CSW"),
            ("version", "2.0.2"),
            ("request", "GetRecordById"),
            ("id", id),
            ("elementSetName", "full"),
            ("outputSchema", config.output_schema.uri()),
        ],
    )
}

/// One GetRecords page, tried again after a failure the server may get over.
async fn read_page(services: &Services, url: &url::Url) -> Result<SearchResults, GatherError> {
    let body = get_listing(services, FetchRequest::new(url.as_str(), MAX_PAGE_BYTES)).await?;
    read_search_results(&body).map_err(|message| GatherError {
        message,
        url: Some(url.to_string()),
    })
}

fn digest(ids: &[String]) -> String {
    let mut hash = Sha256::new();
    for id in ids {
        hash.update(id.as_bytes());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..16])
}

/// Checks the options a CSW source takes; the error names the field.
fn validate(config: &serde_json::Value) -> Result<(), FieldError> {
    let Some(object) = config.as_object() else {
        return Err(FieldError::new("config", "must be a JSON object"));
    };
    for (key, value) in object {
        let field = format!("config.{key}");
        match key.as_str() {
            "output_schema" => {
                if !matches!(value.as_str(), Some("iso19139" | "csw")) {
                    return Err(FieldError::new(field, "must be \"iso19139\" or \"csw\""));
                }
            }
            "page_size" => {
                if !value
                    .as_u64()
                    .is_some_and(|n| (1..=MAX_PAGE_SIZE).contains(&n))
                {
                    return Err(FieldError::new(
                        field,
                        format!("must be a whole number from 1 to {MAX_PAGE_SIZE}"),
                    ));
                }
            }
            "filter" => {
                let text = value
                    .as_str()
                    .ok_or_else(|| FieldError::new(&field, "must be an OGC Filter as XML text"))?;
                let root = crate::parse::xml::parse(text.as_bytes(), Default::default())
                    .map_err(|e| FieldError::new(&field, format!("unreadable XML: {e}")))?;
                if root.ns != "http://www.opengis.net/ogc" || root.name != "Filter" {
                    return Err(FieldError::new(
                        field,
                        "must be an OGC Filter (<ogc:Filter xmlns:ogc=\"http://www.opengis.net/ogc\">)",
                    ));
                }
            }
            super::default_tags::DEFAULT_TAGS => super::default_tags::validate(value)?,
            crate::domain::source::SHRINK_THRESHOLD => {}
            _ => return Err(FieldError::new(field, "unknown option for a CSW source")),
        }
    }
    Ok(())
}

#[async_trait]
impl Harvester for CswHarvester {
    fn info(&self) -> HarvesterInfo {
        HarvesterInfo {
            name: "csw",
            title: "CSW 2.0.2 catalogue",
            description: "Records of an OGC Catalogue Service (GetRecords, GetRecordById), ISO 19139 or csw:Record",
        }
    }

    fn validate_config(&self, config: &serde_json::Value) -> Result<(), FieldError> {
        if config.is_null() {
            return Ok(());
        }
        validate(config)
    }

    async fn gather_page(
        &self,
        services: &Services,
        source: &Source,
        cursor: Option<&serde_json::Value>,
    ) -> Result<GatherPage, GatherError> {
        let error = |message: String| GatherError {
            message,
            url: Some(source.url.clone()),
        };
        let config = config_of(source).map_err(error)?;
        let cursor: Cursor = match cursor {
            None => Cursor {
                start: 1,
                previous: None,
            },
            Some(value) => serde_json::from_value(value.clone())
                .map_err(|e| error(format!("unreadable gather cursor: {e}")))?,
        };
        let url = records_url(source, &config, cursor.start).map_err(error)?;
        let page = read_page(services, &url).await?;
        let returned = page.identifiers.len() as u64;
        let this_page = digest(&page.identifiers);
        if returned > 0 && cursor.previous.as_deref() == Some(this_page.as_str()) {
            return Err(GatherError {
                message: format!(
                    "the server answered the same records for startPosition {} as for the page before: it does not page",
                    cursor.start
                ),
                url: Some(url.to_string()),
            });
        }
        let counted = cursor.start + returned;
        let server_says_ended =
            page.next_record == Some(0) && page.matched.is_none_or(|matched| counted > matched);
        let ended = returned == 0 || server_says_ended;
        let next = if ended {
            None
        } else {
            // The server's nextRecord when it moves forward, else our own count.
            let start = match page.next_record {
                Some(n) if n > cursor.start => n,
                _ => counted,
            };
            let next = Cursor {
                start,
                previous: Some(this_page),
            };
            Some(serde_json::to_value(next).map_err(|e| error(format!("gather cursor: {e}")))?)
        };
        let mut documents = Vec::with_capacity(page.identifiers.len());
        for id in page.identifiers {
            let url = record_url(source, &config, &id).map_err(error)?;
            documents.push(Gathered::record(id, &url));
        }
        Ok(GatherPage {
            documents,
            next,
            ..GatherPage::default()
        })
    }

    /// The GetRecordById answer's record, unwrapped: the central WAF keeps records, not
    /// responses.
    async fn fetch(
        &self,
        services: &Services,
        _source: &Source,
        object: &HarvestObject,
        previous: Option<&DocumentState>,
    ) -> Result<Fetched, FetchError> {
        let request = FetchRequest::new(&object.url, services.settings.max_document_bytes);
        fetch_unwrapped(services, request, previous, unwrap_record).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(url: &str, config: serde_json::Value) -> Source {
        let mut source: Source = serde_json::from_value(serde_json::json!({
            "name": "c", "url": url, "type": "csw"
        }))
        .expect("a source");
        source.config = config;
        source
    }

    #[test]
    fn requests_keep_the_sources_own_parameters_and_replace_ours() {
        let s = source(
            "http://h/geonetwork/srv/eng/csw?token=abc&REQUEST=GetCapabilities",
            serde_json::json!({}),
        );
        let config = config_of(&s).unwrap();
        let url = records_url(&s, &config, 11).unwrap();
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert!(pairs.contains(&("token".into(), "abc".into())));
        assert!(pairs.contains(&("request".into(), "GetRecords".into())));
        assert!(pairs.contains(&("startPosition".into(), "11".into())));
        assert!(pairs.contains(&("maxRecords".into(), "100".into())));
        assert!(!pairs.iter().any(|(k, _)| k == "REQUEST"));
        let url = record_url(&s, &config, "a b&c").unwrap();
        assert!(url.as_str().contains("id=a+b%26c"), "{url}");
        assert!(
            url.as_str()
                .contains("outputSchema=http%3A%2F%2Fwww.isotc211.org%2F2005%2Fgmd")
        );
    }

    #[test]
    fn bad_options_are_refused_with_their_field() {
        let field = |config: serde_json::Value| validate(&config).unwrap_err().field;
        assert_eq!(
            field(serde_json::json!({"output_schema": "dif"})),
            "config.output_schema"
        );
        assert_eq!(
            field(serde_json::json!({"page_size": 0})),
            "config.page_size"
        );
        assert_eq!(
            field(serde_json::json!({"page_size": 5000})),
            "config.page_size"
        );
        assert_eq!(
            field(serde_json::json!({"filter": "<Filter/>"})),
            "config.filter"
        );
        assert_eq!(
            field(serde_json::json!({"filter": "<ogc:Filter"})),
            "config.filter"
        );
        assert_eq!(
            field(serde_json::json!({"pagesize": 10})),
            "config.pagesize"
        );
        validate(&serde_json::json!({
            "output_schema": "csw", "page_size": 50,
            "filter": "<ogc:Filter xmlns:ogc=\"http://www.opengis.net/ogc\"><ogc:PropertyIsLike wildCard=\"%\" singleChar=\"_\" escapeChar=\"\\\\\"><ogc:PropertyName>dc:title</ogc:PropertyName><ogc:Literal>%sea%</ogc:Literal></ogc:PropertyIsLike></ogc:Filter>"
        }))
        .expect("valid options");
    }
}

//! OAI-PMH 2.0 repositories: ListRecords pages followed by resumption tokens for the listing,
//! GetRecord for each record, in the repository's ISO 19139 format when ListMetadataFormats
//! offers one, else `oai_dc`.
//!
//! The listing reads ListRecords, not ListIdentifiers: some servers (pycsw 2.6) repeat one
//! identifier in ListIdentifiers. Servers differ on resumption: some refuse a token sent
//! without `metadataPrefix` (pycsw), the standard refuses it with; the gather sends the token
//! alone and, on `badArgument`, again with the prefix. Some end with a non-empty token (pycsw
//! answers `0`): the listing ends at an empty token, a token that repeats the one before, or
//! when the page's `cursor` plus its records reach `completeListSize`. A record whose header is
//! `status="deleted"` is not gathered, so a complete harvest removes its record.
//!
//! After a harvest that ended without any error, the next asks only for what changed `from`
//! the day before it started (day granularity, which every repository supports); such an
//! incremental harvest removes only the records its deleted headers name (a repository that
//! keeps no deletions never removes one this way: `force_all` lists everything each time).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::unwrap::{Unwrap, inner_record};
use super::{
    Fetched, GatherError, GatherPage, Gathered, Harvester, HarvesterInfo, fetch_unwrapped,
    get_listing, last_error_free_start, with_params,
};
use crate::domain::job::{DocumentState, HarvestObject};
use crate::domain::source::{FieldError, Source};
use crate::fetch::{FetchError, FetchRequest};
use crate::parse::{Element, XmlLimits, xml};
use crate::services::Services;

const OAI: &str = "http://www.openarchives.org/OAI/2.0/";
const GMD: &str = "http://www.isotc211.org/2005/gmd";
const MAX_PAGE_BYTES: u64 = 50 * 1024 * 1024;

pub struct OaiPmhHarvester;

/// An OAI-PMH source's options (`config`).
#[derive(Debug, Clone, Default, Deserialize)]
struct OaiConfig {
    /// The format asked for; unset: an ISO 19139 format when the repository offers one, else
    /// `oai_dc`.
    #[serde(default)]
    metadata_prefix: Option<String>,
    /// A set to harvest (`setSpec`).
    #[serde(default)]
    set: Option<String>,
    /// List the whole repository every time, never only what changed.
    #[serde(default)]
    force_all: bool,
}

/// Where the listing stands: the format chosen, the token to send next (a page answering the
/// same token again ends the listing), and whether this server wants the prefix beside the
/// token.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cursor {
    prefix: String,
    token: String,
    #[serde(default)]
    prefix_with_token: bool,
}

/// What a ListRecords page held.
#[derive(Debug, Default, PartialEq)]
struct RecordsPage {
    /// Identifiers of the records that are there (deleted ones left out).
    identifiers: Vec<String>,
    /// Identifiers whose header says `status="deleted"`.
    deleted: Vec<String>,
    token: Option<String>,
    complete_list_size: Option<u64>,
    cursor: Option<u64>,
}

/// An OAI-PMH error answer: its code and text.
#[derive(Debug, PartialEq)]
struct OaiError {
    code: String,
    text: String,
}

fn parse_answer(body: &[u8]) -> Result<Element, String> {
    let root = xml::parse(body, XmlLimits::default()).map_err(|e| e.to_string())?;
    if root.ns != OAI || root.name != "OAI-PMH" {
        return Err(format!("not an OAI-PMH answer: root element {}", root.name));
    }
    Ok(root)
}

fn error_of(root: &Element) -> Option<OaiError> {
    root.child("error").map(|e| OaiError {
        code: e.attr("code").unwrap_or("unknown").to_string(),
        text: e.all_text(),
    })
}

fn read_records_page(root: &Element) -> Result<RecordsPage, OaiError> {
    if let Some(error) = error_of(root) {
        return Err(error);
    }
    let Some(list) = root.child("ListRecords") else {
        return Err(OaiError {
            code: "none".into(),
            text: "the answer has neither ListRecords nor an error".into(),
        });
    };
    let mut page = RecordsPage::default();
    for record in list.children_named("record") {
        let Some(header) = record.child("header") else {
            continue;
        };
        let id = header
            .child("identifier")
            .map(|i| i.all_text())
            .unwrap_or_default();
        if id.is_empty() {
            continue;
        }
        if header.attr("status") == Some("deleted") {
            page.deleted.push(id);
        } else {
            page.identifiers.push(id);
        }
    }
    if let Some(token) = list.child("resumptionToken") {
        let number = |name: &str| token.attr(name).and_then(|v| v.trim().parse::<u64>().ok());
        page.complete_list_size = number("completeListSize");
        page.cursor = number("cursor");
        let text = token.all_text();
        page.token = (!text.is_empty()).then_some(text);
    }
    Ok(page)
}

/// The prefix of an ISO 19139 format among those ListMetadataFormats names, if any.
fn iso_prefix(root: &Element) -> Option<String> {
    root.child("ListMetadataFormats")?
        .children_named("metadataFormat")
        .find(|f| {
            f.child("metadataNamespace")
                .is_some_and(|n| n.all_text() == GMD)
        })
        .and_then(|f| f.child("metadataPrefix"))
        .map(|p| p.all_text())
        .filter(|p| !p.is_empty())
}

fn config_of(source: &Source) -> Result<OaiConfig, String> {
    if source.config.is_null() {
        return Ok(OaiConfig::default());
    }
    serde_json::from_value(source.config.clone()).map_err(|e| e.to_string())
}

fn validate(config: &serde_json::Value) -> Result<(), FieldError> {
    let Some(object) = config.as_object() else {
        return Err(FieldError::new("config", "must be a JSON object"));
    };
    for (key, value) in object {
        let field = format!("config.{key}");
        match key.as_str() {
            "force_all" => {
                if !value.is_boolean() {
                    return Err(FieldError::new(field, "must be boolean"));
                }
            }
            "metadata_prefix" | "set" => {
                if value.as_str().is_none_or(|v| v.trim().is_empty()) {
                    return Err(FieldError::new(field, "must be a non-empty string"));
                }
            }
            super::default_tags::DEFAULT_TAGS => super::default_tags::validate(value)?,
            crate::domain::source::SHRINK_THRESHOLD => {}
            _ => {
                return Err(FieldError::new(
                    field,
                    "unknown option for an OAI-PMH source",
                ));
            }
        }
    }
    Ok(())
}

fn record_url(source: &Source, prefix: &str, id: &str) -> Result<url::Url, String> {
    with_params(
        &source.url,
        &[
            ("verb", "GetRecord"),
            ("identifier", id),
            ("metadataPrefix", prefix),
        ],
    )
}

impl OaiPmhHarvester {
    /// The format to ask for: the configured one, else ISO 19139 when offered, else oai_dc.
    async fn choose_prefix(
        &self,
        services: &Services,
        source: &Source,
        config: &OaiConfig,
    ) -> Result<String, GatherError> {
        if let Some(prefix) = &config.metadata_prefix {
            return Ok(prefix.clone());
        }
        let url = with_params(&source.url, &[("verb", "ListMetadataFormats")])
            .map_err(|message| gather_error(message, &source.url))?;
        let body = get_listing(services, FetchRequest::new(url.as_str(), MAX_PAGE_BYTES)).await?;
        let root = parse_answer(&body).map_err(|m| gather_error(m, url.as_str()))?;
        Ok(iso_prefix(&root).unwrap_or_else(|| "oai_dc".to_string()))
    }
}

fn gather_error(message: String, url: &str) -> GatherError {
    GatherError {
        message,
        url: Some(url.to_string()),
    }
}

/// The record inside a GetRecord answer, as a document of its own (`unwrap.rs`), or why there
/// is none (an OAI-PMH error, a deleted record).
pub fn unwrap_record(body: &[u8]) -> Result<bytes::Bytes, String> {
    match inner_record(body, &["OAI-PMH", "GetRecord", "record", "metadata"]) {
        Ok(record) => Ok(record),
        Err(Unwrap::Malformed(message)) => Err(message),
        Err(Unwrap::WrongRoot(root)) => Err(format!("not an OAI-PMH answer: root element {root}")),
        Err(Unwrap::Empty) => Err(match parse_answer(body).ok().as_ref().and_then(error_of) {
            Some(e) => format!("the repository answered {}: {}", e.code, e.text),
            None => "the repository holds no metadata for this record (deleted?)".into(),
        }),
    }
}

#[async_trait]
impl Harvester for OaiPmhHarvester {
    fn info(&self) -> HarvesterInfo {
        HarvesterInfo {
            name: "oai-pmh",
            title: "OAI-PMH 2.0 repository",
            description: "Records of an OAI-PMH repository (ListRecords, GetRecord), ISO 19139 when offered, else Dublin Core",
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
        let config = config_of(source).map_err(|m| gather_error(m, &source.url))?;
        let cursor: Option<Cursor> = cursor
            .map(|v| serde_json::from_value(v.clone()))
            .transpose()
            .map_err(|e| gather_error(format!("unreadable gather cursor: {e}"), &source.url))?;
        let prefix = match &cursor {
            Some(c) => c.prefix.clone(),
            None => self.choose_prefix(services, source, &config).await?,
        };
        let mut prefix_with_token = cursor.as_ref().is_some_and(|c| c.prefix_with_token);
        // Only a listing's first request names `from`: the token carries it on.
        let from = match (&cursor, config.force_all) {
            (None, false) => last_error_free_start(services, source).await?.map(|t| {
                (t - chrono::Duration::days(1))
                    .format("%Y-%m-%d")
                    .to_string()
            }),
            _ => None,
        };
        let (url, root) = loop {
            let mut params = vec![("verb", "ListRecords")];
            match &cursor {
                None => {
                    params.push(("metadataPrefix", prefix.as_str()));
                    if let Some(from) = &from {
                        params.push(("from", from.as_str()));
                    }
                    if let Some(set) = &config.set {
                        params.push(("set", set.as_str()));
                    }
                }
                Some(c) => {
                    params.push(("resumptionToken", c.token.as_str()));
                    if prefix_with_token {
                        params.push(("metadataPrefix", prefix.as_str()));
                    }
                }
            }
            let url = with_params(&source.url, &params)
                .map_err(|message| gather_error(message, &source.url))?;
            let body =
                get_listing(services, FetchRequest::new(url.as_str(), MAX_PAGE_BYTES)).await?;
            let root = parse_answer(&body).map_err(|m| gather_error(m, url.as_str()))?;
            let refused_alone = error_of(&root).is_some_and(|e| e.code == "badArgument");
            if cursor.is_some() && refused_alone && !prefix_with_token {
                prefix_with_token = true;
                continue;
            }
            break (url, root);
        };
        let page = match read_records_page(&root) {
            Ok(page) => page,
            // Nothing matches: an empty listing (the shrink rule decides what that means).
            Err(e) if e.code == "noRecordsMatch" => RecordsPage::default(),
            Err(e) => {
                return Err(gather_error(
                    format!("the repository answered {}: {}", e.code, e.text),
                    url.as_str(),
                ));
            }
        };
        let previous = cursor.as_ref().map(|c| c.token.as_str());
        let reached_the_end = match (page.cursor, page.complete_list_size) {
            (Some(at), Some(size)) => {
                at + (page.identifiers.len() + page.deleted.len()) as u64 >= size
            }
            _ => false,
        };
        let next = match page.token {
            Some(token) if Some(token.as_str()) != previous && !reached_the_end => {
                let next = Cursor {
                    prefix: prefix.clone(),
                    token,
                    prefix_with_token,
                };
                Some(
                    serde_json::to_value(next)
                        .map_err(|e| gather_error(format!("gather cursor: {e}"), &source.url))?,
                )
            }
            _ => None,
        };
        let mut documents = Vec::with_capacity(page.identifiers.len());
        for id in page.identifiers {
            let url = record_url(source, &prefix, &id)
                .map_err(|message| gather_error(message, &source.url))?;
            documents.push(Gathered::record(id, &url));
        }
        Ok(GatherPage {
            documents,
            next,
            changed_since: from,
            deleted: page.deleted,
        })
    }

    /// The GetRecord answer's record, unwrapped: the central WAF keeps records, not answers.
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

    fn root(text: &str) -> Element {
        parse_answer(text.as_bytes()).expect("an OAI-PMH answer")
    }

    #[test]
    fn a_page_leaves_deleted_records_out_and_reads_its_token() {
        let page = root(
            r#"<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/"><ListRecords>
<record><header status="deleted"><identifier>gone</identifier></header></record>
<record><header><identifier>kept</identifier></header><metadata><x/></metadata></record>
<resumptionToken completeListSize="8" cursor="0">next-1</resumptionToken>
</ListRecords></OAI-PMH>"#,
        );
        assert_eq!(
            read_records_page(&page),
            Ok(RecordsPage {
                identifiers: vec!["kept".into()],
                deleted: vec!["gone".into()],
                token: Some("next-1".into()),
                complete_list_size: Some(8),
                cursor: Some(0),
            })
        );
    }

    #[test]
    fn errors_come_with_their_code() {
        let page = root(
            r#"<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/"><error code="badResumptionToken">This resumptionToken is invalid</error></OAI-PMH>"#,
        );
        assert_eq!(
            read_records_page(&page).unwrap_err(),
            OaiError {
                code: "badResumptionToken".into(),
                text: "This resumptionToken is invalid".into()
            }
        );
        assert!(
            parse_answer(b"<html/>")
                .unwrap_err()
                .contains("root element html")
        );
    }

    #[test]
    fn the_iso_format_is_found_by_its_namespace() {
        let formats = root(
            r#"<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/"><ListMetadataFormats>
<metadataFormat><metadataPrefix>oai_dc</metadataPrefix><metadataNamespace>http://www.openarchives.org/OAI/2.0/oai_dc/</metadataNamespace></metadataFormat>
<metadataFormat><metadataPrefix>iso</metadataPrefix><metadataNamespace>http://www.isotc211.org/2005/gmd</metadataNamespace></metadataFormat>
</ListMetadataFormats></OAI-PMH>"#,
        );
        assert_eq!(iso_prefix(&formats).as_deref(), Some("iso"));
    }

    #[test]
    fn bad_options_are_refused_with_their_field() {
        let field = |config: serde_json::Value| validate(&config).unwrap_err().field;
        assert_eq!(
            field(serde_json::json!({"metadata_prefix": ""})),
            "config.metadata_prefix"
        );
        assert_eq!(field(serde_json::json!({"set": 3})), "config.set");
        assert_eq!(field(serde_json::json!({"from": "2020"})), "config.from");
        validate(&serde_json::json!({"metadata_prefix": "oai_dc", "set": "ocean"})).unwrap();
    }
}

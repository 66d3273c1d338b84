//! Reading CSW 2.0.2 answers: a GetRecords page (its identifiers and paging numbers), the
//! record inside a GetRecordById answer, and an OWS exception report's message.

use bytes::Bytes;

use crate::harvest::unwrap::{Unwrap, inner_record};
use crate::parse::{Element, XmlLimits, xml};

const CSW: &str = "http://www.opengis.net/cat/csw/2.0.2";
const DC: &str = "http://purl.org/dc/elements/1.1/";

/// One GetRecords page as the server described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchResults {
    pub matched: Option<u64>,
    /// The records on this page, in order: their identifiers.
    pub identifiers: Vec<String>,
    /// The server's `nextRecord` (0 when it says the listing has ended).
    pub next_record: Option<u64>,
}

/// Reads a GetRecordsResponse; an exception report or any other answer is an error with the
/// server's own words.
pub fn read_search_results(body: &[u8]) -> Result<SearchResults, String> {
    let root = xml::parse(body, XmlLimits::default()).map_err(|e| e.to_string())?;
    if let Some(message) = exception_text(&root) {
        return Err(format!("the server answered an exception: {message}"));
    }
    if root.ns != CSW || root.name != "GetRecordsResponse" {
        return Err(format!(
            "not a GetRecords response: root element {}",
            root.name
        ));
    }
    let results = root
        .child("SearchResults")
        .ok_or("the GetRecords response has no SearchResults")?;
    let number = |name: &str| {
        results
            .attr(name)
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    // Brief, summary or full csw:Records, or another schema's records: each names its
    // identifier with dc:identifier, or an ISO record its fileIdentifier.
    let identifiers = results
        .children
        .iter()
        .filter_map(record_identifier)
        .collect();
    Ok(SearchResults {
        matched: number("numberOfRecordsMatched"),
        identifiers,
        next_record: number("nextRecord"),
    })
}

fn record_identifier(record: &Element) -> Option<String> {
    let id = record
        .children
        .iter()
        .find(|c| c.ns == DC && c.name == "identifier")
        .map(|c| c.all_text())
        .or_else(|| record.child("fileIdentifier").map(|c| c.all_text()))?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// The message of an OWS ExceptionReport (any version), when `root` is one.
fn exception_text(root: &Element) -> Option<String> {
    if root.name != "ExceptionReport" {
        return None;
    }
    let texts: Vec<String> = root
        .descendants("ExceptionText")
        .into_iter()
        .map(|t| t.all_text())
        .filter(|t| !t.is_empty())
        .collect();
    let code = root
        .child("Exception")
        .and_then(|e| e.attr("exceptionCode"))
        .unwrap_or("unknown");
    Some(if texts.is_empty() {
        format!("exception {code}")
    } else {
        format!("{} ({code})", texts.join("; "))
    })
}

/// The record inside a GetRecordByIdResponse, as a document of its own (`unwrap.rs`).
pub fn unwrap_record(body: &[u8]) -> Result<Bytes, String> {
    match inner_record(body, &["GetRecordByIdResponse"]) {
        Ok(record) => Ok(record),
        Err(Unwrap::Empty) => Err("the server holds no such record".into()),
        Err(Unwrap::Malformed(message)) => Err(message),
        // An exception report says why; anything else is not an answer at all.
        Err(Unwrap::WrongRoot(root)) => Err(
            match xml::parse(body, XmlLimits::default())
                .ok()
                .as_ref()
                .and_then(exception_text)
            {
                Some(message) => format!("the server answered an exception: {message}"),
                None => format!("not a GetRecordById response: root element {root}"),
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::read_metadata;

    const BY_ID: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<!-- pycsw 2.6.2 -->
<csw:GetRecordByIdResponse xmlns:csw="http://www.opengis.net/cat/csw/2.0.2" xmlns:gmd="http://www.isotc211.org/2005/gmd" xmlns:gco="http://www.isotc211.org/2005/gco">
  <gmd:MD_Metadata>
    <gmd:fileIdentifier><gco:CharacterString>rec-1</gco:CharacterString></gmd:fileIdentifier>
    <gmd:identificationInfo><gmd:MD_DataIdentification><gmd:citation><gmd:CI_Citation>
      <gmd:title><gco:CharacterString>Harbour soundings</gco:CharacterString></gmd:title>
    </gmd:CI_Citation></gmd:citation></gmd:MD_DataIdentification></gmd:identificationInfo>
  </gmd:MD_Metadata>
</csw:GetRecordByIdResponse>"#;

    #[test]
    fn a_record_unwrapped_keeps_its_inherited_namespaces_and_reads() {
        let record = unwrap_record(BY_ID.as_bytes()).expect("a record");
        let text = std::str::from_utf8(&record).unwrap();
        assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n<gmd:MD_Metadata xmlns:"), "{text}");
        assert!(text.contains("xmlns:csw=\"http://www.opengis.net/cat/csw/2.0.2\""));
        assert!(text.contains("xmlns:gco=\"http://www.isotc211.org/2005/gco\""));
        assert!(text.trim_end().ends_with("</gmd:MD_Metadata>"), "{text}");
        let m = read_metadata(&record, XmlLimits::default()).expect("reads");
        assert_eq!(
            (m.id.as_str(), m.title.as_str()),
            ("rec-1", "Harbour soundings")
        );
    }

    #[test]
    fn a_redeclared_prefix_is_not_written_twice() {
        let body = BY_ID.replace(
            "<gmd:MD_Metadata>",
            r#"<gmd:MD_Metadata xmlns:gmd="http://www.isotc211.org/2005/gmd">"#,
        );
        let record = unwrap_record(body.as_bytes()).expect("a record");
        let text = std::str::from_utf8(&record).unwrap();
        assert_eq!(text.matches("xmlns:gmd=").count(), 1, "{text}");
        read_metadata(&record, XmlLimits::default()).expect("reads");
    }

    #[test]
    fn an_empty_answer_or_an_exception_is_an_error_with_the_reason() {
        let empty = r#"<?xml version="1.0"?><csw:GetRecordByIdResponse xmlns:csw="http://www.opengis.net/cat/csw/2.0.2"/>"#;
        assert_eq!(
            unwrap_record(empty.as_bytes()).unwrap_err(),
            "the server holds no such record"
        );
        let empty = r#"<csw:GetRecordByIdResponse xmlns:csw="http://www.opengis.net/cat/csw/2.0.2">
        </csw:GetRecordByIdResponse>"#;
        assert_eq!(
            unwrap_record(empty.as_bytes()).unwrap_err(),
            "the server holds no such record"
        );
        let exception = r#"<ows:ExceptionReport xmlns:ows="http://www.opengis.net/ows" version="1.2.0"><ows:Exception exceptionCode="InvalidParameterValue" locator="id"><ows:ExceptionText>Invalid id</ows:ExceptionText></ows:Exception></ows:ExceptionReport>"#;
        let err = unwrap_record(exception.as_bytes()).unwrap_err();
        assert!(err.contains("Invalid id (InvalidParameterValue)"), "{err}");
        let html = "<html><body>Maintenance</body></html>";
        assert!(
            unwrap_record(html.as_bytes())
                .unwrap_err()
                .contains("root element html")
        );
    }

    #[test]
    fn a_results_page_gives_identifiers_and_paging_numbers() {
        let page = r#"<csw:GetRecordsResponse xmlns:csw="http://www.opengis.net/cat/csw/2.0.2" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <csw:SearchStatus timestamp="2026-12-02T06:47:50Z"/>
  <csw:SearchResults numberOfRecordsMatched="15" numberOfRecordsReturned="2" nextRecord="3" elementSet="brief">
    <csw:BriefRecord><dc:identifier>a</dc:identifier><dc:title>A</dc:title></csw:BriefRecord>
    <csw:BriefRecord><dc:identifier> b </dc:identifier></csw:BriefRecord>
    <csw:BriefRecord><dc:title>no identifier</dc:title></csw:BriefRecord>
  </csw:SearchResults>
</csw:GetRecordsResponse>"#;
        let results = read_search_results(page.as_bytes()).expect("a page");
        assert_eq!(
            results,
            SearchResults {
                matched: Some(15),
                identifiers: vec!["a".into(), "b".into()],
                next_record: Some(3),
            }
        );
        let exception = r#"<ExceptionReport xmlns="http://www.opengis.net/ows" version="1.0.0"><Exception exceptionCode="NoApplicableCode"><ExceptionText>database down</ExceptionText></Exception></ExceptionReport>"#;
        assert!(
            read_search_results(exception.as_bytes())
                .unwrap_err()
                .contains("database down")
        );
    }
}

//! The catalogue as a CSW 2.0.2 service (what pycsw and GeoNetwork serve, and what QGIS's
//! MetaSearch and OWSLib speak): GetCapabilities, DescribeRecord, GetRecords and
//! GetRecordById, over the same search index as `/api/catalog/search`.

mod capabilities;
mod error;
mod filter;
mod render;
mod request;
mod xml_out;

pub use error::CswError;
pub use filter::cql_to_filter;
pub use request::{CswRequest, from_kvp, from_xml};

use futures::{StreamExt, TryStreamExt};

use crate::catalog::{self, CatalogError, Search};
use crate::domain::record::{Record, RecordFormat};
use crate::parse::xml::decode;
use crate::services::Services;
use render::{DC_NS, DCT_NS, OWS_NS};
use request::{CSW_NS, ElementSet, GMD_NS, GetRecordById, GetRecords, OutputSchema, ResultType};
use xml_out::XmlOut;

/// Original documents read at once for a page of ISO answers.
const READS_AT_ONCE: usize = 16;

/// The XML answer to a request, or the exception report of why there is none.
pub async fn answer(services: &Services, request: CswRequest) -> Result<String, CswError> {
    let base = format!("{}/csw", services.settings.public_url.trim_end_matches('/'));
    match request {
        CswRequest::GetCapabilities => Ok(capabilities::capabilities(&base)),
        CswRequest::DescribeRecord => Ok(capabilities::describe_record()),
        CswRequest::GetRecords(r) => get_records(services, r).await,
        CswRequest::GetRecordById(r) => get_record_by_id(services, r).await,
    }
}

fn catalog_failed(e: CatalogError) -> CswError {
    tracing::error!(error = %e, "CSW request failed");
    CswError::internal("the catalogue could not answer; try again")
}

/// The namespaces and schema of an answer; GetRecords also carries the version.
fn root_attrs(with_version: bool) -> Vec<(&'static str, &'static str)> {
    let mut attrs = vec![
        ("xmlns:csw", CSW_NS),
        ("xmlns:dc", DC_NS),
        ("xmlns:dct", DCT_NS),
        ("xmlns:ows", OWS_NS),
        ("xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance"),
        (
            "xsi:schemaLocation",
            "http://www.opengis.net/cat/csw/2.0.2 http://schemas.opengis.net/csw/2.0.2/CSW-discovery.xsd",
        ),
    ];
    if with_version {
        attrs.push(("version", "2.0.2"));
    }
    attrs
}

async fn get_records(services: &Services, r: GetRecords) -> Result<String, CswError> {
    let hits_only = r.result_type == ResultType::Hits || r.max_records == 0;
    let search = Search {
        filter: Some(r.filter),
        sort: r.sort,
        offset: r.start_position - 1,
        // The index counts every match whatever the page; a page of one costs least.
        limit: if hits_only { 1 } else { r.max_records },
        ..Search::default()
    };
    let hits = services
        .index
        .search(&search)
        .await
        .map_err(|e| catalog_failed(e.into()))?;
    let records = if hits_only { Vec::new() } else { hits.records };
    let returned = records.len() as u64;
    let after = r.start_position - 1 + returned;
    let next = if hits_only {
        if hits.total >= r.start_position {
            r.start_position
        } else {
            0
        }
    } else if after < hits.total {
        after + 1
    } else {
        0
    };
    let body = render_records(services, &records, r.output_schema, r.element_set).await?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut x = XmlOut::new();
    x.open("csw:GetRecordsResponse", &root_attrs(true))
        .empty("csw:SearchStatus", &[("timestamp", &now)]);
    let (matched, returned, next) = (
        hits.total.to_string(),
        returned.to_string(),
        next.to_string(),
    );
    let schema = match r.output_schema {
        OutputSchema::Csw => CSW_NS,
        OutputSchema::Gmd => GMD_NS,
    };
    x.open(
        "csw:SearchResults",
        &[
            ("numberOfRecordsMatched", &matched),
            ("numberOfRecordsReturned", &returned),
            ("nextRecord", &next),
            ("recordSchema", schema),
            ("elementSet", element_set_name(r.element_set)),
        ],
    )
    .raw(&body)
    .close("csw:SearchResults")
    .close("csw:GetRecordsResponse");
    Ok(x.finish())
}

fn element_set_name(set: ElementSet) -> &'static str {
    match set {
        ElementSet::Brief => "brief",
        ElementSet::Summary => "summary",
        ElementSet::Full => "full",
    }
}

async fn get_record_by_id(services: &Services, r: GetRecordById) -> Result<String, CswError> {
    let store = services.store.as_ref();
    let mut records = Vec::new();
    for id in &r.ids {
        match catalog::get_record(store, id).await {
            Ok(record) => records.push(record),
            Err(CatalogError::NotFound(_)) => {}
            Err(e) => return Err(catalog_failed(e)),
        }
    }
    let body = render_records(services, &records, r.output_schema, r.element_set).await?;
    let mut x = XmlOut::new();
    x.open("csw:GetRecordByIdResponse", &root_attrs(false))
        .raw(&body)
        .close("csw:GetRecordByIdResponse");
    Ok(x.finish())
}

async fn render_records(
    services: &Services,
    records: &[Record],
    schema: OutputSchema,
    set: ElementSet,
) -> Result<String, CswError> {
    let mut x = XmlOut::fragment();
    match schema {
        OutputSchema::Csw => {
            for record in records {
                render::dublin_core(&mut x, record, set);
            }
        }
        OutputSchema::Gmd => {
            let wanted: Vec<(String, RecordFormat)> = records
                .iter()
                .map(|r| (r.metadata.id.clone(), r.metadata.format))
                .collect();
            let originals: Vec<Option<String>> = futures::stream::iter(wanted)
                .map(|(id, format)| original_iso(services, id, format))
                .buffered(READS_AT_ONCE)
                .try_collect()
                .await?;
            for (record, original) in records.iter().zip(originals) {
                match original {
                    Some(document) => {
                        x.raw(render::root_element(&document));
                    }
                    None => render::iso19139(&mut x, record),
                }
            }
        }
    }
    Ok(x.finish())
}

/// The record's stored document when it is ISO 19139 (a `gmd` or `gmi` root).
async fn original_iso(
    services: &Services,
    id: String,
    format: RecordFormat,
) -> Result<Option<String>, CswError> {
    if format != RecordFormat::Iso19139 {
        return Ok(None);
    }
    let bytes = match catalog::get_record_xml(services.store.as_ref(), &id).await {
        Ok(bytes) => bytes,
        Err(CatalogError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(catalog_failed(e)),
    };
    // It was read when imported; if it no longer decodes, the fields still answer.
    Ok(decode(&bytes).ok())
}

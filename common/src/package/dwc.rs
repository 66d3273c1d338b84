//! Darwin Core Archives, as ckanpackager's `package_dwc_archive` writes them: datastore fields
//! whose name (or its camel case: "Taxon resource ID" → `taxonResourceID`) is an Occurrence
//! term become columns of the core file; `associatedMedia` (a JSON list of objects, or
//! `|`-separated links) becomes rows of the Simple Multimedia extension; every other field
//! goes, as a JSON object, into the core's `dynamicProperties`. `meta.xml` describes the files.
//!
//! Pages stream in as CSV pieces of whole rows, read row by row into the core entry; the
//! extension's rows are spooled to a temporary file while the core streams, then added as the
//! next entry, so memory stays flat for any number of rows.

use std::io::Read;

use serde_json::{Map, Value};

use super::PackageError;
use super::archive::ZipStreamWriter;
use super::datastore::{Cursor, Datastore, DatastoreInfo};
use super::request::PackageRequest;
use super::settings::PackagerSettings;
use super::sink::ByteSink;
use super::writing::{BuildSummary, check_time, into_bytes, table_writer};

const DWC: &str = "http://rs.tdwg.org/dwc/terms/";
const DCTERMS: &str = "http://purl.org/dc/terms/";
pub const ID_FIELD: &str = "_id";
pub const DYNAMIC_TERM: &str = "dynamicProperties";
pub const MEDIA_FIELD: &str = "associatedMedia";
pub const CORE_FILE: &str = "occurrence.csv";
pub const MEDIA_FILE: &str = "multimedia.csv";
const OCCURRENCE_ROW_TYPE: &str = "http://rs.tdwg.org/dwc/terms/Occurrence";
const MULTIMEDIA_ROW_TYPE: &str = "http://rs.gbif.org/terms/1.0/Multimedia";

/// Occurrence core terms in the dcterms namespace; every other core term is dwc.
const DCTERMS_CORE: &[&str] = &[
    "type",
    "modified",
    "language",
    "license",
    "rightsHolder",
    "accessRights",
    "bibliographicCitation",
    "references",
];

/// Darwin Core's Occurrence core terms (GBIF's dwc_occurrence.xml).
const DWC_CORE: &[&str] = &[
    "institutionID",
    "collectionID",
    "datasetID",
    "institutionCode",
    "collectionCode",
    "datasetName",
    "ownerInstitutionCode",
    "basisOfRecord",
    "informationWithheld",
    "dataGeneralizations",
    "dynamicProperties",
    "occurrenceID",
    "catalogNumber",
    "recordNumber",
    "recordedBy",
    "recordedByID",
    "individualCount",
    "organismQuantity",
    "organismQuantityType",
    "sex",
    "lifeStage",
    "reproductiveCondition",
    "behavior",
    "establishmentMeans",
    "degreeOfEstablishment",
    "pathway",
    "georeferenceVerificationStatus",
    "occurrenceStatus",
    "preparations",
    "disposition",
    "associatedMedia",
    "associatedOccurrences",
    "associatedReferences",
    "associatedSequences",
    "associatedTaxa",
    "otherCatalogNumbers",
    "occurrenceRemarks",
    "organismID",
    "organismName",
    "organismScope",
    "associatedOrganisms",
    "previousIdentifications",
    "organismRemarks",
    "materialSampleID",
    "eventID",
    "parentEventID",
    "fieldNumber",
    "eventDate",
    "eventTime",
    "startDayOfYear",
    "endDayOfYear",
    "year",
    "month",
    "day",
    "verbatimEventDate",
    "habitat",
    "samplingProtocol",
    "sampleSizeValue",
    "sampleSizeUnit",
    "samplingEffort",
    "fieldNotes",
    "eventRemarks",
    "locationID",
    "higherGeographyID",
    "higherGeography",
    "continent",
    "waterBody",
    "islandGroup",
    "island",
    "country",
    "countryCode",
    "stateProvince",
    "county",
    "municipality",
    "locality",
    "verbatimLocality",
    "minimumElevationInMeters",
    "maximumElevationInMeters",
    "verbatimElevation",
    "verticalDatum",
    "minimumDepthInMeters",
    "maximumDepthInMeters",
    "verbatimDepth",
    "minimumDistanceAboveSurfaceInMeters",
    "maximumDistanceAboveSurfaceInMeters",
    "locationAccordingTo",
    "locationRemarks",
    "decimalLatitude",
    "decimalLongitude",
    "geodeticDatum",
    "coordinateUncertaintyInMeters",
    "coordinatePrecision",
    "pointRadiusSpatialFit",
    "verbatimCoordinates",
    "verbatimLatitude",
    "verbatimLongitude",
    "verbatimCoordinateSystem",
    "verbatimSRS",
    "footprintWKT",
    "footprintSRS",
    "footprintSpatialFit",
    "georeferencedBy",
    "georeferencedDate",
    "georeferenceProtocol",
    "georeferenceSources",
    "georeferenceRemarks",
    "geologicalContextID",
    "earliestEonOrLowestEonothem",
    "latestEonOrHighestEonothem",
    "earliestEraOrLowestErathem",
    "latestEraOrHighestErathem",
    "earliestPeriodOrLowestSystem",
    "latestPeriodOrHighestSystem",
    "earliestEpochOrLowestSeries",
    "latestEpochOrHighestSeries",
    "earliestAgeOrLowestStage",
    "latestAgeOrHighestStage",
    "lowestBiostratigraphicZone",
    "highestBiostratigraphicZone",
    "lithostratigraphicTerms",
    "group",
    "formation",
    "member",
    "bed",
    "identificationID",
    "verbatimIdentification",
    "identificationQualifier",
    "typeStatus",
    "identifiedBy",
    "identifiedByID",
    "dateIdentified",
    "identificationReferences",
    "identificationVerificationStatus",
    "identificationRemarks",
    "taxonID",
    "scientificNameID",
    "acceptedNameUsageID",
    "parentNameUsageID",
    "originalNameUsageID",
    "nameAccordingToID",
    "namePublishedInID",
    "taxonConceptID",
    "scientificName",
    "acceptedNameUsage",
    "parentNameUsage",
    "originalNameUsage",
    "nameAccordingTo",
    "namePublishedIn",
    "namePublishedInYear",
    "higherClassification",
    "kingdom",
    "phylum",
    "class",
    "order",
    "family",
    "subfamily",
    "genus",
    "genericName",
    "subgenus",
    "infragenericEpithet",
    "specificEpithet",
    "infraspecificEpithet",
    "cultivarEpithet",
    "taxonRank",
    "verbatimTaxonRank",
    "scientificNameAuthorship",
    "vernacularName",
    "nomenclaturalCode",
    "taxonomicStatus",
    "nomenclaturalStatus",
    "taxonRemarks",
];

/// The Simple Multimedia extension's columns and the defaults ckanpackager fills in.
const MEDIA_TERMS: &[(&str, &str)] = &[
    ("type", "StillImage"),
    ("format", "image/jpeg"),
    ("identifier", ""),
    ("title", ""),
    ("license", "http://creativecommons.org/licenses/by/4.0/"),
    ("rightsHolder", ""),
];

fn qualified(term: &str) -> Option<String> {
    if DCTERMS_CORE.contains(&term) {
        Some(format!("{DCTERMS}{term}"))
    } else if DWC_CORE.contains(&term) {
        Some(format!("{DWC}{term}"))
    } else {
        None
    }
}

/// "Taxon resource ID" → "taxonResourceID"; a name without spaces is kept as it is.
pub fn camel_case(name: &str) -> String {
    let mut words = name.split_whitespace();
    let mut out = String::with_capacity(name.len());
    if let Some(first) = words.next() {
        let mut chars = first.chars();
        if let Some(c) = chars.next() {
            out.extend(c.to_lowercase());
            out.push_str(chars.as_str());
        }
    }
    for word in words {
        let mut chars = word.chars();
        if let Some(c) = chars.next() {
            out.extend(c.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

/// Where each datastore field goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Id,
    Core(usize),
    Media,
    Dynamic(String),
}

struct Layout {
    targets: Vec<Target>,
    core_terms: Vec<String>,
    has_dynamic: bool,
}

fn layout(fields: &[String]) -> Layout {
    let mut core_terms: Vec<String> = Vec::new();
    let mut has_dynamic = false;
    let targets = fields
        .iter()
        .map(|field| {
            if field == ID_FIELD {
                return Target::Id;
            }
            if field == MEDIA_FIELD {
                return Target::Media;
            }
            let term = [field.clone(), camel_case(field)]
                .into_iter()
                .find(|t| t != DYNAMIC_TERM && qualified(t).is_some());
            match term {
                Some(term) => {
                    let index = core_terms
                        .iter()
                        .position(|t| *t == term)
                        .unwrap_or_else(|| {
                            core_terms.push(term);
                            core_terms.len() - 1
                        });
                    Target::Core(index)
                }
                None => {
                    has_dynamic = true;
                    Target::Dynamic(camel_case(field))
                }
            }
        })
        .collect();
    Layout {
        targets,
        core_terms,
        has_dynamic,
    }
}

/// The media objects of one `associatedMedia` value.
fn media_objects(value: &str) -> Vec<Map<String, Value>> {
    let value = value.trim();
    if value.is_empty() {
        return Vec::new();
    }
    match serde_json::from_str::<Value>(value) {
        Ok(Value::Array(items)) => items
            .into_iter()
            .filter_map(|v| match v {
                Value::Object(o) => Some(o),
                Value::String(s) => Some(Map::from_iter([("identifier".into(), Value::String(s))])),
                _ => None,
            })
            .collect(),
        Ok(Value::Object(o)) => vec![o],
        _ => value
            .split('|')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Map::from_iter([("identifier".into(), Value::String(s.into()))]))
            .collect(),
    }
}

fn text_of(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn io_error(e: impl std::fmt::Display) -> PackageError {
    PackageError::Archive(format!("spooling the extension failed: {e}"))
}

fn meta_xml(layout: &Layout, with_media: bool) -> String {
    let attrs = r#"encoding="UTF-8" linesTerminatedBy="\n" fieldsTerminatedBy="," fieldsEnclosedBy="&quot;" ignoreHeaderLines="1""#;
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<archive xmlns=\"http://rs.tdwg.org/dwc/text/\">\n",
    );
    xml.push_str(&format!(
        "  <core {attrs} rowType=\"{OCCURRENCE_ROW_TYPE}\">\n    <files><location>{CORE_FILE}</location></files>\n    <id index=\"0\"/>\n"
    ));
    let mut index = 1;
    for term in &layout.core_terms {
        let q = qualified(term).expect("core terms are known terms");
        xml.push_str(&format!("    <field index=\"{index}\" term=\"{q}\"/>\n"));
        index += 1;
    }
    if layout.has_dynamic {
        xml.push_str(&format!(
            "    <field index=\"{index}\" term=\"{DWC}{DYNAMIC_TERM}\"/>\n"
        ));
    }
    xml.push_str("  </core>\n");
    if with_media {
        xml.push_str(&format!(
            "  <extension {attrs} rowType=\"{MULTIMEDIA_ROW_TYPE}\">\n    <files><location>{MEDIA_FILE}</location></files>\n    <coreid index=\"0\"/>\n"
        ));
        for (i, (term, _)) in MEDIA_TERMS.iter().enumerate() {
            xml.push_str(&format!(
                "    <field index=\"{}\" term=\"{DCTERMS}{term}\"/>\n",
                i + 1
            ));
        }
        xml.push_str("  </extension>\n");
    }
    xml.push_str("</archive>\n");
    xml
}

/// Turns datastore rows into core rows (kept as text until taken) and multimedia rows
/// (spooled to a temporary file).
struct CoreRows {
    layout: Layout,
    width: usize,
    core: csv::Writer<Vec<u8>>,
    media: csv::Writer<std::io::BufWriter<std::fs::File>>,
    media_rows: u64,
    rows: u64,
}

impl CoreRows {
    fn add(&mut self, record: &csv::ByteRecord) -> Result<(), PackageError> {
        let mut row = vec![String::new(); self.width];
        let mut dynamic = Map::new();
        let mut media = Vec::new();
        for (target, value) in self.layout.targets.iter().zip(record.iter()) {
            let value = String::from_utf8_lossy(value);
            match target {
                Target::Id => row[0] = value.into_owned(),
                Target::Core(i) => row[i + 1] = value.into_owned(),
                Target::Dynamic(name) if !value.is_empty() => {
                    dynamic.insert(name.clone(), Value::String(value.into_owned()));
                }
                Target::Dynamic(_) => {}
                Target::Media => media.extend(media_objects(&value)),
            }
        }
        if self.layout.has_dynamic {
            row[self.width - 1] = Value::Object(dynamic).to_string();
        }
        for object in media {
            let mut m = vec![row[0].clone()];
            for (term, default) in MEDIA_TERMS {
                let v = text_of(object.get(*term));
                m.push(if v.is_empty() {
                    (*default).to_string()
                } else {
                    v
                });
            }
            self.media.write_record(&m).map_err(io_error)?;
            self.media_rows += 1;
        }
        self.rows += 1;
        self.core
            .write_record(&row)
            .map_err(|e| PackageError::Archive(e.to_string()))
    }

    /// The core rows written since the last call.
    fn take_core_text(&mut self) -> Result<Vec<u8>, PackageError> {
        let writer = std::mem::replace(&mut self.core, table_writer(b',', 1 << 20));
        into_bytes(writer)
    }
}

/// A streamed page's text (in pieces of whole rows) read row by row into the core entry.
struct RowSink<'a, S: ByteSink> {
    rows: &'a mut CoreRows,
    zip: &'a mut ZipStreamWriter<S>,
}

#[async_trait::async_trait]
impl<S: ByteSink> ByteSink for RowSink<'_, S> {
    async fn write(&mut self, data: bytes::Bytes) -> Result<(), PackageError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(&data[..]);
        let mut record = csv::ByteRecord::new();
        while reader
            .read_byte_record(&mut record)
            .map_err(|e| PackageError::Archive(format!("re-reading a row failed: {e}")))?
        {
            self.rows.add(&record)?;
        }
        let text = self.rows.take_core_text()?;
        self.zip.write(&text).await
    }
}

pub async fn write_archive<S: ByteSink>(
    datastore: &Datastore<'_>,
    info: &DatastoreInfo,
    settings: &PackagerSettings,
    request: &PackageRequest,
    zip: &mut ZipStreamWriter<S>,
) -> Result<BuildSummary, PackageError> {
    let layout = layout(&info.fields);
    let mut header: Vec<String> = vec!["id".into()];
    header.extend(layout.core_terms.iter().cloned());
    if layout.has_dynamic {
        header.push(DYNAMIC_TERM.into());
    }
    zip.start_entry(CORE_FILE).await?;
    let mut w = table_writer(b',', 4096);
    w.write_record(&header)
        .map_err(|e| PackageError::Archive(e.to_string()))?;
    zip.write(&into_bytes(w)?).await?;

    let spool = tempfile::tempfile().map_err(io_error)?;
    let mut media = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(std::io::BufWriter::new(spool));
    let mut media_header = vec!["coreid"];
    media_header.extend(MEDIA_TERMS.iter().map(|(t, _)| *t));
    media.write_record(&media_header).map_err(io_error)?;
    let mut rows = CoreRows {
        width: header.len(),
        layout,
        core: table_writer(b',', 1 << 20),
        media,
        media_rows: 0,
        rows: 0,
    };

    let mut cursor = Cursor::new(request);
    let page_size = info.page_size(settings.page_size);
    while let Some(want) = cursor.next_limit(page_size) {
        check_time()?;
        let got = if info.delimited {
            let page = datastore.open_page(info, cursor.offset, want).await?;
            let mut sink = RowSink {
                rows: &mut rows,
                zip: &mut *zip,
            };
            datastore.read_page(page, info, &mut sink).await?
        } else {
            let records = datastore.fetch_page(info, cursor.offset, want).await?;
            let got = datastore.for_each_record(info, records, &mut |r| rows.add(r))?;
            zip.write(&rows.take_core_text()?).await?;
            got
        };
        cursor.advance(want, got);
    }
    let mut uncompressed = zip.finish_entry().await?.uncompressed;

    let CoreRows {
        layout,
        media,
        media_rows,
        rows,
        ..
    } = rows;
    if media_rows > 0 {
        let mut spool = media
            .into_inner()
            .map_err(io_error)?
            .into_inner()
            .map_err(io_error)?;
        std::io::Seek::rewind(&mut spool).map_err(io_error)?;
        zip.start_entry(MEDIA_FILE).await?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = spool.read(&mut buf).map_err(io_error)?;
            if n == 0 {
                break;
            }
            zip.write(&buf[..n]).await?;
        }
        uncompressed += zip.finish_entry().await?.uncompressed;
    }
    let meta = meta_xml(&layout, media_rows > 0);
    uncompressed += zip
        .add_entry("meta.xml", meta.as_bytes())
        .await?
        .uncompressed;
    Ok(BuildSummary { rows, uncompressed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_terms_directly_or_camel_cased() {
        assert_eq!(camel_case("Taxon resource ID"), "taxonResourceID");
        assert_eq!(camel_case("Catalog number"), "catalogNumber");
        let fields: Vec<String> = [
            "_id",
            "Catalog number",
            "scientificName",
            "colour",
            "associatedMedia",
            "Locality",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let l = layout(&fields);
        assert_eq!(
            l.core_terms,
            ["catalogNumber", "scientificName", "locality"]
        );
        assert_eq!(l.targets[3], Target::Dynamic("colour".into()));
        assert_eq!(l.targets[4], Target::Media);
        assert!(l.has_dynamic);
    }

    #[test]
    fn media_values_are_json_lists_or_links() {
        assert_eq!(
            media_objects(r#"[{"identifier":"http://x/1.jpg","title":"a"}]"#).len(),
            1
        );
        assert_eq!(media_objects("http://x/1.jpg | http://x/2.jpg").len(), 2);
        assert!(media_objects("").is_empty());
    }
}

//! Readers of metadata documents into `Metadata`: ISO 19139, ISO 19115-3, Dublin Core, CKAN
//! package JSON.

mod ckan;
mod dublin_core;
mod iso;
pub mod xml;

use crate::domain::record::Metadata;
pub use ckan::read_package;
pub use xml::{Element, XmlError, XmlLimits};

/// Why a document became a rejected record.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Rejection {
    #[error("unreadable XML: {0}")]
    Xml(#[from] XmlError),
    #[error("not a metadata record: root element {0}")]
    UnknownRoot(String),
    #[error("unreadable JSON: {0}")]
    Json(String),
    #[error("{0}")]
    Invalid(String),
}

const GMD: &str = "http://www.isotc211.org/2005/gmd";
const GMI: &str = "http://www.isotc211.org/2005/gmi";
const MDB_PREFIX: &str = "http://standards.iso.org/iso/19115/-3/mdb/";
const CSW: &str = "http://www.opengis.net/cat/csw/2.0.2";
const OAI_DC: &str = "http://www.openarchives.org/OAI/2.0/oai_dc/";
const DC: &str = "http://purl.org/dc/elements/1.1/";

/// Reads any supported document, choosing the reader by the root's namespace.
pub fn read_metadata(bytes: &[u8], limits: XmlLimits) -> Result<Metadata, Rejection> {
    let root = xml::parse(bytes, limits)?;
    read_element(&root)
}

/// Reads an already parsed record element (also used for records inside CSW responses).
pub fn read_element(root: &Element) -> Result<Metadata, Rejection> {
    let metadata = match (root.ns.as_str(), root.name.as_str()) {
        (GMD | GMI, "MD_Metadata" | "MI_Metadata") => iso::read_iso19139(root),
        (ns, "MD_Metadata") if ns.starts_with(MDB_PREFIX) => iso::read_iso19115_3(root),
        (CSW, "Record" | "SummaryRecord" | "BriefRecord") | (OAI_DC, "dc") => {
            dublin_core::read(root)
        }
        // GeoNetwork's Dublin Core schema writes its records under a plain `simpledc` root.
        (DC, _) | ("", "metadata" | "record" | "simpledc") if has_dc_children(root) => {
            dublin_core::read(root)
        }
        (ns, name) => {
            let shown = if ns.is_empty() {
                name.to_string()
            } else {
                format!("{{{ns}}}{name}")
            };
            return Err(Rejection::UnknownRoot(shown));
        }
    }?;
    validate(&metadata)?;
    Ok(metadata)
}

fn has_dc_children(root: &Element) -> bool {
    root.children.iter().any(|c| c.ns == DC)
}

/// What every record needs, whatever its format.
fn validate(m: &Metadata) -> Result<(), Rejection> {
    if m.id.trim().is_empty() {
        return Err(Rejection::Invalid("the record has no identifier".into()));
    }
    if m.title.trim().is_empty() {
        return Err(Rejection::Invalid("the record has no title".into()));
    }
    if let Some(bbox) = &m.bbox {
        bbox.validate().map_err(Rejection::Invalid)?;
    }
    Ok(())
}

/// Whitespace folded to single spaces, empty as `None`.
fn clean(text: &str) -> Option<String> {
    let folded = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!folded.is_empty()).then_some(folded)
}

/// Keeps the first of equal strings, in order.
fn dedup(values: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    values
        .into_iter()
        .filter(|v| seen.insert(v.clone()))
        .collect()
}

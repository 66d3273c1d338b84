//! A CSW 2.0.2 request, read from a query string (KVP) or a POSTed XML document into one shape.

use super::error::CswError;
use super::filter::{cql_to_filter, ogc_filter};
use crate::catalog::{Filter, Sort};
use crate::parse::xml::{self, Element, XmlLimits};

pub const CSW_NS: &str = "http://www.opengis.net/cat/csw/2.0.2";
pub const GMD_NS: &str = "http://www.isotc211.org/2005/gmd";

/// Records a GetRecords answers at most.
pub const MAX_RECORDS: u64 = 1000;
const DEFAULT_MAX_RECORDS: u64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementSet {
    Brief,
    Summary,
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputSchema {
    /// Dublin Core `csw:Record`.
    Csw,
    /// ISO 19139 `gmd:MD_Metadata`: the original document where it is one.
    Gmd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultType {
    Results,
    Hits,
}

#[derive(Debug, Clone)]
pub struct GetRecords {
    pub result_type: ResultType,
    pub output_schema: OutputSchema,
    pub element_set: ElementSet,
    /// From 1, as CSW counts.
    pub start_position: u64,
    pub max_records: u64,
    pub filter: Filter,
    pub sort: Option<Sort>,
}

#[derive(Debug, Clone)]
pub struct GetRecordById {
    pub ids: Vec<String>,
    pub output_schema: OutputSchema,
    pub element_set: ElementSet,
}

#[derive(Debug, Clone)]
pub enum CswRequest {
    GetCapabilities,
    DescribeRecord,
    GetRecords(GetRecords),
    GetRecordById(GetRecordById),
}

/// Reads a request from its key-value pairs (names are case-insensitive, as OWS says).
pub fn from_kvp(pairs: &[(String, String)]) -> Result<CswRequest, CswError> {
    let get = |name: &str| -> Option<&str> {
        pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let request = get("request").ok_or_else(|| CswError::missing("request"))?;
    check_service(get("service"), request)?;
    if !request.eq_ignore_ascii_case("GetCapabilities") {
        check_version(get("version"))?;
    }
    match_request(request, || match request.to_ascii_lowercase().as_str() {
        "getrecords" => {
            check_type_names(get("typenames"))?;
            let filter = match (get("constraintlanguage"), get("constraint")) {
                (_, None) => Filter::All,
                (Some(lang), Some(text)) if lang.eq_ignore_ascii_case("CQL_TEXT") => {
                    cql_to_filter(text)?
                }
                (Some(lang), Some(_)) if !lang.eq_ignore_ascii_case("FILTER") => {
                    return Err(CswError::invalid(
                        "constraintLanguage",
                        format!("{lang:?} is not FILTER or CQL_TEXT"),
                    ));
                }
                (_, Some(text)) => {
                    let root = read_xml(text.as_bytes(), "constraint")?;
                    ogc_filter(&root)?
                }
            };
            Ok(CswRequest::GetRecords(GetRecords {
                result_type: result_type(get("resulttype"))?,
                output_schema: output_schema(get("outputschema"))?,
                element_set: element_set(get("elementsetname"))?,
                start_position: number(get("startposition"), "startPosition", 1)?.max(1),
                max_records: number(get("maxrecords"), "maxRecords", DEFAULT_MAX_RECORDS)?
                    .min(MAX_RECORDS),
                filter,
                sort: get("sortby").map(kvp_sort).transpose()?,
            }))
        }
        "getrecordbyid" => {
            let ids: Vec<String> = get("id")
                .ok_or_else(|| CswError::missing("id"))?
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            Ok(CswRequest::GetRecordById(GetRecordById {
                ids,
                output_schema: output_schema(get("outputschema"))?,
                element_set: element_set(get("elementsetname"))?,
            }))
        }
        _ => unreachable!("match_request checked the name"),
    })
}

/// Reads a POSTed request document.
pub fn from_xml(body: &[u8]) -> Result<CswRequest, CswError> {
    let root = read_xml(body, "request")?;
    if root.ns != CSW_NS {
        return Err(CswError::invalid(
            "request",
            format!("{{{}}}{} is not a CSW 2.0.2 request", root.ns, root.name),
        ));
    }
    let name = root.name.clone();
    check_service(root.attr("service"), &name)?;
    if name != "GetCapabilities" {
        check_version(root.attr("version"))?;
    }
    match_request(&name, || match name.as_str() {
        "GetRecords" => {
            let query = root
                .child("Query")
                .ok_or_else(|| CswError::missing("Query"))?;
            check_type_names(query.attr("typeNames"))?;
            let filter = match query.child("Constraint") {
                None => Filter::All,
                Some(constraint) => {
                    if let Some(filter) = constraint.children.iter().find(|c| c.name == "Filter") {
                        ogc_filter(filter)?
                    } else if let Some(cql) = text_of(constraint, "CqlText") {
                        cql_to_filter(&cql)?
                    } else {
                        return Err(CswError::missing("Constraint/Filter"));
                    }
                }
            };
            let sort = query
                .child("SortBy")
                .map(|by| {
                    let property = by
                        .descendants("PropertyName")
                        .first()
                        .map(|p| p.all_text())
                        .unwrap_or_default();
                    let order = by
                        .descendants("SortOrder")
                        .first()
                        .map(|p| p.all_text())
                        .unwrap_or_default();
                    sort_by(&property, &order)
                })
                .transpose()?;
            Ok(CswRequest::GetRecords(GetRecords {
                result_type: result_type(root.attr("resultType"))?,
                output_schema: output_schema(root.attr("outputSchema"))?,
                element_set: element_set(text_of(query, "ElementSetName").as_deref())?,
                start_position: number(root.attr("startPosition"), "startPosition", 1)?.max(1),
                max_records: number(root.attr("maxRecords"), "maxRecords", DEFAULT_MAX_RECORDS)?
                    .min(MAX_RECORDS),
                filter,
                sort,
            }))
        }
        "GetRecordById" => {
            let ids: Vec<String> = root
                .children_named("Id")
                .map(|e| e.all_text())
                .filter(|s| !s.is_empty())
                .collect();
            if ids.is_empty() {
                return Err(CswError::missing("Id"));
            }
            Ok(CswRequest::GetRecordById(GetRecordById {
                ids,
                output_schema: output_schema(root.attr("outputSchema"))?,
                element_set: element_set(text_of(&root, "ElementSetName").as_deref())?,
            }))
        }
        _ => unreachable!("match_request checked the name"),
    })
}

/// The text of the child `name`, when it has any.
pub(super) fn text_of(e: &Element, name: &str) -> Option<String> {
    e.child(name)
        .map(|c| c.all_text())
        .filter(|t| !t.is_empty())
}

/// The two requests without parameters answer at once; the others are read by `read`.
fn match_request(
    name: &str,
    read: impl FnOnce() -> Result<CswRequest, CswError>,
) -> Result<CswRequest, CswError> {
    match name.to_ascii_lowercase().as_str() {
        "getcapabilities" => Ok(CswRequest::GetCapabilities),
        "describerecord" => Ok(CswRequest::DescribeRecord),
        "getrecords" | "getrecordbyid" => read(),
        _ => Err(CswError::not_supported(name)),
    }
}

/// Requests are small; a filter deeper or larger than this is no real client's.
fn read_xml(bytes: &[u8], locator: &str) -> Result<Element, CswError> {
    let limits = XmlLimits {
        max_bytes: 1024 * 1024,
        max_depth: 64,
        max_elements: 10_000,
        ..XmlLimits::default()
    };
    xml::parse(bytes, limits).map_err(|e| CswError::invalid(locator, e.0))
}

fn check_service(service: Option<&str>, request: &str) -> Result<(), CswError> {
    match service {
        Some(s) if s.eq_ignore_ascii_case("CSW") => Ok(()),
        Some(s) => Err(CswError::invalid("service", format!("{s:?} is not CSW"))),
        // OWS lets GetCapabilities name the service; the others must.
        None if request.eq_ignore_ascii_case("GetCapabilities") => Ok(()),
        None => Err(CswError::missing("service")),
    }
}

fn check_version(version: Option<&str>) -> Result<(), CswError> {
    match version {
        Some("2.0.2") => Ok(()),
        Some(v) => Err(CswError::invalid("version", format!("{v:?} is not 2.0.2"))),
        None => Err(CswError::missing("version")),
    }
}

fn check_type_names(names: Option<&str>) -> Result<(), CswError> {
    let Some(names) = names else {
        return Err(CswError::missing("typeNames"));
    };
    for name in names.split([',', ' ']).filter(|n| !n.is_empty()) {
        let local = name.rsplit(':').next().unwrap_or(name);
        if local != "Record" && local != "MD_Metadata" {
            return Err(CswError::invalid(
                "typeNames",
                format!("{name:?} is not csw:Record or gmd:MD_Metadata"),
            ));
        }
    }
    Ok(())
}

fn output_schema(value: Option<&str>) -> Result<OutputSchema, CswError> {
    match value {
        None | Some(CSW_NS) => Ok(OutputSchema::Csw),
        Some(GMD_NS) => Ok(OutputSchema::Gmd),
        Some(other) => Err(CswError::invalid(
            "outputSchema",
            format!("{other:?} is not {CSW_NS} or {GMD_NS}"),
        )),
    }
}

fn element_set(value: Option<&str>) -> Result<ElementSet, CswError> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        Some("brief") => Ok(ElementSet::Brief),
        Some("summary") => Ok(ElementSet::Summary),
        None | Some("full") => Ok(ElementSet::Full),
        Some(_) => Err(CswError::invalid(
            "ElementSetName",
            "must be brief, summary or full",
        )),
    }
}

fn result_type(value: Option<&str>) -> Result<ResultType, CswError> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("results") => Ok(ResultType::Results),
        Some("hits") => Ok(ResultType::Hits),
        Some(other) => Err(CswError::invalid(
            "resultType",
            format!("{other:?} is not results or hits"),
        )),
    }
}

fn number(value: Option<&str>, name: &str, default: u64) -> Result<u64, CswError> {
    value.map_or(Ok(default), |v| {
        v.trim()
            .parse()
            .map_err(|_| CswError::invalid(name, format!("{v:?} is not a whole number")))
    })
}

/// `sortBy=dc:title:A` (KVP form).
fn kvp_sort(value: &str) -> Result<Sort, CswError> {
    let (property, order) = match value.rsplit_once(':') {
        Some((p, o)) if o == "A" || o == "D" => (p, if o == "A" { "ASC" } else { "DESC" }),
        _ => (value, "ASC"),
    };
    sort_by(property, order)
}

/// Titles sort ascending and dates newest first; those are the orders the index keeps.
fn sort_by(property: &str, order: &str) -> Result<Sort, CswError> {
    let local = property
        .rsplit(':')
        .next()
        .unwrap_or(property)
        .to_ascii_lowercase();
    let descending = order.eq_ignore_ascii_case("DESC");
    match (local.as_str(), descending) {
        ("title", false) => Ok(Sort::Title),
        ("modified" | "date", true) => Ok(Sort::Date),
        ("relevance", _) => Ok(Sort::Relevance),
        _ => Err(CswError::invalid(
            "SortBy",
            format!(
                "sorting by {property} {order} is not offered: use dc:title ASC or dct:modified DESC"
            ),
        )),
    }
}

//! Records as CSW answers hold them: Dublin Core `csw:Record` (brief, summary, full) and ISO
//! 19139 `gmd:MD_Metadata` (the original document where the record was one, else written
//! from the record's fields).

use super::request::ElementSet;
use super::xml_out::XmlOut;
use crate::domain::record::{BBox, Record};

pub const DC_NS: &str = "http://purl.org/dc/elements/1.1/";
pub const DCT_NS: &str = "http://purl.org/dc/terms/";
pub const OWS_NS: &str = "http://www.opengis.net/ows";
pub const GCO_NS: &str = "http://www.isotc211.org/2005/gco";
/// Latitude first: the order OWS clients read for this CRS (as pycsw writes it).
const BOX_CRS: &str = "urn:x-ogc:def:crs:EPSG:6.11:4326";

pub fn bounding_box(x: &mut XmlOut, b: &BBox) {
    x.open("ows:BoundingBox", &[("crs", BOX_CRS), ("dimensions", "2")])
        .leaf("ows:LowerCorner", &[], &format!("{} {}", b.south, b.west))
        .leaf("ows:UpperCorner", &[], &format!("{} {}", b.north, b.east))
        .close("ows:BoundingBox");
}

/// The Dublin Core element of the record, in the order the CSW schema gives each set.
pub fn dublin_core(x: &mut XmlOut, record: &Record, set: ElementSet) {
    let m = &record.metadata;
    let tag = match set {
        ElementSet::Brief => "csw:BriefRecord",
        ElementSet::Summary => "csw:SummaryRecord",
        ElementSet::Full => "csw:Record",
    };
    x.open(tag, &[]);
    x.leaf("dc:identifier", &[], &m.id);
    x.leaf("dc:title", &[], &m.title);
    x.leaf("dc:type", &[], "dataset");
    if set != ElementSet::Brief {
        for keyword in &m.keywords {
            x.leaf("dc:subject", &[], keyword);
        }
        if let Some(modified) = &m.modified {
            x.leaf("dct:modified", &[], modified);
        }
        if !m.abstract_text.is_empty() {
            x.leaf("dct:abstract", &[], &m.abstract_text);
        }
    }
    if set == ElementSet::Full {
        for contact in &m.contacts {
            let Some(who) = contact.name.as_ref().or(contact.organisation.as_ref()) else {
                continue;
            };
            let role = contact.role.as_deref().unwrap_or("").to_ascii_lowercase();
            let tag = match role.as_str() {
                "originator" | "author" | "principalinvestigator" | "creator" => "dc:creator",
                "publisher" => "dc:publisher",
                _ => "dc:contributor",
            };
            x.leaf(tag, &[], who);
        }
        for link in &m.links {
            match &link.protocol {
                Some(protocol) => x.leaf("dct:references", &[("scheme", protocol)], &link.url),
                None => x.leaf("dct:references", &[], &link.url),
            };
        }
        if let Some(time) = &m.time {
            let period = format!(
                "{}/{}",
                time.start.as_deref().unwrap_or(".."),
                time.end.as_deref().unwrap_or("..")
            );
            x.leaf("dct:temporal", &[], &period);
        }
        if !record.original_url.is_empty() {
            x.leaf("dc:source", &[], &record.original_url);
        }
    }
    if let Some(b) = &m.bbox {
        bounding_box(x, b);
    }
    x.close(tag);
}

fn character_string(x: &mut XmlOut, tag: &str, text: &str) {
    x.open(tag, &[])
        .leaf("gco:CharacterString", &[], text)
        .close(tag);
}

fn code(x: &mut XmlOut, tag: &str, list: &str, value: &str) {
    let list_url = format!("http://standards.iso.org/iso/19139/resources/gmxCodelists.xml#{list}");
    x.open(tag, &[])
        .leaf(
            &format!("gmd:{list}"),
            &[("codeList", &list_url), ("codeListValue", value)],
            value,
        )
        .close(tag);
}

/// An ISO 19139 document written from the record's fields, for records that were not one
/// (Dublin Core, CKAN, ISO 19115-3).
pub fn iso19139(x: &mut XmlOut, record: &Record) {
    let m = &record.metadata;
    let stamp = m
        .modified
        .clone()
        .unwrap_or_else(|| record.harvested.clone());
    x.open(
        "gmd:MD_Metadata",
        &[("xmlns:gmd", super::request::GMD_NS), ("xmlns:gco", GCO_NS)],
    );
    character_string(x, "gmd:fileIdentifier", &m.id);
    code(x, "gmd:hierarchyLevel", "MD_ScopeCode", "dataset");
    let contacts: Vec<_> = m
        .contacts
        .iter()
        .filter(|c| c.name.is_some() || c.organisation.is_some() || c.email.is_some())
        .collect();
    if contacts.is_empty() {
        x.empty("gmd:contact", &[("gco:nilReason", "unknown")]);
    }
    for contact in contacts {
        x.open("gmd:contact", &[])
            .open("gmd:CI_ResponsibleParty", &[]);
        if let Some(name) = &contact.name {
            character_string(x, "gmd:individualName", name);
        }
        if let Some(org) = &contact.organisation {
            character_string(x, "gmd:organisationName", org);
        }
        if let Some(email) = &contact.email {
            x.open("gmd:contactInfo", &[])
                .open("gmd:CI_Contact", &[])
                .open("gmd:address", &[])
                .open("gmd:CI_Address", &[]);
            character_string(x, "gmd:electronicMailAddress", email);
            x.close("gmd:CI_Address")
                .close("gmd:address")
                .close("gmd:CI_Contact")
                .close("gmd:contactInfo");
        }
        code(
            x,
            "gmd:role",
            "CI_RoleCode",
            contact.role.as_deref().unwrap_or("pointOfContact"),
        );
        x.close("gmd:CI_ResponsibleParty").close("gmd:contact");
    }
    x.open("gmd:dateStamp", &[])
        .leaf("gco:DateTime", &[], &stamp)
        .close("gmd:dateStamp");
    x.open("gmd:identificationInfo", &[])
        .open("gmd:MD_DataIdentification", &[])
        .open("gmd:citation", &[])
        .open("gmd:CI_Citation", &[]);
    character_string(x, "gmd:title", &m.title);
    x.open("gmd:date", &[]).open("gmd:CI_Date", &[]);
    x.open("gmd:date", &[])
        .leaf("gco:DateTime", &[], &stamp)
        .close("gmd:date");
    code(x, "gmd:dateType", "CI_DateTypeCode", "revision");
    x.close("gmd:CI_Date").close("gmd:date");
    x.close("gmd:CI_Citation").close("gmd:citation");
    character_string(x, "gmd:abstract", &m.abstract_text);
    if !m.keywords.is_empty() {
        x.open("gmd:descriptiveKeywords", &[])
            .open("gmd:MD_Keywords", &[]);
        for keyword in &m.keywords {
            character_string(x, "gmd:keyword", keyword);
        }
        x.close("gmd:MD_Keywords").close("gmd:descriptiveKeywords");
    }
    character_string(x, "gmd:language", "eng");
    if let Some(b) = &m.bbox {
        x.open("gmd:extent", &[])
            .open("gmd:EX_Extent", &[])
            .open("gmd:geographicElement", &[])
            .open("gmd:EX_GeographicBoundingBox", &[]);
        for (tag, value) in [
            ("gmd:westBoundLongitude", b.west),
            ("gmd:eastBoundLongitude", b.east),
            ("gmd:southBoundLatitude", b.south),
            ("gmd:northBoundLatitude", b.north),
        ] {
            x.open(tag, &[])
                .leaf("gco:Decimal", &[], &value.to_string())
                .close(tag);
        }
        x.close("gmd:EX_GeographicBoundingBox")
            .close("gmd:geographicElement")
            .close("gmd:EX_Extent")
            .close("gmd:extent");
    }
    x.close("gmd:MD_DataIdentification")
        .close("gmd:identificationInfo");
    if !m.links.is_empty() {
        x.open("gmd:distributionInfo", &[])
            .open("gmd:MD_Distribution", &[])
            .open("gmd:transferOptions", &[])
            .open("gmd:MD_DigitalTransferOptions", &[]);
        for link in &m.links {
            x.open("gmd:onLine", &[]).open("gmd:CI_OnlineResource", &[]);
            x.open("gmd:linkage", &[])
                .leaf("gmd:URL", &[], &link.url)
                .close("gmd:linkage");
            if let Some(protocol) = &link.protocol {
                character_string(x, "gmd:protocol", protocol);
            }
            if let Some(name) = &link.name {
                character_string(x, "gmd:name", name);
            }
            x.close("gmd:CI_OnlineResource").close("gmd:onLine");
        }
        x.close("gmd:MD_DigitalTransferOptions")
            .close("gmd:transferOptions")
            .close("gmd:MD_Distribution")
            .close("gmd:distributionInfo");
    }
    x.close("gmd:MD_Metadata");
}

/// The root element of a stored document, without its declaration, doctype or leading
/// comments, to sit inside an answer.
pub fn root_element(document: &str) -> &str {
    let mut rest = document.trim_start_matches('\u{feff}').trim_start();
    loop {
        let skip_to = if rest.starts_with("<?") {
            rest.find("?>").map(|i| i + 2)
        } else if rest.starts_with("<!--") {
            rest.find("-->").map(|i| i + 3)
        } else if rest.starts_with("<!") {
            rest.find('>').map(|i| i + 1)
        } else {
            return rest.trim_end();
        };
        match skip_to {
            Some(i) => rest = rest[i..].trim_start(),
            None => return "",
        }
    }
}

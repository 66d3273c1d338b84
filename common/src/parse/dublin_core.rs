//! Dublin Core: `csw:Record` (CSW 2.0.2), `oai_dc:dc`, and simple DC containers.
//! Every DC element is optional, so a record without a title takes its identifier as title.

use super::{Rejection, clean, dedup};
use crate::domain::record::{BBox, Contact, Link, Metadata, RecordFormat};
use crate::parse::Element;

fn values(root: &Element, names: &[&str]) -> Vec<String> {
    root.children
        .iter()
        .filter(|c| names.contains(&c.name.as_str()))
        .filter_map(|c| clean(&c.all_text()))
        .collect()
}

fn first(root: &Element, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| values(root, &[n]).into_iter().next())
}

/// `ows:BoundingBox`: EPSG:4326 URNs put latitude first, CRS84 (and no CRS) longitude first.
fn bbox(root: &Element) -> Result<Option<BBox>, Rejection> {
    let Some(b) = root
        .child("BoundingBox")
        .or_else(|| root.child("WGS84BoundingBox"))
    else {
        return Ok(None);
    };
    let corner = |name: &str| -> Result<(f64, f64), Rejection> {
        let text = b.child(name).map(|c| c.all_text()).unwrap_or_default();
        let nums: Vec<f64> = text
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| {
                Rejection::Invalid(format!("bounding box {name} {text:?} is not two numbers"))
            })?;
        match nums.as_slice() {
            [a, b] => Ok((*a, *b)),
            _ => Err(Rejection::Invalid(format!(
                "bounding box {name} {text:?} is not two numbers"
            ))),
        }
    };
    let (lower, upper) = (corner("LowerCorner")?, corner("UpperCorner")?);
    let crs = b.attr("crs").unwrap_or_default();
    let lat_first = b.name == "BoundingBox" && crs.contains("4326") && !crs.contains("CRS84");
    let bbox = if lat_first {
        BBox {
            south: lower.0,
            west: lower.1,
            north: upper.0,
            east: upper.1,
        }
    } else {
        BBox {
            west: lower.0,
            south: lower.1,
            east: upper.0,
            north: upper.1,
        }
    };
    bbox.validate().map_err(Rejection::Invalid)?;
    Ok(Some(bbox))
}

/// GeoNetwork's simple DC writes the box as text in `dc:coverage`:
/// `North 90, South -90, East 180, West -180` (sometimes followed by `. Place name`).
fn coverage_bbox(root: &Element) -> Result<Option<BBox>, Rejection> {
    for text in values(root, &["coverage", "spatial"]) {
        let mut sides = [None; 4];
        for part in text.split([',', ';']) {
            let mut words = part.split_whitespace();
            let (Some(side), Some(number)) = (words.next(), words.next()) else {
                continue;
            };
            let slot = match side.to_ascii_lowercase().as_str() {
                "north" => 0,
                "south" => 1,
                "east" => 2,
                "west" => 3,
                _ => continue,
            };
            let number = number.trim_end_matches('.');
            sides[slot] = Some(number.parse::<f64>().map_err(|_| {
                Rejection::Invalid(format!(
                    "coverage {text:?}: {side} {number:?} is not a number"
                ))
            })?);
        }
        if let [Some(north), Some(south), Some(east), Some(west)] = sides {
            let bbox = BBox {
                west,
                south,
                east,
                north,
            };
            bbox.validate().map_err(Rejection::Invalid)?;
            return Ok(Some(bbox));
        }
    }
    Ok(None)
}

pub(super) fn read(root: &Element) -> Result<Metadata, Rejection> {
    let id = first(root, &["identifier"]).unwrap_or_default();
    let title = first(root, &["title"]).unwrap_or_else(|| id.clone());
    let contacts = ["creator", "publisher", "contributor"]
        .iter()
        .flat_map(|role| {
            values(root, &[role]).into_iter().map(move |name| Contact {
                name: None,
                organisation: Some(name),
                email: None,
                role: Some(role.to_string()),
            })
        })
        .collect();
    let links = values(root, &["references", "URI", "source"])
        .into_iter()
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .map(|url| Link {
            url,
            protocol: None,
            name: None,
        })
        .collect();
    Ok(Metadata {
        id,
        title,
        abstract_text: first(root, &["abstract", "description"]).unwrap_or_default(),
        keywords: dedup(values(root, &["subject"])),
        bbox: match bbox(root)? {
            Some(b) => Some(b),
            None => coverage_bbox(root)?,
        },
        time: None,
        contacts,
        links,
        format: RecordFormat::DublinCore,
        modified: first(root, &["modified", "date"]),
        ckan: None,
    })
}

#[cfg(test)]
mod tests {
    use crate::parse::{XmlLimits, read_metadata};

    #[test]
    fn geonetwork_simpledc_reads_with_its_coverage_box() {
        let doc = include_bytes!("../../../tests/records/waf/dublin-core/geonetwork-simpledc.xml");
        let m = read_metadata(doc, XmlLimits::default()).expect("simpledc is a record");
        assert_eq!(m.id, "6c0f2a8e-3d1b-4e7a-9f52-1b8d4c7e2a90");
        assert_eq!(m.title, "Sea surface temperature, monthly means");
        let b = m.bbox.expect("bbox from dc:coverage");
        assert_eq!(
            (b.west, b.south, b.east, b.north),
            (-180.0, -90.0, 180.0, 90.0)
        );
        assert_eq!(m.keywords, ["oceans", "sea surface temperature"]);
    }

    #[test]
    fn a_coverage_box_out_of_range_is_refused() {
        let doc = br#"<simpledc xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:identifier>x</dc:identifier><dc:title>t</dc:title><dc:coverage>North 95, South -90, East 180, West -180</dc:coverage></simpledc>"#;
        assert!(read_metadata(doc, XmlLimits::default()).is_err());
    }
}
